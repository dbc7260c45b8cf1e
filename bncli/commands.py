"""What ``bncli forward``, ``grad``, ``explain`` and ``audit`` compute: option objects in, typed results out.

No Typer, no Rich, no output options: a command decides and validates everything it
reads, computes, and returns a result; :mod:`bncli.output` shows it in the format
asked for and writes every file. Problems with the input are
:class:`~bncli.errors.InputError`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from . import core, inputs
from .errors import InputError
from .inputs import UpstreamGradient, note
from .io.matrix import Matrix
from .model import Model, ZeroVarianceInput, build_model, note_degenerate, require_finite
from .options import (
    DEFAULT_PROBES,
    MAX_MATRIX_ELEMENTS,
    MAX_PROBES,
    CheckOptions,
    ExplainRequest,
    ForwardRequest,
    GradRequest,
)

if TYPE_CHECKING:  # imported where a check or an audit runs: a plain run does not pay for it
    from . import gradcheck as gc
    from .audit.cases import Case
    from .audit.run import AuditOptions, AuditReport

# Above this many element-evaluations (k²·n, the cost of the full numerical check)
# the check switches to probes: the full check costs ~15-25 ns per k²·n here, so
# this is ~2 s (bench/run.py, "check cost versus k and n").
FULL_CHECK_LIMIT = 1e8


# ------------------------------------------------------------------------ forward


@dataclass(frozen=True)
class ForwardResult:
    model: Model
    stats: bool  # the statistics table was asked for


def forward(request: ForwardRequest, data: Matrix | None = None) -> ForwardResult:
    """``data``: the matrix, given in place of the file the request names (the Python API)."""
    model = build_model(request.inputs, data)
    note_degenerate(model)
    return ForwardResult(model, request.stats)


# --------------------------------------------------------------------------- grad


@dataclass(frozen=True)
class CheckResult:
    """A gradient check and what was checked: bncli's own gradients or a file's (``against``)."""

    report: gc.CheckReport
    against: str | None
    findings: tuple = ()  # bncli.audit.findings.Finding: the classic mistakes a failing --against shows

    @property
    def passed(self) -> bool:
        return self.report.passed


@dataclass(frozen=True)
class GradResult:
    model: Model
    dy: UpstreamGradient
    gradients: core.Gradients
    jacobians: dict[int, np.ndarray]  # column index → k×k, in the order asked for
    check: CheckResult | None = None

    @property
    def exit_code(self) -> int:
        return 1 if self.check is not None and not self.check.passed else 0


def grad(
    request: GradRequest,
    progress: gc.ProgressCallback | None = None,
    *,
    data: Matrix | None = None,
    dy: UpstreamGradient | None = None,
    against: gc.CheckedGradients | None = None,
) -> GradResult:
    """``data``, ``dy`` and ``against`` (validated already): given in place of the files the request
    names (the Python API)."""
    check = _validated(request.check)
    if request.dy == "-" and check.against == "-":
        raise InputError("--dy - and --against - would both read stdin: give one of them as a file")
    model = build_model(request.inputs, data)
    k, n = model.data.shape
    selected = inputs.resolve_columns(request.columns, model.columns)  # an unknown column is an error anyway
    if request.columns and not request.jacobian:
        note("--column picks the columns of --jacobian; without it, every column's gradients are computed")
    jacobian_columns = selected if request.jacobian else []
    if k * k * len(jacobian_columns) > MAX_MATRIX_ELEMENTS:
        raise InputError(jacobian_too_large(k, len(jacobian_columns)))
    dy = inputs.load_dy(request.dy, request.seed, model.data) if dy is None else dy
    gradients = core.backward(model.cast(dy.values, "dy"), model.bn)
    jacobians = {c: core.jacobian(model.bn, c) for c in jacobian_columns}
    result = GradResult(model, dy, gradients, jacobians)
    if not check.enabled:
        note_degenerate(model)
        return result  # what is shown is checked for overflow when it is shown
    checked = {"dx": gradients.dx, "dw": gradients.dw, "db": gradients.db}
    checked |= {f"the Jacobian of column {model.columns[c]!r}": j for c, j in jacobians.items()}
    for name, values in checked.items():
        require_finite(name, values, model.columns)
    report, findings = _run_check(model, result, check, request.seed, progress, against)
    note_degenerate(model)
    return GradResult(model, dy, gradients, jacobians, CheckResult(report, check.against, findings))


def jacobian_too_large(k: int, columns: int) -> str:
    """The message for k×k Jacobians of this many columns beyond MAX_MATRIX_ELEMENTS."""
    fits = MAX_MATRIX_ELEMENTS // (k * k)
    advice = f"choose at most {fits} with --column" if fits else f"at most {int(MAX_MATRIX_ELEMENTS**0.5)} rows fit"
    return (
        f"--jacobian: {columns} column(s) of {k}×{k} are {k * k * columns:.3g} numbers, "
        f"more than {MAX_MATRIX_ELEMENTS:.3g}; {advice}"
    )


def _validated(check: CheckOptions) -> CheckOptions:
    """The check options with their bounds checked, before any input is read."""
    if check.step is not None and not 0 < check.step <= 1:
        raise InputError(
            f"--step {check.step:g}: must be in (0, 1]: it is relative to each column's std, and a larger step "
            "measures the curvature of batch norm, not its gradient"
        )
    if check.rtol is not None and not (check.rtol > 0 and np.isfinite(check.rtol)):
        raise InputError(f"--rtol {check.rtol}: must be a positive number")
    if check.probes is not None and not 1 <= check.probes <= MAX_PROBES:
        raise InputError(f"--probes {check.probes}: must be between 1 and {MAX_PROBES}")
    if check.fast is False and check.probes is not None:
        raise InputError("--no-fast compares every element; it cannot go with --probes")
    return check


def _probes(check: CheckOptions, k: int, n: int, jacobian_columns: int) -> int | None:
    """How many probes the check uses: None compares every element."""
    if check.fast is False:
        return None
    if check.fast or check.probes is not None:
        return check.probes or DEFAULT_PROBES
    if float(k) * k * (n + jacobian_columns) > FULL_CHECK_LIMIT:
        note(
            f"a full check of {k}×{n} costs O(k²·n); comparing {DEFAULT_PROBES} random directional derivatives "
            "instead (--fast; --no-fast compares every element)"
        )
        return DEFAULT_PROBES
    return None


def _run_check(
    model: Model,
    result: GradResult,
    check: CheckOptions,
    seed: int,
    progress: gc.ProgressCallback | None,
    against: gc.CheckedGradients | None,
) -> tuple[gc.CheckReport, tuple]:
    """The check's report, and on a failing --against the audit's findings on the gradients given
    (``against``: given as arrays, from Python, instead of read from the file named by the option)."""
    from . import gradcheck as gc
    from . import numdiff

    k, n = model.data.shape
    gradients, jacobians = result.gradients, result.jacobians
    ours = gc.CheckedGradients(dx=gradients.dx, dw=gradients.dw, db=gradients.db, jacobian=jacobians)
    # bncli's float64 core subtracts its mean exactly; in float32 the data's offset shows.
    precision = gc.Precision(numdiff.unit_roundoff(model.dtype), exact_mean=model.dtype == "float64")
    if check.against:
        theirs = inputs.load_against(check.against, model.data) if against is None else against
        checked, analytic = gc.CheckedGradients(theirs.dx, theirs.dw, theirs.db, jacobians), ours
        given = gc.evident_precision(theirs.dx, theirs.dw, theirs.db)
        precision = replace(given, unit=max(precision.unit, given.unit))
        if given.printed or given.unit > numdiff.unit_roundoff(model.dtype):
            kind = (
                f"{-round(np.log10(2 * given.printed)) + 1} significant digits" if given.printed else "float32 numbers"
            )
            note(
                f"--against {check.against}: its numbers are {kind}: each is judged with the rounding that allows "
                f"(unit roundoff {max(given.unit, given.printed):.2g})"
            )
    else:
        checked, analytic = ours, None
    try:
        report = gc.check_gradients(
            model.problem(result.dy.values),
            checked.as_float64(),
            analytic=None if analytic is None else analytic.as_float64(),
            method=check.method,
            step=check.step,
            rtol=check.rtol,
            precision=precision,
            probes=_probes(check, k, n, len(jacobians)),
            seed=seed,
            sweep=check.sweep,
            progress=progress,
        )
    except gc.StepError as error:
        names = ", ".join(repr(model.columns[c]) for c in error.columns)
        step = "the step" if check.step is None else f"--step {check.step:g}"
        raise InputError(
            f"{step} is lost in rounding or overflows in column {names}: (x + h) − (x − h) is 0 or infinite there"
        ) from None
    found = () if report.passed or not check.against or model.running else _against_findings(model, result, theirs)
    return report, found


def _against_findings(model: Model, result: GradResult, theirs) -> tuple:
    """The audit's findings engine on the gradients given with --against, each noted on stderr."""
    from .audit.findings import find, gradient_evidence

    x, dy, w, b = (model.cast(v, "a value") for v in (model.data.values, result.dy.values, model.weight, model.bias))
    given = {"dx": theirs.dx, "dw": theirs.dw, "db": theirs.db}
    findings = tuple(find([gradient_evidence(x, dy, w, b, model.eps, given)]))
    for finding in findings:
        note(f"--against: {finding.text.replace(' on ' + ', '.join(finding.cases), '')}")
    return findings


# ------------------------------------------------------------------------ explain


@dataclass(frozen=True)
class ExplainResult:
    model: Model
    dy: UpstreamGradient
    explanation: object  # bncli.explain.Explanation


def explain(request: ExplainRequest) -> ExplainResult:
    """The article's derivation on one column of the data (default: the first)."""
    from .explain import explain_column

    data = inputs.load_matrix(request.inputs)
    column = 0 if request.column is None else inputs.resolve_columns((request.column,), data.columns)[0]
    dy = inputs.load_dy(request.dy, request.seed, data)
    try:
        model = build_model(request.inputs, data)
    except ZeroVarianceInput as error:
        if column in error.columns:
            raise
        # Other columns cannot be normalized, but this one can: it is explained on its own.
        options = replace(
            request.inputs,
            weight=_entry(request.inputs.weight, column, data.shape[1]),
            bias=_entry(request.inputs.bias, column, data.shape[1]),
        )
        data, dy, column = _one_column(data, column), _one_column_gradient(dy, column), 0
        model = build_model(options, data)
    running = None if model.running is None else (model.running.mean, model.running.var)
    name = model.columns[column]
    if request.column is None and len(model.columns) > 1:
        note(f"explaining column {name!r}, the first; -c NAME (or -c INDEX) explains another")
    dy_label = "given" if dy.path is not None else f"N(0, 1) draws by bncli, seed {dy.seed} (--dy PATH explains yours)"
    try:
        with np.errstate(all="ignore"):  # what overflows is named below, never warned about
            explanation = explain_column(
                model.cast(model.data.values, model.data.source),
                model.cast(dy.values, "dy"),
                model.weight,
                model.bias,
                model.eps,
                column=column,
                name=name,
                running=running,
                dtype=model.dtype,
                dy_label=dy_label,
            )
    except core.ZeroVarianceError:  # a step of the checks' central differences lost the variance
        raise InputError(
            f"explain: column {name!r}: the data are too close to the float range to check its steps"
        ) from None
    for field in dataclasses.fields(explanation):
        values = np.asarray(getattr(explanation, field.name))
        if values.dtype.kind == "f" and not np.isfinite(values).all():
            raise InputError(
                f"explain: {field.name} of column {name!r} is beyond the float range of {model.dtype} "
                "(the data's magnitude is near its limit); rescale the data"
            )
    note_degenerate(model, [column])
    return ExplainResult(model, dy, explanation)


def _entry(values: str | None, column: int, n: int) -> str | None:
    """The column's own value of a --weight/--bias list of n values (one value, or None, stays as it is)."""
    fields = None if values is None else values.split(",")
    return fields[column] if fields is not None and len(fields) == n > 1 else values


def _one_column(data: Matrix, column: int) -> Matrix:
    return replace(data, values=data.values[:, [column]], columns=[data.columns[column]])


def _one_column_gradient(dy: UpstreamGradient, column: int) -> UpstreamGradient:
    return replace(dy, values=dy.values[:, [column]])


# -------------------------------------------------------------------------- audit


def audit(request: AuditOptions, progress: Callable[[str], None] | None = None) -> AuditReport:
    """Run the audit the request describes; ``progress`` hears the name of each case as it starts.

    A request needs exactly one of a target and ``cmd``; the rest is validated by the audit.
    """
    from .audit.run import run_audit

    if (request.target is None) == (request.cmd is None):
        raise InputError("audit needs a TARGET or --cmd 'PROGRAM [ARGS]' (one of them); see 'bncli audit --help'")
    return run_audit(request, progress=progress)


def list_cases(extreme: bool = True) -> list[Case]:
    """The audit's battery: the default cases, then (with ``extreme``) the opt-in extreme ones."""
    from .audit.cases import list_cases as battery

    return battery(extreme)
