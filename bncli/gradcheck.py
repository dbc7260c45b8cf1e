"""Numerical gradients of batch norm from its forward pass alone, and their comparison.

Pure numpy, no I/O. :func:`check_gradients` differentiates the forward pass of
:mod:`bncli.core` numerically (central differences or complex step), compares
the result with gradients computed analytically (bncli's own or the user's)
and returns a :class:`CheckReport`.

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

*Error measure.* An error is divided by the natural scale of the element
compared: the sum of the magnitudes of the terms that make it up, e.g. for dx
``|u|·(k|g_i| + Σ|g| + |s_i|·Σ|g s|)`` with ``u = w/(kσ)``. Rounding error is
bounded by ε_mach times that sum, so the measure is the same whether the data
are ~1e-6 or ~1e12, a correct gradient that is exactly 0 (dy constant down a
column) does not fail on noise, and a wrong element fails by its own size.

*Cost.* The full check takes 2k forward passes of the whole matrix (the rows i
of all columns are perturbed at once, since columns are independent), batched:
O(k²·n). The probe check compares directional derivatives along random
directions instead: O(k·n) per probe.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np

from . import core

METHODS = ("central", "complex")
SWEEP_STEPS = tuple(10.0**-e for e in range(1, 13))
# Bounds on the relative error (see the module notes), keyed by the precision of the
# gradient checked. Measured errors of correct gradients (bench/run.py, "accuracy"):
# float64 central differences 2e-11 (k = 10) to 2e-10 (k = 1e5); complex step 1e-15
# and below; float32 gradients 1e-7 and below. Each bound leaves a margin of 100× or
# more, and still fails a relative error of 1e-4 anywhere.
DEFAULT_RTOL = {
    ("central", "float64"): 1e-6,
    ("complex", "float64"): 1e-10,
    ("central", "float32"): 1e-5,
    ("complex", "float32"): 1e-5,
}
# Elements per batched forward pass: bounds the memory of a full check (~100 MB).
_CHUNK_ELEMENTS = 1 << 21
_WORKERS = min(4, os.cpu_count() or 1)
_TINY = np.finfo(np.float64).tiny

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


def default_step(method: str, rows: int, affine: bool = False) -> float:
    """The default step relative to each column's σ (see the module notes).

    ``affine``: eval mode, where y is affine in x, so central differences have no
    truncation error and the largest natural step, σ itself, has the least rounding.
    """
    if method == "complex":
        return 1e-20
    if affine:
        return 1.0
    return float(np.cbrt(np.finfo(np.float64).eps * max(rows, 1)))


def default_rtol(method: str, dtype: str) -> float:
    return DEFAULT_RTOL[(method, dtype)]


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


@dataclass(frozen=True)
class Comparison:
    """The comparison of one quantity (dx, dw, db or jacobian) with its numerical value.

    ``row`` and ``column`` locate the worst element (row is None for per-column
    quantities and for probe checks of dx); ``wrt_row`` is the second index of a
    Jacobian element ∂y[row]/∂x[wrt_row]. ``checked`` and ``reference`` are the
    checked and the numerical value there. ``beyond`` counts the elements whose
    error exceeds the bound and ``column_errors`` maps each column compared to
    its worst relative error. ``analytic_rel_error`` is, for a gradient given
    with --against, its distance from bncli's analytic gradient.
    """

    quantity: str
    max_abs_error: float
    max_rel_error: float
    row: int | None
    column: int
    checked: float
    reference: float
    passed: bool
    beyond: int
    column_errors: dict[int, float]
    wrt_row: int | None = None
    analytic_rel_error: float | None = None
    errors: np.ndarray | None = field(default=None, repr=False)  # every element's relative error (dx, full check)


@dataclass(frozen=True)
class SweepPoint:
    step: float
    max_rel_error: float
    is_default: bool


@dataclass(frozen=True)
class CheckReport:
    method: str
    step: float
    rtol: float
    probes: int | None  # None: every element was compared
    results: dict[str, Comparison]
    sweep: list[SweepPoint] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.results.values())


# ----------------------------------------------------------------------------- scales


class _Scales:
    """Natural scales of gradient elements (see the module notes), each computed when needed.

    For J = u·R: |u|·(k·δ_ij + 1 + |s_i s_j|); for dx = Jᵀg: |u|·(k|g_i| + Σ|g| + |s_i|·Σ|g s|);
    for dw: Σ|g s|; for db: Σ|g|. In eval mode J = (w/σ)·I and dx = (w/σ)·g.
    """

    def __init__(self, bn: core.BatchNorm, dy: np.ndarray, weight: np.ndarray):
        self.bn = bn
        self.training = bn.training
        k = bn.rows
        self.abs_g = np.abs(dy)
        self.abs_s = np.abs(bn.s)
        self.db = self.abs_g.sum(axis=0)
        self.dw = core.column_dot(self.abs_g, self.abs_s)
        self.u = np.abs(weight) / ((k if self.training else 1) * bn.std)
        # Subnormal σ (ε = 0): u overflows though the scales of dx need not (g is as tiny);
        # those are then formed in units of a power of two near σ.
        self.unit = 1.0 if np.isfinite(self.u).all() else core.power_of_two_unit(bn.std[None, :])[0]
        self.u_units = np.abs(weight) / ((k if self.training else 1) * (bn.std / self.unit))

    @cached_property
    def dx(self) -> np.ndarray:
        """(k, n): the scale of every element of dx."""
        if not self.training:
            return self.u_units * (self.abs_g / self.unit)
        k = self.bn.rows
        return self.u_units * ((k * self.abs_g + self.db + self.abs_s * self.dw) / self.unit)

    def dx_column_sums(self) -> np.ndarray:
        """(n,): Σ_i of the scales of dx, without forming them."""
        if not self.training:
            return self.u_units * (self.db / self.unit)
        k = self.bn.rows
        return self.u_units * ((2 * k * self.db + self.abs_s.sum(axis=0) * self.dw) / self.unit)

    def jacobian_row_sums(self, columns: Sequence[int]) -> np.ndarray:
        """(len(columns), k): Σ_j of each row of those scales, without forming them."""
        u = self.u[list(columns), None]
        if not self.training:
            return np.broadcast_to(u, (len(columns), self.bn.rows))
        s = self.abs_s[:, columns].T
        return u * (2 * self.bn.rows + s * s.sum(axis=1, keepdims=True))

    def jacobians(self, columns: Sequence[int]) -> np.ndarray:
        """(len(columns), k, k): the scale of every element of those columns' Jacobians."""
        k = self.bn.rows
        u = self.u[list(columns), None, None]
        if not self.training:
            return u * np.eye(k)
        s = self.abs_s[:, columns].T  # (m, k)
        scale = np.multiply(s[:, :, None], s[:, None, :])
        scale += 1
        scale[:, np.arange(k), np.arange(k)] += k
        scale *= u
        return scale


# ----------------------------------------------------------------------- derivatives


def _difference(f: Callable[[np.ndarray], np.ndarray], point, direction, method: str):
    """The change of f across a step and the step actually applied.

    central: f(p + d) − f(p − d) and (p + d) − (p − d), the perturbation the
    floats really carry; complex: Im f(p + i·d) and d.
    """
    if method == "central":
        plus, minus = point + direction, point - direction
        return f(plus) - f(minus), plus - minus
    return f(point + 1j * direction).imag, direction


def _differentiation_point(problem: Problem) -> np.ndarray:
    """The data shifted by the column means (training mode), where steps are not lost."""
    if problem.running is None:
        return problem.x - problem.x.mean(axis=0)
    return problem.x


def _chunks(total: int, size: int) -> Iterator[tuple[int, int]]:
    for start in range(0, total, size):
        yield start, min(start + size, total)


def _numerical_dx_and_jacobians(
    problem: Problem,
    x0: np.ndarray,
    h: np.ndarray,
    method: str,
    columns: Sequence[int],
    progress: ProgressCallback | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Numerical dx = Jᵀg for every element, and J of the given columns, in O(k²·n).

    Rows i of all columns are perturbed together (columns are independent) and
    many rows are batched into one forward pass along a leading axis. Returns dx
    (k, n) and the transposed Jacobians Jᵀ[c, i, t] = ∂y_t/∂x_i, (len(columns), k, k).
    """
    k, n = x0.shape

    def normalized(x):
        return problem.perturbed(x, bias=0.0).y

    dx = np.empty((k, n))
    jac = np.empty((len(columns), k, k))

    def chunk(start: int, stop: int) -> int:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # per thread
            return chunk_in_thread(start, stop)

    def chunk_in_thread(start: int, stop: int) -> int:
        rows = np.arange(start, stop)
        perturbed = (np.arange(stop - start), rows)
        if method == "complex":
            point = _stacked(x0, stop - start, complex)
            point[perturbed] += 1j * h
            change = normalized(point).imag
            applied = np.broadcast_to(h, (stop - start, n))
        else:
            point = _stacked(x0, stop - start)
            plus, minus = x0[rows] + h, x0[rows] - h
            applied = plus - minus  # (B, n): the perturbation the floats carry
            point[perturbed] = plus
            change = normalized(point)
            point[perturbed] = minus
            change -= normalized(point)
        _require_usable(applied)
        dx[rows] = _require_finite(core.column_dot(problem.dy, change) / applied)
        # jac[c, i, t] = ∂y_t/∂x_i of column c: t runs along memory in both arrays.
        jac[:, rows, :] = np.moveaxis(change[:, :, columns], -1, 0) / applied[:, columns].T[:, :, None]
        return stop

    # Chunks are independent and numpy releases the GIL inside its loops: one thread per core.
    batch = max(1, min(_CHUNK_ELEMENTS // (k * n), -(-k // _WORKERS)))
    with ThreadPoolExecutor(_WORKERS) as pool:
        for done in pool.map(lambda bounds: chunk(*bounds), _chunks(k, batch)):
            if progress:
                progress(done, k)
    return dx, jac


def _stacked(x0: np.ndarray, copies: int, dtype=None) -> np.ndarray:
    """``copies`` copies of x0 along a new leading axis, each column contiguous (as core wants)."""
    k, n = x0.shape
    out = np.empty((copies, n, k), dtype=dtype or x0.dtype).transpose(0, 2, 1)
    out[...] = x0
    return out


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
    change, applied = _difference(lambda w: problem.perturbed(problem.x, weight=w, bias=0.0).y, zero, one, method)
    dw = _require_finite(core.column_dot(g, change) / applied)
    change, applied = _difference(lambda b: problem.perturbed(problem.x, weight=zero, bias=b).y, zero, one, method)
    db = _require_finite(core.column_dot(g, change) / applied)
    return dw, db


# ------------------------------------------------------------------------ comparison


def _compare(
    quantity: str,
    checked: np.ndarray,
    reference: np.ndarray,
    scale: np.ndarray,
    rtol: float,
    locate: Callable[[tuple[int, ...]], tuple[int | None, int, int | None]],
    analytic: np.ndarray | None = None,
    columns: Sequence[int] | None = None,
    column_axis: int = -1,
    keep_errors: bool = False,
) -> Comparison:
    """Compare element by element; ``columns`` names the column of each index along ``column_axis``
    (default: the index itself)."""
    denominator = np.maximum(scale, _TINY)
    error = np.subtract(checked, reference)
    np.abs(error, out=error)
    max_abs = float(error.max())
    error /= denominator  # now relative to each element's natural scale
    worst = np.unravel_index(np.argmax(error), error.shape)
    row, column, wrt_row = locate(tuple(int(i) for i in worst))
    max_rel = float(error[worst])
    beyond = int(np.count_nonzero(~(error <= rtol)))
    per_column = np.moveaxis(error, column_axis, -1).reshape(-1, error.shape[column_axis]).max(axis=0)
    names = range(len(per_column)) if columns is None else columns
    column_errors = {int(c): float(e) for c, e in zip(names, per_column, strict=True)}
    kept = error.copy() if keep_errors else None
    if analytic is not None:
        np.subtract(checked, analytic, out=error)
        np.abs(error, out=error)
        error /= denominator
    return Comparison(
        quantity=quantity,
        max_abs_error=max_abs,
        max_rel_error=max_rel,
        row=row,
        column=column,
        checked=float(checked[worst]),
        reference=float(reference[worst]),
        passed=bool(max_rel <= rtol),
        beyond=beyond,
        column_errors=column_errors,
        wrt_row=wrt_row,
        analytic_rel_error=None if analytic is None else float(error.max()),
        errors=kept,
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


@dataclass(frozen=True)
class Gradient:
    """Gradients to check: any of dx (k, n), dw (n,), db (n,), jacobian {column: (k, k)}."""

    dx: np.ndarray | None = None
    dw: np.ndarray | None = None
    db: np.ndarray | None = None
    jacobian: dict[int, np.ndarray] = field(default_factory=dict)

    def as_float64(self) -> Gradient:
        """The same gradients in float64 (float32 ones are compared at their own precision by ``rtol``)."""

        def wide(values):
            return None if values is None else np.asarray(values, dtype=np.float64)

        jacobian = {c: wide(j) for c, j in self.jacobian.items()}
        return Gradient(wide(self.dx), wide(self.dw), wide(self.db), jacobian)


def check_gradients(
    problem: Problem,
    checked: Gradient,
    *,
    analytic: Gradient | None = None,
    method: str = "central",
    step: float | None = None,
    rtol: float = 1e-6,
    probes: int | None = None,
    seed: int = 0,
    sweep: bool = False,
    progress: ProgressCallback | None = None,
) -> CheckReport:
    """Compare ``checked`` gradients with numerical derivatives of ``problem``'s forward pass.

    Parameters
    ----------
    checked : Gradient
        What to check; quantities left None are not compared.
    analytic : Gradient, optional
        bncli's own gradients, when ``checked`` came from elsewhere: each
        comparison then also reports the distance between the two.
    step : float, optional
        Relative to each column's σ; default :func:`default_step`.
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
        return _check_gradients(problem, checked, analytic, method, step, rtol, probes, seed, sweep, progress)


def _check_gradients(problem, checked, analytic, method, step, rtol, probes, seed, sweep, progress) -> CheckReport:
    k = problem.x.shape[0]
    step = default_step(method, k, affine=problem.running is not None) if step is None else step
    problem = replace(problem, x=core.columns_contiguous(problem.x), dy=core.columns_contiguous(problem.dy))
    bn = problem.forward(problem.x)
    scales = _Scales(bn, problem.dy, problem.weight)
    columns = sorted(checked.jacobian)
    results: dict[str, Comparison] = {}

    def compare(name, reference, scale, locate):
        ours = None if analytic is None else getattr(analytic, name)
        keep = name == "dx"  # the error map of the check
        results[name] = _compare(name, getattr(checked, name), reference, scale, rtol, locate, ours, keep_errors=keep)

    if checked.dw is not None or checked.db is not None:
        dw, db = _numerical_parameter_gradients(problem, method)
        if checked.dw is not None:
            compare("dw", dw, scales.dw, _at_vector)
        if checked.db is not None:
            compare("db", db, scales.db, _at_vector)

    if probes is None:
        if checked.dx is not None or columns:
            h = step * bn.std
            dx, jac = _numerical_dx_and_jacobians(
                problem, _differentiation_point(problem), h, method, columns, progress
            )
            if checked.dx is not None:
                compare("dx", dx, scales.dx, _at_matrix)
            if columns:
                _compare_jacobians(results, checked, jac, scales, rtol, columns)
    else:
        _compare_probes(results, problem, bn, checked, analytic, scales, method, step, rtol, probes, seed, progress)

    sweep_points = []
    if sweep:
        # The sweep measures the numerical derivative itself, so against the analytic dx.
        reference_dx = analytic.dx if analytic is not None else checked.dx
        if reference_dx is not None:
            sweep_points = _sweep(problem, reference_dx, method, step, probes, seed)
    ordered = {name: results[name] for name in ("dx", "dw", "db", "jacobian") if name in results}
    return CheckReport(method, step, rtol, probes, ordered, sweep_points)


def _compare_jacobians(results, checked: Gradient, numerical_t: np.ndarray, scales: _Scales, rtol: float, columns):
    """J[c][t, i] against the numerical Jᵀ[c][i, t], a group of columns at a time (~1 MB, in cache)."""
    k = numerical_t.shape[-1]
    group = max(1, (1 << 20) // (8 * k * k))
    per_group = []
    for start in range(0, len(columns), group):
        chosen = columns[start : start + group]
        per_group.append(
            _compare(
                "jacobian",
                np.stack([checked.jacobian[c] for c in chosen]),
                numerical_t[start : start + group].transpose(0, 2, 1),
                scales.jacobians(chosen),
                rtol,
                lambda i, chosen=chosen: (i[1], chosen[i[0]], i[2]),
                columns=chosen,
                column_axis=0,
            )
        )
    worst = max(per_group, key=lambda comparison: comparison.max_rel_error)
    results["jacobian"] = replace(
        worst,
        max_abs_error=max(c.max_abs_error for c in per_group),
        beyond=sum(c.beyond for c in per_group),
        column_errors={c: e for group in per_group for c, e in group.column_errors.items()},
    )


def _compare_probes(results, problem, bn, checked, analytic, scales, method, step, rtol, probes, seed, progress):
    """Directional derivatives along random ±1 directions v: per column Σ_i dx_i v_i, and J·v.

    With |v_i| = 1 the natural scale of Σ_i dx_i v_i is Σ_i of dx's element scales.
    """
    x0 = _differentiation_point(problem)
    k, n = x0.shape
    h = step * bn.std
    nominal = h if method == "complex" else 2 * h  # report in units of the gradient
    columns = sorted(checked.jacobian)
    found: dict[str, list] = {"checked": [], "numerical": [], "analytic": [], "jac_checked": [], "jac_numerical": []}
    for done, v in enumerate(_probe_directions((k, n), probes, seed), start=1):
        numerical, change, applied = _directional(problem, x0, h * v, method, columns)
        _require_usable(applied)
        found["numerical"].append(_require_finite(numerical / nominal))
        if checked.dx is not None:
            found["checked"].append(core.column_dot(checked.dx, applied) / nominal)
            if analytic is not None:
                found["analytic"].append(core.column_dot(analytic.dx, applied) / nominal)
        for position, c in enumerate(columns):
            found["jac_checked"].append(checked.jacobian[c] @ applied[:, c] / nominal[c])
            found["jac_numerical"].append(change[:, position] / nominal[c])
        if progress:
            progress(done, probes)
    if checked.dx is not None:
        results["dx"] = _compare(
            "dx",
            np.array(found["checked"]),
            np.array(found["numerical"]),
            np.broadcast_to(scales.dx_column_sums(), (probes, n)),
            rtol,
            _at_vector,
            np.array(found["analytic"]) if analytic is not None else None,
        )
    if columns:
        shape = (probes, len(columns), k)
        jac_scale = scales.jacobian_row_sums(columns)
        results["jacobian"] = _compare(
            "jacobian",
            np.reshape(found["jac_checked"], shape),
            np.reshape(found["jac_numerical"], shape),
            np.broadcast_to(jac_scale, shape),
            rtol,
            lambda i: (i[2], columns[i[1]], None),
            columns=columns,
            column_axis=1,
        )


def _directional(problem: Problem, x0: np.ndarray, direction: np.ndarray, method: str, columns: list[int]):
    """Σ_t g_t·Δy_t per column, Δy of the given columns, and the perturbation applied.

    Each side's Σ g·y is summed before the difference: no k×n difference array is
    kept, and the cancellation costs at most ~1/step in relative rounding, far
    below the bounds.
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
        report = check_gradients(problem, Gradient(dx=dx), method=method, step=step, probes=probes, seed=seed)
        points.append(SweepPoint(step, report.results["dx"].max_rel_error, step == default))
    return points
