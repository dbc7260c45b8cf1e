"""The audit's exact references and budgets: what a correct implementation attains, element by element.

For each case and dtype the reference is computed in float64 from the same
dtype-rounded inputs by :mod:`bncli.core` (refined two-pass variance: exact to a
few units of float64 roundoff at natural scale). The budget of an element is what
a correct, backward-stable implementation attains at that precision on that input::

    budget_i = C_q · u(dtype) · scale_i

with u the unit roundoff and scale_i the element's natural scale (see
:class:`bncli.numdiff.RoundingScales`). Errors are reported on that scale: ``error_i =
|obtained_i − exact_i| / scale_i``, so an element passes when error_i ≤ C_q·u.

In a half precision (x and dy float16 or bfloat16, the parameters float32) a correct
implementation computes in float32 and rounds y and dx to the input's dtype at the end, as
PyTorch's CPU kernels do. So y and dx may be off by that last rounding, u_half·|exact_i|, beside
float32's arithmetic, and dw, db and the running statistics (float32) by float32's alone::

    budget_i = C_q · ((u_half·|exact_i| + δ/2)/scale_i + u_float32)      (y, dx; δ the spacing of subnormals)
    budget_i = C_q · u_float32                                    (dw, db, running statistics)

An implementation that keeps its statistics in the half precision, or sums them there, loses
u_half·|m|/σ and more: beyond these budgets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import core
from ..numdiff import RoundingScales
from .cases import RUNNING, CaseInputs
from .precisions import UNIT_ROUNDOFF, finfo, is_half, parameter_dtype

# In a half precision, rounded to the input's dtype at the end; the rest stays float32.
ROUNDED_TO_INPUT = ("y", "dx")

# C_q, the multiple of u·scale a correct implementation stays within. Measured maxima of
# error/(u·scale) over every default case, both dtypes and all three layouts
# (`python bench/audit.py calibrate`): bncli's core (extremes too), PyTorch 2.13 CPU, the
# textbook two-pass numpy of examples/batchnorm_numpy.py and the C example: y 0.62, dx 0.66,
# dw 0.42, db 0.71 (float32; float64 ≤ 0.56). C_q = 4 leaves a margin of ≥ 5.6×, while the
# classic mistakes exceed the budget by 1e2× (one-pass variance, float32 offset) to 1e13×.
# The running statistics are a mean and a variance weighed with their start: the same C_q (their
# scales bound the error of the same sums).
BUDGET_MULTIPLES = {"y": 4.0, "dx": 4.0, "dw": 4.0, "db": 4.0, "running_mean": 4.0, "running_var": 4.0}


@dataclass(frozen=True)
class Reference:
    """Exact values (float64 from the dtype-rounded inputs) and the natural scale of each element."""

    values: dict[str, np.ndarray]
    scales: dict[str, np.ndarray]


def reference(inputs: CaseInputs) -> Reference:
    """y, dx, dw, db in float64 with bncli's refined two-pass core (in eval mode from the running
    statistics), the running statistics after the call, and the natural scales of all."""
    x, g = inputs.x.astype(np.float64), inputs.dy.astype(np.float64)
    w, b = inputs.weight.astype(np.float64), inputs.bias.astype(np.float64)
    start_mean, start_var = inputs.start_statistics()
    if inputs.training:
        bn = core.forward(x, w, b, inputs.eps)
    else:
        bn = core.forward_eval(x, start_mean, start_var, w, b, inputs.eps)
    grads = core.backward(g, bn)
    values = {"y": bn.y, "dx": grads.dx, "dw": grads.dw, "db": grads.db}
    scales = RoundingScales(np.abs(bn.s), bn.mean, bn.std, w, b, np.abs(g)).as_dict()
    running, running_scales = _running(inputs, bn if inputs.training else None, start_mean, start_var)
    return Reference({**values, **running}, {**scales, **running_scales})


def _running(inputs: CaseInputs, batch: core.BatchNorm | None, start_mean: np.ndarray, start_var: np.ndarray):
    """PyTorch's update (momentum M on the new batch, the unbiased batch variance) in training, the start
    values unchanged in eval; their scales: each term's magnitude, the batch's widened by √k as a sum's
    rounding grows, and the variance's by 2·|m|·√v, what rounding the mean costs (x − m)²."""
    k = inputs.x.shape[0]
    if batch is None or k < 2:
        values = {"running_mean": start_mean, "running_var": start_var}
        return values, {name: _floored(np.abs(v)) for name, v in values.items()}
    with np.errstate(over="ignore", invalid="ignore"):
        mean, var = batch.mean, batch.var
        unbiased = var * (k / (k - 1))
        keep, new, growth = 1 - inputs.momentum, inputs.momentum, np.sqrt(k)
        values = {"running_mean": keep * start_mean + new * mean, "running_var": keep * start_var + new * unbiased}
        spread = np.sqrt(var)
        scales = {
            "running_mean": keep * np.abs(start_mean) + new * growth * (np.abs(mean) + spread),
            "running_var": keep * np.abs(start_var) + new * growth * (unbiased + 2 * spread * np.abs(mean)),
        }
    return values, {name: _floored(s) for name, s in scales.items()}


def _floored(scale: np.ndarray) -> np.ndarray:
    """Never 0: a constant column that starts at 0 still has a scale to divide by."""
    return np.maximum(scale, np.finfo(np.float64).tiny)


def representable(name: str, ref: Reference, dtype: str) -> bool:
    """A running statistic is judged where its exact value fits its dtype: an extreme case's variance
    may not (y, dx, dw, db always do, or are judged as the contract says: inf where finite is beyond)."""
    return name not in RUNNING or bool(np.all(np.abs(ref.values[name]) <= finfo(parameter_dtype(dtype)).max))


def budget(name: str, dtype: str) -> float:
    """C_q·u: the largest error on the natural scale that a correct implementation of ``name`` makes
    (in a half precision, an upper bound of :func:`element_budgets`)."""
    if is_half(dtype) and name not in ROUNDED_TO_INPUT:
        return BUDGET_MULTIPLES[name] * UNIT_ROUNDOFF[parameter_dtype(dtype)]
    return BUDGET_MULTIPLES[name] * UNIT_ROUNDOFF[dtype]


def element_budgets(name: str, dtype: str, ref: Reference):
    """Each element's budget on the natural scale: C_q·u, or in a half precision the rounding of y and dx
    to the input's dtype beside float32's arithmetic (see the module's docstring)."""
    if not is_half(dtype) or name not in ROUNDED_TO_INPUT:
        return budget(name, dtype)
    # Below the smallest normal number the last rounding is absolute: half the subnormals' spacing.
    spacing = float(finfo(dtype).smallest_subnormal)
    with np.errstate(invalid="ignore", over="ignore"):
        rounding = (UNIT_ROUNDOFF[dtype] * np.abs(ref.values[name]) + spacing / 2) / ref.scales[name]
    return BUDGET_MULTIPLES[name] * (rounding + UNIT_ROUNDOFF[parameter_dtype(dtype)])
