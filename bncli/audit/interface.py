"""The one small interface every audited implementation is called through: ``call(inputs) -> outputs``."""

from __future__ import annotations

import inspect

import numpy as np

from .cases import QUANTITIES, RUNNING, CaseInputs, to_layout
from .precisions import parameter_dtype

# Seconds beyond which a timeout never comes (about 32 years): the clocks' waits do not reach further.
LONGEST_TIMEOUT = 1e9
INPUT_NAMES = ("x", "weight", "bias", "eps", "dy")
# The keyword parameters a target may declare; it is passed those it declares, and no others.
KEYWORDS = ("running_mean", "running_var", "momentum", "training")


def declared_keywords(func) -> tuple[str, ...]:
    """Those of :data:`KEYWORDS` that ``func`` names as parameters it can take by keyword."""
    try:
        parameters = inspect.signature(func).parameters
    except (TypeError, ValueError):  # a builtin without a signature takes none of them
        return ()
    takes = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return tuple(name for name in KEYWORDS if name in parameters and parameters[name].kind in takes)


def unfilled_parameters(func, keywords: tuple[str, ...] = ()) -> list[str]:
    """The parameters without a default that a call ``func(x, weight, bias, eps, dy, **keywords)`` leaves
    unfilled (none for a builtin without a signature: calling it tells)."""
    try:
        parameters = list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):
        return []
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    filled = {p.name for p in positional[: len(INPUT_NAMES)]} | set(keywords)
    variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    return [p.name for p in parameters if p.default is p.empty and p.kind not in variadic and p.name not in filled]


def expected_running(func) -> tuple[str, ...]:
    """The running statistics ``func`` is expected to return: those it declares. A style's adapter, which
    declares them all to pass them on, says with ``expected_running`` (often none) what its target gives."""
    declared = getattr(func, "expected_running", None)
    return tuple(declared) if declared is not None else tuple(q for q in RUNNING if q in declared_keywords(func))


class ByDesign(dict):
    """Outputs of which a style's adapter computes only some, by design (a cs231n forward that keeps no
    cache in test mode leaves no backward to call): the others are not expected of it, and ``reason``,
    a line for the diagnosis, says why."""

    def __init__(self, outputs: dict, reason: str):
        super().__init__(outputs)
        self.reason = reason


def snapshot(arguments: tuple) -> list:
    """Copies of a call's array arguments, to tell afterwards whether the target changed them."""
    return [np.array(a, copy=True) if isinstance(a, np.ndarray) else a for a in arguments]


def changed_inputs(arguments: tuple, before: list) -> list[str]:
    """The names of the array arguments that differ from their :func:`snapshot`."""
    return [
        name
        for name, now, then in zip(INPUT_NAMES, arguments, before, strict=True)
        if isinstance(now, np.ndarray) and not np.array_equal(now, then, equal_nan=True)
    ]


class Target:
    """Base: ``name``, ``call(inputs)`` returning a mapping or tuple of y, dx, dw, db, ``close()``.

    ``notes`` says what the audit should say about the target beside its verdicts
    (e.g. that it changed its inputs in place): each note once, however many cases show it.
    """

    name = "target"
    # The running statistics the target is expected to return (a quantity returned in no case is INCOMPLETE).
    expects: tuple[str, ...] = ()
    # The keyword parameters (of KEYWORDS) it declares: --eval needs ``training``.
    declared: tuple[str, ...] = ()

    def __init__(self, layout: str, timeout: float):
        self.layout = layout
        self.timeout = timeout if timeout < LONGEST_TIMEOUT else None  # None: wait as long as it takes
        self._changed: dict[str, str] = {}  # input name -> the case it was first seen changed on
        self.remarks: set[str] = set()  # lines for the diagnosis beside the findings
        self.unexpected: set[str] = set()  # quantities it does not compute by design (see ByDesign)

    @property
    def notes(self) -> set[str]:
        if not self._changed:
            return set()
        first = next(iter(self._changed.values()))
        return {
            f"the target changed its input {', '.join(self._changed)} in place (first seen on {first}): "
            "bncli passed copies, but a layer that does so corrupts its caller's data"
        }

    def arguments(self, inputs: CaseInputs) -> tuple:
        """``(x, weight, bias, eps, dy)`` for the target, in its layout, copies it may do with as it likes."""
        x, dy = to_layout(inputs.x, self.layout).copy(), to_layout(inputs.dy, self.layout).copy()
        return x, inputs.weight.copy(), inputs.bias.copy(), inputs.eps, dy

    def keywords(self, inputs: CaseInputs) -> dict:
        """Every keyword parameter's value for this case (a target is passed those it declares), copies."""
        start_mean, start_var = inputs.start_statistics()
        return {
            "running_mean": start_mean.astype(parameter_dtype(inputs.dtype)),
            "running_var": start_var.astype(parameter_dtype(inputs.dtype)),
            "momentum": inputs.momentum,
            "training": inputs.training,
        }

    def note_changed(self, changed: list[str], inputs: CaseInputs) -> None:
        for name in changed:
            self._changed.setdefault(name, f"{inputs.name}/{inputs.dtype}")

    def note_by_design(self, outputs: dict, reason: str) -> None:
        """A call that computed only ``outputs``, by design, for ``reason``: the others are not expected."""
        self.remarks.add(reason)
        self.unexpected.update(q for q in QUANTITIES if q not in outputs)

    def call(self, inputs: CaseInputs):
        raise NotImplementedError

    def close(self) -> None:
        """Release what the target holds (temporary folders, a worker process)."""
