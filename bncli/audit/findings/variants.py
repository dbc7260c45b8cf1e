"""The classic mistakes as variants: what each computes, in float64 from a case's inputs, and its fix.

Each variant computes what a known mistake computes (unbiased variance, eps outside
the root, a missing term of dx, ...), with its own textbook backward; an output that
is the variant's to rounding, or far closer to it than to the exact value, is named
with its fix (:func:`distance`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ... import core
from ..cases import CaseInputs
from ..precisions import cast as cast_to
from ..precisions import parameter_dtype
from ..reference import Reference, element_budgets

# A variant whose output departs this little from a trivial one (y = b: s ≈ 0; a gradient ≈ 0),
# beside how far the exact output departs from it, has collapsed: it would "match" any output
# that collapsed too, by accident.
TRIVIAL = 1e-3


@dataclass(frozen=True)
class Variant:
    """A classic mistake: its kind (the json name), what it is, its fix, what it computes."""

    kind: str
    name: str
    fix: str
    compute: Callable[[CaseInputs], dict[str, np.ndarray]]

    def values(self, inputs: CaseInputs) -> dict[str, np.ndarray]:
        """The variant's outputs; empty where they overflow (then it explains nothing)."""
        try:
            with np.errstate(all="ignore"):
                values = self.compute(inputs)
        except _Unrepresentable:
            return {}
        return values if all(np.isfinite(v).all() for v in values.values()) else {}


class _Unrepresentable(Exception):
    """The variance overflows float64: the variants, computed plainly, mean nothing there."""


def _stats(inputs: CaseInputs, eps: float | None = None):
    x, g = inputs.x.astype(np.float64), inputs.dy.astype(np.float64)
    eps = inputs.eps if eps is None else eps
    bn = core.forward(x, inputs.weight.astype(np.float64), inputs.bias.astype(np.float64), eps)
    if not np.isfinite(bn.var).all():
        raise _Unrepresentable
    return x, g, bn


def textbook(x, g, w, b, mean, std) -> dict[str, np.ndarray]:
    """Forward and backward with the given per-column mean and std (the variants' common body)."""
    k = x.shape[0]
    s = (x - mean) / std
    db, dw = g.sum(axis=0), (g * s).sum(axis=0)
    dx = (w / std) * (g - db / k - s * dw / k)
    return {"y": w * s + b, "dx": dx, "dw": dw, "db": db}


def with_eps(eps: float) -> Callable[[CaseInputs], dict[str, np.ndarray]]:
    """A correct batch norm at another eps than the case's (a target that fixes its own)."""

    def compute(inputs):
        x, g, bn = _stats(inputs, eps)
        return textbook(x, g, bn.weight, bn.bias, bn.mean, bn.std)

    return compute


def _unbiased(inputs):
    """The unbiased variance, with the backward written by hand for the biased one (cached σ, s over k)."""
    x, g, bn = _stats(inputs)
    k = x.shape[0]
    if k < 2:
        return {}
    std = np.sqrt(bn.var * k / (k - 1) + inputs.eps)
    return textbook(x, g, bn.weight, bn.bias, bn.mean, std)


def _unbiased_differentiated(inputs):
    """The unbiased variance differentiated exactly, as autograd does: ∂σ/∂x = (x − m)/((k − 1)·σ), so dx's
    s term is over k − 1; the hand-written backward's over k is farther from it than the exact dx for small k."""
    values = _unbiased(inputs)
    if values:
        x, g, bn = _stats(inputs)
        k = x.shape[0]
        std = np.sqrt(bn.var * k / (k - 1) + inputs.eps)
        s = (x - bn.mean) / std
        values["dx"] = (bn.weight / std) * (g - values["db"] / k - s * values["dw"] / (k - 1))
    return values


def _eps_outside(inputs):
    x, g, bn = _stats(inputs)
    return textbook(x, g, bn.weight, bn.bias, bn.mean, np.sqrt(bn.var) + inputs.eps)


def _running(unbiased: bool, on_new: float):
    """Running statistics updated with ``on_new`` the weight of the new batch, the variance unbiased or not."""

    def compute(inputs):
        x, _, bn = _stats(inputs)
        k = x.shape[0]
        start_mean, start_var = inputs.start_statistics()
        var = bn.var * (k / (k - 1)) if unbiased and k > 1 else bn.var
        keep = 1 - on_new
        return {"running_mean": keep * start_mean + on_new * bn.mean, "running_var": keep * start_var + on_new * var}

    return compute


def _biased_running(inputs):
    return _running(False, inputs.momentum)(inputs)


def _reversed_momentum(unbiased: bool):
    """Keras's convention (momentum 0.99 keeps 99 % of the old), with the variance unbiased or not."""
    return lambda inputs: _running(unbiased, 1 - inputs.momentum)(inputs)


def _batch_statistics(inputs):
    """Eval mode computed as training mode: the batch's mean and variance, and their gradient."""
    x, g, bn = _stats(inputs)
    grads = core.backward(g, bn)
    return {"y": bn.y, "dx": grads.dx, "dw": grads.dw, "db": grads.db}


def _dx_only(formula):
    def compute(inputs):
        x, g, bn = _stats(inputs)
        k, s, a = x.shape[0], bn.s, bn.weight / bn.std
        return {"dx": formula(a, g, s, k)}

    return compute


def _swapped(inputs):
    x, g, bn = _stats(inputs)
    grads = core.backward(g, bn)
    return {"dw": grads.db, "db": grads.dw}


def _one_pass(inputs):
    """E[x²] − E[x]² in the case's dtype (a half precision's in float32, as its statistics are), as numpy
    code computes it."""
    x = inputs.x.astype(parameter_dtype(inputs.dtype))
    mean = x.mean(axis=0)
    var = np.maximum((x * x).mean(axis=0) - mean * mean, 0)
    std = np.sqrt(var.astype(np.float64) + inputs.eps)
    x64, g = x.astype(np.float64), inputs.dy.astype(np.float64)
    return textbook(x64, g, inputs.weight.astype(np.float64), inputs.bias.astype(np.float64), mean, std)


DX_FIX = "dx = (w/σ)·(dy − mean(dy) − s·mean(dy·s))"
REVERSED = "the reversed momentum convention (Keras: momentum = weight of the old statistics)"
REVERSED_FIX = "running ← (1 − momentum)·running + momentum·batch: PyTorch's momentum weighs the new batch"
ONE_PASS_FIX = "compute the variance in two passes: mean first, then mean((x − m)²)"
VARIANTS = (
    Variant(
        "unbiased_variance",
        "unbiased variance (divided by k − 1)",
        "divide by k: training mode uses the biased variance",
        _unbiased,
    ),
    Variant(
        "unbiased_variance",
        "unbiased variance (divided by k − 1)",
        "divide by k: training mode uses the biased variance",
        _unbiased_differentiated,
    ),
    Variant("eps_outside_sqrt", "eps outside the square root (σ = √v + ε)", "use σ = √(v + ε)", _eps_outside),
    Variant(
        "missing_mean_term",
        "dx without the mean term (−Σdy/k missing)",
        DX_FIX,
        _dx_only(lambda a, g, s, k: a * (g - s * (g * s).sum(axis=0) / k)),
    ),
    Variant(
        "missing_s_term",
        "dx without the s term (−s·Σ(dy·s)/k missing)",
        DX_FIX,
        _dx_only(lambda a, g, s, k: a * (g - g.sum(axis=0) / k)),
    ),
    Variant(
        "eval_gradient_in_training",
        "the eval-mode gradient dx = (w/σ)·dy used in training",
        f"in training the mean and variance depend on x: {DX_FIX}",
        _dx_only(lambda a, g, s, k: a * g),
    ),
    Variant("dw_db_swapped", "dw and db swapped", "dw = Σ dy·s and db = Σ dy", _swapped),
    Variant("one_pass_variance", "a one-pass variance E[x²] − E[x]²", ONE_PASS_FIX, _one_pass),
    Variant(
        "biased_running_variance",
        "a running variance updated with the biased batch variance",
        "update the running variance with the unbiased batch variance v·k/(k − 1), as PyTorch does",
        _biased_running,
    ),
    Variant("reversed_momentum", REVERSED, REVERSED_FIX, _reversed_momentum(True)),
    Variant(
        "reversed_momentum",
        f"{REVERSED} and a biased running variance",
        f"{REVERSED_FIX}, with the unbiased batch variance v·k/(k − 1)",
        _reversed_momentum(False),
    ),
)
# In eval mode only these mistakes make sense: the training-mode ones compute batch statistics.
EVAL_VARIANTS = (
    Variant(
        "batch_statistics_in_eval",
        "the batch's statistics used in eval mode",
        "in eval mode normalize with the running statistics: y = w·(x − rm)/√(rv + ε) + b, dx = (w/√(rv + ε))·dy",
        _batch_statistics,
    ),
)


def cast_down(inputs: CaseInputs) -> tuple[dict[str, np.ndarray], dict[str, float], list[str]]:
    """Eval mode with the float32 running statistics, weight and bias cast to the input's half dtype first,
    as a compiler or a ``.half()`` on the whole model does; those that the cast sends to inf (by their
    largest value); those it changes. Nothing when the cast leaves every one as it is."""
    start_mean, start_var = inputs.start_statistics()
    given = {"running_mean": start_mean, "running_var": start_var, "weight": inputs.weight, "bias": inputs.bias}
    with np.errstate(over="ignore"):
        cast = {name: cast_to(values, inputs.dtype).astype(np.float64) for name, values in given.items()}
    lost = {name: float(np.max(np.abs(given[name]))) for name in given if not np.isfinite(cast[name]).all()}
    changed = [name for name in given if not np.array_equal(cast[name], given[name])]
    if not changed:
        return {}, {}, []
    x, g = inputs.x.astype(np.float64), inputs.dy.astype(np.float64)
    with np.errstate(all="ignore"):
        scale = 1 / np.sqrt(cast["running_var"] + inputs.eps)  # an inf variance gives 0: y = b, dx = 0
        y = cast["weight"] * ((x - cast["running_mean"]) * scale) + cast["bias"]
        dx = cast["weight"] * scale * g
        s = (x - cast["running_mean"]) * scale
    return {"y": y, "dx": dx, "dw": (g * s).sum(axis=0), "db": g.sum(axis=0)}, lost, changed


def collapsed(name: str, values: np.ndarray, inputs: CaseInputs, ref: Reference) -> bool:
    """The variant's output is trivial here: y ≈ b, or a gradient ≈ 0, beside the exact output."""
    trivial = inputs.bias.astype(np.float64) if name == "y" else 0.0
    with np.errstate(invalid="ignore", over="ignore"):
        departs = np.nanmax(np.abs(values - trivial), initial=0)
        return bool(departs <= TRIVIAL * np.nanmax(np.abs(ref.values[name] - trivial), initial=0))


def distance(
    name: str, obtained: np.ndarray, values: dict[str, np.ndarray], ref: Reference, inputs: CaseInputs, strict=False
):
    """How far ``obtained`` is from the variant on the natural scale, or None where the variant explains
    nothing: it has no such output, the output is not finite, or the variant's value collapsed to ≈ 0.

    A match is a distance within the budget (the variant's to rounding), or (unless ``strict``) 100×
    closer to the variant than to the exact value.
    """
    if name not in values or not np.all(np.isfinite(obtained)) or collapsed(name, values[name], inputs, ref):
        return None
    scale = ref.scales[name]
    with np.errstate(invalid="ignore", over="ignore"):
        to_variant = np.abs(obtained - values[name]) / scale
        within = bool(np.all(to_variant <= element_budgets(name, inputs.dtype, ref)))
        to_variant = float(np.nanmax(to_variant, initial=0))
        to_exact = float(np.nanmax(np.abs(obtained - ref.values[name]) / scale, initial=0))
    closer = not strict and to_variant <= 0.01 * to_exact
    return to_variant if within or closer else None
