"""A correct mixed-precision batch norm (training and eval mode), as PyTorch's kernels compute it:
x and dy in float16 or bfloat16, the statistics and every sum in float32, y and dx rounded to the
input's dtype at the end; weight, bias, dw, db and the running statistics stay float32.

bncli audit examples/batchnorm_mixed.py:batchnorm --dtype all                       # (k, C): PASS
bncli audit examples/batchnorm_mixed.py:batchnorm --dtype all --eval                # PASS
bncli audit examples/batchnorm_mixed.py:batchnorm --dtype all --layout nchw         # (N, C, H, W): PASS
bncli audit examples/batchnorm_mixed.py:batchnorm_nhwc --dtype all --layout nhwc    # (N, H, W, C): PASS
"""

import numpy as np


def batchnorm(x, weight, bias, eps, dy, running_mean, running_var, momentum, training):
    """Channels on axis 1, as PyTorch: (k, C) or (N, C, H, W); statistics over every other axis."""
    wide = np.promote_types(weight.dtype, np.float32)  # float32 beside a half x, float64 beside float64
    axes = tuple(a for a in range(x.ndim) if a != 1)
    shape = [1] * x.ndim
    shape[1] = -1
    x_, dy_ = x.astype(wide), dy.astype(wide)
    k = x.size // x.shape[1]
    if training:
        mean = x_.mean(axis=axes)
        var = ((x_ - mean.reshape(shape)) ** 2).mean(axis=axes)  # two passes: the mean first
        running_mean = (1 - momentum) * running_mean + momentum * mean
        running_var = (1 - momentum) * running_var + momentum * var * (k / (k - 1))
    else:
        mean, var = running_mean, running_var
    std = np.sqrt(var + wide.type(eps)).reshape(shape)
    s = (x_ - mean.reshape(shape)) / std
    w, b = weight.reshape(shape), bias.reshape(shape)
    db, dw = dy_.sum(axis=axes), (dy_ * s).sum(axis=axes)
    dx = (w / std) * (dy_ - db.reshape(shape) / k - s * dw.reshape(shape) / k) if training else (w / std) * dy_
    return {
        "y": (w * s + b).astype(x.dtype),
        "dx": dx.astype(x.dtype),
        "dw": dw,
        "db": db,
        "running_mean": running_mean.astype(weight.dtype),
        "running_var": running_var.astype(weight.dtype),
    }


def batchnorm_nhwc(x, weight, bias, eps, dy, running_mean, running_var, momentum, training):
    """Channels last, (N, H, W, C): the same computation on the transposed arrays."""
    result = batchnorm(
        np.moveaxis(x, -1, 1), weight, bias, eps, np.moveaxis(dy, -1, 1), running_mean, running_var, momentum, training
    )
    return {name: np.moveaxis(v, 1, -1) if v.ndim == 4 else v for name, v in result.items()}
