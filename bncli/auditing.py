"""Audit another implementation of batch norm: a battery of cases, exact references, budgets, verdicts.

Numpy only; the target is called through :mod:`bncli.targets`. For each case and
dtype the target gets x, weight, bias, eps and dy, and what it returns (any of
y, dx, dw, db) is compared element by element with a reference computed in
float64 from the same dtype-rounded inputs by :mod:`bncli.core` (refined
two-pass variance: exact to a few units of float64 roundoff at natural scale).

The budget of an element is what a correct, backward-stable implementation
attains at that precision on that input::

    budget_i = C_q · u(dtype) · scale_i

with u the unit roundoff and scale_i the element's natural scale (see
:func:`natural_scales`). Errors are reported on that scale: ``error_i =
|obtained_i − exact_i| / scale_i``, so an element passes when error_i ≤ C_q·u.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import cache

import numpy as np

from . import core
from .errors import InputError
from .options import DEFAULT_TIMEOUT, DTYPES, LAYOUTS

QUANTITIES = ("y", "dx", "dw", "db")
# A quantity beyond budget before the unit case has decided between WRONG and INACCURATE.
_BEYOND = "BEYOND"
YARDSTICK = "unit"

# C_q, the multiple of u·scale a correct implementation stays within. Measured maxima of
# error/(u·scale) over every default case, both dtypes and all three layouts
# (`python bench/audit.py calibrate`): bncli's core (extremes too), PyTorch 2.13 CPU, the
# textbook two-pass numpy of examples/batchnorm_numpy.py and the C example: y 0.62, dx 0.66,
# dw 0.42, db 0.71 (float32; float64 ≤ 0.56). C_q = 4 leaves a margin of ≥ 5.6×, while the
# classic mistakes exceed the budget by 1e2× (one-pass variance, float32 offset) to 1e13×.
BUDGET_MULTIPLES = {"y": 4.0, "dx": 4.0, "dw": 4.0, "db": 4.0}

# Self-consistency: the step of the central differences relative to each column's σ,
# about u^(1/3) in float64; the directional derivatives then agree to ~1e-9 relative.
CONSISTENCY_STEP = 1e-5
CONSISTENCY_TOLERANCE = 1e-6
CONSISTENCY_DIRECTIONS = 3


# ------------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class CaseInputs:
    """One case in one dtype, in the nc layout (k rows × n features)."""

    name: str
    dtype: str
    x: np.ndarray  # (k, n), the case's dtype
    dy: np.ndarray  # (k, n), the case's dtype
    weight: np.ndarray  # (n,), the case's dtype
    bias: np.ndarray  # (n,), the case's dtype
    eps: float
    features: tuple[str, ...]


@dataclass(frozen=True)
class Case:
    """A named case: ``make(dtype, rng)`` gives (x, dy, weight, bias, eps, features) in float64."""

    name: str
    description: str
    make: Callable[[str, np.random.Generator], tuple]
    extreme: bool = False

    def inputs(self, dtype: str) -> CaseInputs:
        rng = np.random.default_rng(zlib.crc32(f"{self.name}/{dtype}".encode()))
        x, dy, weight, bias, eps, features = self.make(dtype, rng)
        n = x.shape[1]
        weight, bias = (np.broadcast_to(np.asarray(a, np.float64), (n,)) for a in (weight, bias))
        x, dy, weight, bias = (np.ascontiguousarray(a, dtype=dtype) for a in (x, dy, weight, bias))
        features = tuple(features) if features else tuple(str(j) for j in range(n))
        return CaseInputs(self.name, dtype, x, dy, weight, bias, float(eps), features)


def _per_dtype(dtype: str, float64, float32):
    return float64 if dtype == "float64" else float32


def _unit(dtype, rng):
    x = rng.standard_normal((16, 4)) * [1.0, 0.5, 2.0, 3.0] + [0.0, 1.0, -2.0, 0.5]
    return x, rng.standard_normal(x.shape), [1.0, 0.5, -1.5, 2.0], [0.0, 0.25, -1.0, 3.0], 1e-5, None


def _blood(dtype, rng):
    x = _blood_sample()
    return (
        x,
        rng.standard_normal(x.shape),
        [1.5, 0.5, 2.0, 1.0],
        [0.0, 1.0, -1.0, 0.5],
        1e-5,
        ("RBC", "WBC", "PLT", "Hb"),
    )


@cache
def _blood_sample() -> np.ndarray:
    """The article's blood counts (10 adults × RBC, WBC, PLT, Hb), from the bundled sample."""
    from importlib.resources import files

    text = files("bncli").joinpath("sample_data", "blood.csv").read_text()
    rows = [line for line in text.splitlines() if line.strip() and not line.startswith("#")][1:]
    return np.array([[float(v) for v in row.split(",")] for row in rows])


def _offset(dtype, rng):
    k = 64
    # float64: 1e8 + noise and Unix timestamps varying by seconds. float32 keeps ~7 digits,
    # so there the offsets are ~1e3·σ: still enough for E[x²] − E[x]² to lose most digits.
    big, stamp, spread = _per_dtype(dtype, (1e8, 1.7e9, 3600.0), (1e3, 1e4, 60.0))
    x = np.column_stack(
        [
            big + rng.standard_normal(k),
            stamp + np.round(rng.uniform(0, spread, k)),
            -big + 0.5 * rng.standard_normal(k),
        ]
    )
    return x, rng.standard_normal(x.shape), [1.0, 2.0, -0.5], [0.5, 0.0, 1.0], 1e-5, ("noise+big", "timestamp", "-big")


def _scaled(scale, eps):
    def make(dtype, rng):
        size = _per_dtype(dtype, *scale)
        x = (rng.standard_normal((16, 3)) * [1.0, 2.0, 0.5] + [0.0, 3.0, -1.0]) * size
        return x, rng.standard_normal(x.shape), [1.0, -2.0, 0.5], [0.0, 1.0, -0.5], _per_dtype(dtype, *eps), None

    return make


def _constant(dtype, rng):
    k = 12  # not a power of two, so that the mean of a constant column need not be exact
    x = np.column_stack([np.full(k, 3.7), rng.standard_normal(k), np.full(k, -1e3)])
    return x, rng.standard_normal(x.shape), [1.0, 1.0, 2.0], [0.5, 0.0, -1.0], 1e-5, ("constant", "normal", "-1e3")


def _two_rows(dtype, rng):
    x = rng.standard_normal((2, 3)) * [1.0, 0.01, 100.0]
    return x, rng.standard_normal(x.shape), [1.0, -1.0, 0.5], [0.0, 0.5, 1.0], 1e-5, None


def _large_batch(dtype, rng):
    x = rng.standard_normal((4096, 3)) * [1.0, 10.0, 0.1] + [0.0, 5.0, -1.0]
    return x, rng.standard_normal(x.shape), [1.0, 0.5, 2.0], [0.0, -1.0, 0.25], 1e-5, None


def _dy_constant(dtype, rng):
    x = rng.standard_normal((16, 3)) * [1.0, 3.0, 0.2]
    dy = np.column_stack([np.full(16, 0.7), np.full(16, -2.5), rng.standard_normal(16)])
    return x, dy, [1.5, -1.0, 1.0], [0.0, 0.5, 0.0], 1e-5, ("dy=0.7", "dy=-2.5", "dy normal")


def _large_eps(dtype, rng):
    x = rng.standard_normal((16, 3)) * [1.0, 0.3, 0.05]
    return x, rng.standard_normal(x.shape), [1.0, 2.0, -1.0], [0.0, 0.0, 1.0], 0.5, None


CASES = (
    Case("unit", "well-conditioned N(0,1)-like data, per-column weight and bias (the yardstick)", _unit),
    Case("blood", "the article's blood counts: 1e2 to 5e12 in one batch", _blood),
    Case("offset", "large offsets: 1e8 + noise, timestamps ~1.7e9 by seconds (float32: ~1e3·σ)", _offset),
    Case("tiny", "magnitudes ~1e-100 (float32: 1e-15), eps scaled alike", _scaled((1e-100, 1e-15), (1e-205, 1e-35))),
    Case("huge", "magnitudes ~1e100 (float32: 1e15), eps scaled alike", _scaled((1e100, 1e15), (1e195, 1e25))),
    Case("constant", "a constant column (v = 0, σ = √ε) beside ordinary ones", _constant),
    Case("two_rows", "a batch of two rows: dx is a small difference of large terms", _two_rows),
    Case("large_batch", "4096 rows", _large_batch),
    Case("dy_constant", "dy constant down two columns: their dx is exactly 0", _dy_constant),
    Case("large_eps", "eps = 0.5, comparable to the variance", _large_eps),
    Case(
        "extreme_huge",
        "~1e160 (float32: 1e20): a textbook implementation's squares overflow",
        _scaled((1e160, 1e20), (1e-5, 1e-5)),
        extreme=True,
    ),
    Case(
        "extreme_tiny",
        "~1e-155 (float32: 1e-21), eps ~1e-315 (float32: its smallest number): a textbook "
        "implementation's squares underflow",
        _scaled((1e-155, 1e-21), (1e-315, float(np.finfo(np.float32).smallest_subnormal))),
        extreme=True,
    ),
)
_CASES_BY_NAME = {case.name: case for case in CASES}


def list_cases(extreme: bool = True) -> list[Case]:
    """The battery: the default cases, then (with ``extreme``) the opt-in extreme ones."""
    return [case for case in CASES if extreme or not case.extreme]


# ----------------------------------------------------------------------------- layouts


def layout_shape(k: int, n: int, layout: str) -> tuple[int, ...]:
    """The shape the target sees: (k, n), or N×C×H×W / N×H×W×C with N·H·W = k."""
    if layout == "nc":
        return (k, n)
    side = 2 if k % 4 == 0 and k >= 8 else 1
    spatial = (k // (side * side), side, side)
    return (spatial[0], n, side, side) if layout == "nchw" else (*spatial, n)


def to_layout(a: np.ndarray, layout: str) -> np.ndarray:
    """A (k, n) array in ``layout``: rows are the (N, H, W) positions in C order."""
    k, n = a.shape
    shape = layout_shape(k, n, layout)
    if layout == "nc":
        return a
    if layout == "nhwc":
        return np.ascontiguousarray(a.reshape(shape))
    batch, _, h, w = shape
    return np.ascontiguousarray(a.reshape(batch, h, w, n).transpose(0, 3, 1, 2))


def from_layout(a: np.ndarray, layout: str) -> np.ndarray:
    """The inverse of :func:`to_layout`: (k, n)."""
    if layout == "nchw":
        a = a.transpose(0, 2, 3, 1)
    return a.reshape(-1, a.shape[-1])


def layout_index(row: int, column: int, k: int, n: int, layout: str) -> list[int]:
    """The index in the layout's shape of element (row, column) of the (k, n) array."""
    if layout == "nc":
        return [row, column]
    shape = layout_shape(k, n, layout)
    spatial = (shape[0], shape[2], shape[3]) if layout == "nchw" else shape[:3]
    b, h, w = (int(i) for i in np.unravel_index(row, spatial))
    return [b, column, h, w] if layout == "nchw" else [b, h, w, column]


# -------------------------------------------------------------------------- references


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
    return Reference(values, natural_scales(bn.s, bn.mean, bn.std, w, b, g))


def natural_scales(s, mean, std, weight, bias, g) -> dict[str, np.ndarray]:
    """The scale each element's rounding error is proportional to in a backward-stable implementation.

    With o = 1 + |m|/σ per column (rounding the mean shifts every s by ~u·|m|/σ),
    ρ = √k (the typical growth of the rounding error of a sum of k terms added one
    after another), k rows, and sums down each column::

        y_i  : ρ·|w|·(|s_i| + o) + |b|
        dx_i : (|w|/σ)·(|g_i| + ρ·o·(1 + |s_i|)·(Σ|g| + Σ|g·s|)/k)
        dw   : ρ·Σ|g|·(|s| + o)
        db   : ρ·Σ|g|

    dx's terms are those of its closed form (|w|/(kσ))·(k|g_i| + Σ|g| + |s_i|·Σ|g s|),
    each widened by o for the error of s. The scales are never 0 (a 0 weight or an
    all-zero dy gives a floor of the smallest normal number).
    """
    k = s.shape[0]
    growth = np.sqrt(k)
    offset = 1 + np.abs(mean) / std
    w, absg = np.abs(weight), np.abs(g)
    sum_g = absg.sum(axis=0)
    sum_gs = (absg * np.abs(s)).sum(axis=0)
    tiny = np.finfo(np.float64).tiny
    with np.errstate(over="ignore"):
        scales = {
            "y": growth * w * (np.abs(s) + offset) + np.abs(bias),
            "dx": (w / std) * (absg + growth * offset * (1 + np.abs(s)) * (sum_g + sum_gs) / k),
            "dw": growth * (absg * (np.abs(s) + offset)).sum(axis=0),
            "db": growth * sum_g,
        }
    return {name: np.maximum(scale, tiny) for name, scale in scales.items()}


def unit_roundoff(dtype: str) -> float:
    return float(np.finfo(dtype).eps) / 2


# ---------------------------------------------------------------------------- results


@dataclass(frozen=True)
class QuantityResult:
    """One quantity of one case compared with its reference.

    ``max_error`` and ``budget`` are on the natural scale (error/scale, C_q·u);
    ``worst`` is the index of the worst element in the layout's shape (None when
    nothing is over budget), ``feature`` its feature name, ``beyond`` how many
    elements are over budget, ``ratio`` = max_error / budget.
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


@dataclass(frozen=True)
class ConsistencyResult:
    """The target's dx, dw, db against central differences of its own y (directional derivatives)."""

    case: str
    dtype: str
    errors: dict[str, float]  # quantity -> worst relative error over the directions
    tolerance: float
    note: str | None = None  # why it could not run

    @property
    def consistent(self) -> bool | None:
        if self.note is not None or not self.errors:
            return None
        return all(error <= self.tolerance for error in self.errors.values())


@dataclass
class AuditReport:
    """The audit of one target: per case and quantity results, diagnosis, self-consistency."""

    target: str
    layout: str
    verdict: str
    cases: list[CaseResult]
    diagnosis: list[str] = field(default_factory=list)
    consistency: list[ConsistencyResult] = field(default_factory=list)
    # The unit case when --case left it out: run only as the yardstick for INACCURATE vs WRONG.
    yardstick: list[CaseResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.verdict == "PASS"


@dataclass(frozen=True)
class AuditOptions:
    """What to audit and how. ``target`` is a name (see :func:`bncli.targets.resolve`) or a callable."""

    target: object = None
    cmd: str | None = None
    cases: Sequence[str] = ()
    extreme: bool = False
    dtypes: Sequence[str] = DTYPES
    layout: str = "nc"
    timeout: float = DEFAULT_TIMEOUT
    consistency: bool = True


# ------------------------------------------------------------------------ comparison


def _budget(name: str, dtype: str) -> float:
    return BUDGET_MULTIPLES[name] * unit_roundoff(dtype)


def compare(name: str, obtained: np.ndarray, ref: Reference, inputs: CaseInputs, layout: str) -> QuantityResult:
    """Element-wise error on the natural scale; the verdict is PASS or _BEYOND (settled by :func:`_settle`)."""
    exact, scale = ref.values[name], ref.scales[name]
    obtained = obtained.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        error = np.abs(obtained - exact) / scale
    error = np.where(np.isnan(error), np.inf, error)
    budget = _budget(name, inputs.dtype)
    over = error > budget
    beyond = int(over.sum())
    flat = int(np.argmax(error))
    max_error = float(error.flat[flat])
    k, n = inputs.x.shape
    if exact.ndim == 2:
        row, column = divmod(flat, n)
        worst = layout_index(row, column, k, n, layout)
    else:
        column = flat
        worst = [column]
    return QuantityResult(
        verdict="PASS" if beyond == 0 else _BEYOND,
        max_error=max_error,
        budget=budget,
        worst=worst if beyond else None,
        feature=inputs.features[column] if beyond else None,
        beyond=beyond,
        ratio=max_error / budget,
        expected=float(exact.flat[flat]),
        obtained=float(obtained.flat[flat]),
    )


def _settle(result: CaseResult, yardstick: CaseResult | None) -> CaseResult:
    """_BEYOND becomes WRONG if the same quantity fails the unit case of that dtype too, else INACCURATE."""

    def wrong_on_unit(name: str) -> bool:
        # Without a unit result that passes, nothing shows that the formula is right.
        return yardstick is None or yardstick.quantities[name].verdict != "PASS"

    quantities = {
        name: q if q.verdict != _BEYOND else replace(q, verdict="WRONG" if wrong_on_unit(name) else "INACCURATE")
        for name, q in result.quantities.items()
    }
    verdict = result.verdict if result.error else overall(q.verdict for q in quantities.values())
    return replace(result, verdict=verdict, quantities=quantities)


def overall(verdicts: Iterable[str]) -> str:
    """ERROR if any, else WRONG, else INACCURATE, else PASS (MISSING does not fail)."""
    verdicts = set(verdicts)
    for verdict in ("ERROR", "WRONG", "INACCURATE"):
        if verdict in verdicts:
            return verdict
    return "PASS"


def check_outputs(outputs, inputs: CaseInputs, layout: str) -> dict[str, np.ndarray]:
    """The target's outputs as float arrays in the nc layout; a malformed one raises TargetError."""
    from .targets import TargetError

    if outputs is None:
        raise TargetError("returned nothing")
    if isinstance(outputs, (tuple, list)):
        if len(outputs) > len(QUANTITIES):
            raise TargetError(f"returned a sequence of {len(outputs)} items; expected (y, dx, dw, db)")
        outputs = dict(zip(QUANTITIES[: len(outputs)], outputs, strict=True))
    if not hasattr(outputs, "items"):
        raise TargetError(f"returned a {type(outputs).__name__}; expected a mapping or a tuple (y, dx, dw, db)")
    k, n = inputs.x.shape
    full = layout_shape(k, n, layout)
    checked = {}
    for name, value in outputs.items():
        if name not in QUANTITIES or value is None:
            continue
        try:
            array = np.asarray(value)
        except Exception as error:  # noqa: BLE001 - whatever the target returned, it is its ERROR
            raise TargetError(f"{name} is not an array: {str(error).splitlines()[0]}") from None
        if array.dtype.kind not in "fiub":
            raise TargetError(f"{name} is not an array of real numbers (dtype {array.dtype})")
        array = array.astype(np.float64)
        if name in ("y", "dx"):
            if array.shape != full:
                raise TargetError(f"{name} has shape {array.shape}, expected {full}")
            checked[name] = from_layout(array, layout)
        else:
            if array.size != n or array.ndim > 2:
                raise TargetError(f"{name} has shape {array.shape}, expected ({n},): one value per feature")
            checked[name] = array.reshape(n)
    if not checked:
        raise TargetError("returned none of y, dx, dw, db")
    return checked


# ------------------------------------------------------------------------- diagnosis


@dataclass(frozen=True)
class Variant:
    """A classic mistake: what it computes (float64 from the case's inputs), and its fix."""

    name: str
    fix: str
    compute: Callable[[CaseInputs], dict[str, np.ndarray]]

    def values(self, inputs: CaseInputs) -> dict[str, np.ndarray]:
        """The variant's outputs; empty where they overflow (then it explains nothing)."""
        try:
            with np.errstate(all="ignore"):
                values = self.compute(inputs)
        except _Unrepresentable:
            return {}
        return values if all(np.isfinite(v).all() for v in values.values()) else {}


def _stats(inputs: CaseInputs):
    x, g = inputs.x.astype(np.float64), inputs.dy.astype(np.float64)
    bn = core.forward(x, inputs.weight.astype(np.float64), inputs.bias.astype(np.float64), inputs.eps)
    if not np.isfinite(bn.var).all():
        raise _Unrepresentable
    return x, g, bn


class _Unrepresentable(Exception):
    """The variance overflows float64: the variants, computed plainly, mean nothing there."""


def _textbook(x, g, w, b, mean, std) -> dict[str, np.ndarray]:
    """Forward and backward with the given per-column mean and std (the variants' common body)."""
    k = x.shape[0]
    s = (x - mean) / std
    db, dw = g.sum(axis=0), (g * s).sum(axis=0)
    dx = (w / std) * (g - db / k - s * dw / k)
    return {"y": w * s + b, "dx": dx, "dw": dw, "db": db}


def _unbiased(inputs):
    x, g, bn = _stats(inputs)
    k = x.shape[0]
    if k < 2:
        return {}
    std = np.sqrt(bn.var * k / (k - 1) + inputs.eps)
    return _textbook(x, g, bn.weight, bn.bias, bn.mean, std)


def _eps_outside(inputs):
    x, g, bn = _stats(inputs)
    return _textbook(x, g, bn.weight, bn.bias, bn.mean, np.sqrt(bn.var) + inputs.eps)


def _dx_only(formula):
    def compute(inputs):
        x, g, bn = _stats(inputs)
        k, s, a = x.shape[0], bn.s, bn.weight / bn.std
        return {"dx": formula(a, g, s, k)}

    return compute


def _swapped(inputs):
    x, g, bn = _stats(inputs)
    grads = core.backward(g, bn)
    return {"dw": grads.db, "db": grads.dw}


def _one_pass(inputs):
    """E[x²] − E[x]² in the case's dtype, as such code computes it."""
    x = inputs.x
    mean = x.mean(axis=0)
    var = np.maximum((x * x).mean(axis=0) - mean * mean, 0)
    std = np.sqrt(var.astype(np.float64) + inputs.eps)
    x64, g = x.astype(np.float64), inputs.dy.astype(np.float64)
    return _textbook(x64, g, inputs.weight.astype(np.float64), inputs.bias.astype(np.float64), mean, std)


VARIANTS = (
    Variant("unbiased variance (divided by k − 1)", "divide by k: training mode uses the biased variance", _unbiased),
    Variant("eps outside the square root (σ = √v + ε)", "use σ = √(v + ε)", _eps_outside),
    Variant(
        "dx without the mean term (−Σdy/k missing)",
        "dx = (w/σ)·(dy − mean(dy) − s·mean(dy·s))",
        _dx_only(lambda a, g, s, k: a * (g - s * (g * s).sum(axis=0) / k)),
    ),
    Variant(
        "dx without the s term (−s·Σ(dy·s)/k missing)",
        "dx = (w/σ)·(dy − mean(dy) − s·mean(dy·s))",
        _dx_only(lambda a, g, s, k: a * (g - g.sum(axis=0) / k)),
    ),
    Variant(
        "the eval-mode gradient dx = (w/σ)·dy used in training",
        "in training the mean and variance depend on x: dx = (w/σ)·(dy − mean(dy) − s·mean(dy·s))",
        _dx_only(lambda a, g, s, k: a * g),
    ),
    Variant("dw and db swapped", "dw = Σ dy·s and db = Σ dy", _swapped),
    Variant(
        "a one-pass variance E[x²] − E[x]²",
        "compute the variance in two passes: mean first, then mean((x − m)²)",
        _one_pass,
    ),
)


def _matches(name, obtained, variant_values, ref, inputs) -> bool:
    """The output is the variant's to rounding, or 100× closer to it than to the exact value."""
    if name not in variant_values:
        return False
    scale = ref.scales[name]
    with np.errstate(invalid="ignore", over="ignore"):
        to_variant = np.nanmax(np.abs(obtained - variant_values[name]) / scale, initial=0)
        to_exact = np.nanmax(np.abs(obtained - ref.values[name]) / scale, initial=0)
    if not np.all(np.isfinite(obtained)):
        return False
    return bool(to_variant <= _budget(name, inputs.dtype) or to_variant <= 0.01 * to_exact)


def diagnose(failures: list[tuple[CaseInputs, Reference, dict[str, np.ndarray], list[str]]]) -> list[str]:
    """One line per classic mistake that the failing outputs match, naming the cases."""
    found: dict[str, tuple[Variant, set[str], set[str]]] = {}
    for inputs, ref, outputs, failed in failures:
        for variant in VARIANTS:
            values = variant.values(inputs)
            matched = [name for name in failed if _matches(name, outputs[name], values, ref, inputs)]
            if matched:
                _, quantities, where = found.setdefault(variant.name, (variant, set(), set()))
                quantities.update(matched)
                where.add(f"{inputs.name}/{inputs.dtype}")
    lines = []
    for variant, quantities, where in found.values():
        names = [q for q in QUANTITIES if q in quantities]
        cases = sorted(where, key=lambda name: (not name.startswith(YARDSTICK + "/"), name))
        shown = ", ".join(cases[:3]) + (f" and {len(cases) - 3} more" if len(cases) > 3 else "")
        verb = "matches" if len(names) == 1 else "match"
        lines.append(f"{', '.join(names)} {verb} {variant.name} on {shown}: fix: {variant.fix}")
    return lines


# ---------------------------------------------------------------------- consistency


def consistency(call, inputs: CaseInputs, outputs: dict[str, np.ndarray], layout: str) -> ConsistencyResult:
    """Compare dx, dw, db with central differences of the target's own y, along random directions.

    For e = Σ dy·y, the directional derivative along d is (e(x + h·d) − e(x − h·d))/(2h)
    and must equal Σ dx·d (likewise for w and b). Steps are relative to each column's σ
    (for x) and to max(1, |w|, |b|) (for the parameters); two target calls per direction.
    """
    from .targets import TargetError

    tolerance = CONSISTENCY_TOLERANCE
    if "y" not in outputs:
        return ConsistencyResult(inputs.name, inputs.dtype, {}, tolerance, "the target does not return y")
    wanted = [q for q in ("dx", "dw", "db") if q in outputs]
    if not wanted:
        return ConsistencyResult(inputs.name, inputs.dtype, {}, tolerance, "the target returns no gradient")
    rng = np.random.default_rng(zlib.crc32(b"consistency"))
    x, g = inputs.x.astype(np.float64), inputs.dy.astype(np.float64)
    sigma = x.std(axis=0) + 1e-300
    w, b = inputs.weight.astype(np.float64), inputs.bias.astype(np.float64)

    def energy(x_, w_, b_) -> float:
        shifted = CaseInputs(
            inputs.name, inputs.dtype, x_.astype(inputs.dtype), inputs.dy, w_.astype(inputs.dtype),
            b_.astype(inputs.dtype), inputs.eps, inputs.features,
        )  # fmt: skip
        y = check_outputs(call(shifted), shifted, layout).get("y")
        if y is None:
            raise TargetError("returned no y on a perturbed input")
        with np.errstate(all="ignore"):
            total = float((g * y.astype(np.float64)).sum())
        if not np.isfinite(total):
            raise TargetError("its y is not finite, so its backward cannot be compared with it")
        return total

    errors: dict[str, float] = {}
    try:
        if "dx" in wanted:
            for _ in range(CONSISTENCY_DIRECTIONS):
                d = rng.standard_normal(x.shape) * sigma
                h = CONSISTENCY_STEP
                numeric = (energy(x + h * d, w, b) - energy(x - h * d, w, b)) / (2 * h)
                errors["dx"] = max(
                    errors.get("dx", 0.0), _relative(float((outputs["dx"] * d).sum()), numeric, d, outputs["dx"])
                )
        for name, index in (("dw", 1), ("db", 2)):
            if name in wanted:
                d = rng.standard_normal(w.shape)
                h = CONSISTENCY_STEP * max(1.0, float(np.abs(w).max()), float(np.abs(b).max()))
                args = [x, w, b]
                plus, minus = list(args), list(args)
                plus[index], minus[index] = args[index] + h * d, args[index] - h * d
                numeric = (energy(*plus) - energy(*minus)) / (2 * h)
                errors[name] = _relative(float((outputs[name] * d).sum()), numeric, d, outputs[name])
    except TargetError as error:
        return ConsistencyResult(inputs.name, inputs.dtype, errors, tolerance, f"the target failed: {error}")
    return ConsistencyResult(inputs.name, inputs.dtype, errors, tolerance)


def _relative(analytic: float, numeric: float, d: np.ndarray, gradient: np.ndarray) -> float:
    """|analytic − numeric| relative to Σ|gradient·d|, the scale of the directional derivative;
    infinite where the gradient is NaN or infinite (it agrees with nothing)."""
    with np.errstate(all="ignore"):
        scale = float(np.abs(gradient * d).sum()) or 1.0
        error = abs(analytic - numeric) / scale
    return error if np.isfinite(error) else np.inf


# ---------------------------------------------------------------------------- driver


def _names(value) -> tuple[str, ...]:
    """A name or a sequence of names, as a tuple."""
    return (value,) if isinstance(value, str) else tuple(value)


def _selected(options: AuditOptions) -> list[Case]:
    unknown = [name for name in options.cases if name not in _CASES_BY_NAME]
    if unknown:
        raise InputError(f"unknown case {unknown[0]!r}; the cases are: {', '.join(_CASES_BY_NAME)}")
    bad_dtype = [d for d in options.dtypes if d not in DTYPES]
    if bad_dtype or not options.dtypes:
        raise InputError(f"unknown dtype {bad_dtype[0] if bad_dtype else ''!r}; use float64 or float32")
    if options.layout not in LAYOUTS:
        raise InputError(f"unknown layout {options.layout!r}; use nc, nchw or nhwc")
    if not options.timeout > 0:
        raise InputError(f"--timeout must be a positive number of seconds, not {options.timeout}")
    if options.cases:
        explicit = [_CASES_BY_NAME[name] for name in dict.fromkeys(options.cases)]
        return explicit + [case for case in CASES if case.extreme and options.extreme and case not in explicit]
    return list_cases(options.extreme)


def run_audit(options: AuditOptions, progress: Callable[[str], None] | None = None) -> AuditReport:
    """Run the target on the selected cases and dtypes and judge each quantity.

    The unit case is always run (per dtype): it is the yardstick that tells WRONG
    (beyond budget on unit too) from INACCURATE. When ``options.cases`` leaves it
    out, its results go to ``report.yardstick`` and do not enter the verdict.

    Raises
    ------
    InputError
        Unknown case, dtype or layout; a target that cannot be found or imported.
    """
    from . import targets

    options = replace(options, cases=_names(options.cases), dtypes=_names(options.dtypes))
    cases = _selected(options)
    target = targets.resolve(options.target, cmd=options.cmd, layout=options.layout, timeout=options.timeout)
    selected_names = {case.name for case in cases}
    order = ([] if YARDSTICK in selected_names else [_CASES_BY_NAME[YARDSTICK]]) + cases
    raw: list[CaseResult] = []
    failures = []
    consistency_results = []
    try:
        with np.errstate(all="ignore"):  # a target's inf and NaN are judged, never warned about
            for dtype in options.dtypes:
                for case in order:
                    if progress:
                        progress(f"{case.name} {dtype}")
                    inputs = case.inputs(dtype)
                    result, outputs, ref = _run_case(target, case, inputs, options.layout)
                    raw.append(result)
                    beyond = [q for q, r in result.quantities.items() if r.verdict == _BEYOND]
                    if beyond and not case.extreme:  # extremes test range, not formulas: nothing to name there
                        failures.append((inputs, ref, outputs, beyond))
                    if options.consistency and case.name == YARDSTICK and dtype == "float64" and outputs:
                        consistency_results.append(consistency(target.call, inputs, outputs, options.layout))
        if options.consistency and "float64" not in options.dtypes:
            note = "it runs only on unit/float64, which the dtypes left out (float32 differences are too coarse)"
            consistency_results.append(ConsistencyResult(YARDSTICK, "float64", {}, CONSISTENCY_TOLERANCE, note))
    finally:
        target.close()
    yardsticks = {r.dtype: r for r in raw if r.name == YARDSTICK}
    settled = [_settle(r, yardsticks.get(r.dtype)) for r in raw]
    chosen = [r for r in settled if r.name in selected_names]
    aside = [r for r in settled if r.name not in selected_names]
    report = AuditReport(
        target=target.name,
        layout=options.layout,
        verdict=overall(r.verdict for r in chosen),
        cases=chosen,
        diagnosis=_quietly(diagnose, failures),
        consistency=consistency_results,
        yardstick=aside,
    )
    report.diagnosis.extend(_inaccuracy_hint(chosen, named=bool(report.diagnosis)))
    report.diagnosis.extend(sorted(target.notes))
    return report


def _quietly(function, *args):
    """``function(*args)`` without numpy's warnings: a target's inf and NaN are judged, not warned about."""
    with np.errstate(all="ignore"):
        return function(*args)


def _run_case(target, case: Case, inputs: CaseInputs, layout: str):
    from .targets import TargetError

    k, n = inputs.x.shape
    shape = layout_shape(k, n, layout)
    ref = reference(inputs)
    try:
        outputs = check_outputs(target.call(inputs), inputs, layout)
    except TargetError as error:
        message = f"case {case.name} ({inputs.dtype}): {error}"
        quantities = {q: QuantityResult("ERROR") for q in QUANTITIES}
        return CaseResult(case.name, inputs.dtype, shape, "ERROR", message, quantities, case.extreme), {}, ref
    quantities = {
        q: compare(q, outputs[q], ref, inputs, layout) if q in outputs else QuantityResult("MISSING")
        for q in QUANTITIES
    }
    return CaseResult(case.name, inputs.dtype, shape, "", None, quantities, case.extreme), outputs, ref


def _inaccuracy_hint(cases: list[CaseResult], named: bool) -> list[str]:
    """General lines for INACCURATE results: precision lost on ill-conditioned data (unless a mistake was
    named already), or range on the extremes."""
    lines = []
    for extreme, text in (
        (False, "the formulas are right but the arithmetic loses precision there (e.g. a one-pass variance, "
         "or sums accumulated without care)"),
        (True, "squares overflow or underflow in that dtype: scale each column by a power of two near its "
         "largest value before squaring"),
    ):  # fmt: skip
        where = sorted({f"{r.name}/{r.dtype}" for r in cases if r.verdict == "INACCURATE" and r.extreme == extreme})
        if where and (extreme or not named):
            lines.append(f"INACCURATE on {', '.join(where)} while the unit case passes: {text}")
    return lines


# ------------------------------------------------------------------------- reporting


def _json_number(value: float | None):
    """A float for JSON: None stays null; NaN and infinity (not JSON) become the strings 'nan', 'inf'."""
    if value is None:
        return None
    return value if np.isfinite(value) else str(value)


def _case_json(result: CaseResult) -> dict:
    return {
        "name": result.name,
        "dtype": result.dtype,
        "shape": list(result.shape),
        "extreme": result.extreme,
        "verdict": result.verdict,
        "error": result.error,
        "quantities": {
            name: {
                "verdict": q.verdict,
                "max_error": _json_number(q.max_error),
                "budget": q.budget,
                "worst": None if q.worst is None else {"index": q.worst, "feature": q.feature},
                "beyond": q.beyond,
                "ratio": _json_number(q.ratio),
                "expected": _json_number(q.expected) if q.worst is not None else None,
                "obtained": _json_number(q.obtained) if q.worst is not None else None,
            }
            for name, q in result.quantities.items()
        },
    }


def report_json(report: AuditReport) -> dict:
    """The contract's JSON object (plus ``layout``, ``consistency`` and ``yardstick``); JSON-safe."""
    return {
        "target": report.target,
        "layout": report.layout,
        "verdict": report.verdict,
        "passed": report.passed,
        "cases": [_case_json(r) for r in report.cases],
        "diagnosis": list(report.diagnosis),
        "consistency": [
            {
                "case": c.case,
                "dtype": c.dtype,
                "consistent": c.consistent,
                "errors": {q: _json_number(e) for q, e in c.errors.items()},
                "tolerance": c.tolerance,
                "note": c.note,
            }
            for c in report.consistency
        ],
        "yardstick": [_case_json(r) for r in report.yardstick],
    }


def failure_lines(result: CaseResult) -> list[str]:
    """One line per failing quantity: worst element, expected vs obtained, count beyond, ratio."""
    if result.error:
        return [result.error]
    lines = []
    for name, q in result.quantities.items():
        if q.verdict in ("WRONG", "INACCURATE"):
            at = ",".join(str(i) for i in q.worst)
            lines.append(
                f"{result.name}/{result.dtype} {name} {q.verdict}: worst at [{at}] (feature {q.feature!r}) "
                f"expected {q.expected!r}, obtained {q.obtained!r}; {q.beyond} element(s) beyond budget, "
                f"error/budget {q.ratio:.3g}"
            )
    return lines


def consistency_line(result: ConsistencyResult) -> str:
    where = f"{result.case}/{result.dtype}"
    if result.note:
        return f"self-consistency ({where}): not checked, {result.note}"
    errors = ", ".join(f"{q} {e:.2g}" for q, e in result.errors.items())
    if result.consistent:
        return f"self-consistency ({where}): the backward agrees with central differences of its own y ({errors})"
    bad = [q for q, e in result.errors.items() if e > result.tolerance]
    verb = "disagrees" if len(bad) == 1 else "disagree"
    return (
        f"self-consistency ({where}): {', '.join(bad)} {verb} with central differences of the target's own y "
        f"({errors}; tolerance {result.tolerance:g}): the backward does not match the forward"
    )


def report_text(report: AuditReport) -> str:
    """The report as plain text (for AssertionError messages and logs)."""
    lines = [f"bncli audit of {report.target} (layout {report.layout}): {report.verdict}"]
    width = max((len(r.name) for r in report.cases), default=4)
    for r in report.cases + report.yardstick:
        tag = " (extreme)" if r.extreme else " (yardstick only)" if r in report.yardstick else ""
        cells = "  ".join(f"{q}={r.quantities[q].verdict}" for q in QUANTITIES)
        lines.append(f"  {r.name:<{width}} {r.dtype:<8} {r.verdict:<10} {cells}{tag}")
    for r in report.cases:
        lines.extend("  " + line for line in failure_lines(r))
    lines.extend(f"  diagnosis: {line}" for line in report.diagnosis)
    lines.extend("  " + consistency_line(c) for c in report.consistency)
    return "\n".join(lines)
