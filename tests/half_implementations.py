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
