"""The one numerical-differencing engine: differences with their noise, and the scales errors are read on.

Pure numpy, no I/O. ``grad --check`` (:mod:`bncli.gradcheck`), ``explain`` and the audit's
self-consistency all differentiate through these pieces:

- :func:`difference`, the central-difference (or complex-step) primitive, returning the change of
  a function and the perturbation the floats really carry;
- :func:`row_batches`, the batching of row perturbations into forward passes of bounded memory;
- :func:`loss_rounding` and :func:`richardson`, the rounding and the truncation error of a
  central difference of the loss e = Σ g·y, which together are the noise a numerical
  derivative is judged against;
- :class:`NaturalScales`, the sum of the magnitudes of the terms that make up each gradient
  element, on which errors are reported;
- :class:`RoundingScales`, what the rounding error of a backward-stable implementation is
  proportional to, element by element;
- :func:`relative_error` and :func:`largest_relative_error`.

Notes
-----
A central difference D(h) = (e(x + h·v) − e(x − h·v)) / 2h of the scalar loss e = Σ g·y along a
direction v errs in two ways (see ``docs`` in the shared math notes, "What a check can resolve"):

- *rounding*: e is a sum of k·n rounded terms, so each side carries ≈ u·Σ|g·y| of rounding, and
  the quotient ≈ u·Σ|g·y| / |2h|; every y shares the rounded mean and σ of its column, which the
  ``1 +`` in :func:`loss_rounding` covers;
- *truncation*: D(h) = e' + c·h² + O(h⁴), so D(h) − D(2h) = −3c·h² and |D(h) − D(2h)| / 3
  estimates the truncation error at h, while (4·D(h) − D(2h)) / 3 removes it (Richardson).

Neither grows with the size of the gradient, unlike a tolerance on the natural scale
(Σ|g·s| for dw grows like k while dw itself grows like √k): a check judged against this noise
stays as sharp at k = 10⁶ as at k = 10.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from functools import cached_property

import numpy as np

from . import core
from .powers import power_of_two_unit

# Elements per batched forward pass: each batch holds a few arrays of this many float64
# (16 MB each), so a full check stays near 100 MB whatever k and n are.
CHUNK_ELEMENTS = 1 << 21
_TINY = np.finfo(np.float64).tiny


def unit_roundoff(dtype) -> float:
    """Half the distance from 1 to the next float: 1.1e-16 in float64, 6e-8 in float32."""
    return float(np.finfo(dtype).eps) / 2


# ------------------------------------------------------------------------ differences


def difference(f: Callable[[np.ndarray], np.ndarray], point, direction, method: str = "central"):
    """The change of f across a step along ``direction``, and the step actually applied.

    central: f(p + d) − f(p − d) and (p + d) − (p − d), the perturbation the floats really
    carry (not 2d: the rounding of p ± d is part of the step taken); complex: Im f(p + i·d) and d.
    """
    if method == "central":
        plus, minus = point + direction, point - direction
        return f(plus) - f(minus), plus - minus
    return f(point + 1j * direction).imag, direction


# Richardson's (4·D(h) − D(2h))/3 carries 4/3 of D(h)'s rounding and 1/3 of D(2h)'s, which is half
# as large (the same rounding over twice the step): 1.5 times D(h)'s, added as magnitudes.
RICHARDSON_ROUNDING = 4 / 3 + 1 / 6


def richardson(at_h: np.ndarray, at_2h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Central differences at steps h and 2h combined: the extrapolated value and a bound of its error.

    D(h) = e' + c·h² + O(h⁴) and D(2h) = e' + 4c·h² + O(h⁴), so (4·D(h) − D(2h))/3 = e' + O(h⁴)
    and |D(h) − D(2h)|/3 = |c|·h² is D(h)'s truncation error: a bound, with room to spare, of the
    extrapolated value's (the steps here are far below the scale σ on which batch norm curves,
    so the O(h⁴) terms are smaller by (h/σ)²). Rounding is not included (see RICHARDSON_ROUNDING).
    """
    return (4 * at_h - at_2h) / 3, np.abs(at_h - at_2h) / 3


# core.forward rounds each y_t = ((x_t − shift) − residual)·(1/σ)·w up to four times, each by
# at most u relative to the value then held (|s_t|·σ or less, and σ for the shared shift).
FORWARD_ROUNDINGS = 4


def output_rounding(abs_s: np.ndarray, weight: np.ndarray, unit: float) -> np.ndarray:
    """The rounding of each y_t = w·s_t of the forward pass, absolute: FORWARD_ROUNDINGS·u·|w|·(|s_t| + 1).

    Each y_t is rounded relative to itself, and every s_t of a column shares the rounded mean
    and σ, which shift it by ≈ u relative to σ: the ``+ 1``.
    """
    magnitude = abs_s + 1
    magnitude *= FORWARD_ROUNDINGS * unit * np.abs(weight)
    return magnitude


def loss_rounding(abs_g: np.ndarray, abs_s: np.ndarray | None, weight: np.ndarray, unit: float) -> np.ndarray:
    """(n,): the rounding of the loss e = Σ_t g_t·y_t (bias left out) in each column, absolute:
    Σ_t |g_t| times :func:`output_rounding` (``abs_s`` None: y = ±1, as for db), and half a
    subnormal spacing per term where the products fall below the normal range. Divided by the
    perturbation applied, it is the rounding noise of one side of a central difference of e."""
    magnitude = abs_g.sum(axis=0)
    if abs_s is not None:
        magnitude += core.column_dot(abs_g, abs_s)
    relative = FORWARD_ROUNDINGS * unit * np.abs(weight) * magnitude
    # Products g_t·y_t below the normal range (dy ~1e-310) are rounded to a fixed grid instead.
    return relative + abs_g.shape[-2] * np.finfo(np.float64).smallest_subnormal


def row_batches(rows: int, columns: int, workers: int = 1) -> Iterator[tuple[int, int]]:
    """(start, stop) of groups of rows perturbed together: one forward pass of k·n elements per row
    of the group, at most :data:`CHUNK_ELEMENTS` per pass, and enough groups for ``workers``."""
    size = max(1, min(CHUNK_ELEMENTS // max(rows * columns, 1), -(-rows // workers)))
    for start in range(0, rows, size):
        yield start, min(start + size, rows)


def stacked(x0: np.ndarray, copies: int, dtype=None) -> np.ndarray:
    """``copies`` copies of x0 (k, n) along a new leading axis, each column contiguous (as core wants)."""
    k, n = x0.shape
    out = np.empty((copies, n, k), dtype=dtype or x0.dtype).transpose(0, 2, 1)
    out[...] = x0
    return out


# ----------------------------------------------------------------------------- scales


def relative_error(error: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """|error| / scale, elementwise; a zero scale counts as the smallest normal float."""
    return np.abs(error) / np.maximum(scale, _TINY)


def largest_relative_error(error: np.ndarray, scale: np.ndarray) -> float:
    """The largest of :func:`relative_error`."""
    return float(np.max(relative_error(error, scale)))


class NaturalScales:
    """The natural scale of each gradient element: the sum of the magnitudes of the terms that make it up.

    For J = u·R: |u|·(k·δ_ij + 1 + |s_i s_j|); for dx = Jᵀg: |u|·(k|g_i| + Σ|g| + |s_i|·Σ|g s|);
    for dw: Σ|g s|; for db: Σ|g|; u = w/(kσ). In eval mode J = (w/σ)·I and dx = (w/σ)·g.
    Rounding error is bounded by a few u times these, whether the data are ~1e-6 or ~1e12, and
    a correct element that is exactly 0 (dy constant down a column) still has a scale > 0.
    Each scale is computed when it is first needed.
    """

    def __init__(self, bn: core.BatchNorm, dy: np.ndarray, weight: np.ndarray):
        self.bn = bn
        self.training = bn.training
        k = bn.rows
        self.abs_g = np.abs(dy)
        self.abs_s = np.abs(bn.s)
        self.db = self.abs_g.sum(axis=0)
        self.dw = core.column_dot(self.abs_g, self.abs_s)
        with np.errstate(over="ignore"):
            self.u = np.abs(weight) / ((k if self.training else 1) * bn.std)
        # Subnormal σ (ε = 0): u overflows though the scales of dx need not (g is as tiny);
        # those columns' scales are then formed in units of a power of two near σ.
        self.unit = np.where(np.isfinite(self.u), 1.0, power_of_two_unit(bn.std[None, :])[0])
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


class RoundingScales:
    """The scale each element's rounding error is proportional to in a backward-stable implementation.

    With o = 1 + |m|/σ per column (rounding the mean shifts every s by ~u·|m|/σ),
    ρ = √k (the typical growth of the rounding error of a sum of k terms added one
    after another), k rows, and sums down each column::

        y_i  : ρ·|w|·(|s_i| + o) + |b|
        dx_i : (|w|/σ)·(|g_i| + ρ·o·(1 + |s_i|)·(Σ|g| + Σ|g·s|)/k)
        dw   : ρ·Σ|g|·(|s| + o)
        db   : ρ·Σ|g|

    dx's terms are those of its closed form (|w|/(kσ))·(k|g_i| + Σ|g| + |s_i|·Σ|g s|),
    each widened by o for the error of s. The scales are never 0 (a 0 weight or an
    all-zero dy gives a floor of the smallest normal number). Each (k, n) scale is made
    when first asked for; the per-column ones from sums alone.
    """

    def __init__(self, abs_s, mean, std, weight, bias, abs_g):
        """``abs_s`` and ``abs_g``: |s| and |g|, (k, n) each, as the caller has them."""
        self.abs_s, self.std, self.bias = abs_s, std, bias
        self.k = abs_s.shape[0]
        self.growth = np.sqrt(self.k)
        with np.errstate(over="ignore"):
            self.offset = 1 + np.abs(mean) / std
        self.w, self.abs_g = np.abs(weight), abs_g
        self.sum_g = abs_g.sum(axis=0)
        self.sum_gs = core.column_dot(abs_g, abs_s)

    @cached_property
    def y(self) -> np.ndarray:
        with np.errstate(over="ignore"):
            return _floored(self.growth * self.w * (self.abs_s + self.offset) + np.abs(self.bias))

    def _dx_shared(self) -> np.ndarray:
        """(n,): the factor of (1 + |s_i|) in dx's scale, before the division by σ."""
        return self.growth * self.offset * (self.sum_g + self.sum_gs) / self.k

    @cached_property
    def dx(self) -> np.ndarray:
        # g/σ before w: a subnormal σ (eps 0) with as tiny a g must not overflow on the way.
        with np.errstate(over="ignore"):
            return _floored(self.w * ((self.abs_g + self._dx_shared() * (1 + self.abs_s)) / self.std))

    def dx_column_sums(self) -> np.ndarray:
        """(n,): Σ_i of dx's scales, without forming them."""
        sum_s = self.abs_s.sum(axis=0)
        with np.errstate(over="ignore"):
            return _floored(self.w * ((self.sum_g + self._dx_shared() * (self.k + sum_s)) / self.std))

    @cached_property
    def dw(self) -> np.ndarray:
        with np.errstate(over="ignore"):
            return _floored(self.growth * (self.sum_gs + self.offset * self.sum_g))

    @cached_property
    def db(self) -> np.ndarray:
        with np.errstate(over="ignore"):
            return _floored(self.growth * self.sum_g)

    def as_dict(self) -> dict[str, np.ndarray]:
        return {"y": self.y, "dx": self.dx, "dw": self.dw, "db": self.db}


def _floored(scale: np.ndarray) -> np.ndarray:
    return np.maximum(scale, _TINY)
