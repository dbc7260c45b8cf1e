"""A mixed-precision batch norm with one mistake: its mean and variance are summed in the input's
dtype, row after row, as `half total = 0; for (...) total += x[i]` does. Everything else is right
(float32 arithmetic, y and dx rounded to the input's dtype at the end).

bncli audit examples/half_accumulation.py:batchnorm --dtype float16     # INACCURATE, the accumulation named
"""

import numpy as np


def _sum_in_own_dtype(a):
    total = np.zeros(a.shape[1], a.dtype)
    for row in a:
        total += row  # rounded to a's dtype at every step
    return total


def batchnorm(x, weight, bias, eps, dy):
    k = x.shape[0]
    mean = _sum_in_own_dtype(x) / x.dtype.type(k)
    centred = x - mean
    var = _sum_in_own_dtype(centred * centred) / x.dtype.type(k)
    wide = np.promote_types(weight.dtype, np.float32)  # float32 beside a half x, as in batchnorm_mixed.py
    x_, dy_ = x.astype(wide), dy.astype(wide)
    std = np.sqrt(var.astype(wide) + wide.type(eps))
    s = (x_ - mean.astype(wide)) / std
    db, dw = dy_.sum(axis=0), (dy_ * s).sum(axis=0)
    dx = (weight / std) * (dy_ - db / k - s * dw / k)
    return {"y": (weight * s + bias).astype(x.dtype), "dx": dx.astype(x.dtype), "dw": dw, "db": db}
