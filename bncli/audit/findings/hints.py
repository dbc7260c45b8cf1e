"""Lines for INACCURATE results that no finding names: what the error grows with, so a reader knows
where to look.

A term that is zero in exact arithmetic (Σ(x − m), without its 1/k or summed over every column)
is computed from numbers as large as the data and leaves a residue that grows with the data's
magnitude |m|/σ; it enters dx through the mean's gradient, the same for every row of a column.
A residue that follows s instead comes through the variance's gradient, and grows with dy/σ.
"""

from __future__ import annotations

from ..judge import CaseResult
from .signatures import residue_pattern

GENERIC = "the formulas are right but the arithmetic loses precision there (e.g. sums accumulated without care)"
BY_MAGNITUDE = (
    "the error of dx is the same down each column and grows with the data's magnitude |m|/σ, not with the "
    "gradient: a term that is zero in exact arithmetic, such as Σ(x − m) (without its 1/k, or summed over every "
    "column), is computed from large numbers and does not vanish; compute it from x − m, per column, or drop it"
)
BY_GRADIENT = (
    "the error of dx follows s and grows with dy/σ: the variance's gradient Σ dy·(x − m) loses precision; "
    "compute it as Σ dy·s from the centred s"
)
RANGE = (
    "squares overflow or underflow in that dtype: scale each column by a power of two near its largest value "
    "before squaring"
)


def inaccuracy_hints(cases: list[CaseResult], evidence, named: set[str]) -> list[str]:
    """General lines for INACCURATE results: what the error grows with on ill-conditioned data (on the cases
    that no finding ``named``), or range on the extremes."""
    lines = []
    grouped: dict[str, list[str]] = {}
    for e in evidence:
        if e.result.verdict == "INACCURATE" and e.where not in named:
            grouped.setdefault(_pattern(e), []).append(e.where)
    lines += [f"INACCURATE on {', '.join(sorted(where))} while the unit case {_unit_said(where, cases)}: {text}"
              for text, where in grouped.items()]  # fmt: skip
    where = sorted({f"{r.name}/{r.dtype}" for r in cases if r.verdict == "INACCURATE" and r.extreme})
    if where:
        lines.append(f"INACCURATE on {', '.join(where)} while the unit case passes: {RANGE}")
    return lines


def _unit_said(where: list[str], cases: list[CaseResult]) -> str:
    """ "passes", or (a half precision's statistics) "fails by precision alone" where it is INACCURATE too."""
    dtypes = {place.rsplit("/", 1)[1] for place in where}
    units = [r for r in cases if r.name == "unit" and r.dtype in dtypes]
    return "fails by precision alone" if any(r.verdict == "INACCURATE" for r in units) else "passes"


def _pattern(e) -> str:
    """What dx's error follows on this case, as a line: the data's magnitude, dy/σ, or the generic one."""
    if "dx" not in e.outputs or e.verdict("dx") != "INACCURATE":
        return GENERIC
    pattern = residue_pattern(e.inputs, e.ref, e.outputs["dx"])
    return {"column": BY_MAGNITUDE, "s": BY_GRADIENT}.get(pattern, GENERIC)
