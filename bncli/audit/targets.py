"""How an audited implementation is called: one small interface, ``call(inputs) -> outputs``.

Targets: a Python function (``path/to/file.py:func`` or ``package.module:func``, or a
callable given to :func:`bncli.audit`), an external program (``--cmd``, the contract's
file protocol), PyTorch's functional batch_norm with autograd (``torch``), and
bncli's own core (``bncli``). A call that raises, hangs past the timeout or exits
non-zero raises :class:`~bncli.audit.judge.TargetError` (an ERROR for that case); a target that cannot
be found is an :class:`~bncli.errors.InputError` (bad usage).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from .. import core
from ..errors import InputError
from . import protocol, styles
from .cases import CaseInputs, to_layout
from .cmd import CommandTarget
from .interface import KEYWORDS, Target, changed_inputs, declared_keywords, expected_running, snapshot
from .judge import TargetError
from .oneline import describe
from .processes import has_ended, kill_group


class FunctionTarget(Target):
    """A Python callable ``func(x, weight, bias, eps, dy)``, run in a daemon thread with a timeout.

    A hung function cannot be killed from Python: its thread is left running
    (daemon, so it never blocks exit) and the call is an ERROR.
    """

    def __init__(self, func, name: str, layout: str, timeout: float):
        super().__init__(layout, timeout)
        self.func = func
        self.name = name
        self.declared = declared_keywords(func)
        self.expects = expected_running(func)

    def call(self, inputs: CaseInputs):
        args = self.arguments(inputs)
        keywords = {name: value for name, value in self.keywords(inputs).items() if name in self.declared}
        before = snapshot(args)
        box: dict = {}

        def run():
            try:
                with np.errstate(all="ignore"):  # the target's overflow is judged by its results, not warned about
                    box["value"] = self.func(*args, **keywords)
            except BaseException as error:  # noqa: BLE001 - anything the target raises is its ERROR
                box["error"] = error

        thread = threading.Thread(target=run, daemon=True, name=f"bncli-audit-{inputs.name}")
        thread.start()
        thread.join(self.timeout)
        if thread.is_alive():
            raise TargetError(f"timed out after {self.timeout:g} s")
        if "error" in box:
            raise TargetError(f"raised {describe(box['error'])}")
        self.note_changed(changed_inputs(args, before), inputs)
        return box.get("value")


class ProcessTarget(Target):
    """A Python function named by ``FILE.py:FUNCTION`` or ``package.module:FUNCTION``, run in a worker process.

    The worker (:mod:`bncli.audit.worker`) imports the function once and calls it
    for each case. A function that exits the process, crashes or runs past the
    timeout (even holding the interpreter) ends only the worker and what it started:
    the case is an ERROR, and a new worker takes the next one. Its prints go to stderr.
    """

    def __init__(self, spec: str, layout: str, timeout: float, style: str = "native"):
        super().__init__(layout, timeout)
        self.spec, self.style = spec, style
        self.name = spec if style == "native" else f"{spec} as {style}"
        self.process: subprocess.Popen | None = None
        try:
            self._start("importing it")
        except TargetError as error:  # the import itself hung or crashed: the target cannot be imported
            raise InputError(f"target {spec!r}: {error}") from None

    def _start(self, doing: str) -> None:
        package_root = str(Path(__file__).resolve().parents[2])  # the folder holding bncli
        path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH", "")) if p)
        self.process = subprocess.Popen(
            # -P: the current folder is not first on sys.path, so its random.py cannot shadow the standard one
            [sys.executable, "-P", "-m", *styles.worker_command(self.spec, self.style, self.layout)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": path},
            start_new_session=True,  # killed as a group, and not by the terminal's Ctrl-C meant for bncli
        )
        os.set_blocking(self.process.stdin.fileno(), False)  # requests are written within the call's deadline
        try:
            reply = self._reply(doing, protocol.ENVELOPE, self._deadline())
        except protocol.TimedOut:
            raise TargetError(f"{doing} took longer than --timeout {self.timeout:g} s") from None
        if reply.kind == "input-error":
            self.close()
            raise InputError(reply.text)
        assert reply.kind == "ready", reply
        ready = json.loads(reply.text)
        self.declared, self.expects = tuple(ready["declares"]), tuple(ready["expects"])

    def call(self, inputs: CaseInputs):
        if self.process is not None and has_ended(self.process):
            self.close()
        if self.process is None:
            self._start("importing it again")
        deadline = self._deadline()
        limit = protocol.reply_limit(2 * inputs.x.size + 4 * inputs.weight.size)
        try:
            self._send((self.arguments(inputs), self.keywords(inputs)), deadline)
            reply = self._reply("running", limit, deadline)
        except protocol.TimedOut:
            self.close()
            raise TargetError(f"timed out after {self.timeout:g} s") from None
        if reply.kind == "raised":
            raise TargetError(f"raised {reply.text}")
        if reply.kind == "unusable":
            raise TargetError(reply.text)
        if reply.kind == "input-error":
            raise InputError(reply.text)
        self.note_changed(reply.changed, inputs)
        if reply.text:  # an ok reply's text: why it computed only these
            self.note_by_design(reply.outputs, reply.text)
        return reply.outputs

    def _send(self, request: tuple, deadline: float | None) -> None:
        try:
            protocol.send_request(self.process.stdin.fileno(), request, deadline)
        except OSError:
            pass  # the worker is gone: the reply that does not come says how

    def _deadline(self) -> float | None:
        return None if self.timeout is None else time.monotonic() + self.timeout

    def _reply(self, doing: str, limit: int, deadline: float | None) -> protocol.Reply:
        """The worker's next reply. A worker that ends, times out (TimedOut) or sends what bncli
        cannot read (TargetError) is gone after it, with what it started."""
        try:
            reply = protocol.receive_reply(self.process.stdout, deadline, limit)
        except (protocol.TimedOut, TargetError):
            self.close()
            raise
        except MemoryError:
            self.close()
            raise TargetError("its reply does not fit in memory") from None
        if reply is None:
            status = kill_group(self.process)
            self.process = None
            how = f"killed by signal {-status}" if status < 0 else f"ended the process (exit status {status})"
            raise TargetError(f"{how} while {doing}")
        return reply

    def close(self) -> None:
        if self.process is not None:
            kill_group(self.process)
            self.process.stdin.close()
            self.process.stdout.close()
        self.process = None


class BncliTarget(Target):
    """bncli's own core in the case's dtype (the self-test), its running statistics as PyTorch's. In a half
    precision it is a mixed-precision implementation: the core in float32 (the parameters' dtype), y and
    dx rounded to the input's dtype, dw, db and the running statistics float32."""

    name = "bncli"
    expects = ("running_mean", "running_var")
    declared = KEYWORDS

    def call(self, inputs: CaseInputs):
        given = self.keywords(inputs)
        running_mean, running_var = given["running_mean"], given["running_var"]
        x, dy = inputs.x.astype(inputs.weight.dtype), inputs.dy.astype(inputs.weight.dtype)
        if inputs.training:
            bn = core.forward(x, inputs.weight, inputs.bias, inputs.eps)
            running_mean, running_var = core.update_running(running_mean, running_var, bn, inputs.momentum)
        else:
            bn = core.forward_eval(x, running_mean, running_var, inputs.weight, inputs.bias, inputs.eps)
        grads = core.backward(dy, bn)
        return {
            "y": to_layout(bn.y.astype(inputs.x.dtype), self.layout),
            "dx": to_layout(grads.dx.astype(inputs.x.dtype), self.layout),
            "dw": grads.dw,
            "db": grads.db,
            "running_mean": running_mean,
            "running_var": running_var,
        }


class TorchTarget(FunctionTarget):
    """torch.nn.functional.batch_norm (training or eval mode, with running statistics), gradients by autograd."""

    def __init__(self, layout: str, timeout: float):
        try:
            import torch
        except ImportError:
            raise InputError("target torch: PyTorch is not installed (pip install torch)") from None
        super().__init__(_torch_batchnorm(torch, layout), "torch", layout, timeout)


def _torch_batchnorm(torch, layout: str):
    def batchnorm(x, weight, bias, eps, dy, running_mean, running_var, momentum, training):
        tx = styles.as_tensor(torch, x)
        if layout == "nhwc":
            tx = tx.permute(0, 3, 1, 2)  # torch wants channels second; the gradient comes back permuted
        tx = tx.detach().requires_grad_(True)
        tw = torch.from_numpy(weight).requires_grad_(True)
        tb = torch.from_numpy(bias).requires_grad_(True)
        rm, rv = torch.from_numpy(running_mean), torch.from_numpy(running_var)  # updated in place
        # mixed precision (half x, float32 parameters and statistics) runs in PyTorch's CPU kernels
        y = torch.nn.functional.batch_norm(tx, rm, rv, tw, tb, training=training, momentum=momentum, eps=eps)
        tdy = styles.as_tensor(torch, dy)
        if layout == "nhwc":
            tdy = tdy.permute(0, 3, 1, 2)
        y.backward(tdy)
        back = (lambda t: t.permute(0, 2, 3, 1)) if layout == "nhwc" else (lambda t: t)
        return {
            "y": styles.as_array(back(y)),
            "dx": styles.as_array(back(tx.grad)),
            "dw": tw.grad.numpy(),
            "db": tb.grad.numpy(),
            "running_mean": rm.numpy(),
            "running_var": rv.numpy(),
        }

    return batchnorm


def resolve(target, *, cmd: str | None, layout: str, timeout: float, style: str | None = None) -> Target:
    """The Target for a name, a callable, or ``--cmd``; ``style`` (None: detected) as in :mod:`.styles`."""
    style = styles.choose(target, cmd=cmd, style=style, layout=layout)
    if cmd is not None:
        if target is not None:
            raise InputError("give either a TARGET or --cmd, not both")
        return CommandTarget(cmd, layout, timeout)
    if target is None:
        raise InputError("no target: give TARGET (FILE.py:FUNCTION, package.module:FUNCTION, torch, bncli) or --cmd")
    if callable(target):
        name = getattr(target, "__qualname__", None) or repr(target)
        module = getattr(target, "__module__", None)
        return FunctionTarget(target, f"{module}:{name}" if module else name, layout, timeout)
    if target == "bncli":
        return BncliTarget(layout, timeout)
    if target == "torch":
        return TorchTarget(layout, timeout)
    return ProcessTarget(str(target), layout, timeout, style)
