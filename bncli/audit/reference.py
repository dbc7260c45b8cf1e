"""The audit's exact references and budgets: what a correct implementation attains, element by element.

For each case and dtype the reference is computed in float64 from the same
dtype-rounded inputs by :mod:`bncli.core` (refined two-pass variance: exact to a
few units of float64 roundoff at natural scale). The budget of an element is what
a correct, backward-stable implementation attains at that precision on that input::

    budget_i = C_q · u(dtype) · scale_i

with u the unit roundoff and scale_i the element's natural scale (see
:class:`bncli.numdiff.RoundingScales`). Errors are reported on that scale: ``error_i =
|obtained_i − exact_i| / scale_i``, so an element passes when error_i ≤ C_q·u.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import core
from ..numdiff import RoundingScales, unit_roundoff
from .cases import CaseInputs

# C_q, the multiple of u·scale a correct implementation stays within. Measured maxima of
# error/(u·scale) over every default case, both dtypes and all three layouts
# (`python bench/audit.py calibrate`): bncli's core (extremes too), PyTorch 2.13 CPU, the
# textbook two-pass numpy of examples/batchnorm_numpy.py and the C example: y 0.62, dx 0.66,
# dw 0.42, db 0.71 (float32; float64 ≤ 0.56). C_q = 4 leaves a margin of ≥ 5.6×, while the
# classic mistakes exceed the budget by 1e2× (one-pass variance, float32 offset) to 1e13×.
BUDGET_MULTIPLES = {"y": 4.0, "dx": 4.0, "dw": 4.0, "db": 4.0}


@dataclass(frozen=True)
class Reference:
    """Exact values (float64 from the dtype-rounded inputs) and the natural scale of each element."""

    values: dict[str, np.ndarray]
    scales: dict[str, np.ndarray]


def reference(inputs: CaseInputs) -> Reference:
    """y, dx, dw, db in float64 with bncli's refined two-pass core, and their natural scales."""
    x, g = inputs.x.astype(np.float64), inputs.dy.astype(np.float64)
    w, b = inputs.weight.astype(np.float64), inputs.bias.astype(np.float64)
    bn = core.forward(x, w, b, inputs.eps)
    grads = core.backward(g, bn)
    values = {"y": bn.y, "dx": grads.dx, "dw": grads.dw, "db": grads.db}
    return Reference(values, RoundingScales(np.abs(bn.s), bn.mean, bn.std, w, b, np.abs(g)).as_dict())


def budget(name: str, dtype: str) -> float:
    """C_q·u: the largest error on the natural scale that a correct implementation of ``name`` makes."""
    return BUDGET_MULTIPLES[name] * unit_roundoff(dtype)
