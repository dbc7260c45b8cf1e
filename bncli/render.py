"""Rich for people: the console, matrices summarised to fit it, titled tables, a progress bar.

Data (column names, file names) is always shown literally: it goes into
``rich.text.Text`` objects, never into markup, and control characters are
shown as escapes so that nothing from the data reaches the terminal raw.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from io import StringIO

import numpy as np
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .errors import printable

# A table that goes to a file is this wide, whatever the terminal; one into a pipe is COLUMNS wide
# where it is set, else PIPE_WIDTH.
FILE_WIDTH = 120
PIPE_WIDTH = 80
MIN_WIDTH = 40
# No wider than this, whatever COLUMNS says: Rich's cost grows with the width (COLUMNS=10000000 took
# 2.7 GB and 47 s), and no screen is wider.
MAX_WIDTH = 1000
# A matrix's column is as wide as its numbers, or as its name up to this many characters (beyond, it folds).
NAME_WIDTH = 24
# A column that may wrap (text) is given this many characters at least before a table is laid out
# another way: below it, folding would cut words (and the numbers in them, as in "Hb row 12").
TEXT_COLUMN_FLOOR = 12
# The width of recorded terminal pictures (svg, html) when stdout is no terminal to copy.
RECORDED_WIDTH = 100
ELLIPSIS_ROW = "⋮"
ELLIPSIS_COLUMN = "…"


def literal(text: str, style: str = "") -> Text:
    """``text`` as plain text: no markup, control characters escaped (e.g. ``\\x1b``)."""
    return Text(printable(text), style=style)


def number(value: float, precision: int) -> str:
    return "" if np.isnan(value) else f"{value:.{precision}g}"


def _kept(count: int, limit: int | None) -> tuple[list[int], bool]:
    """Indices to show of ``count``: all, or the first and last halves of ``limit``."""
    if limit is None or count <= limit:
        return list(range(count)), False
    head = (limit + 1) // 2
    tail = limit // 2
    return list(range(head)) + list(range(count - tail, count)), True


def _with_gap(shown: list[int], cut: bool) -> list[int | None]:
    """``shown`` with None in the middle where indices were cut: where the ellipsis goes."""
    if not cut:
        return shown
    middle = (len(shown) + 1) // 2
    return [*shown[:middle], None, *shown[middle:]]


def make_console(file, width: int | None, terminal: bool, record: bool = False, height: int = 25) -> Console:
    """A Rich console writing to ``file``: colours only for a terminal (and never with NO_COLOR or TERM=dumb).

    ``record``: kept for export as SVG or HTML, in full colour whatever the real terminal is.
    """
    return Console(
        file=file,
        width=width,
        height=height,  # with the width: Rich would take 80 × 25 on TERM=dumb, whatever the screen
        force_terminal=terminal,
        color_system="truecolor" if record else "auto",
        no_color=not terminal or None,
        highlight=False,
        soft_wrap=False,
        emoji=False,
        record=record,
    )


class Renderer:
    """Renders results on a Rich console at a given precision, summarised unless ``full``."""

    def __init__(self, console: Console, precision: int = 6, full: bool = False):
        self.console = console
        self.precision = precision
        self.full = full

    def print_all(self, makers, fold_lines: bool = False) -> None:
        """Print each renderable (made by a function of this renderer, one or a list), a blank line after each.

        A line of text (context, verdict) stays one line, grep-able, and the terminal may fold
        it; ``fold_lines`` folds it here instead (for a recording, which would cut it).
        """
        for make in makers:
            made = make(self)
            for renderable in made if isinstance(made, list) else [made]:
                if isinstance(renderable, Text):
                    self.console.print(renderable, soft_wrap=not fold_lines)
                else:
                    self.console.print(_Trimmed(fitted(renderable, self.console)))
                if not isinstance(renderable, Table) or renderable.caption:  # else the table's last line is blank
                    self.console.print()

    def _limits(self, label_width: int) -> tuple[int | None, int | None]:
        if self.full:
            return None, None
        cell = self.precision + 10
        columns = max(2, (self.console.width - label_width - 4) // cell)
        rows = max(6, min(20, (self.console.height or 24) - 6))
        return rows, columns

    def matrix(
        self,
        title: str,
        values: np.ndarray,
        columns: Sequence[str],
        row_labels: Sequence[str] | None = None,
        label_header: str = "row",
    ) -> Table:
        """A matrix with named columns and labelled rows, summarised with ellipses if too large."""
        k, n = values.shape
        row_labels = [str(i) for i in range(k)] if row_labels is None else list(row_labels)
        max_rows, max_cols = self._limits(max(len(label) for label in row_labels) if row_labels else 3)
        shown_rows, cut_rows = _kept(k, max_rows)
        shown_cols, cut_cols = _kept(n, max_cols)
        table = titled_table(title)
        table.add_column(literal(label_header), style="dim", justify="right", overflow="fold")
        for j in _with_gap(shown_cols, cut_cols):
            if j is None:
                table.add_column(ELLIPSIS_COLUMN, justify="center")
            else:  # numbers never wrap; a name longer than them and than NAME_WIDTH folds above them
                widest = max((len(number(values[i, j], self.precision)) for i in shown_rows), default=1)
                header = Text(printable(columns[j]), overflow="fold", no_wrap=False)
                width = max(widest, min(header.cell_len, NAME_WIDTH))
                table.add_column(header, justify="right", no_wrap=True, max_width=width)
        for i in _with_gap(shown_rows, cut_rows):
            if i is None:
                table.add_row(ELLIPSIS_ROW, *([ELLIPSIS_ROW] * (len(shown_cols) + cut_cols)))
                continue
            cells = [ELLIPSIS_COLUMN if j is None else number(values[i, j], self.precision)
                     for j in _with_gap(shown_cols, cut_cols)]  # fmt: skip
            table.add_row(literal(row_labels[i]), *cells)
        if cut_rows or cut_cols:
            table.caption = f"{k} × {n}, summarised; --full shows every element"
            table.min_width = max(table.min_width or 0, len(table.caption))
        return table


def titled_table(title: str) -> Table:
    """A table as wide as its title at least, so that the title stays on one line where the screen allows."""
    return Table(
        title=literal(title),
        title_justify="left",
        header_style="bold",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        min_width=len(title),
    )


def fitted(renderable, console: Console):
    """``renderable``, or for a table too narrow to show its numbers whole at this width, the same
    table as records: one "header  value" line per cell, a record per row.

    Numbers sit in columns that do not wrap (``no_wrap``); Rich would squeeze even those, cutting
    numbers, when the table cannot fit otherwise. Text columns may wrap, down to
    :data:`TEXT_COLUMN_FLOOR` characters.
    """
    if not isinstance(renderable, Table) or _narrowest(renderable, console) <= console.width:
        return renderable
    return _records(renderable, console.width)


def _narrowest(table: Table, console: Console) -> int:
    """The least width at which ``table`` shows every cell of its no-wrap columns whole."""
    options = console.options.update_width(MAX_WIDTH * 4)
    needed = table._extra_width  # borders (Rich's own measure, which otherwise assumes any column may shrink)
    for column in table.columns:
        measured = table._measure_column(console, options, column)  # padding included
        needed += measured.maximum if column.no_wrap else min(measured.maximum, TEXT_COLUMN_FLOOR + 2)
    return needed


def _records(table: Table, width: int) -> Table:
    """``table`` turned on its side: for each row, its cells one under the other, each after its header."""
    records = Table(
        title=table.title,
        title_justify="left",
        caption=table.caption,
        show_header=False,
        box=box.SIMPLE,
        pad_edge=False,
        min_width=min(len(table.title or ""), width),  # the title on one line where the screen allows
    )
    records.add_column(style="dim", overflow="fold", max_width=max(8, width // 3))
    records.add_column(overflow="fold")
    headers = [column.header for column in table.columns]
    rows = zip(*(column.cells for column in table.columns), strict=True)
    for position, cells in enumerate(rows):
        for index, (header, cell) in enumerate(zip(headers, cells, strict=True)):
            last = index == len(headers) - 1
            records.add_row(header, cell, end_section=last and position < table.row_count - 1)
    return records


class _Trimmed:
    """A renderable's lines without their trailing blanks: a table's last column is padded to its width,
    a Padding to the console's. Blanks that show a colour (a picture's cells) stay."""

    def __init__(self, renderable):
        self.renderable = renderable

    def __rich_console__(self, console: Console, options):
        from rich.segment import Segment

        for line in console.render_lines(self.renderable, options, pad=False):
            while line and _blank(line[-1]):
                last = line.pop()
                if last.text.rstrip(" "):
                    line.append(Segment(last.text.rstrip(" "), last.style, last.control))
                    break
            yield from line
            yield Segment.line()


def _blank(segment) -> bool:
    """Whether the segment ends in spaces that show nothing: no background, no reverse, no underline."""
    style = segment.style
    invisible = style is None or not (style.bgcolor or style.reverse or style.underline)
    return segment.control is None and invisible and segment.text.endswith(" ")


def view(
    makers: list,
    precision: int,
    full: bool,
    *,
    to_file: bool,
    stdout_terminal: bool,
    encoding: str,
    export: str | None = None,
) -> str:
    """The table view of ``makers`` (see :meth:`Renderer.print_all`) as text, or recorded as ``export`` (svg, html).

    It is as wide as the terminal it goes to (COLUMNS where set), :data:`FILE_WIDTH` in a file,
    COLUMNS or :data:`PIPE_WIDTH` in a pipe, and a recording as wide as the terminal it is made
    on (else :data:`RECORDED_WIDTH`); never wider than :data:`MAX_WIDTH`.
    """
    recorded = export is not None
    terminal = recorded or (not to_file and stdout_terminal)
    if recorded:
        width = _table_width(True) if stdout_terminal else RECORDED_WIDTH
    else:
        width = FILE_WIDTH if to_file else _table_width(terminal)
    width = min(width, MAX_WIDTH)
    height = _terminal_size().lines if terminal and not recorded else 25
    buffer = _EncodedBuffer(encoding)
    console = make_console(buffer, width=width, terminal=terminal, record=recorded, height=height)
    Renderer(console, precision, full).print_all(makers, fold_lines=recorded)
    if export == "svg":
        return console.export_svg(title="bncli")
    if export == "html":
        return console.export_html()
    return buffer.getvalue()


def _table_width(terminal: bool) -> int:
    """For stdout: COLUMNS where it is set, else the terminal's own width (asked here: Rich takes
    80 on TERM=dumb whatever the screen), else PIPE_WIDTH; from MIN_WIDTH to MAX_WIDTH."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        width = int(columns)
    else:
        width = _terminal_size().columns if terminal else PIPE_WIDTH
    return min(MAX_WIDTH, max(MIN_WIDTH, width))


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


class ProgressBar:
    """A Rich progress bar on stderr, shown only on a terminal and only after about a second.

    ``with ProgressBar("gradient check") as progress:`` gives a callback ``progress(done,
    total)``, or None when stderr is not a terminal.
    """

    DELAY = 1.0

    def __init__(self, description: str):
        self.description = description
        self.bar = None
        self.task = None

    def __enter__(self):
        import sys
        import time

        self.started = time.monotonic()
        try:
            terminal = sys.stderr is not None and sys.stderr.isatty()
        except ValueError:
            terminal = False
        return self if terminal else None

    def __call__(self, done: int, total: int) -> None:
        import sys
        import time

        if self.bar is None:
            if time.monotonic() - self.started < self.DELAY:
                return
            from rich.progress import Progress

            self.bar = Progress(console=Console(file=sys.stderr), transient=True)
            self.bar.start()
            self.task = self.bar.add_task(self.description, total=total)
        self.bar.update(self.task, completed=done, total=total)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.stop()
        return False
