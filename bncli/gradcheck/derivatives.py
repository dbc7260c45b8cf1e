"""Numerical derivatives of the forward pass: every element (rows batched), dw and db, and along a direction."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from .. import core, numdiff
from .problem import Problem, require_finite, require_usable

WORKERS = min(4, os.cpu_count() or 1)


ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class RowDerivatives:
    """Numerical dx (k, n), the transposed Jacobians Jᵀ[c, i, t] = ∂y_t/∂x_i of some columns,
    and the perturbation applied to each element (k, n)."""

    dx: np.ndarray
    jacobians_t: np.ndarray
    applied: np.ndarray


def numerical_dx_and_jacobians(
    problem: Problem,
    x0: np.ndarray,
    h: np.ndarray,
    method: str,
    columns: Sequence[int],
    progress: ProgressCallback | None,
) -> RowDerivatives:
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

    @quietly
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
        require_usable(applied)
        applied_all[rows] = applied
        dx[rows] = require_finite(core.column_dot(problem.dy, change) / applied)
        # jac[c, i, t] = ∂y_t/∂x_i of column c: t runs along memory in both arrays.
        jac[:, rows, :] = np.moveaxis(change[:, :, columns], -1, 0) / applied[:, columns].T[:, :, None]
        return stop

    # Chunks are independent and numpy releases the GIL inside its loops: one thread per core.
    with ThreadPoolExecutor(WORKERS) as pool:
        for done in pool.map(lambda bounds: chunk(*bounds), numdiff.row_batches(k, n, WORKERS)):
            if progress:
                progress(done, k)
    return RowDerivatives(dx, jac, applied_all)


def numerical_parameter_gradients(problem: Problem, method: str) -> tuple[np.ndarray, np.ndarray]:
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
    dw = require_finite(core.column_dot(g, change) / applied)
    change, applied = numdiff.difference(
        lambda b: problem.perturbed(problem.x, weight=zero, bias=b).y, zero, one, method
    )
    db = require_finite(core.column_dot(g, change) / applied)
    return dw, db


def probe_directions(shape: tuple[int, int], probes: int, seed: int) -> Iterator[np.ndarray]:
    """Seeded random directions with entries ±1 (cheap to draw, |v_i| = 1 everywhere)."""
    rng = np.random.default_rng(seed)
    for _ in range(probes):
        v = rng.integers(0, 2, size=shape[::-1], dtype=np.int8).T  # column-major, like the data
        v *= 2
        v -= 1
        yield v


def quietly(function: Callable) -> Callable:
    """``function`` under the check's errstate (see :func:`check_gradients`), which numpy keeps per
    thread: for the full check's worker threads."""

    def quietly(*args):
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            return function(*args)

    return quietly


def directional(problem: Problem, x0: np.ndarray, direction: np.ndarray, method: str, columns: list[int]):
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
