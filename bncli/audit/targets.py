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
import math
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np

from .. import core
from ..errors import InputError
from . import styles, worker
from .cases import CaseInputs, layout_shape, to_layout
from .judge import TargetError


class Target:
    """Base: ``name``, ``call(inputs)`` returning a mapping or tuple of y, dx, dw, db, ``close()``.

    ``notes`` collects what the audit should say about the target beside its verdicts
    (e.g. that it changed its inputs in place).
    """

    name = "target"

    def __init__(self, layout: str, timeout: float):
        self.layout = layout
        self.timeout = timeout if math.isfinite(timeout) else None  # inf: wait as long as it takes
        self.notes: set[str] = set()

    def arguments(self, inputs: CaseInputs) -> tuple:
        """``(x, weight, bias, eps, dy)`` for the target, in its layout, copies it may do with as it likes."""
        x, dy = to_layout(inputs.x, self.layout).copy(), to_layout(inputs.dy, self.layout).copy()
        return x, inputs.weight.copy(), inputs.bias.copy(), inputs.eps, dy

    def note_changed(self, changed: list[str], inputs: CaseInputs) -> None:
        if changed:
            self.notes.add(
                f"the target changed its input {', '.join(changed)} in place (first seen on {inputs.name}/"
                f"{inputs.dtype}): bncli passed copies, but a layer that does so corrupts its caller's data"
            )

    def call(self, inputs: CaseInputs):
        raise NotImplementedError

    def close(self) -> None:
        """Release what the target holds (temporary folders)."""


class FunctionTarget(Target):
    """A Python callable ``func(x, weight, bias, eps, dy)``, run in a daemon thread with a timeout.

    A hung function cannot be killed from Python: its thread is left running
    (daemon, so it never blocks exit) and the call is an ERROR.
    """

    def __init__(self, func, name: str, layout: str, timeout: float):
        super().__init__(layout, timeout)
        self.func = func
        self.name = name

    def call(self, inputs: CaseInputs):
        args = self.arguments(inputs)
        before = [np.array(a, copy=True) if isinstance(a, np.ndarray) else a for a in args]
        box: dict = {}

        def run():
            try:
                with np.errstate(all="ignore"):  # the target's overflow is judged by its results, not warned about
                    box["value"] = self.func(*args)
            except BaseException as error:  # noqa: BLE001 - anything the target raises is its ERROR
                box["error"] = error

        thread = threading.Thread(target=run, daemon=True, name=f"bncli-audit-{inputs.name}")
        thread.start()
        thread.join(self.timeout)
        if thread.is_alive():
            raise TargetError(f"timed out after {self.timeout:g} s")
        if "error" in box:
            raise TargetError(f"raised {worker.describe(box['error'])}")
        names = ("x", "weight", "bias", "eps", "dy")
        changed = [
            name
            for name, now, then in zip(names, args, before, strict=True)
            if isinstance(now, np.ndarray) and not np.array_equal(now, then, equal_nan=True)
        ]
        self.note_changed(changed, inputs)
        return box.get("value")


class ProcessTarget(Target):
    """A Python function named by ``FILE.py:FUNCTION`` or ``package.module:FUNCTION``, run in a worker process.

    The worker (:mod:`bncli.audit.worker`) imports the function once and calls it
    for each case. A function that exits the process, crashes or runs past the
    timeout (even holding the interpreter) ends only the worker: the case is an
    ERROR, and a new worker takes the next one. Its prints go to stderr.
    """

    def __init__(self, spec: str, layout: str, timeout: float, style: str = "native"):
        super().__init__(layout, timeout)
        self.spec, self.style = spec, style
        self.name = spec if style == "native" else f"{spec} as {style}"
        self.process: subprocess.Popen | None = None
        try:
            self._start()
        except TargetError as error:  # the import itself hung or crashed: the target cannot be imported
            raise InputError(f"target {spec!r}: {error}") from None

    def _start(self) -> None:
        package_root = str(Path(__file__).resolve().parents[2])  # the folder holding bncli
        path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH", "")) if p)
        self.process = subprocess.Popen(
            [sys.executable, "-m", *styles.worker_command(self.spec, self.style, self.layout)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": path},
            start_new_session=True,  # killed as a group, and not by the terminal's Ctrl-C meant for bncli
        )
        reply = self._reply("importing it")
        if reply[0] == "input-error":
            self.close()
            raise InputError(reply[1])
        assert reply == ("ready",), reply

    def call(self, inputs: CaseInputs):
        if self.process is None or self.process.poll() is not None:
            self._start()
        try:
            worker.send(self.process.stdin, self.arguments(inputs))
        except OSError:
            pass  # the worker is gone: _reply says how
        reply = self._reply("running")
        if reply[0] == "raised":
            raise TargetError(f"raised {reply[1]}")
        if reply[0] == "unusable":
            raise TargetError(reply[1])
        if reply[0] == "input-error":
            raise InputError(reply[1])
        _, value, changed = reply
        self.note_changed(changed, inputs)
        return value

    def _reply(self, doing: str):
        """The worker's next message; a TargetError when it times out or ends (the worker is then gone)."""
        import select

        stream = self.process.stdout
        ready, _, _ = select.select([stream], [], [], self.timeout)
        if not ready:
            self.close()
            raise TargetError(f"timed out after {self.timeout:g} s")
        try:
            message = worker.receive(stream)
        except Exception:  # noqa: BLE001 - a worker killed mid-reply
            message = None
        if message is None:
            status = self.process.wait()
            self.process = None
            how = f"killed by signal {-status}" if status < 0 else f"ended the process (exit status {status})"
            raise TargetError(f"{how} while {doing}")
        return message

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            _kill_group(self.process)
        self.process = None


class BncliTarget(Target):
    """bncli's own core in the case's dtype (the self-test)."""

    name = "bncli"

    def call(self, inputs: CaseInputs):
        bn = core.forward(inputs.x, inputs.weight, inputs.bias, inputs.eps)
        grads = core.backward(inputs.dy, bn)
        return {
            "y": to_layout(bn.y, self.layout),
            "dx": to_layout(grads.dx, self.layout),
            "dw": grads.dw,
            "db": grads.db,
        }


class TorchTarget(FunctionTarget):
    """torch.nn.functional.batch_norm in training mode, gradients by autograd, in the case's dtype."""

    def __init__(self, layout: str, timeout: float):
        try:
            import torch
        except ImportError:
            raise InputError("target torch: PyTorch is not installed (pip install torch)") from None
        super().__init__(_torch_batchnorm(torch, layout), "torch", layout, timeout)


def _torch_batchnorm(torch, layout: str):
    def batchnorm(x, weight, bias, eps, dy):
        tx = torch.from_numpy(x)
        if layout == "nhwc":
            tx = tx.permute(0, 3, 1, 2)  # torch wants channels second; the gradient comes back permuted
        tx = tx.detach().requires_grad_(True)
        tw = torch.from_numpy(weight).requires_grad_(True)
        tb = torch.from_numpy(bias).requires_grad_(True)
        y = torch.nn.functional.batch_norm(tx, None, None, tw, tb, training=True, eps=eps)
        tdy = torch.from_numpy(dy)
        if layout == "nhwc":
            tdy = tdy.permute(0, 3, 1, 2)
        y.backward(tdy)
        back = (lambda t: t.permute(0, 2, 3, 1)) if layout == "nhwc" else (lambda t: t)
        return {
            "y": back(y.detach()).numpy(),
            "dx": back(tx.grad).numpy(),
            "dw": tw.grad.numpy(),
            "db": tb.grad.numpy(),
        }

    return batchnorm


class CommandTarget(Target):
    """An external program run once per case: the contract's ``--cmd`` file protocol.

    The command is split as a shell would (no shell runs) and gets one more
    argument: a fresh folder with x.npy, dy.npy, params.json (and x.csv, dy.csv
    for the nc layout). It writes NAME.npy or NAME.csv for any of y, dx, dw, db.
    The program runs in its own process group, killed whole on timeout.
    """

    def __init__(self, command: str, layout: str, timeout: float):
        super().__init__(layout, timeout)
        try:
            self.argv = shlex.split(command)
        except ValueError as error:
            raise InputError(f"--cmd: cannot split {command!r}: {error}") from None
        if not self.argv:
            raise InputError("--cmd is empty")
        if shutil.which(self.argv[0]) is None:
            program = Path(self.argv[0])
            if program.is_file() and not os.access(program, os.X_OK):
                raise InputError(
                    f"--cmd: {self.argv[0]!r} is not executable: chmod +x it, or name its interpreter "
                    f"(--cmd 'python3 {self.argv[0]}')"
                )
            raise InputError(
                f"--cmd: program {self.argv[0]!r} not found (runs without a shell: use 'env VAR=value PROGRAM')"
            )
        self.name = command
        self.root = tempfile.mkdtemp(prefix="bncli-audit-")

    def call(self, inputs: CaseInputs):
        folder = Path(tempfile.mkdtemp(prefix=f"{inputs.name}-{inputs.dtype}-", dir=self.root))
        try:
            self._write_inputs(folder, inputs)
            self._run(folder)
            return self._read_outputs(folder, inputs)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _write_inputs(self, folder: Path, inputs: CaseInputs) -> None:
        x, dy = to_layout(inputs.x, self.layout), to_layout(inputs.dy, self.layout)
        np.save(folder / "x.npy", x)
        np.save(folder / "dy.npy", dy)
        params = {
            "case": inputs.name,
            "dtype": inputs.dtype,
            "layout": self.layout,
            "shape": list(x.shape),
            "eps": inputs.eps,
            "weight": [float(v) for v in inputs.weight],
            "bias": [float(v) for v in inputs.bias],
        }
        (folder / "params.json").write_text(json.dumps(params))
        if self.layout == "nc":
            _write_csv(folder / "x.csv", inputs.x)
            _write_csv(folder / "dy.csv", inputs.dy)

    def _run(self, folder: Path) -> None:
        """Run the program on ``folder``; its stderr goes to a file, not a pipe, so that a process it
        leaves in the background (holding the descriptor) cannot keep the call from ending."""
        with tempfile.TemporaryFile() as stderr:
            try:
                process = subprocess.Popen(
                    [*self.argv, str(folder)],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=stderr,
                    start_new_session=True,
                )
            except OSError as error:
                raise TargetError(f"could not start {self.argv[0]}: {error.strerror}") from None
            try:
                process.wait(timeout=self.timeout)
            except subprocess.TimeoutExpired:
                raise TargetError(f"timed out after {self.timeout:g} s") from None
            finally:  # on a timeout, Ctrl-C or SIGTERM too: its own session does not get the terminal's signal
                _kill_group(process)  # and what it left running in the background ends with the call
            if process.returncode != 0:
                stderr.seek(0)
                lines = stderr.read().decode("utf-8", "replace").strip().splitlines()
                last = f": {lines[-1].strip()[:200]}" if lines else ""
                raise TargetError(f"exit status {process.returncode}{last}")

    def _read_outputs(self, folder: Path, inputs: CaseInputs) -> dict:
        k, n = inputs.x.shape
        outputs = {}
        for name in ("y", "dx", "dw", "db"):
            npy, csv = folder / f"{name}.npy", folder / f"{name}.csv"
            if npy.exists():
                outputs[name] = _read_npy(npy)
            elif csv.exists():
                values = _read_csv(csv)
                if name not in ("dw", "db") and self.layout != "nc" and values.size == k * n:
                    values = values.reshape(layout_shape(k, n, self.layout))  # a csv holds 4-D arrays flattened
                outputs[name] = values
        return outputs

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def _read_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError):
        raise TargetError(f"{path.name} is not a readable .npy file of numbers") from None


def _read_csv(path: Path) -> np.ndarray:
    """A csv the program wrote, read as bncli reads its own input (a UTF-8 BOM, quoted numbers), except
    that NaN and infinity are results like any other (elements beyond budget); anything else that is
    not a number is named by bncli's careful reader, with its line and column."""
    from ..io.read import read_matrix

    try:
        return read_matrix(str(path), delimiter=",", header=False, finite=False).values
    except InputError as error:
        raise TargetError(str(error).replace(str(path), path.name)) from None


def _write_csv(path: Path, values: np.ndarray) -> None:
    """No header, commas, the shortest text that reads back to the same float."""
    text = "\n".join(",".join(repr(float(v)) for v in row) for row in values.tolist())
    path.write_text(text + "\n")


def _kill_group(process: subprocess.Popen) -> None:
    """End the process and everything in its group (its own session), and reap it."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    process.wait()


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
