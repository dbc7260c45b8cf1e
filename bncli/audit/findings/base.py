"""What every finding step shares: the evidence of one case, and the phrases and tests its texts use."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..cases import JUDGED, CaseInputs
from ..judge import CaseResult
from ..reference import Reference, element_budgets

KINDS = (
    "unbiased_variance", "eps_outside_sqrt", "fixed_eps", "missing_mean_term", "missing_s_term",
    "one_pass_variance", "dw_db_swapped", "eval_gradient_in_training", "lower_precision",
    "intermediate_out_of_range", "identically_zero", "inputs_modified", "biased_running_variance",
    "reversed_momentum", "batch_statistics_in_eval", "low_precision_statistics", "cast_to_input_dtype",
)  # fmt: skip
# Kinds that show the arithmetic, not the formula: a case they name is INACCURATE at most.
PRECISION_KINDS = ("lower_precision", "low_precision_statistics")
# Kinds that show a bug whatever the unit case shows: a case they name is WRONG. A formula's mistake matched
# positively is one, where the unit case cannot show it (bfloat16 rounds away an eps outside the root there).
BUG_KINDS = (
    "cast_to_input_dtype", "unbiased_variance", "eps_outside_sqrt", "missing_mean_term",
    "missing_s_term", "dw_db_swapped", "eval_gradient_in_training", "biased_running_variance", "reversed_momentum",
    "batch_statistics_in_eval",
)  # fmt: skip
SHOWN_CASES = 3


@dataclass(frozen=True)
class Finding:
    """One mistake the outputs show: ``cases`` worst first; ``details`` the kind's own fields (eps, dtype)."""

    kind: str
    cases: list[str]
    quantities: list[str]
    text: str
    details: dict = field(default_factory=dict)
    named: dict[str, set[str]] = field(default_factory=dict)  # case -> the quantities it names there

    def __post_init__(self):
        if self.kind not in KINDS:  # the contract's list: a kind outside it is bncli's own slip
            raise ValueError(f"unknown finding kind {self.kind!r}")

    def json(self) -> dict:
        return {"kind": self.kind, "cases": self.cases, "quantities": self.quantities, "text": self.text,
                **self.details}  # fmt: skip


@dataclass(frozen=True)
class Evidence:
    """One case as the findings read it: its inputs, exact reference, the target's outputs, their verdicts."""

    inputs: CaseInputs
    ref: Reference
    outputs: dict[str, np.ndarray]
    result: CaseResult
    computes_in: str

    @property
    def where(self) -> str:
        return f"{self.inputs.name}/{self.inputs.dtype}"

    def verdict(self, name: str) -> str:
        return self.result.quantities[name].verdict

    def ratio(self, name: str) -> float:
        ratio = self.result.quantities[name].ratio
        return np.inf if ratio is None or np.isnan(ratio) else ratio

    @property
    def failed(self) -> list[str]:
        return [q for q in JUDGED if q in self.outputs and self.verdict(q) in ("WRONG", "INACCURATE")]


def phrase(names: list[str]) -> tuple[str, str]:
    return ", ".join(names), "matches" if len(names) == 1 else "match"


def within(e: Evidence, name: str, values: np.ndarray, slack: np.ndarray | float = 0.0) -> bool:
    """The output is ``values`` to within its budget (and ``slack``, the values' own uncertainty)."""
    bound = element_budgets(name, e.inputs.dtype, e.ref) * e.ref.scales[name] + slack
    with np.errstate(invalid="ignore", over="ignore"):
        return bool(np.all(np.abs(e.outputs[name] - values) <= bound))


class Collector:
    """Findings as they accumulate over cases: per kind, the quantities and each case's worst ratio."""

    def __init__(self):
        self.kinds: dict[str, dict] = {}

    def add(self, kind: str, evidence: Evidence, quantities, describe, **details) -> None:
        entry = self.kinds.setdefault(
            kind, {"quantities": set(), "cases": {}, "describe": describe, "details": [], "named": {}}
        )
        entry["quantities"].update(quantities)
        entry["named"].setdefault(evidence.where, set()).update(quantities)
        worst = max(evidence.ratio(q) for q in quantities)
        entry["cases"][evidence.where] = max(entry["cases"].get(evidence.where, 0.0), worst)
        entry["details"].append(details)

    def findings(self) -> list[Finding]:
        found = []
        for kind, entry in self.kinds.items():
            cases = sorted(entry["cases"], key=lambda where: -entry["cases"][where])
            names = [q for q in JUDGED if q in entry["quantities"]]
            shown = ", ".join(cases[:SHOWN_CASES]) + (
                f" and {len(cases) - SHOWN_CASES} more" if len(cases) > SHOWN_CASES else ""
            )
            text, details = entry["describe"](names, shown, entry["details"])
            finding = Finding(kind, cases, names, text, details, entry["named"])
            found.append((max(entry["cases"].values()), finding))
        return [finding for _, finding in sorted(found, key=lambda pair: -pair[0])]
