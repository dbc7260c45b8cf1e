"""Judging a target's outputs: well-formed or an ERROR, each quantity against its budget, the verdicts.

A quantity within budget on every element is PASS; beyond budget it is WRONG when
the same quantity is beyond budget on the unit case of that dtype too (the formula
is wrong), else INACCURATE (the formula is right, the arithmetic loses precision).
A case whose outputs all come from a lower precision than asked is INACCURATE at most:
its errors are that precision's, not a formula's. A quantity asked for that the target
returns in no case makes the audit INCOMPLETE.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

import numpy as np

from .cases import JUDGED, QUANTITIES, CaseInputs, from_layout, layout_index, layout_shape
from .oneline import reason
from .precisions import finfo, is_half
from .reference import ROUNDED_TO_INPUT, Reference, element_budgets

# A quantity beyond budget before the unit case has decided between WRONG and INACCURATE.
BEYOND = "BEYOND"


class TargetError(Exception):
    """The target did not run or did not return a well-formed result (one line)."""


@dataclass(frozen=True)
class QuantityResult:
    """One quantity of one case compared with its reference.

    ``max_error`` and ``budget`` are on the natural scale (error/scale, C_q·u), at the
    element worst beside its own budget (in a half precision each element has its own: see
    :func:`bncli.audit.reference.element_budgets`); ``worst`` is that element's index in the
    layout's shape (None when nothing is over budget), ``feature`` its feature name,
    ``beyond`` how many elements are over budget, ``ratio`` = max_error / budget.
    """

    verdict: str
    max_error: float | None = None
    budget: float | None = None
    worst: list[int] | None = None
    feature: str | None = None
    beyond: int = 0
    ratio: float | None = None
    expected: float | None = None
    obtained: float | None = None


@dataclass(frozen=True)
class CaseResult:
    name: str
    dtype: str
    shape: tuple[int, ...]
    verdict: str
    error: str | None
    quantities: dict[str, QuantityResult]
    extreme: bool = False
    computes_in: str | None = None  # the precision its outputs evidently come from, when lower than dtype
    shards: dict | None = None  # --shards: the plan, the split used, the dw/db convention found


def compare(name: str, obtained: np.ndarray, ref: Reference, inputs: CaseInputs, layout: str) -> QuantityResult:
    """Element-wise error on the natural scale; the verdict is PASS or BEYOND (settled by :func:`settle`)."""
    exact, scale = ref.values[name], ref.scales[name]
    obtained = obtained.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        error = np.abs(obtained - exact) / scale
    error = np.where(np.isnan(error), np.inf, error)
    error = np.where(_rounds_to_infinity(name, obtained, exact, inputs.dtype), 0.0, error)
    bounds = np.broadcast_to(element_budgets(name, inputs.dtype, ref), error.shape)
    over = error > bounds
    beyond = int(over.sum())
    with np.errstate(invalid="ignore"):
        flat = int(np.argmax(np.where(np.isinf(error), np.inf, error / bounds)))  # the worst beside its budget
    max_error, bound = float(error.flat[flat]), float(bounds.flat[flat])
    k, n = inputs.x.shape
    if exact.ndim == 2:
        row, column = divmod(flat, n)
        worst = layout_index(row, column, k, n, layout)
    else:
        column = flat
        worst = [column]
    return QuantityResult(
        verdict="PASS" if beyond == 0 else BEYOND,
        max_error=max_error,
        budget=bound,
        worst=worst if beyond else None,
        feature=inputs.features[column] if beyond else None,
        beyond=beyond,
        ratio=max_error / bound,
        expected=float(exact.flat[flat]),
        obtained=float(obtained.flat[flat]),
    )


def _rounds_to_infinity(name: str, obtained: np.ndarray, exact: np.ndarray, dtype: str) -> np.ndarray:
    """Where y or dx is beyond the largest number of the half dtype it comes back in, an infinity of its sign
    is its correct rounding (a wider dtype may return the finite value, judged as any)."""
    if not is_half(dtype) or name not in ROUNDED_TO_INPUT:
        return np.zeros(exact.shape, bool)
    with np.errstate(invalid="ignore"):
        return (np.abs(exact) > float(finfo(dtype).max)) & (obtained == np.sign(exact) * np.inf)


def settle(result: CaseResult, yardstick: CaseResult | None) -> CaseResult:
    """BEYOND becomes WRONG if the same quantity fails the unit case of that dtype too, else INACCURATE;
    INACCURATE always on a case computed in a lower precision than asked."""

    def wrong_on_unit(name: str) -> bool:
        if result.computes_in is not None:
            return False
        # Without a unit result that passes, nothing shows that the formula is right.
        unit = None if yardstick is None else yardstick.quantities.get(name)
        return unit is None or unit.verdict != "PASS"

    quantities = {
        name: q if q.verdict != BEYOND else replace(q, verdict="WRONG" if wrong_on_unit(name) else "INACCURATE")
        for name, q in result.quantities.items()
    }
    verdict = result.verdict if result.error else overall(q.verdict for q in quantities.values())
    return replace(result, verdict=verdict, quantities=quantities)


def overall(verdicts: Iterable[str]) -> str:
    """ERROR if any, else WRONG, else INCOMPLETE, else INACCURATE, else PASS (MISSING does not fail a case)."""
    verdicts = set(verdicts)
    for verdict in ("ERROR", "WRONG", "INCOMPLETE", "INACCURATE"):
        if verdict in verdicts:
            return verdict
    return "PASS"


def check_outputs(outputs, inputs: CaseInputs, layout: str) -> dict[str, np.ndarray]:
    """The target's outputs as float arrays in the nc layout; a malformed one raises TargetError."""
    k, n = inputs.x.shape
    full = layout_shape(k, n, layout)
    checked = {}
    for name, value in as_mapping(outputs).items():
        if name in JUDGED and value is not None:
            array = real_array(name, value)
            checked[name] = (
                _per_sample(name, array, full, layout) if name in ("y", "dx") else _per_feature(name, array, n)
            )
    if not checked:
        raise TargetError("returned none of y, dx, dw, db")
    return checked


def as_mapping(outputs):
    """A mapping of what the target returned: a tuple (y, dx, dw, db) or a prefix of it is named."""
    if outputs is None:
        raise TargetError("returned nothing")
    if isinstance(outputs, (tuple, list)):
        if len(outputs) > len(QUANTITIES):
            raise TargetError(f"returned a sequence of {len(outputs)} items; expected (y, dx, dw, db)")
        outputs = dict(zip(QUANTITIES[: len(outputs)], outputs, strict=True))
    if not hasattr(outputs, "items"):
        raise TargetError(f"returned a {type(outputs).__name__}; expected a mapping or a tuple (y, dx, dw, db)")
    return outputs


def real_array(name: str, value) -> np.ndarray:
    """``value`` as a float64 ndarray (never a subclass); else TargetError with numpy's or the object's reason."""
    try:
        array = np.asarray(value)
    except Exception as error:  # noqa: BLE001 - whatever the target returned, it is its ERROR
        raise TargetError(f"{name} is not an array: {reason(error)}") from None
    if array.dtype.kind not in "fiub" and not is_half(array.dtype.name):  # bfloat16 is ml_dtypes' kind V
        hint = "; a .npy file has no code for bfloat16: write it as float32" if array.dtype.str == "|V2" else ""
        raise TargetError(f"{name} is not an array of real numbers (dtype {array.dtype}){hint}")
    return array.astype(np.float64)


def _per_sample(name: str, array: np.ndarray, shape: tuple[int, ...], layout: str) -> np.ndarray:
    if array.shape != shape:
        raise TargetError(f"{name} has shape {array.shape}, expected {shape}")
    return from_layout(array, layout)


def _per_feature(name: str, array: np.ndarray, n: int) -> np.ndarray:
    if array.size != n or array.ndim > 2:
        raise TargetError(f"{name} has shape {array.shape}, expected ({n},): one value per feature")
    return array.reshape(n)
