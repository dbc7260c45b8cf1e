"""The article's derivation of the batch-norm gradient, step by step, on one column of real data.

Pure numpy, no I/O. :func:`explain_column` computes every quantity the article
defines, in its order and notation, and checks each step against an independent
route. :mod:`bncli.present.explain` shows the result: json for scripts, a Rich view,
Markdown notes.

Notes
-----
The article (see ``docs/batchnorm.md``), for one column x of k values::

    m = Σ_t x_t / k,   v = Σ_t (x_t − m)² / k,   s_i = (x_i − m) / √(v + ε),   y_i = w·s_i + b
    dm/dx_i = 1/k,     dv/dx_i = 2(x_i − m)/k
    ∂y/∂x = u·R,       u = w / (k√(v + ε)),   r_ij = k − 1 − s_i s_j (i = j),  −1 − s_i s_j (i ≠ j)
    dx = dy·u·R,       dw = dy·s,             db = Σ_i dy_i

dx, dw, db, u, R and J come from :mod:`bncli.core`, computed on the whole matrix
exactly as ``bncli grad`` computes them, so that they equal its output to the
last digit: core sums in cache-sized blocks of rows whose size depends on the
number of columns, so one column computed alone can differ in the last bit once
the matrix exceeds a block (4 MiB).

In eval mode m and v are the running statistics, constants: dm/dx = dv/dx = 0,
the −1 and −s_i s_j of R (which come from them) vanish and the k cancels, so
u = w/√(v + ε) and R = I: ∂y/∂x is the diagonal matrix (w/√(v + ε))·I.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import isqrt

import numpy as np

from . import core, numdiff
from . import gradcheck as gc
from .errors import InputError
from .numdiff import largest_relative_error as largest
from .options import MAX_MATRIX_ELEMENTS


@dataclass(frozen=True, eq=False)
class Explanation:
    """Every quantity of the article's derivation for one column, and the checks of each step.

    Scalars are numpy scalars and arrays are in the precision of the computation
    (``dtype``); the checks are computed in float64.

    Attributes
    ----------
    column : str
        The column's name.
    k : int
        Rows (the batch size).
    eps, weight, bias : float
        ε, w and b as given.
    training : bool
        False in eval mode (m and v are the running statistics).
    dtype : str
        Precision of the computation, "float64" or "float32".
    x : ndarray, shape (k,)
    m, v, std : numpy scalar
        Mean, biased variance and √(v + ε).
    s : ndarray, shape (k,)
        (x − m)/√(v + ε).
    dm_dx, dv_dx : ndarray, shape (k,)
        1/k and 2(x_i − m)/k (zeros in eval mode).
    dm_dx_numerical, dv_dx_numerical : ndarray, shape (k,)
        The same by central differences of the forward pass, in float64.
    step : float
        Their step, relative to σ.
    dm_dx_disagreement, dv_dx_disagreement : float
        The largest |analytic − numerical| relative to the natural scale of each
        element: 1/k for dm/dx, (2/k)(|x_i − m| + σ) for dv/dx.
    u : numpy scalar
        w/(k√(v + ε)) (eval mode: w/√(v + ε)).
    R : ndarray, shape (k, k)
        r_ij = k·δ_ij − 1 − s_i s_j (eval mode: the identity).
    J : ndarray, shape (k, k)
        ∂y/∂x = u·R, as ``bncli grad --jacobian`` prints it.
    J_asymmetry : float
        max |J_ij − J_ji| relative to the natural scale |u|·(k·δ_ij + 1 + |s_i s_j|).
    J_row_sum : float
        max_i |Σ_j J_ij| relative to Σ_j of that scale (J·1 = 0: a shift of x leaves y alone).
    dy : ndarray, shape (k,)
        The upstream gradient ∂e/∂y.
    dx_via_J : ndarray, shape (k,)
        dy·J, the article's route (O(k²)).
    dx : ndarray, shape (k,)
        The closed form u·(k·dy − Σdy − s·Σ(dy·s)) of ``bncli grad`` (O(k)); eval mode u·dy.
    dx_difference : float
        max |dx_via_J − dx| relative to the natural scale |u|·(k|dy_i| + Σ|dy| + |s_i|·Σ|dy·s|).
    dw, db : numpy scalar
        Σ dy_i·s_i and Σ dy_i.
    dy_label : str
        Where dy came from, as shown beside it: "given", or the draws made for want of one.
    """

    column: str
    k: int
    eps: float
    weight: float
    bias: float
    training: bool
    dtype: str
    x: np.ndarray
    m: np.floating
    v: np.floating
    std: np.floating
    s: np.ndarray
    dm_dx: np.ndarray
    dv_dx: np.ndarray
    dm_dx_numerical: np.ndarray
    dv_dx_numerical: np.ndarray
    step: float
    dm_dx_disagreement: float
    dv_dx_disagreement: float
    u: np.floating
    R: np.ndarray
    J: np.ndarray
    J_asymmetry: float
    J_row_sum: float
    dy: np.ndarray
    dx_via_J: np.ndarray
    dx: np.ndarray
    dx_difference: float
    dw: np.floating
    db: np.floating
    dy_label: str = "given"


def explain_column(
    x: np.ndarray,
    dy: np.ndarray,
    weight: np.ndarray | float = 1.0,
    bias: np.ndarray | float = 0.0,
    eps: float = core.DEFAULT_EPS,
    *,
    column: int = 0,
    name: str | None = None,
    running: tuple[np.ndarray, np.ndarray] | None = None,
    dtype: str = "float64",
    dy_label: str = "given",
) -> Explanation:
    """The article's derivation for one column of ``x``, with each step checked.

    Parameters
    ----------
    x, dy : ndarray, shape (k, n) or (k,)
        The data and the upstream gradient ∂e/∂y: the whole matrix, as ``bncli grad``
        is given it (so that the results equal its output bit for bit), or one column.
        Values must fit ``dtype`` (the CLI checks that when it reads them).
    weight, bias : scalar or ndarray, shape (n,)
        w and b, one per column.
    eps : float
        ε ≥ 0.
    column : int
        The column explained (an index into the last axis of ``x``).
    name : str, optional
        Its name, for the output; default ``str(column)``.
    running : (mean, var), optional
        Running statistics, scalars or shape (n,): eval mode.
    dtype : {"float64", "float32"}
        Precision of the computation.

    Raises
    ------
    InputError
        R and J would exceed :data:`MAX_MATRIX_ELEMENTS`, dy's shape differs from x's, or
        ε = 0 with a constant column.
    """
    x, dy = np.asarray(x, dtype), np.asarray(dy, dtype)
    if dy.shape != x.shape:
        raise InputError(f"dy has shape {dy.shape}, the data {x.shape}: they must be the same")
    if x.ndim == 1:
        x, dy = x[:, None], dy[:, None]
    k, n = x.shape
    name = str(column) if name is None else name
    _require_small(k)
    w, b = _per_column(weight, n, dtype), _per_column(bias, n, dtype)
    try:
        if running is None:
            bn = core.forward(x, w, b, eps)
        else:
            bn = core.forward_eval(x, _per_column(running[0], n, dtype), _per_column(running[1], n, dtype), w, b, eps)
    except core.ZeroVarianceError:
        raise InputError(f"column {name!r}: zero variance with eps 0 divides by zero") from None
    grads = core.backward(dy, bn)
    u, r = core.jacobian_factors(bn, column)
    jacobian = core.jacobian(bn, column)
    s, std = bn.s[:, column], bn.std[column]
    if bn.training:
        # x_i − m as s_i·σ, from core's centered values: m itself, rounded to a float, has lost
        # the digits of data such as timestamps ~1.7e9 with a spread of seconds.
        dm_dx, dv_dx = np.full(k, 1 / k, dtype=dtype), 2 * (s * std) / k
    else:
        dm_dx = dv_dx = np.zeros(k, dtype=dtype)
    dx_via_jacobian = dy[:, column] @ jacobian
    one = slice(column, column + 1)
    problem = gc.Problem(  # the checks' float64 problem: the values as this dtype sees them
        _float64(x[:, one]),
        _float64(dy[:, one]),
        _float64(w[one]),
        _float64(b[one]),
        eps,
        None if running is None else (_float64(bn.mean[one]), _float64(bn.var[one])),
    )
    return Explanation(
        column=name,
        k=k,
        eps=float(eps),
        weight=float(_per_column(weight, n, np.float64)[column]),
        bias=float(_per_column(bias, n, np.float64)[column]),
        training=bn.training,
        dtype=str(np.dtype(dtype)),
        x=x[:, column],
        m=bn.mean[column],
        v=bn.var[column],
        std=std,
        s=s,
        dm_dx=dm_dx,
        dv_dx=dv_dx,
        u=u,
        R=r,
        J=jacobian,
        dy=dy[:, column],
        dx_via_J=dx_via_jacobian,
        dx=grads.dx[:, column],
        dw=grads.dw[column],
        db=grads.db[column],
        dy_label=dy_label,
        **_checks(problem, dm_dx, dv_dx, jacobian, dx_via_jacobian - grads.dx[:, column]),
    )


def _per_column(value, n: int, dtype) -> np.ndarray:
    return np.broadcast_to(np.asarray(value, dtype), (n,))


def _float64(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


def _require_small(k: int) -> None:
    """R and J are k×k each: both together within the bound of ``grad --jacobian`` (k ≤ 4096)."""
    if 2 * k * k > MAX_MATRIX_ELEMENTS:
        raise InputError(
            f"explain builds R and J, {k}×{k} each: {2 * k * k:,} numbers, more than {MAX_MATRIX_ELEMENTS:,}; "
            f"at most {isqrt(MAX_MATRIX_ELEMENTS // 2)} rows fit: explain a sample of the rows "
            "(e.g. head -n 1001 FILE | bncli explain -c NAME)"
        )


def _checks(
    problem: gc.Problem, dm_dx: np.ndarray, dv_dx: np.ndarray, jacobian: np.ndarray, dx_difference: np.ndarray
) -> dict:
    """The checks of each step, in float64, each relative to the natural scale of the elements compared.

    dm/dx and dv/dx against central differences of the forward pass; J's symmetry
    and row sums; dy·J against the closed form. The scales of J and dx are those
    of ``grad --check`` (:class:`bncli.numdiff.NaturalScales`): the sum of the
    magnitudes of the terms that make up each element.
    """
    k = problem.x.shape[0]
    step = gc.default_step("central", k, affine=problem.running is not None)
    dm_numerical, dv_numerical, centered, sigma = _central_differences(problem, step)
    scales = numdiff.NaturalScales(problem.forward(problem.x), problem.dy, problem.weight)
    jacobian = _float64(jacobian)
    return {
        "dm_dx_numerical": dm_numerical,
        "dv_dx_numerical": dv_numerical,
        "step": step,
        "dm_dx_disagreement": largest(_float64(dm_dx) - dm_numerical, np.full(k, 1 / k)),
        # dv/dx_i = (2/k)(x_i − m): its size, floored at σ so that an element at the mean does not divide by 0.
        "dv_dx_disagreement": largest(_float64(dv_dx) - dv_numerical, 2 * (np.abs(centered) + sigma) / k),
        "J_asymmetry": largest(jacobian - jacobian.T, scales.jacobians([0])[0]),
        "J_row_sum": largest(jacobian.sum(axis=1), scales.jacobian_row_sums([0])[0]),
        "dx_difference": largest(_float64(dx_difference), scales.dx[:, 0]),
    }


def _central_differences(problem: gc.Problem, step: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """dm/dx_i and dv/dx_i by central differences of the forward pass, in float64.

    Returns them with the centered data x − m̄ at which they are taken and σ. The
    point is centered because training-mode m is linear in x (dm/dx is the same
    everywhere) and v is invariant to a shift: there the step h = step·σ is not
    lost in the last digits of a large offset (1e8 + noise). Each row i is
    perturbed in its own copy of the column, many copies per forward pass; the
    perturbation the floats carry, (x + h) − (x − h), is the one divided by.
    """
    k = problem.x.shape[0]
    centered = problem.x[:, 0] - problem.x[:, 0].mean()
    sigma = float(problem.forward(centered[:, None]).std[0])
    h = step * sigma
    plus, minus = centered + h, centered - h
    applied = plus - minus
    dm, dv = np.empty(k), np.empty(k)
    for start, stop in numdiff.row_batches(k, 1):
        rows = np.arange(start, stop)
        copies = np.broadcast_to(centered[:, None], (len(rows), k, 1)).copy()
        copies[np.arange(len(rows)), rows, 0] = plus[rows]
        high = problem.forward(copies)
        copies[np.arange(len(rows)), rows, 0] = minus[rows]
        low = problem.forward(copies)
        # (copies, 1): eval mode's running statistics come back once for all copies.
        shape = (len(rows), 1)
        dm[rows] = np.broadcast_to(high.mean - low.mean, shape)[:, 0] / applied[rows]
        dv[rows] = np.broadcast_to(high.var - low.var, shape)[:, 0] / applied[rows]
    return dm, dv, centered, sigma
