"""The model every command starts from: the data, the parameters, the forward pass, in the dtype asked for.

:func:`build_model` reads and checks the inputs (:mod:`bncli.inputs`) and runs the forward pass
(:mod:`bncli.core`), in training or eval mode, with the running statistics' update where asked
for; what cannot be computed in the dtype is an :class:`~bncli.errors.InputError` naming why.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from . import core, inputs
from .errors import InputError
from .inputs import Running, note
from .io.matrix import Matrix
from .options import InputOptions

if TYPE_CHECKING:  # imported where a check runs: a plain run does not pay for it
    from . import gradcheck as gc


@dataclass(frozen=True)
class Model:
    """The data, the parameters and the forward pass: what every command starts from."""

    data: Matrix
    weight: np.ndarray  # (n,) float64, as given
    bias: np.ndarray  # (n,) float64, as given
    eps: float
    dtype: str
    bn: core.BatchNorm  # computed in ``dtype``
    running: Running | None = None  # eval mode: the statistics normalized with
    batch_stats: core.BatchNorm | None = None  # eval mode: the batch's own, shown beside them
    updated: Running | None = None  # training mode with --save-running: to be written there

    @property
    def mode(self) -> str:
        return "eval" if self.running is not None else "train"

    @property
    def columns(self) -> list[str]:
        return self.data.columns

    def cast(self, array: np.ndarray, what: str) -> np.ndarray:
        return in_dtype(array, self.dtype, what, self.columns)

    def problem(self, dy: np.ndarray) -> gc.Problem:
        """The float64 problem to differentiate: the inputs as this dtype sees them."""
        from . import gradcheck as gc

        def as_seen(values: np.ndarray) -> np.ndarray:
            return np.asarray(self.cast(values, "a value"), dtype=np.float64)

        running = None if self.running is None else (as_seen(self.running.mean), as_seen(self.running.var))
        x, dy, w, b = (as_seen(values) for values in (self.data.values, dy, self.weight, self.bias))
        return gc.Problem(x, dy, w, b, self.eps, running)


def in_dtype(array: np.ndarray, dtype: str, what: str, columns: list[str]) -> np.ndarray:
    """``array`` in the precision of the computation; a value beyond its range is an input error.

    Only a narrowing cast (float64 → float32) can lose a value: every array given here was
    read and found finite in float64 already, so the same dtype is returned unchecked.
    """
    original = np.asarray(array)
    with np.errstate(over="ignore", under="ignore"):
        cast = original.astype(dtype, copy=False)
    if cast is original:
        return cast
    for lost, problem in (
        (~np.isfinite(cast), f"does not fit {dtype} (largest {np.finfo(dtype).max:.3g})"),
        ((cast == 0) & (original != 0), f"is 0 in {dtype} (smallest {np.finfo(dtype).smallest_subnormal:.3g})"),
    ):
        if lost.any():
            index = np.argwhere(lost)[0]
            column = columns[index[-1]] if cast.ndim and cast.shape[-1] == len(columns) else "?"
            raise InputError(f"{what}: {original[tuple(index)]:g} in column {column!r} {problem}")
    return cast


class ZeroVarianceInput(InputError):
    """A constant column with --eps 0; ``columns`` holds the indices of those columns."""

    def __init__(self, message: str, columns: list[int]):
        super().__init__(message)
        self.columns = columns


def build_model(options: InputOptions, data: Matrix | None = None) -> Model:
    """Read (unless ``data`` is given) and validate the data and parameters, and run the forward pass."""
    if options.eps < 0 or not np.isfinite(options.eps):
        raise InputError(f"--eps {options.eps}: must be a finite number ≥ 0")
    if not 0 <= options.momentum <= 1:
        raise InputError(f"--momentum {options.momentum}: must be between 0 and 1")
    if options.eval and options.running is None:
        raise InputError("--eval needs --running PATH (the running statistics to normalize with)")
    if options.eval and options.save_running:
        raise InputError("--save-running updates statistics in training mode; it cannot go with --eval")
    data = inputs.load_matrix(options) if data is None else data
    k, n = data.shape
    if options.save_running and k < 2:
        raise InputError(
            f"--save-running: {data.source} has one row; the running variance needs at least 2 rows (unbiased)"
        )
    weight = inputs.per_column("--weight", options.weight, 1.0, n)
    bias = inputs.per_column("--bias", options.bias, 0.0, n)
    running = inputs.load_running(options.running, data.columns) if options.running else None

    def cast(values: np.ndarray, what: str) -> np.ndarray:
        return in_dtype(values, options.dtype, what, data.columns)

    x, w, b = cast(data.values, data.source), cast(weight, "--weight"), cast(bias, "--bias")
    if options.eval:
        mean, var = cast(running.mean, "--running"), cast(running.var, "--running")
        bn = _forward(lambda: core.forward_eval(x, mean, var, w, b, options.eps), f"--running {options.running}", data)
        model = Model(data, weight, bias, options.eps, options.dtype, bn, running, _batch_statistics(x, w, b, options))
    else:
        bn = _forward(lambda: core.forward(x, w, b, options.eps), data.source, data)
        model = Model(data, weight, bias, options.eps, options.dtype, bn)
    if options.save_running:
        model = _with_running_update(model, running, options.momentum)
    return model


def note_degenerate(model: Model, columns: list[int] | None = None) -> None:
    """Name on stderr, once a command has its result, a training batch of one row, and the ``columns``
    (default: all) where ε is not small beside the batch variance: there std = √(var + ε) is mostly ε,
    so s is shrunk towards 0 and y ≈ bias (all of it for a constant column)."""
    if model.mode != "train":
        return
    k, n = model.data.shape
    if k == 1:
        note("warning: a single row: batch norm is degenerate there (s = 0, y = bias, dx = 0)")
        return
    chosen = np.zeros(n, dtype=bool)
    chosen[list(range(n)) if columns is None else columns] = True
    x = model.data.values
    # A variance can underflow to 0 for a column that is not constant (1e-300 squared): look at the data.
    constant = chosen & (x.max(axis=0) == x.min(axis=0))
    swamped = chosen & ~constant & (np.asarray(model.bn.var, dtype=np.float64) <= model.eps) & (model.eps > 0)

    def named(mask: np.ndarray) -> str:
        names = [repr(model.columns[c]) for c in np.flatnonzero(mask)]
        return ", ".join(names[:10]) + (f", … ({len(names)} in all)" if len(names) > 10 else "")

    if constant.any() and model.eps > 0:
        note(f"warning: constant column(s) {named(constant)}: s = 0 there, so y = bias")
    if swamped.any():
        note(
            f"warning: column(s) {named(swamped)}: var ≤ eps ({model.eps:g}), so std = √(var + ε) is mostly ε "
            "and y ≈ bias there; a smaller --eps, or rescaled data, normalises them"
        )


def _forward(run, blamed: str, data: Matrix) -> core.BatchNorm:
    """Run a forward pass; a zero σ with --eps 0 is an input error naming ``blamed`` and the columns."""
    try:
        return run()
    except core.ZeroVarianceError as error:
        names = ", ".join(repr(data.columns[c]) for c in error.columns)
        message = f"{blamed}: column {names}: zero variance with --eps 0 divides by zero"
        raise ZeroVarianceInput(message, error.columns) from None


def _batch_statistics(x, w, b, options: InputOptions) -> core.BatchNorm | None:
    """The batch's own statistics, shown beside the running ones in eval mode, if defined."""
    try:
        return core.forward(x, w, b, options.eps) if x.shape[0] > 1 else None
    except core.ZeroVarianceError:
        return None


def _with_running_update(model: Model, previous: Running | None, momentum: float) -> Model:
    n = model.data.shape[1]
    start = previous or Running(np.zeros(n), np.ones(n), None, 0)
    mean, var = core.update_running(start.mean, start.var, model.bn, momentum)
    for name, values in (("running mean", mean), ("running var", var)):
        require_finite(name, values, model.columns)
    return replace(model, updated=Running(mean, var, momentum, start.batches + 1))


def require_finite(name: str, values: np.ndarray, columns: list[str]) -> None:
    """A result beyond the range of its dtype is an input error naming its column and that dtype, never inf."""
    bad = ~np.isfinite(values)
    if bad.any():
        located = values.ndim and values.shape[-1] == len(columns)
        where = f" of column {columns[int(np.argwhere(bad)[0][-1])]!r}" if located else ""
        # The data, --weight and --bias all scale what comes out: any of them may be what is too large.
        if values.dtype == np.float32:  # what does not fit float32 may well fit float64
            raise InputError(
                f"{name}{where} does not fit float32 (largest {np.finfo(np.float32).max:.3g}; the data, --weight "
                "or --bias are near a limit of its range); use --dtype float64, or rescale them"
            )
        raise InputError(
            f"{name}{where} overflows float64 (largest {np.finfo(np.float64).max:.3g}; the data, --weight or "
            "--bias are near a limit of its range); rescale them"
        )
