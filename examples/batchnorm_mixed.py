"""A correct mixed-precision batch norm (training and eval mode), as PyTorch's kernels compute it:
x and dy in float16 or bfloat16, the statistics and every sum in float32, y and dx rounded to the
input's dtype at the end; weight, bias, dw, db and the running statistics stay float32.

bncli audit examples/batchnorm_mixed.py:batchnorm --dtype all           # PASS
bncli audit examples/batchnorm_mixed.py:batchnorm --dtype all --eval    # PASS
"""

import numpy as np


def batchnorm(x, weight, bias, eps, dy, running_mean, running_var, momentum, training):
    wide = np.promote_types(weight.dtype, np.float32)  # float32 beside a half x, float64 beside float64
    x_, dy_ = x.astype(wide), dy.astype(wide)
    k = x.shape[0]
    if training:
        mean = x_.mean(axis=0)
        var = ((x_ - mean) ** 2).mean(axis=0)  # two passes: the mean first
        running_mean = (1 - momentum) * running_mean + momentum * mean
        running_var = (1 - momentum) * running_var + momentum * var * (k / (k - 1))
    else:
        mean, var = running_mean, running_var
    std = np.sqrt(var + wide.type(eps))
    s = (x_ - mean) / std
    db, dw = dy_.sum(axis=0), (dy_ * s).sum(axis=0)
    dx = (weight / std) * (dy_ - db / k - s * dw / k) if training else (weight / std) * dy_
    return {
        "y": (weight * s + bias).astype(x.dtype),
        "dx": dx.astype(x.dtype),
        "dw": dw,
        "db": db,
        "running_mean": running_mean.astype(weight.dtype),
        "running_var": running_var.astype(weight.dtype),
    }
