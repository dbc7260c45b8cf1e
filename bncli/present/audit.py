"""The audit's presentation: its JSON, its text report, its Rich tables, its pictures, its Document.

Also the listing of the battery (``bncli audit --list-cases``). Rich and the
output layer are imported only where a table is made or a Document is built, so
that ``assert_batchnorm`` and a json audit do not load them.
"""

from __future__ import annotations

from functools import partial

import numpy as np

from ..audit.cases import JUDGED
from ..audit.judge import QuantityResult

_VERDICT_STYLES = {
    "PASS": "bold green",
    "INACCURATE": "bold yellow",
    "WRONG": "bold red",
    "ERROR": "bold magenta",
    "MISSING": "dim",
    "SKIPPED": "dim",
    "INCOMPLETE": "bold yellow",
}
_SHORT_VERDICTS = {"INACCURATE": "INACC", "MISSING": "MISS", "SKIPPED": "SKIP"}
# Below this width the audit table abbreviates verdicts and stacks ratios, so nothing is cut at 80 columns.
_WIDE_AUDIT = 110


# ---------------------------------------------------------------------- documents


def audit_document(report):
    """The report as the output dispatcher shows it: one part, ``report``, which ends with the verdict line
    (on stderr when no table shows it); exit 1 unless it passed."""
    from ..document import Document, Part

    part = Part(
        "report", lambda: report_json(report), [partial(_tables_for, report)], pictures=[partial(_grid, report)]
    )
    exit_code = 0 if report.passed else 1
    return Document([part], [], exit_code=exit_code, verdict=verdict_line(report), verdict_part="report")


def cases_document(cases):
    """The battery (``--list-cases``): one line per case as a table, or ``{"cases": [...]}`` as json."""
    from ..document import Document, Part

    listing = [{"name": c.name, "description": c.description, "extreme": c.extreme} for c in cases]
    part = Part("cases", lambda: {"cases": listing}, [partial(_listing, cases)])
    return Document([part], [])


def _listing(cases, renderer):
    from rich.text import Text

    from ..render import literal

    lines = [f"{case.name:<14} {case.description}{' (--extreme)' if case.extreme else ''}" for case in cases]
    return Text("\n").join(literal(line) for line in lines)


def _tables_for(report, renderer) -> list:
    """The audit's renderables, laid out for the renderer's width."""
    return renderables(report, renderer.console.width)


def _grid(report):
    from ..pictures import AuditGrid

    cases = report.cases
    names = judged_names(cases)
    labels = [f"{r.name} {r.dtype}" for r in cases]
    found = [[r.quantities.get(q, QuantityResult("MISSING")) for q in names] for r in cases]
    ratios = [[np.nan if q.ratio is None else q.ratio for q in row] for row in found]
    letters = [[q.verdict[0] for q in row] for row in found]
    target = report.target.rsplit("/", 1)[-1]  # a path's last part: the title must fit a picture
    headers = [COLUMN_LABELS.get(q, q) for q in names]
    return AuditGrid(labels, headers, ratios, letters, title=f"audit of {target}: error / budget")


# Shorter column labels: the running statistics' full names would widen every table.
COLUMN_LABELS = {"running_mean": "run_mean", "running_var": "run_var"}


def judged_names(results) -> list[str]:
    """The quantities of these results, in the contract's order: y, dx, dw, db, then the running
    statistics where a target returns (or is expected to return) them."""
    return [q for q in JUDGED if any(q in r.quantities for r in results)]


# ------------------------------------------------------------------------- json and text


def _json_number(value: float | None):
    """A float for JSON: None stays null; NaN and infinity (not JSON) become the strings 'nan', 'inf'."""
    if value is None:
        return None
    return value if np.isfinite(value) else str(value)


def _case_json(result) -> dict:
    return {
        "name": result.name,
        "dtype": result.dtype,
        "shape": list(result.shape),
        "extreme": result.extreme,
        "verdict": result.verdict,
        "error": result.error,
        "quantities": {
            name: {
                "verdict": q.verdict,
                "max_error": _json_number(q.max_error),
                "budget": q.budget,
                "worst": None if q.worst is None else {"index": q.worst, "feature": q.feature},
                "beyond": q.beyond,
                "ratio": _json_number(q.ratio),
                "expected": _json_number(q.expected) if q.worst is not None else None,
                "obtained": _json_number(q.obtained) if q.worst is not None else None,
            }
            for name, q in result.quantities.items()
        },
        **({} if result.shards is None else {"plan": result.shards}),
    }


def report_json(report) -> dict:
    """The contract's JSON object (plus ``layout``, ``consistency`` and ``yardstick``); JSON-safe."""
    return {
        "target": report.target,
        "layout": report.layout,
        "mode": "eval" if report.eval else "training",
        "verdict": report.verdict,
        "passed": report.passed,
        "cases": [_case_json(r) for r in report.cases],
        "diagnosis": list(report.diagnosis),
        "findings": [finding.json() for finding in report.findings],
        "consistency": [
            {
                "case": c.case,
                "dtype": c.dtype,
                "consistent": c.consistent,
                "errors": {q: _json_number(e) for q, e in c.errors.items()},
                "tolerance": c.tolerance,
                "note": c.note,
            }
            for c in report.consistency
        ],
        "yardstick": [_case_json(r) for r in report.yardstick],
        **_plans_json(report.cases),
    }


def _plans_json(results) -> dict:
    """--shards: ``{"plans": [{"plan", "verdict", "dw_db"}]}``, one per plan in the order run; else nothing."""
    from ..audit.judge import overall

    plans: dict[tuple, list] = {}
    for result in results:
        if result.shards:
            plans.setdefault(tuple(result.shards["plan"]), []).append(result)
    if not plans:
        return {}
    return {
        "plans": [
            {
                "plan": list(plan),
                "verdict": overall(r.verdict for r in runs),
                "dw_db": sorted({r.shards["dw_db"] for r in runs if r.shards["dw_db"]}),
            }
            for plan, runs in plans.items()
        ]
    }


def failure_lines(result) -> list[str]:
    """One line per failing quantity: worst element, expected vs obtained, count beyond, ratio."""
    if result.error:
        return [result.error]
    lines = []
    for name, q in result.quantities.items():
        if q.verdict in ("WRONG", "INACCURATE"):
            at = ",".join(str(i) for i in q.worst)
            lines.append(
                f"{result.name}/{result.dtype}{_split_tag(result)} {name} {q.verdict}: worst at [{at}] "
                f"(feature {q.feature!r}) "
                f"expected {q.expected!r}, obtained {q.obtained!r}; {q.beyond} element(s) beyond budget, "
                f"error/budget {q.ratio:.3g}"
            )
    return lines


def _split_tag(result) -> str:
    return f" (shards {'+'.join(map(str, result.shards['split']))})" if result.shards else ""


def consistency_line(result) -> str:
    where = f"{result.case}/{result.dtype}"
    if result.note:
        return f"self-consistency ({where}): not checked, {result.note}"
    errors = ", ".join(f"{q} {e:.2g}" for q, e in result.errors.items())
    if result.consistent:
        return f"self-consistency ({where}): the backward agrees with central differences of its own y ({errors})"
    bad = [q for q, e in result.errors.items() if e > result.tolerance]
    verb = "disagrees" if len(bad) == 1 else "disagree"
    return (
        f"self-consistency ({where}): {', '.join(bad)} {verb} with central differences of the target's own y "
        f"({errors}; tolerance {result.tolerance:g}): the backward does not match the forward"
    )


def report_view(report) -> str:
    """The report's table view as plain text, as a file gets it."""
    from ..output import as_text

    return as_text(audit_document(report))


def _setting(report) -> str:
    return f"layout {report.layout}" + (", eval mode" if report.eval else "")


# ---------------------------------------------------------------------------- Rich


def renderables(report, width: int = 120) -> list:
    """An audit report for a terminal ``width`` wide: the table(s), failures, diagnosis, consistency, verdict.

    Tables are followed by blocks of lines (one Text each), each line meant to stay whole.
    """
    parts = _case_tables(report, width)
    lines = _finding_lines(report)
    if lines is not None:
        parts.append(lines)
    parts.append(_summary(report))
    return parts


def _case_tables(report, width: int) -> list:
    """The default cases, the extreme ones, and the yardstick when it was run only as such: a table each."""
    title = f"bncli audit of {report.target} ({_setting(report)})"
    default = [r for r in report.cases if not r.extreme]
    extreme = [r for r in report.cases if r.extreme]
    legend = "cells: the verdict, and error/budget beyond budget"
    if any(r.shards for r in default):
        return _plan_tables(title, default, width, legend)
    tables = [_case_table(title, default, width, legend)] if default else []
    if extreme:
        heading = "extreme cases (opt-in: a textbook implementation's squares overflow or underflow)"
        tables.append(_case_table(heading, extreme, width))
    if report.yardstick:
        heading = "yardstick only (not selected; tells WRONG from INACCURATE)"
        tables.append(_case_table(heading, report.yardstick, width))
    return tables


def _plan_tables(title: str, results, width: int, legend: str) -> list:
    """--shards: a table per plan, the split of each case in it, and how the ranks returned dw and db."""
    plans = {}
    for result in results:
        plans.setdefault(tuple(result.shards["plan"]), []).append(result)
    tables = []
    for plan, runs in plans.items():
        conventions = sorted({r.shards["dw_db"] for r in runs if r.shards["dw_db"]})
        found = f"dw, db returned as {' and '.join(conventions)}" if conventions else ""
        heading = f"{title}, shards {','.join(map(str, plan))}"
        tables.append(_case_table(heading, runs, width, "; ".join(filter(None, [legend, found]))))
    return tables


def _case_table(title: str, results, width: int, caption: str | None = None):
    """Cases × quantities: each cell the verdict, and for a failure error/budget."""
    from ..render import literal, titled_table

    short = width < _WIDE_AUDIT
    table = titled_table(title)
    table.min_width = min(table.min_width or 0, width)
    table.caption = _caption(results, caption) if short else caption
    table.min_width = min(max(table.min_width or 0, len(table.caption or "")), width)
    sharded = any(result.shards for result in results)
    names = judged_names(results)
    labels = [COLUMN_LABELS.get(q, q) for q in names]
    for header in ("case", "dtype", "shape", *(("split",) if sharded else ()), *labels, "verdict"):
        table.add_column(header, justify="left", overflow="fold", no_wrap=header != "case")  # numbers never wrap
    missing = QuantityResult("MISSING")
    for result in results:
        cells = [
            _verdict_text(q.verdict, q.ratio, short) for q in (result.quantities.get(name, missing) for name in names)
        ]
        shape = "×".join(str(d) for d in result.shape)
        split = ("+".join(map(str, result.shards["split"])),) if sharded else ()
        table.add_row(
            literal(result.name), result.dtype, shape, *split, *cells, _verdict_text(result.verdict, short=short)
        )
    return table


def _caption(results, caption: str | None) -> str | None:
    """The caption of a narrow table: ``caption`` and what the abbreviations used in it stand for."""
    verdicts = {q.verdict for result in results for q in result.quantities.values()}
    used = [f"{abbreviation} = {verdict}" for verdict, abbreviation in _SHORT_VERDICTS.items() if verdict in verdicts]
    return "; ".join(filter(None, [caption, ", ".join(used)])) if used else caption


def _finding_lines(report):
    """Failures, diagnosis and self-consistency: one Text of lines, or None when there is nothing to say."""
    from rich.text import Text

    from ..render import literal

    lines = [literal(line, "red" if "WRONG" in line or "ERROR" in line else "yellow")
             for r in report.cases for line in failure_lines(r)]  # fmt: skip
    lines += [Text.assemble(("diagnosis: ", "bold"), literal(line)) for line in report.diagnosis]
    lines += [literal(consistency_line(c)) for c in report.consistency]
    return Text("\n").join(lines) if lines else None


def _summary(report):
    """The verdict line, its verdict coloured."""
    from rich.text import Text

    return Text.assemble(_verdict_text(report.verdict), verdict_line(report).removeprefix(report.verdict))


def verdict_line(report) -> str:
    """The overall verdict, with how many case runs gave each verdict."""
    counts = {}
    for r in report.cases:
        counts[r.verdict] = counts.get(r.verdict, 0) + 1
    summary = ", ".join(f"{n} {v}" for v, n in counts.items())
    runs = f"{len(report.cases)} case run{'s' if len(report.cases) != 1 else ''}"
    where = ""
    default = [r for r in report.cases if not r.extreme]
    if not report.passed and len(default) < len(report.cases) and all(r.verdict == "PASS" for r in default):
        where = "; every default case passes: the failures are in the opt-in extreme set"
    return f"{report.verdict}: {runs} ({summary}){where}"


def _ratio(ratio: float) -> str:
    """error/budget in few characters: ×13, ×2.2e6."""
    return "×" + f"{ratio:.2g}".replace("e+0", "e").replace("e+", "e")


def _verdict_text(verdict: str, ratio: float | None = None, short: bool = False):
    from rich.text import Text

    text = Text(_SHORT_VERDICTS.get(verdict, verdict) if short else verdict, style=_VERDICT_STYLES.get(verdict, ""))
    if verdict in ("INACCURATE", "WRONG") and ratio is not None:
        text.append("\n" if short else " ", style="dim").append(_ratio(ratio), style="dim")
    return text
