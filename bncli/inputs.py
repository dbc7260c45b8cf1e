"""Loading and validating what the commands read: the data, --weight/--bias, --dy, --against, --running.

Every problem is an :class:`~bncli.errors.InputError` whose message is one line.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from .errors import InputError, note, printable
from .io import careful, read
from .io.matrix import Matrix
from .options import InputOptions

if TYPE_CHECKING:  # imported where a check runs: a plain run does not pay for it
    from . import gradcheck as gc


# ------------------------------------------------------------------------ the data


def stdin_is_piped() -> bool:
    """True when stdin is a pipe, file or socket; False for a terminal, /dev/null or a closed stdin."""
    if sys.stdin is None:
        return False
    try:
        mode = os.fstat(sys.stdin.fileno()).st_mode
    except (AttributeError, OSError, ValueError):  # a stream without a descriptor (tests)
        return not sys.stdin.isatty()
    return stat.S_ISFIFO(mode) or stat.S_ISREG(mode) or stat.S_ISSOCK(mode)


def load_matrix(options: InputOptions) -> Matrix:
    """The input matrix: FILE, '-' (stdin), piped stdin, or the bundled sample."""
    delimiter = read.parse_delimiter(options.delimiter)
    source = options.file
    if source is None:
        if stdin_is_piped():
            source = "-"
        else:
            path = read.sample_path()
            note(f"no FILE and nothing piped in: using the bundled sample {path.name} (blood counts, 10×4)")
            matrix = read.read_matrix(str(path), delimiter=delimiter, header=options.header)
            return replace(matrix, source=f"sample {path.name}")
    if source == "-":
        data = read.read_stdin()
        matrix = read.read_matrix(read.STDIN_NAME, data, delimiter=delimiter, header=options.header)
    else:
        matrix = read.read_matrix(source, delimiter=delimiter, header=options.header)
    return with_index_column(replace(matrix, drop_index=options.index_column == "drop"))


def with_index_column(matrix: Matrix) -> Matrix:
    """The data without the index column pandas' to_csv() writes (--index-column drop), or as given and
    that column named on stderr: normalising 0 … k−1 as data is rarely what was meant."""
    if not matrix.has_pandas_index:
        return matrix
    if matrix.drop_index:
        return without_index_column(matrix)
    note(
        f"{matrix.source}: its first column has no name and holds 0 … {matrix.shape[0] - 1}, the index that "
        "pandas' to_csv() writes; it is normalised as data. --index-column drop drops it (or to_csv(index=False))"
    )
    return matrix


def without_index_column(matrix: Matrix) -> Matrix:
    return replace(matrix, values=matrix.values[:, 1:], columns=matrix.columns[1:])


def per_column(option: str, text: str | None, default: float, n: int) -> np.ndarray:
    """--weight/--bias: one number for every column, or a comma list of exactly n."""
    if text is None:
        return np.full(n, default)
    fields = [field.strip() for field in text.split(",")]
    try:
        values = np.array([float(field) for field in fields])
    except ValueError:
        raise InputError(f"{option} {text!r}: not a number or a comma list of numbers") from None
    if not np.isfinite(values).all():
        raise InputError(f"{option} {text!r}: NaN and infinity are not allowed")
    if len(values) == 1:
        return np.full(n, values[0])
    if len(values) != n:
        raise InputError(f"{option}: {len(values)} values, but the data has {n} columns")
    return values


def resolve_columns(selection: tuple[str, ...], names: list[str]) -> list[int]:
    """--column NAME|INDEX (repeatable) to column indices; all columns when none is given."""
    if not selection:
        return list(range(len(names)))
    indices = []
    for item in selection:
        if item in names:
            indices.append(names.index(item))
        elif item.isdigit() and int(item) < len(names):
            indices.append(int(item))
        else:
            raise InputError(
                f"--column {item!r}: no such column{did_you_mean(item, names)}; the columns are "
                f"{_shown_names(names)} (or 0…{len(names) - 1})"
            )
    return list(dict.fromkeys(indices))


def did_you_mean(given: str, known: list[str]) -> str:
    """ " (did you mean 'age'?)" for the known name closest to ``given`` (the same but for case first), or ""."""
    import difflib

    folded = [name for name in known if name.casefold() == given.casefold()]
    close = folded or difflib.get_close_matches(given, known, n=1, cutoff=0.75)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _shown_names(names: list[str]) -> str:
    return ", ".join(repr(name) for name in names[:10]) + (", …" if len(names) > 10 else "")


def matrix_option(option: str, path: str, data: Matrix) -> np.ndarray:
    """A matrix given to an option (--dy, --against): a path or '-' (stdin), of the data's shape, its
    columns matched to the data's by name when both have a header, and without pandas' index column
    when --index-column drop was given (whether or not the data has one)."""
    if path == "-":
        if data.source == read.STDIN_NAME:
            raise InputError(f"{option} - reads stdin, and so does the data: give FILE as a path")
        given = read.read_matrix(read.STDIN_NAME, read.read_stdin(f"{option} -"))
    else:
        given = read.read_matrix(path)
    dropped = data.drop_index and given.has_pandas_index
    if dropped:
        given = without_index_column(given)
    if given.shape != data.shape:
        raise InputError(_shape_mismatch(option, given, data, dropped))
    if given.has_header and not data.has_header and given.columns != data.columns:
        note(
            f"{option} {given.source}: line {given.first_line} ({_shown_names(given.columns)}) is read as a "
            "header; the data has none, so its columns are matched to the data's by position"
        )
    return matched_by_name(option, given, data)


def _shape_mismatch(option: str, given: Matrix, data: Matrix, dropped: bool) -> str:
    """The one-line error for ``given`` of another shape than the data, with the likely reason: a
    pandas index column in one of them, or a first line read as a header in one file but not the other."""
    (rows, columns), (k, n) = given.shape, data.shape
    shape = f"shape {rows}×{columns}" + (" without its pandas index column" if dropped else "")
    message = f"{option} {given.source}: {shape}, but the data is {k}×{n}"
    reason = _index_column_reason(given, data) or _header_reason(given, data, dropped)
    return f"{message}; {reason}" if reason else message


def _index_column_reason(given: Matrix, data: Matrix) -> str | None:
    """Why the shapes differ by one column, if pandas' index column kept in one of them explains it."""
    (rows, columns), (k, n) = given.shape, data.shape
    if (rows, columns) == (k, n + 1) and given.has_pandas_index:
        return "its first column is the index pandas' to_csv() writes: --index-column drop leaves it out"
    if (rows, columns) == (k, n - 1) and data.has_pandas_index and not data.drop_index:
        return "the data's first column is pandas' index, kept as data: --index-column drop leaves it out"
    return None


def _header_reason(given: Matrix, data: Matrix, dropped: bool) -> str | None:
    """Why the shapes differ by one row, if a first line read as a header in one file only explains it."""
    (rows, columns), (k, n) = given.shape, data.shape
    if (rows, columns) == (k - 1, n) and given.has_header and not data.has_header:
        fields = [""] * dropped + given.columns  # the header as in the file, the index's empty name first
        column, name = next((j, name) for j, name in enumerate(fields, 1) if not careful.is_number(name))
        return (
            f"its line {given.first_line} was read as a header, as column {column} ({name!r}) is not a number, "
            "and the data has none"
        )
    if (rows, columns) == (k + 1, n) and data.has_header and not given.has_header and given.first_line:
        return (
            f"its line {given.first_line} is all numbers, so it was read as data, not as a header like the "
            "data's (a header needs a field that is not a number)"
        )
    return None


def matched_by_name(option: str, given: Matrix, data: Matrix) -> np.ndarray:
    """``given``'s values (of the data's shape) with its columns in the data's order: by name when both
    have a header (a header in another order is followed, not ignored), else by position."""
    values = given.values
    if not (given.has_header and data.has_header) or given.columns == data.columns:
        return values
    unknown = [name for name in given.columns if name not in data.columns]
    if unknown:
        names = ", ".join(repr(name) for name in unknown[:10]) + (", …" if len(unknown) > 10 else "")
        raise InputError(
            f"{option} {given.source}: its header names column(s) {names} that the data does not have "
            f"(the data's columns are {_shown_names(data.columns)}); name them as the data does, "
            "or leave the header out"
        )
    note(f"{option} {given.source}: its columns are in another order than the data's; matched by name")
    order = [given.columns.index(name) for name in data.columns]
    return np.asfortranarray(values[:, order])  # column-major, as the reader makes it


# ------------------------------------------------------------------ the gradients


@dataclass(frozen=True)
class UpstreamGradient:
    """dy and where it came from: a file, stdin, or N(0, 1) draws from a seed."""

    values: np.ndarray
    path: str | None
    seed: int | None

    @property
    def label(self) -> str:
        if self.path is None:
            return f"dy ~ N(0, 1), seed {self.seed}"
        return "dy from stdin" if self.path == "-" else f"dy from {self.path}"


def load_dy(path: str | None, seed: int, data: Matrix) -> UpstreamGradient:
    if path is None:
        from . import core

        draws = np.random.default_rng(seed).standard_normal(data.shape)
        return UpstreamGradient(core.columns_contiguous(draws), None, seed)
    return UpstreamGradient(matrix_option("--dy", path, data), path, None)


def load_against(path: str, data: Matrix) -> gc.CheckedGradients:
    """--against: a CSV/TSV/.npy file (or '-') is dx; a JSON object may hold dx, dw, db, and nothing else."""
    from . import gradcheck as gc

    if not path.lower().endswith(".json"):
        return gc.CheckedGradients(dx=matrix_option("--against", path, data))
    expected = 'any of "dx", "dw", "db"'
    obj = json_object("--against", path, expected)
    k, n = data.shape
    shapes = {"dx": (k, n), "dw": (n,), "db": (n,)}
    unknown = [key for key in obj if key not in shapes]
    if unknown:  # a misspelt "dW" would otherwise leave dw unchecked without a word
        raise InputError(
            f"--against {path}: unknown key {unknown[0]!r}{did_you_mean(unknown[0], list(shapes))}; "
            f"expected a JSON object with {expected}, and nothing else"
        )
    if not obj:
        raise InputError(f"--against {path}: expected a JSON object with {expected}")
    found = {key: json_numbers("--against", path, obj, key, shape) for key, shape in shapes.items() if key in obj}
    return gc.CheckedGradients(**found)


# ------------------------------------------------------------- running statistics


@dataclass(frozen=True)
class Running:
    """Running statistics as PyTorch's BatchNorm1d keeps them."""

    mean: np.ndarray
    var: np.ndarray
    momentum: float | None
    batches: int


def json_object(option: str, path: str, expected: str) -> dict:
    """The JSON object in the file given to ``option`` (``expected`` says what it should hold)."""
    text = read.read_bytes(path)
    try:
        obj = json.loads(text.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise InputError(f"{option} {path}: not UTF-8 text, so not JSON") from None
    except RecursionError:
        raise InputError(f"{option} {path}: not usable JSON (nested too deeply)") from None
    except json.JSONDecodeError as error:
        raise InputError(f"{option} {path}: not valid JSON ({printable(str(error))})") from None
    except ValueError:  # an integer of thousands of digits, which Python refuses to convert
        raise InputError(f"{option} {path}: a number with thousands of digits; bncli reads float64 numbers") from None
    if not isinstance(obj, dict):
        raise InputError(f"{option} {path}: expected a JSON object with {expected}")
    return obj


def json_numbers(option: str, path: str, obj: dict, key: str, shape: tuple[int, ...]) -> np.ndarray:
    """``obj[key]`` as finite float64 numbers of the given shape (JSON numbers only: "1" is text)."""
    if not _all_numbers(obj[key]):
        raise InputError(f"{option} {path}: {key!r} is not an array of numbers")
    try:
        values = np.array(obj[key], dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"{option} {path}: {key!r} is not an array of numbers") from None
    if values.shape != shape:
        raise InputError(f"{option} {path}: {key!r} has shape {values.shape}, but it must be {shape}")
    if not np.isfinite(values).all():
        raise InputError(f"{option} {path}: {key!r} holds NaN or infinity (or a number beyond float64)")
    return values


def _all_numbers(value) -> bool:
    """A JSON number, or a (nested) list of them; booleans and strings are not numbers."""
    if isinstance(value, list):
        return all(_all_numbers(item) for item in value)
    return isinstance(value, int | float) and not isinstance(value, bool)


def load_running(path: str, columns: list[str]) -> Running:
    """A --running file: JSON {"columns", "mean", "var", "momentum", "batches"}, checked against the data."""
    obj = json_object("--running", path, "columns, mean, var")
    missing = [key for key in ("columns", "mean", "var") if key not in obj]
    if missing:
        raise InputError(f"--running {path}: missing key(s) {', '.join(missing)}")
    _require_running_columns(path, obj["columns"], columns)
    mean, var = (json_numbers("--running", path, obj, key, (len(columns),)) for key in ("mean", "var"))
    if (var < 0).any():
        column = columns[int(np.argmax(var < 0))]
        raise InputError(f"--running {path}: negative variance for column {column!r}")
    momentum, batches = obj.get("momentum"), obj.get("batches", 0)
    _require_running_counts(path, momentum, batches)
    return Running(mean, var, momentum, batches)


def _require_running_columns(path: str, names, columns: list[str]) -> None:
    """The file's "columns" must be the data's column names."""
    if not isinstance(names, list) or not all(isinstance(name, str | int) for name in names):
        raise InputError(f"--running {path}: 'columns' must be a list of column names")
    if [str(name) for name in names] != columns:
        shown = printable(str(names)[:200])
        raise InputError(f"--running {path}: its columns {shown} differ from the data's {columns}")


def _require_running_counts(path: str, momentum, batches) -> None:
    """The file's momentum: a number in [0, 1], or null; its batches: a whole number ≥ 0, not a boolean."""
    if momentum is not None and not (isinstance(momentum, int | float) and 0 <= momentum <= 1):
        raise InputError(f"--running {path}: 'momentum' must be a number between 0 and 1, or null")
    if isinstance(batches, bool) or not isinstance(batches, int) or not 0 <= batches < 2**53:
        raise InputError(f"--running {path}: 'batches' must be a whole number ≥ 0")
