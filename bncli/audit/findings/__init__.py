"""The findings engine: which mistake a failing output shows, where, how badly, and how to fix it.

It reads only a case's inputs and what the target returned (:class:`Evidence`), never the
target itself, so ``grad --against`` uses it as the audit does (:func:`gradient_evidence`).
Per case and failing quantity, in this order (the first that explains a quantity takes it):
outputs in a lower precision than asked (``lower_precision``), an intermediate out of the
dtype's range on a quantity that is right on the unit case (``intermediate_out_of_range``), a
quantity left at exactly zero (``identically_zero``), then the variant closest to the output
among a fixed eps (estimated from y) and the classic mistakes, then a variance error growing
like u·(|m|/σ)² (``one_pass_variance``). A half precision's case has steps of its own
(:mod:`.half`). Cases are listed worst first; :func:`reweigh` turns the findings into verdicts.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..cases import CaseInputs
from ..judge import CaseResult, compare, overall, settle
from ..precisions import is_half
from ..reference import budget, reference
from . import half, signatures
from .base import BUG_KINDS, KINDS, PRECISION_KINDS, Collector, Evidence, Finding, phrase
from .variants import EVAL_VARIANTS, ONE_PASS_FIX, VARIANTS, Variant, distance, with_eps

__all__ = ["KINDS", "Evidence", "Finding", "find", "gradient_evidence", "reweigh"]


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


def _variant_text(variant: Variant):
    def describe(names, shown, _details):
        listed, verb = phrase(names)
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
    listed, _ = phrase(names)
    verb = "is" if len(names) == 1 else "are"
    return (
        f"{listed} {verb} exactly zero on {shown} where the exact values are not: never computed or never written "
        f"(an argument-order slip, a buffer left unfilled, a gradient cut off)",
        {},
    )


def _range_text(names, shown, details):
    labels = list(dict.fromkeys(label for d in details for label in d["intermediates"]))
    dtypes = sorted({d["dtype"] for d in details})
    listed, _ = phrase(names)
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
    listed, verb = phrase(names)
    return (
        f"{listed} {verb} a batch norm with its own fixed eps ≈ {eps:.2g} on {shown}, not the eps it is passed: "
        f"fix: use the eps argument, or audit it at its own with --eps {eps:.2g}",
        {"eps": float(f"{eps:.3g}")},
    )


ONE_PASS = next(v for v in VARIANTS if v.kind == "one_pass_variance")


def _one_pass_text(names, shown, details):
    listed, verb = phrase(names)
    text = (
        f"{listed} {verb} {ONE_PASS.name} on {shown}: the variance's error grows like u·(|m|/σ)² "
        f"(relative error up to {max(d.get('variance_error', 0) for d in details):.2g}): fix: {ONE_PASS_FIX}"
    )
    return text, {}


def reweigh(results: list[CaseResult], findings: list[Finding]) -> list[CaseResult]:
    """The verdicts the findings settle: a quantity a precision finding names on a case is INACCURATE there at
    most (the arithmetic loses digits, the formula is right); one a bug's finding names (a classic mistake
    matched, a parameter cast to the input's dtype) is WRONG there, whatever the unit case shows."""
    precise = {(where, q) for f in findings if f.kind in PRECISION_KINDS for where, qs in f.named.items() for q in qs}
    bugs = {(where, q) for f in findings if f.kind in BUG_KINDS for where, qs in f.named.items() for q in qs}
    to = {**dict.fromkeys(precise, "INACCURATE"), **dict.fromkeys(bugs, "WRONG")}  # a bug shown outweighs digits
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
    collector = Collector()
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


def _examine(e: Evidence, collector: Collector, eps: float | None) -> None:
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


def _zero(e: Evidence, quantities: list[str], collector: Collector) -> list[str]:
    zero = [q for q in quantities if signatures.identically_zero(e.outputs[q], e.ref, q, e.inputs.dtype)]
    if zero:
        collector.add("identically_zero", e, zero, _zero_text)
    return [q for q in quantities if q not in zero]


def _out_of_range(e: Evidence, quantities: list[str], collector: Collector, statistics: bool = False) -> list[str]:
    """Quantities right on the unit case that collapsed where an intermediate leaves the dtype's range. A half
    dtype's statistics (their sums and squares) out of its range cost digits before they cost a collapse:
    where the target computes in it (``statistics``), that is evidence enough."""
    right_on_unit = [q for q in quantities if e.verdict(q) == "INACCURATE"]
    labels = signatures.out_of_range_intermediates(e.inputs, e.computes_in) if right_on_unit else []
    sums = [label for label in labels if label in HALF_STATISTICS]
    fallen = [q for q in right_on_unit if labels and ((statistics and sums) or _collapsed(e, q))]
    if fallen:
        collector.add("intermediate_out_of_range", e, fallen, _range_text, intermediates=sums or labels,
                      dtype=e.computes_in)  # fmt: skip
    return [q for q in quantities if q not in fallen]


def _one_pass(e: Evidence, quantities: list[str], collector: Collector) -> None:
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
    beyond_rounding = np.abs(exact) > budget(name, e.inputs.dtype) * e.ref.scales[name]  # 0 is not its rounding
    if (~np.isfinite(obtained)).any() or ((obtained == 0) & beyond_rounding).any():
        return True
    bias = e.inputs.bias.astype(np.float64)
    if name == "y" and ((obtained == bias) & (exact != bias)).all(axis=0).any():  # s = 0 down a column
        return True
    if name != "dx":
        return False
    flushed = distance(name, obtained, MISSING_S_TERM.values(e.inputs), e.ref, e.inputs) is not None
    return flushed or signatures.residue_pattern(e.inputs, e.ref, obtained) == "s"


def _examine_half(e: Evidence, collector: Collector, eps: float | None) -> None:
    """A half precision's case. What should stay float32 but comes back as half-dtype numbers is named first
    (dw, db computed in it; running statistics kept in it), then parameters cast down in eval mode, then the
    classic mistakes where they match to mixed precision's rounding. Only then ranges and zeros, and, for a
    target that computes in the half dtype (its dw and db say so), the mistakes to that dtype's own rounding.
    What a correct formula on the statistics y implies explains is the statistics' precision; what stays
    within the half dtype's own budget, for such a target (or one whose statistics are shown to be the half
    dtype's), its arithmetic."""
    in_half = half.computes_in_half(e)
    remaining = half.kept_in_half(e, e.failed, collector, in_half)
    if not e.inputs.training:
        remaining = half.cast_to_dtype(e, remaining, collector)
    unmatched = _closest_variants(e, remaining, collector, eps, strict=True)
    mistaken = unmatched != remaining  # a classic mistake shows on this case
    remaining = _out_of_range(e, unmatched, collector, statistics=in_half)
    if not signatures.out_of_range_intermediates(e.inputs, e.inputs.dtype):  # else a zero may be an overflow's
        remaining = _zero(e, remaining, collector)
    if in_half:
        remaining = _closest_variants(e, remaining, collector, eps, match=half.own_distance)
    if e.inputs.training:
        explained = half.statistics(e, remaining, collector)
        in_half |= explained != remaining  # its statistics are the half dtype's: it computes there
        remaining = explained
    if in_half:
        half.arithmetic(e, remaining, collector)
    elif not mistaken:
        half.rounded_more_than_once(e, remaining, collector)


def _closest_variants(
    e: Evidence, quantities: list[str], collector: Collector, eps: float | None, strict: bool = False, match=None
) -> list[str]:
    """Name each quantity by the variant closest to it (a fixed eps among them); the unnamed ones. ``match``
    (name, obtained, values, evidence) gives the distance of a match or None; default :func:`distance`."""
    variants = VARIANTS if e.inputs.training else EVAL_VARIANTS
    candidates = [(v.kind, v.values(e.inputs), _variant_text(v), {}) for v in variants]
    if eps is not None and e.inputs.training:
        fixed = Variant("fixed_eps", "", "", with_eps(eps))
        candidates.insert(0, ("fixed_eps", fixed.values(e.inputs), _fixed_eps_text, {"eps": eps}))
    named: dict[str, list[str]] = {}
    unnamed = []
    for q in quantities:
        scored = [(d, i) for i, c in enumerate(candidates)
                  if (d := (match(q, e.outputs[q], c[1], e) if match else
                            distance(q, e.outputs[q], c[1], e.ref, e.inputs, strict))) is not None]  # fmt: skip
        if scored:
            named.setdefault(min(scored)[1], []).append(q)
        else:
            unnamed.append(q)
    for index, names in named.items():
        kind, _, describe, details = candidates[index]
        collector.add(kind, e, names, describe, **details)
    return unnamed
