"""An explanation as a Document: the derivation's steps as json, a Rich view and Markdown notes.

:func:`steps` and :func:`context` say what both renderings show, in the article's order and
notation; the numbers come from :func:`bncli.explain.explain_column`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import numpy as np

from ..commands import ExplainResult
from ..document import Document, Part
from ..errors import printable
from ..explain import Explanation
from ..model import require_finite

if TYPE_CHECKING:
    from rich.console import Group

    from ..render import Renderer

# What Markdown (CommonMark and GitHub's) reads as markup in running text: emphasis, code, links, html,
# tables, entities (&), strikethrough (~) and math ($). Each may be escaped with a backslash.
_MARKDOWN_SPECIAL = frozenset("\\`*_{}[]<>#|!$&~")
# Vectors and matrices longer than this are summarised in markdown (first and last halves).
MARKDOWN_ROWS = 12


def explain_document(result: ExplainResult) -> Document:
    e = result.explanation

    def markdown(precision: int, full: bool) -> str:
        return explanation_markdown(e, precision, full)

    part = Part("explanation", lambda: explanation_json(e), [partial(explanation_view, e=e)], markdown=markdown)
    return Document([part], [e.column], context=None, require_finite=require_finite)


# ------------------------------------------------------------------------ json


def explanation_json(e: Explanation) -> dict:
    """The contract's json object: scalars as floats, vectors (k) and R and J (k×k) as float64 arrays.

    :func:`bncli.io.write.write_json` writes the arrays as lists of k numbers and k lists
    of k numbers, at full round-trip precision, the large ones in bulk: at k = 4096,
    6 s against 20 s or more for the same object built of Python lists.
    """
    obj = {"column": e.column, "k": e.k, "eps": e.eps, "weight": e.weight, "bias": e.bias}
    for key in ("x", "m", "v", "std", "s", "dm_dx", "dv_dx", "u", "R", "J", "dy", "dx_via_J", "dx", "dw", "db"):
        value = getattr(e, key)
        obj[key] = np.asarray(value, dtype=np.float64) if np.ndim(value) else float(value)
    return obj


# ----------------------------------------------------------------- the steps, for people


@dataclass(frozen=True)
class Formula:
    """One formula, in Unicode for terminals and in LaTeX as the article writes it, with its value if scalar."""

    unicode: str
    latex: str
    value: float | None = None


@dataclass(frozen=True)
class Values:
    """The values of a step: named vectors side by side (k rows), or one k×k matrix."""

    title: str
    headers: tuple[tuple[str, str], ...]  # (Unicode, LaTeX) per column of a table of vectors
    values: np.ndarray  # (k, len(headers)), or (k, k) for a matrix
    matrix: bool = False


@dataclass(frozen=True)
class Step:
    title: str
    formulas: tuple[Formula, ...]
    values: Values | None
    notes: tuple[str, ...]  # the checks of the step, and what changes in eval mode


def steps(e: Explanation) -> list[Step]:
    """The derivation as the article walks it: formulas, values, checks; what both renderings show."""

    def vectors(*named: tuple[tuple[str, str], np.ndarray]) -> Values:
        return Values("", tuple(header for header, _ in named), np.column_stack([v for _, v in named]))

    def short(value: float) -> str:
        return f"{value:.2g}"

    differences = f"vs central differences (h = {e.step:.2g}·σ): largest disagreement"
    eval_mode = not e.training
    if eval_mode:
        statistics = (
            Formula("m = μ_run, the running mean", r"m = \mu_{run}", e.m),
            Formula("v = σ²_run, the running variance", r"v = \sigma^2_{run}", e.v),
        )
        derivatives = (
            Formula("dm/dxᵢ = 0", r"\frac{dm}{dx_i} = 0"),
            Formula("dv/dxᵢ = 0", r"\frac{dv}{dx_i} = 0"),
        )
        factors = (
            Formula("u = w / √(v + ε)", r"u = \frac{w}{\sqrt{v + \varepsilon}}", e.u),
            Formula("rᵢⱼ = 1 when i = j,  0 when i ≠ j", r"R = I"),
        )
        factor_notes = (
            "eval mode: the −1 (from dm/dx) and the −sᵢsⱼ (from dv/dx) of the article's R vanish and the k "
            "cancels: u·R collapses to the diagonal (w/√(v + ε))·I",
        )
        jacobian_notes = (
            "J is diagonal: u on the diagonal, 0 elsewhere",
            f"check: J is symmetric: largest |Jᵢⱼ − Jⱼᵢ| = {short(e.J_asymmetry)}",
        )
        closed_form = Formula("dx = u·dy", r"dx = u\,dy")
    else:
        statistics = (
            Formula("m = Σₜ xₜ / k", r"m=\sum_{t=0}^{k-1}x_{t}/k", e.m),
            Formula("v = Σₜ (xₜ − m)² / k", r"v =\sum_{t=0}^{k-1} (x_{t} - m)^2/k", e.v),
        )
        derivatives = (
            Formula("dm/dxᵢ = 1/k", r"\frac{dm}{dx_i} = 1/k", e.dm_dx[0]),
            Formula("dv/dxᵢ = 2(xᵢ − m)/k", r"\frac{dv}{dx_i} = 2(x_i-m)/k"),
        )
        factors = (
            Formula("u = w / (k·√(v + ε))", r"u = \frac{w}{k \sqrt{v + \varepsilon}}", e.u),
            Formula(
                "rᵢⱼ = k − 1 − sᵢsⱼ when i = j,  −1 − sᵢsⱼ when i ≠ j",
                r"r_{ij}=\left\{\begin{array}{rr} k-1 - s_is_j, & i = j\\ -1 - s_is_j, & i \neq j\end{array}\right.",
            ),
        )
        factor_notes = ("the −1 comes from dm/dx, the −sᵢsⱼ from dv/dx",)
        jacobian_notes = (
            f"check: J is symmetric: largest |Jᵢⱼ − Jⱼᵢ| = {short(e.J_asymmetry)}",
            f"check: J's rows sum to 0 (y ignores a shift of x): largest |Σⱼ Jᵢⱼ| = {short(e.J_row_sum)}",
        )
        closed_form = Formula(
            "dx = u·(k·dy − Σdy − s·Σ(dy·s))",
            r"dx = u\left(k\,dy - \sum_{i=0}^{k-1} dy_i - s\sum_{i=0}^{k-1} dy_i s_i\right)",
        )
    return [
        Step(
            "Mean and variance",
            statistics,
            None,
            ("eval mode: the running statistics, constants that do not depend on x",) if eval_mode else (),
        ),
        Step(
            "Normalize",
            (
                Formula("√(v + ε)", r"\sqrt{v + \varepsilon}", e.std),
                Formula("sᵢ = (xᵢ − m) / √(v + ε)", r"s_{i} = \frac{x_{i} - m}{\sqrt{v + \varepsilon}}"),
            ),
            vectors((("xᵢ", "x_i"), e.x), (("sᵢ", "s_i"), e.s)),
            (),
        ),
        Step(
            "Derivatives of m and v",
            derivatives,
            vectors(
                (("dm/dxᵢ", r"dm/dx_i"), e.dm_dx),
                (("numerical", "numerical"), e.dm_dx_numerical),
                (("dv/dxᵢ", r"dv/dx_i"), e.dv_dx),
                (("numerical", "numerical"), e.dv_dx_numerical),
            ),
            (
                f"check: dm/dx {differences} {short(e.dm_dx_disagreement)}",
                f"check: dv/dx {differences} {short(e.dv_dx_disagreement)}",
            ),
        ),
        Step("u and R", factors, Values("R", (), e.R, matrix=True), factor_notes),
        Step(
            "The Jacobian ∂y/∂x = u·R",
            (Formula("∂yᵢ/∂xⱼ = u·rᵢⱼ", r"\nabla y_{(x)}=uR"),),
            Values("J", (), e.J, matrix=True),
            jacobian_notes,
        ),
        Step(
            "dx = ∂e/∂x, two ways",
            (
                Formula(f"dy = ∂e/∂y, {e.dy_label}", r"dy = \nabla e_{(y)} = \frac{de}{dy}"),
                Formula("dx = dy·J = dy·u·R", r"\nabla e_{(x)}=\nabla e_{(y)}\nabla y_{(x)} = dy\,uR"),
                closed_form,
            ),
            vectors((("dyᵢ", "dy_i"), e.dy), (("(dy·J)ᵢ", r"(dy\,J)_i"), e.dx_via_J), (("dxᵢ", "dx_i"), e.dx)),
            (
                "dy·J: the article's route, k² products; the closed form: bncli grad's, O(k)",
                f"check: the two agree: largest difference {short(e.dx_difference)}",
            ),
        ),
        Step(
            "dw and db",
            (
                Formula("dw = Σᵢ dyᵢ·sᵢ", r"\nabla e_{(w)} = \nabla e_{(y)} \cdot s", e.dw),
                Formula("db = Σᵢ dyᵢ", r"\nabla e_{(b)} = \sum_{i=0}^{k-1} \nabla e_{(y)}", e.db),
            ),
            None,
            (),
        ),
    ]


def context(e: Explanation) -> list[str]:
    """A few lines: the column and k; the mode, precision, ε, w and b; how the checks measure."""
    mode = "eval mode (running statistics)" if not e.training else "training mode"
    return [
        f"column {e.column!r}: k = {e.k} rows, numbered i = 0 … k−1 as bncli grad and audit number them",
        f"dy: {e.dy_label}",
        f"{mode}, {e.dtype}; ε = {e.eps:g}, w = {e.weight:g}, b = {e.bias:g}",
        f"checks: errors relative to natural scale ({e.dtype} rounding is {np.finfo(e.dtype).eps:.1e})",
    ]


# ------------------------------------------------------------------------ markdown


def explanation_markdown(e: Explanation, precision: int = 6, full: bool = False) -> str:
    """The derivation as Markdown notes: formulas in LaTeX ($$ blocks) as the article writes them, with values.

    Vectors are Markdown tables and matrices LaTeX arrays, summarised with ⋮ and …
    (\\vdots, \\cdots) beyond :data:`MARKDOWN_ROWS` rows unless ``full``.
    """
    shown = _shown(e.k, None if full else MARKDOWN_ROWS)
    lines = [f"## Batch norm, step by step: column {_markdown_text(e.column)}", ""]
    lines += [_markdown_text(line) + "  " for line in context(e)] + [""]
    for position, step in enumerate(steps(e), 1):
        lines += [f"### {position}. {_markdown_text(step.title)}", ""]
        for formula in step.formulas:
            value = "" if formula.value is None else f" = {_latex_number(formula.value, precision)}"
            lines += ["$$", formula.latex + value, "$$", ""]
        if step.values is not None and step.values.matrix:
            lines += _latex_matrix(step.values, shown, precision) + [""]
        elif step.values is not None:
            lines += _markdown_table(step.values, shown, precision) + [""]
        lines += [f"- {_markdown_text(note)}" for note in step.notes] + ([""] if step.notes else [])
    return "\n".join(lines)


def _shown(count: int, limit: int | None) -> list[int | None]:
    """Indices to show: all, or the first and last halves of ``limit`` with None where the rest is left out."""
    if limit is None or count <= limit:
        return list(range(count))
    return [*range(limit // 2), None, *range(count - limit // 2, count)]


def _markdown_table(values: Values, shown: list[int | None], precision: int) -> list[str]:
    headers = ["$i$", *(f"${latex}$" if latex != "numerical" else latex for _, latex in values.headers)]
    lines = ["| " + " | ".join(headers) + " |", "|" + "--:|" * len(headers)]
    for i in shown:
        cells = ["⋮"] * len(headers) if i is None else [str(i), *(f"{v:.{precision}g}" for v in values.values[i])]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _latex_matrix(values: Values, shown: list[int | None], precision: int) -> list[str]:
    def cell(i: int | None, j: int | None) -> str:
        if i is None:
            return r"\ddots" if j is None else r"\vdots"
        return r"\cdots" if j is None else _latex_number(values.values[i, j], precision)

    rows = [" & ".join(cell(i, j) for j in shown) + r" \\" for i in shown]
    return ["$$", f"{values.title} = \\left(\\begin{{array}}{{{'r' * len(shown)}}}", *rows, r"\end{array}\right)", "$$"]


def _latex_number(value: float, precision: int) -> str:
    """``value`` to ``precision`` significant digits, a power of ten written as × 10^{n}."""
    text = f"{value:.{precision}g}"
    mantissa, _, exponent = text.partition("e")
    return f"{mantissa} \\times 10^{{{int(exponent)}}}" if exponent else text


def _markdown_text(text: str) -> str:
    """Text with Markdown's special characters and control characters escaped, so a column name is shown as
    written and nothing reaches a terminal raw."""
    return "".join("\\" + ch if ch in _MARKDOWN_SPECIAL else ch for ch in printable(text))


# ------------------------------------------------------------------------ Rich


def explanation_view(renderer: Renderer, e: Explanation) -> Group:
    """The article's derivation on one column, for people: one titled section per step.

    Each section shows the step's formulas in Unicode, its values (summarised like
    :meth:`Renderer.matrix`, all of them with ``full``) and its checks with their numbers,
    in a neutral colour: they are measurements, not verdicts.
    """
    from rich.console import Group
    from rich.padding import Padding
    from rich.rule import Rule
    from rich.text import Text

    from ..render import literal, number

    precision = renderer.precision
    parts: list = [literal(line) for line in context(e)]
    labels = [str(i) for i in range(e.k)]
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
