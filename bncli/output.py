"""The one output dispatcher: a command's result plus the output options → table, csv, tsv, json or npy.

A result is cut into named *parts* (y, s, stats; dx, dw, db, dy, jacobian; check).
Every format is a function of the parts, so ``--only`` means the same everywhere:
csv/tsv/npy print that part's matrix, json only that part's keys (plus
``columns``), a table only that part's tables. Without ``--only``, csv/tsv/npy
print the default matrix and json and tables carry every part that was computed
or asked for. Something asked for that the chosen output cannot carry is refused
with one line naming the fix (:func:`validate`, before anything is computed); a
check's verdict goes to stderr whenever the output does not carry the check.

Nothing is written until everything that goes out has been made and found
finite; files (``--output``, ``--save-running``) are written together at the end,
each atomically.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from io import StringIO

import numpy as np

from . import options, tables
from .commands import ForwardResult, GradResult, Model, require_finite
from .inputs import note
from .tables import InputError

MATRIX_FORMATS = ("csv", "tsv", "npy")
SELECTABLE = set(options.FORWARD_PARTS) | set(options.GRAD_PARTS)
# A table that goes to a file or a pipe is this wide, whatever the terminal.
FILE_WIDTH = 120
MIN_WIDTH = 40


def resolve_format(options: options.OutputOptions, stdout_is_terminal: bool) -> str:
    if options.format:
        return options.format
    if options.output:
        return tables.format_for_path(options.output)
    return "table" if stdout_is_terminal else "csv"


def stdout_is_terminal() -> bool:
    try:
        return sys.stdout is not None and sys.stdout.isatty()
    except ValueError:  # closed
        return False


# ------------------------------------------------------------------------- parts


@dataclass(frozen=True)
class Part:
    """One selectable piece of a result, as each format shows it.

    ``matrix`` gives (values, header, row labels) for csv/tsv/npy; ``json`` the keys
    it adds; ``tables`` its Rich renderables (functions of a Renderer) in the full
    view and ``alone`` those shown when --only picks it (default: the same).
    ``in_json``/``in_table``: part of the full json/table view.
    """

    name: str
    json: Callable[[], dict]
    tables: list[Callable]
    matrix: Callable[[], tuple[np.ndarray, list[str], list[str] | None]] | None = None
    in_json: bool = True
    in_table: bool = True
    alone: list[Callable] | None = None


def _matrix_part(name, title, values, columns, *, row_labels=None, label_header="row", **flags) -> Part:
    """A part that is one matrix, with the same numbers in every format."""
    return Part(
        name,
        lambda: {name: values},
        [lambda r: r.matrix(title, values, columns, row_labels, label_header)],
        lambda: (values, columns, row_labels),
        **flags,
    )


STAT_NAMES = ("mean", "var", "std", "weight", "bias")


def _forward_parts(result: ForwardResult) -> list[Part]:
    model = result.model
    bn, columns = model.bn, model.columns
    stats = np.vstack([bn.mean, bn.var, bn.std, model.weight, model.bias]).astype(np.float64)
    stats_table, stats_columns, stats_labels, stats_label_header = _stats_rows(model, stats)
    stats_title = f"per-column statistics ({model.mode} mode)"
    return [
        Part(
            "y", lambda: {"y": bn.y}, [lambda r: r.matrix("y = w·s + b", bn.y, columns)], lambda: (bn.y, columns, None)
        ),
        Part(
            "s",
            lambda: {"s": bn.s},
            [lambda r: r.matrix("s = (x − mean) / std", bn.s, columns)],
            lambda: (bn.s, columns, None),
            in_table=False,
        ),
        Part(
            "stats",
            lambda: {"mean": bn.mean, "var": bn.var, "std": bn.std} | _running_json(model),
            [lambda r: r.matrix(stats_title, stats_table, stats_columns, stats_labels, stats_label_header)],
            lambda: (stats, ["statistic", *columns], list(STAT_NAMES)),
            in_table=result.stats,
        ),
    ]


def _grad_parts(result: GradResult) -> list[Part]:
    model, gradients, dy = result.model, result.gradients, result.dy
    columns = model.columns
    both = np.vstack([gradients.dw, gradients.db])
    dw_db = "dw = Σ dy·s and db = Σ dy, per column"
    parts = [
        _matrix_part("dx", f"dx = ∂e/∂x for {dy.label}", gradients.dx, columns),
        Part(
            "dw",
            lambda: {"dw": gradients.dw},
            [lambda r: r.matrix(dw_db, both, columns, ["dw", "db"], "")],
            lambda: (gradients.dw[None, :], columns, None),
            alone=[lambda r: r.matrix("dw = Σ dy·s", both[:1], columns, ["dw"], "")],
        ),
        Part(
            "db",
            lambda: {"db": gradients.db},
            [lambda r: r.matrix("db = Σ dy", both[1:], columns, ["db"], "")],
            lambda: (gradients.db[None, :], columns, None),
            in_table=False,
        ),
        _matrix_part("dy", dy.label, dy.values, columns, in_table=False),
    ]
    if result.jacobians:
        parts.append(_jacobian_part(result))
    if result.check is not None:
        parts.append(Part("check", lambda: {"check": check_json(result)}, _check_tables(result)))
    return parts


def _jacobian_part(result: GradResult) -> Part:
    model, jacobians = result.model, result.jacobians
    columns, k = model.columns, model.data.shape[0]
    kind = "diagonal, eval mode" if model.mode == "eval" else "u·R, symmetric, rows sum to 0"
    indices = [str(i) for i in range(k)]

    def table(column: int) -> Callable:
        title = f"∂y/∂x of column {columns[column]} ({k}×{k}, {kind})"
        return lambda r: r.matrix(title, jacobians[column], indices, None, "∂y[i]/∂x[j]")

    def matrix():
        ((column, values),) = jacobians.items()
        return values, [f"{columns[column]}[{i}]" for i in range(k)], None

    return Part(
        "jacobian",
        lambda: {"jacobian": {columns[c]: j for c, j in jacobians.items()}},
        [table(c) for c in jacobians],
        matrix if len(jacobians) == 1 else None,
    )


def _parts(result) -> list[Part]:
    return _forward_parts(result) if isinstance(result, ForwardResult) else _grad_parts(result)


def _meta_json(model: Model) -> dict:
    """What every full json carries besides the parts."""
    return {
        "columns": model.columns,
        "eps": model.eps,
        "weight": model.weight,
        "bias": model.bias,
        "mode": model.mode,
        "dtype": model.dtype,
    }


def _running_json(model: Model) -> dict:
    extra = {}
    if model.batch_stats is not None:
        extra["batch"] = {"mean": model.batch_stats.mean, "var": model.batch_stats.var}
    if model.updated is not None:
        extra["running"] = {"mean": model.updated.mean, "var": model.updated.var, "batches": model.updated.batches}
    return extra


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
    return np.vstack(rows).astype(np.float64), model.columns, labels, "statistic"


def _describe(model: Model) -> str:
    k, n = model.data.shape
    stats = "running statistics" if model.mode == "eval" else "batch statistics"
    mode = f"{model.mode} mode ({stats})"
    return f"{model.data.source}: {k} rows × {n} columns · eps {model.eps:g} · {mode} · {model.dtype}"


# ------------------------------------------------------------------------- check


def check_json(result: GradResult) -> dict:
    report, columns = result.check.report, result.model.columns
    results = {}
    for name, c in report.results.items():
        entry = {
            "max_abs_error": c.max_abs_error,
            "max_rel_error": c.max_rel_error,
            "worst": {"row": c.row, "column": columns[c.column]},
            "passed": c.passed,
            "beyond": c.beyond,
            "columns": {columns[j]: error for j, error in c.column_errors.items()},
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
        "dy": "file" if result.dy.path is not None else f"seed {result.dy.seed}",
        "results": results,
    }
    if report.sweep:
        obj["sweep"] = [
            {"step": p.step, "max_rel_error": p.max_rel_error, "default": p.is_default} for p in report.sweep
        ]
    return obj


def verdict_line(result: GradResult) -> str:
    """The check's verdict in one line, with what a user checking their own gradient must know."""
    from .render import verdict

    line = verdict(result.check.report, result.model.columns, result.model.dtype)
    if result.check.against and result.dy.path is None:
        line += f" (for {result.dy.label}, drawn by bncli"
        line += "; if you computed yours for another dy, pass that dy with --dy)" if not result.check.passed else ")"
    return line


def _check_tables(result: GradResult) -> list[Callable]:
    from .render import literal

    report, columns = result.check.report, result.model.columns
    makers = [lambda r: r.check(report, columns, result.check.against)]
    if not report.passed:
        makers.append(lambda r: r.failures(report, columns))
    if report.sweep:
        makers.append(lambda r: r.sweep(report))
    style = "bold green" if report.passed else "bold red"
    makers.append(lambda r: literal(verdict_line(result), style=style))
    return makers


# ------------------------------------------------------------------- validation


def validate(options: options.OutputOptions, *, extras: dict[str, str], default: str, stdout_is_tty: bool) -> str:
    """Refuse, before anything is computed, output options that cannot show what was asked for.

    ``extras`` maps each part asked for beyond the default (e.g. "stats": "--stats")
    to the option that asked. Returns the format.
    """
    fmt = resolve_format(options, stdout_is_tty)
    if fmt == "npy" and not options.output and stdout_is_tty:
        raise InputError("-f npy writes binary data: give --output FILE.npy or pipe it")
    if fmt in MATRIX_FORMATS:
        shown = options.only or default
        for part, option in extras.items():
            if part != shown:
                alone = f"--only {part} for it alone, or " if part in SELECTABLE else ""
                fix = f"use {alone}-f json or -f table for everything"
                raise InputError(f"{option}: {fmt} output carries one matrix ({shown}); {fix}")
    elif options.only:
        for part, option in extras.items():
            if part != options.only:
                raise InputError(f"{option}: --only {options.only} shows {options.only} alone; drop one of them")
    if options.output:
        tables.check_output_path(options.output, "--output")
    return fmt


# ----------------------------------------------------------------------- writing


def emit(result, options: options.OutputOptions, fmt: str, save_running: str | None = None) -> int:
    """Show ``result`` as ``fmt`` on stdout or in --output, and write --save-running; the exit code."""
    parts = {part.name: part for part in _parts(result)}
    model = result.model
    check = getattr(result, "check", None)
    shown = _selected(parts, options.only, fmt)
    if fmt in MATRIX_FORMATS:
        write = _matrix_writer(shown[0], fmt, model)
    elif fmt == "json":
        obj = ({"columns": model.columns} if options.only else _meta_json(model)) | {
            key: value for part in shown for key, value in part.json().items()
        }
        _require_finite_json(obj, model.columns)
        write = _text_writer(tables.format_json(obj))
    else:
        text = _render(model, shown, options, to_file=bool(options.output))
        write = _text_writer(text, None if options.output else _stdout_encoding())
    files = []
    if options.output:
        files.append(("--output", options.output, write))
    if save_running and model.updated is not None:
        files.append(("--save-running", save_running, _text_writer(tables.format_json(_running_record(model)))))
    if check is not None and not any(part.name == "check" for part in shown):
        note(verdict_line(result))
    tables.write_files_atomically(files)
    if not options.output:
        _write_stdout(write)
    return getattr(result, "exit_code", 0)


def _selected(parts: dict[str, Part], only: str | None, fmt: str) -> list[Part]:
    if only is not None:
        if only not in parts or (fmt in MATRIX_FORMATS and parts[only].matrix is None):
            raise _unavailable(only, parts, fmt)
        return [parts[only]]
    if fmt in MATRIX_FORMATS:
        return [next(iter(parts.values()))]
    flag = "in_json" if fmt == "json" else "in_table"
    return [part for part in parts.values() if getattr(part, flag)]


def _unavailable(only: str, parts: dict[str, Part], fmt: str) -> InputError:
    if only == "jacobian":
        if "jacobian" in parts:
            return InputError("--only jacobian prints one column's Jacobian: choose it with --column NAME")
        return InputError("--only jacobian: no Jacobian was computed")
    return InputError(f"--only {only}: not available here; choose one of {', '.join(parts)}")


def _matrix_writer(part: Part, fmt: str, model: Model):
    values, header, row_labels = part.matrix()
    require_finite(part.name, values, model.columns)
    if fmt == "npy":
        return lambda stream: np.save(stream, np.asarray(values, dtype=np.float64), allow_pickle=False)
    header = header if model.data.has_header else None
    delimiter = "," if fmt == "csv" else "\t"
    return lambda stream: tables.write_delimited(stream, values, header, delimiter, row_labels)


def _running_record(model: Model) -> dict:
    updated = model.updated
    return {
        "columns": model.columns,
        "mean": updated.mean,
        "var": updated.var,
        "momentum": updated.momentum,
        "batches": updated.batches,
    }


def _require_finite_json(obj, columns: list[str], name: str = "") -> None:
    """Every number in ``obj`` finite (json cannot carry NaN or infinity); else an input error naming it."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            _require_finite_json(value, columns, f"{name}.{key}" if name else str(key))
    elif isinstance(obj, np.ndarray) and obj.dtype.kind == "f":
        require_finite(name, obj, columns)
    elif isinstance(obj, float) and not np.isfinite(obj):
        raise InputError(f"{name} is not finite (the data's magnitude is too large for float64); rescale the data")
    elif isinstance(obj, list | tuple):
        for item in obj:
            _require_finite_json(item, columns, name)


def _text_writer(text: str, encoding: str | None = None):
    """Write ``text`` in UTF-8, or in ``encoding`` with what it cannot carry replaced by '?'."""
    data = text.encode(encoding or "utf-8", errors="replace")
    return lambda stream: stream.write(data)


def _stdout_encoding() -> str:
    return getattr(sys.stdout, "encoding", None) or "utf-8"


def _write_stdout(write) -> None:
    if sys.stdout is None:
        raise OSError("stdout is closed")
    sys.stdout.flush()
    write(sys.stdout.buffer)
    sys.stdout.buffer.flush()


# ------------------------------------------------------------------------ tables


def _render(model: Model, parts: list[Part], options: options.OutputOptions, to_file: bool) -> str:
    """The tables as text: for a terminal (its width and colours) or for a file (FILE_WIDTH, no colours)."""
    from .render import Renderer, literal, make_console

    terminal = not to_file and stdout_is_terminal()
    buffer = _EncodedBuffer("utf-8" if to_file else _stdout_encoding())
    width = FILE_WIDTH if to_file else _table_width(terminal)
    console = make_console(buffer, width=width, terminal=terminal)
    renderer = Renderer(console, options.precision, options.full)
    makers = [lambda r: literal(_describe(model), style="dim")]
    for part in parts:
        makers += part.tables if options.only is None or part.alone is None else part.alone
    renderer.print_all(makers)
    return buffer.getvalue()


def _table_width(terminal: bool) -> int | None:
    """For stdout: None (the terminal's own width), or COLUMNS where it is sensible, else FILE_WIDTH."""
    columns = os.environ.get("COLUMNS", "")
    wanted = int(columns) if columns.isdigit() else 0
    if terminal:
        return max(MIN_WIDTH, wanted) if wanted else None
    return max(MIN_WIDTH, wanted) if wanted else FILE_WIDTH


class _EncodedBuffer(StringIO):
    """A text buffer that tells Rich the encoding it will be written in (ASCII boxes where needed)."""

    def __init__(self, encoding: str):
        super().__init__()
        self._encoding = encoding

    @property
    def encoding(self) -> str:
        return self._encoding
