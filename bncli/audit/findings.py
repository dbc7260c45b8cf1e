"""The diagnosis: which classic mistake a failing output matches, and how to fix it.

Each variant computes, in float64 from the case's inputs, what a known mistake
computes (unbiased variance, eps outside the root, a missing term of dx, ...), with
its own textbook backward; an output that is the variant's to rounding, or far
closer to it than to the exact value, is named with its fix.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .. import core
from .cases import QUANTITIES, YARDSTICK, CaseInputs
from .judge import CaseResult
from .reference import Reference, budget


@dataclass(frozen=True)
class Variant:
    """A classic mistake: what it computes (float64 from the case's inputs), and its fix."""

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


def _stats(inputs: CaseInputs):
    x, g = inputs.x.astype(np.float64), inputs.dy.astype(np.float64)
    bn = core.forward(x, inputs.weight.astype(np.float64), inputs.bias.astype(np.float64), inputs.eps)
    if not np.isfinite(bn.var).all():
        raise _Unrepresentable
    return x, g, bn


class _Unrepresentable(Exception):
    """The variance overflows float64: the variants, computed plainly, mean nothing there."""


def _textbook(x, g, w, b, mean, std) -> dict[str, np.ndarray]:
    """Forward and backward with the given per-column mean and std (the variants' common body)."""
    k = x.shape[0]
    s = (x - mean) / std
    db, dw = g.sum(axis=0), (g * s).sum(axis=0)
    dx = (w / std) * (g - db / k - s * dw / k)
    return {"y": w * s + b, "dx": dx, "dw": dw, "db": db}


def _unbiased(inputs):
    x, g, bn = _stats(inputs)
    k = x.shape[0]
    if k < 2:
        return {}
    std = np.sqrt(bn.var * k / (k - 1) + inputs.eps)
    return _textbook(x, g, bn.weight, bn.bias, bn.mean, std)


def _eps_outside(inputs):
    x, g, bn = _stats(inputs)
    return _textbook(x, g, bn.weight, bn.bias, bn.mean, np.sqrt(bn.var) + inputs.eps)


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
    """E[x²] − E[x]² in the case's dtype, as such code computes it."""
    x = inputs.x
    mean = x.mean(axis=0)
    var = np.maximum((x * x).mean(axis=0) - mean * mean, 0)
    std = np.sqrt(var.astype(np.float64) + inputs.eps)
    x64, g = x.astype(np.float64), inputs.dy.astype(np.float64)
    return _textbook(x64, g, inputs.weight.astype(np.float64), inputs.bias.astype(np.float64), mean, std)


VARIANTS = (
    Variant("unbiased variance (divided by k − 1)", "divide by k: training mode uses the biased variance", _unbiased),
    Variant("eps outside the square root (σ = √v + ε)", "use σ = √(v + ε)", _eps_outside),
    Variant(
        "dx without the mean term (−Σdy/k missing)",
        "dx = (w/σ)·(dy − mean(dy) − s·mean(dy·s))",
        _dx_only(lambda a, g, s, k: a * (g - s * (g * s).sum(axis=0) / k)),
    ),
    Variant(
        "dx without the s term (−s·Σ(dy·s)/k missing)",
        "dx = (w/σ)·(dy − mean(dy) − s·mean(dy·s))",
        _dx_only(lambda a, g, s, k: a * (g - g.sum(axis=0) / k)),
    ),
    Variant(
        "the eval-mode gradient dx = (w/σ)·dy used in training",
        "in training the mean and variance depend on x: dx = (w/σ)·(dy − mean(dy) − s·mean(dy·s))",
        _dx_only(lambda a, g, s, k: a * g),
    ),
    Variant("dw and db swapped", "dw = Σ dy·s and db = Σ dy", _swapped),
    Variant(
        "a one-pass variance E[x²] − E[x]²",
        "compute the variance in two passes: mean first, then mean((x − m)²)",
        _one_pass,
    ),
)


def _matches(name, obtained, variant_values, ref, inputs) -> bool:
    """The output is the variant's to rounding, or 100× closer to it than to the exact value."""
    if name not in variant_values:
        return False
    scale = ref.scales[name]
    with np.errstate(invalid="ignore", over="ignore"):
        to_variant = np.nanmax(np.abs(obtained - variant_values[name]) / scale, initial=0)
        to_exact = np.nanmax(np.abs(obtained - ref.values[name]) / scale, initial=0)
    if not np.all(np.isfinite(obtained)):
        return False
    return bool(to_variant <= budget(name, inputs.dtype) or to_variant <= 0.01 * to_exact)


def diagnose(failures: list[tuple[CaseInputs, Reference, dict[str, np.ndarray], list[str]]]) -> list[str]:
    """One line per classic mistake that the failing outputs match, naming the cases."""
    found: dict[str, tuple[Variant, set[str], set[str]]] = {}
    for inputs, ref, outputs, failed in failures:
        for variant in VARIANTS:
            values = variant.values(inputs)
            matched = [name for name in failed if _matches(name, outputs[name], values, ref, inputs)]
            if matched:
                _, quantities, where = found.setdefault(variant.name, (variant, set(), set()))
                quantities.update(matched)
                where.add(f"{inputs.name}/{inputs.dtype}")
    lines = []
    for variant, quantities, where in found.values():
        names = [q for q in QUANTITIES if q in quantities]
        cases = sorted(where, key=lambda name: (not name.startswith(YARDSTICK + "/"), name))
        shown = ", ".join(cases[:3]) + (f" and {len(cases) - 3} more" if len(cases) > 3 else "")
        verb = "matches" if len(names) == 1 else "match"
        lines.append(f"{', '.join(names)} {verb} {variant.name} on {shown}: fix: {variant.fix}")
    return lines


def inaccuracy_hints(cases: list[CaseResult], named: bool) -> list[str]:
    """General lines for INACCURATE results: precision lost on ill-conditioned data (unless a mistake was
    named already), or range on the extremes."""
    lines = []
    for extreme, text in (
        (False, "the formulas are right but the arithmetic loses precision there (e.g. a one-pass variance, "
         "or sums accumulated without care)"),
        (True, "squares overflow or underflow in that dtype: scale each column by a power of two near its "
         "largest value before squaring"),
    ):  # fmt: skip
        where = sorted({f"{r.name}/{r.dtype}" for r in cases if r.verdict == "INACCURATE" and r.extreme == extreme})
        if where and (extreme or not named):
            lines.append(f"INACCURATE on {', '.join(where)} while the unit case passes: {text}")
    return lines
