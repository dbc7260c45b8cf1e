"""The audit's driver: the selected cases run on the target, judged, diagnosed; the report.

This is the only module of the audit that imports :mod:`bncli.audit.targets`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from ..errors import InputError
from ..options import AUDIT_DTYPES, DEFAULT_TIMEOUT, DTYPES, LAYOUTS
from . import shards, targets
from .cases import (
    CASES,
    CASES_BY_NAME,
    JUDGED,
    QUANTITIES,
    RUNNING,
    YARDSTICK,
    Case,
    CaseInputs,
    layout_shape,
    list_cases,
)
from .consistency import CONSISTENCY_TOLERANCE, ConsistencyResult, consistency
from .findings import Evidence, Finding, find, reweigh
from .findings.hints import inaccuracy_hints
from .findings.signatures import computes_in
from .judge import CaseResult, QuantityResult, TargetError, check_outputs, compare, overall, settle
from .precisions import finfo, numpy_dtype, parameter_dtype, parameter_eps
from .reference import Reference, reference, representable


@dataclass(repr=False)
class AuditReport:
    """The audit of one target: per case and quantity results, diagnosis, self-consistency.

    ``text`` is the table view as ``bncli audit`` prints it into a file (no colour), ``json``
    the object ``-f json`` prints, as a dict.
    """

    target: str
    layout: str
    verdict: str
    cases: list[CaseResult]
    diagnosis: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    consistency: list[ConsistencyResult] = field(default_factory=list)
    # The unit case when --case left it out: run only as the yardstick for INACCURATE vs WRONG.
    yardstick: list[CaseResult] = field(default_factory=list)
    eval: bool = False  # the battery ran in inference mode (--eval)

    @property
    def passed(self) -> bool:
        return self.verdict == "PASS"

    @property
    def text(self) -> str:
        from ..present.audit import report_view

        return report_view(self)

    @property
    def json(self) -> dict:
        from ..present.audit import report_json

        return report_json(self)

    def __repr__(self) -> str:
        runs = len(self.cases)
        return f"<AuditReport of {self.target!r}: {self.verdict}, {runs} case run{'s' if runs != 1 else ''}>"


@dataclass(frozen=True)
class AuditOptions:
    """What to audit and how. ``target`` is a name (see :func:`bncli.audit.targets.resolve`) or a callable."""

    target: object = None
    cmd: str | None = None
    cases: Sequence[str] = ()
    extreme: bool = False
    dtypes: Sequence[str] = DTYPES
    layout: str = "nc"
    timeout: float = DEFAULT_TIMEOUT
    consistency: bool = True
    # Those judged (the others are SKIPPED); None: y, dx, dw, db and the running statistics the target declares.
    quantities: Sequence[str] | None = None
    eval: bool = False  # inference mode: training=False, the case's running statistics
    eps: float | None = None  # None: each case's own; else every case runs at this eps
    style: str | None = None  # None: detected from the target's source (bncli.audit.styles.detect)
    shards: str | None = None  # "auto" or sizes "5,11,0,3": run the battery distributed (audit/shards.py)
    torchrun: bool = False  # this process is a rank of torchrun's group (audit/shard_worker.py)


@dataclass
class _Runs:
    """What running the cases gave, before the unit case settles WRONG against INACCURATE."""

    results: list[CaseResult] = field(default_factory=list)
    # (index of its result, inputs, reference, outputs) of each default case: what the findings read
    runs: list[tuple[int, CaseInputs, Reference, dict[str, np.ndarray]]] = field(default_factory=list)
    consistency: list[ConsistencyResult] = field(default_factory=list)


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
    dtypes = DTYPES if options.dtypes is None else _names(options.dtypes)
    dtypes = AUDIT_DTYPES if dtypes == ("all",) else dtypes
    asked = None if options.quantities is None else _names(options.quantities)
    options = replace(options, cases=_names(options.cases), dtypes=dtypes, quantities=asked)
    cases = _selected(options)
    order = ([] if any(case.name == YARDSTICK for case in cases) else [CASES_BY_NAME[YARDSTICK]]) + cases
    selected = {case.name for case in cases}
    if options.shards is not None:
        name, notes, runs, remarks = _run_plans(order, options, progress)
        return _report(name, notes, runs, selected, options, remarks)
    target = targets.resolve(
        options.target, cmd=options.cmd, layout=options.layout, timeout=options.timeout, style=options.style
    )
    try:
        _validate_target(target, options)
        runs = _run_all(target, order, options, progress)
    finally:
        target.close()
    remarks = sorted(target.remarks)
    return _report(target.name, target.notes, runs, selected, options, remarks, target.expects, target.unexpected)


def _names(value) -> tuple[str, ...]:
    """A name or a sequence of names, as a tuple."""
    if isinstance(value, str):
        return (value,)
    try:
        return tuple(value)
    except TypeError:
        raise InputError(f"{value!r}: give a name or a list of names") from None


def _selected(options: AuditOptions) -> list[Case]:
    """The cases asked for (with --extreme, the extreme ones after them), once each."""
    _validate(options)
    if options.cases:
        explicit = [CASES_BY_NAME[name] for name in dict.fromkeys(options.cases)]
        return explicit + [case for case in CASES if case.extreme and options.extreme and case not in explicit]
    return list_cases(options.extreme)


def _validate(options: AuditOptions) -> None:
    unknown = [name for name in options.cases if name not in CASES_BY_NAME]
    if unknown:
        raise InputError(f"unknown case {unknown[0]!r}; the cases are: {', '.join(CASES_BY_NAME)}")
    bad_dtype = [d for d in options.dtypes if d not in AUDIT_DTYPES]
    if bad_dtype or not options.dtypes:
        what = f"unknown dtype {bad_dtype[0]!r}" if bad_dtype else "no dtype given"
        raise InputError(f"{what}; use {', '.join(AUDIT_DTYPES)} or all")
    if "bfloat16" in options.dtypes:
        try:
            numpy_dtype("bfloat16")
        except ImportError:
            raise InputError("--dtype bfloat16 needs ml_dtypes, numpy's bfloat16 (pip install ml_dtypes)") from None
    if options.layout not in LAYOUTS:
        raise InputError(f"unknown layout {options.layout!r}; use nc, nchw or nhwc")
    _validate_judging(options)
    _validate_mode(options)


def _validate_judging(options: AuditOptions) -> None:
    unknown_quantity = [q for q in options.quantities or () if q not in JUDGED]
    if unknown_quantity or options.quantities == ():
        named = unknown_quantity[0] if unknown_quantity else ""
        raise InputError(f"unknown quantity {named!r} in --quantities; use a comma list of {', '.join(JUDGED)}")
    if options.eps is not None and not (np.isfinite(options.eps) and options.eps >= 0):
        raise InputError(f"--eps {options.eps:g}: must be a finite number ≥ 0")
    if options.eps is not None:
        _validate_eps(options)
    if not options.timeout > 0:
        raise InputError(f"--timeout must be a positive number of seconds, not {options.timeout}")


def _validate_eps(options: AuditOptions) -> None:
    """An eps every dtype audited can hold, and one that leaves no selected case's batch norm undefined
    (eps 0 divides by zero on a constant column)."""
    for dtype in options.dtypes:
        kept = parameter_dtype(dtype)
        largest = float(finfo(kept).max)
        if options.eps > largest:
            raise InputError(f"--eps {options.eps:g}: does not fit {kept} (largest {largest:.3g})")
        if options.eps > 0 and parameter_eps(options.eps, dtype) == 0:
            raise InputError(
                f"--eps {options.eps:g}: is 0 in {kept}, which {dtype} passes eps in "
                f"(smallest {float(finfo(kept).smallest_subnormal):.3g})"
            )
    if options.eps == 0:
        names = options.cases or [case.name for case in CASES if options.extreme or not case.extreme]
        constant = [name for name in names if (np.ptp(CASES_BY_NAME[name].inputs("float64").x, axis=0) == 0).any()]
        if constant:
            raise InputError(
                f"--eps 0: case {constant[0]!r} has a constant column, where batch norm divides by zero; "
                "give an eps > 0, or name the cases to run with --case"
            )


def _validate_mode(options: AuditOptions) -> None:
    """--eval passes training=False and running statistics as keywords: a program (--cmd) and the ranks of
    --shards are given neither."""
    if options.eval and (options.cmd is not None or options.shards is not None):
        what = "--cmd program" if options.cmd is not None else "--shards run"
        raise InputError(f"--eval audits a Python function given training=False; a {what} is not passed it")


def _validate_target(target: targets.Target, options: AuditOptions) -> None:
    """--eval tells a target it is in inference mode by ``training=False``: one that declares no ``training``
    cannot be told, so it cannot be audited in it."""
    if options.eval and "training" not in target.declared:
        style = getattr(target, "style", "native")
        fix = (
            "declare training=True (and running_mean, running_var) and normalize with the running statistics "
            "when it is False"
            if style == "native"
            else f"style {style} calls f(x, weight, bias, eps), which takes none: audit it in training mode"
        )
        raise InputError(
            f"--eval: {target.name} declares no training parameter, so it cannot be told it is in inference mode; "
            + fix
        )


def _run_plans(order: list[Case], options: AuditOptions, progress):
    """The battery once per shard plan, each case's result marked with its plan and split."""
    if options.cmd is not None:
        raise InputError("--shards runs a Python function on each rank, not a --cmd program")
    runs, notes, remarks = _Runs(), set(), set()
    for plan in shards.parse_plans(options.shards):
        target = shards.ShardedTarget(options.target, plan, options.layout, options.timeout, options.torchrun)
        told = progress and (lambda what, plan=plan: progress(f"plan {shards.label(plan)}: {what}"))
        start = len(runs.results)
        try:
            _run_all(target, order, replace(options, consistency=False), told, runs)
        finally:
            target.close()
        marked = [replace(r, shards=target.described.get((r.name, r.dtype))) for r in runs.results[start:]]
        runs.results[start:] = marked
        notes |= target.notes
        remarks |= target.remarks
    return target.name, notes, runs, sorted(remarks)


def _run_all(target: targets.Target, order: list[Case], options: AuditOptions, progress, runs=None) -> _Runs:
    runs = _Runs() if runs is None else runs
    with np.errstate(all="ignore"):  # a target's inf and NaN are judged, never warned about
        for dtype in options.dtypes:
            for case in order:
                if progress:
                    progress(f"{case.name} {dtype}")
                inputs = replace(case.inputs(dtype), training=not options.eval)
                at_eps = inputs if options.eps is None else replace(inputs, eps=parameter_eps(options.eps, dtype))
                _run_one(target, case, at_eps, options, runs)
    if options.consistency and "float64" not in options.dtypes:
        note = "it runs only on unit/float64, which the dtypes left out (float32 differences are too coarse)"
        runs.consistency.append(ConsistencyResult(YARDSTICK, "float64", {}, CONSISTENCY_TOLERANCE, note))
    return runs


def _run_one(target: targets.Target, case: Case, inputs: CaseInputs, options: AuditOptions, runs: _Runs) -> None:
    result, outputs, ref = _run_case(target, case, inputs, options)
    runs.results.append(result)
    if not case.extreme:  # extremes test range, not formulas: nothing to name there
        runs.runs.append((len(runs.results) - 1, inputs, ref, outputs))
    if options.consistency and case.name == YARDSTICK and inputs.dtype == "float64" and outputs:
        precision = result.computes_in or inputs.dtype
        runs.consistency.append(consistency(target.call, inputs, outputs, options.layout, precision))


def _run_case(target: targets.Target, case: Case, inputs: CaseInputs, options: AuditOptions):
    layout = options.layout
    k, n = inputs.x.shape
    shape = layout_shape(k, n, layout)
    ref = reference(inputs)
    try:
        outputs = check_outputs(target.call(inputs), inputs, layout)
    except TargetError as error:
        message = f"case {case.name} ({inputs.dtype}): {error}"
        quantities = {q: QuantityResult("ERROR") for q in QUANTITIES}
        return CaseResult(case.name, inputs.dtype, shape, "ERROR", message, quantities, case.extreme), {}, ref
    shown = _shown(outputs, target.expects, options.quantities)
    judged = [q for q in options.quantities or JUDGED if representable(q, ref, inputs.dtype)]
    outputs = {q: v for q, v in outputs.items() if q in judged}
    quantities = {
        q: compare(q, outputs[q], ref, inputs, layout)
        if q in outputs
        else QuantityResult("MISSING" if q in judged else "SKIPPED")
        for q in shown
    }
    precision = computes_in(outputs, inputs.dtype)
    return CaseResult(case.name, inputs.dtype, shape, "", None, quantities, case.extreme, precision), outputs, ref


def _shown(outputs: dict, expects: Sequence[str], asked: Sequence[str] | None) -> tuple[str, ...]:
    """The report's columns: y, dx, dw, db, and the running statistics returned, expected or asked for by name
    (shown even where the target never returns them)."""
    return QUANTITIES + tuple(q for q in RUNNING if q in outputs or q in expects or q in (asked or ()))


def _report(
    name: str,
    notes: set[str],
    runs: _Runs,
    selected: set[str],
    options: AuditOptions,
    remarks: Sequence[str] = (),
    expects: Sequence[str] = (),
    unexpected: Collection[str] = (),
) -> AuditReport:
    """The verdicts settled against the unit case of each dtype (and shard plan), the findings, the notes
    (inputs changed in place), and ``remarks``, further lines for the diagnosis; ``expects`` the running
    statistics the target declares, ``unexpected`` what it does not compute by design."""
    settled, findings, evidence = _judged(_precisions(runs.results), runs, selected)
    findings += [Finding("inputs_modified", [], [], note) for note in sorted(notes)]
    chosen = [r for r in settled if r.name in selected]
    missing = _never_returned(settled, options.quantities, expects, unexpected)
    verdict = overall([r.verdict for r in chosen] + (["INCOMPLETE"] if missing else []))
    diagnosis = [finding.text for finding in findings] + shards.plan_findings(settled) + list(remarks)
    diagnosis += inaccuracy_hints(chosen, evidence, named={where for f in findings for where in f.cases})
    if missing:
        diagnosis.append(_incomplete_line(missing, _expected(options.quantities, expects, unexpected)))
    return AuditReport(
        target=name,
        layout=options.layout,
        verdict=verdict,
        cases=chosen,
        diagnosis=diagnosis,
        findings=findings,
        consistency=runs.consistency,
        yardstick=[r for r in settled if r.name not in selected],
        eval=options.eval,
    )


def _judged(results: list[CaseResult], runs: _Runs, selected: set[str]):
    """The verdicts settled against the unit case, the findings, and the verdicts they settle in turn.

    The findings read the unit case first: where they show that it fails by precision alone (its
    statistics kept in a half precision), its formula is right, and the other cases are settled
    against it as against a unit case that passes. Then the findings read the selected cases."""
    yardsticks = {(_plan(r), r.dtype): r for r in results if r.name == YARDSTICK}
    settled = [settle(r, _yardstick(r, yardsticks)) for r in results]
    # The unit case is read as well when --case left it out: only to settle what it shows.
    evidence = _evidence(runs, settled, selected | {YARDSTICK})
    findings = find(evidence)
    reweighed = reweigh(settled, findings)
    precise = {(_plan(r), r.dtype): _formula_right(r) for r in reweighed if r.name == YARDSTICK}
    resettled = [settle(r, _yardstick(r, precise)) for r in results]
    if resettled == settled and YARDSTICK in selected:  # the same verdicts and cases: the same findings
        return reweighed, findings, evidence
    evidence = _evidence(runs, resettled, selected)
    findings = find(evidence)
    return reweigh(resettled, findings), findings, evidence


def _formula_right(unit: CaseResult) -> CaseResult:
    """The unit case as a yardstick: a quantity INACCURATE there (by precision) is as right as one that passes."""
    return replace(unit, quantities={
        name: replace(q, verdict="PASS") if q.verdict == "INACCURATE" else q for name, q in unit.quantities.items()
    })  # fmt: skip


def _evidence(runs: _Runs, settled: list[CaseResult], selected: set[str]) -> list[Evidence]:
    """What the findings read: each selected default case that ran, beside its settled result."""
    return [
        Evidence(inputs, ref, outputs, result, result.computes_in or inputs.dtype)
        for index, inputs, ref, outputs in runs.runs
        if (result := settled[index]).name in selected and not result.extreme and not result.error
    ]


def _yardstick(result: CaseResult, yardsticks: dict) -> CaseResult | None:
    """The unit case of the result's dtype (and plan); under --shards only where split alike (even or not)."""
    unit = yardsticks.get((_plan(result), result.dtype))
    if unit is not None and result.shards and not shards.split_alike(unit.shards["split"], result.shards["split"]):
        return None
    return unit


def _plan(result: CaseResult):
    return None if result.shards is None else tuple(result.shards["plan"])


def _precisions(results: list[CaseResult]) -> list[CaseResult]:
    """Each case's ``computes_in``: the lower precision its outputs come from, else None. Cases whose outputs
    are too few to tell (inf, NaN and 0 where the magnitudes leave that precision's range) take the
    target's: the lower one, when every case of that dtype that tells shows it."""
    shown: dict[str, set] = {}
    for r in results:
        if not r.error and r.computes_in is not None:
            shown.setdefault(r.dtype, set()).add(r.computes_in)

    def precision(r: CaseResult) -> str | None:
        told = shown.get(r.dtype, set())
        evident = r.computes_in or (next(iter(told)) if len(told) == 1 else None)
        return evident if evident != parameter_dtype(r.dtype) and not r.error else None

    return [replace(r, computes_in=precision(r)) for r in results]


def _never_returned(
    results: list[CaseResult], asked: Sequence[str] | None, expects: Sequence[str], unexpected: Collection[str] = ()
) -> list[str]:
    """The quantities expected (see :func:`_expected`) that no case that ran returned (none, when every
    case was an ERROR)."""
    ran = [r for r in results if not r.error]
    expected = _expected(asked, expects, unexpected)
    return [q for q in expected if ran and all(r.quantities[q].verdict == "MISSING" for r in ran)]


def _expected(asked: Sequence[str] | None, expects: Sequence[str], unexpected: Collection[str]) -> list[str]:
    """Those asked for by name, every one (judging one the target never returns must not pass); by default
    y, dx, dw, db and the running statistics the target declares, but for what it does not compute by design."""
    if asked is not None:
        return list(asked)
    return [q for q in JUDGED if (q in QUANTITIES or q in expects) and q not in unexpected]


def _incomplete_line(missing: list[str], asked: Sequence[str]) -> str:
    rest = [q for q in asked if q not in missing]
    verb = "is" if len(missing) == 1 else "are"
    line = f"{', '.join(missing)} {verb} returned in no case: INCOMPLETE (what is not computed cannot pass)"
    return line + (f"; --quantities {','.join(rest)} audits the rest alone" if rest else "")
