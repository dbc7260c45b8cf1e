"""The one output dispatcher: a command's result plus the output options → what is written, and where.

A result becomes a :class:`Document`: named *parts* (y, s, stats; dx, dw, db, dy,
jacobian, check; an audit report; an explanation) and the pictures it can draw.
Every format is a function of the parts, so ``--only`` means the same everywhere:
csv/tsv/npy print that part's matrix, json only that part's keys (plus
``columns``), a table only that part's tables. Without ``--only``, csv/tsv/npy
print the first part's matrix and json and tables carry every part that was
computed or asked for. Something asked for that the chosen output cannot carry
is refused with one line naming the fix (:func:`validate`, before anything is
computed); a check's verdict goes to stderr unless a table on stdout shows it.

Formats: table, csv, tsv, json, npy, markdown, and by --output's extension svg
and html (the table view as a terminal shows it, pictures included) and png and
pdf (the pictures, drawn by matplotlib).

Nothing is written until everything that goes out has been made and found
finite; files (``--output``, ``--save-running``) are written together at the end,
each atomically.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from io import StringIO
from pathlib import Path

import numpy as np

from . import options
from .commands import ExplainResult, ForwardResult, GradResult, Model, require_finite
from .errors import InputError
from .inputs import note
from .io.files import check_output_path, write_files_atomically
from .io.write import format_json, write_delimited
from .options import FIGURE_FORMATS, ONE_MATRIX_FORMATS, PICTURE_FILE_FORMATS, RECORDED_FORMATS

MATRIX_PARTS = (set(options.FORWARD_PARTS) | set(options.GRAD_PARTS)) - {"check"}  # what csv can print alone
# A table that goes to a file or a pipe is this wide, whatever the terminal.
FILE_WIDTH = 120
MIN_WIDTH = 40
# The width of recorded terminal pictures (svg, html) when stdout is no terminal to copy.
RECORDED_WIDTH = 100


def stdout_is_terminal() -> bool:
    try:
        return sys.stdout is not None and sys.stdout.isatty()
    except ValueError:  # closed
        return False


def resolve_format(outputs: options.OutputOptions, formats: tuple[str, ...], stdout_is_tty: bool) -> str:
    """--format; else --output's extension (a picture file, or one of ``formats``); else by stdout.

    ``formats[0]`` is what a terminal gets and ``formats[1]`` what a pipe or any other file gets.
    """
    if outputs.format:
        return outputs.format
    if outputs.output:
        implied = format_for_path(outputs.output)
        writable = formats + PICTURE_FILE_FORMATS
        if implied is None or (implied not in writable and "csv" in formats):
            return formats[1]  # forward and grad: "anything else csv", as the contract has it
        if implied not in writable:
            suffix = Path(outputs.output).suffix
            raise InputError(
                f"--output {outputs.output}: a {suffix} file holds {implied}, which this command does not write "
                f"({', '.join(formats)}); name the file for one of them, or give --format"
            )
        return implied
    return formats[0] if stdout_is_tty else formats[1]


def format_for_path(path: str) -> str | None:
    """The output format that a file name implies (.csv .json .tsv .npy .md .svg .html .png .pdf), or None."""
    suffix = Path(path).suffix.lower()
    return _FORMAT_BY_SUFFIX.get(suffix)


_FORMAT_BY_SUFFIX = {
    ".csv": "csv",
    ".json": "json",
    ".tsv": "tsv",
    ".npy": "npy",
    ".md": "markdown",
    ".svg": "svg",
    ".html": "html",
    ".htm": "html",
    ".png": "png",
    ".pdf": "pdf",
}


@dataclass(frozen=True)
class Part:
    """One selectable piece of a result, as each format shows it.

    ``matrix`` gives (values, header, row labels) for csv/tsv/npy; ``json`` the keys
    it adds; ``tables`` its Rich renderables (functions of a Renderer) in the full
    view and ``alone`` those shown when --only picks it (default: the same).
    ``in_json``/``in_table``: part of the full json/table view. ``markdown``: its
    Markdown text, where it has one. ``pictures``: what --plot draws of it.
    """

    name: str
    json: Callable[[], dict]
    tables: list[Callable]
    matrix: Callable[[], tuple[np.ndarray, list[str], list[str] | None]] | None = None
    in_json: bool = True
    in_table: bool = True
    alone: list[Callable] | None = None
    markdown: Callable[[int, bool], str] | None = None  # (precision, full) → text
    pictures: list[Callable] = field(default_factory=list)  # each → a bncli.pictures.Picture
    drawn_instead: bool = False  # with --plot its pictures replace its tables (e.g. a Jacobian's numbers)


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
        parts.append(
            Part(
                "check", lambda: {"check": check_json(result)}, _check_tables(result), pictures=_check_pictures(result)
            )
        )
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
        pictures=[
            partial(_picture, "Heatmap", j, f"∂y/∂x of column {columns[c]} ({k}×{k})") for c, j in jacobians.items()
        ],
        drawn_instead=True,
    )


@dataclass
class Document:
    """What a result shows: its parts, and around them what every format needs."""

    parts: list[Part]
    columns: list[str]  # names for ``columns`` in json and for naming non-finite values
    context: str | None = None  # the first line of the table view
    meta: dict = field(default_factory=dict)  # keys of the full json besides the parts'
    has_header: bool = True
    exit_code: int = 0
    verdict: str | None = None  # on stderr when the output does not carry the ``check`` part
    files: list[tuple[str, str, Callable]] = field(default_factory=list)  # (option, path, write) besides -o


def forward_document(result: ForwardResult, save_running: str | None = None) -> Document:
    return _model_document(result.model, _forward_parts(result), save_running=save_running)


def grad_document(result: GradResult, save_running: str | None = None) -> Document:
    document = _model_document(result.model, _grad_parts(result), save_running=save_running)
    document.exit_code = result.exit_code
    document.verdict = None if result.check is None else verdict_line(result)
    return document


def _model_document(model: Model, parts: list[Part], save_running: str | None) -> Document:
    files = []
    if save_running and model.updated is not None:
        files.append(("--save-running", save_running, _text_writer(format_json(_running_record(model)))))
    return Document(parts, model.columns, _describe(model), _meta_json(model), model.data.has_header, files=files)


def audit_document(report) -> Document:
    from .auditing import report_json

    tables = [partial(_audit_tables, report)]
    part = Part("report", lambda: report_json(report), tables, pictures=[partial(_audit_grid, report)])
    return Document([part], [], exit_code=0 if report.passed else 1)


def explain_document(result: ExplainResult) -> Document:
    from .explain import explanation_json, explanation_markdown

    e = result.explanation

    def tables_of(r):
        from .render import explanation

        return explanation(r, e)

    def markdown(precision: int, full: bool) -> str:
        return explanation_markdown(e, precision, full)

    part = Part("explanation", lambda: explanation_json(e), [tables_of], markdown=markdown)
    return Document([part], [e.column], context=None)


def _audit_tables(report, renderer) -> list:
    """The audit's renderables, laid out for the renderer's width."""
    from .render import audit_renderables

    return audit_renderables(report, renderer.console.width)


def _audit_grid(report):
    from .auditing import QUANTITIES
    from .pictures import AuditGrid

    cases = report.cases
    labels = [f"{r.name} {r.dtype}" for r in cases]
    ratios = [[np.nan if r.quantities[q].ratio is None else r.quantities[q].ratio for q in QUANTITIES] for r in cases]
    letters = [[r.quantities[q].verdict[0] for q in QUANTITIES] for r in cases]
    target = report.target.rsplit("/", 1)[-1]  # a path's last part: the title must fit a picture
    return AuditGrid(labels, QUANTITIES, ratios, letters, title=f"audit of {target}: error / budget")


def _check_pictures(result: GradResult) -> list[Callable]:
    """The check's error map (when every element was compared) and its sweep curve."""
    report = result.check.report
    dx = report.results.get("dx")
    made = []
    if dx is not None and dx.errors is not None:
        title = f"dx: error over the bound ({report.rtol:g}), every element"
        made.append(
            partial(_picture, "ErrorMap", dx.errors / report.rtol, col_labels=result.model.columns, title=title)
        )
    if report.sweep:
        steps = [point.step for point in report.sweep]
        errors = [point.max_rel_error for point in report.sweep]
        title = "numerical dx error against the step (× σ)"
        made.append(partial(_picture, "SweepPlot", steps, errors, report.rtol, report.step, title=title))
    return made


def _picture(kind: str, *args, **kwargs):
    """A picture of :mod:`bncli.pictures`, imported only when one is drawn."""
    from . import pictures

    return getattr(pictures, kind)(*args, **kwargs)


def _meta_json(model: Model) -> dict:
    """What every full json of forward and grad carries besides the parts."""
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


def validate(
    outputs: options.OutputOptions,
    *,
    formats: tuple[str, ...],
    extras: dict[str, str] | None = None,
    default: str | None = None,
    pictures: bool = False,
    stdout_is_tty: bool,
) -> str:
    """Refuse, before anything is computed, output options that cannot show what was asked for.

    ``formats``: what the command can write (the first for a terminal, the second
    otherwise); ``extras`` maps each part asked for beyond the default (e.g.
    "stats": "--stats") to the option that asked; ``pictures``: whether the
    command has pictures to draw with --plot. Returns the format.
    """
    if outputs.output == "":
        raise InputError("--output '': give a file name (or leave --output out for stdout)")
    fmt = resolve_format(outputs, formats, stdout_is_tty)
    if fmt not in formats + PICTURE_FILE_FORMATS:
        raise InputError(f"--format {fmt}: this command writes {', '.join(formats)}")
    if fmt in PICTURE_FILE_FORMATS and not outputs.output:
        raise InputError(f"{fmt} pictures are written to a file: give --output NAME.{fmt}")
    if fmt == "npy" and not outputs.output and stdout_is_tty:
        raise InputError("-f npy writes binary data: give --output FILE.npy or pipe it")
    _validate_parts(outputs, fmt, extras or {}, default)
    if (outputs.plot or fmt in FIGURE_FORMATS) and not pictures:
        asked = "--plot" if outputs.plot else f"--output {outputs.output}"
        raise InputError(
            f"{asked}: nothing to draw here; pictures are drawn of the Jacobian (grad --jacobian), "
            "the check (grad --check, --sweep) and audits"
        )
    if outputs.plot and fmt not in ("table", *PICTURE_FILE_FORMATS):
        raise InputError(
            f"--plot draws pictures, which {fmt} cannot carry: use -f table, or -o NAME.svg, .html or .png"
        )
    if outputs.output:
        check_output_path(outputs.output, "--output")
    return fmt


def _validate_parts(outputs: options.OutputOptions, fmt: str, extras: dict[str, str], default: str | None) -> None:
    if fmt in ONE_MATRIX_FORMATS:
        shown = outputs.only or default
        for part, option in extras.items():
            if part != shown:
                alone = f"--only {part} for it alone, or " if part in MATRIX_PARTS else ""
                fix = f"use {alone}-f json or -f table for everything"
                raise InputError(f"{option}: {fmt} output carries one matrix ({shown}); {fix}")
    elif outputs.only:
        for part, option in extras.items():
            if part != outputs.only:
                raise InputError(f"{option}: --only {outputs.only} shows {outputs.only} alone; drop one of them")


# ----------------------------------------------------------------------- writing


def emit(document: Document, outputs: options.OutputOptions, fmt: str) -> int:
    """Show ``document`` as ``fmt`` on stdout or in --output, write its other files; the exit code."""
    parts = {part.name: part for part in document.parts}
    shown = _selected(parts, outputs.only, fmt)
    if fmt in ONE_MATRIX_FORMATS:
        write = _matrix_writer(shown[0], fmt, document)
    elif fmt == "json":
        obj = ({"columns": document.columns} if outputs.only else document.meta) | {
            key: value for part in shown for key, value in part.json().items()
        }
        _require_finite_json(obj, document.columns)
        write = _text_writer(format_json(obj))
    elif fmt == "markdown":
        write = _text_writer(shown[0].markdown(outputs.precision, outputs.full))
    elif fmt in FIGURE_FORMATS:
        drawn = [make() for part in shown for make in part.pictures]
        if not drawn:
            raise InputError(f"--output {outputs.output}: nothing to draw in what --only {outputs.only} shows")
        write = _figure_writer(drawn, fmt)
    else:
        for part in shown:  # what the tables show, as json would carry it
            _require_finite_json(part.json(), document.columns)
        text = _render(document, shown, outputs, fmt)
        write = _text_writer(text, None if outputs.output else _stdout_encoding())
    shows_verdict = fmt == "table" and not outputs.output and any(part.name == "check" for part in shown)
    if document.verdict is not None and not shows_verdict:  # whoever ran it hears the verdict
        note(document.verdict)
    files = ([("--output", outputs.output, write)] if outputs.output else []) + document.files
    write_files_atomically(files, before_commit=None if outputs.output else partial(_write_stdout, write))
    return document.exit_code


def _selected(parts: dict[str, Part], only: str | None, fmt: str) -> list[Part]:
    if only is not None:
        if only not in parts or (fmt in ONE_MATRIX_FORMATS and parts[only].matrix is None):
            raise _unavailable(only, parts, fmt)
        return [parts[only]]
    if fmt in ONE_MATRIX_FORMATS:
        return [next(iter(parts.values()))]
    flag = "in_json" if fmt == "json" else "in_table"
    return [part for part in parts.values() if getattr(part, flag)]


def _unavailable(only: str, parts: dict[str, Part], fmt: str) -> InputError:
    if only == "jacobian":
        if "jacobian" in parts:
            return InputError("--only jacobian prints one column's Jacobian: choose it with --column NAME")
        return InputError("--only jacobian: no Jacobian was computed")
    if only in parts:
        return InputError(f"--only {only}: {fmt} output carries matrices only; use -f json or -f table for it")
    return InputError(f"--only {only}: not available here; choose one of {', '.join(parts)}")


def _matrix_writer(part: Part, fmt: str, document: Document):
    values, header, row_labels = part.matrix()
    require_finite(part.name, values, document.columns)
    if fmt == "npy":
        return lambda stream: np.save(stream, np.asarray(values, dtype=np.float64), allow_pickle=False)
    header = header if document.has_header else None
    delimiter = "," if fmt == "csv" else "\t"
    return lambda stream: write_delimited(stream, values, header, delimiter, row_labels)


def _figure_writer(pictures: list, fmt: str):
    """The pictures drawn by matplotlib, made now (so that a missing matplotlib fails before any write)."""
    from io import BytesIO

    from .figures import save_figure

    buffer = BytesIO()
    save_figure(pictures, buffer, fmt)
    data = buffer.getvalue()
    return lambda stream: stream.write(data)


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
    elif isinstance(obj, float | np.floating) and not np.isfinite(obj):
        raise InputError(f"{name} is not finite (the data's magnitude is near a limit of float64); rescale the data")
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


def _render(document: Document, parts: list[Part], outputs: options.OutputOptions, fmt: str) -> str:
    """The table view as text (for a terminal, a pipe or a file) or as svg/html (recorded as a terminal shows it)."""
    from .render import Renderer, literal, make_console

    recorded = fmt in RECORDED_FORMATS
    terminal = recorded or (not outputs.output and stdout_is_terminal())
    buffer = _EncodedBuffer("utf-8" if outputs.output else _stdout_encoding())
    if recorded:
        width = _table_width(True) if stdout_is_terminal() else RECORDED_WIDTH
    else:
        width = FILE_WIDTH if outputs.output else _table_width(terminal)
    height = _terminal_size().lines if terminal and not recorded else 25
    console = make_console(buffer, width=width, terminal=terminal, record=recorded, height=height)
    renderer = Renderer(console, outputs.precision, outputs.full)
    makers = [] if document.context is None else [lambda r: literal(document.context, style="dim")]
    for part in parts:
        if not (outputs.plot and part.drawn_instead):
            makers += part.tables if outputs.only is None or part.alone is None else part.alone
        if outputs.plot:
            makers += [partial(_draw, make) for make in part.pictures]
    renderer.print_all(makers, fold_lines=recorded)
    if fmt == "svg":
        return console.export_svg(title="bncli")
    if fmt == "html":
        return console.export_html()
    return buffer.getvalue()


def _draw(make: Callable, renderer) -> object:
    return make()


def _table_width(terminal: bool) -> int:
    """For stdout: COLUMNS where it is set, else the terminal's own width (asked here: Rich takes
    80 on TERM=dumb whatever the screen), else FILE_WIDTH; never below MIN_WIDTH."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return max(MIN_WIDTH, int(columns))
    if terminal:
        return max(MIN_WIDTH, _terminal_size().columns)
    return FILE_WIDTH


def _terminal_size():
    import shutil

    return shutil.get_terminal_size((FILE_WIDTH, 25))


class _EncodedBuffer(StringIO):
    """A text buffer that tells Rich the encoding it will be written in (ASCII boxes where needed)."""

    def __init__(self, encoding: str):
        super().__init__()
        self._encoding = encoding

    @property
    def encoding(self) -> str:
        return self._encoding
