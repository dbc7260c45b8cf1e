"""A correct batch norm (BatchNorm1d/2d, training mode): the textbook two-pass, in the input's dtype.

bncli audit examples/batchnorm_numpy.py:batchnorm                       # (k, C): PASS
bncli audit examples/batchnorm_numpy.py:batchnorm --layout nchw         # (N, C, H, W): PASS
bncli audit examples/batchnorm_numpy.py:batchnorm_nhwc --layout nhwc    # (N, H, W, C): PASS
"""

import numpy as np


def batchnorm(x, weight, bias, eps, dy):
    """Channels on axis 1, as PyTorch: (k, C) or (N, C, H, W); statistics over every other axis."""
    axes = tuple(a for a in range(x.ndim) if a != 1)
    shape = [1] * x.ndim
    shape[1] = -1
    k = x.size // x.shape[1]
    w, b = weight.reshape(shape), bias.reshape(shape)
    mean = x.mean(axis=axes, keepdims=True)
    centered = x - mean
    var = (centered * centered).mean(axis=axes, keepdims=True)  # two passes: the mean first
    std = np.sqrt(var + x.dtype.type(eps))
    s = centered / std
    db = dy.sum(axis=axes)
    dw = (dy * s).sum(axis=axes)
    dx = (w / std) * (dy - db.reshape(shape) / k - s * dw.reshape(shape) / k)
    return {"y": w * s + b, "dx": dx, "dw": dw, "db": db}


def batchnorm_nhwc(x, weight, bias, eps, dy):
    """Channels last, (N, H, W, C): the same computation on the transposed arrays."""
    result = batchnorm(np.moveaxis(x, -1, 1), weight, bias, eps, np.moveaxis(dy, -1, 1))
    return {name: np.moveaxis(v, 1, -1) if v.ndim == 4 else v for name, v in result.items()}
