"""The audit's battery: named cases of hard inputs, and the layouts a target sees them in.

Each case gives, per dtype, x, dy, weight, bias, eps and feature names, generated
deterministically (the seed is the case's name and dtype), in the nc layout
(k rows × n features); :func:`to_layout` shows them as N×C×H×W or N×H×W×C.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np

from .precisions import cast, finfo, parameter_dtype, parameter_eps

QUANTITIES = ("y", "dx", "dw", "db")
# Judged where a target returns them (or declares the keywords that ask for them).
RUNNING = ("running_mean", "running_var")
JUDGED = QUANTITIES + RUNNING
# PyTorch's default: the weight of the new batch in the running statistics.
MOMENTUM = 0.1
# The case that tells WRONG (beyond budget here too) from INACCURATE; always run.
YARDSTICK = "unit"


@dataclass(frozen=True)
class CaseInputs:
    """One case in one dtype, in the nc layout (k rows × n features)."""

    name: str
    dtype: str
    x: np.ndarray  # (k, n), the case's dtype
    dy: np.ndarray  # (k, n), the case's dtype
    weight: np.ndarray  # (n,), the case's parameter dtype (float32 for a half precision)
    bias: np.ndarray  # (n,), the case's parameter dtype
    eps: float
    features: tuple[str, ...]
    # The running statistics before the call, (n,) each in the parameter dtype (None: 0 and 1).
    running_mean: np.ndarray | None = None
    running_var: np.ndarray | None = None
    momentum: float = MOMENTUM
    training: bool = True

    def start_statistics(self) -> tuple[np.ndarray, np.ndarray]:
        """The running mean and variance before the call, in float64."""
        n = self.x.shape[1]
        mean = np.zeros(n) if self.running_mean is None else self.running_mean.astype(np.float64)
        var = np.ones(n) if self.running_var is None else self.running_var.astype(np.float64)
        return mean, var


@dataclass(frozen=True)
class Case:
    """A named case: ``make(dtype, rng)`` gives (x, dy, weight, bias, eps, features) in float64."""

    name: str
    description: str
    make: Callable[[str, np.random.Generator], tuple]
    extreme: bool = False

    def inputs(self, dtype: str) -> CaseInputs:
        """The case in ``dtype``: x and dy in it; weight, bias, eps and the running statistics in its
        parameter dtype (float32 for a half precision, as PyTorch's mixed precision keeps them)."""
        rng = np.random.default_rng(zlib.crc32(f"{self.name}/{dtype}".encode()))
        x, dy, weight, bias, eps, features = self.make(dtype, rng)
        n = x.shape[1]
        parameters = parameter_dtype(dtype)
        weight, bias = (np.broadcast_to(np.asarray(a, np.float64), (n,)) for a in (weight, bias))
        x, dy = (np.ascontiguousarray(cast(a, dtype)) for a in (x, dy))
        weight, bias = (np.ascontiguousarray(a, dtype=parameters) for a in (weight, bias))
        eps = parameter_eps(eps, dtype)
        features = tuple(features) if features else tuple(str(j) for j in range(n))
        running_mean, running_var = start_statistics(x, dtype)
        return CaseInputs(self.name, dtype, x, dy, weight, bias, eps, features, running_mean, running_var)


def start_statistics(x: np.ndarray, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """Running statistics far from the batch's (mean m − 3·√v, variance 9·v, per column): in eval mode
    the batch's statistics give another y altogether, and a reversed momentum another update.
    A column constant to rounding starts at variance m² (1 where m = 0): its batch variance is rounding
    alone, which then weighs nothing beside the start. Both are in the parameter dtype, the one statistics
    are computed in; a column whose statistics leave its range starts at 0 and 1. In a half precision
    that is float32, which may exceed what the input dtype holds (float16's 65504): a target that casts
    them down is caught there."""
    kept = parameter_dtype(dtype)
    limits = finfo(kept)
    unit = float(limits.eps)
    with np.errstate(all="ignore"):
        x64 = x.astype(np.float64)
        mean, var = x64.mean(axis=0), x64.var(axis=0)
        constant = var <= x.shape[0] * (unit * mean) ** 2
        start_mean = mean - 3 * np.sqrt(var)
        start_var = np.where(constant, np.where(mean != 0, mean * mean, 1.0), 9 * var)
        fits = np.isfinite(start_mean) & np.isfinite(start_var) & (start_var < limits.max) & (start_var > limits.tiny)
        fits &= np.abs(start_mean) < limits.max
    start_mean, start_var = np.where(fits, start_mean, 0.0), np.where(fits, start_var, 1.0)
    return start_mean.astype(kept), start_var.astype(kept)


def _per_dtype(dtype: str, float64, float32, float16=None):
    """A case's value in ``dtype``: bfloat16 has float32's range (its precision is float16's and less), so
    it takes float32's values; float16 its own (None: float32's), within 6e-5 … 65504."""
    if dtype == "float64":
        return float64
    return float16 if dtype == "float16" and float16 is not None else float32


def _unit(dtype, rng):
    x = rng.standard_normal((16, 4)) * [1.0, 0.5, 2.0, 3.0] + [0.0, 1.0, -2.0, 0.5]
    return x, rng.standard_normal(x.shape), [1.0, 0.5, -1.5, 2.0], [0.0, 0.25, -1.0, 3.0], 1e-5, None


def _blood(dtype, rng):
    # float16 ends at 65504: there the counts are in the units clinicians give them (10¹² and 10⁹ per litre).
    x = _blood_sample() / _per_dtype(dtype, 1.0, 1.0, np.array([1e12, 1e9, 1e9, 1.0]))
    return (
        x,
        rng.standard_normal(x.shape),
        [1.5, 0.5, 2.0, 1.0],
        [0.0, 1.0, -1.0, 0.5],
        1e-5,
        ("RBC", "WBC", "PLT", "Hb"),
    )


@cache
def _blood_sample() -> np.ndarray:
    """The article's blood counts (10 adults × RBC, WBC, PLT, Hb), from the bundled sample."""
    from importlib.resources import files

    text = files("bncli").joinpath("sample_data", "blood.csv").read_text()
    rows = [line for line in text.splitlines() if line.strip() and not line.startswith("#")][1:]
    return np.array([[float(v) for v in row.split(",")] for row in rows])


def _offset(dtype, rng):
    k = 64
    # float64: 1e8 + noise and Unix timestamps varying by seconds. float32 keeps ~7 digits,
    # so there the offsets are ~1e3·σ: still enough for E[x²] − E[x]² to lose most digits.
    # float16 holds 480 + noise, but a float16 sum of 64 of them (~3e4, in steps of 16) does not.
    big, stamp, spread = _per_dtype(dtype, (1e8, 1.7e9, 3600.0), (1e3, 1e4, 60.0), (480.0, 900.0, 60.0))
    x = np.column_stack(
        [
            big + rng.standard_normal(k),
            stamp + np.round(rng.uniform(0, spread, k)),
            -big + 0.5 * rng.standard_normal(k),
        ]
    )
    return x, rng.standard_normal(x.shape), [1.0, 2.0, -0.5], [0.5, 0.0, 1.0], 1e-5, ("noise+big", "timestamp", "-big")


def _scaled(scale, eps):
    """``scale`` and ``eps``: the values in float64, float32 (bfloat16 too) and float16."""

    def make(dtype, rng):
        size = _per_dtype(dtype, *scale)
        x = (rng.standard_normal((16, 3)) * [1.0, 2.0, 0.5] + [0.0, 3.0, -1.0]) * size
        return x, rng.standard_normal(x.shape), [1.0, -2.0, 0.5], [0.0, 1.0, -0.5], _per_dtype(dtype, *eps), None

    return make


def _constant(dtype, rng):
    k = 12  # not a power of two, so that the mean of a constant column need not be exact
    x = np.column_stack([np.full(k, 3.7), rng.standard_normal(k), np.full(k, -1e3)])
    return x, rng.standard_normal(x.shape), [1.0, 1.0, 2.0], [0.5, 0.0, -1.0], 1e-5, ("constant", "normal", "-1e3")


def _two_rows(dtype, rng):
    x = rng.standard_normal((2, 3)) * [1.0, 0.01, 100.0]
    return x, rng.standard_normal(x.shape), [1.0, -1.0, 0.5], [0.0, 0.5, 1.0], 1e-5, None


def _large_batch(dtype, rng):
    x = rng.standard_normal((4096, 3)) * [1.0, 10.0, 0.1] + [0.0, 5.0, -1.0]
    return x, rng.standard_normal(x.shape), [1.0, 0.5, 2.0], [0.0, -1.0, 0.25], 1e-5, None


def _dy_constant(dtype, rng):
    x = rng.standard_normal((16, 3)) * [1.0, 3.0, 0.2]
    dy = np.column_stack([np.full(16, 0.7), np.full(16, -2.5), rng.standard_normal(16)])
    return x, dy, [1.5, -1.0, 1.0], [0.0, 0.5, 0.0], 1e-5, ("dy=0.7", "dy=-2.5", "dy normal")


def _large_eps(dtype, rng):
    x = rng.standard_normal((16, 3)) * [1.0, 0.3, 0.05]
    return x, rng.standard_normal(x.shape), [1.0, 2.0, -1.0], [0.0, 0.0, 1.0], 0.5, None


CASES = (
    Case("unit", "well-conditioned N(0,1)-like data, per-column weight and bias (the yardstick)", _unit),
    Case("blood", "the article's blood counts: 1e2 to 5e12 in one batch", _blood),
    Case(
        "offset",
        "large offsets: 1e8 + noise, timestamps ~1.7e9 by seconds (float32: ~1e3·σ; float16: 480 + noise)",
        _offset,
    ),
    Case(
        "tiny",
        "magnitudes ~1e-100 (float32: 1e-15; float16: 1e-3), eps scaled alike",
        _scaled((1e-100, 1e-15, 1e-3), (1e-205, 1e-35, 1e-11)),
    ),
    Case(
        "huge",
        "magnitudes ~1e100 (float32: 1e15; float16: 1e3, running variance ~1e7 > 65504), eps scaled alike",
        _scaled((1e100, 1e15, 1e3), (1e195, 1e25, 10.0)),
    ),
    Case("constant", "a constant column (v = 0, σ = √ε) beside ordinary ones", _constant),
    Case("two_rows", "a batch of two rows: dx is a small difference of large terms", _two_rows),
    Case("large_batch", "4096 rows", _large_batch),
    Case("dy_constant", "dy constant down two columns: their dx is exactly 0", _dy_constant),
    Case("large_eps", "eps = 0.5, comparable to the variance", _large_eps),
    Case(
        "extreme_huge",
        "~1e160 (float32: 1e20; float16: 5e3): a textbook implementation's squares overflow",
        _scaled((1e160, 1e20, 5e3), (1e-5, 1e-5)),
        extreme=True,
    ),
    Case(
        "extreme_tiny",
        "~1e-155 (float32: 1e-21; float16: 5e-4, squares among its subnormals), eps ~1e-315 (float32: its "
        "smallest number): a textbook implementation's squares underflow",
        _scaled((1e-155, 1e-21, 5e-4), (1e-315, float(np.finfo(np.float32).smallest_subnormal))),
        extreme=True,
    ),
)
CASES_BY_NAME = {case.name: case for case in CASES}


def list_cases(extreme: bool = True) -> list[Case]:
    """The battery: the default cases, then (with ``extreme``) the opt-in extreme ones."""
    return [case for case in CASES if extreme or not case.extreme]


# ----------------------------------------------------------------------------- layouts


def layout_shape(k: int, n: int, layout: str) -> tuple[int, ...]:
    """The shape the target sees: (k, n), or N×C×H×W / N×H×W×C with N·H·W = k."""
    if layout == "nc":
        return (k, n)
    side = 2 if k % 4 == 0 and k >= 8 else 1
    spatial = (k // (side * side), side, side)
    return (spatial[0], n, side, side) if layout == "nchw" else (*spatial, n)


def to_layout(a: np.ndarray, layout: str) -> np.ndarray:
    """A (k, n) array in ``layout``: rows are the (N, H, W) positions in C order."""
    k, n = a.shape
    shape = layout_shape(k, n, layout)
    if layout == "nc":
        return a
    if layout == "nhwc":
        return np.ascontiguousarray(a.reshape(shape))
    batch, _, h, w = shape
    return np.ascontiguousarray(a.reshape(batch, h, w, n).transpose(0, 3, 1, 2))


def from_layout(a: np.ndarray, layout: str) -> np.ndarray:
    """The inverse of :func:`to_layout`: (k, n)."""
    if layout == "nchw":
        a = a.transpose(0, 2, 3, 1)
    return a.reshape(-1, a.shape[-1])


def layout_index(row: int, column: int, k: int, n: int, layout: str) -> list[int]:
    """The index in the layout's shape of element (row, column) of the (k, n) array."""
    if layout == "nc":
        return [row, column]
    shape = layout_shape(k, n, layout)
    spatial = (shape[0], shape[2], shape[3]) if layout == "nchw" else shape[:3]
    b, h, w = (int(i) for i in np.unravel_index(row, spatial))
    return [b, column, h, w] if layout == "nchw" else [b, h, w, column]
