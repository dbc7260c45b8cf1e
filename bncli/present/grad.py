"""A grad result as a Document: dx, dw, db, dy, the Jacobians and the gradient check, in every format.

The check's json, its tables and its one-line verdict are made here and nowhere else. This
module imports Rich only when a table is made.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING

import numpy as np

from ..commands import GradResult
from ..document import Document, Part
from .forward import model_document

if TYPE_CHECKING:
    from rich.table import Table
    from rich.text import Text

    from ..gradcheck import CheckReport, Comparison
    from ..render import Renderer


def grad_document(result: GradResult, save_running: str | None = None) -> Document:
    document = model_document(result.model, _grad_parts(result), save_running=save_running)
    document.exit_code = result.exit_code
    document.verdict = None if result.check is None else verdict_line(result)
    return document


def _matrix_part(name, title, values, columns, *, row_labels=None, label_header="row", **flags) -> Part:
    """A part that is one matrix, with the same numbers in every format."""
    return Part(
        name,
        lambda: {name: values},
        [lambda r: r.matrix(title, values, columns, row_labels, label_header)],
        lambda: (values, columns, row_labels),
        **flags,
    )


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


# The Jacobian's rows and columns, as its table's corner names them (∂y[i]/∂x[j]).
JACOBIAN_AXES = ("i: ∂y[i]", "j: ∂x[j]")


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
            partial(_picture, "Heatmap", j, f"∂y/∂x of column {columns[c]} ({k}×{k})", axis_names=JACOBIAN_AXES)
            for c, j in jacobians.items()
        ],
        drawn_instead=True,
    )


def _check_pictures(result: GradResult) -> list[Callable]:
    """The check's error map (when every element was compared) and its sweep curve."""
    report = result.check.report
    dx = report.results.get("dx")
    made = []
    if dx is not None and dx.errors is not None:
        bound = f"{report.noise_multiple:g} × noise" if report.rtol is None else f"{report.rtol:g}"
        title = f"dx: error over the bound ({bound}), every element"
        made.append(partial(_picture, "ErrorMap", dx.errors, col_labels=result.model.columns, title=title))
    if report.sweep:
        steps = [point.step for point in report.sweep]
        errors = [point.max_rel_error for point in report.sweep]
        title = "numerical dx error against the step (× σ)"
        bound = report.rtol if report.rtol is not None else report.noise_multiple * dx.noise
        made.append(partial(_picture, "SweepPlot", steps, errors, bound, report.step, title=title))
    return made


def _picture(kind: str, *args, **kwargs):
    """A picture of :mod:`bncli.pictures`, imported only when one is drawn."""
    from .. import pictures

    return getattr(pictures, kind)(*args, **kwargs)


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
            "numerical": c.numerical,
            "noise": c.noise,
            "error_over_noise": c.error_over_noise,
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
        "noise_multiple": report.noise_multiple,
        "passed": report.passed,
        "probes": report.probes,
        "dy": "file" if result.dy.path is not None else f"seed {result.dy.seed}",
        "results": results,
        "findings": [finding.json() for finding in result.check.findings],
    }
    if report.sweep:
        obj["sweep"] = [
            {"step": p.step, "max_rel_error": p.max_rel_error, "default": p.is_default} for p in report.sweep
        ]
    return obj


def verdict_line(result: GradResult) -> str:
    """The check's verdict in one line, with what a user checking their own gradient must know."""
    line = _verdict(result.check.report, result.model.columns, result.model.dtype)
    if result.check.against and result.dy.path is None:
        line += f" (for {result.dy.label}, drawn by bncli"
        line += "; if you computed yours for another dy, pass that dy with --dy)" if not result.check.passed else ")"
    return line


def _check_tables(result: GradResult) -> list[Callable]:
    from ..render import literal

    report, columns = result.check.report, result.model.columns
    makers = [lambda r: check_table(r, report, columns, result.check.against)]
    if not report.passed:
        makers.append(lambda r: failures_table(r, report, columns))
    if report.sweep:
        makers.append(lambda r: sweep_table(report))
    style = "bold green" if report.passed else "bold red"
    makers.append(lambda r: literal(verdict_line(result), style=style))
    return makers


def check_table(renderer: Renderer, report: CheckReport, columns: Sequence[str], against: str | None) -> Table:
    """One row per compared quantity, all about its worst element: errors, where, values, verdict."""
    from ..render import titled_table

    scope = "every element" if report.probes is None else f"{report.probes} random directions"
    method = "central differences" if report.method == "central" else "complex step"
    title = f"gradient check: {method}, step {report.step:.3g}·σ, {scope}"
    if against:
        title += f"; checking {against}"
    table = titled_table(title)
    bound = f"err/noise ≤ {report.noise_multiple:g}" if report.rtol is None else f"err/scale ≤ {report.rtol:g}"
    table.caption_justify = "left"
    table.caption = (
        "at the worst element: err = |checked − numerical|, scale = its natural scale, noise = what the "
        f"numerical and the checked value may be off by without a mistake; PASS where {bound}"
    )
    # Narrower than this, pairs of values share a column, one above the other, so no number is cut.
    stacked = renderer.console.width < (115 if against else 100)
    headers = (
        ("quantity", "abs err\nerr/scale", "err/noise", "worst at", "checked\nnumerical")
        if stacked
        else ("quantity", "abs err", "err/scale", "err/noise", "worst at", "checked", "numerical")
    )
    for header in headers:
        text = header in ("quantity", "worst at")  # numbers never wrap: a narrow screen gets records instead
        table.add_column(header, justify="left" if header == "quantity" else "right", overflow="fold", no_wrap=not text)
    if against:
        table.add_column("vs bncli", justify="right", no_wrap=True)
    table.add_column("result")
    for comparison in report.results.values():
        table.add_row(*_check_row(renderer, comparison, columns, stacked, against))
    table.min_width = max(table.min_width or 0, min(len(table.caption), renderer.console.width))
    return table


def _check_row(renderer: Renderer, comparison: Comparison, columns, stacked: bool, against: str | None) -> list:
    """The cells of one quantity's row, every number about its worst element."""
    from rich.text import Text

    from ..render import literal, number

    errors = [number(comparison.abs_error, 3), number(comparison.rel_error, 3)]
    values = [number(comparison.checked, renderer.precision), number(comparison.numerical, renderer.precision)]
    if stacked:
        errors, values = [_stack(errors)], [_stack(values)]
    cells = [comparison.quantity, *errors, number(comparison.over_noise, 3), _location(comparison, columns), *values]
    if against:
        rel = comparison.analytic_rel_error
        cells.append("" if rel is None else number(rel, 3))
    cells.append(Text("PASS", style="bold green") if comparison.passed else Text("FAIL", style="bold red"))
    return [cell if isinstance(cell, Text) else literal(cell) for cell in cells]


def failures_table(renderer: Renderer, report: CheckReport, columns: Sequence[str]) -> Table:
    """For each failing quantity: how many elements exceed the bound, and the worst error per column."""
    from ..render import Renderer

    failed = [c for c in report.results.values() if not c.passed]
    errors = np.full((len(failed), len(columns)), np.nan)
    for row, comparison in enumerate(failed):
        for column, error in comparison.column_errors.items():
            errors[row, column] = error
    labels = [f"{c.quantity}: {c.beyond} beyond" for c in failed]
    bound = f"{report.noise_multiple:g} × noise" if report.rtol is None else f"{report.rtol:g}"
    title = f"worst error / natural scale per column (bound {bound})"
    return Renderer(renderer.console, 3, renderer.full).matrix(title, errors, columns, labels, "")


def sweep_table(report: CheckReport) -> Table:
    from ..render import number, titled_table

    table = titled_table("numerical dx error by step (× σ)")
    table.add_column("step", justify="right", no_wrap=True)
    table.add_column("max rel error", justify="right", no_wrap=True)
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
    from rich.text import Text

    from ..render import literal

    return Text("\n").join(literal(line) for line in lines)


def _location(comparison: Comparison, columns: Sequence[str]) -> str:
    name = columns[comparison.column]
    if comparison.row is None:
        return name
    if comparison.wrt_row is not None:
        return f"{name}[{comparison.row},{comparison.wrt_row}]"
    return f"{name} row {comparison.row}"


def _verdict(report: CheckReport, columns: Sequence[str], dtype: str = "float64") -> str:
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
