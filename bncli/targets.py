"""How an audited implementation is called: one small interface, ``call(inputs) -> outputs``.

Targets: a Python function (``path/to/file.py:func`` or ``package.module:func``, or a
callable given to :func:`bncli.audit`), an external program (``--cmd``, the contract's
file protocol), PyTorch's functional batch_norm with autograd (``torch``), and
bncli's own core (``bncli``). A call that raises, hangs past the timeout or exits
non-zero raises :class:`TargetError` (an ERROR for that case); a target that cannot
be found is an :class:`~bncli.tables.InputError` (bad usage).
"""

from __future__ import annotations

import importlib
import importlib.util
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

from .auditing import CaseInputs, layout_shape, to_layout
from .tables import InputError


class TargetError(Exception):
    """The target did not run or did not return a well-formed result (one line)."""


class Target:
    """Base: ``name``, ``call(inputs)`` returning a mapping or tuple of y, dx, dw, db, ``close()``."""

    name = "target"

    def __init__(self, layout: str, timeout: float):
        self.layout = layout
        self.timeout = timeout if math.isfinite(timeout) else None  # inf: wait as long as it takes

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
        x, dy = to_layout(inputs.x, self.layout).copy(), to_layout(inputs.dy, self.layout).copy()
        args = (x, inputs.weight.copy(), inputs.bias.copy(), inputs.eps, dy)
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
            error = box["error"]
            text = str(error).strip().splitlines()
            raise TargetError(f"raised {type(error).__name__}: {text[-1] if text else ''}".rstrip(": "))
        return box.get("value")


class BncliTarget(Target):
    """bncli's own core in the case's dtype (the self-test)."""

    name = "bncli"

    def call(self, inputs: CaseInputs):
        from . import core

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
            raise InputError(f"--cmd: program {self.argv[0]!r} not found")
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
        try:
            process = subprocess.Popen(
                [*self.argv, str(folder)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as error:
            raise TargetError(f"could not start {self.argv[0]}: {error.strerror}") from None
        try:
            _, stderr = process.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            raise TargetError(f"timed out after {self.timeout:g} s") from None
        if process.returncode != 0:
            lines = stderr.decode("utf-8", "replace").strip().splitlines()
            last = f": {lines[-1].strip()}" if lines else ""
            raise TargetError(f"exit status {process.returncode}{last}")

    def _read_outputs(self, folder: Path, inputs: CaseInputs) -> dict:
        k, n = inputs.x.shape
        outputs = {}
        for name in ("y", "dx", "dw", "db"):
            npy, csv = folder / f"{name}.npy", folder / f"{name}.csv"
            try:
                if npy.exists():
                    outputs[name] = np.load(npy, allow_pickle=False)
                elif csv.exists():
                    values = np.loadtxt(csv, delimiter=",", ndmin=2, dtype=np.float64)
                    outputs[name] = values if name in ("dw", "db") else values.reshape(layout_shape(k, n, self.layout))
            except (ValueError, OSError) as error:
                raise TargetError(f"cannot read {name}: {str(error).splitlines()[0]}") from None
        return outputs

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def _write_csv(path: Path, values: np.ndarray) -> None:
    """No header, commas, the shortest text that reads back to the same float."""
    text = "\n".join(",".join(repr(float(v)) for v in row) for row in values.tolist())
    path.write_text(text + "\n")


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.communicate()


def load_function(spec: str):
    """``path/to/file.py:func`` (its folder first on sys.path) or ``package.module:func``."""
    location, _, attribute = spec.rpartition(":")
    if not location or not attribute:
        raise InputError(f"target {spec!r}: expected FILE.py:FUNCTION, package.module:FUNCTION, torch or bncli")
    if location.endswith(".py") or os.sep in location or "/" in location:
        path = Path(location)
        if not path.is_file():
            raise InputError(f"target {spec!r}: no file {location}")
        folder = str(path.resolve().parent)
        if folder not in sys.path:
            sys.path.insert(0, folder)
        module_name = f"bncli_audit_target_{path.stem}"
        spec_ = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec_)
        sys.modules[module_name] = module  # as an import would: dataclasses and pickle look the module up
        try:
            spec_.loader.exec_module(module)
        except (Exception, SystemExit) as error:  # noqa: BLE001 - any failure to import is the user's input error
            del sys.modules[module_name]
            raise InputError(f"target {spec!r}: importing {location} failed: {type(error).__name__}: {error}") from None
    else:
        if "" not in sys.path and os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        try:
            module = importlib.import_module(location)
        except (Exception, SystemExit) as error:  # noqa: BLE001
            raise InputError(f"target {spec!r}: cannot import {location}: {type(error).__name__}: {error}") from None
    func = getattr(module, attribute, None)
    if not callable(func):
        raise InputError(f"target {spec!r}: {location} has no function {attribute!r}")
    return func


def resolve(target, *, cmd: str | None, layout: str, timeout: float) -> Target:
    """The Target for a name, a callable, or ``--cmd``."""
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
    return FunctionTarget(load_function(str(target)), str(target), layout, timeout)
