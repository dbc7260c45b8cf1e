"""Writing results: csv/tsv at full round-trip precision, and JSON (large matrices in bulk).

No terminal rendering: the table view is :mod:`bncli.render`'s.
"""

from __future__ import annotations

import csv
import errno
import io as stdlib_io  # the standard library's, not this package
import json
from collections.abc import Sequence
from typing import BinaryIO

import numpy as np

from ..errors import InputError
from .fast import POLARS_BYTES_PER_COLUMN, POLARS_MIN_COLUMNS

# Outputs this large are formatted by polars (~500 MB/s against ~15 MB/s for repr),
# unless they are so wide that its cost per column dominates (2 × 10⁶ took 2 GB, 9 s).
_FAST_WRITE_ELEMENTS = 200_000
_POLARS_ELEMENTS_PER_COLUMN = POLARS_BYTES_PER_COLUMN // 8


def format_delimited(
    values: np.ndarray, columns: Sequence[str] | None, delimiter: str, row_labels: Sequence[str] | None = None
) -> str:
    """One matrix as csv/tsv text (see :func:`write_delimited`)."""
    buffer = stdlib_io.BytesIO()
    write_delimited(buffer, values, columns, delimiter, row_labels)
    return buffer.getvalue().decode("utf-8")


def write_delimited(
    stream: BinaryIO,
    values: np.ndarray,
    columns: Sequence[str] | None,
    delimiter: str,
    row_labels: Sequence[str] | None = None,
) -> None:
    """Write one matrix as csv/tsv, at full round-trip precision, with an optional header.

    Every number is the shortest text that reads back to the same float64 (Python's
    repr; polars for large matrices, which writes the same digits, e.g. 0.000025
    where repr writes 2.5e-05).
    """
    if columns is not None:
        stream.write((_header_line(columns, delimiter) + "\n").encode("utf-8"))
    values = np.asarray(values, dtype=np.float64)
    if row_labels is None and values.size >= _FAST_WRITE_ELEMENTS:
        tall = values.shape[1] <= max(POLARS_MIN_COLUMNS, values.size // _POLARS_ELEMENTS_PER_COLUMN)
        if (_write_polars if tall else _write_wide_rows)(stream, values, delimiter):
            return
    rows = values.tolist()
    if row_labels is None:
        text = "".join(delimiter.join(map(repr, row)) + "\n" for row in rows)
    else:
        text = "".join(
            delimiter.join([label, *map(repr, row)]) + "\n" for label, row in zip(row_labels, rows, strict=True)
        )
    stream.write(text.encode("utf-8"))


def _write_wide_rows(stream: BinaryIO, values: np.ndarray, delimiter: str) -> bool:
    """A matrix too wide for a polars frame, a row at a time: polars spells each row's numbers
    (its float formatting, the same shortest digits as in its csv, ~4× faster than repr)."""
    try:
        import polars as pl
    except ImportError:
        return False
    for row in values:
        stream.write((delimiter.join(pl.Series(row).cast(pl.String).to_list()) + "\n").encode("ascii"))
    return True


def _write_polars(stream: BinaryIO, values: np.ndarray, delimiter: str) -> bool:
    try:
        import polars as pl
    except ImportError:
        return False
    frame = pl.DataFrame({f"c{j}": values[:, j] for j in range(values.shape[1])})
    try:
        frame.write_csv(stream, include_header=False, separator=delimiter)
    except OSError as error:
        # polars reports a closed pipe as a plain OSError ("Broken pipe (os error 32)").
        if error.errno == errno.EPIPE or f"(os error {errno.EPIPE})" in str(error):
            raise BrokenPipeError(errno.EPIPE, "Broken pipe") from None
        raise
    return True


def _header_line(columns: Sequence[str], delimiter: str) -> str:
    buffer = stdlib_io.StringIO()
    csv.writer(buffer, delimiter=delimiter, lineterminator="").writerow(columns)
    return buffer.getvalue()


def to_jsonable(value):
    """numpy arrays and scalars to lists and floats, for json.dumps."""
    if isinstance(value, np.ndarray):
        return np.asarray(value, dtype=np.float64).tolist() if value.dtype.kind in "fciub" else value.tolist()
    if isinstance(value, dict):
        return {key: to_jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(item) for item in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def write_json(stream: BinaryIO, obj) -> None:
    """Write ``obj`` as one JSON line; NaN and infinity are refused (they are not JSON).

    Large matrices are written in bulk: their rows as csv lines (the same
    shortest round-trip numbers) wrapped in brackets, which is valid JSON.
    """
    try:
        _write_json_value(stream, obj)
    except ValueError:
        raise InputError("a result is NaN or infinite, which JSON cannot carry") from None
    stream.write(b"\n")


def _write_json_value(stream: BinaryIO, value) -> None:
    if isinstance(value, dict):
        stream.write(b"{")
        for position, (key, item) in enumerate(value.items()):
            stream.write((", " if position else "").encode() + json.dumps(str(key)).encode() + b": ")
            _write_json_value(stream, item)
        stream.write(b"}")
    elif (
        isinstance(value, np.ndarray)
        and value.ndim == 2
        and value.size >= _FAST_WRITE_ELEMENTS
        and value.dtype.kind == "f"
    ):
        if not np.isfinite(value).all():
            raise ValueError("not finite")
        buffer = stdlib_io.BytesIO()
        write_delimited(buffer, value, None, ",")
        stream.write(b"[[" + buffer.getvalue().rstrip(b"\n").replace(b"\n", b"], [") + b"]]")
    else:
        stream.write(json.dumps(to_jsonable(value), allow_nan=False).encode())


def format_json(obj) -> str:
    """JSON text (see :func:`write_json`)."""
    buffer = stdlib_io.BytesIO()
    write_json(buffer, obj)
    return buffer.getvalue().decode("utf-8")
