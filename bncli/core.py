"""Batch normalization, forward and backward: the numeric core.

Pure numpy, no I/O. Every function works column by column on arrays of shape
``(..., k, n)``: ``k`` rows (the samples of one batch) along axis -2 and ``n``
independent columns (features) along axis -1. Leading axes, if any, are
independent batches; the gradient checker uses them to run many perturbed
forward passes at once. Complex input is supported (for complex-step
derivatives): the forward pass uses only analytic operations.

Notation (per column, as in the article this tool follows)::

    m   = (1/k) Σ_t x_t                    mean
    v   = (1/k) Σ_t (x_t − m)²             biased variance
    σ   = sqrt(v + ε)                      std
    s_i = (x_i − m) / σ                    normalized value
    y_i = w · s_i + b

In eval (inference) mode m and v are given running statistics instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .options import DEFAULT_EPS, DEFAULT_MOMENTUM  # noqa: F401 (the defaults, written once)
from .powers import exponent_of, in_normal_range, peak_exponent, product_in_range, ratio_in_range, times_power_of_two


class ZeroVarianceError(ValueError):
    """σ = 0: a constant column with ε = 0. ``columns`` holds the column indices."""

    def __init__(self, columns: list[int]):
        self.columns = columns
        super().__init__(f"zero variance and eps = 0 in column(s) {columns}: s = 0/0")


@dataclass(frozen=True, eq=False)
class BatchNorm:
    """The result of a forward pass, and all that the backward pass needs.

    Attributes
    ----------
    mean, var, std : ndarray, shape (..., n)
        The statistics used to normalize: the batch's (training mode) or the
        running ones (eval mode). ``std = sqrt(var + eps)``.
    training : bool
        True when mean and var are the batch's own (they then depend on x).
    weight, bias : scalar or ndarray, shape (n,)
        w (gamma) and b (beta), as given to the forward pass.
    y : ndarray, shape (..., k, n)
        Output ``weight · s + bias``, made on first use (the backward pass does
        not need it).
    s : ndarray, shape (..., k, n)
        Normalized values ``(x − mean) / std``, made on first use: the backward
        pass recomputes them block by block from x instead, which moves fewer
        bytes than storing them.

    The result refers to x rather than copying it: change x and s, y and the
    gradients made afterwards change with it.
    """

    mean: np.ndarray
    var: np.ndarray
    std: np.ndarray
    training: bool
    # s = ((x − shift) − residual) · inverse · 2^exponent, exactly as the forward pass computed it:
    # x, shift and residual in a column's unit (see :func:`forward`), exponent None where all are 0.
    _x: np.ndarray
    _shift: np.ndarray
    _residual: np.ndarray | None
    _inverse: np.ndarray
    weight: np.ndarray | float
    bias: np.ndarray | float
    _exponent: np.ndarray | None = None

    @property
    def rows(self) -> int:
        return self._x.shape[-2]

    @property
    def dtype(self) -> np.dtype:
        return np.result_type(self._x, self._inverse)

    @cached_property
    def s(self) -> np.ndarray:
        return self.normalized(slice(None), np.empty_like(self._x, dtype=self.dtype))

    @cached_property
    def y(self) -> np.ndarray:
        """y = w·s + b = ((x − shift) − residual)·(inverse·w)·2^exponent + b, block by block, into y.

        inverse·w alone may overflow (w = 1e308, σ < 1) or underflow where y does not:
        it is then kept as a factor near 1 and a power of two, applied to each block.
        """
        weight, bias = _per_column(self.weight), _per_column(self.bias)
        y = np.empty_like(self._x, dtype=np.result_type(self.dtype, weight, bias))
        # Beyond the float range (|w| or |b| ~1e308, x far from a running mean) y is inf, which
        # callers detect and name; numpy's warnings would only repeat it.
        with np.errstate(over="ignore", invalid="ignore", under="ignore"):
            factor, exponent = product_in_range(self._inverse, weight, self._exponent)
            for rows in _row_blocks(self._x):
                block = _normalize(self._x, self._shift, self._residual, factor, rows, y[..., rows, :])
                if exponent is not None:
                    times_power_of_two(block, exponent, out=block)
                block += bias
        return y

    def normalized(self, rows: slice, out: np.ndarray) -> np.ndarray:
        """s for a block of rows, written into ``out`` (which the caller may then change)."""
        if "s" in self.__dict__:
            np.copyto(out, self.__dict__["s"][..., rows, :])
            return out
        # eval mode: x − running mean may overflow; s in float32 may be subnormal
        with np.errstate(over="ignore", invalid="ignore", under="ignore"):
            _normalize(self._x, self._shift, self._residual, self._inverse, rows, out)
            if self._exponent is not None:
                times_power_of_two(out, self._exponent, out=out)
            return out

    def sums(self, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Σ_i g_i and Σ_i g_i·s_i down each column, (..., n) each, in one pass without storing s.

        float32 accumulates in float64.
        """
        g = columns_contiguous(g)
        wide = _accumulator(g)
        total = np.zeros(self.std.shape, wide)
        products = np.zeros(self.std.shape, np.result_type(wide, self.dtype))
        # eval mode: x − running mean may overflow; float32 sums may be subnormal
        with np.errstate(over="ignore", invalid="ignore", under="ignore"):
            for rows, scratch in _blocks_with_scratch(g, self.dtype):
                block = g[..., rows, :]
                total += block.sum(axis=-2, dtype=wide)
                # s without its power of two, applied to the sum: subnormal s would lose digits
                s = _normalize(self._x, self._shift, self._residual, self._inverse, rows, scratch)
                products += column_dot(block, s, dtype=products.dtype)
            if self._exponent is not None:
                times_power_of_two(products, self._exponent[..., 0, :], out=products)
            return total.astype(g.dtype), products.astype(np.result_type(g, self.dtype))


def _normalize(x, shift, residual, inverse, rows: slice, out: np.ndarray) -> np.ndarray:
    """s = ((x − shift) − residual) · inverse for a block of rows, into ``out``."""
    np.subtract(x[..., rows, :], shift, out=out)
    if residual is not None:
        out -= residual
    out *= inverse
    return out


def _real(a: np.ndarray) -> np.ndarray:
    return a.real if np.iscomplexobj(a) else a


def columns_contiguous(x: np.ndarray) -> np.ndarray:
    """``x`` laid out so that each column (axis -2) is contiguous in memory; a copy only if needed.

    numpy reduces a contiguous axis with pairwise summation, ~4× faster than across
    rows and with error ~ε·log k instead of ~ε·k (for float32 at k = 1e6, 1e-7
    instead of 1e-2). Readers in :mod:`bncli.io` produce this layout directly.
    """
    x = np.asarray(x)
    if x.ndim < 2 or x.strides[-2] == x.itemsize or x.shape[-2] == 1:
        return x
    return np.swapaxes(np.ascontiguousarray(np.swapaxes(x, -1, -2)), -1, -2)


# Work on k×n arrays goes in blocks of rows of about this size: small enough that a
# block and its temporaries stay in cache, so each k×n array is read or written once
# per pass rather than once per operation; large enough that the per-call cost of
# numpy vanishes. Measured (bench/run.py core rows): 4 MiB beats 256 KiB by 1.6-2×
# and whole-array operations by 1.2-1.4×.
_BLOCK_BYTES = 1 << 22


def _row_blocks(a: np.ndarray) -> list[slice]:
    """Slices of axis -2 (rows) that cut ``a`` into cache-sized blocks."""
    k = a.shape[-2]
    row_bytes = max(1, a.nbytes // max(k, 1))
    step = max(1, _BLOCK_BYTES // row_bytes)
    return [slice(start, start + step) for start in range(0, k, step)]


def _blocks_with_scratch(a: np.ndarray, dtype=None) -> Iterator[tuple[slice, np.ndarray]]:
    """The row blocks of ``a``, each with a scratch array of its shape (one buffer, reused)."""
    blocks = _row_blocks(a)
    buffer = np.empty_like(a[..., blocks[0], :], dtype=dtype)  # the first block is the largest
    for rows in blocks:
        yield rows, buffer[..., : a[..., rows, :].shape[-2], :]


def _accumulator(a: np.ndarray) -> np.dtype:
    """float64 sums for float32 data: blocks are summed one after another."""
    return np.result_type(a.dtype, np.float64)


def column_dot(a: np.ndarray, b: np.ndarray, dtype=None) -> np.ndarray:
    """Σ_i a_i·b_i down each column (axis -2), without a temporary; never conjugates.

    Real data goes through ``np.vecdot`` (BLAS, ~5× faster than einsum here);
    complex data through einsum, since vecdot conjugates its first argument.
    """
    if np.iscomplexobj(a) or np.iscomplexobj(b):
        return np.einsum("...ij,...ij->...j", a, b, dtype=dtype)
    return np.vecdot(a, b, axis=-2, dtype=dtype)


def _moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """m₁ = mean(x), the residual mean r of x − m₁, and the biased variance: two passes over x.

    v = mean(d·d) − r² = mean((d − r)²) with d = x − m₁; the mean is m₁ + r and the
    centered data (x − m₁) − r. The one-pass Σx²/k − m² loses every digit on data
    such as 1e8 + noise, and a plain two-pass still loses ~1e-9 there; the
    refinement keeps ~1e-15 (d is exact where x is close to m₁, and r² ≪ v). The
    square is written d·d, never |d|², so that complex-step derivatives stay exact.
    """
    k = x.shape[-2]
    first = x.mean(axis=-2, keepdims=True)
    wide = _accumulator(x)
    total = np.zeros(first.shape, wide)
    squares = np.zeros(first.shape, wide)
    for rows, scratch in _blocks_with_scratch(x):
        d = np.subtract(x[..., rows, :], first, out=scratch)
        total += d.sum(axis=-2, keepdims=True, dtype=wide)
        squares += column_dot(d, d, dtype=wide)[..., None, :]
    residual = (total / k).astype(x.dtype)
    var = (squares / k).astype(x.dtype) - residual * residual
    if not np.iscomplexobj(var):
        np.maximum(var, 0, out=var)  # rounding of a constant column
    return first, residual, var


def _require_positive(std: np.ndarray) -> None:
    zero = ~(std > 0)
    if zero.any():
        raise ZeroVarianceError(np.flatnonzero(zero.reshape(-1, zero.shape[-1]).any(axis=0)).tolist())


def _columns_needing_units(x: np.ndarray, shift, var, var_plus_eps) -> np.ndarray | None:
    """Which columns (..., 1, n) must be normalized in a unit of their own; None when none.

    Those whose moments overflowed, whose var + ε is so small that it lost digits (below
    finfo.tiny/finfo.eps, ~1e-292 in float64, ~1e-31 in float32: data of ~1e-160 with
    ε = 0), and those whose data are that small themselves (float32 data of ~1e-45):
    their residual mean rounds to the subnormal grid, which shifts every s alike.
    """
    info = np.finfo(_real(var_plus_eps).dtype)
    floor = info.tiny / info.eps
    magnitude = np.abs(var_plus_eps)
    need = ~(np.isfinite(shift) & np.isfinite(magnitude) & (magnitude >= floor))
    bound = np.abs(shift) + np.sqrt(np.abs(var) * x.shape[-2])  # ≥ max|x|, and cheap
    small = bound < floor
    if small.any():  # a column of zeros is small too, and needs no unit
        need |= small & (np.max(np.abs(x), axis=-2, keepdims=True) > 0)
    return need if need.any() else None


def _per_column(value) -> np.ndarray:
    """A scalar or (..., n) parameter as (..., 1, n), to broadcast against (..., k, n)."""
    value = np.asarray(value)
    return value[..., None, :] if value.ndim else value


def forward(
    x: np.ndarray,
    weight: np.ndarray | float = 1.0,
    bias: np.ndarray | float = 0.0,
    eps: float = DEFAULT_EPS,
) -> BatchNorm:
    """Training-mode batch norm of each column of ``x`` with the batch's own statistics.

    Parameters
    ----------
    x : ndarray, shape (..., k, n)
        Real or complex data.
    weight, bias : scalar or ndarray, shape (n,)
        w (gamma) and b (beta), one per column.
    eps : float
        ε ≥ 0, added to the variance.

    Notes
    -----
    Data near the top of the float range (|x| ≳ 1e154) would overflow when
    squared, and data near its bottom (var + ε ≲ 1e-292) underflow; such
    columns are normalized in units of a power of two near their largest value,
    which is exact, so s and y stay right. ``var`` (and ``std``) are then inf
    or 0 only when they are beyond the float range themselves.

    Raises
    ------
    ZeroVarianceError
        A constant column (or a single row) with ``eps == 0``.
    """
    x = columns_contiguous(x)
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        shift, residual, var = _moments(x)
        root_squared = var + eps
    need = _columns_needing_units(x, shift, var, root_squared)
    if need is not None:
        return _forward_in_units(x, weight, bias, eps, need)
    root = np.sqrt(root_squared)
    _require_positive(_real(root))
    mean = shift + residual
    return BatchNorm(mean[..., 0, :], var[..., 0, :], root[..., 0, :], True, x, shift, residual, 1 / root, weight, bias)


def _forward_in_units(x: np.ndarray, weight, bias, eps: float, need: np.ndarray) -> BatchNorm:
    """:func:`forward` with the ``need`` columns in units of their own, the others as they are.

    Such a column's data are taken in units of 2^u near max|x| (exact), its σ in units
    of 2^t near max(std, √ε): (var + ε)/2^2u itself may overflow when ε ≫ the data
    (1e-300 beside 1e300 in one file). Then s = d·(2^t/σ)·2^(u−t), where the last
    power of two is kept apart (``exponent``) only where folding it into 2^t/σ would
    leave the normal range (float32 data of ~1e-45, whose s is subnormal).
    """
    unit = np.where(need, peak_exponent(x), 0)
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        x = times_power_of_two(x, -unit)
        # A complex step far beyond the data (Im x ~1e300) still overflows: var is then NaN,
        # refused below as a zero variance.
        shift, residual, var = _moments(x)
        data_std = np.abs(times_power_of_two(np.sqrt(var), unit))
        std_unit = np.where(need, exponent_of(np.maximum(data_std, np.sqrt(eps))), 0)
        ratio = unit - std_unit
        dtype = _real(var).dtype
        root = np.sqrt(times_power_of_two(var, 2 * ratio) + np.ldexp(np.float64(eps), -2 * std_unit).astype(dtype))
        _require_positive(_real(root))
        inverse = 1 / root
        folded = times_power_of_two(inverse, ratio)
        fits = np.isfinite(np.abs(folded)) & (np.abs(folded) >= np.finfo(dtype).tiny)
        inverse, ratio = np.where(fits, folded, inverse), np.where(fits, 0, ratio)
        mean = times_power_of_two(shift + residual, unit)
        var = times_power_of_two(var, 2 * unit)  # inf (or 0) only beyond the float range itself
        std = times_power_of_two(root, std_unit)
    exponent = ratio if ratio.any() else None
    return BatchNorm(
        mean[..., 0, :], var[..., 0, :], std[..., 0, :], True, x, shift, residual, inverse, weight, bias, exponent
    )


def forward_eval(
    x: np.ndarray,
    running_mean: np.ndarray,
    running_var: np.ndarray,
    weight: np.ndarray | float = 1.0,
    bias: np.ndarray | float = 0.0,
    eps: float = DEFAULT_EPS,
) -> BatchNorm:
    """Eval-mode (inference) batch norm: y = w · (x − μ_run) / sqrt(σ²_run + ε) + b.

    Parameters
    ----------
    x : ndarray, shape (..., k, n)
    running_mean, running_var : ndarray, shape (n,)
        The running statistics; ``running_var ≥ 0``.
    """
    running_mean, running_var = np.asarray(running_mean), np.asarray(running_var)
    std = np.sqrt(running_var + eps)
    _require_positive(std)
    x = columns_contiguous(x)
    shift, inverse = _per_column(running_mean), _per_column(1 / std)
    return BatchNorm(running_mean, running_var, std, False, x, shift, None, inverse, weight, bias)


@dataclass(frozen=True)
class Gradients:
    """∂e/∂x, ∂e/∂w and ∂e/∂b for an upstream gradient dy = ∂e/∂y."""

    dx: np.ndarray  # (..., k, n)
    dw: np.ndarray  # (..., n)
    db: np.ndarray  # (..., n)


def backward(dy: np.ndarray, bn: BatchNorm) -> Gradients:
    """Gradients of e through batch norm, in O(k·n); w is the one ``bn`` was computed with.

    With g = dy (per column, a k-vector)::

        db = Σ_i g_i
        dw = Σ_i g_i s_i
        dx = (w / (k σ)) · (k·g − db − s·dw)           training mode
        dx = (w / σ) · g                                eval mode

    The training-mode dx is gᵀJ with J = u·R, u = w/(kσ),
    R_ij = k·δ_ij − 1 − s_i s_j (see :func:`jacobian`), expanded so that J is
    never built. It is evaluated as a·g + c·s + e with per-column coefficients
    a = w/σ, c = −a·dw/k, e = −a·db/k, in two passes over g (and x, for s).
    """
    dy = columns_contiguous(dy)
    # dy near the float range, or σ so small that w/σ overflows: the gradients are inf or NaN
    # there, which callers detect and name; numpy's warnings would only repeat it.
    with np.errstate(over="ignore", invalid="ignore"):
        return _backward(dy, bn)


def _backward(dy: np.ndarray, bn: BatchNorm) -> Gradients:
    k = bn.rows
    db, dw = bn.sums(dy)
    overflowed = ~(np.isfinite(db) & np.isfinite(dw))
    if overflowed.any() and np.isfinite(dy).all():
        # Σg or Σg·s beyond the float range (g ~1e308), though dx need not be: dx, dw and db are
        # linear in g, so those columns are computed for g in units of 2^u near max|g| (exact).
        unit = np.where(overflowed[..., None, :], peak_exponent(dy), 0)
        scaled = _backward(times_power_of_two(dy, -unit), bn)
        unit_of_sums = unit[..., 0, :]
        return Gradients(
            dx=times_power_of_two(scaled.dx, unit, out=scaled.dx),
            dw=times_power_of_two(scaled.dw, unit_of_sums),
            db=times_power_of_two(scaled.db, unit_of_sums),
        )
    # w/σ beyond the normal range (σ subnormal with ε = 0, w = 1e-300 beside σ = 1e300), though
    # dx need not be: a is then a factor near 1, and its power of two is applied to dx at the end.
    a, exponent = ratio_in_range(np.asarray(bn.weight), bn.std)
    c, e = _per_column(-a * dw / k), _per_column(-a * db / k)
    a = _per_column(a)
    dx = np.empty_like(dy, dtype=np.result_type(dy, a, bn.dtype))
    for rows, scratch in _blocks_with_scratch(dy, bn.dtype):
        block = np.multiply(dy[..., rows, :], a, out=dx[..., rows, :])
        if bn.training:
            s = bn.normalized(rows, scratch)
            s *= c
            s += e
            block += s
        if exponent is not None:
            times_power_of_two(block, _per_column(exponent), out=block)
    return Gradients(dx=dx, dw=dw, db=db)


def jacobian_factors(bn: BatchNorm, column: int) -> tuple[np.floating, np.ndarray]:
    """The scalar u and the k×k matrix R of one column, with ∂y/∂x = u·R (the article's factoring).

    Training mode: u = w/(kσ) and R_ij = k·δ_ij − 1 − s_i s_j, i.e. k − 1 − s_i² on the
    diagonal and −1 − s_i s_j off it. The −1 comes from ∂m/∂x_j = 1/k and the −s_i s_j
    from ∂v/∂x_j = 2(x_j − m)/k. Eval mode: m and v are constants, both terms vanish and
    the k cancels: u = w/σ and R = I.
    """
    w = np.broadcast_to(bn.weight, bn.std.shape)[column]
    k = bn.rows
    if not bn.training:
        return w / bn.std[column], np.eye(k, dtype=bn.dtype)
    s = bn.s[:, column]
    r = -np.outer(s, s) - 1
    r[np.diag_indices(k)] += k
    with np.errstate(over="ignore"):  # u beyond the float range (σ subnormal) is inf, which callers name
        return w / (k * bn.std[column]), r


def jacobian(bn: BatchNorm, column: int) -> np.ndarray:
    """The k×k Jacobian ∂y/∂x of one column, built explicitly (for display and checks).

    Training mode: J = u·R (see :func:`jacobian_factors`); J is symmetric and each
    of its rows sums to 0. Eval mode: J = (w/σ)·I. A J beyond the float range
    (σ subnormal) is inf, which callers name.
    """
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        u, r = jacobian_factors(bn, column)
        if not bn.training:  # u·I would give −0.0 off the diagonal where w < 0
            return np.diag(np.full(bn.rows, u, dtype=bn.dtype))
        w = np.broadcast_to(bn.weight, bn.std.shape)[column]
        if in_normal_range(u, w):
            return u * r
        # u = w/(kσ) beyond the normal range where J need not be: (w/σ)/k as a factor and a power of two
        factor, exponent = ratio_in_range(w, bn.std[column])
        return times_power_of_two((factor / bn.rows) * r, 0 if exponent is None else exponent)


def update_running(
    running_mean: np.ndarray,
    running_var: np.ndarray,
    bn: BatchNorm,
    momentum: float = DEFAULT_MOMENTUM,
) -> tuple[np.ndarray, np.ndarray]:
    """Running statistics after one training batch, as PyTorch's BatchNorm1d updates them.

    μ_run ← (1 − M)·μ_run + M·m and σ²_run ← (1 − M)·σ²_run + M·v·k/(k − 1),
    with the unbiased batch variance; k ≥ 2.
    """
    k = bn.rows
    if k < 2:
        raise ValueError("the running variance needs at least 2 rows (unbiased variance)")
    unbiased = bn.var * (k / (k - 1))
    return (
        (1 - momentum) * running_mean + momentum * bn.mean,
        (1 - momentum) * running_var + momentum * unbiased,
    )
