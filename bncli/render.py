"""Rich tables for people: matrices, per-column values, gradient-check reports.

Data (column names, file names) is always shown literally: it goes into
``rich.text.Text`` objects, never into markup, and control characters are
shown as escapes so that nothing from the data reaches the terminal raw.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from rich import box
from rich.console import Console, Group
from rich.padding import Padding
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from .errors import printable

if TYPE_CHECKING:
    from .explain import Explanation
    from .gradcheck import CheckReport, Comparison

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
                self.console.print(renderable, soft_wrap=isinstance(renderable, Text) and not fold_lines)
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
        table = _table(title)
        table.add_column(literal(label_header), style="dim", justify="right", overflow="fold")
        for position, j in enumerate(shown_cols):
            if cut_cols and position == (len(shown_cols) + 1) // 2:
                table.add_column(ELLIPSIS_COLUMN, justify="center")
            table.add_column(literal(columns[j]), justify="right", overflow="fold")
        for position, i in enumerate(shown_rows):
            if cut_rows and position == (len(shown_rows) + 1) // 2:
                table.add_row(ELLIPSIS_ROW, *([ELLIPSIS_ROW] * (len(shown_cols) + cut_cols)))
            cells = [number(values[i, j], self.precision) for j in shown_cols]
            if cut_cols:
                cells.insert((len(shown_cols) + 1) // 2, ELLIPSIS_COLUMN)
            table.add_row(literal(row_labels[i]), *cells)
        if cut_rows or cut_cols:
            table.caption = f"{k} × {n}, summarised; --full shows every element"
            table.min_width = max(table.min_width or 0, len(table.caption))
        return table

    def check(self, report: CheckReport, columns: Sequence[str], against: str | None) -> Table:
        """One row per compared quantity, all about its worst element: errors, where, values, verdict."""
        scope = "every element" if report.probes is None else f"{report.probes} random directions"
        method = "central differences" if report.method == "central" else "complex step"
        title = f"gradient check: {method}, step {report.step:.3g}·σ, {scope}"
        if against:
            title += f"; checking {against}"
        table = _table(title)
        bound = f"err/noise ≤ {report.noise_multiple:g}" if report.rtol is None else f"err/scale ≤ {report.rtol:g}"
        table.caption = (
            "at the worst element: err = |checked − numerical|, scale = its natural scale, noise = what the "
            f"numerical and the checked value may be off by without a mistake; PASS where {bound}"
        )
        # Below 100 columns pairs of values share a column, one above the other, so nothing is cut at 80.
        stacked = self.console.width < 100
        headers = (
            ("quantity", "abs err\nerr/scale", "err/noise", "worst at", "checked\nnumerical")
            if stacked
            else ("quantity", "abs err", "err/scale", "err/noise", "worst at", "checked", "numerical")
        )
        for header in headers:
            table.add_column(header, justify="right" if header != "quantity" else "left", overflow="fold")
        if against:
            table.add_column("vs bncli", justify="right", overflow="fold")
        table.add_column("result")
        for comparison in report.results.values():
            errors = [number(comparison.abs_error, 3), number(comparison.rel_error, 3)]
            values = [number(comparison.checked, self.precision), number(comparison.numerical, self.precision)]
            if stacked:
                errors, values = [_stack(errors)], [_stack(values)]
            cells = [comparison.quantity, *errors, number(comparison.over_noise, 3), _location(comparison, columns)]
            cells += values
            if against:
                rel = comparison.analytic_rel_error
                cells.append("" if rel is None else number(rel, 3))
            cells.append(Text("PASS", style="bold green") if comparison.passed else Text("FAIL", style="bold red"))
            table.add_row(*[cell if isinstance(cell, Text) else literal(cell) for cell in cells])
        table.min_width = max(table.min_width or 0, min(len(table.caption), self.console.width))
        return table

    def failures(self, report: CheckReport, columns: Sequence[str]) -> Table:
        """For each failing quantity: how many elements exceed the bound, and the worst error per column."""
        failed = [c for c in report.results.values() if not c.passed]
        errors = np.full((len(failed), len(columns)), np.nan)
        for row, comparison in enumerate(failed):
            for column, error in comparison.column_errors.items():
                errors[row, column] = error
        labels = [f"{c.quantity}: {c.beyond} beyond" for c in failed]
        bound = f"{report.noise_multiple:g} × noise" if report.rtol is None else f"{report.rtol:g}"
        title = f"worst error / natural scale per column (bound {bound})"
        return Renderer(self.console, 3, self.full).matrix(title, errors, columns, labels, "")

    def sweep(self, report: CheckReport) -> Table:
        table = _table("numerical dx error by step (× σ)")
        table.add_column("step", justify="right")
        table.add_column("max rel error", justify="right")
        table.add_column("")
        for point in report.sweep:
            table.add_row(
                f"{point.step:.3g}",
                number(point.max_rel_error, 3),
                "← default" if point.is_default else "",
            )
        return table


def _stack(lines: list[str]) -> Text:
    """Values one above the other in one cell."""
    return Text("\n").join(literal(line) for line in lines)


def _table(title: str) -> Table:
    """A table as wide as its title at least, so that the title stays on one line where the screen allows."""
    return Table(
        title=literal(title),
        title_justify="left",
        header_style="bold",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        min_width=len(title),
    )


def _location(comparison: Comparison, columns: Sequence[str]) -> str:
    name = columns[comparison.column]
    if comparison.row is None:
        return name
    if comparison.wrt_row is not None:
        return f"{name}[{comparison.row},{comparison.wrt_row}]"
    return f"{name} row {comparison.row}"


def verdict(report: CheckReport, columns: Sequence[str], dtype: str = "float64") -> str:
    """One line: PASS/FAIL, what was compared, the method and the bound."""
    names = ", ".join(report.results)
    checked = "" if dtype == "float64" else f"{dtype} gradients, "
    probes = "" if report.probes is None else f", {report.probes} random directions"
    how = f"({checked}{report.method}, step {report.step:.3g}·σ{probes})"
    if report.rtol is None:
        largest = max(c.error_over_noise for c in report.results.values())
        bound = f"every error ≤ {report.noise_multiple:g} × its noise (largest {largest:.2g}) {how}"
    else:
        bound = f"max rel error ≤ {report.rtol:g} {how}"
    if report.passed:
        return f"PASS: {names} agree with the numerical derivatives: {bound}"
    failed = [c for c in report.results.values() if not c.passed]
    worst = "; ".join(
        f"{c.quantity} at {_location(c, columns)}: {c.checked:.{9}g} vs numerical {c.numerical:.{9}g} "
        f"({c.over_noise:.3g} × noise)"
        for c in failed
    )
    return f"FAIL: {', '.join(c.quantity for c in failed)} beyond {bound}; worst {worst}"


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


# ------------------------------------------------------------- bncli explain


def explanation(renderer: Renderer, e: Explanation) -> Group:
    """The article's derivation on one column, for people: one titled section per step.

    Each section shows the step's formulas in Unicode, its values (summarised like
    :meth:`Renderer.matrix`, all of them with ``full``) and its checks with their numbers,
    in a neutral colour: they are measurements, not verdicts.
    """
    from .explain import context, steps

    precision = renderer.precision
    parts: list = [literal(line) for line in context(e)]
    labels = [str(i) for i in range(1, e.k + 1)]
    for position, step in enumerate(steps(e), 1):
        parts += [Text(), Rule(literal(f"{position}. {step.title}", style="bold"), align="left")]
        for formula in step.formulas:
            line = Text("  ").append(literal(formula.unicode, style="bold"))
            if formula.value is not None:
                line.append(f" = {number(formula.value, precision)}")
            parts.append(line)
        if step.values is not None:
            values = step.values
            if values.matrix:
                table = renderer.matrix(f"{values.title} ({e.k} × {e.k})", values.values, labels, labels, "i\\j")
            else:
                table = renderer.matrix("", values.values, [unicode for unicode, _ in values.headers], labels, "i")
            parts.append(Padding(table, (0, 0, 0, 2)))
        parts += [
            Padding(literal(note, style="cyan" if note.startswith("check") else "dim"), (0, 0, 0, 2))
            for note in step.notes
        ]
    return Group(*parts)
