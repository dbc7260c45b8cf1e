"""What the outputs themselves show: the precision a target computes in, quantities left at zero,
intermediates out of range, the eps a target evidently uses, a variance error growing like (|m|/σ)².

Each function reads a case's inputs, its exact reference and the target's outputs; none needs
the target again.
"""

from __future__ import annotations

import warnings

import numpy as np

from ... import core
from ..cases import CaseInputs
from ..precisions import UNIT_ROUNDOFF, finfo, is_half, parameter_dtype
from ..reference import Reference, budget

# Narrowest first: the precision a target computes in is the narrowest that holds all its outputs.
LOWER_PRECISIONS = {"float64": ("bfloat16", "float16", "float32"), "float32": ("bfloat16", "float16")}
# Fewer distinct non-zero outputs than this prove nothing about precision (zeros, small integers).
EVIDENCE = 8


def representable(values: np.ndarray, dtype: str) -> bool:
    """Every finite element is exactly a number of ``dtype`` (inf and NaN are in every dtype)."""
    finite = values[np.isfinite(values)]
    with np.errstate(all="ignore"):
        single = finite.astype(np.float32)
        if dtype == "bfloat16":
            return bool(np.array_equal(single, finite) and not (single.view(np.uint32) & 0xFFFF).any())
        return bool(np.array_equal(finite.astype(dtype).astype(np.float64), finite))


def computes_in(outputs: dict[str, np.ndarray], dtype: str) -> str | None:
    """The precision the outputs evidently come from: ``dtype``, or a lower one that holds every output;
    None when they are too few to tell (zeros, inf and NaN, a few small integers). A half precision has none
    lower: what its target computes in is told by the findings of its own (:mod:`.half`), quantity by
    quantity, never by capping a whole case."""
    values = np.concatenate([v.ravel() for v in outputs.values()]) if outputs else np.zeros(0)
    distinct = np.unique(values[np.isfinite(values) & (values != 0)])
    for lower in LOWER_PRECISIONS.get(dtype, ()):
        if representable(distinct, lower):
            return lower if distinct.size >= EVIDENCE else None
    return parameter_dtype(dtype)


def identically_zero(obtained: np.ndarray, ref: Reference, name: str, dtype: str) -> bool:
    """Exactly zero everywhere while the exact value is not (beyond its budget) somewhere."""
    with np.errstate(invalid="ignore"):
        nonzero = np.abs(ref.values[name]) > budget(name, dtype) * ref.scales[name]
    return bool(not obtained.any() and nonzero.any())


def out_of_range_intermediates(inputs: CaseInputs, dtype: str) -> list[str]:
    """The intermediates that ``dtype`` cannot hold on this case, while y and dx themselves are
    representable: the staged backward's σ³ and (v + ε)^-1.5, and in a half precision the statistics'
    own sums and squares (Σx, Σ(x − m)², most (x − m)² below its smallest normal number)."""
    x = inputs.x.astype(np.float64)
    bn = core.forward(x, inputs.weight.astype(np.float64), inputs.bias.astype(np.float64), inputs.eps)
    info = finfo(dtype)
    with np.errstate(all="ignore"):
        var = bn.var + inputs.eps
        cubed = var[var > 0] ** 1.5
        squares = (x - bn.mean) ** 2
    candidates = [("σ³", cubed), ("(v + ε)^-1.5", 1 / cubed)]
    statistics = is_half(dtype) and inputs.training  # eval mode computes none
    if statistics:
        candidates = [("Σx", np.abs(x).sum(axis=0)), ("Σ(x − m)²", squares.sum(axis=0)), *candidates]
    beyond = [
        label for label, values in candidates
        if values.size and ((values > info.max) | ((values > 0) & (values < info.smallest_normal))).any()
    ]  # fmt: skip
    if statistics:
        nonzero = np.where(squares > 0, squares, np.nan)
        with warnings.catch_warnings():  # a constant column has no square to weigh
            warnings.simplefilter("ignore", RuntimeWarning)
            if (np.nanmedian(nonzero, axis=0) < info.smallest_normal).any():
                beyond.append("(x − m)²")
    return beyond


def target_sigma(inputs: CaseInputs, y: np.ndarray) -> np.ndarray:
    """σ per column as the target evidently uses it, (x − m)·w/(y − b), robustly (a median over the
    elements far enough from the mean to carry it); NaN where no element does."""
    x = inputs.x.astype(np.float64)
    w, b = inputs.weight.astype(np.float64), inputs.bias.astype(np.float64)
    centred = x - x.mean(axis=0)
    with np.errstate(all="ignore"):
        estimate = centred * w / (y - b)
        spread = np.abs(centred) >= 0.5 * np.sqrt((centred * centred).mean(axis=0))
        usable = spread & np.isfinite(estimate) & (estimate > 0) & (w != 0)
    masked = np.where(usable, estimate, np.nan)
    with warnings.catch_warnings():  # a column with no usable element is NaN, said so by the docstring
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(masked, axis=0)


def _variance(inputs: CaseInputs) -> np.ndarray:
    """The exact (biased) variance of each column, eps not included."""
    x = inputs.x.astype(np.float64)
    return core.forward(x, inputs.weight.astype(np.float64), inputs.bias.astype(np.float64), inputs.eps).var


def evident_eps(inputs: CaseInputs, y: np.ndarray, dtype: str) -> float | None:
    """The eps the target evidently uses, σ_target² − v, where every column that resolves it agrees
    (within 10 %) and it differs from the case's eps; None otherwise. A column resolves it when it stands
    out of what rounding leaves of σ², which grows with 1 + |m|/σ (x − m loses those digits)."""
    var = _variance(inputs)
    offset = np.abs(inputs.x.astype(np.float64).mean(axis=0))
    with np.errstate(all="ignore"):
        estimates = target_sigma(inputs, y) ** 2 - var
        rounding = 1e3 * UNIT_ROUNDOFF[dtype] * (var + offset * np.sqrt(var))
        resolved = np.isfinite(estimates) & (np.abs(estimates) > rounding)
    if not resolved.any():
        return None
    found = estimates[resolved]
    value = float(np.median(found))
    if value <= 0 or not np.allclose(found, value, rtol=0.1, atol=0):
        return None
    return value if abs(value - inputs.eps) > 0.01 * inputs.eps else None


def one_pass_growth(inputs: CaseInputs, y: np.ndarray, dtype: str) -> float | None:
    """How far the target's variance is off, relative, on its worst column, when that error has the
    signature of a one-pass variance: no column errs by more than k·u·(|m|/σ)², and the worst errs by
    at least u·(|m|/σ)²/1000 with |m|/σ large. None otherwise."""
    x = inputs.x.astype(np.float64)
    k = x.shape[0]
    var = _variance(inputs) + inputs.eps
    mean = x.mean(axis=0)
    u = UNIT_ROUNDOFF[dtype]
    with np.errstate(all="ignore"):
        error = np.abs(target_sigma(inputs, y) ** 2 - var) / var
        growth = mean * mean / var
    known = np.isfinite(error)
    if not known.any() or (error[known] > k * u * np.maximum(growth[known], 1)).any():
        return None
    worst = int(np.nanargmax(np.where(known, error, -1)))
    if growth[worst] < 1e2 or error[worst] < u * growth[worst] / 1e3:
        return None
    return float(error[worst])


def residue_pattern(inputs: CaseInputs, ref: Reference, dx: np.ndarray) -> str | None:
    """What dx's error follows on its worst column: "column" (the same for every row: a term through the
    mean's gradient), "s" (proportional to s: through the variance's), or None."""
    with np.errstate(all="ignore"):
        residue = dx - ref.values["dx"]
        if not np.isfinite(residue).all():
            return None
        worst = int(np.argmax(np.max(np.abs(residue) / ref.scales["dx"], axis=0)))
        column = residue[:, worst]
        centred = inputs.x[:, worst].astype(np.float64) - inputs.x[:, worst].astype(np.float64).mean()
        s = centred / (np.sqrt((centred * centred).mean()) or 1.0)
        size = np.abs(column).max()
        if size == 0:
            return None
        if np.abs(column - column.mean()).max() <= 0.1 * size:
            return "column"
        if np.abs(column - (column * s).mean() * s).max() <= 0.1 * size:
            return "s"
    return None


def implied_statistics(inputs: CaseInputs, y: np.ndarray) -> tuple[np.ndarray, ...] | None:
    """The mean and σ per column that the target's y evidently normalizes with, and their standard errors:
    y is affine in x down each column, y = (w/σ')·x + (b − w·m'/σ'), so a least-squares line through
    (x, y) gives them, uncertain by what y's own rounding scatters about it. A column that cannot carry
    them (constant x, w = 0) keeps the exact ones; None when y is not finite."""
    if not np.isfinite(y).all():
        return None
    x = inputs.x.astype(np.float64)
    k = x.shape[0]
    w, b = inputs.weight.astype(np.float64), inputs.bias.astype(np.float64)
    bn = core.forward(x, w, b, inputs.eps)
    with np.errstate(all="ignore"):
        x_mean = x.mean(axis=0)
        centred = x - x_mean
        spread = (centred * centred).sum(axis=0)
        slope = (centred * (y - y.mean(axis=0))).sum(axis=0) / spread
        intercept = y.mean(axis=0) - slope * x_mean
        mean, std = (b - intercept) / slope, w / slope
        residue = y - (slope * x + intercept)
        scatter = np.sqrt((residue * residue).sum(axis=0) / max(k - 2, 1))
        if k <= 3:  # a line through two or three points leaves (almost) no scatter: take y's own rounding
            scatter = np.maximum(scatter, UNIT_ROUNDOFF[inputs.dtype] * np.sqrt((y * y).mean(axis=0)))
        slope_error = scatter / np.sqrt(spread)
        intercept_error = scatter * np.sqrt(1 / k + x_mean * x_mean / spread)
        mean_error = (intercept_error + np.abs(mean) * slope_error) / np.abs(slope)
        std_error = std * slope_error / np.abs(slope)
    usable = np.isfinite(mean) & np.isfinite(std) & (std > 0) & (w != 0) & (np.ptp(x, axis=0) > 0)
    usable &= np.isfinite(mean_error) & np.isfinite(std_error)
    return (
        np.where(usable, mean, bn.mean),
        np.where(usable, std, bn.std),
        np.where(usable, mean_error, 0.0),
        np.where(usable, std_error, 0.0),
    )


def half_statistics_error(
    inputs: CaseInputs, mean: np.ndarray, std: np.ndarray, mean_se: np.ndarray, std_se: np.ndarray
) -> dict | None:
    """How far statistics ``mean`` and ``std`` (known to ``mean_se`` and ``std_se``, their standard errors) are
    from the exact ones (the worst column's mean error in σ, and σ²'s relative error), when that is beyond
    their uncertainty somewhere, within what statistics summed in the input's half precision can err by, and
    beyond one rounding of them to it ("accumulated"), or within it ("rounded"); None when the error is not
    there, is beyond what a half-precision sum makes (another mistake), or the dtype is not a half one.

    A sum of k terms added one after another in precision u errs by at most (k − 1)·u·Σ|terms|; one
    rounding of the result by u·|result|."""
    if not is_half(inputs.dtype):
        return None
    u = UNIT_ROUNDOFF[inputs.dtype]
    x = inputs.x.astype(np.float64)
    k = x.shape[0]
    bn = core.forward(x, inputs.weight.astype(np.float64), inputs.bias.astype(np.float64), inputs.eps)
    var = bn.std * bn.std
    with np.errstate(all="ignore"):
        mean_error = np.abs(mean - bn.mean)
        var_error = np.abs(std * std - var)
        mean_sum_bound = (k + 1) * u * np.abs(x).mean(axis=0)
        var_sum_bound = (k + 1) * u * (var + 2 * mean_error * np.abs(x - bn.mean).mean(axis=0)) + mean_error**2
        var_se = 2 * std * std_se
        rounded = (mean_error <= 2 * u * np.abs(bn.mean) + 3 * mean_se) & (var_error <= 2 * u * var + 3 * var_se)
        real = (mean_error > 3 * mean_se) | (var_error > 3 * var_se)
    within = (mean_error <= mean_sum_bound) & (var_error <= var_sum_bound)
    if not within.all() or not real.any():
        return None
    worst = int(np.argmax(np.maximum(mean_error / bn.std, var_error / var)))
    return {
        "how": "rounded" if rounded.all() else "accumulated",
        "mean_error": float(mean_error[worst] / bn.std[worst]),
        "variance_error": float(var_error[worst] / var[worst]),
    }


def affine_in_s(inputs: CaseInputs, ref: Reference, y: np.ndarray) -> bool:
    """y's error is mostly a + b·s down each column (what wrong statistics give): a least-squares fit of it
    on (1, s) leaves less than half of it, on the worst column."""
    with np.errstate(all="ignore"):
        residue = y - ref.values["y"]
        if not np.isfinite(residue).all():
            return False
        x = inputs.x.astype(np.float64)
        centred = x - x.mean(axis=0)
        s = centred / np.where(centred.std(axis=0) > 0, centred.std(axis=0), 1.0)
        a = residue.mean(axis=0)
        b = (residue * s).mean(axis=0) / np.where((s * s).mean(axis=0) > 0, (s * s).mean(axis=0), 1.0)
        left = np.abs(residue - a - b * s).max(axis=0)
        size = np.abs(residue).max(axis=0)
    worst = int(np.argmax(size / ref.scales["y"].max(axis=0)))
    return bool(size[worst] > 0 and left[worst] < 0.5 * size[worst])
