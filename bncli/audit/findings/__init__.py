"""The findings engine: which mistake a failing output shows, where, how badly, and how to fix it.

It reads only a case's inputs and what the target returned (:class:`Evidence`), never the
target itself, so ``grad --against`` uses it as the audit does (:func:`gradient_evidence`).
Per case and failing quantity, in this order (the first that explains a quantity takes it):
outputs in a lower precision than asked (``lower_precision``), a quantity left at exactly
zero (``identically_zero``), an intermediate out of the dtype's range on a quantity that is
right on the unit case (``intermediate_out_of_range``), then the variant closest to the
output among a fixed eps (estimated from y) and the classic mistakes, then a variance error
growing like u·(|m|/σ)² (``one_pass_variance``). Cases are listed worst first.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from ..cases import JUDGED, CaseInputs
from ..judge import CaseResult, compare, overall, settle
from ..precisions import UNIT_ROUNDOFF, finfo, is_half
from ..reference import BUDGET_MULTIPLES, Reference, element_budgets, reference
from . import signatures
from .variants import (
    EVAL_VARIANTS,
    ONE_PASS_FIX,
    VARIANTS,
    Variant,
    cast_down,
    collapsed,
    distance,
    textbook,
    with_eps,
)

KINDS = (
    "unbiased_variance", "eps_outside_sqrt", "fixed_eps", "missing_mean_term", "missing_s_term",
    "one_pass_variance", "dw_db_swapped", "eval_gradient_in_training", "lower_precision",
    "intermediate_out_of_range", "identically_zero", "inputs_modified", "biased_running_variance",
    "reversed_momentum", "batch_statistics_in_eval", "low_precision_statistics", "cast_to_input_dtype",
)  # fmt: skip
# Kinds that show the arithmetic, not the formula: a case they name is INACCURATE at most.
PRECISION_KINDS = ("lower_precision", "low_precision_statistics")
# Kinds that show a bug whatever the unit case shows: a case they name is WRONG.
BUG_KINDS = ("cast_to_input_dtype",)
SHOWN_CASES = 3


@dataclass(frozen=True)
class Finding:
    """One mistake the outputs show: ``cases`` worst first; ``details`` the kind's own fields (eps, dtype)."""

    kind: str
    cases: list[str]
    quantities: list[str]
    text: str
    details: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.kind not in KINDS:  # the contract's list: a kind outside it is bncli's own slip
            raise ValueError(f"unknown finding kind {self.kind!r}")

    def json(self) -> dict:
        return {"kind": self.kind, "cases": self.cases, "quantities": self.quantities, "text": self.text,
                **self.details}  # fmt: skip


@dataclass(frozen=True)
class Evidence:
    """One case as the findings read it: its inputs, exact reference, the target's outputs, their verdicts."""

    inputs: CaseInputs
    ref: Reference
    outputs: dict[str, np.ndarray]
    result: CaseResult
    computes_in: str

    @property
    def where(self) -> str:
        return f"{self.inputs.name}/{self.inputs.dtype}"

    def verdict(self, name: str) -> str:
        return self.result.quantities[name].verdict

    def ratio(self, name: str) -> float:
        ratio = self.result.quantities[name].ratio
        return np.inf if ratio is None or np.isnan(ratio) else ratio

    @property
    def failed(self) -> list[str]:
        return [q for q in JUDGED if q in self.outputs and self.verdict(q) in ("WRONG", "INACCURATE")]


def gradient_evidence(x, dy, weight, bias, eps: float, gradients: dict[str, np.ndarray]) -> Evidence:
    """A gradient computed elsewhere (``grad --against``) as evidence: judged on its own, without a unit
    case, so every quantity beyond budget counts as WRONG."""
    dtype = str(np.result_type(x.dtype, np.float32)) if x.dtype != np.float64 else "float64"
    inputs = CaseInputs("input", dtype, x, dy, weight, bias, float(eps), tuple(str(j) for j in range(x.shape[1])))
    ref = reference(inputs)
    outputs = {q: np.asarray(v, np.float64) for q, v in gradients.items() if v is not None}
    quantities = {q: compare(q, v, ref, inputs, "nc") for q, v in outputs.items()}
    result = settle(CaseResult("input", dtype, x.shape, "", None, quantities), None)
    return Evidence(inputs, ref, outputs, result, dtype)


class _Collector:
    """Findings as they accumulate over cases: per kind, the quantities and each case's worst ratio."""

    def __init__(self):
        self.kinds: dict[str, dict] = {}

    def add(self, kind: str, evidence: Evidence, quantities, describe, **details) -> None:
        entry = self.kinds.setdefault(kind, {"quantities": set(), "cases": {}, "describe": describe, "details": []})
        entry["quantities"].update(quantities)
        worst = max(evidence.ratio(q) for q in quantities)
        entry["cases"][evidence.where] = max(entry["cases"].get(evidence.where, 0.0), worst)
        entry["details"].append(details)

    def findings(self) -> list[Finding]:
        found = []
        for kind, entry in self.kinds.items():
            cases = sorted(entry["cases"], key=lambda where: -entry["cases"][where])
            names = [q for q in JUDGED if q in entry["quantities"]]
            shown = ", ".join(cases[:SHOWN_CASES]) + (
                f" and {len(cases) - SHOWN_CASES} more" if len(cases) > SHOWN_CASES else ""
            )
            text, details = entry["describe"](names, shown, entry["details"])
            found.append((max(entry["cases"].values()), Finding(kind, cases, names, text, details)))
        return [finding for _, finding in sorted(found, key=lambda pair: -pair[0])]


def _listed(names: list[str]) -> tuple[str, str]:
    return ", ".join(names), "matches" if len(names) == 1 else "match"


def _variant_text(variant: Variant):
    def describe(names, shown, _details):
        listed, verb = _listed(names)
        return f"{listed} {verb} {variant.name} on {shown}: fix: {variant.fix}", {}

    return describe


def _lower_precision_text(names, shown, details):
    dtype = details[0]["dtype"]
    text = (
        f"the target computes in {dtype} whatever it is given: on {shown} every output is a {dtype} number, so it "
        f"is judged INACCURATE at most there ({', '.join(names)} beyond that dtype's budget); compute in the input's "
        f"dtype, or audit it in the dtypes it computes in"
    )
    return text, {"dtype": dtype}


def _zero_text(names, shown, _details):
    listed, _ = _listed(names)
    verb = "is" if len(names) == 1 else "are"
    return (
        f"{listed} {verb} exactly zero on {shown} where the exact values are not: never computed or never written "
        f"(an argument-order slip, a buffer left unfilled, a gradient cut off)",
        {},
    )


def _range_text(names, shown, details):
    labels = list(dict.fromkeys(label for d in details for label in d["intermediates"]))
    dtypes = sorted({d["dtype"] for d in details})
    listed, _ = _listed(names)
    statistics = [label for label in labels if label in HALF_STATISTICS]
    fix = (
        "compute the mean and variance in float32, as PyTorch's kernels do, and round y and dx at the end"
        if statistics
        else "compute 1/σ once and use it (dx = (w/σ)·(dy − mean(dy) − s·mean(dy·s))), or rescale"
    )
    return (
        f"{listed} on {shown}: an intermediate such as {' or '.join(statistics or labels)} overflows or underflows "
        f"in {' and '.join(dtypes)} while the result is representable: fix: {fix}",
        {},
    )


# The statistics' sums and squares, which a half-precision target that keeps its statistics in its dtype forms.
HALF_STATISTICS = ("Σx", "Σ(x − m)²", "(x − m)²")


def _fixed_eps_text(names, shown, details):
    eps = float(np.median([d["eps"] for d in details]))
    listed, verb = _listed(names)
    return (
        f"{listed} {verb} a batch norm with its own fixed eps ≈ {eps:.2g} on {shown}, not the eps it is passed: "
        f"fix: use the eps argument, or audit it at its own with --eps {eps:.2g}",
        {"eps": float(f"{eps:.3g}")},
    )


ONE_PASS = next(v for v in VARIANTS if v.kind == "one_pass_variance")


def _one_pass_text(names, shown, details):
    listed, verb = _listed(names)
    text = (
        f"{listed} {verb} {ONE_PASS.name} on {shown}: the variance's error grows like u·(|m|/σ)² "
        f"(relative error up to {max(d.get('variance_error', 0) for d in details):.2g}): fix: {ONE_PASS_FIX}"
    )
    return text, {}


def reweigh(results: list[CaseResult], findings: list[Finding]) -> list[CaseResult]:
    """The verdicts the findings settle: on a case a precision finding names, its quantities are INACCURATE
    at most (the arithmetic loses digits, the formula is right); on a case a bug's finding names (a
    parameter cast to the input's dtype), they are WRONG, whatever the unit case shows."""
    to = {}
    for finding in findings:
        verdict = "INACCURATE" if finding.kind in PRECISION_KINDS else "WRONG" if finding.kind in BUG_KINDS else None
        for where in finding.cases if verdict else ():
            for name in finding.quantities:
                to[(where, name)] = verdict
    reweighed = []
    for result in results:
        quantities = {
            name: replace(q, verdict=to[(f"{result.name}/{result.dtype}", name)])
            if q.verdict in ("WRONG", "INACCURATE") and (f"{result.name}/{result.dtype}", name) in to
            else q
            for name, q in result.quantities.items()
        }
        verdict = result.verdict if result.error else overall(q.verdict for q in quantities.values())
        reweighed.append(replace(result, quantities=quantities, verdict=verdict))
    return reweighed


def find(evidence: list[Evidence]) -> list[Finding]:
    """The findings that the evidence shows, each only where its outputs show it; worst first."""
    collector = _Collector()
    with np.errstate(all="ignore"):  # the variants meet the target's inf and NaN too
        eps = _fixed_eps(evidence)
        for e in evidence:
            _examine(e, collector, eps)
    return collector.findings()


def _fixed_eps(evidence: list[Evidence]) -> float | None:
    """The eps the target evidently fixes: estimated from y on every failing case that resolves it, and the
    same (within 10 %) on all of them; None otherwise (an eps outside the root gives a different one each)."""
    estimates = [
        estimate
        for e in evidence
        if "y" in e.failed and e.computes_in == e.inputs.dtype and e.inputs.training
        and (estimate := signatures.evident_eps(e.inputs, e.outputs["y"], e.computes_in)) is not None
    ]  # fmt: skip
    if not estimates:
        return None
    value = float(np.median(estimates))
    return value if np.allclose(estimates, value, rtol=0.1, atol=0) else None


def _examine(e: Evidence, collector: _Collector, eps: float | None) -> None:
    """The findings of one case, each quantity taken by the first step that explains it."""
    if not e.failed:
        return
    if e.computes_in != e.inputs.dtype:
        collector.add("lower_precision", e, e.failed, _lower_precision_text, dtype=e.computes_in)
        return
    if is_half(e.inputs.dtype):
        _examine_half(e, collector, eps)
        return
    remaining = _out_of_range(e, e.failed, collector)
    remaining = _zero(e, remaining, collector)
    remaining = _closest_variants(e, remaining, collector, eps)
    if e.inputs.training:  # in eval mode no variance is computed
        _one_pass(e, remaining, collector)


def _zero(e: Evidence, quantities: list[str], collector: _Collector) -> list[str]:
    zero = [q for q in quantities if signatures.identically_zero(e.outputs[q], e.ref, q, e.inputs.dtype)]
    if zero:
        collector.add("identically_zero", e, zero, _zero_text)
    return [q for q in quantities if q not in zero]


def _out_of_range(e: Evidence, quantities: list[str], collector: _Collector) -> list[str]:
    """Quantities right on the unit case that collapsed where an intermediate leaves the dtype's range."""
    right_on_unit = [q for q in quantities if e.verdict(q) == "INACCURATE"]
    labels = signatures.out_of_range_intermediates(e.inputs, e.computes_in) if right_on_unit else []
    # The statistics' own sums and squares out of a half dtype's range cost digits before they cost a collapse.
    statistics = [label for label in labels if label in HALF_STATISTICS]
    fallen = [q for q in right_on_unit if labels and (statistics or _collapsed(e, q))]
    if fallen:
        collector.add("intermediate_out_of_range", e, fallen, _range_text, intermediates=statistics or labels,
                      dtype=e.computes_in)  # fmt: skip
    return [q for q in quantities if q not in fallen]


def _one_pass(e: Evidence, quantities: list[str], collector: _Collector) -> None:
    """Quantities right on the unit case whose variance errs as a one-pass variance's does."""
    right_on_unit = [q for q in quantities if e.verdict(q) == "INACCURATE"]
    if right_on_unit and "y" in e.outputs:
        error = signatures.one_pass_growth(e.inputs, e.outputs["y"], e.computes_in)
        if error is not None:
            collector.add("one_pass_variance", e, right_on_unit, _one_pass_text, variance_error=error)


MISSING_S_TERM = next(v for v in VARIANTS if v.kind == "missing_s_term")


def _collapsed(e: Evidence, name: str) -> bool:
    """What an out-of-range intermediate leaves: inf, NaN or 0 where the exact value is not, or the
    variance's term of dx flushed to (nearly) zero: dx is the one without the s term, or off along s."""
    obtained, exact = e.outputs[name], e.ref.values[name]
    if (~np.isfinite(obtained)).any() or ((obtained == 0) & (exact != 0)).any():
        return True
    if name != "dx":
        return False
    flushed = distance(name, obtained, MISSING_S_TERM.values(e.inputs), e.ref, e.inputs) is not None
    return flushed or signatures.residue_pattern(e.inputs, e.ref, obtained) == "s"


def _examine_half(e: Evidence, collector: _Collector, eps: float | None) -> None:
    """A half precision's case. Its rounding is coarse: a variant is named only where it matches to rounding;
    what a correct formula on the statistics y implies explains is the statistics' precision; what stays
    within the half dtype's own budget (a backward-stable implementation computing in it) is its arithmetic."""
    remaining = e.failed
    if not e.inputs.training:
        remaining = _cast_down(e, remaining, collector)
    remaining = _out_of_range(e, remaining, collector)
    remaining = _zero(e, remaining, collector)
    remaining = _closest_variants(e, remaining, collector, eps, strict=True)
    if e.inputs.training:
        remaining = _half_statistics(e, remaining, collector)
    _half_arithmetic(e, remaining, collector)


def _half_arithmetic(e: Evidence, quantities: list[str], collector: _Collector) -> None:
    """Quantities beyond mixed precision's budget but within C_q·u_half·scale: what computing in the half
    dtype itself attains."""

    def within_own_budget(q: str) -> bool:
        with np.errstate(invalid="ignore", over="ignore"):
            error = np.abs(e.outputs[q] - e.ref.values[q]) / e.ref.scales[q]
        return bool(np.all(error <= BUDGET_MULTIPLES[q] * UNIT_ROUNDOFF[e.inputs.dtype]))

    within = [q for q in quantities if within_own_budget(q)]
    if within:
        collector.add("lower_precision", e, within, _half_arithmetic_text, dtype=e.inputs.dtype)


def _half_arithmetic_text(names, shown, details):
    dtype = " and ".join(sorted({d["dtype"] for d in details}))
    listed, _ = _listed(names)
    text = (
        f"{listed} on {shown} are within {dtype}'s own budget (what a backward-stable implementation computing in "
        f"{dtype} attains) but beyond mixed precision's: the target computes in {dtype} where PyTorch's kernels "
        f"compute in float32, so it is judged INACCURATE at most there: fix: compute in float32 (the statistics, "
        f"the sums, dw and db) and round y and dx to {dtype} at the end"
    )
    return text, {"dtype": dtype}


def _cast_down(e: Evidence, quantities: list[str], collector: _Collector) -> list[str]:
    """Quantities that are eval mode's with the parameters cast to the input's dtype, to rounding. Where that
    cast overflows, y = b and dx = 0 down a column whose running variance became inf is what it gives: a
    collapsed output is the evidence there, for a quantity right on the unit case, or beside one that the
    cast explains without collapsing."""
    values, lost = cast_down(e.inputs)
    within = [q for q in quantities if q in values and _within(e, q, values[q])]
    shown = [q for q in within if e.verdict(q) == "INACCURATE" or not collapsed(q, values[q], e.inputs, e.ref)]
    matched = within if shown else []
    if matched:
        collector.add("cast_to_input_dtype", e, matched, _cast_text, dtype=e.inputs.dtype, lost=lost)
    return [q for q in quantities if q not in matched]


def _within(e: Evidence, name: str, values: np.ndarray, slack: np.ndarray | float = 0.0) -> bool:
    """The output is ``values`` to within its budget (and ``slack``, the values' own uncertainty)."""
    bound = element_budgets(name, e.inputs.dtype, e.ref) * e.ref.scales[name] + slack
    with np.errstate(invalid="ignore", over="ignore"):
        return bool(np.all(np.abs(e.outputs[name] - values) <= bound))


def _cast_text(names, shown, details):
    dtype = details[0]["dtype"]
    lost: dict[str, float] = {}
    for d in details:
        for name, value in d["lost"].items():
            lost[name] = max(lost.get(name, 0.0), value)
    largest = float(finfo(dtype).max)
    listed, verb = _listed(names)
    overflow = ""
    if lost:
        which = ", ".join(f"{name} (up to {value:.3g})" for name, value in lost.items())
        overflow = (
            f"; {which} exceeds {dtype}'s largest number {largest:g} and becomes inf, so the output collapses "
            f"(y = b, dx = 0) without an error"
        )
    text = (
        f"{listed} {verb} eval mode with the running statistics, weight and bias cast to {dtype} on {shown}"
        f"{overflow}: fix: keep them in float32, as PyTorch's mixed precision does"
    )
    return text, {"dtype": dtype, "parameters": sorted(lost)}


def _half_statistics(e: Evidence, quantities: list[str], collector: _Collector) -> list[str]:
    """Quantities that a correct batch norm of the statistics y implies gives to rounding, where those
    statistics err as statistics summed or kept in the half precision do."""
    implied = signatures.implied_statistics(e.inputs, e.outputs["y"]) if "y" in e.outputs else None
    if implied is None or not quantities:
        return quantities
    mean, std, mean_error, std_error = implied
    error = signatures.half_statistics_error(e.inputs, mean, std)
    if error is None:
        return quantities
    values = _with_statistics(e.inputs, mean, std)
    # What the statistics' own uncertainty (three standard errors each) moves the batch norm they give by.
    moved = [
        _with_statistics(e.inputs, mean + 3 * mean_error, std),
        _with_statistics(e.inputs, mean, std + 3 * std_error),
    ]
    explained = [
        q for q in quantities if q in values and _within(e, q, values[q], sum(np.abs(m[q] - values[q]) for m in moved))
    ]
    if explained:
        collector.add("low_precision_statistics", e, explained, _half_statistics_text, dtype=e.inputs.dtype, **error)
    return [q for q in quantities if q not in explained]


def _with_statistics(inputs: CaseInputs, mean: np.ndarray, std: np.ndarray) -> dict[str, np.ndarray]:
    """A correct batch norm, and PyTorch's running update, with the batch statistics ``mean`` and ``std``."""
    x, g = inputs.x.astype(np.float64), inputs.dy.astype(np.float64)
    values = textbook(x, g, inputs.weight.astype(np.float64), inputs.bias.astype(np.float64), mean, std)
    k = x.shape[0]
    if k > 1:
        start_mean, start_var = inputs.start_statistics()
        keep, new = 1 - inputs.momentum, inputs.momentum
        values["running_mean"] = keep * start_mean + new * mean
        values["running_var"] = keep * start_var + new * (std * std - inputs.eps) * (k / (k - 1))
    return values


def _half_statistics_text(names, shown, details):
    dtype = " and ".join(sorted({d["dtype"] for d in details}))
    worst = max(details, key=lambda d: max(d["mean_error"], d["variance_error"]))
    accumulated = any(d["how"] == "accumulated" for d in details)
    listed, verb = _listed(names)
    how = (
        f"the batch statistics are accumulated in {dtype} (summed or computed there: beyond one rounding to it)"
        if accumulated
        else f"the batch statistics are rounded to {dtype} (kept in the input's dtype)"
    )
    text = (
        f"{listed} {verb} a correct batch norm of statistics with {dtype}'s error on {shown}: {how}; the mean is "
        f"off by {worst['mean_error']:.2g}σ and σ² by {worst['variance_error']:.2g} (relative) at worst, where "
        f"float32 statistics err by ~1e-7: fix: compute the mean and variance in float32 (x.astype(float32), "
        f"PyTorch's CPU and CUDA kernels do), then round y and dx to {dtype}"
    )
    return text, {"dtype": dtype}


def _closest_variants(
    e: Evidence, quantities: list[str], collector: _Collector, eps: float | None, strict: bool = False
) -> list[str]:
    """Name each quantity by the variant closest to it (a fixed eps among them); the unnamed ones."""
    variants = VARIANTS if e.inputs.training else EVAL_VARIANTS
    candidates = [(v.kind, v.values(e.inputs), _variant_text(v), {}) for v in variants]
    if eps is not None and e.inputs.training:
        fixed = Variant("fixed_eps", "", "", with_eps(eps))
        candidates.insert(0, ("fixed_eps", fixed.values(e.inputs), _fixed_eps_text, {"eps": eps}))
    named: dict[str, list[str]] = {}
    unnamed = []
    for q in quantities:
        scored = [(d, i) for i, c in enumerate(candidates)
                  if (d := distance(q, e.outputs[q], c[1], e.ref, e.inputs, strict)) is not None]  # fmt: skip
        if scored:
            named.setdefault(min(scored)[1], []).append(q)
        else:
            unnamed.append(q)
    for index, names in named.items():
        kind, _, describe, details = candidates[index]
        collector.add(kind, e, names, describe, **details)
    return unnamed
