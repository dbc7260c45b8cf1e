"""The comparison of one quantity with its numerical value, element by element, against each element's noise."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .. import numdiff
from .noise import NOISE_MULTIPLE


@dataclass(frozen=True)
class Comparison:
    """The comparison of one quantity (dx, dw, db or jacobian) with its numerical value.

    ``row`` and ``column`` locate the worst element, the one the verdict rests on (row is
    None for per-column quantities and for probe checks of dx); ``wrt_row`` is the second
    index of a Jacobian element ∂y[row]/∂x[wrt_row]. ``checked``, ``numerical``,
    ``abs_error``, ``rel_error`` and ``over_noise`` are the values there. ``max_abs_error`` and
    ``max_rel_error`` (error / natural scale) are the largest over all elements.
    ``noise`` is the largest noise estimate (natural scale) and ``error_over_noise`` the
    largest |checked − numerical| / noise. ``beyond`` counts the elements past the bound and
    ``column_errors`` maps each column compared to its worst relative error.
    ``analytic_rel_error`` is, for a gradient given with --against, its distance from
    bncli's analytic gradient.
    """

    quantity: str
    max_abs_error: float
    max_rel_error: float
    row: int | None
    column: int
    checked: float
    numerical: float
    abs_error: float
    rel_error: float
    over_noise: float
    noise: float
    error_over_noise: float
    passed: bool
    beyond: int
    column_errors: dict[int, float]
    wrt_row: int | None = None
    analytic_rel_error: float | None = None
    errors: np.ndarray | None = field(default=None, repr=False)  # every element's error over its bound (dx, full)


@dataclass(frozen=True)
class Judged:
    """One quantity's values to compare, with the scales they are read on."""

    checked: np.ndarray
    numerical: np.ndarray
    scale: np.ndarray  # natural scale, for the reported relative error
    noise: np.ndarray  # what the two may differ by without a mistake (absolute)


def compare(
    quantity: str,
    judged: Judged,
    rtol: float | None,
    locate: Callable[[tuple[int, ...]], tuple[int | None, int, int | None]],
    analytic: np.ndarray | None = None,
    columns: Sequence[int] | None = None,
    column_axis: int = -1,
    keep_errors: bool = False,
) -> Comparison:
    """Compare element by element; ``columns`` names the column of each index along ``column_axis``
    (default: the index itself). The worst element is the one furthest past the bound."""
    error = np.abs(np.subtract(judged.checked, judged.numerical))
    relative = numdiff.relative_error(error, judged.scale)
    over_noise = numdiff.relative_error(error, judged.noise)
    over_noise[error == 0] = 0.0  # no error where nothing can be off (dy = 0 down a column)
    judging = over_noise if rtol is None else relative
    limit = NOISE_MULTIPLE if rtol is None else rtol
    worst = np.unravel_index(np.argmax(judging), judging.shape)
    row, column, wrt_row = locate(tuple(int(i) for i in worst))
    per_column = np.moveaxis(relative, column_axis, -1).reshape(-1, relative.shape[column_axis]).max(axis=0)
    names = range(len(per_column)) if columns is None else columns
    analytic_error = None
    if analytic is not None:
        analytic_error = numdiff.largest_relative_error(np.subtract(judged.checked, analytic), judged.scale)
    return Comparison(
        quantity=quantity,
        max_abs_error=float(error.max()),
        max_rel_error=float(relative.max()),
        row=row,
        column=column,
        checked=float(judged.checked[worst]),
        numerical=float(judged.numerical[worst]),
        abs_error=float(error[worst]),
        rel_error=float(relative[worst]),
        over_noise=float(over_noise[worst]),
        noise=float(np.max(numdiff.relative_error(np.broadcast_to(judged.noise, error.shape), judged.scale))),
        error_over_noise=float(over_noise.max()),
        passed=bool(judging[worst] <= limit),
        beyond=int(np.count_nonzero(~(judging <= limit))),
        column_errors={int(c): float(e) for c, e in zip(names, per_column, strict=True)},
        wrt_row=wrt_row,
        analytic_rel_error=analytic_error,
        errors=judging / limit if keep_errors else None,
    )


def at_matrix(index):
    return index[0], index[1], None


def at_vector(index):
    return None, index[-1], None
