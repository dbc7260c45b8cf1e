"""Exact scaling by powers of two: values beyond the normal float range kept as a factor and an exponent.

Batch norm is homogeneous: y does not change when x is scaled (with ε scaled alike), and dx
scales inversely. :mod:`bncli.core` uses these helpers to normalize a column in a unit of its
own where its numbers, or their squares, would leave the float range; multiplying by a power
of two is exact (or rounds once, where the result leaves the normal range).
"""

from __future__ import annotations

import numpy as np


def exponent_of(a) -> np.ndarray:
    """e with |a| = f·2^e, ½ ≤ f < 1, element by element (0 for 0, inf and NaN)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return np.frexp(np.abs(a))[1]


def times_power_of_two(a, exponent, out: np.ndarray | None = None) -> np.ndarray:
    """a·2^exponent: exact, or rounded once where the result leaves the normal range; complex too."""
    if not np.iscomplexobj(a):
        return np.ldexp(a, exponent, out=out)
    if out is None:
        out = np.empty(np.broadcast_shapes(np.shape(a), np.shape(exponent)), dtype=np.result_type(a))
    np.ldexp(np.real(a), exponent, out=out.real)
    np.ldexp(np.imag(a), exponent, out=out.imag)
    return out


def peak_exponent(x: np.ndarray) -> np.ndarray:
    """Per column (axis -2 reduced, kept), u with 2^u a power of two near max|x|: x/2^u is below 2.

    2^(e−1) rather than 2^e for max|x| = f·2^e (½ ≤ f < 1): 2^e itself overflows for
    data above 2^1023 ≈ 9e307 (2^127 in float32). A column of zeros gets u = 0.
    """
    peak = np.max(np.abs(x.real), axis=-2, keepdims=True)
    return np.where(peak > 0, exponent_of(peak) - 1, 0)


def power_of_two_unit(x: np.ndarray) -> np.ndarray:
    """Per column (axis -2 reduced, kept), a power of two near max|x|: x/unit is exact and below 2."""
    return np.ldexp(np.ones(1, x.real.dtype), peak_exponent(x))


def in_normal_range(value: np.ndarray, *factors) -> bool:
    """True when ``value``, a product or ratio of ``factors``, is a finite normal float (or an exact 0)."""
    magnitude = np.abs(value)
    exact_zero = False
    for factor in factors:
        exact_zero = exact_zero | (np.asarray(factor) == 0)
    return bool((np.isfinite(magnitude) & ((magnitude >= np.finfo(magnitude.dtype).tiny) | exact_zero)).all())


def split_power_of_two(a) -> tuple[np.ndarray, np.ndarray]:
    """(f, e) with a = f·2^e and ½ ≤ |f| < 1 (f = a, e = 0 for a = 0)."""
    exponent = exponent_of(a)
    return times_power_of_two(a, -exponent), exponent


def product_in_range(a, b, exponent: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """a·b·2^exponent as a factor and a power of two: the factor is a·b where that is a normal float.

    Otherwise (w = 1e308 times 1/σ = 300, say, though w·s is finite) a and b are split into
    factors near 1 and powers of two, and the powers are added to ``exponent``.
    """
    product = a * b
    if in_normal_range(product, a, b):
        return product, exponent
    (fa, ea), (fb, eb) = split_power_of_two(a), split_power_of_two(b)
    return fa * fb, ea + eb + (0 if exponent is None else exponent)


def ratio_in_range(a, b) -> tuple[np.ndarray, np.ndarray | None]:
    """a/b as a factor and a power of two (None when a/b is itself a normal float); b ≠ 0."""
    ratio = a / b
    if in_normal_range(ratio, a):
        return ratio, None
    (fa, ea), (fb, eb) = split_power_of_two(a), split_power_of_two(b)
    return fa / fb, ea - eb
