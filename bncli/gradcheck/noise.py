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
    """How the checked gradients were computed: the unit roundoff of their arithmetic, whether
    their mean was subtracted exactly (bncli's refined two-pass core) or rounded (as anyone else's
    may be: rounding the mean shifts every s by ≈ u·|m|/σ, which data with a large offset show),
    and ``printed``, the relative rounding of numbers written with few digits (half a unit of
    their last digit), which each element may be off by on top."""

    unit: float = FLOAT64
    exact_mean: bool = True
    printed: float = 0.0


# How bncli's own core computes: float64, from an exactly centered x.
DEFAULT_PRECISION = Precision()


def evident_precision(*arrays: np.ndarray) -> Precision:
    """How gradients computed elsewhere were evidently computed and written.

    float32 arithmetic where every value is a float32, or where the most digits any value has
    (of a sample of 4096) is 7 to 9, as float32 numbers printed shortest have; numbers with at
    most 15 digits were also rounded in print, by half a unit of their last digit. Their mean's
    rounding is allowed for (``exact_mean`` False).
    """
    values = np.concatenate([np.ravel(a) for a in arrays if a is not None])
    values = values[np.isfinite(values) & (values != 0)]
    if values.size == 0:
        return Precision(FLOAT64, exact_mean=False)
    if np.array_equal(values.astype(np.float32).astype(np.float64), values):
        return Precision(numdiff.unit_roundoff(np.float32), exact_mean=False)
    if values.size > 4096:
        values = np.random.default_rng(0).choice(values, 4096, replace=False)
    digits = max(_significant_digits(float(v)) for v in values)
    unit = numdiff.unit_roundoff(np.float32) if 7 <= digits <= 9 else FLOAT64
    return Precision(unit, exact_mean=False, printed=0.5 * 10.0 ** (1 - digits) if digits <= 15 else 0.0)


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
        self.precision, self.printed = precision.unit, precision.printed
        self.natural = NaturalScales(bn, problem.dy, problem.weight)
        # A rounded mean shifts s by u·|m|/σ; beyond |m|/σ = u^(-1/2) an implementation at that
        # precision keeps less than half its digits, and the check asks for half at least.
        mean = (
            np.zeros_like(bn.mean)
            if precision.exact_mean
            else np.minimum(np.abs(bn.mean), bn.std / np.sqrt(precision.unit))
        )
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

    def analytic(self, name: str, checked: np.ndarray | float = 0.0) -> np.ndarray:
        """The rounding bound of an analytic dx, dw or db computed at ``precision``: the audit's
        budget, so that what the audit calls PASS the check does too; and the rounding in print
        of the ``checked`` values themselves."""
        return BUDGET_MULTIPLES[name] * self.precision * getattr(self.rounding, name) + self.printed * np.abs(checked)

    def analytic_dx_column_sums(self, checked: np.ndarray) -> np.ndarray:
        """Σ_i of :meth:`analytic` dx bounds: a probe's (|v_i| = 1), without forming the budget's."""
        printed = self.printed * np.abs(checked).sum(axis=0) if self.printed else 0.0
        return BUDGET_MULTIPLES["dx"] * self.precision * self.rounding.dx_column_sums() + printed

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
