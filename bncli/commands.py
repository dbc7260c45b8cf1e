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
from .inputs import Running, UpstreamGradient, note
from .io.matrix import Matrix
from .options import (
    DEFAULT_PROBES,
    MAX_MATRIX_ELEMENTS,
    MAX_PROBES,
    CheckOptions,
    ExplainRequest,
    ForwardRequest,
    GradRequest,
    InputOptions,
)

if TYPE_CHECKING:  # imported where a check or an audit runs: a plain run does not pay for it
    from . import gradcheck as gc
    from .audit.cases import Case
    from .audit.run import AuditOptions, AuditReport

# Above this many element-evaluations (k²·n, the cost of the full numerical check)
# the check switches to probes: the full check costs ~15-25 ns per k²·n here, so
# this is ~2 s (bench/run.py, "check cost versus k and n").
FULL_CHECK_LIMIT = 1e8


# --------------------------------------------------------------------- the model


@dataclass(frozen=True)
class Model:
    """The data, the parameters and the forward pass: what every command starts from."""

    data: Matrix
    weight: np.ndarray  # (n,) float64, as given
    bias: np.ndarray  # (n,) float64, as given
    eps: float
    dtype: str
    bn: core.BatchNorm  # computed in ``dtype``
    running: Running | None = None  # eval mode: the statistics normalized with
    batch_stats: core.BatchNorm | None = None  # eval mode: the batch's own, shown beside them
    updated: Running | None = None  # training mode with --save-running: to be written there

    @property
    def mode(self) -> str:
        return "eval" if self.running is not None else "train"

    @property
    def columns(self) -> list[str]:
        return self.data.columns

    def cast(self, array: np.ndarray, what: str) -> np.ndarray:
        return in_dtype(array, self.dtype, what, self.columns)

    def problem(self, dy: np.ndarray) -> gc.Problem:
        """The float64 problem to differentiate: the inputs as this dtype sees them."""
        from . import gradcheck as gc

        def as_seen(values: np.ndarray) -> np.ndarray:
            return np.asarray(self.cast(values, "a value"), dtype=np.float64)

        running = None if self.running is None else (as_seen(self.running.mean), as_seen(self.running.var))
        x, dy, w, b = (as_seen(values) for values in (self.data.values, dy, self.weight, self.bias))
        return gc.Problem(x, dy, w, b, self.eps, running)


def in_dtype(array: np.ndarray, dtype: str, what: str, columns: list[str]) -> np.ndarray:
    """``array`` in the precision of the computation; a value beyond its range is an input error.

    Only a narrowing cast (float64 → float32) can lose a value: every array given here was
    read and found finite in float64 already, so the same dtype is returned unchecked.
    """
    original = np.asarray(array)
    with np.errstate(over="ignore", under="ignore"):
        cast = original.astype(dtype, copy=False)
    if cast is original:
        return cast
    for lost, problem in (
        (~np.isfinite(cast), f"does not fit {dtype} (largest {np.finfo(dtype).max:.3g})"),
        ((cast == 0) & (original != 0), f"is 0 in {dtype} (smallest {np.finfo(dtype).smallest_subnormal:.3g})"),
    ):
        if lost.any():
            index = np.argwhere(lost)[0]
            column = columns[index[-1]] if cast.ndim and cast.shape[-1] == len(columns) else "?"
            raise InputError(f"{what}: {original[tuple(index)]:g} in column {column!r} {problem}")
    return cast


class ZeroVarianceInput(InputError):
    """A constant column with --eps 0; ``columns`` holds the indices of those columns."""

    def __init__(self, message: str, columns: list[int]):
        super().__init__(message)
        self.columns = columns


def build_model(options: InputOptions, data: Matrix | None = None) -> Model:
    """Read (unless ``data`` is given) and validate the data and parameters, and run the forward pass."""
    if options.eps < 0 or not np.isfinite(options.eps):
        raise InputError(f"--eps {options.eps}: must be a finite number ≥ 0")
    if not 0 <= options.momentum <= 1:
        raise InputError(f"--momentum {options.momentum}: must be between 0 and 1")
    if options.eval and options.running is None:
        raise InputError("--eval needs --running PATH (the running statistics to normalize with)")
    if options.eval and options.save_running:
        raise InputError("--save-running updates statistics in training mode; it cannot go with --eval")
    data = inputs.load_matrix(options) if data is None else data
    k, n = data.shape
    if options.save_running and k < 2:
        raise InputError(
            f"--save-running: {data.source} has one row; the running variance needs at least 2 rows (unbiased)"
        )
    weight = inputs.per_column("--weight", options.weight, 1.0, n)
    bias = inputs.per_column("--bias", options.bias, 0.0, n)
    running = inputs.load_running(options.running, data.columns) if options.running else None

    def cast(values: np.ndarray, what: str) -> np.ndarray:
        return in_dtype(values, options.dtype, what, data.columns)

    x, w, b = cast(data.values, data.source), cast(weight, "--weight"), cast(bias, "--bias")
    if options.eval:
        mean, var = cast(running.mean, "--running"), cast(running.var, "--running")
        bn = _forward(lambda: core.forward_eval(x, mean, var, w, b, options.eps), f"--running {options.running}", data)
        model = Model(data, weight, bias, options.eps, options.dtype, bn, running, _batch_statistics(x, w, b, options))
    else:
        bn = _forward(lambda: core.forward(x, w, b, options.eps), data.source, data)
        model = Model(data, weight, bias, options.eps, options.dtype, bn)
    if options.save_running:
        model = _with_running_update(model, running, options.momentum)
    return model


def note_degenerate(model: Model, columns: list[int] | None = None) -> None:
    """Name on stderr, once a command has its result, a training batch of one row, and the ``columns``
    (default: all) where ε is not small beside the batch variance: there std = √(var + ε) is mostly ε,
    so s is shrunk towards 0 and y ≈ bias (all of it for a constant column)."""
    if model.mode != "train":
        return
    k, n = model.data.shape
    if k == 1:
        note("warning: a single row: batch norm is degenerate there (s = 0, y = bias, dx = 0)")
        return
    chosen = np.zeros(n, dtype=bool)
    chosen[list(range(n)) if columns is None else columns] = True
    x = model.data.values
    # A variance can underflow to 0 for a column that is not constant (1e-300 squared): look at the data.
    constant = chosen & (x.max(axis=0) == x.min(axis=0))
    swamped = chosen & ~constant & (np.asarray(model.bn.var, dtype=np.float64) <= model.eps) & (model.eps > 0)

    def named(mask: np.ndarray) -> str:
        names = [repr(model.columns[c]) for c in np.flatnonzero(mask)]
        return ", ".join(names[:10]) + (f", … ({len(names)} in all)" if len(names) > 10 else "")

    if constant.any() and model.eps > 0:
        note(f"warning: constant column(s) {named(constant)}: s = 0 there, so y = bias")
    if swamped.any():
        note(
            f"warning: column(s) {named(swamped)}: var ≤ eps ({model.eps:g}), so std = √(var + ε) is mostly ε "
            "and y ≈ bias there; a smaller --eps, or rescaled data, normalises them"
        )


def _forward(run, blamed: str, data: Matrix) -> core.BatchNorm:
    """Run a forward pass; a zero σ with --eps 0 is an input error naming ``blamed`` and the columns."""
    try:
        return run()
    except core.ZeroVarianceError as error:
        names = ", ".join(repr(data.columns[c]) for c in error.columns)
        message = f"{blamed}: column {names}: zero variance with --eps 0 divides by zero"
        raise ZeroVarianceInput(message, error.columns) from None


def _batch_statistics(x, w, b, options: InputOptions) -> core.BatchNorm | None:
    """The batch's own statistics, shown beside the running ones in eval mode, if defined."""
    try:
        return core.forward(x, w, b, options.eps) if x.shape[0] > 1 else None
    except core.ZeroVarianceError:
        return None


def _with_running_update(model: Model, previous: Running | None, momentum: float) -> Model:
    n = model.data.shape[1]
    start = previous or Running(np.zeros(n), np.ones(n), None, 0)
    mean, var = core.update_running(start.mean, start.var, model.bn, momentum)
    for name, values in (("running mean", mean), ("running var", var)):
        require_finite(name, values, model.columns)
    return replace(model, updated=Running(mean, var, momentum, start.batches + 1))


def require_finite(name: str, values: np.ndarray, columns: list[str]) -> None:
    """A result beyond the range of its dtype is an input error naming its column and that dtype, never inf."""
    bad = ~np.isfinite(values)
    if bad.any():
        located = values.ndim and values.shape[-1] == len(columns)
        where = f" of column {columns[int(np.argwhere(bad)[0][-1])]!r}" if located else ""
        # The data, --weight and --bias all scale what comes out: any of them may be what is too large.
        if values.dtype == np.float32:  # what does not fit float32 may well fit float64
            raise InputError(
                f"{name}{where} does not fit float32 (largest {np.finfo(np.float32).max:.3g}; the data, --weight "
                "or --bias are near a limit of its range); use --dtype float64, or rescale them"
            )
        raise InputError(
            f"{name}{where} overflows float64 (largest {np.finfo(np.float64).max:.3g}; the data, --weight or "
            "--bias are near a limit of its range); rescale them"
        )


# ------------------------------------------------------------------------ forward


@dataclass(frozen=True)
class ForwardResult:
    model: Model
    stats: bool  # the statistics table was asked for


def forward(request: ForwardRequest) -> ForwardResult:
    model = build_model(request.inputs)
    note_degenerate(model)
    return ForwardResult(model, request.stats)


# --------------------------------------------------------------------------- grad


@dataclass(frozen=True)
class CheckResult:
    """A gradient check and what was checked: bncli's own gradients or a file's (``against``)."""

    report: gc.CheckReport
    against: str | None

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


def grad(request: GradRequest, progress: gc.ProgressCallback | None = None) -> GradResult:
    check = _validated(request.check)
    if request.dy == "-" and check.against == "-":
        raise InputError("--dy - and --against - would both read stdin: give one of them as a file")
    model = build_model(request.inputs)
    k, n = model.data.shape
    selected = inputs.resolve_columns(request.columns, model.columns)  # an unknown column is an error anyway
    if request.columns and not request.jacobian:
        note("--column picks the columns of --jacobian; without it, every column's gradients are computed")
    jacobian_columns = selected if request.jacobian else []
    if k * k * len(jacobian_columns) > MAX_MATRIX_ELEMENTS:
        raise InputError(jacobian_too_large(k, len(jacobian_columns)))
    dy = inputs.load_dy(request.dy, request.seed, model.data)
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
    report = _run_check(model, result, check, request.seed, progress)
    note_degenerate(model)
    return GradResult(model, dy, gradients, jacobians, CheckResult(report, check.against))


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
    model: Model, result: GradResult, check: CheckOptions, seed: int, progress: gc.ProgressCallback | None
) -> gc.CheckReport:
    from . import gradcheck as gc
    from . import numdiff

    k, n = model.data.shape
    gradients, jacobians = result.gradients, result.jacobians
    ours = gc.CheckedGradients(dx=gradients.dx, dw=gradients.dw, db=gradients.db, jacobian=jacobians)
    precision = gc.Precision(numdiff.unit_roundoff(model.dtype))
    if check.against:
        theirs = inputs.load_against(check.against, model.data)
        checked, analytic = gc.CheckedGradients(theirs.dx, theirs.dw, theirs.db, jacobians), ours
        unit = max(precision.unit, gc.evident_unit_roundoff(theirs.dx, theirs.dw, theirs.db))
        if unit > precision.unit:
            note(
                f"--against {check.against}: its numbers carry float32's precision or less "
                f"(unit roundoff {unit:.2g}); their rounding is judged at that precision"
            )
        precision = gc.Precision(unit, exact_mean=False)
    else:
        checked, analytic = ours, None
    try:
        return gc.check_gradients(
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
