"""What is differentiated: the forward pass of a problem, the step, and the gradients to check."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import core

METHODS = ("central", "complex")


class StepError(ValueError):
    """The step is lost in rounding, or overflows, in some columns (``columns``: their indices)."""

    def __init__(self, columns: list[int]):
        self.columns = columns
        super().__init__(f"the perturbation (x + h) − (x − h) is 0 or not finite in column(s) {columns}")


def require_usable(applied: np.ndarray) -> None:
    """Every perturbation actually applied must be a positive finite number."""
    usable = np.isfinite(applied) & (np.abs(applied) > 0)
    if not usable.all():
        raise StepError(np.flatnonzero(~usable.reshape(-1, usable.shape[-1]).all(axis=0)).tolist())


def require_finite(derivative: np.ndarray) -> np.ndarray:
    """A numerical derivative (columns along the last axis) that overflowed is the step's fault."""
    finite = np.isfinite(derivative)
    if not finite.all():
        raise StepError(np.flatnonzero(~finite.reshape(-1, finite.shape[-1]).all(axis=0)).tolist())
    return derivative


def default_step(method: str, rows: int, affine: bool = False, probes: bool = False) -> float:
    """The default step relative to each column's σ (see the module notes).

    ``affine``: eval mode, where y is affine in x, so central differences have no
    truncation error and the largest natural step, σ itself, has the least rounding.
    ``probes``: a ±1 direction moves all k rows at once, so its truncation error is that
    of a relative step h (not h/√k) while the rounding, relative to a directional
    derivative of size √k, is ε·√k/h: the balance is at (ε·√k)^(1/3).
    """
    if method == "complex":
        return 1e-20
    if affine:
        return 1.0
    growth = np.sqrt(max(rows, 1)) if probes else max(rows, 1)
    return float(np.cbrt(np.finfo(np.float64).eps * growth))


@dataclass(frozen=True)
class Problem:
    """One batch-norm evaluation to differentiate, in float64.

    ``running`` holds (mean, var) in eval mode and is None in training mode.
    """

    x: np.ndarray  # (k, n)
    dy: np.ndarray  # (k, n)
    weight: np.ndarray  # (n,)
    bias: np.ndarray  # (n,)
    eps: float
    running: tuple[np.ndarray, np.ndarray] | None = None

    def forward(self, x: np.ndarray, weight=None, bias=None) -> core.BatchNorm:
        weight = self.weight if weight is None else weight
        bias = self.bias if bias is None else bias
        if self.running is None:
            return core.forward(x, weight, bias, self.eps)
        return core.forward_eval(x, *self.running, weight, bias, self.eps)

    def perturbed(self, x: np.ndarray, weight=None, bias=None) -> core.BatchNorm:
        """:meth:`forward` at a perturbed point, where a step so large that the variance is lost
        (inf − inf with a complex step of 1e300·σ) is the step's fault, not the data's."""
        try:
            return self.forward(x, weight, bias)
        except core.ZeroVarianceError as error:
            raise StepError(error.columns) from None

    @property
    def affine(self) -> bool:
        """Eval mode: y is affine in x, so central differences have no truncation error."""
        return self.running is not None


@dataclass(frozen=True)
class CheckedGradients:
    """Gradients to check: any of dx (k, n), dw (n,), db (n,), jacobian {column: (k, k)}."""

    dx: np.ndarray | None = None
    dw: np.ndarray | None = None
    db: np.ndarray | None = None
    jacobian: dict[int, np.ndarray] = field(default_factory=dict)

    def as_float64(self) -> CheckedGradients:
        """The same gradients in float64 (float32 ones are judged at their own precision)."""

        def wide(values):
            return None if values is None else np.asarray(values, dtype=np.float64)

        jacobian = {c: wide(j) for c, j in self.jacobian.items()}
        return CheckedGradients(wide(self.dx), wide(self.dw), wide(self.db), jacobian)


def differentiation_point(problem: Problem) -> np.ndarray:
    """The data shifted by the column means (training mode), where steps are not lost."""
    if problem.running is None:
        return problem.x - problem.x.mean(axis=0)
    return problem.x
