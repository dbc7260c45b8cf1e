"""Numerical gradients of batch norm from its forward pass alone, and their comparison.

Pure numpy, no I/O. :func:`check_gradients` differentiates the forward pass of
:mod:`bncli.core` numerically (central differences or complex step, through
:mod:`bncli.numdiff`), compares the result with gradients computed analytically
(bncli's own or the user's) and returns a :class:`CheckReport`.

Notes
-----
*Where to differentiate.* Training-mode batch norm is exactly invariant to a
shift of a column, so the derivatives are taken at the centered data
``x − mean``: a step of 1e-6·σ is then not lost in the last digits of a large
offset (timestamps ~1.7e9 with a spread of seconds, 1e8 + noise). The bias is
left out of the function differentiated for dx and dw (∂y/∂x and ∂y/∂w do not
depend on it), so a large bias adds no rounding error either.

*Step.* Each column's step is ``step · σ``, relative to its own scale, and the
perturbation actually applied, ``(x + h) − (x − h)``, is the one divided by.
Central differences err by ≈ h² (truncation) plus ≈ ε_mach·k/h (rounding, which
grows with k because every output shares the rounded mean and σ), so the
default relative step is ``(ε_mach · k)^(1/3)``. Complex step,
``Im f(x + i·h) / h``, has no cancellation and is exact to rounding for tiny h.

*Verdict.* Each element (or probe) is judged against its own **noise**: the
rounding of the loss over the step, plus the truncation error measured from a
second step 2h (:func:`bncli.numdiff.richardson`, which also removes it from
the value compared), plus the rounding bound of
the analytic value at the precision it was computed in
(:class:`bncli.numdiff.RoundingScales`, the audit's budget). It FAILs where
``|analytic − numerical| > NOISE_MULTIPLE · noise``. This noise does not grow
with the batch the way the gradients' natural scales do, so a gradient off by
k/(k−1) fails at every k that float64 can resolve. ``rtol``, when a user sets
it, replaces that rule by ``error / natural scale ≤ rtol``.

*Error measure.* Errors are reported divided by the natural scale of the element
compared (:class:`bncli.numdiff.NaturalScales`): the sum of the magnitudes of
the terms that make it up, the same whether the data are ~1e-6 or ~1e12.

*Cost.* The full check takes 2k forward passes of the whole matrix per step (the
rows i of all columns are perturbed at once, since columns are independent),
batched: O(k²·n), twice for the second step. The probe check compares
directional derivatives along random directions instead: O(k·n) per probe.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import numpy as np

from . import core, numdiff
from .audit.reference import BUDGET_MULTIPLES
from .numdiff import NaturalScales

METHODS = ("central", "complex")
SWEEP_STEPS = tuple(10.0**-e for e in range(1, 13))
# The verdict's bound, in units of each element's noise estimate. Correct gradients measured at
# most 1.2 noise (a complex-step Jacobian of integer data; central differences 0.74, beside a
# 1e4σ outlier), over 600 random problems (k = 2 … 800, heavy tails, offsets to 1e12, eps 0,
# dy constant down a column), the test datasets, k = 2 … 10⁶ and float32 (bench/noise.py).
# Wrong ones of the smallest kind, the unbiased variance, measured 120 noise and more at k = 10⁶.
NOISE_MULTIPLE = 8.0
_WORKERS = min(4, os.cpu_count() or 1)
_FLOAT64 = numdiff.unit_roundoff(np.float64)

ProgressCallback = Callable[[int, int], None]


class StepError(ValueError):
    """The step is lost in rounding, or overflows, in some columns (``columns``: their indices)."""

    def __init__(self, columns: list[int]):
        self.columns = columns
        super().__init__(f"the perturbation (x + h) − (x − h) is 0 or not finite in column(s) {columns}")


def _require_usable(applied: np.ndarray) -> None:
    """Every perturbation actually applied must be a positive finite number."""
    usable = np.isfinite(applied) & (np.abs(applied) > 0)
    if not usable.all():
        raise StepError(np.flatnonzero(~usable.reshape(-1, usable.shape[-1]).all(axis=0)).tolist())


def _require_finite(derivative: np.ndarray) -> np.ndarray:
    """A numerical derivative (columns along the last axis) that overflowed is the step's fault."""
    finite = np.isfinite(derivative)
    if not finite.all():
        raise StepError(np.flatnonzero(~finite.reshape(-1, finite.shape[-1]).all(axis=0)).tolist())
    return derivative


def default_step(method: str, rows: int, affine: bool = False, probes: bool = False) -> float:
    """The default step relative to each column's σ (see the module notes).

    ``affine``: eval mode, where y is affine in x, so central differences have no
    truncation error and the largest natural step, σ itself, has the least rounding.
    ``probes``: a ±1 direction moves all k rows at once, so its truncation error is that
    of a relative step h (not h/√k) while the rounding, relative to a directional
    derivative of size √k, is ε·√k/h: the balance is at (ε·√k)^(1/3).
    """
    if method == "complex":
        return 1e-20
    if affine:
        return 1.0
    growth = np.sqrt(max(rows, 1)) if probes else max(rows, 1)
    return float(np.cbrt(np.finfo(np.float64).eps * growth))


@dataclass(frozen=True)
class Problem:
    """One batch-norm evaluation to differentiate, in float64.

    ``running`` holds (mean, var) in eval mode and is None in training mode.
    """

    x: np.ndarray  # (k, n)
    dy: np.ndarray  # (k, n)
    weight: np.ndarray  # (n,)
    bias: np.ndarray  # (n,)
    eps: float
    running: tuple[np.ndarray, np.ndarray] | None = None

    def forward(self, x: np.ndarray, weight=None, bias=None) -> core.BatchNorm:
        weight = self.weight if weight is None else weight
        bias = self.bias if bias is None else bias
        if self.running is None:
            return core.forward(x, weight, bias, self.eps)
        return core.forward_eval(x, *self.running, weight, bias, self.eps)

    def perturbed(self, x: np.ndarray, weight=None, bias=None) -> core.BatchNorm:
        """:meth:`forward` at a perturbed point, where a step so large that the variance is lost
        (inf − inf with a complex step of 1e300·σ) is the step's fault, not the data's."""
        try:
            return self.forward(x, weight, bias)
        except core.ZeroVarianceError as error:
            raise StepError(error.columns) from None

    @property
    def affine(self) -> bool:
        """Eval mode: y is affine in x, so central differences have no truncation error."""
        return self.running is not None


@dataclass(frozen=True)
class Comparison:
    """The comparison of one quantity (dx, dw, db or jacobian) with its numerical value.

    ``row`` and ``column`` locate the worst element, the one the verdict rests on (row is
    None for per-column quantities and for probe checks of dx); ``wrt_row`` is the second
    index of a Jacobian element ∂y[row]/∂x[wrt_row]. ``checked``, ``numerical``,
    ``abs_error``, ``rel_error`` and ``over_noise`` are the values there. ``max_abs_error`` and
    ``max_rel_error`` (error / natural scale) are the largest over all elements.
    ``noise`` is the largest noise estimate (natural scale) and ``error_over_noise`` the
    largest |checked − numerical| / noise. ``beyond`` counts the elements past the bound and
    ``column_errors`` maps each column compared to its worst relative error.
    ``analytic_rel_error`` is, for a gradient given with --against, its distance from
    bncli's analytic gradient.
    """

    quantity: str
    max_abs_error: float
    max_rel_error: float
    row: int | None
    column: int
    checked: float
    numerical: float
    abs_error: float
    rel_error: float
    over_noise: float
    noise: float
    error_over_noise: float
    passed: bool
    beyond: int
    column_errors: dict[int, float]
    wrt_row: int | None = None
    analytic_rel_error: float | None = None
    errors: np.ndarray | None = field(default=None, repr=False)  # every element's error over its bound (dx, full)


@dataclass(frozen=True)
class SweepPoint:
    step: float
    max_rel_error: float
    is_default: bool


@dataclass(frozen=True)
class Precision:
    """How the checked gradients were computed: the unit roundoff of their arithmetic, and whether
    their mean was subtracted exactly (bncli's refined two-pass core) or rounded (as anyone else's
    may be: rounding the mean shifts every s by ≈ u·|m|/σ, which data with a large offset show)."""

    unit: float = _FLOAT64
    exact_mean: bool = True


@dataclass(frozen=True)
class CheckReport:
    """``rtol`` is the user's bound on the natural scale, or None where each error is judged
    against ``NOISE_MULTIPLE`` times its noise; ``precision`` what the checked gradients'
    own rounding was judged at."""

    method: str
    step: float
    rtol: float | None
    precision: Precision
    probes: int | None  # None: every element was compared
    results: dict[str, Comparison]
    sweep: list[SweepPoint] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.results.values())

    @property
    def noise_multiple(self) -> float | None:
        return NOISE_MULTIPLE if self.rtol is None else None


@dataclass(frozen=True)
class CheckedGradients:
    """Gradients to check: any of dx (k, n), dw (n,), db (n,), jacobian {column: (k, k)}."""

    dx: np.ndarray | None = None
    dw: np.ndarray | None = None
    db: np.ndarray | None = None
    jacobian: dict[int, np.ndarray] = field(default_factory=dict)

    def as_float64(self) -> CheckedGradients:
        """The same gradients in float64 (float32 ones are judged at their own precision)."""

        def wide(values):
            return None if values is None else np.asarray(values, dtype=np.float64)

        jacobian = {c: wide(j) for c, j in self.jacobian.items()}
        return CheckedGradients(wide(self.dx), wide(self.dw), wide(self.db), jacobian)


def evident_unit_roundoff(*arrays: np.ndarray) -> float:
    """The unit roundoff that gradients computed elsewhere evidently carry.

    float32's where every value is a float32, or where no value (of a sample of 4096) has
    more than 9 significant digits, the most a float32 needs (such values were printed from
    float32, or rounded to fewer digits: then half a unit of their last digit); else float64's.
    """
    values = np.concatenate([np.ravel(a) for a in arrays if a is not None])
    values = values[np.isfinite(values) & (values != 0)]
    if values.size == 0:
        return _FLOAT64
    if np.array_equal(values.astype(np.float32).astype(np.float64), values):
        return numdiff.unit_roundoff(np.float32)
    if values.size > 4096:
        values = np.random.default_rng(0).choice(values, 4096, replace=False)
    digits = max(_significant_digits(float(v)) for v in values)
    if digits > 9:
        return _FLOAT64
    return max(numdiff.unit_roundoff(np.float32), 0.5 * 10.0 ** (1 - digits))


def _significant_digits(value: float) -> int:
    """The significant digits of the shortest text that reads back to ``value``."""
    mantissa = repr(abs(value)).split("e")[0].replace(".", "")
    return len(mantissa.strip("0"))


# ------------------------------------------------------------------------ the noise


class _Noise:
    """What each numerical and analytic value may be off by without a mistake (see the module notes).

    ``precision`` tells how the checked gradients were computed. Rounding of the
    numerical side is float64's: the forward pass differentiated runs in float64.
    """

    def __init__(self, problem: Problem, bn: core.BatchNorm, precision: Precision):
        self.problem = problem
        self.precision = precision.unit
        self.natural = NaturalScales(bn, problem.dy, problem.weight)
        mean = np.zeros_like(bn.mean) if precision.exact_mean else bn.mean
        self.rounding = numdiff.RoundingScales(bn.s, mean, bn.std, problem.weight, problem.bias, problem.dy)
        # The magnitude each y_t is rounded relative to, in units of |w|: |s_t| (+ 1, see
        # numdiff.loss_rounding) in training mode, the same at the centered point by shift
        # invariance; in eval mode x − running mean rounds relative to both x and that mean.
        magnitude = self.natural.abs_s
        if problem.affine:
            magnitude = (np.abs(problem.x) + np.abs(bn.mean)) / bn.std
        self.magnitude = magnitude
        self.loss = numdiff.loss_rounding(magnitude, problem.dy, problem.weight, _FLOAT64)
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
        return numdiff.FORWARD_ROUNDINGS * _FLOAT64 * natural_scale + shared

    def output_rounding(self, columns: Sequence[int]) -> np.ndarray:
        """(k, m): the rounding of each y_t of those columns, absolute (one side of a difference)."""
        return numdiff.output_rounding(self.magnitude[:, columns], self.problem.weight[list(columns)], _FLOAT64)


# ----------------------------------------------------------------------- derivatives


def _differentiation_point(problem: Problem) -> np.ndarray:
    """The data shifted by the column means (training mode), where steps are not lost."""
    if problem.running is None:
        return problem.x - problem.x.mean(axis=0)
    return problem.x


@dataclass(frozen=True)
class _RowDerivatives:
    """Numerical dx (k, n), the transposed Jacobians Jᵀ[c, i, t] = ∂y_t/∂x_i of some columns,
    and the perturbation applied to each element (k, n)."""

    dx: np.ndarray
    jacobians_t: np.ndarray
    applied: np.ndarray


def _numerical_dx_and_jacobians(
    problem: Problem,
    x0: np.ndarray,
    h: np.ndarray,
    method: str,
    columns: Sequence[int],
    progress: ProgressCallback | None,
) -> _RowDerivatives:
    """Numerical dx = Jᵀg for every element, and J of the given columns, in O(k²·n).

    Rows i of all columns are perturbed together (columns are independent) and
    many rows are batched into one forward pass along a leading axis.
    """
    k, n = x0.shape

    def normalized(x):
        return problem.perturbed(x, bias=0.0).y

    dx = np.empty((k, n))
    applied_all = np.empty((k, n))
    jac = np.empty((len(columns), k, k))

    @_quietly
    def chunk(start: int, stop: int) -> int:
        rows = np.arange(start, stop)
        perturbed = (np.arange(stop - start), rows)
        if method == "complex":
            point = numdiff.stacked(x0, stop - start, complex)
            point[perturbed] += 1j * h
            change = normalized(point).imag
            applied = np.broadcast_to(h, (stop - start, n))
        else:
            point = numdiff.stacked(x0, stop - start)
            plus, minus = x0[rows] + h, x0[rows] - h
            applied = plus - minus  # (B, n): the perturbation the floats carry
            point[perturbed] = plus
            change = normalized(point)
            point[perturbed] = minus
            change -= normalized(point)
        _require_usable(applied)
        applied_all[rows] = applied
        dx[rows] = _require_finite(core.column_dot(problem.dy, change) / applied)
        # jac[c, i, t] = ∂y_t/∂x_i of column c: t runs along memory in both arrays.
        jac[:, rows, :] = np.moveaxis(change[:, :, columns], -1, 0) / applied[:, columns].T[:, :, None]
        return stop

    # Chunks are independent and numpy releases the GIL inside its loops: one thread per core.
    with ThreadPoolExecutor(_WORKERS) as pool:
        for done in pool.map(lambda bounds: chunk(*bounds), numdiff.row_batches(k, n, _WORKERS)):
            if progress:
                progress(done, k)
    return _RowDerivatives(dx, jac, applied_all)


def _numerical_parameter_gradients(problem: Problem, method: str) -> tuple[np.ndarray, np.ndarray]:
    """Numerical dw and db.

    y = w·s + b is affine in w and b, so the difference quotient is exact but for
    rounding whatever the step, and the same at every point. Both are taken at
    w = b = 0 with a step of 1, so y = ±s or ±1 exactly: nothing overflows with
    a weight or bias near the top of the float range (w + h would), and a tiny
    complex step cannot underflow where s is small.
    """
    g = problem.dy
    zero, one = np.zeros_like(problem.weight), np.ones_like(problem.weight)
    change, applied = numdiff.difference(
        lambda w: problem.perturbed(problem.x, weight=w, bias=0.0).y, zero, one, method
    )
    dw = _require_finite(core.column_dot(g, change) / applied)
    change, applied = numdiff.difference(
        lambda b: problem.perturbed(problem.x, weight=zero, bias=b).y, zero, one, method
    )
    db = _require_finite(core.column_dot(g, change) / applied)
    return dw, db


# ------------------------------------------------------------------------ comparison


@dataclass(frozen=True)
class _Judged:
    """One quantity's values to compare, with the scales they are read on."""

    checked: np.ndarray
    numerical: np.ndarray
    scale: np.ndarray  # natural scale, for the reported relative error
    noise: np.ndarray  # what the two may differ by without a mistake (absolute)


def _compare(
    quantity: str,
    judged: _Judged,
    rtol: float | None,
    locate: Callable[[tuple[int, ...]], tuple[int | None, int, int | None]],
    analytic: np.ndarray | None = None,
    columns: Sequence[int] | None = None,
    column_axis: int = -1,
    keep_errors: bool = False,
) -> Comparison:
    """Compare element by element; ``columns`` names the column of each index along ``column_axis``
    (default: the index itself). The worst element is the one furthest past the bound."""
    error = np.abs(np.subtract(judged.checked, judged.numerical))
    relative = numdiff.relative_error(error, judged.scale)
    over_noise = numdiff.relative_error(error, judged.noise)
    over_noise[error == 0] = 0.0  # no error where nothing can be off (dy = 0 down a column)
    judging = over_noise if rtol is None else relative
    limit = NOISE_MULTIPLE if rtol is None else rtol
    worst = np.unravel_index(np.argmax(judging), judging.shape)
    row, column, wrt_row = locate(tuple(int(i) for i in worst))
    per_column = np.moveaxis(relative, column_axis, -1).reshape(-1, relative.shape[column_axis]).max(axis=0)
    names = range(len(per_column)) if columns is None else columns
    analytic_error = None
    if analytic is not None:
        analytic_error = numdiff.largest_relative_error(np.subtract(judged.checked, analytic), judged.scale)
    return Comparison(
        quantity=quantity,
        max_abs_error=float(error.max()),
        max_rel_error=float(relative.max()),
        row=row,
        column=column,
        checked=float(judged.checked[worst]),
        numerical=float(judged.numerical[worst]),
        abs_error=float(error[worst]),
        rel_error=float(relative[worst]),
        over_noise=float(over_noise[worst]),
        noise=float(np.max(numdiff.relative_error(np.broadcast_to(judged.noise, error.shape), judged.scale))),
        error_over_noise=float(over_noise.max()),
        passed=bool(judging[worst] <= limit),
        beyond=int(np.count_nonzero(~(judging <= limit))),
        column_errors={int(c): float(e) for c, e in zip(names, per_column, strict=True)},
        wrt_row=wrt_row,
        analytic_rel_error=analytic_error,
        errors=judging / limit if keep_errors else None,
    )


def _at_matrix(index):
    return index[0], index[1], None


def _at_vector(index):
    return None, index[-1], None


def _probe_directions(shape: tuple[int, int], probes: int, seed: int) -> Iterator[np.ndarray]:
    """Seeded random directions with entries ±1 (cheap to draw, |v_i| = 1 everywhere)."""
    rng = np.random.default_rng(seed)
    for _ in range(probes):
        v = rng.integers(0, 2, size=shape[::-1], dtype=np.int8).T  # column-major, like the data
        v *= 2
        v -= 1
        yield v


def check_gradients(
    problem: Problem,
    checked: CheckedGradients,
    *,
    analytic: CheckedGradients | None = None,
    method: str = "central",
    step: float | None = None,
    rtol: float | None = None,
    precision: Precision = Precision(),
    probes: int | None = None,
    seed: int = 0,
    sweep: bool = False,
    progress: ProgressCallback | None = None,
) -> CheckReport:
    """Compare ``checked`` gradients with numerical derivatives of ``problem``'s forward pass.

    Parameters
    ----------
    checked : CheckedGradients
        What to check; quantities left None are not compared.
    analytic : CheckedGradients, optional
        bncli's own gradients, when ``checked`` came from elsewhere: each
        comparison then also reports the distance between the two.
    step : float, optional
        Relative to each column's σ; default :func:`default_step`.
    rtol : float, optional
        A bound on error / natural scale set by the user; by default each error is
        judged against ``NOISE_MULTIPLE`` times its noise.
    precision : Precision
        How the checked gradients were computed (by default: in float64, from an exactly
        centered x, as bncli's core computes them).
    probes : int, optional
        Compare directional derivatives along this many seeded random
        directions (O(k·n) each) instead of every element (O(k²·n)).
    sweep : bool
        Also measure the numerical dx error for the steps 1e-1 … 1e-12.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
    # Steps that overflow are reported as StepError and gradients beyond the float range
    # (inf natural scales) by the callers; numpy's warnings would only repeat them.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        check = _Check(problem, checked, analytic, method, step, rtol, precision, probes, progress)
        return check.run(probes, seed, sweep)


class _Check:
    """One run of :func:`check_gradients`: the problem, its forward passes and noise, and the results."""

    def __init__(self, problem, checked, analytic, method, step, rtol, precision, probes, progress):
        k = problem.x.shape[0]
        if step is None:
            step = default_step(method, k, affine=problem.affine, probes=probes is not None)
        self.step = step
        self.problem = replace(problem, x=core.columns_contiguous(problem.x), dy=core.columns_contiguous(problem.dy))
        self.checked, self.analytic, self.method, self.rtol = checked, analytic, method, rtol
        self.precision, self.progress = precision, progress
        self.x0 = _differentiation_point(self.problem)
        self.bn = self.problem.forward(self.problem.x)
        self.noise = _Noise(self.problem, self.bn, precision)
        self.h = self.step * self.bn.std
        self.results: dict[str, Comparison] = {}

    @property
    def _second_step(self) -> bool:
        """Central differences of a function that is not affine measure their truncation at 2h."""
        return self.method == "central" and not self.problem.affine

    def run(self, probes: int | None, seed: int, sweep: bool) -> CheckReport:
        checked = self.checked
        if checked.dw is not None or checked.db is not None:
            self._compare_parameters()
        if probes is None:
            if checked.dx is not None or checked.jacobian:
                self._compare_every_element()
        else:
            self._compare_probes(probes, seed)
        sweep_points = []
        if sweep:
            # The sweep measures the numerical derivative itself, so against the analytic dx.
            reference_dx = self.analytic.dx if self.analytic is not None else checked.dx
            if reference_dx is not None:
                sweep_points = _sweep(self.problem, reference_dx, self.method, self.step, probes, seed)
        ordered = {name: self.results[name] for name in ("dx", "dw", "db", "jacobian") if name in self.results}
        return CheckReport(self.method, self.step, self.rtol, self.precision, probes, ordered, sweep_points)

    def _extrapolated(self, at_h: np.ndarray, at_2h: np.ndarray | None, rounding) -> tuple[np.ndarray, np.ndarray]:
        """The numerical value and its noise: Richardson's from two steps, or the one step's own
        (complex step and affine functions have no truncation error to remove)."""
        if at_2h is None:
            return at_h, rounding
        value, truncation = numdiff.richardson(at_h, at_2h)
        return value, numdiff.RICHARDSON_ROUNDING * rounding + truncation

    def _ours(self, name: str):
        return None if self.analytic is None else getattr(self.analytic, name)

    def _compare_parameters(self) -> None:
        """dw and db: the numerical values are exact but for rounding (y is affine in w and b)."""
        dw, db = _numerical_parameter_gradients(self.problem, self.method)
        noise, natural = self.noise, self.noise.natural
        ones = np.ones_like(self.problem.weight)
        rounding = {
            "dw": numdiff.loss_rounding(natural.abs_s, self.problem.dy, ones, _FLOAT64),
            "db": numdiff.loss_rounding(np.zeros_like(natural.abs_s), self.problem.dy, ones, _FLOAT64),
        }
        for name, numerical, scale in (("dw", dw, natural.dw), ("db", db, natural.db)):
            values = getattr(self.checked, name)
            if values is not None:
                judged = _Judged(values, numerical, scale, rounding[name] + noise.analytic(name))
                self.results[name] = _compare(name, judged, self.rtol, _at_vector, self._ours(name))

    def _row_derivatives(self, h: np.ndarray, progress) -> _RowDerivatives:
        columns = sorted(self.checked.jacobian)
        return _numerical_dx_and_jacobians(self.problem, self.x0, h, self.method, columns, progress)

    def _compare_every_element(self) -> None:
        k = self.problem.x.shape[0]
        passes = 2 if self._second_step else 1
        progress = self.progress
        at_h = self._row_derivatives(self.h, progress and (lambda done, _: progress(done, passes * k)))
        at_2h = None
        if self._second_step:
            at_2h = self._row_derivatives(2 * self.h, progress and (lambda done, _: progress(k + done, 2 * k)))
        if self.checked.dx is not None:
            # Each side of the difference carries the loss's rounding: twice it, over the step taken.
            if self.method == "complex":
                rounding = self.noise.complex_rounding(self.noise.natural.dx, self.noise.loss / self.noise.std)
            else:
                rounding = 2 * self.noise.loss / np.abs(at_h.applied)
            numerical, noise = self._extrapolated(at_h.dx, None if at_2h is None else at_2h.dx, rounding)
            judged = _Judged(self.checked.dx, numerical, self.noise.natural.dx, noise + self.noise.analytic("dx"))
            self.results["dx"] = _compare("dx", judged, self.rtol, _at_matrix, self._ours("dx"), keep_errors=True)
        if self.checked.jacobian:
            self._compare_jacobians(at_h, at_2h)

    def _compare_jacobians(self, at_h: _RowDerivatives, at_2h: _RowDerivatives | None) -> None:
        """J[c][t, i] against the numerical Jᵀ[c][i, t], a group of columns at a time (~1 MB, in cache)."""
        columns = sorted(self.checked.jacobian)
        k = at_h.jacobians_t.shape[-1]
        group = max(1, (1 << 20) // (8 * k * k))
        per_group = []
        for start in range(0, len(columns), group):
            chosen = columns[start : start + group]
            picked = slice(start, start + group)
            # ∂y_t/∂x_i: the rounding of y_t on both sides, over the step applied to x_i.
            applied = np.abs(at_h.applied[:, chosen].T)[:, None, :]  # (m, 1, k): along i
            if self.method == "complex":
                shared = self.noise.output_rounding(chosen).T[:, :, None] / self.noise.std[chosen, None, None]
                rounding = self.noise.complex_rounding(self.noise.natural.jacobians(chosen), shared)
            else:
                rounding = 2 * self.noise.output_rounding(chosen).T[:, :, None] / applied
            numerical, noise = self._extrapolated(
                at_h.jacobians_t[picked].transpose(0, 2, 1),
                None if at_2h is None else at_2h.jacobians_t[picked].transpose(0, 2, 1),
                rounding,
            )
            noise += self.noise.analytic_jacobians(chosen)
            judged = _Judged(
                np.stack([self.checked.jacobian[c] for c in chosen]),
                numerical,
                self.noise.natural.jacobians(chosen),
                noise,
            )
            locate = lambda i, chosen=chosen: (i[1], chosen[i[0]], i[2])  # noqa: E731
            per_group.append(_compare("jacobian", judged, self.rtol, locate, columns=chosen, column_axis=0))
        judging = (lambda c: c.error_over_noise) if self.rtol is None else (lambda c: c.max_rel_error)
        worst = max(per_group, key=judging)
        self.results["jacobian"] = replace(
            worst,
            max_abs_error=max(c.max_abs_error for c in per_group),
            max_rel_error=max(c.max_rel_error for c in per_group),
            noise=max(c.noise for c in per_group),
            beyond=sum(c.beyond for c in per_group),
            column_errors={c: e for group in per_group for c, e in group.column_errors.items()},
        )

    def _compare_probes(self, probes: int, seed: int) -> None:
        """Directional derivatives along random ±1 directions v: per column Σ_i dx_i v_i, and J·v.

        With |v_i| = 1 the natural scale (and the analytic rounding) of Σ_i dx_i v_i is Σ_i of dx's
        element scales (and bounds).
        """
        checked = self.checked
        k, n = self.x0.shape
        columns = sorted(checked.jacobian)
        found = _ProbeValues()
        for done, v in enumerate(_probe_directions((k, n), probes, seed), start=1):
            found.add(self, v, columns)
            if self.progress:
                self.progress(done, probes)
        if checked.dx is not None:
            noise = found.array("noise") + self.noise.analytic_dx_column_sums()
            scale = np.broadcast_to(self.noise.natural.dx_column_sums(), (probes, n))
            judged = _Judged(found.array("checked"), found.array("numerical"), scale, noise)
            ours = found.array("analytic") if self.analytic is not None else None
            self.results["dx"] = _compare("dx", judged, self.rtol, _at_vector, ours)
        if columns:
            shape = (probes, len(columns), k)
            analytic_bound = self.noise.analytic_jacobians(columns).sum(axis=2)
            judged = _Judged(
                np.reshape(found.jac_checked, shape),
                np.reshape(found.jac_numerical, shape),
                np.broadcast_to(self.noise.natural.jacobian_row_sums(columns), shape),
                np.reshape(found.jac_noise, shape) + analytic_bound,
            )
            locate = lambda i: (i[2], columns[i[1]], None)  # noqa: E731
            self.results["jacobian"] = _compare("jacobian", judged, self.rtol, locate, columns=columns, column_axis=1)


class _ProbeValues:
    """The directional derivatives of each probe, gathered as the probes run."""

    def __init__(self):
        self.values: dict[str, list] = {"checked": [], "numerical": [], "analytic": [], "noise": []}
        self.jac_checked: list = []
        self.jac_numerical: list = []
        self.jac_noise: list = []

    def array(self, name: str) -> np.ndarray:
        return np.array(self.values[name])

    def add(self, check: _Check, v: np.ndarray, columns: list[int]) -> None:
        problem, checked = check.problem, check.checked
        h = check.h
        nominal = h if check.method == "complex" else 2 * h  # report in units of the gradient
        numerical, change, applied = _directional(problem, check.x0, h * v, check.method, columns)
        _require_usable(applied)
        derivative = _require_finite(numerical / nominal)
        jac_derivative = change / nominal[columns]
        at_2h = jac_at_2h = None
        if check._second_step:
            numerical_2h, change_2h, _ = _directional(problem, check.x0, 2 * h * v, check.method, columns)
            at_2h, jac_at_2h = numerical_2h / (2 * nominal), change_2h / (2 * nominal[columns])
        noise_of = check.noise
        if check.method == "complex":
            rounding = noise_of.complex_rounding(noise_of.natural.dx_column_sums(), noise_of.loss / noise_of.std)
            jac_rounding = numdiff.FORWARD_ROUNDINGS * _FLOAT64 * noise_of.natural.jacobian_row_sums(columns).T
            jac_rounding += noise_of.output_rounding(columns) / noise_of.std[columns]
        else:
            rounding = 2 * noise_of.loss / nominal
            jac_rounding = 2 * noise_of.output_rounding(columns) / nominal[columns]
        derivative, noise = check._extrapolated(derivative, at_2h, rounding)
        jac_derivative, jac_noise = check._extrapolated(jac_derivative, jac_at_2h, jac_rounding)
        self.values["numerical"].append(derivative)
        self.values["noise"].append(noise)
        if checked.dx is not None:
            self.values["checked"].append(core.column_dot(checked.dx, applied) / nominal)
            if check.analytic is not None:
                self.values["analytic"].append(core.column_dot(check.analytic.dx, applied) / nominal)
        for position, c in enumerate(columns):
            self.jac_checked.append(checked.jacobian[c] @ applied[:, c] / nominal[c])
            self.jac_numerical.append(jac_derivative[:, position])
            self.jac_noise.append(np.broadcast_to(jac_noise, jac_derivative.shape)[:, position])


def _quietly(function: Callable) -> Callable:
    """``function`` under the check's errstate (see :func:`check_gradients`), which numpy keeps per
    thread: for the full check's worker threads."""

    def quietly(*args):
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            return function(*args)

    return quietly


def _directional(problem: Problem, x0: np.ndarray, direction: np.ndarray, method: str, columns: list[int]):
    """Σ_t g_t·Δy_t per column, Δy of the given columns, and the perturbation applied.

    Each side's Σ g·y is summed before the difference: no k×n difference array is
    kept, and the cancellation costs at most ~1/step in relative rounding, which the
    noise estimate counts.
    """

    def side(x):
        # Σ_t g_t·y_t with the bias left out is w·Σ_t g_t·s_t, summed without forming y.
        bn = problem.perturbed(x, bias=0.0)
        return problem.weight * bn.sums(problem.dy)[1], bn.y[:, columns] if columns else np.empty((len(x), 0))

    if method == "complex":
        total, y = side(x0 + 1j * direction)
        return total.imag, y.imag, direction
    plus = x0 + direction
    minus = np.subtract(x0, direction, out=direction)
    f_plus, y_plus = side(plus)
    f_minus, y_minus = side(minus)
    applied = np.subtract(plus, minus, out=plus)
    return f_plus - f_minus, y_plus - y_minus, applied


def _sweep(problem, dx, method, default, probes, seed) -> list[SweepPoint]:
    """The numerical dx error against ``dx`` for steps 1e-1 … 1e-12 and the default."""
    steps = sorted(set(SWEEP_STEPS) | {default}, reverse=True)
    points = []
    for step in steps:
        report = check_gradients(problem, CheckedGradients(dx=dx), method=method, step=step, probes=probes, seed=seed)
        points.append(SweepPoint(step, report.results["dx"].max_rel_error, step == default))
    return points
