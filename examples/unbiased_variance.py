"""A classic formula mistake: the unbiased variance (÷ (k − 1)) in training mode (WRONG).

bncli audit examples/unbiased_variance.py:batchnorm         # WRONG, diagnosed by name
"""

import numpy as np


def batchnorm(x, weight, bias, eps, dy):
    k = x.shape[0]
    mean = x.mean(axis=0)
    var = x.var(axis=0, ddof=1)  # the mistake: training mode divides by k
    std = np.sqrt(var + x.dtype.type(eps))
    s = (x - mean) / std
    db = dy.sum(axis=0)
    dw = (dy * s).sum(axis=0)
    dx = (weight / std) * (dy - db / k - s * dw / k)
    return {"y": weight * s + bias, "dx": dx, "dw": dw, "db": db}
