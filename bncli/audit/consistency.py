"""Self-consistency: the target's dx, dw, db against central differences of its own y.

This is the audit's own differencing (two target calls per random direction); it is
kept here alone so that it can move onto a shared differencing engine in one place.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, replace

import numpy as np

from .. import numdiff
from .cases import CaseInputs
from .judge import TargetError, check_outputs

# Self-consistency: the step of the central differences relative to each column's σ,
# about u^(1/3) in float64; the directional derivatives then agree to ~1e-9 relative.
CONSISTENCY_STEP = 1e-5
CONSISTENCY_TOLERANCE = 1e-6
CONSISTENCY_DIRECTIONS = 3
# A target computing in float32 (whatever it is given) is differenced at float32's step, u^(1/3),
# and judged at the tolerance its rounding allows: correct float32 code agrees to ~1e-5 there
# (measured on examples/batchnorm_float.c and a float32 numpy batch norm), a missing term errs by 1e-1.
LOWER_PRECISION = {"float32": (5e-3, 1e-3), "float16": (5e-2, 5e-2), "bfloat16": (1e-1, 1e-1)}


@dataclass(frozen=True)
class ConsistencyResult:
    """The target's dx, dw, db against central differences of its own y (directional derivatives)."""

    case: str
    dtype: str
    errors: dict[str, float]  # quantity -> worst relative error over the directions
    tolerance: float
    note: str | None = None  # why it could not run

    @property
    def consistent(self) -> bool | None:
        if self.note is not None or not self.errors:
            return None
        return all(error <= self.tolerance for error in self.errors.values())


def consistency(
    call, inputs: CaseInputs, outputs: dict[str, np.ndarray], layout: str, precision: str = "float64"
) -> ConsistencyResult:
    """Compare dx, dw, db with central differences of the target's own y, along random directions.

    For e = Σ dy·y, the directional derivative along d is (e(x + h·d) − e(x − h·d))/(2h)
    and must equal Σ dx·d (likewise for w and b). Steps are relative to each column's σ
    (for x) and to max(1, |w|, |b|) (for the parameters); two target calls per direction.
    ``precision`` is the one the target computes in: a lower one than float64 takes its own step
    and tolerance (:data:`LOWER_PRECISION`).
    """
    step, tolerance = LOWER_PRECISION.get(precision, (CONSISTENCY_STEP, CONSISTENCY_TOLERANCE))
    if "y" not in outputs:
        return ConsistencyResult(inputs.name, inputs.dtype, {}, tolerance, "the target does not return y")
    wanted = [q for q in ("dx", "dw", "db") if q in outputs]
    if not wanted:
        return ConsistencyResult(inputs.name, inputs.dtype, {}, tolerance, "the target returns no gradient")
    rng = np.random.default_rng(zlib.crc32(b"consistency"))
    x, g = inputs.x.astype(np.float64), inputs.dy.astype(np.float64)
    sigma = x.std(axis=0) + 1e-300
    w, b = inputs.weight.astype(np.float64), inputs.bias.astype(np.float64)

    def energy(x_, w_, b_) -> float:
        # the same case (its mode and running statistics too) at the shifted inputs
        shifted = replace(inputs, x=x_.astype(inputs.dtype), weight=w_.astype(inputs.dtype),
                          bias=b_.astype(inputs.dtype))  # fmt: skip
        y = check_outputs(call(shifted), shifted, layout).get("y")
        if y is None:
            raise TargetError("returned no y on a perturbed input")
        with np.errstate(all="ignore"):
            total = float((g * y.astype(np.float64)).sum())
        if not np.isfinite(total):
            raise TargetError("its y is not finite, so its backward cannot be compared with it")
        return total

    def along(index: int):
        """The energy as a function of x, w or b alone (index 0, 1, 2)."""

        def energy_of(value):
            args = [x, w, b]
            args[index] = value
            return energy(*args)

        return energy_of

    def directional_error(name: str, index: int, point: np.ndarray, direction: np.ndarray) -> float:
        change, applied = numdiff.difference(along(index), point, direction)
        return _relative(float((outputs[name] * applied).sum()), change, applied, outputs[name])

    errors: dict[str, float] = {}
    try:
        if "dx" in wanted:
            for _ in range(CONSISTENCY_DIRECTIONS):
                d = rng.standard_normal(x.shape) * sigma
                errors["dx"] = max(errors.get("dx", 0.0), directional_error("dx", 0, x, step * d))
        for name, index, point in (("dw", 1, w), ("db", 2, b)):
            if name in wanted:
                h = step * max(1.0, float(np.abs(w).max()), float(np.abs(b).max()))
                errors[name] = directional_error(name, index, point, h * rng.standard_normal(w.shape))
    except TargetError as error:
        return ConsistencyResult(inputs.name, inputs.dtype, errors, tolerance, f"the target failed: {error}")
    return ConsistencyResult(inputs.name, inputs.dtype, errors, tolerance)


def _relative(analytic: float, numeric: float, d: np.ndarray, gradient: np.ndarray) -> float:
    """|analytic − numeric| relative to Σ|gradient·d|, the scale of the directional derivative;
    infinite where the gradient is NaN or infinite (it agrees with nothing)."""
    with np.errstate(all="ignore"):
        scale = float(np.abs(gradient * d).sum()) or 1.0
        error = float(numdiff.relative_error(analytic - numeric, scale))
    return error if np.isfinite(error) else np.inf
