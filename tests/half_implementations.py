"""Half-precision batch norms, each with one mistake the audit must name (and what arrives, recorded).

For ``bncli audit tests/half_implementations.py:NAME --dtype float16`` (or bfloat16, all).
"""

import json
import os

import numpy as np


def _sum_in_own_dtype(a):
    """Row after row into an accumulator of a's dtype, as ``half total = 0; for (...) total += a[i]``."""
    total = np.zeros(a.shape[1], a.dtype)
    for row in a:
        total += row
    return total


def _finish(x, dy, weight, bias, mean, std, training=True):
    """The rest in float32, y and dx rounded to x's dtype: only the statistics differ between these."""
    x32, dy32 = x.astype(np.float32), dy.astype(np.float32)
    s = (x32 - mean) / std
    k = x.shape[0]
    db, dw = dy32.sum(axis=0), (dy32 * s).sum(axis=0)
    dx = (weight / std) * (dy32 - db / k - s * dw / k) if training else (weight / std) * dy32
    return {"y": (weight * s + bias).astype(x.dtype), "dx": dx.astype(x.dtype), "dw": dw, "db": db}


def accumulated_in_half(x, weight, bias, eps, dy):
    """The mean and variance summed in the input's dtype (float16 partial sums)."""
    k = x.dtype.type(x.shape[0])
    mean = _sum_in_own_dtype(x) / k
    centred = x - mean
    var = _sum_in_own_dtype(centred * centred) / k
    std = np.sqrt(var.astype(np.float32) + np.float32(eps))
    return _finish(x, dy, weight, bias, mean.astype(np.float32), std)


def casts_parameters(x, weight, bias, eps, dy, running_mean, running_var, momentum, training):
    """Mixed precision in training; in eval mode the running statistics cast to the input's dtype first,
    as ``model.half()`` or a compiler that lowers the parameters does: above 65504 they become inf."""
    if training:
        x32 = x.astype(np.float32)
        mean, var = x32.mean(axis=0), x32.var(axis=0)
        k = x.shape[0]
        result = _finish(x, dy, weight, bias, mean, np.sqrt(var + np.float32(eps)))
        result["running_mean"] = (1 - momentum) * running_mean + momentum * mean
        result["running_var"] = (1 - momentum) * running_var + momentum * var * np.float32(k / (k - 1))
        return result
    mean = running_mean.astype(x.dtype).astype(np.float32)
    var = running_var.astype(x.dtype).astype(np.float32)
    result = _finish(x, dy, weight, bias, mean, np.sqrt(var + np.float32(eps)), training=False)
    return {**result, "running_mean": running_mean, "running_var": running_var}


def records_dtypes(x, weight, bias, eps, dy):
    """A correct mixed-precision batch norm that writes what it was given to $BNCLI_TEST_RECORD."""
    with open(os.environ["BNCLI_TEST_RECORD"], "a") as record:
        names = {"x": x, "weight": weight, "bias": bias, "dy": dy}
        record.write(json.dumps({**{n: a.dtype.name for n, a in names.items()}, "eps": eps}) + "\n")
    x32 = x.astype(np.float32)
    mean, var = x32.mean(axis=0), x32.var(axis=0)
    return _finish(x, dy, weight, bias, mean, np.sqrt(var + np.float32(eps)))
