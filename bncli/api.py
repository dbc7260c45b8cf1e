"""bncli from Python: the forward pass, the gradients and the gradient check of arrays.

Each function takes numpy arrays (or what :func:`numpy.asarray` reads: lists, a pandas
DataFrame, whose column names are kept), validates them as the command line validates its
files, and returns what the command line renders: :class:`bncli.commands.ForwardResult`,
:class:`bncli.commands.GradResult`, or for :func:`check` a :class:`CheckReport` around the
GradResult. A bad argument is an :class:`~bncli.errors.InputError` with the command line's
one-line message (its options named as there: ``--eps``, ``--weight``). Nothing is printed: what
the commands note on stderr is a :class:`BncliWarning` (forward, grad) or the report's ``notes`` (check).

>>> import bncli
>>> result = bncli.forward([[1.0, 10.0], [3.0, 30.0]])
>>> result.model.bn.y.tolist()
[[-0.9999950000374997, -0.9999999500000036], [0.9999950000374997, 0.9999999500000036]]
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from . import commands, core
from .errors import InputError, collected_notes
from .inputs import UpstreamGradient
from .io.matrix import Matrix
from .options import DEFAULT_EPS, DEFAULT_SEED, DTYPES, METHODS, CheckOptions, ForwardRequest, GradRequest, InputOptions

if TYPE_CHECKING:
    from .gradcheck import CheckedGradients

# What messages and the check's table call gradients given to check(against=...).
GIVEN_GRADIENTS = "the given gradients"
GRADIENT_NAMES = ("dx", "dw", "db")


def forward(x, weight=1.0, bias=0.0, eps: float = DEFAULT_EPS, *, dtype: str = "float64", columns=None):
    """Batch norm of ``x`` (k rows × n columns) in training mode: ``result.model.bn.y``, ``.s``, ``.mean`` ….

    ``weight`` and ``bias``: one number, or one per column. ``columns``: names for the columns
    (default: a DataFrame's own, else "0" … "n-1"). ``dtype``: float64 or float32.
    """
    data = _matrix(x, columns)
    with _notes_as_warnings():
        return commands.forward(ForwardRequest(inputs=_inputs(weight, bias, eps, dtype)), data)


def grad(
    x,
    dy=None,
    weight=1.0,
    bias=0.0,
    eps: float = DEFAULT_EPS,
    *,
    dtype: str = "float64",
    columns=None,
    seed: int = DEFAULT_SEED,
    jacobian: bool | Sequence[str | int] = False,
):
    """dx, dw, db for the upstream gradient ``dy`` (default: N(0, 1) draws from ``seed``, as the CLI's).

    ``result.gradients.dx`` (k × n), ``.dw``, ``.db`` (n); ``jacobian``: True for every column's
    k × k Jacobian ∂y/∂x, or a list of column names or indices, in ``result.jacobians``.
    """
    data = _matrix(x, columns)
    chosen = () if isinstance(jacobian, bool) else tuple(str(column) for column in jacobian)
    request = GradRequest(inputs=_inputs(weight, bias, eps, dtype), seed=seed, jacobian=bool(jacobian), columns=chosen)
    with _notes_as_warnings():
        return commands.grad(request, data=data, dy=_upstream(dy, data))


def check(
    x,
    dy=None,
    against=None,
    weight=1.0,
    bias=0.0,
    eps: float = DEFAULT_EPS,
    *,
    dtype: str = "float64",
    columns=None,
    seed: int = DEFAULT_SEED,
    method: str = "central",
    step: float | None = None,
    rtol: float | None = None,
    fast: bool | None = None,
    probes: int | None = None,
) -> CheckReport:
    """Check gradients against numerical derivatives of batch norm, as ``bncli grad --check`` does.

    ``against``: yours, as ``{"dx": …, "dw": …, "db": …}`` (any of them) or one array (dx);
    None checks bncli's own. ``dy``: the upstream gradient yours were computed for (default:
    N(0, 1) draws from ``seed``). The other options are those of ``grad --check``. Nothing is
    printed: what ``grad --check`` notes on stderr (how precise your numbers evidently are, which
    classic mistake a failing gradient matches) is in the report's ``notes``.
    """
    if method not in METHODS:
        raise InputError(f"method {method!r}: use {' or '.join(METHODS)}")
    data = _matrix(x, columns)
    given = None if against is None else _gradients(against, data)
    options = CheckOptions(
        enabled=True,
        method=method,
        step=step,
        rtol=rtol,
        fast=fast,
        probes=probes,
        against=None if given is None else GIVEN_GRADIENTS,
    )
    request = GradRequest(inputs=_inputs(weight, bias, eps, dtype), seed=seed, check=options)
    with collected_notes() as notes:
        result = commands.grad(request, data=data, dy=_upstream(dy, data), against=given)
    return CheckReport(result, tuple(notes))


@dataclass(frozen=True, repr=False)
class CheckReport:
    """What :func:`check` found: ``passed``, ``verdict`` (the CLI's one line), ``text`` (the check's
    tables as ``grad --check`` writes them into a file), ``json`` (its ``"check"`` object, as a dict).
    ``result`` is the :class:`bncli.commands.GradResult` the command line renders; ``notes`` the lines
    ``grad --check`` would write on stderr besides its verdict (a tuple of str, often empty), such as
    the precision your ``against`` numbers are judged with, or the classic mistake a failing one matches."""

    result: commands.GradResult
    notes: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return self.result.check.passed

    @property
    def verdict(self) -> str:
        from .present.grad import verdict_line

        return verdict_line(self.result)

    @property
    def text(self) -> str:
        from .output import as_text

        return as_text(self._document(), only="check")

    @property
    def json(self) -> dict:
        from .output import as_json

        return as_json(self._document(), only="check")["check"]

    def _document(self):
        from .present.grad import grad_document

        return grad_document(self.result)

    def __repr__(self) -> str:
        checked = ", ".join(self.result.check.report.results)
        return f"<CheckReport of {checked}: {'PASS' if self.passed else 'FAIL'}>"


class BncliWarning(UserWarning):
    """What the commands note on stderr (a single row, a constant column …), from :func:`forward` and
    :func:`grad`, which print nothing; :func:`check` puts it on its report's ``notes`` instead."""


@contextmanager
def _notes_as_warnings() -> Iterator[None]:
    """The commands' notes of what runs inside, as warnings of the caller of forward or grad."""
    with collected_notes() as notes:
        yield
    for text in notes:
        # stack: this generator, contextlib's __exit__, forward or grad, then their caller
        warnings.warn(text.removeprefix("warning: "), BncliWarning, stacklevel=4)


# --------------------------------------------------------------------- validation


def _inputs(weight, bias, eps: float, dtype: str) -> InputOptions:
    """The parameters as the CLI's options: --weight and --bias as the exact text of their numbers."""
    if dtype not in DTYPES:
        raise InputError(f"dtype {dtype!r}: use {' or '.join(DTYPES)}")
    return InputOptions(eps=float(eps), weight=_as_option("weight", weight), bias=_as_option("bias", bias), dtype=dtype)


def _as_option(name: str, value) -> str:
    """One number or a list, as the comma list --weight/--bias read (repr: a float's exact text)."""
    numbers = _real_array(name, value).ravel()
    return ",".join(repr(float(number)) for number in numbers)


def _real_array(what: str, values) -> np.ndarray:
    try:
        array = np.asarray(values)
    except ValueError:  # rows of different lengths
        raise InputError(f"{what}: not an array of real numbers (rows of different lengths?)") from None
    if array.dtype.kind not in "iuf":
        raise InputError(f"{what}: not an array of real numbers (dtype {array.dtype})")
    return array.astype(np.float64)


def _matrix(x, columns) -> Matrix:
    """``x`` as the CLI's reader gives a file: finite float64, each column contiguous, named."""
    if columns is None and hasattr(x, "columns"):  # a DataFrame
        columns = list(x.columns)
    values = _real_array("x", x)
    if values.ndim != 2:
        raise InputError(
            f"x: shape {values.shape}; expected a 2-D array (rows × columns), e.g. x.reshape(-1, 1) for one column"
        )
    if values.size == 0:
        raise InputError(f"x: no data (shape {values.shape})")
    n = values.shape[1]
    names = [str(i) for i in range(n)] if columns is None else [str(name) for name in columns]
    if len(names) != n:
        raise InputError(f"columns: {len(names)} name(s) for {n} columns")
    _require_finite("x", values, names)
    return Matrix(core.columns_contiguous(values), names, columns is not None, "x")


def _require_finite(what: str, values: np.ndarray, names: list[str]) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        index = np.argwhere(bad)[0]
        row = f"row {index[0]}, " if values.ndim == 2 else ""
        raise InputError(f"{what}: {row}column {names[index[-1]]!r}: NaN and infinity are not allowed")


def _upstream(dy, data: Matrix) -> UpstreamGradient | None:
    """The dy given, of the data's shape; None: the CLI's draws from the seed."""
    if dy is None:
        return None
    values = _real_array("dy", dy)
    if values.shape != data.shape:
        k, n = data.shape
        raise InputError(f"dy: shape {values.shape}, but the data is {k}×{n}")
    _require_finite("dy", values, data.columns)
    return UpstreamGradient(core.columns_contiguous(values), "the given array", None)


def _gradients(against, data: Matrix) -> CheckedGradients:
    """``against`` as --against reads a JSON file: any of dx, dw, db, of their shapes; one array is dx."""
    from .gradcheck import CheckedGradients

    given = dict(against) if isinstance(against, Mapping) else {"dx": against}
    unknown = [key for key in given if key not in GRADIENT_NAMES]
    if unknown or not given:
        known = ", ".join(repr(name) for name in GRADIENT_NAMES)
        raise InputError(
            f"against: unknown key {unknown[0]!r}; the keys are {known}" if unknown else f"against: give any of {known}"
        )
    k, n = data.shape
    shapes = {"dx": (k, n), "dw": (n,), "db": (n,)}
    found = {}
    for name, value in given.items():
        values = _real_array(f"against: {name!r}", value)
        if values.shape != shapes[name]:
            raise InputError(f"against: {name!r} has shape {values.shape}, but it must be {shapes[name]}")
        _require_finite(f"against: {name!r}", values, data.columns)
        found[name] = values
    return CheckedGradients(**found)
