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

import sys
from collections.abc import Callable
from functools import partial

import numpy as np

from . import options
from .document import Document, Part
from .errors import InputError, note
from .formats import stdout_is_terminal
from .io.files import write_files_atomically
from .io.write import format_json, write_delimited
from .options import FIGURE_FORMATS, ONE_MATRIX_FORMATS, RECORDED_FORMATS

MATRIX_PARTS = (set(options.FORWARD_PARTS) | set(options.GRAD_PARTS)) - {"check"}  # what csv can print alone


# ----------------------------------------------------------------------- writing


def emit(document: Document, outputs: options.OutputOptions, fmt: str) -> int:
    """Show ``document`` as ``fmt`` on stdout or in --output, write its other files; the exit code."""
    shown = _selected(_by_name(document), outputs.only, fmt)
    write = _writer(document, shown, outputs, fmt)
    shows_verdict = fmt == "table" and not outputs.output and any(part.name == document.verdict_part for part in shown)
    if document.verdict is not None and not shows_verdict:  # whoever ran it hears the verdict
        note(document.verdict)
    files = [(option, path, _text_writer(text)) for option, path, text in document.files]
    if outputs.output:
        files.insert(0, ("--output", outputs.output, write))
    write_files_atomically(files, before_commit=None if outputs.output else partial(_write_stdout, write))
    return document.exit_code


def _writer(document: Document, shown: list[Part], outputs: options.OutputOptions, fmt: str) -> Callable:
    """What writes ``shown`` as ``fmt`` to a binary stream, made now: every number in it found finite."""
    if fmt in ONE_MATRIX_FORMATS:
        return _matrix_writer(shown[0], fmt, document)
    if fmt == "json":
        obj = _json_object(document, shown, outputs.only)
        _require_finite_json(obj, document)
        return _text_writer(format_json(obj))
    if fmt == "markdown":
        return _text_writer(shown[0].markdown(outputs.precision, outputs.full))
    if fmt in FIGURE_FORMATS:
        return _figure_writer(shown, outputs, fmt)
    for part in shown:  # what the tables show, as json would carry it
        _require_finite_json(part.json(), document)
    text = _render(document, shown, outputs, fmt)
    return _text_writer(text, None if outputs.output else _stdout_encoding())


def _json_object(document: Document, shown: list[Part], only: str | None) -> dict:
    return ({"columns": document.columns} if only else document.meta) | {
        key: value for part in shown for key, value in part.json().items()
    }


def as_text(document: Document, only: str | None = None) -> str:
    """The table view (of part ``only``, or of all) as plain text, as a file gets it: no colour, and
    no spaces that pad a line to the table's width."""
    from .render import view

    outputs = options.OutputOptions(only=only)
    shown = _selected(_by_name(document), only, "table")
    text = view(_view_makers(document, shown, outputs), outputs.precision, outputs.full, to_file=True,
                stdout_terminal=False, encoding="utf-8")  # fmt: skip
    return "\n".join(line.rstrip() for line in text.splitlines()).strip("\n") + "\n"


def as_json(document: Document, only: str | None = None) -> dict:
    """What ``-f json`` (with ``--only``) prints, as Python objects: dicts, lists, floats, strings."""
    import json

    obj = _json_object(document, _selected(_by_name(document), only, "json"), only)
    _require_finite_json(obj, document)
    return json.loads(format_json(obj))


def _by_name(document: Document) -> dict[str, Part]:
    return {part.name: part for part in document.parts}


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
    _require_finite_array(part.name, values, document)
    if fmt == "npy":
        return lambda stream: np.save(stream, np.asarray(values, dtype=np.float64), allow_pickle=False)
    header = header if document.has_header else None
    delimiter = "," if fmt == "csv" else "\t"
    return lambda stream: write_delimited(stream, values, header, delimiter, row_labels)


def _figure_writer(shown: list[Part], outputs: options.OutputOptions, fmt: str):
    """The pictures drawn by matplotlib, made now (before any write)."""
    from io import BytesIO

    from .figures import save_figure

    drawn = [make() for part in shown for make in part.pictures]
    if not drawn:
        raise InputError(f"--output {outputs.output}: nothing to draw in what --only {outputs.only} shows")
    buffer = BytesIO()
    save_figure(drawn, buffer, fmt)
    data = buffer.getvalue()
    return lambda stream: stream.write(data)


def _require_finite_json(obj, document: Document, name: str = "") -> None:
    """Every number in ``obj`` finite (json cannot carry NaN or infinity); else an input error naming it."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            _require_finite_json(value, document, f"{name}.{key}" if name else str(key))
    elif isinstance(obj, np.ndarray) and obj.dtype.kind == "f":
        _require_finite_array(name, obj, document)
    elif isinstance(obj, float | np.floating) and not np.isfinite(obj):
        raise _not_finite(name)
    elif isinstance(obj, list | tuple):
        for item in obj:
            _require_finite_json(item, document, name)


def _require_finite_array(name: str, values: np.ndarray, document: Document) -> None:
    if document.require_finite is not None:
        document.require_finite(name, values, document.columns)
    elif not np.isfinite(values).all():
        raise _not_finite(name)


def _not_finite(name: str) -> InputError:
    return InputError(f"{name} is not finite (the data's magnitude is near a limit of float64); rescale the data")


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
    from .render import view

    return view(
        _view_makers(document, parts, outputs),
        outputs.precision,
        outputs.full,
        to_file=bool(outputs.output),
        stdout_terminal=stdout_is_terminal(),
        encoding="utf-8" if outputs.output else _stdout_encoding(),
        export=fmt if fmt in RECORDED_FORMATS else None,
    )


def _view_makers(document: Document, parts: list[Part], outputs: options.OutputOptions) -> list[Callable]:
    """The table view's renderables in order: the context line, then each part's tables and pictures."""
    from .render import literal

    makers = [] if document.context is None else [lambda r: literal(document.context, style="dim")]
    for part in parts:
        if not (outputs.plot and part.drawn_instead):
            makers += part.tables if outputs.only is None or part.alone is None else part.alone
        if outputs.plot:
            makers += [partial(_draw, make) for make in part.pictures]
    return makers


def _draw(make: Callable, renderer) -> object:
    return make()
