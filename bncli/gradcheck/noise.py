"""What each numerical and analytic value may be off by without a mistake: the verdict's yardstick.

See the notes of :mod:`bncli.gradcheck`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .. import core, numdiff
from ..audit.reference import BUDGET_MULTIPLES
from ..numdiff import NaturalScales
from .problem import Problem

# The verdict's bound, in units of each element's noise estimate. Correct gradients measured at
# most 1.2 noise (a complex-step Jacobian of integer data; central differences 0.74, beside a
# 1e4σ outlier), over 600 random problems (k = 2 … 800, heavy tails, offsets to 1e12, eps 0,
# dy constant down a column), the test datasets, k = 2 … 10⁶ and float32 (bench/noise.py).
# Wrong ones of the smallest kind, the unbiased variance, measured 120 noise and more at k = 10⁶.
NOISE_MULTIPLE = 8.0


FLOAT64 = numdiff.unit_roundoff(np.float64)


@dataclass(frozen=True)
class Precision:
    """How the checked gradients were computed: the unit roundoff of their arithmetic, and whether
    their mean was subtracted exactly (bncli's refined two-pass core) or rounded (as anyone else's
    may be: rounding the mean shifts every s by ≈ u·|m|/σ, which data with a large offset show)."""

    unit: float = FLOAT64
    exact_mean: bool = True


# How bncli's own core computes: float64, from an exactly centered x.
DEFAULT_PRECISION = Precision()


def evident_unit_roundoff(*arrays: np.ndarray) -> float:
    """The unit roundoff that gradients computed elsewhere evidently carry.

    float32's where every value is a float32, or where no value (of a sample of 4096) has
    more than 9 significant digits, the most a float32 needs (such values were printed from
    float32, or rounded to fewer digits: then half a unit of their last digit); else float64's.
    """
    values = np.concatenate([np.ravel(a) for a in arrays if a is not None])
    values = values[np.isfinite(values) & (values != 0)]
    if values.size == 0:
        return FLOAT64
    if np.array_equal(values.astype(np.float32).astype(np.float64), values):
        return numdiff.unit_roundoff(np.float32)
    if values.size > 4096:
        values = np.random.default_rng(0).choice(values, 4096, replace=False)
    digits = max(_significant_digits(float(v)) for v in values)
    if digits > 9:
        return FLOAT64
    return max(numdiff.unit_roundoff(np.float32), 0.5 * 10.0 ** (1 - digits))


def _significant_digits(value: float) -> int:
    """The significant digits of the shortest text that reads back to ``value``."""
    mantissa = repr(abs(value)).split("e")[0].replace(".", "")
    return len(mantissa.strip("0"))


class Noise:
    """What each numerical and analytic value may be off by without a mistake (see the module notes).

    ``precision`` tells how the checked gradients were computed. Rounding of the
    numerical side is float64's: the forward pass differentiated runs in float64.
    """

    def __init__(self, problem: Problem, bn: core.BatchNorm, precision: Precision):
        self.problem = problem
        self.precision = precision.unit
        self.natural = NaturalScales(bn, problem.dy, problem.weight)
        mean = np.zeros_like(bn.mean) if precision.exact_mean else bn.mean
        natural = self.natural
        self.rounding = numdiff.RoundingScales(natural.abs_s, mean, bn.std, problem.weight, problem.bias, natural.abs_g)
        # The magnitude each y_t is rounded relative to, in units of |w|: |s_t| (+ 1, see
        # numdiff.loss_rounding) in training mode, the same at the centered point by shift
        # invariance; in eval mode x − running mean rounds relative to both x and that mean.
        magnitude = self.natural.abs_s
        if problem.affine:
            magnitude = (np.abs(problem.x) + np.abs(bn.mean)) / bn.std
        self.magnitude = magnitude
        self.loss = numdiff.loss_rounding(self.natural.abs_g, magnitude, problem.weight, FLOAT64)
        self.offset = 1 + np.abs(mean) / bn.std
        self.std = bn.std

    def analytic(self, name: str) -> np.ndarray:
        """The rounding bound of an analytic dx, dw or db computed at ``precision``: the audit's
        budget, so that what the audit calls PASS the check does too."""
        return BUDGET_MULTIPLES[name] * self.precision * getattr(self.rounding, name)

    def analytic_dx_column_sums(self) -> np.ndarray:
        """Σ_i of :meth:`analytic` dx bounds: a probe's (|v_i| = 1), without forming them."""
        return BUDGET_MULTIPLES["dx"] * self.precision * self.rounding.dx_column_sums()

    def analytic_jacobians(self, columns: Sequence[int]) -> np.ndarray:
        """J = u·R has no sums but each s carries the error of the mean: o times its natural scale."""
        offset = self.offset[list(columns), None, None]
        return BUDGET_MULTIPLES["dx"] * self.precision * offset * self.natural.jacobians(columns)

    def complex_rounding(self, natural_scale: np.ndarray, shared: np.ndarray) -> np.ndarray:
        """The rounding of a complex-step derivative: a few units of roundoff of its natural scale,
        and what the column's shared statistics add: Im v sums k products, so its rounding moves
        every Im s_t by ≈ u·|s_t| relative to the step: ``shared``, the rounding of y or of the
        loss over σ."""
        return numdiff.FORWARD_ROUNDINGS * FLOAT64 * natural_scale + shared

    def output_rounding(self, columns: Sequence[int]) -> np.ndarray:
        """(k, m): the rounding of each y_t of those columns, absolute (one side of a difference)."""
        return numdiff.output_rounding(self.magnitude[:, columns], self.problem.weight[list(columns)], FLOAT64)
