"""The findings of a half precision (float16, bfloat16, in PyTorch's mixed-precision convention): statistics
kept or summed in the half dtype, arithmetic in it, parameters cast down to it in eval mode.

Each step reads one case's evidence and names the quantities it explains; the rest go on.
"""

from __future__ import annotations

import numpy as np

from ..cases import CaseInputs
from ..precisions import UNIT_ROUNDOFF, finfo
from ..reference import BUDGET_MULTIPLES
from . import signatures
from .base import Collector, Evidence, phrase, within
from .variants import cast_down, collapsed, textbook

# Fewer distinct non-zero values than this in dw and db prove nothing about the precision they come from.
EVIDENCE = 4


def computes_in_half(e: Evidence) -> bool:
    """dw and db, which mixed precision keeps float32, are half-dtype numbers: the target computes in it."""
    returned = [e.outputs[q].ravel() for q in ("dw", "db") if q in e.outputs]
    values = np.concatenate(returned) if returned else np.zeros(0)
    distinct = np.unique(values[np.isfinite(values) & (values != 0)])
    return distinct.size >= EVIDENCE and signatures.representable(distinct, e.inputs.dtype)


def _dtypes(details) -> str:
    """The half dtypes a finding's cases ran in, as text: "float16", or "bfloat16 and float16"."""
    return " and ".join(sorted({d["dtype"] for d in details}))


def _own_budget(name: str, dtype: str) -> float:
    """C_q·u_half: what a backward-stable implementation computing in the half dtype itself attains."""
    return BUDGET_MULTIPLES[name] * UNIT_ROUNDOFF[dtype]


def _error(e: Evidence, name: str, values: np.ndarray) -> float:
    with np.errstate(invalid="ignore", over="ignore"):
        return float(np.nanmax(np.abs(e.outputs[name] - values) / e.ref.scales[name], initial=0))


def own_distance(name: str, obtained: np.ndarray, values: dict, e: Evidence) -> float | None:
    """A variant's match to the half dtype's own rounding, for a target that computes in it: the output is
    within C_q·u_half·scale of the variant's, not of the exact one, and ten times closer to the variant (a
    half dtype's budget is wide: near a constant column, where |m|/σ is large, anything is within it)."""
    if name not in values or not np.isfinite(obtained).all() or collapsed(name, values[name], e.inputs, e.ref):
        return None
    budget, to_variant = _own_budget(name, e.inputs.dtype), _error(e, name, values[name])
    to_exact = _error(e, name, e.ref.values[name])
    return to_variant if to_variant <= budget < to_exact and to_variant <= 0.1 * to_exact else None


def kept_in_half(e: Evidence, quantities: list[str], collector: Collector, in_half: bool) -> list[str]:
    """dw and db computed in the half dtype (within its own budget), and running statistics kept in it."""
    gradients = [q for q in quantities if in_half and q in ("dw", "db") and _within_own_budget(e, q)]
    if gradients:
        collector.add("lower_precision", e, gradients, _gradients_text, dtype=e.inputs.dtype)
    running = [q for q in quantities if q in ("running_mean", "running_var")]
    if running and _half_numbers(e, running):
        largest = float(finfo(e.inputs.dtype).max)
        lost = {q: float(np.abs(e.ref.values[q]).max()) for q in running if (np.abs(e.ref.values[q]) > largest).any()}
        collector.add("cast_to_input_dtype", e, running, _kept_text, dtype=e.inputs.dtype, lost=lost, cast=running)
    else:
        running = []
    return [q for q in quantities if q not in gradients + running]


def _within_own_budget(e: Evidence, name: str) -> bool:
    return _error(e, name, e.ref.values[name]) <= _own_budget(name, e.inputs.dtype)


def _half_numbers(e: Evidence, names: list[str]) -> bool:
    """Every value of those outputs is a number of the half dtype (inf included), and enough differ to tell."""
    values = np.concatenate([e.outputs[q].ravel() for q in names])
    return np.unique(values[values != 0]).size >= EVIDENCE and signatures.representable(values, e.inputs.dtype)


def _kept_text(names, shown, details):
    dtype = details[0]["dtype"]
    listed, verb = phrase(names)
    return (
        f"{listed} {verb} {dtype} numbers on {shown}: the running statistics are kept in the input's dtype"
        f"{_overflow(details, dtype)}: fix: keep them in float32, as PyTorch's mixed precision does",
        {"dtype": dtype, "parameters": sorted({p for d in details for p in d["cast"]})},
    )


def arithmetic(e: Evidence, quantities: list[str], collector: Collector) -> None:
    """Quantities beyond mixed precision's budget but within C_q·u_half·scale: what computing in the half
    dtype itself attains (for a target whose dw and db show it computes there)."""
    computed_in_it = [q for q in quantities if _within_own_budget(e, q)]
    if computed_in_it:
        collector.add("lower_precision", e, computed_in_it, _arithmetic_text, dtype=e.inputs.dtype)


def _gradients_text(names, shown, details):
    dtype = _dtypes(details)
    listed, _ = phrase(names)
    text = (
        f"{listed} {'are' if len(names) > 1 else 'is'} {dtype} numbers on {shown}, within {dtype}'s own budget: "
        f"computed or returned in {dtype} where mixed precision keeps the parameters' gradients float32, so "
        f"judged INACCURATE at most there: fix: sum them in float32 and return them in the parameters' dtype"
    )
    return text, {"dtype": dtype}


def rounded_more_than_once(e: Evidence, quantities: list[str], collector: Collector) -> None:
    """y (and dx beside it) beyond their one rounding to the half dtype but within its own budget, on a case
    where no mistake shows, y's error scattered like rounding: a step before the end (the affine w·s + b, say)
    done in the half dtype. An error that a per-column a + b·s carries is the statistics', not rounding's."""
    if (
        "y" not in quantities
        or not _within_own_budget(e, "y")
        or signatures.affine_in_s(e.inputs, e.ref, e.outputs["y"])
    ):
        return
    rounded = [q for q in quantities if q in ("y", "dx") and _within_own_budget(e, q)]
    if rounded:
        collector.add("lower_precision", e, rounded, _rounded_text, dtype=e.inputs.dtype)


def _rounded_text(names, shown, details):
    dtype = _dtypes(details)
    listed, verb = phrase(names)
    text = (
        f"{listed} on {shown} carry more than their one rounding to {dtype} but stay within {dtype}'s own budget "
        f"(what a backward-stable implementation computing in {dtype} attains): a step before the end, such as "
        f"the affine w·s + b, is done in {dtype}, so it is judged INACCURATE at most there: fix: compute y and dx "
        f"in float32 and round them once"
    )
    return text, {"dtype": dtype}


def _arithmetic_text(names, shown, details):
    dtype = _dtypes(details)
    listed, _ = phrase(names)
    text = (
        f"{listed} on {shown} are within {dtype}'s own budget (what a backward-stable implementation computing in "
        f"{dtype} attains) but beyond mixed precision's: the target computes in {dtype} where PyTorch's kernels "
        f"compute in float32, so it is judged INACCURATE at most there: fix: compute in float32 (the statistics, "
        f"the sums, dw and db) and round y and dx to {dtype} at the end"
    )
    return text, {"dtype": dtype}


def cast_to_dtype(e: Evidence, quantities: list[str], collector: Collector) -> list[str]:
    """Quantities that are eval mode's with the parameters cast to the input's dtype, to rounding. Where that
    cast overflows, y = b and dx = 0 down a column whose running variance became inf is what it gives: a
    collapsed output is the evidence there, for a quantity right on the unit case, or beside one that the
    cast explains without collapsing."""
    values, lost, changed = cast_down(e.inputs)
    cast = [q for q in quantities if q in values and within(e, q, values[q])]
    shown = [q for q in cast if e.verdict(q) == "INACCURATE" or not collapsed(q, values[q], e.inputs, e.ref)]
    matched = cast if shown else []
    if matched:
        collector.add("cast_to_input_dtype", e, matched, _cast_text, dtype=e.inputs.dtype, lost=lost, cast=changed)
    return [q for q in quantities if q not in matched]


def _overflow(details, dtype: str) -> str:
    """ "; running_var (up to 4.2e+07) exceeds float16's largest number …" where a cast overflowed, else ""."""
    lost: dict[str, float] = {}
    for d in details:
        for name, value in d["lost"].items():
            lost[name] = max(lost.get(name, 0.0), value)
    if not lost:
        return ""
    which = ", ".join(f"{name} (up to {value:.3g})" for name, value in lost.items())
    return (
        f"; {which} exceeds {dtype}'s largest number {float(finfo(dtype).max):g} and becomes inf, so the output "
        f"collapses (y = b, dx = 0) without an error"
    )


def _cast_text(names, shown, details):
    dtype = details[0]["dtype"]
    cast = sorted({p for d in details for p in d["cast"]})
    listed, verb = phrase(names)
    text = (
        f"{listed} {verb} eval mode with {' and '.join(cast)} cast to {dtype} on {shown}{_overflow(details, dtype)}: "
        f"fix: keep them in float32, as PyTorch's mixed precision does"
    )
    return text, {"dtype": dtype, "parameters": cast}


def statistics(e: Evidence, quantities: list[str], collector: Collector) -> list[str]:
    """Quantities that a correct batch norm of the statistics y implies gives to rounding, where those
    statistics err as statistics summed or kept in the half precision do."""
    implied = signatures.implied_statistics(e.inputs, e.outputs["y"]) if "y" in e.outputs else None
    if implied is None or not quantities:
        return quantities
    mean, std, mean_error, std_error = implied
    error = signatures.half_statistics_error(e.inputs, mean, std, mean_error, std_error)
    if error is None:
        return quantities
    values = _with_statistics(e.inputs, mean, std)
    # What the statistics' own uncertainty (three standard errors each) moves the batch norm they give by.
    moved = [
        _with_statistics(e.inputs, mean + 3 * mean_error, std),
        _with_statistics(e.inputs, mean, std + 3 * std_error),
    ]
    explained = [
        q for q in quantities if q in values and within(e, q, values[q], sum(np.abs(m[q] - values[q]) for m in moved))
    ]
    if explained:
        collector.add("low_precision_statistics", e, explained, _statistics_text, dtype=e.inputs.dtype, **error)
    return [q for q in quantities if q not in explained]


def _with_statistics(inputs: CaseInputs, mean: np.ndarray, std: np.ndarray) -> dict[str, np.ndarray]:
    """A correct batch norm, and PyTorch's running update, with the batch statistics ``mean`` and ``std``."""
    x, g = inputs.x.astype(np.float64), inputs.dy.astype(np.float64)
    values = textbook(x, g, inputs.weight.astype(np.float64), inputs.bias.astype(np.float64), mean, std)
    k = x.shape[0]
    if k > 1:
        start_mean, start_var = inputs.start_statistics()
        keep, new = 1 - inputs.momentum, inputs.momentum
        values["running_mean"] = keep * start_mean + new * mean
        values["running_var"] = keep * start_var + new * (std * std - inputs.eps) * (k / (k - 1))
    return values


def _statistics_text(names, shown, details):
    dtype = _dtypes(details)
    worst = max(details, key=lambda d: max(d["mean_error"], d["variance_error"]))
    accumulated = any(d["how"] == "accumulated" for d in details)
    listed, verb = phrase(names)
    how = (
        f"the batch statistics are accumulated in {dtype} (summed or computed there: beyond one rounding to it)"
        if accumulated
        else f"the batch statistics are rounded to {dtype} (kept in the input's dtype)"
    )
    text = (
        f"{listed} {verb} a correct batch norm of statistics with {dtype}'s error on {shown}: {how}; the mean is "
        f"off by {worst['mean_error']:.2g}σ and σ² by {worst['variance_error']:.2g} (relative) at worst, where "
        f"float32 statistics err by ~1e-7: fix: compute the mean and variance in float32 (x.astype(float32), "
        f"PyTorch's CPU and CUDA kernels do), then round y and dx to {dtype}"
    )
    return text, {"dtype": dtype}
