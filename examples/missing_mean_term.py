"""A classic formula mistake: dx without the mean term −Σdy/k (WRONG).

bncli audit examples/missing_mean_term.py:batchnorm         # WRONG, diagnosed by name
"""

import numpy as np


def batchnorm(x, weight, bias, eps, dy):
    k = x.shape[0]
    mean = x.mean(axis=0)
    var = ((x - mean) ** 2).mean(axis=0)
    std = np.sqrt(var + x.dtype.type(eps))
    s = (x - mean) / std
    dw = (dy * s).sum(axis=0)
    dx = (weight / std) * (dy - s * dw / k)  # the mistake: "− dy.mean(axis=0)" is missing
    return {"y": weight * s + bias, "dx": dx, "dw": dw, "db": dy.sum(axis=0)}
