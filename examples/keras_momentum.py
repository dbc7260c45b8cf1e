"""A batch norm that keeps running statistics with Keras's momentum convention (0.9 keeps 90 % of the old).

bncli audit examples/keras_momentum.py:batchnorm         # reversed_momentum on running_mean, running_var
bncli audit examples/keras_momentum.py:batchnorm --eval  # eval mode uses the running statistics: PASS
"""

import numpy as np


def batchnorm(x, weight, bias, eps, dy, running_mean, running_var, momentum, training=True):
    k = x.shape[0]
    if training:
        mean = x.mean(axis=0)
        var = ((x - mean) ** 2).mean(axis=0)
        running_mean = momentum * running_mean + (1 - momentum) * mean
        running_var = momentum * running_var + (1 - momentum) * var * (k / (k - 1))
    else:
        mean, var = running_mean, running_var
    std = np.sqrt(var + x.dtype.type(eps))
    s = (x - mean) / std
    db, dw = dy.sum(axis=0), (dy * s).sum(axis=0)
    dx = (weight / std) * (dy - db / k - s * dw / k) if training else (weight / std) * dy
    y = weight * s + bias
    return {"y": y, "dx": dx, "dw": dw, "db": db, "running_mean": running_mean, "running_var": running_var}
