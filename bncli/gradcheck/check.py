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

from dataclasses import dataclass, field, replace

import numpy as np

from .. import core, numdiff
from .compare import Comparison, Judged, at_matrix, at_vector, compare
from .derivatives import (
    ProgressCallback,
    RowDerivatives,
    directional,
    numerical_dx_and_jacobians,
    numerical_parameter_gradients,
    probe_directions,
)
from .noise import DEFAULT_PRECISION, FLOAT64, NOISE_MULTIPLE, Noise, Precision
from .problem import (
    METHODS,
    CheckedGradients,
    Problem,
    default_step,
    differentiation_point,
    require_finite,
    require_usable,
)

SWEEP_STEPS = tuple(10.0**-e for e in range(1, 13))


@dataclass(frozen=True)
class SweepPoint:
    step: float
    max_rel_error: float
    is_default: bool


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


def check_gradients(
    problem: Problem,
    checked: CheckedGradients,
    *,
    analytic: CheckedGradients | None = None,
    method: str = "central",
    step: float | None = None,
    rtol: float | None = None,
    precision: Precision = DEFAULT_PRECISION,
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
        self.x0 = differentiation_point(self.problem)
        self.bn = self.problem.forward(self.problem.x)
        self.noise = Noise(self.problem, self.bn, precision)
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
        dw, db = numerical_parameter_gradients(self.problem, self.method)
        noise, natural = self.noise, self.noise.natural
        ones = np.ones_like(self.problem.weight)
        rounding = {
            "dw": numdiff.loss_rounding(natural.abs_g, natural.abs_s, ones, FLOAT64),
            "db": numdiff.loss_rounding(natural.abs_g, None, ones, FLOAT64),
        }
        for name, numerical, scale in (("dw", dw, natural.dw), ("db", db, natural.db)):
            values = getattr(self.checked, name)
            if values is not None:
                judged = Judged(values, numerical, scale, rounding[name] + noise.analytic(name, values))
                self.results[name] = compare(name, judged, self.rtol, at_vector, self._ours(name))

    def _row_derivatives(self, h: np.ndarray, progress) -> RowDerivatives:
        columns = sorted(self.checked.jacobian)
        return numerical_dx_and_jacobians(self.problem, self.x0, h, self.method, columns, progress)

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
            judged = Judged(
                self.checked.dx, numerical, self.noise.natural.dx, noise + self.noise.analytic("dx", self.checked.dx)
            )
            self.results["dx"] = compare("dx", judged, self.rtol, at_matrix, self._ours("dx"), keep_errors=True)
        if self.checked.jacobian:
            self._compare_jacobians(at_h, at_2h)

    def _compare_jacobians(self, at_h: RowDerivatives, at_2h: RowDerivatives | None) -> None:
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
            judged = Judged(
                np.stack([self.checked.jacobian[c] for c in chosen]),
                numerical,
                self.noise.natural.jacobians(chosen),
                noise,
            )
            locate = lambda i, chosen=chosen: (i[1], chosen[i[0]], i[2])  # noqa: E731
            per_group.append(compare("jacobian", judged, self.rtol, locate, columns=chosen, column_axis=0))
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
        for done, v in enumerate(probe_directions((k, n), probes, seed), start=1):
            found.add(self, v, columns)
            if self.progress:
                self.progress(done, probes)
        if checked.dx is not None:
            noise = found.array("noise") + self.noise.analytic_dx_column_sums(checked.dx)
            scale = np.broadcast_to(self.noise.natural.dx_column_sums(), (probes, n))
            judged = Judged(found.array("checked"), found.array("numerical"), scale, noise)
            ours = found.array("analytic") if self.analytic is not None else None
            self.results["dx"] = compare("dx", judged, self.rtol, at_vector, ours)
        if columns:
            shape = (probes, len(columns), k)
            analytic_bound = self.noise.analytic_jacobians(columns).sum(axis=2)
            judged = Judged(
                np.reshape(found.jac_checked, shape),
                np.reshape(found.jac_numerical, shape),
                np.broadcast_to(self.noise.natural.jacobian_row_sums(columns), shape),
                np.reshape(found.jac_noise, shape) + analytic_bound,
            )
            locate = lambda i: (i[2], columns[i[1]], None)  # noqa: E731
            self.results["jacobian"] = compare("jacobian", judged, self.rtol, locate, columns=columns, column_axis=1)


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
        numerical, change, applied = directional(problem, check.x0, h * v, check.method, columns)
        require_usable(applied)
        derivative = require_finite(numerical / nominal)
        jac_derivative = change / nominal[columns]
        at_2h = jac_at_2h = None
        if check._second_step:
            numerical_2h, change_2h, _ = directional(problem, check.x0, 2 * h * v, check.method, columns)
            at_2h, jac_at_2h = numerical_2h / (2 * nominal), change_2h / (2 * nominal[columns])
        noise_of = check.noise
        if check.method == "complex":
            rounding = noise_of.complex_rounding(noise_of.natural.dx_column_sums(), noise_of.loss / noise_of.std)
            jac_rounding = numdiff.FORWARD_ROUNDINGS * FLOAT64 * noise_of.natural.jacobian_row_sums(columns).T
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


def _sweep(problem, dx, method, default, probes, seed) -> list[SweepPoint]:
    """The numerical dx error against ``dx`` for steps 1e-1 … 1e-12 and the default."""
    steps = sorted(set(SWEEP_STEPS) | {default}, reverse=True)
    points = []
    for step in steps:
        report = check_gradients(problem, CheckedGradients(dx=dx), method=method, step=step, probes=probes, seed=seed)
        points.append(SweepPoint(step, report.results["dx"].max_rel_error, step == default))
    return points
