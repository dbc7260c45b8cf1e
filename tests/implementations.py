"""Batch norms written as people write them, each reproducing one behaviour the audit must name.

Each is ``func(x, weight, bias, eps, dy)`` returning (y, dx, dw, db) or a mapping, for
``bncli audit tests/implementations.py:NAME``.
"""

import numpy as np


def two_pass(x, weight, bias, eps, dy):
    k = x.shape[0]
    mean = x.mean(axis=0)
    std = np.sqrt(((x - mean) ** 2).mean(axis=0) + x.dtype.type(eps))
    s = (x - mean) / std
    db, dw = dy.sum(axis=0), (dy * s).sum(axis=0)
    dx = (weight / std) * (dy - db / k - s * dw / k)
    return weight * s + bias, dx, dw, db


def no_backward(x, weight, bias, eps, dy):
    """An unfinished layer: the forward only, dx None, dw and db right."""
    y, _, dw, db = two_pass(x, weight, bias, eps, dy)
    return y, None, dw, db


def float32_always(x, weight, bias, eps, dy):
    """Correct, but computes in float32 whatever it is given."""
    as32 = [np.asarray(a, np.float32) for a in (x, weight, bias, dy)]
    return two_pass(as32[0], as32[1], as32[2], np.float32(eps), as32[3])


def float32_missing_mean_term(x, weight, bias, eps, dy):
    """float32 whatever it is given, and dx without its mean term: WRONG on the float32 cases."""
    y, dx, dw, db = float32_always(x, weight, bias, eps, dy)
    x32, g32 = np.asarray(x, np.float32), np.asarray(dy, np.float32)
    return y, dx + (np.asarray(weight, np.float32) / _std32(x32, eps)) * g32.mean(axis=0), dw, db


def _std32(x, eps):
    mean = x.mean(axis=0)
    return np.sqrt(((x - mean) ** 2).mean(axis=0) + np.float32(eps))


def eps_1e7(x, weight, bias, eps, dy):
    """Correct two-pass, eps hard-coded 1e-7."""
    return two_pass(x, weight, bias, 1e-7, dy)


def eps_10e7(x, weight, bias, eps, dy):
    """Correct two-pass, eps hard-coded 10e-7."""
    return two_pass(x, weight, bias, 10e-7, dy)


def eps_outside(x, weight, bias, eps, dy):
    k = x.shape[0]
    mean = x.mean(axis=0)
    std = np.sqrt(((x - mean) ** 2).mean(axis=0)) + x.dtype.type(eps)
    s = (x - mean) / std
    db, dw = dy.sum(axis=0), (dy * s).sum(axis=0)
    return weight * s + bias, (weight / std) * (dy - db / k - s * dw / k), dw, db


def zero_dx(x, weight, bias, eps, dy):
    """An argument-order slip: dx computed from dy − dy (all zeros)."""
    y, _, dw, db = two_pass(x, weight, bias, eps, dy)
    return y, np.zeros_like(x), dw, db


def staged(x, weight, bias, eps, dy):
    """The staged backward of the computational graph: (v + ε)^-1.5 in the case's dtype."""
    k = x.shape[0]
    mean = x.mean(axis=0)
    centred = x - mean
    var = (centred**2).mean(axis=0)
    eps = x.dtype.type(eps)
    std = np.sqrt(var + eps)
    s = centred / std
    ds = dy * weight
    dvar = (ds * centred).sum(axis=0) * x.dtype.type(-0.5) * (var + eps) ** x.dtype.type(-1.5)
    dmean = (-ds / std).sum(axis=0) + dvar * (x.dtype.type(-2) * centred).mean(axis=0)
    dx = ds / std + dvar * 2 * centred / k + dmean / k
    return weight * s + bias, dx, (dy * s).sum(axis=0), dy.sum(axis=0)


def staged_no_mean_over_k(x, weight, bias, eps, dy):
    """The staged backward with Σ(x − m) where mean(x − m) belongs: zero in exact arithmetic."""
    k = x.shape[0]
    mean = x.mean(axis=0)
    centred = x - mean
    var = (centred**2).mean(axis=0)
    std = np.sqrt(var + x.dtype.type(eps))
    s = centred / std
    ds = dy * weight
    dvar = (ds * centred).sum(axis=0) * x.dtype.type(-0.5) / (std * std * std)
    dmean = (-ds / std).sum(axis=0) + dvar * (x.dtype.type(-2) * centred).sum(axis=0)
    dx = ds / std + dvar * 2 * centred / k + dmean / k
    return weight * s + bias, dx, (dy * s).sum(axis=0), dy.sum(axis=0)


def _tree_mean(a):
    """The mean down the columns as XLA reduces: halves added pairwise (k a power of two or padded)."""
    k = a.shape[0]
    size = 1 << (k - 1).bit_length()
    total = np.concatenate([a, np.zeros((size - k, a.shape[1]), a.dtype)])
    while total.shape[0] > 1:
        half = total.shape[0] // 2
        total = total[:half] + total[half:]
    return total[0] / a.dtype.type(k)


def _one_pass(x, weight, bias, eps, dy, mean_of):
    """E[x²] − E[x]² with the column means ``mean_of`` takes, the rest two-pass's."""
    k = x.shape[0]
    mean = mean_of(x)
    var = np.maximum(mean_of(x * x) - mean * mean, 0)
    std = np.sqrt(var + x.dtype.type(eps))
    s = (x - mean) / std
    db, dw = dy.sum(axis=0), (dy * s).sum(axis=0)
    return weight * s + bias, (weight / std) * (dy - db / k - s * dw / k), dw, db


def tree_one_pass(x, weight, bias, eps, dy):
    """A flax-style fast variance E[x²] − E[x]², reduced as XLA does (not numpy's sums)."""
    return _one_pass(x, weight, bias, eps, dy, _tree_mean)


def numpy_one_pass(x, weight, bias, eps, dy):
    """E[x²] − E[x]² with numpy's own (pairwise) sums."""
    return _one_pass(x, weight, bias, eps, dy, lambda a: a.mean(axis=0))


def sum_without_axis(x, weight, bias, eps, dy):
    """The staged backward with np.sum(x − mean) over every column where a per-column mean belongs."""
    k = x.shape[0]
    mean = x.mean(axis=0)
    centred = x - mean
    std = np.sqrt((centred**2).mean(axis=0) + x.dtype.type(eps))
    s = centred / std
    ds = dy * weight
    dvar = (ds * centred).sum(axis=0) * x.dtype.type(-0.5) / (std * std * std)
    dmean = (-ds / std).sum(axis=0) + dvar * x.dtype.type(-2) * np.sum(centred)
    dx = ds / std + dvar * 2 * centred / k + dmean / k
    return weight * s + bias, dx, (dy * s).sum(axis=0), dy.sum(axis=0)
