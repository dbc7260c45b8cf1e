"""A classic numerical mistake: the variance in one pass, E[x²] − E[x]² (INACCURATE, not WRONG).

The formula is right, so the unit case passes; on data with a large offset
(1e8 + noise) the two terms cancel and the variance loses its digits.

    bncli audit examples/one_pass_variance.py:batchnorm         # INACCURATE on offset
"""

import numpy as np


def batchnorm(x, weight, bias, eps, dy):
    k = x.shape[0]
    mean = x.mean(axis=0)
    var = np.maximum((x * x).mean(axis=0) - mean * mean, 0)  # the mistake: one pass
    std = np.sqrt(var + x.dtype.type(eps))
    s = (x - mean) / std
    db = dy.sum(axis=0)
    dw = (dy * s).sum(axis=0)
    dx = (weight / std) * (dy - db / k - s * dw / k)
    return {"y": weight * s + bias, "dx": dx, "dw": dw, "db": db}
