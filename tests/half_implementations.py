"""Half-precision batch norms for the tests: one with a mistake the audit must name, one recording what arrives.

For ``bncli audit tests/half_implementations.py:NAME --dtype float16`` (or bfloat16, all).
"""

import json
import os

import numpy as np


def _finish(x, dy, weight, bias, mean, std, training=True):
    """The rest in float32, y and dx rounded to x's dtype: only the statistics differ between these."""
    x32, dy32 = x.astype(np.float32), dy.astype(np.float32)
    s = (x32 - mean) / std
    k = x.shape[0]
    db, dw = dy32.sum(axis=0), (dy32 * s).sum(axis=0)
    dx = (weight / std) * (dy32 - db / k - s * dw / k) if training else (weight / std) * dy32
    return {"y": (weight * s + bias).astype(x.dtype), "dx": dx.astype(x.dtype), "dw": dw, "db": db}


def records_dtypes(x, weight, bias, eps, dy):
    """A correct mixed-precision batch norm that writes what it was given to $BNCLI_TEST_RECORD."""
    with open(os.environ["BNCLI_TEST_RECORD"], "a") as record:
        names = {"x": x, "weight": weight, "bias": bias, "dy": dy}
        record.write(json.dumps({**{n: a.dtype.name for n, a in names.items()}, "eps": eps}) + "\n")
    x32 = x.astype(np.float32)
    mean, var = x32.mean(axis=0), x32.var(axis=0)
    return _finish(x, dy, weight, bias, mean, np.sqrt(var + np.float32(eps)))


def _mixed(x, weight, bias, eps, dy, gradients_in=None, eps_outside=False):
    """Mixed precision (float32 statistics and sums), dw and db rounded to ``gradients_in`` if given."""
    x32 = x.astype(np.float32)
    mean, var = x32.mean(axis=0), x32.var(axis=0)
    std = np.sqrt(var) + np.float32(eps) if eps_outside else np.sqrt(var + np.float32(eps))
    result = _finish(x, dy, weight, bias, mean, std)
    if gradients_in is not None:
        result["dw"], result["db"] = result["dw"].astype(gradients_in), result["db"].astype(gradients_in)
    return result


def gradients_in_half(x, weight, bias, eps, dy):
    """Mixed precision except that dw and db are rounded to the input's dtype."""
    return _mixed(x, weight, bias, eps, dy, gradients_in=x.dtype)


def eps_outside_mixed(x, weight, bias, eps, dy):
    """Mixed precision with σ = √v + ε."""
    return _mixed(x, weight, bias, eps, dy, eps_outside=True)


def running_kept_in_half(x, weight, bias, eps, dy, running_mean, running_var, momentum, training):
    """Mixed precision whose running statistics come back in the input's dtype (a buffer of x's dtype)."""
    x32 = x.astype(np.float32)
    mean, var = x32.mean(axis=0), x32.var(axis=0)
    k = x.shape[0]
    result = _finish(x, dy, weight, bias, mean, np.sqrt(var + np.float32(eps)))
    result["running_mean"] = ((1 - momentum) * running_mean + momentum * mean).astype(x.dtype)
    result["running_var"] = ((1 - momentum) * running_var + momentum * var * np.float32(k / (k - 1))).astype(x.dtype)
    return result


def half_missing_mean_term(x, weight, bias, eps, dy):
    """The textbook computed in the input's dtype throughout (dw, db too), its dx without −Σdy/k."""
    mean = x.mean(axis=0, dtype=x.dtype)
    std = np.sqrt(((x - mean) ** 2).mean(axis=0, dtype=x.dtype) + x.dtype.type(eps))
    s = (x - mean) / std
    w, b = weight.astype(x.dtype), bias.astype(x.dtype)
    db, dw = dy.sum(axis=0, dtype=x.dtype), (dy * s).sum(axis=0, dtype=x.dtype)
    dx = (w / std) * (dy - s * dw / x.dtype.type(x.shape[0]))
    return {"y": w * s + b, "dx": dx, "dw": dw, "db": db}


def affine_in_half(x, weight, bias, eps, dy):
    """Mixed precision, except that y's affine step w·s + b is done in the input's dtype (s rounded first)."""
    result = _mixed(x, weight, bias, eps, dy)
    x32 = x.astype(np.float32)
    s = ((x32 - x32.mean(axis=0)) / np.sqrt(x32.var(axis=0) + np.float32(eps))).astype(x.dtype)
    result["y"] = weight.astype(x.dtype) * s + bias.astype(x.dtype)
    return result
