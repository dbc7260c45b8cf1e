"""The precisions the audit runs in, and PyTorch's mixed-precision convention for the half ones.

float64 and float32 are numpy's; float16 is numpy's too, and bfloat16 is ml_dtypes' (the numpy
dtype that JAX and TensorFlow use). In a half precision x and dy come in that dtype while weight,
bias, eps and the running statistics stay float32, as ``torch.autocast`` and PyTorch's CPU
kernels keep them.
"""

from __future__ import annotations

import numpy as np

from ..options import HALF_DTYPES

UNIT_ROUNDOFF = {"float64": 2.0**-53, "float32": 2.0**-24, "float16": 2.0**-11, "bfloat16": 2.0**-8}


def numpy_dtype(name: str) -> np.dtype:
    """The numpy dtype of ``name``; bfloat16 needs ml_dtypes (ImportError without it)."""
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def finfo(name: str):
    """``np.finfo`` of ``name``, bfloat16's from ml_dtypes."""
    if name == "bfloat16":
        import ml_dtypes

        return ml_dtypes.finfo(ml_dtypes.bfloat16)
    return np.finfo(name)


def parameter_dtype(name: str) -> str:
    """The dtype of weight, bias and the running statistics in a run of ``name``: float32 for a half one."""
    return "float32" if name in HALF_DTYPES else name


def is_half(name: str) -> bool:
    return name in HALF_DTYPES


def parameter_eps(eps: float, name: str) -> float:
    """eps as a run of ``name`` passes it: rounded to float32 in a half precision."""
    return float(np.float32(eps)) if is_half(name) else float(eps)


def cast(values, name: str) -> np.ndarray:
    """``values`` rounded to ``name`` (to nearest, ties to even), as an array of that dtype."""
    return np.asarray(values).astype(numpy_dtype(name))
