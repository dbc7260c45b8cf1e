"""What ``bncli forward`` and ``bncli grad`` do, independent of the option parser.

Each command loads its inputs (tables), computes (core, gradcheck) and emits one
result: Rich tables (render) or csv/tsv/json (tables). Problems with the input are
:class:`~bncli.tables.InputError`; the CLI turns them into one line and exit 2.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from io import StringIO
from typing import TYPE_CHECKING

import numpy as np

from . import core, tables
from .tables import InputError, Matrix

if TYPE_CHECKING:  # imported where a check runs: a plain run does not pay for it
    from . import gradcheck as gc

# Above this many element-evaluations (k²·n, the cost of the full numerical check)
# the check switches to probes: the full check costs ~15-25 ns per k²·n here, so
# this is ~2 s (bench/run.py, "check cost versus k and n").
FULL_CHECK_LIMIT = 1e8
DEFAULT_PROBES = 8
# --jacobian builds k×k numbers per column: at most this many in all (256 MB), e.g. one
# column of 4096 rows or 32 columns of 724.
JACOBIAN_MAX_ELEMENTS = 1 << 25


def note(message: str) -> None:
    print(f"bncli: {message}", file=sys.stderr)


# ------------------------------------------------------------------------ options


@dataclass(frozen=True)
class InputOptions:
    file: str | None = None
    delimiter: str | None = None
    header: bool | None = None
    eps: float = core.DEFAULT_EPS
    weight: str | None = None
    bias: str | None = None
    dtype: str = "float64"
    running: str | None = None
    save_running: str | None = None
    momentum: float = core.DEFAULT_MOMENTUM
    eval: bool = False


@dataclass(frozen=True)
class OutputOptions:
    format: str | None = None
    output: str | None = None
    precision: int = 6
    full: bool = False
    only: str | None = None


@dataclass(frozen=True)
class CheckOptions:
    enabled: bool = False
    method: str = "central"
    step: float | None = None
    rtol: float | None = None
    against: str | None = None
    sweep: bool = False
    fast: bool = False
    probes: int | None = None


# ------------------------------------------------------------------------ inputs


def _stdin_is_piped() -> bool:
    """True when stdin is a pipe, file or socket; False for a terminal or /dev/null."""
    try:
        mode = os.fstat(sys.stdin.fileno()).st_mode
    except (AttributeError, OSError, ValueError):
        return sys.stdin is not None and not sys.stdin.isatty()
    return stat.S_ISFIFO(mode) or stat.S_ISREG(mode) or stat.S_ISSOCK(mode)


def load_matrix(options: InputOptions) -> Matrix:
    """The input matrix: FILE, '-' (stdin), piped stdin, or the bundled sample."""
    delimiter = tables.parse_delimiter(options.delimiter)
    source = options.file
    if source is None:
        if _stdin_is_piped():
            source = "-"
        else:
            path = tables.sample_path()
            note(f"no FILE and nothing piped in: using the bundled sample {path.name} (blood counts, 10×4)")
            matrix = tables.read_matrix(str(path), delimiter=delimiter, header=options.header)
            return replace(matrix, source=f"sample {path.name}")
    if source == "-":
        return tables.read_matrix(
            tables.STDIN_NAME, sys.stdin.buffer.read(), delimiter=delimiter, header=options.header
        )
    return tables.read_matrix(source, delimiter=delimiter, header=options.header)


def per_column(option: str, text: str | None, default: float, n: int) -> np.ndarray:
    """--weight/--bias: one number for every column, or a comma list of exactly n."""
    if text is None:
        return np.full(n, default)
    fields = [field.strip() for field in text.split(",")]
    try:
        values = np.array([float(field) for field in fields])
    except ValueError:
        raise InputError(f"{option} {text!r}: not a number or a comma list of numbers") from None
    if not np.isfinite(values).all():
        raise InputError(f"{option} {text!r}: NaN and infinity are not allowed")
    if len(values) == 1:
        return np.full(n, values[0])
    if len(values) != n:
        raise InputError(f"{option}: {len(values)} values, but the data has {n} columns")
    return values


def _same_shape(option: str, other: Matrix, data: Matrix) -> np.ndarray:
    if other.shape != data.shape:
        k, n = data.shape
        raise InputError(f"{option} {other.source}: shape {other.shape[0]}×{other.shape[1]}, but the data is {k}×{n}")
    return other.values


def resolve_columns(selection: list[str] | None, names: list[str]) -> list[int]:
    """--column NAME|INDEX (repeatable) to column indices; all columns when none is given."""
    if not selection:
        return list(range(len(names)))
    indices = []
    for item in selection:
        if item in names:
            indices.append(names.index(item))
        elif item.lstrip("-").isdigit() and 0 <= int(item) < len(names):
            indices.append(int(item))
        else:
            shown = ", ".join(repr(name) for name in names[:10]) + (", …" if len(names) > 10 else "")
            raise InputError(f"--column {item!r}: no such column; the columns are {shown} (or 0…{len(names) - 1})")
    return list(dict.fromkeys(indices))


# ------------------------------------------------------------- running statistics


@dataclass(frozen=True)
class Running:
    mean: np.ndarray
    var: np.ndarray
    momentum: float | None
    batches: int


def _json_object(option: str, path: str, expected: str) -> dict:
    """The JSON object in the file given to ``option`` (``expected`` says what it should hold)."""
    try:
        obj = json.loads(tables.read_bytes(path).decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"{option} {path}: not valid JSON ({error})") from None
    if not isinstance(obj, dict):
        raise InputError(f"{option} {path}: expected a JSON object with {expected}")
    return obj


def _json_numbers(option: str, path: str, obj: dict, key: str, shape: tuple[int, ...]) -> np.ndarray:
    """``obj[key]`` as finite float64 numbers of the given shape."""
    try:
        values = np.array(obj[key], dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{option} {path}: {key!r} is not an array of numbers") from None
    if values.shape != shape:
        raise InputError(f"{option} {path}: {key!r} has shape {values.shape}, but it must be {shape}")
    if not np.isfinite(values).all():
        raise InputError(f"{option} {path}: {key!r} holds NaN or infinity")
    return values


def load_running(path: str, columns: list[str]) -> Running:
    """A --running file: JSON {"columns", "mean", "var", "momentum", "batches"}, checked against the data."""
    obj = _json_object("--running", path, "columns, mean, var")
    missing = [key for key in ("columns", "mean", "var") if key not in obj]
    if missing:
        raise InputError(f"--running {path}: missing key(s) {', '.join(missing)}")
    if [str(c) for c in obj["columns"]] != columns:
        raise InputError(f"--running {path}: its columns {obj['columns']} differ from the data's {columns}")
    mean, var = (_json_numbers("--running", path, obj, key, (len(columns),)) for key in ("mean", "var"))
    if (var < 0).any():
        column = columns[int(np.argmax(var < 0))]
        raise InputError(f"--running {path}: negative variance for column {column!r}")
    return Running(mean, var, obj.get("momentum"), int(obj.get("batches", 0)))


def _save_running(options: InputOptions, data: Matrix, bn: core.BatchNorm, previous: Running | None) -> Running:
    n = data.shape[1]
    start = previous or Running(np.zeros(n), np.ones(n), None, 0)
    mean, var = core.update_running(start.mean, start.var, bn, options.momentum)
    updated = Running(mean, var, options.momentum, start.batches + 1)
    record = {
        "columns": data.columns,
        "mean": mean,
        "var": var,
        "momentum": options.momentum,
        "batches": updated.batches,
    }
    _require_finite({"running mean": mean, "running var": var}, data.columns)
    tables.write_atomic(options.save_running, _text_writer(tables.format_json(record)))
    return updated


# --------------------------------------------------------------------- the model


@dataclass
class Model:
    """The data, parameters and forward pass shared by both commands."""

    data: Matrix
    weight: np.ndarray
    bias: np.ndarray
    eps: float
    dtype: str
    bn: core.BatchNorm
    running: Running | None = None  # eval mode: the statistics used
    batch_stats: core.BatchNorm | None = None  # eval mode: the batch's own, for --stats
    updated: Running | None = None  # training mode with --save-running

    @property
    def mode(self) -> str:
        return "eval" if self.running is not None else "train"

    def cast(self, array: np.ndarray, what: str = "a value") -> np.ndarray:
        return in_dtype(array, self.dtype, what, self.data.columns)

    def problem(self, dy: np.ndarray) -> gc.Problem:
        """The float64 problem to differentiate: the inputs as this dtype sees them."""
        from . import gradcheck as gc

        as_seen = lambda a: np.asarray(self.cast(a), dtype=np.float64)
        running = None if self.running is None else (as_seen(self.running.mean), as_seen(self.running.var))
        return gc.Problem(
            as_seen(self.data.values), as_seen(dy), as_seen(self.weight), as_seen(self.bias), self.eps, running
        )


def in_dtype(array: np.ndarray, dtype: str, what: str, columns: list[str]) -> np.ndarray:
    """``array`` in the precision of the computation; a value beyond its range is an input error."""
    with np.errstate(over="ignore"):
        cast = np.asarray(array, dtype=dtype)
    if not np.isfinite(cast).all():
        index = np.argwhere(~np.isfinite(cast))[0]
        column = columns[index[-1]] if cast.ndim and cast.shape[-1] == len(columns) else "?"
        value = np.asarray(array)[tuple(index)]
        raise InputError(
            f"{what}: {value:g} in column {column!r} does not fit {dtype} (largest {np.finfo(dtype).max:.3g})"
        )
    return cast


def build_model(options: InputOptions) -> Model:
    if options.eps < 0 or not np.isfinite(options.eps):
        raise InputError(f"--eps {options.eps}: must be a finite number ≥ 0")
    if not 0 <= options.momentum <= 1:
        raise InputError(f"--momentum {options.momentum}: must be between 0 and 1")
    if options.eval and options.running is None:
        raise InputError("--eval needs --running PATH (the running statistics to normalize with)")
    if options.eval and options.save_running:
        raise InputError("--save-running updates statistics in training mode; it cannot go with --eval")
    data = load_matrix(options)
    k, n = data.shape
    if options.save_running and k < 2:
        raise InputError(
            f"--save-running: {data.source} has one row; the running variance needs at least 2 rows (unbiased)"
        )
    weight = per_column("--weight", options.weight, 1.0, n)
    bias = per_column("--bias", options.bias, 0.0, n)
    running = load_running(options.running, data.columns) if options.running else None
    cast = lambda a, what: in_dtype(a, options.dtype, what, data.columns)
    x, w, b = cast(data.values, data.source), cast(weight, "--weight"), cast(bias, "--bias")
    batch_stats = None
    try:
        if options.eval:
            bn = core.forward_eval(
                x, cast(running.mean, "--running"), cast(running.var, "--running"), w, b, options.eps
            )
            batch_stats = _batch_statistics(x, w, b, options.eps)
        else:
            bn = core.forward(x, w, b, options.eps)
    except core.ZeroVarianceError as error:
        names = ", ".join(repr(data.columns[c]) for c in error.columns)
        raise InputError(f"{data.source}: column {names}: zero variance with --eps 0 divides by zero") from None
    model = Model(data, weight, bias, options.eps, options.dtype, bn, running if options.eval else None, batch_stats)
    if k == 1 and not options.eval:
        note("warning: a single row: batch norm is degenerate there (s = 0, y = bias, dx = 0)")
    if options.save_running:
        model.updated = _save_running(options, data, model.bn, running)
    return model


def _batch_statistics(x, w, b, eps) -> core.BatchNorm | None:
    """The batch's own statistics, shown beside the running ones in eval mode, if defined."""
    try:
        return core.forward(x, w, b, eps) if x.shape[0] > 1 else None
    except core.ZeroVarianceError:
        return None


# ------------------------------------------------------------------------ results


@dataclass
class Result:
    """What a command emits: named matrices for csv/tsv, a dict for json, Rich tables.

    Matrices and the json dict are made by functions, called only for the output
    asked for (e.g. s is never computed for a plain csv of y).
    """

    columns: list[str]
    has_header: bool
    matrices: dict[str, Callable[[], tuple[np.ndarray, list[str], list[str] | None]]]  # → values, header, row labels
    default: str
    json: Callable[[], dict]
    tables: list = field(default_factory=list)  # callables (Renderer) → renderable
    verdict: str | None = None  # of a gradient check: on stderr unless the output is a table
    exit_code: int = 0


def _arrays(obj: dict, prefix: str = "") -> dict[str, np.ndarray]:
    """The numeric arrays in a (nested) JSON result, by dotted key."""
    found = {}
    for key, value in obj.items():
        if isinstance(value, dict):
            found.update(_arrays(value, f"{prefix}{key}."))
        elif isinstance(value, np.ndarray) and value.dtype.kind == "f":
            found[prefix + key] = value
    return found


def _require_finite(named: dict[str, np.ndarray], columns: list[str]) -> None:
    for name, values in named.items():
        bad = ~np.isfinite(values)
        if bad.any():
            column = columns[int(np.argwhere(bad)[0][-1])] if values.ndim and values.shape[-1] == len(columns) else None
            where = f" of column {column!r}" if column is not None else ""
            raise InputError(
                f"{name}{where} overflows float64 (the data's magnitude is too large for it); rescale the data"
            )


def _output_format(options: OutputOptions) -> str:
    if options.format:
        return options.format
    if options.output:
        return tables.format_for_path(options.output)
    return "table" if sys.stdout.isatty() else "csv"


def emit(result: Result, options: OutputOptions) -> int:
    """Write the result in the chosen format to stdout or, atomically, to --output.

    Nothing is written unless every number that would go out is finite.
    """
    fmt = _output_format(options)
    only = options.only or result.default
    if only not in result.matrices and fmt in ("csv", "tsv"):
        raise InputError(f"--only {only}: not available here; choose one of {', '.join(result.matrices)}")
    if fmt == "json":
        obj = result.json()
        _require_finite(_arrays(obj), result.columns)
        write = lambda stream: tables.write_json(stream, obj)
    elif fmt in ("csv", "tsv"):
        values, header, labels = result.matrices[only]()
        _require_finite({only: values}, result.columns)
        header = header if result.has_header else None
        delimiter = "," if fmt == "csv" else "\t"
        write = lambda stream: tables.write_delimited(stream, values, header, delimiter, labels)
    else:
        _require_finite({name: make()[0] for name, make in result.matrices.items()}, result.columns)
        if not options.output:
            _print_tables(result.tables, _console(sys.stdout), options)
            return result.exit_code
        buffer = StringIO()
        _print_tables(result.tables, _console(buffer), options)
        write = _text_writer(buffer.getvalue())
    if result.verdict and fmt != "table":
        note(result.verdict)
    if options.output:
        tables.write_atomic(options.output, write)
    else:
        sys.stdout.flush()
        write(sys.stdout.buffer)
        sys.stdout.buffer.flush()
    return result.exit_code


def _text_writer(text: str):
    return lambda stream: stream.write(text.encode("utf-8"))


def _console(file, width: int | None = None):
    """A Rich console; 120 columns wide when it is not a terminal (Rich would take 80)."""
    from rich.console import Console

    if width is None and not (hasattr(file, "isatty") and file.isatty()) and "COLUMNS" not in os.environ:
        width = 120
    return Console(file=file, width=width, highlight=False, soft_wrap=False)


def _print_tables(makers, console, options: OutputOptions) -> None:
    from rich.text import Text

    from .render import Renderer

    renderer = Renderer(console, options.precision, options.full)
    for make in makers:
        renderable = make(renderer)
        # A line of text (context, verdict) stays one line: grep-able; the terminal may fold it.
        console.print(renderable, soft_wrap=isinstance(renderable, Text))
        if isinstance(renderable, Text):  # tables end with a blank line of their own
            console.print()


# ------------------------------------------------------------------------ forward


STAT_NAMES = ("mean", "var", "std", "weight", "bias")


def forward(inputs: InputOptions, outputs: OutputOptions, show_stats: bool = False) -> int:
    model = build_model(inputs)
    data, bn = model.data, model.bn
    columns = data.columns
    stats = np.vstack([bn.mean, bn.var, bn.std, model.weight, model.bias]).astype(np.float64)
    describe = _describe(model)

    def json_obj():
        return {
            "columns": columns,
            "eps": model.eps,
            "weight": model.weight,
            "bias": model.bias,
            "mean": bn.mean,
            "var": bn.var,
            "std": bn.std,
            "s": bn.s,
            "y": bn.y,
            "mode": model.mode,
            "dtype": model.dtype,
        } | _running_json(model)

    tables = [lambda r: _context(describe), lambda r: r.matrix("y = w·s + b", bn.y, columns)]
    if show_stats:
        tables.append(lambda r: r.matrix(f"per-column statistics ({model.mode} mode)", *_stats_rows(model, stats)))
    result = Result(
        columns=columns,
        has_header=data.has_header,
        matrices={
            "y": lambda: (bn.y, columns, None),
            "s": lambda: (bn.s, columns, None),
            "stats": lambda: (stats, ["statistic", *columns], list(STAT_NAMES)),
        },
        default="y",
        json=json_obj,
        tables=tables,
    )
    return emit(result, outputs)


def _describe(model: Model) -> str:
    k, n = model.data.shape
    stats = "running statistics" if model.mode == "eval" else "batch statistics"
    return (
        f"{model.data.source}: {k} rows × {n} columns · eps {model.eps:g} · {model.mode} mode ({stats}) · {model.dtype}"
    )


def _context(line: str):
    from .render import literal

    return literal(line, style="dim")


def _stats_rows(model: Model, stats: np.ndarray):
    labels = list(STAT_NAMES)
    rows = [stats]
    if model.batch_stats is not None:
        labels += ["batch mean", "batch var"]
        rows.append(np.vstack([model.batch_stats.mean, model.batch_stats.var]))
    if model.updated is not None:
        labels += ["running mean (saved)", "running var (saved)"]
        rows.append(np.vstack([model.updated.mean, model.updated.var]))
    if model.running is not None:
        labels = ["running mean", "running var", *labels[2:]]
    return np.vstack(rows).astype(np.float64), model.data.columns, labels, "statistic"


def _running_json(model: Model) -> dict:
    extra = {}
    if model.batch_stats is not None:
        extra["batch"] = {"mean": model.batch_stats.mean, "var": model.batch_stats.var}
    if model.updated is not None:
        extra["running"] = {"mean": model.updated.mean, "var": model.updated.var, "batches": model.updated.batches}
    return extra


# --------------------------------------------------------------------------- grad


def _load_dy(path: str | None, seed: int, data: Matrix) -> tuple[np.ndarray, str]:
    if path is None:
        dy = np.random.default_rng(seed).standard_normal(data.shape)
        return core.columns_contiguous(dy), f"dy ~ N(0, 1), seed {seed}"
    return _same_shape("--dy", tables.read_matrix(path), data), f"dy from {path}"


def _load_against(path: str, data: Matrix) -> gc.Gradient:
    """--against: a CSV/TSV/.npy file is dx; a JSON object may hold dx, dw, db."""
    from . import gradcheck as gc

    if not path.lower().endswith(".json"):
        return gc.Gradient(dx=_same_shape("--against", tables.read_matrix(path), data))
    expected = 'any of "dx", "dw", "db"'
    obj = _json_object("--against", path, expected)
    if not any(key in obj for key in ("dx", "dw", "db")):
        raise InputError(f"--against {path}: expected a JSON object with {expected}")
    k, n = data.shape
    shapes = {"dx": (k, n), "dw": (n,), "db": (n,)}
    return gc.Gradient(
        **{key: _json_numbers("--against", path, obj, key, shape) for key, shape in shapes.items() if key in obj}
    )


def grad(
    inputs: InputOptions,
    outputs: OutputOptions,
    check: CheckOptions,
    *,
    dy_path: str | None = None,
    seed: int = 0,
    show_jacobian: bool = False,
    column_selection: list[str] | None = None,
) -> int:
    model = build_model(inputs)
    data, bn = model.data, model.bn
    columns = data.columns
    k, n = data.shape
    selected = resolve_columns(column_selection, columns)
    wants_jacobian = show_jacobian or outputs.only == "jacobian"
    if wants_jacobian and k * k * len(selected) > JACOBIAN_MAX_ELEMENTS:
        fits = JACOBIAN_MAX_ELEMENTS // (k * k)
        advice = (
            f"choose at most {fits} with --column" if fits else f"at most {int(JACOBIAN_MAX_ELEMENTS**0.5)} rows fit"
        )
        raise InputError(
            f"--jacobian: {len(selected)} column(s) of {k}×{k} are {k * k * len(selected):.3g} numbers, "
            f"more than {JACOBIAN_MAX_ELEMENTS:.3g}; {advice}"
        )
    jacobian_columns = selected if show_jacobian else []
    if outputs.only == "jacobian" and (_output_format(outputs) in ("csv", "tsv")):
        if len(selected) != 1 or not column_selection and n != 1:
            raise InputError("--only jacobian prints one column's Jacobian: choose it with --column NAME")
        jacobian_columns = selected
    dy, dy_label = _load_dy(dy_path, seed, data)
    weight = model.cast(model.weight)
    grads = core.backward(model.cast(dy, "dy"), bn)
    jacobians = {c: core.jacobian(bn, c) for c in jacobian_columns}

    json_obj = {
        "columns": columns,
        "eps": model.eps,
        "weight": model.weight,
        "bias": model.bias,
        "dy": dy,
        "dx": grads.dx,
        "dw": grads.dw,
        "db": grads.db,
        "mode": model.mode,
        "dtype": model.dtype,
    }
    json_obj.update(_running_json(model))
    describe = _describe(model)
    tables = [
        lambda r: _context(describe),
        lambda r: r.matrix(f"dx = ∂e/∂x for {dy_label}", grads.dx, columns),
        lambda r: r.matrix(
            "dw = Σ dy·s and db = Σ dy, per column", np.vstack([grads.dw, grads.db]), columns, ["dw", "db"], ""
        ),
    ]
    if show_jacobian:
        json_obj["jacobian"] = {columns[c]: j for c, j in jacobians.items()}
        for c, j in jacobians.items():
            kind = "diagonal, eval mode" if model.mode == "eval" else "u·R, symmetric, rows sum to 0"
            tables.append(
                lambda r, c=c, j=j: r.matrix(
                    f"∂y/∂x of column {columns[c]} ({k}×{k}, {kind})",
                    j,
                    [str(i) for i in range(k)],
                    None,
                    "∂y[i]/∂x[j]",
                )
            )
    matrices = {
        "dx": lambda: (grads.dx, columns, None),
        "dw": lambda: (grads.dw[None, :], columns, None),
        "db": lambda: (grads.db[None, :], columns, None),
    }
    if jacobians and len(jacobians) == 1:
        ((c, j),) = jacobians.items()
        matrices["jacobian"] = lambda: (j, [f"{columns[c]}[{i}]" for i in range(k)], None)
    result = Result(columns, data.has_header, matrices, "dx", lambda: json_obj, tables)

    if check.enabled or check.against:
        report, against_label = _run_check(model, dy, grads, jacobians, check)
        json_obj["check"] = check_json(report, columns)
        from .render import verdict

        result.verdict = verdict(report, columns, model.dtype)
        result.tables.append(lambda r: r.check(report, columns, against_label))
        if report.sweep:
            result.tables.append(lambda r: r.sweep(report))
        result.tables.append(lambda r: _verdict_text(result.verdict, report.passed))
        result.exit_code = 0 if report.passed else 1
    return emit(result, outputs)


def _verdict_text(line: str, passed: bool):
    from .render import literal

    return literal(line, style="bold green" if passed else "bold red")


def _run_check(model: Model, dy: np.ndarray, grads: core.Gradients, jacobians: dict, check: CheckOptions):
    from . import gradcheck as gc

    k, n = model.data.shape
    if check.step is not None and not (check.step > 0 and np.isfinite(check.step)):
        raise InputError(f"--step {check.step}: must be a positive number")
    if check.rtol is not None and not (check.rtol > 0):
        raise InputError(f"--rtol {check.rtol}: must be a positive number")
    if check.probes is not None and check.probes < 1:
        raise InputError(f"--probes {check.probes}: must be at least 1")
    probes = check.probes
    if probes is None and check.fast:
        probes = DEFAULT_PROBES
    if probes is None and float(k) * k * n * (1 + len(jacobians) / n) > FULL_CHECK_LIMIT:
        probes = DEFAULT_PROBES
        note(
            f"a full check of {k}×{n} costs O(k²·n); comparing {probes} random directional derivatives instead (--fast)"
        )
    ours = gc.Gradient(dx=grads.dx, dw=grads.dw, db=grads.db, jacobian=jacobians)
    if check.against:
        checked = _load_against(check.against, model.data)
        checked = gc.Gradient(checked.dx, checked.dw, checked.db, jacobians)
        analytic = ours
    else:
        checked, analytic = ours, None
    rtol = check.rtol or gc.default_rtol(check.method, model.dtype)
    try:
        with _progress() as progress:
            report = gc.check_gradients(
                model.problem(dy),
                _as_float64(checked),
                analytic=None if analytic is None else _as_float64(analytic),
                method=check.method,
                step=check.step,
                rtol=rtol,
                probes=probes,
                sweep=check.sweep,
                progress=progress,
            )
    except gc.StepError as error:
        names = ", ".join(repr(model.data.columns[c]) for c in error.columns)
        step = "the step" if check.step is None else f"--step {check.step:g}"
        raise InputError(
            f"{step} is lost in rounding or overflows in column {names}: (x + h) − (x − h) is 0 or infinite there"
        ) from None
    return report, check.against


def _as_float64(g: gc.Gradient) -> gc.Gradient:
    from . import gradcheck as gc

    cast = lambda a: None if a is None else np.asarray(a, dtype=np.float64)
    return gc.Gradient(cast(g.dx), cast(g.dw), cast(g.db), {c: cast(j) for c, j in g.jacobian.items()})


class _progress:
    """A Rich progress bar on stderr, shown only on a terminal and only after about a second."""

    DELAY = 1.0

    def __enter__(self):
        self.started = time.monotonic()
        self.bar = None
        self.task = None
        return self if sys.stderr.isatty() else None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            if time.monotonic() - self.started < self.DELAY:
                return
            from rich.progress import Progress

            self.bar = Progress(console=_console(sys.stderr), transient=True)
            self.bar.start()
            self.task = self.bar.add_task("gradient check", total=total)
        self.bar.update(self.task, completed=done, total=total)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.stop()
        return False


def check_json(report: gc.CheckReport, columns: list[str]) -> dict:
    results = {}
    for name, c in report.results.items():
        entry = {
            "max_abs_error": c.max_abs_error,
            "max_rel_error": c.max_rel_error,
            "worst": {"row": c.row, "column": columns[c.column]},
            "passed": c.passed,
            "checked": c.checked,
            "numerical": c.reference,
        }
        if c.wrt_row is not None:
            entry["worst"]["wrt_row"] = c.wrt_row
        if c.analytic_rel_error is not None:
            entry["rel_error_vs_bncli"] = c.analytic_rel_error
        results[name] = entry
    obj = {
        "method": report.method,
        "step": report.step,
        "rtol": report.rtol,
        "passed": report.passed,
        "probes": report.probes,
        "results": results,
    }
    if report.sweep:
        obj["sweep"] = [
            {"step": p.step, "max_rel_error": p.max_rel_error, "default": p.is_default} for p in report.sweep
        ]
    return obj
