"""Implementations as people write them: a cs231n ``layers.py``, a torch module or function, a jax function.

Each style is an adapter of bncli's own that turns the user's code into the native
convention ``func(x, weight, bias, eps, dy) -> {"y", "dx", "dw", "db"}``, so the user
writes no glue. The adapter is built inside the worker process
(``python -m bncli.audit.styles SPEC STYLE LAYOUT``): torch and jax are imported there,
once per audit, and a target that hangs, crashes or prints ends only the worker, as a
native Python target does. A target that is not what its style expects (a module whose
constructor takes no eps, a cs231n forward that returns no cache) is an
:class:`~bncli.errors.InputError` naming what was found and what the style expects.

:func:`detect` picks the style from the file's source alone (parsed, never run) when
only one style fits; :func:`choose` lets the flag win.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import sys
from pathlib import Path

from ..errors import InputError
from ..options import DEFAULT_MOMENTUM, STYLES
from . import worker
from .interface import ByDesign

CS231N_FORWARD = {"nc": "batchnorm_forward", "nchw": "spatial_batchnorm_forward"}
CS231N_BACKWARD = {"nc": "batchnorm_backward", "nchw": "spatial_batchnorm_backward"}
# The framework each style imports, and the install line named when it is missing.
FRAMEWORKS = {"torch": ("torch", "pip install torch"), "jax": ("jax", "pip install jax")}
AFFINE_NAMES = (("weight", "bias"), ("gamma", "beta"))
STYLED_ARGUMENTS = "(x, weight, bias, eps)"


# ----------------------------------------------------------------------------- choosing a style


def choose(target, *, cmd: str | None, style: str | None, layout: str) -> str:
    """The style a target is called in: the flag when given, else :func:`detect`'s; native for
    targets that are not Python code named by a file or module (``--cmd``, a callable, torch, bncli)."""
    if style is not None and style not in STYLES:
        raise InputError(f"unknown style {style!r}; use {', '.join(STYLES)}")
    named_code = cmd is None and isinstance(target, str) and target not in ("torch", "bncli")
    if not named_code:
        if style not in (None, "native"):
            raise InputError(f"--style {style} applies to a TARGET naming Python code (FILE.py or FILE.py:NAME)")
        return "native"
    chosen = detect(target) if style is None else style
    if chosen == "cs231n" and layout not in CS231N_FORWARD:
        raise InputError(
            f"style cs231n has no {layout} layout: batchnorm_forward takes N×D (--layout nc), "
            f"spatial_batchnorm_forward N×C×H×W (--layout nchw)"
        )
    return chosen


def detect(target: str) -> str:
    """The style ``FILE.py[:NAME]`` is written in when its source allows only one, else native.

    cs231n: a file without NAME, or NAME taking two arguments (dout, cache), beside a
    batchnorm_forward. torch: NAME a class in a file that imports torch. torch or jax: NAME a
    function of four arguments (x, weight, bias, eps: native takes dy too) in a file that
    imports one of them only.
    """
    location, _, name = target.rpartition(":") if ":" in target else (target, "", "")
    tree = _parsed(location)
    if tree is None:
        return "native"
    definitions = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef | ast.ClassDef)}
    has_forward = any(forward in definitions for forward in CS231N_FORWARD.values())
    frameworks = _imported(tree) & set(FRAMEWORKS)
    node = definitions.get(name)
    if not name:
        return "cs231n" if has_forward else "native"
    if isinstance(node, ast.ClassDef):
        return "torch" if "torch" in frameworks else "native"
    if isinstance(node, ast.FunctionDef):
        return _function_style(node, has_forward, frameworks)
    return "native"


def _function_style(node: ast.FunctionDef, has_forward: bool, frameworks: set[str]) -> str:
    if node.args.vararg is not None:
        return "native"
    positional = len(node.args.posonlyargs) + len(node.args.args)
    if positional == 2 and has_forward:
        return "cs231n"
    if positional == 4 and len(frameworks) == 1:
        return frameworks.pop()
    return "native"


def _parsed(location: str) -> ast.Module | None:
    if not location.endswith(".py"):
        return None
    try:
        return ast.parse(Path(location).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, SyntaxError, ValueError):
        return None  # native then, whose import names the problem


def _imported(tree: ast.Module) -> set[str]:
    """The top-level packages the module imports, anywhere in it."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def worker_command(spec: str, style: str, layout: str) -> list[str]:
    """The ``python -m`` arguments of the process a Python target runs in."""
    if style == "native":
        return ["bncli.audit.worker", spec]
    return ["bncli.audit.styles", spec, style, layout]


# ----------------------------------------------------------------------------- the adapters


def load(spec: str, style: str, layout: str):
    """The target as a native function ``f(x, weight, bias, eps, dy)``; run in the worker process."""
    if style == "cs231n":
        return _cs231n(spec, layout)
    if style == "torch":
        return _torch(spec)
    if style == "jax":
        return _jax(spec)
    return worker.load_function(spec)


def _cs231n(spec: str, layout: str):
    """``batchnorm_forward(x, gamma, beta, bn_param) -> (out, cache)``, then ``BACKWARD(dout, cache)``."""
    location, _, backward_name = spec.rpartition(":") if ":" in spec else (spec, "", "")
    module = worker.load_module(spec, location)
    forward_name = CS231N_FORWARD[layout]
    backward_name = backward_name or CS231N_BACKWARD[layout]
    forward, backward = (_function_in(module, spec, location, name) for name in (forward_name, backward_name))
    no_cache = (
        f'y is judged alone under --eval: {forward_name} returns no cache in mode "test" (as the assignment\'s '
        f"does), so there is no {backward_name} to call: dx, dw, db are not expected of it there"
    )

    def batchnorm(x, weight, bias, eps, dy, running_mean, running_var, momentum=DEFAULT_MOMENTUM, training=True):
        given = {"running_mean": running_mean, "running_var": running_var}
        before = {name: value.copy() for name, value in given.items()}
        bn_param = {"mode": "train" if training else "test", "eps": eps, "momentum": momentum, **given}
        out, cache = _unpacked(forward(x, weight, bias, bn_param), 2, spec, forward_name, "(out, cache)")
        written = _written(bn_param, given, before)
        if cache is None and not training:  # the assignment's test mode keeps no cache: y alone, no backward
            return ByDesign({"y": out, **written}, no_cache)
        dx, dgamma, dbeta = _unpacked(backward(dy, cache), 3, spec, backward_name, "(dx, dgamma, dbeta)")
        return {"y": out, "dx": dx, "dw": dgamma, "db": dbeta, **written}

    batchnorm.expected_running = ()  # a forward that never writes bn_param's running statistics keeps none
    return batchnorm


def _written(bn_param: dict, given: dict, before: dict) -> dict:
    """The running statistics a cs231n forward wrote into ``bn_param``, replaced or changed in place; one
    left as given is not returned (MISSING: that forward keeps no running statistics)."""
    import numpy as np

    written = {}
    for name, value in given.items():
        now = bn_param.get(name)
        if now is not None and (now is not value or not np.array_equal(now, before[name], equal_nan=True)):
            written[name] = now
    return written


def _function_in(module, spec: str, location: str, name: str):
    function = getattr(module, name, None)
    if callable(function):
        return function
    found = sorted(n for n, v in vars(module).items() if callable(v) and "batchnorm" in n.lower())
    what = f"it defines {', '.join(found)}" if found else "it defines no function named like batchnorm"
    raise InputError(f"target {spec!r}: style cs231n calls {name} from {location}, but {what}")


def _unpacked(value, count: int, spec: str, name: str, expected: str) -> tuple:
    if isinstance(value, tuple | list) and len(value) == count:
        return tuple(value)
    raise InputError(f"target {spec!r}: {name} returned {_kind(value)}; style cs231n expects {expected}")


def _kind(value) -> str:
    """What a value is, in a few words, for a message."""
    if value is None:
        return "None"
    if isinstance(value, tuple | list):
        return f"a {type(value).__name__} of {len(value)} items"
    shape = getattr(value, "shape", None)
    return f"a {type(value).__name__}" + (f" of shape {tuple(shape)}" if shape is not None else "")


def _framework(style: str):
    package, install = FRAMEWORKS[style]
    try:
        return importlib.import_module(package)
    except ImportError:
        raise InputError(f"style {style} needs {package}, which is not installed here ({install})") from None


def _check_arguments(spec: str, function, style: str) -> None:
    """A function of a framework's style must take (x, weight, bias, eps)."""
    try:
        inspect.signature(function).bind(*range(4))
    except TypeError:
        raise InputError(
            f"target {spec!r}: {function.__name__}{inspect.signature(function)} cannot be called as "
            f"f{STYLED_ARGUMENTS}, which style {style} does"
        ) from None
    except ValueError:
        pass  # a builtin without a signature: calling it tells


def _check_framework(spec: str, function, style: str) -> None:
    """A function whose module uses the other framework and not this style's: called on this style's arrays
    it raises on every case, which is the style chosen wrongly (bad usage), not the target's ERROR."""
    module = sys.modules.get(getattr(function, "__module__", None) or "")
    used = _frameworks_used(module)
    other = next(name for name in FRAMEWORKS if name != style)
    if other in used and style not in used:
        arrays = "torch tensors" if style == "torch" else "jax arrays"
        raise InputError(
            f"target {spec!r}: {getattr(function, '__name__', 'it')} uses {other}, not {style}, and style {style} "
            f"calls it on {arrays}: use --style {other}"
        )


def _frameworks_used(module) -> set[str]:
    """The frameworks whose modules or functions a module's names refer to (``import jax.numpy as jnp``,
    ``from torch import sqrt``)."""
    used = set()
    for value in vars(module).values() if module is not None else ():
        name = value.__name__ if inspect.ismodule(value) else getattr(value, "__module__", None)
        root = name.split(".")[0] if isinstance(name, str) else None
        if root in FRAMEWORKS:
            used.add(root)
    return used


def _torch(spec: str):
    """An ``nn.Module`` subclass built as ``NAME(num_features, eps=eps)``, or ``f(x, weight, bias, eps)``."""
    torch = _framework("torch")
    target = worker.load_function(spec)
    if not isinstance(target, type):
        _check_arguments(spec, target, "torch")
        _check_framework(spec, target, "torch")

        def run_function(x, weight, bias, eps, running):
            if not running["training"]:  # a function has no mode to be told: no inference mode to audit
                raise InputError(
                    f"--eval: {spec} is a function f{STYLED_ARGUMENTS}, which style torch cannot tell it is in "
                    "inference mode; audit it in training mode, or audit an nn.Module (put in .eval())"
                )
            return target(x, weight, bias, eps), weight, bias, {}

        return _torch_call(torch, spec, run_function)
    if not issubclass(target, torch.nn.Module):
        raise InputError(
            f"target {spec!r}: {target.__name__} is a class but not a torch.nn.Module subclass; style torch "
            f"expects a Module built as {target.__name__}(num_features, eps=eps), or a function f{STYLED_ARGUMENTS}"
        )
    try:
        inspect.signature(target).bind(1, eps=1.0)
    except TypeError:
        raise InputError(
            f"target {spec!r}: the constructor {target.__name__}{inspect.signature(target)} cannot be called as "
            f"{target.__name__}(num_features, eps=eps), which style torch does"
        ) from None

    def run_module(x, weight, bias, eps, running):
        # fresh (no .grad), in the parameters' dtype: float32 beside half-precision x, as autocast keeps it
        module = target(weight.shape[0], eps=eps).to(weight.dtype).train(running["training"])
        w, b = _affine(spec, module, weight.shape[0])
        buffers = _running_buffers(torch, module, running)
        with torch.no_grad():
            w.copy_(weight.detach().reshape(w.shape))
            b.copy_(bias.detach().reshape(b.shape))
        y = module(x)
        return y, w, b, {name: _numpy(buffer, flat=True) for name, buffer in buffers.items()}

    return _torch_call(torch, spec, run_module)


def _running_buffers(torch, module, running: dict) -> dict:
    """The module's running_mean and running_var buffers (those it has, by name, as its parameters are found: a
    submodule's too), set to the case's start values; its momentum, and its submodules', to the case's
    (PyTorch's attribute, where they have one)."""
    buffers = {}
    named = dict(module.named_buffers())
    with torch.no_grad():
        for name in ("running_mean", "running_var"):
            buffer = _by_name(named, name)
            if isinstance(buffer, torch.Tensor) and buffer.numel() == running[name].size:
                buffer.copy_(as_tensor(torch, running[name]).reshape(buffer.shape))
                buffers[name] = buffer
    for part in module.modules():
        if isinstance(getattr(part, "momentum", None), float):
            part.momentum = running["momentum"]
    return buffers


def _torch_call(torch, spec: str, forward):
    """The native function: ``forward(x, weight, bias, eps, running) -> (y, w, b, running statistics)`` on
    tensors, backward by autograd; ``running`` the case's start values, momentum and mode."""

    def batchnorm(x, weight, bias, eps, dy, running_mean, running_var, momentum, training):
        tx = as_tensor(torch, x).requires_grad_(True)
        tw, tb = (as_tensor(torch, a).requires_grad_(True) for a in (weight, bias))
        running = {"running_mean": running_mean, "running_var": running_var, "momentum": momentum,
                   "training": training}  # fmt: skip
        y, w, b, statistics = forward(tx, tw, tb, eps, running)
        if not isinstance(y, torch.Tensor):
            raise InputError(f"target {spec!r}: returned {_kind(y)}; style torch expects the tensor y")
        y.backward(as_tensor(torch, dy).to(y.dtype))
        gradients = {"dx": _numpy(tx.grad), "dw": _numpy(w.grad, flat=True), "db": _numpy(b.grad, flat=True)}
        return {"y": _numpy(y), **gradients, **statistics}

    batchnorm.expected_running = ()  # a module without running buffers, or a function, keeps none
    return batchnorm


def _numpy(tensor, flat: bool = False):
    """A tensor as a numpy array, a parameter's gradient ``flat`` (one value per feature, whatever shape the
    module gave it); None, a gradient autograd never reached, stays None (that quantity is MISSING)."""
    if tensor is None:
        return None
    array = as_array(tensor)
    return array.reshape(-1) if flat else array


def as_tensor(torch, array):
    """A numpy array as a tensor of its dtype, sharing its memory; bfloat16 (ml_dtypes', which
    ``torch.from_numpy`` does not know) by its bits."""
    if array.dtype.name == "bfloat16":
        return torch.from_numpy(array.view("int16")).view(torch.bfloat16)
    return torch.from_numpy(array)


def as_array(tensor):
    """A tensor as a numpy array; a bfloat16 one as float32, which holds its values exactly."""
    import torch

    tensor = tensor.detach()
    return (tensor.float() if tensor.dtype == torch.bfloat16 else tensor).numpy()


def _affine(spec: str, module, features: int):
    """The module's weight and bias (or gamma and beta), by name, each of ``features`` values."""
    parameters = dict(module.named_parameters())
    for names in AFFINE_NAMES:
        found = [_by_name(parameters, name) for name in names]
        if all(p is not None for p in found):
            for name, parameter in zip(names, found, strict=True):
                if parameter.numel() != features:
                    raise InputError(
                        f"target {spec!r}: its {name} has shape {tuple(parameter.shape)}; style torch expects "
                        f"{features} values (num_features), in any shape that broadcasts"
                    )
            return found
    listed = ", ".join(f"{name} {tuple(p.shape)}" for name, p in parameters.items()) or "none"
    raise InputError(
        f"target {spec!r}: its parameters are {listed}; style torch expects weight and bias (or gamma and beta)"
    )


def _by_name(parameters: dict, name: str):
    """The parameter called ``name`` itself, or the one parameter whose name ends in it (a submodule's)."""
    if name in parameters:
        return parameters[name]
    nested = [p for key, p in parameters.items() if key.rsplit(".", 1)[-1] == name]
    return nested[0] if len(nested) == 1 else None


def _jax(spec: str):
    """``f(x, weight, bias, eps)`` on jax arrays, in 64-bit mode, the backward by ``jax.vjp``."""
    jax = _framework("jax")
    jax.config.update("jax_enable_x64", True)  # before the target's import: else float64 silently becomes float32
    import jax.numpy as jnp
    import numpy as np

    function = worker.load_function(spec)
    _check_arguments(spec, function, "jax")
    _check_framework(spec, function, "jax")

    def batchnorm(x, weight, bias, eps, dy):
        y, pullback = jax.vjp(lambda *arrays: function(*arrays, eps), *map(jnp.asarray, (x, weight, bias)))
        if not isinstance(y, jax.Array):
            raise InputError(f"target {spec!r}: returned {_kind(y)}; style jax expects the array y")
        dx, dw, db = pullback(jnp.asarray(dy, dtype=y.dtype))
        return {"y": np.asarray(y), "dx": np.asarray(dx), "dw": np.asarray(dw), "db": np.asarray(db)}

    return batchnorm


if __name__ == "__main__":
    worker.main(lambda spec: load(spec, sys.argv[2], sys.argv[3]))
