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
from ..reference import Reference, budget

# Narrowest first: the precision a target computes in is the narrowest that holds all its outputs.
LOWER_PRECISIONS = {"float64": ("bfloat16", "float16", "float32"), "float32": ("bfloat16", "float16")}
# Fewer distinct non-zero outputs than this prove nothing about precision (zeros, small integers).
EVIDENCE = 8
UNIT_ROUNDOFF = {"float64": 2.0**-53, "float32": 2.0**-24, "float16": 2.0**-11, "bfloat16": 2.0**-8}


def _representable(values: np.ndarray, dtype: str) -> bool:
    """Every finite element is exactly a number of ``dtype`` (inf and NaN are in every dtype)."""
    finite = values[np.isfinite(values)]
    with np.errstate(all="ignore"):
        single = finite.astype(np.float32)
        if dtype == "bfloat16":
            return bool(np.array_equal(single, finite) and not (single.view(np.uint32) & 0xFFFF).any())
        return bool(np.array_equal(finite.astype(dtype).astype(np.float64), finite))


def computes_in(outputs: dict[str, np.ndarray], dtype: str) -> str | None:
    """The precision the outputs evidently come from: ``dtype``, or a lower one that holds every output;
    None when they are too few to tell (zeros, inf and NaN, a few small integers)."""
    values = np.concatenate([v.ravel() for v in outputs.values()]) if outputs else np.zeros(0)
    distinct = np.unique(values[np.isfinite(values) & (values != 0)])
    for lower in LOWER_PRECISIONS.get(dtype, ()):
        if _representable(distinct, lower):
            return lower if distinct.size >= EVIDENCE else None
    return dtype


def identically_zero(obtained: np.ndarray, ref: Reference, name: str, dtype: str) -> bool:
    """Exactly zero everywhere while the exact value is not (beyond its budget) somewhere."""
    with np.errstate(invalid="ignore"):
        nonzero = np.abs(ref.values[name]) > budget(name, dtype) * ref.scales[name]
    return bool(not obtained.any() and nonzero.any())


def out_of_range_intermediates(inputs: CaseInputs, dtype: str) -> list[str]:
    """The staged backward's intermediates that ``dtype`` cannot hold on this case (σ³, (v + ε)^-1.5),
    while y and dx themselves are representable."""
    x = inputs.x.astype(np.float64)
    bn = core.forward(x, inputs.weight.astype(np.float64), inputs.bias.astype(np.float64), inputs.eps)
    info = np.finfo(dtype)
    with np.errstate(all="ignore"):
        var = bn.var + inputs.eps
        cubed = var[var > 0] ** 1.5
    beyond = []
    for label, values in (("σ³", cubed), ("(v + ε)^-1.5", 1 / cubed)):
        if values.size and ((values > info.max).any() or (values < info.smallest_normal).any()):
            beyond.append(label)
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
