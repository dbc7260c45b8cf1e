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


def arithmetic(e: Evidence, quantities: list[str], collector: Collector) -> None:
    """Quantities beyond mixed precision's budget but within C_q·u_half·scale: what computing in the half
    dtype itself attains."""

    def within_own_budget(q: str) -> bool:
        with np.errstate(invalid="ignore", over="ignore"):
            error = np.abs(e.outputs[q] - e.ref.values[q]) / e.ref.scales[q]
        return bool(np.all(error <= BUDGET_MULTIPLES[q] * UNIT_ROUNDOFF[e.inputs.dtype]))

    computed_in_it = [q for q in quantities if within_own_budget(q)]
    if computed_in_it:
        collector.add("lower_precision", e, computed_in_it, _arithmetic_text, dtype=e.inputs.dtype)


def _arithmetic_text(names, shown, details):
    dtype = " and ".join(sorted({d["dtype"] for d in details}))
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
    values, lost = cast_down(e.inputs)
    cast = [q for q in quantities if q in values and within(e, q, values[q])]
    shown = [q for q in cast if e.verdict(q) == "INACCURATE" or not collapsed(q, values[q], e.inputs, e.ref)]
    matched = cast if shown else []
    if matched:
        collector.add("cast_to_input_dtype", e, matched, _cast_text, dtype=e.inputs.dtype, lost=lost)
    return [q for q in quantities if q not in matched]


def _cast_text(names, shown, details):
    dtype = details[0]["dtype"]
    lost: dict[str, float] = {}
    for d in details:
        for name, value in d["lost"].items():
            lost[name] = max(lost.get(name, 0.0), value)
    largest = float(finfo(dtype).max)
    listed, verb = phrase(names)
    overflow = ""
    if lost:
        which = ", ".join(f"{name} (up to {value:.3g})" for name, value in lost.items())
        overflow = (
            f"; {which} exceeds {dtype}'s largest number {largest:g} and becomes inf, so the output collapses "
            f"(y = b, dx = 0) without an error"
        )
    text = (
        f"{listed} {verb} eval mode with the running statistics, weight and bias cast to {dtype} on {shown}"
        f"{overflow}: fix: keep them in float32, as PyTorch's mixed precision does"
    )
    return text, {"dtype": dtype, "parameters": sorted(lost)}


def statistics(e: Evidence, quantities: list[str], collector: Collector) -> list[str]:
    """Quantities that a correct batch norm of the statistics y implies gives to rounding, where those
    statistics err as statistics summed or kept in the half precision do."""
    implied = signatures.implied_statistics(e.inputs, e.outputs["y"]) if "y" in e.outputs else None
    if implied is None or not quantities:
        return quantities
    mean, std, mean_error, std_error = implied
    error = signatures.half_statistics_error(e.inputs, mean, std)
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
    dtype = " and ".join(sorted({d["dtype"] for d in details}))
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
