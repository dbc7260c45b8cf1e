"""What each numerical and analytic value may be off by without a mistake: the verdict's yardstick.

See the notes of :mod:`bncli.gradcheck`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

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
    and the rounding of numbers written with few digits, which each element may be off by on top:
    half a unit of its last digit, of so many significant digits (as %.4g writes; ``printed``, that
    half unit relative to the power of ten of the element's first digit) or of so many decimals
    (as %.6f writes; ``quantum``, absolute), whichever is larger."""

    unit: float = FLOAT64
    exact_mean: bool = True
    printed: float = 0.0
    quantum: float = 0.0


# How bncli's own core computes: float64, from an exactly centered x.
DEFAULT_PRECISION = Precision()


def evident_precision(*arrays: np.ndarray) -> Precision:
    """How gradients computed elsewhere were evidently computed and written.

    float32 arithmetic where every value is a float32, or where the most digits any value has
    (of a sample of 4096) is 7 to 9, as float32 numbers printed shortest have; numbers with at
    most 15 digits were also rounded in print, by half a unit of their last digit: of the most
    significant digits any has, or of the finest decimal any has, whichever is larger for the
    element: that bounds either way of writing them (in the other way, the other is the smaller).
    Their mean's rounding is allowed for (``exact_mean`` False).
    """
    values = np.concatenate([np.ravel(a) for a in arrays if a is not None])
    values = values[np.isfinite(values) & (values != 0)]
    if values.size == 0:
        return Precision(FLOAT64, exact_mean=False)
    if np.array_equal(values.astype(np.float32).astype(np.float64), values):
        return Precision(numdiff.unit_roundoff(np.float32), exact_mean=False)
    if values.size > 4096:
        values = np.random.default_rng(0).choice(values, 4096, replace=False)
    digits, last = zip(*(_digits(float(v)) for v in values), strict=True)
    unit = numdiff.unit_roundoff(np.float32) if 7 <= max(digits) <= 9 else FLOAT64
    if max(digits) > 15:
        return Precision(unit, exact_mean=False)
    return Precision(unit, exact_mean=False, printed=0.5 * 10.0 ** (1 - max(digits)), quantum=0.5 * 10.0 ** min(last))


def _digits(value: float) -> tuple[int, int]:
    """The significant digits of the shortest text that reads back to ``value``, and the decimal
    exponent of its last one (1.25 → (3, −2), 4e-13 → (1, −13), 1200.0 → (2, 2))."""
    shortest = Decimal(repr(abs(value))).normalize().as_tuple()
    return len(shortest.digits), shortest.exponent


class Noise:
    """What each numerical and analytic value may be off by without a mistake (see the module notes).

    ``precision`` tells how the checked gradients were computed. Rounding of the
    numerical side is float64's: the forward pass differentiated runs in float64.
    """

    def __init__(self, problem: Problem, bn: core.BatchNorm, precision: Precision):
        self.problem = problem
        self.precision, self.printed, self.quantum = precision.unit, precision.printed, precision.quantum
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
        return BUDGET_MULTIPLES[name] * self.precision * getattr(self.rounding, name) + self.in_print(checked)

    def analytic_dx_column_sums(self, checked: np.ndarray) -> np.ndarray:
        """Σ_i of :meth:`analytic` dx bounds: a probe's (|v_i| = 1), without forming the budget's."""
        in_print = self.in_print(checked).sum(axis=0) if self.printed else 0.0
        return BUDGET_MULTIPLES["dx"] * self.precision * self.rounding.dx_column_sums() + in_print

    def in_print(self, checked: np.ndarray | float) -> np.ndarray | float:
        """What each checked value may be off by from being written with few digits (see :class:`Precision`)."""
        if not self.printed:
            return 0.0
        size = np.abs(checked)
        with np.errstate(divide="ignore"):  # 0 has no first digit: its rounding is the quantum's
            decade = np.where(size > 0, 10.0 ** np.floor(np.log10(np.where(size > 0, size, 1.0))), 0.0)
        return np.maximum(self.printed * decade, self.quantum)

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
