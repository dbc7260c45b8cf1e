"""The article's derivation of the batch-norm gradient, step by step, on one column of real data.

Pure numpy, no I/O. :func:`explain_column` computes every quantity the article
defines, in its order and notation, and checks each step against an independent
route; :func:`explanation_json` and :func:`explanation_markdown` turn the result
into data for scripts and into notes (the Rich rendering is in :mod:`bncli.render`).

Notes
-----
The article (see ``docs/batchnorm.md``), for one column x of k values::

    m = Σ_t x_t / k,   v = Σ_t (x_t − m)² / k,   s_i = (x_i − m) / √(v + ε),   y_i = w·s_i + b
    dm/dx_i = 1/k,     dv/dx_i = 2(x_i − m)/k
    ∂y/∂x = u·R,       u = w / (k√(v + ε)),   r_ij = k − 1 − s_i s_j (i = j),  −1 − s_i s_j (i ≠ j)
    dx = dy·u·R,       dw = dy·s,             db = Σ_i dy_i

dx, dw, db, u, R and J come from :mod:`bncli.core`, computed on the whole matrix
exactly as ``bncli grad`` computes them, so that they equal its output to the
last digit: core sums in cache-sized blocks of rows whose size depends on the
number of columns, so one column computed alone can differ in the last bit once
the matrix exceeds a block (4 MiB).

In eval mode m and v are the running statistics, constants: dm/dx = dv/dx = 0,
the −1 and −s_i s_j of R (which come from them) vanish and the k cancels, so
u = w/√(v + ε) and R = I: ∂y/∂x is the diagonal matrix (w/√(v + ε))·I.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import isqrt

import numpy as np

from . import core
from . import gradcheck as gc
from .errors import InputError, printable
from .options import MAX_MATRIX_ELEMENTS

# Vectors and matrices longer than this are summarised in markdown (first and last halves).
MARKDOWN_ROWS = 12
# Elements per batched forward pass of the central differences (~16 MB).
_CHUNK_ELEMENTS = 1 << 21


@dataclass(frozen=True, eq=False)
class Explanation:
    """Every quantity of the article's derivation for one column, and the checks of each step.

    Scalars are numpy scalars and arrays are in the precision of the computation
    (``dtype``); the checks are computed in float64.

    Attributes
    ----------
    column : str
        The column's name.
    k : int
        Rows (the batch size).
    eps, weight, bias : float
        ε, w and b as given.
    training : bool
        False in eval mode (m and v are the running statistics).
    dtype : str
        Precision of the computation, "float64" or "float32".
    x : ndarray, shape (k,)
    m, v, std : numpy scalar
        Mean, biased variance and √(v + ε).
    s : ndarray, shape (k,)
        (x − m)/√(v + ε).
    dm_dx, dv_dx : ndarray, shape (k,)
        1/k and 2(x_i − m)/k (zeros in eval mode).
    dm_dx_numerical, dv_dx_numerical : ndarray, shape (k,)
        The same by central differences of the forward pass, in float64.
    step : float
        Their step, relative to σ.
    dm_dx_disagreement, dv_dx_disagreement : float
        The largest |analytic − numerical| relative to the natural scale of each
        element: 1/k for dm/dx, (2/k)(|x_i − m| + σ) for dv/dx.
    u : numpy scalar
        w/(k√(v + ε)) (eval mode: w/√(v + ε)).
    R : ndarray, shape (k, k)
        r_ij = k·δ_ij − 1 − s_i s_j (eval mode: the identity).
    J : ndarray, shape (k, k)
        ∂y/∂x = u·R, as ``bncli grad --jacobian`` prints it.
    J_asymmetry : float
        max |J_ij − J_ji| relative to the natural scale |u|·(k·δ_ij + 1 + |s_i s_j|).
    J_row_sum : float
        max_i |Σ_j J_ij| relative to Σ_j of that scale (J·1 = 0: a shift of x leaves y alone).
    dy : ndarray, shape (k,)
        The upstream gradient ∂e/∂y.
    dx_via_J : ndarray, shape (k,)
        dy·J, the article's route (O(k²)).
    dx : ndarray, shape (k,)
        The closed form u·(k·dy − Σdy − s·Σ(dy·s)) of ``bncli grad`` (O(k)); eval mode u·dy.
    dx_difference : float
        max |dx_via_J − dx| relative to the natural scale |u|·(k|dy_i| + Σ|dy| + |s_i|·Σ|dy·s|).
    dw, db : numpy scalar
        Σ dy_i·s_i and Σ dy_i.
    """

    column: str
    k: int
    eps: float
    weight: float
    bias: float
    training: bool
    dtype: str
    x: np.ndarray
    m: np.floating
    v: np.floating
    std: np.floating
    s: np.ndarray
    dm_dx: np.ndarray
    dv_dx: np.ndarray
    dm_dx_numerical: np.ndarray
    dv_dx_numerical: np.ndarray
    step: float
    dm_dx_disagreement: float
    dv_dx_disagreement: float
    u: np.floating
    R: np.ndarray
    J: np.ndarray
    J_asymmetry: float
    J_row_sum: float
    dy: np.ndarray
    dx_via_J: np.ndarray
    dx: np.ndarray
    dx_difference: float
    dw: np.floating
    db: np.floating


def explain_column(
    x: np.ndarray,
    dy: np.ndarray,
    weight: np.ndarray | float = 1.0,
    bias: np.ndarray | float = 0.0,
    eps: float = core.DEFAULT_EPS,
    *,
    column: int = 0,
    name: str | None = None,
    running: tuple[np.ndarray, np.ndarray] | None = None,
    dtype: str = "float64",
) -> Explanation:
    """The article's derivation for one column of ``x``, with each step checked.

    Parameters
    ----------
    x, dy : ndarray, shape (k, n) or (k,)
        The data and the upstream gradient ∂e/∂y: the whole matrix, as ``bncli grad``
        is given it (so that the results equal its output bit for bit), or one column.
        Values must fit ``dtype`` (the CLI checks that when it reads them).
    weight, bias : scalar or ndarray, shape (n,)
        w and b, one per column.
    eps : float
        ε ≥ 0.
    column : int
        The column explained (an index into the last axis of ``x``).
    name : str, optional
        Its name, for the output; default ``str(column)``.
    running : (mean, var), optional
        Running statistics, scalars or shape (n,): eval mode.
    dtype : {"float64", "float32"}
        Precision of the computation.

    Raises
    ------
    InputError
        R and J would exceed :data:`MAX_MATRIX_ELEMENTS`, dy's shape differs from x's, or
        ε = 0 with a constant column.
    """
    x, dy = np.asarray(x, dtype), np.asarray(dy, dtype)
    if dy.shape != x.shape:
        raise InputError(f"dy has shape {dy.shape}, the data {x.shape}: they must be the same")
    if x.ndim == 1:
        x, dy = x[:, None], dy[:, None]
    k, n = x.shape
    name = str(column) if name is None else name
    _require_small(k)
    w, b = _per_column(weight, n, dtype), _per_column(bias, n, dtype)
    try:
        if running is None:
            bn = core.forward(x, w, b, eps)
        else:
            bn = core.forward_eval(x, _per_column(running[0], n, dtype), _per_column(running[1], n, dtype), w, b, eps)
    except core.ZeroVarianceError:
        raise InputError(f"column {name!r}: zero variance with eps 0 divides by zero") from None
    grads = core.backward(dy, bn)
    u, r = core.jacobian_factors(bn, column)
    jacobian = core.jacobian(bn, column)
    s, std = bn.s[:, column], bn.std[column]
    if bn.training:
        # x_i − m as s_i·σ, from core's centered values: m itself, rounded to a float, has lost
        # the digits of data such as timestamps ~1.7e9 with a spread of seconds.
        dm_dx, dv_dx = np.full(k, 1 / k, dtype=dtype), 2 * (s * std) / k
    else:
        dm_dx = dv_dx = np.zeros(k, dtype=dtype)
    dx_via_jacobian = dy[:, column] @ jacobian
    one = slice(column, column + 1)
    problem = gc.Problem(  # the checks' float64 problem: the values as this dtype sees them
        _float64(x[:, one]),
        _float64(dy[:, one]),
        _float64(w[one]),
        _float64(b[one]),
        eps,
        None if running is None else (_float64(bn.mean[one]), _float64(bn.var[one])),
    )
    return Explanation(
        column=name,
        k=k,
        eps=float(eps),
        weight=float(_per_column(weight, n, np.float64)[column]),
        bias=float(_per_column(bias, n, np.float64)[column]),
        training=bn.training,
        dtype=str(np.dtype(dtype)),
        x=x[:, column],
        m=bn.mean[column],
        v=bn.var[column],
        std=std,
        s=s,
        dm_dx=dm_dx,
        dv_dx=dv_dx,
        u=u,
        R=r,
        J=jacobian,
        dy=dy[:, column],
        dx_via_J=dx_via_jacobian,
        dx=grads.dx[:, column],
        dw=grads.dw[column],
        db=grads.db[column],
        **_checks(problem, dm_dx, dv_dx, jacobian, dx_via_jacobian - grads.dx[:, column]),
    )


def _per_column(value, n: int, dtype) -> np.ndarray:
    return np.broadcast_to(np.asarray(value, dtype), (n,))


def _float64(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


def _require_small(k: int) -> None:
    """R and J are k×k each: both together within the bound of ``grad --jacobian`` (k ≤ 4096)."""
    if 2 * k * k > MAX_MATRIX_ELEMENTS:
        raise InputError(
            f"explain builds R and J, {k}×{k} each: {2 * k * k:,} numbers, more than {MAX_MATRIX_ELEMENTS:,}; "
            f"at most {isqrt(MAX_MATRIX_ELEMENTS // 2)} rows fit: explain a sample of the rows "
            "(e.g. head -n 1001 FILE | bncli explain -c NAME)"
        )


def _checks(
    problem: gc.Problem, dm_dx: np.ndarray, dv_dx: np.ndarray, jacobian: np.ndarray, dx_difference: np.ndarray
) -> dict:
    """The checks of each step, in float64, each relative to the natural scale of the elements compared.

    dm/dx and dv/dx against central differences of the forward pass; J's symmetry
    and row sums; dy·J against the closed form. The scales of J and dx are those
    of ``grad --check`` (:class:`bncli.gradcheck._Scales`): the sum of the
    magnitudes of the terms that make up each element.
    """
    k = problem.x.shape[0]
    step = gc.default_step("central", k, affine=problem.running is not None)
    dm_numerical, dv_numerical, centered, sigma = _central_differences(problem, step)
    scales = gc._Scales(problem.forward(problem.x), problem.dy, problem.weight)
    jacobian = _float64(jacobian)
    return {
        "dm_dx_numerical": dm_numerical,
        "dv_dx_numerical": dv_numerical,
        "step": step,
        "dm_dx_disagreement": _largest(_float64(dm_dx) - dm_numerical, np.full(k, 1 / k)),
        # dv/dx_i = (2/k)(x_i − m): its size, floored at σ so that an element at the mean does not divide by 0.
        "dv_dx_disagreement": _largest(_float64(dv_dx) - dv_numerical, 2 * (np.abs(centered) + sigma) / k),
        "J_asymmetry": _largest(jacobian - jacobian.T, scales.jacobians([0])[0]),
        "J_row_sum": _largest(jacobian.sum(axis=1), scales.jacobian_row_sums([0])[0]),
        "dx_difference": _largest(_float64(dx_difference), scales.dx[:, 0]),
    }


def _central_differences(problem: gc.Problem, step: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """dm/dx_i and dv/dx_i by central differences of the forward pass, in float64.

    Returns them with the centered data x − m̄ at which they are taken and σ. The
    point is centered because training-mode m is linear in x (dm/dx is the same
    everywhere) and v is invariant to a shift: there the step h = step·σ is not
    lost in the last digits of a large offset (1e8 + noise). Each row i is
    perturbed in its own copy of the column, many copies per forward pass; the
    perturbation the floats carry, (x + h) − (x − h), is the one divided by.
    """
    k = problem.x.shape[0]
    centered = problem.x[:, 0] - problem.x[:, 0].mean()
    sigma = float(problem.forward(centered[:, None]).std[0])
    h = step * sigma
    plus, minus = centered + h, centered - h
    applied = plus - minus
    dm, dv = np.empty(k), np.empty(k)
    batch = max(1, _CHUNK_ELEMENTS // k)
    for start in range(0, k, batch):
        rows = np.arange(start, min(start + batch, k))
        copies = np.broadcast_to(centered[:, None], (len(rows), k, 1)).copy()
        copies[np.arange(len(rows)), rows, 0] = plus[rows]
        high = problem.forward(copies)
        copies[np.arange(len(rows)), rows, 0] = minus[rows]
        low = problem.forward(copies)
        # (copies, 1): eval mode's running statistics come back once for all copies.
        shape = (len(rows), 1)
        dm[rows] = np.broadcast_to(high.mean - low.mean, shape)[:, 0] / applied[rows]
        dv[rows] = np.broadcast_to(high.var - low.var, shape)[:, 0] / applied[rows]
    return dm, dv, centered, sigma


def _largest(error: np.ndarray, scale: np.ndarray) -> float:
    """max |error| / scale, elementwise; a zero scale counts as the smallest normal float."""
    return float(np.max(np.abs(error) / np.maximum(scale, np.finfo(np.float64).tiny)))


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
        obj[key] = _float64(value) if np.ndim(value) else float(value)
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
            Formula("m = Σₜ xₜ / k", r"m=\sum_{t=1}^{k}x_{t}/k", e.m),
            Formula("v = Σₜ (xₜ − m)² / k", r"v =\sum_{t=1}^{k} (x_{t} - m)^2/k", e.v),
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
            r"dx = u\left(k\,dy - \sum_{i=1}^{k} dy_i - s\sum_{i=1}^{k} dy_i s_i\right)",
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
                Formula("dy = ∂e/∂y, given", r"dy = \nabla e_{(y)} = \frac{de}{dy}"),
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
                Formula("db = Σᵢ dyᵢ", r"\nabla e_{(b)} = \sum_{i=1}^{k} \nabla e_{(y)}", e.db),
            ),
            None,
            (),
        ),
    ]


def context(e: Explanation) -> list[str]:
    """A few lines: the column and k; the mode, precision, ε, w and b; how the checks measure."""
    mode = "eval mode (running statistics)" if not e.training else "training mode"
    return [
        f"column {e.column!r}: k = {e.k} rows, numbered i = 1 … k as in the article",
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
        cells = ["⋮"] * len(headers) if i is None else [str(i + 1), *(f"{v:.{precision}g}" for v in values.values[i])]
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
    return "".join("\\" + ch if ch in "\\`*_{}[]<>#|!" else ch for ch in printable(text))
