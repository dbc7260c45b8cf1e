"""Reading matrices (CSV, TSV, whitespace, .npy) and writing results (csv, tsv, json).

No numerics beyond parsing and no terminal rendering. Every input problem is an
:class:`InputError` whose message is one line naming the source, the line and
the column where that applies.
"""

from __future__ import annotations

import csv
import errno
import io as io_module
import itertools
import json
import math
import os
import re
import stat
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from .errors import InputError, OutputError, printable

STDIN_NAME = "<stdin>"
SAMPLE_NAME = "blood.csv"
SAMPLE_DY_NAME = "blood_dy.csv"
WHITESPACE = "whitespace"
_DELIMITER_NAMES = {
    "tab": "\t",
    "\\t": "\t",
    "comma": ",",
    "semicolon": ";",
    "space": WHITESPACE,
    WHITESPACE: WHITESPACE,
}
_SNIFFED = ("\t", ",", ";")


@dataclass(frozen=True)
class Matrix:
    """A table of numbers as read: values (k, n), column names, and whether a header was read."""

    values: np.ndarray
    columns: list[str]
    has_header: bool
    source: str

    @property
    def shape(self) -> tuple[int, int]:
        return self.values.shape


def sample_path(name: str = SAMPLE_NAME) -> Path:
    """A file of the bundled sample (the article's blood-count example)."""
    from importlib.resources import files

    return Path(str(files("bncli") / "sample_data" / name))


def parse_delimiter(value: str | None) -> str | None:
    """The delimiter named by --delimiter: one character, or tab/comma/semicolon/whitespace."""
    if value is None:
        return None
    named = _DELIMITER_NAMES.get(value.lower())
    if named:
        return named
    if len(value) != 1 or value in '\r\n"#' or value.isalnum() or value in ".-+":
        raise InputError(f"--delimiter: {value!r} is not usable; give one character such as , ; | or tab, whitespace")
    return value


def read_matrix(
    path: str, data: bytes | None = None, *, delimiter: str | None = None, header: bool | None = None
) -> Matrix:
    """Read a matrix from ``path`` (or from ``data`` already read, e.g. stdin, named ``path``).

    ``.npy`` files are loaded with pickles refused; anything else is text.
    """
    if data is None and path.lower().endswith(".npy"):
        return _read_npy(path)
    if delimiter is None and path.lower().endswith(".tsv"):
        delimiter = "\t"
    if data is None:
        if _size(path) < _FAST_READ_BYTES:
            return _parse_careful(read_bytes(path), path, delimiter, header)
        fast = _parse_fast(_file_pieces(path), _size(path), path, delimiter, header)
        return fast or _parse_careful(read_bytes(path), path, delimiter, header)
    return parse_text(data, path, delimiter=delimiter, header=header)


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0  # read_bytes will say what is wrong


def read_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            _require_readable_kind(handle.fileno(), path)
            return handle.read()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, not a file") from None
    except PermissionError:
        raise InputError(f"{path}: permission denied") from None
    except OSError as error:
        raise InputError(f"{path}: cannot read: {error.strerror or error}") from None


def _require_readable_kind(descriptor: int, name: str) -> None:
    """Refuse what is not a regular file, a pipe, a socket or a terminal (``bncli forward -`` then
    reads what is typed, up to Ctrl-D): reading /dev/zero or /dev/urandom would never end (or end
    in MemoryError), and a disk is not a table."""
    mode = os.fstat(descriptor).st_mode
    if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or os.isatty(descriptor)):
        kind = "a character device" if stat.S_ISCHR(mode) else "a block device" if stat.S_ISBLK(mode) else "special"
        raise InputError(f"{name}: {kind}, not a regular file or a pipe")


def read_stdin(name: str = STDIN_NAME) -> bytes:
    """All of stdin, refused as :func:`read_bytes` refuses devices (``bncli - < /dev/zero``)."""
    import sys

    if sys.stdin is None:
        raise InputError(f"{name}: stdin is closed")
    try:
        try:
            descriptor = sys.stdin.fileno()
        except (OSError, ValueError):  # a stream without a descriptor (tests): nothing to refuse
            descriptor = None
        if descriptor is not None:
            _require_readable_kind(descriptor, name)
        return _read_text_stream(sys.stdin.buffer, name)
    except OSError as error:
        raise InputError(f"{name}: cannot read: {error.strerror or error}") from None


def _read_text_stream(stream, name: str) -> bytes:
    """All of ``stream``, stopped at the first piece holding a NUL byte: an endless binary stream
    (``cat /dev/zero | bncli forward``) is refused at once, not after filling the memory."""
    pieces = []
    while piece := stream.read(_PIECE_BYTES):
        if b"\0" in piece and not pieces and piece[:6] == b"\x93NUMPY":
            raise InputError(f"{name}: a .npy array on stdin; give its file name instead")
        if b"\0" in piece:
            raise InputError(f"{name}: binary data (NUL bytes); expected CSV/TSV text or a .npy file")
        pieces.append(piece)
    return b"".join(pieces)


def _read_npy(path: str) -> Matrix:
    try:
        with open(path, "rb") as handle:
            _require_readable_kind(handle.fileno(), path)
            _require_npy_size(handle, path)
            array = np.load(handle, allow_pickle=False)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        read_bytes(path)  # raises the same one-line errors as for text files
        raise InputError(f"{path}: cannot read") from None
    except OSError as error:
        raise InputError(f"{path}: cannot read: {error.strerror or error}") from None
    except (ValueError, EOFError) as error:
        raise InputError(f"{path}: not a readable .npy array of numbers ({error})") from None
    except MemoryError:
        raise InputError(f"{path}: too large to hold in memory") from None
    if not isinstance(array, np.ndarray):  # a .npz archive renamed .npy
        array.close()
        raise InputError(f"{path}: a .npz archive, not a .npy array; save one array with numpy.save")
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2:
        raise InputError(f"{path}: a .npy array must be 1-D or 2-D; this one has shape {array.shape}")
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating) or array.dtype == bool):
        raise InputError(f"{path}: a .npy array must hold real numbers; this one holds {array.dtype}")
    if array.size == 0:
        raise InputError(f"{path}: no data (shape {array.shape})")
    with np.errstate(over="ignore"):  # a longdouble 1e400 becomes inf, refused below
        values = np.asarray(array, dtype=np.float64)
    bad = np.argwhere(~np.isfinite(values))
    if len(bad):
        row, col = bad[0]
        value = array[row, col]
        problem = "NaN or infinity" if not np.isfinite(value) else "beyond the float64 range"
        raise InputError(f"{path}: row {row + 1}, column {col + 1}: {value} ({problem})")
    return Matrix(values, [str(i) for i in range(values.shape[1])], False, path)


def _require_npy_size(handle: BinaryIO, path: str) -> None:
    """The header's shape must fit the file: a header claiming 3·10¹⁰ rows would otherwise
    have numpy try to allocate them. Leaves ``handle`` at the start."""
    from numpy.lib import format as npy

    readers = {(1, 0): npy.read_array_header_1_0, (2, 0): npy.read_array_header_2_0}
    try:
        shape, _, dtype = readers[npy.read_magic(handle)](handle)
    except (ValueError, EOFError, KeyError):
        handle.seek(0)  # np.load says what is wrong (a .npz archive, an empty file …)
        return
    available = os.fstat(handle.fileno()).st_size - handle.tell()
    handle.seek(0)
    if not dtype.hasobject and math.prod(shape) * dtype.itemsize > available:
        values = "×".join(map(str, shape))
        raise InputError(f"{path}: the header claims {values} values, but the file holds only {available} bytes")


def _decode(data: bytes, name: str) -> str:
    if b"\0" in data:
        raise InputError(f"{name}: binary data (NUL bytes); expected CSV/TSV text or a .npy file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        column = error.start - (data.rfind(b"\n", 0, error.start) + 1) + 1
        raise InputError(
            f"{name}: line {line}, byte {column}: 0x{data[error.start]:02x} is not valid UTF-8; bncli reads UTF-8 text"
        ) from None


def _lines(text: str) -> list[str]:
    """Physical lines, ending at \n, \r\n or \r only (str.splitlines would also split at
    \x0b, \x1c, \x85, U+2028 …, which may stand inside a field)."""
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _is_skipped(line: str) -> bool:
    """Blank lines and #-comments carry no data (outside a quoted field)."""
    return not line.strip() or line.lstrip().startswith("#")


def _first_record_text(lines: list[str]) -> str | None:
    """The first record's text with its quoted parts removed, for sniffing the delimiter.

    A record continues onto the next line while it has an odd number of quotes
    (RFC 4180: a quote inside a quoted field is doubled).
    """
    first = next((index for index, line in enumerate(lines) if not _is_skipped(line)), None)
    if first is None:
        return None
    end, quotes = first + 1, lines[first].count('"')
    while quotes % 2 and end < len(lines):
        quotes += lines[end].count('"')
        end += 1
    return re.sub(r'"[^"]*"', "", "\n".join(lines[first:end]))


def _sniff(text: str) -> str:
    for candidate in _SNIFFED:
        if candidate in text:
            return candidate
    return WHITESPACE


def _parse_records(lines: list[str], delimiter: str, name: str) -> tuple[list[list[str]], list[int]]:
    """The fields of each record of ``lines`` and the line each record starts on.

    Blank and # lines are skipped, but not inside a quoted field. With a delimiter
    other than whitespace, fields follow RFC 4180 quoting: a quoted field may hold
    the delimiter, doubled quotes and line ends.
    """
    if delimiter == WHITESPACE or not any('"' in line for line in lines):
        numbered = [(number, line) for number, line in enumerate(lines, start=1) if not _is_skipped(line)]
        if delimiter == WHITESPACE:
            rows = [line.split() for _, line in numbered]
        else:
            rows = list(csv.reader((line for _, line in numbered), delimiter=delimiter, skipinitialspace=True))
        return rows, [number for number, _ in numbered]
    position = 0  # the csv reader pulls exactly the lines of one record per record
    # Spaces after a closing quote ("4"  ) would be an error for the strict reader below.
    trailing = "" if delimiter == " " else " "

    def feed() -> Iterator[str]:
        nonlocal position
        while position < len(lines):
            position += 1
            yield lines[position - 1].rstrip(trailing) + "\n"

    reader = csv.reader(feed(), delimiter=delimiter, skipinitialspace=True, strict=True)
    rows, starts = [], []
    while True:
        while position < len(lines) and _is_skipped(lines[position]):
            position += 1
        first_line = position + 1
        try:
            fields = next(reader, None)
        except csv.Error as error:
            open_quote = "field larger" in str(error) or "end of data" in str(error)
            hint = " (a quote opened here is never closed)" if open_quote else ""
            hint = " (text after a closing quote)" if "expected after" in str(error) else hint
            raise InputError(f"{name}: line {first_line}: {error}{hint}") from None
        if fields is None:
            return rows, starts
        rows.append(fields)
        starts.append(first_line)


def _field_line(fields: list[str], start: int, column: int) -> int:
    """The line field ``column`` (1-based) starts on: quoted fields before it may span lines."""
    return start + sum(field.count("\n") for field in fields[: column - 1])


def _number(field: str) -> float | None:
    """The number a cell holds, in the syntax every CSV reader shares: ASCII digits, sign, point,
    exponent (Python's float() also takes '1_000', '١' and '５', which no other tool would)."""
    if not field.isascii() or "_" in field:
        return None
    try:
        return float(field)
    except ValueError:
        return None


def _cell_name(column: int, names: Sequence[str] | None) -> str:
    return f"column {column} ({names[column - 1]!r})" if names else f"column {column}"


def _looks_comma_separated(first: list[str]) -> bool:
    """The first record is one field holding commas, or a header name holds one: the commas
    are the delimiter the file was written with (a .tsv holding commas, -d '|' on a csv)."""
    return (len(first) == 1 and "," in first[0]) or any(
        "," in field and _number(field.replace(",", ".")) is None for field in first
    )


def _cell_problem(field: str, value: float | None, delimiter: str, commas_delimit: bool) -> str:
    text = field.strip()
    if len(text) > 60:  # the message stays one readable line
        text = text[:57] + "…"
    if not text:
        return "an empty cell"
    if value is not None:
        return f"{text!r}: NaN and infinity are not allowed (batch norm of that column is meaningless)"
    if "," in text and commas_delimit:
        shown = "tab" if delimiter == "\t" else repr(delimiter)
        return f"{text!r} is not a number (the delimiter is {shown}, but the file looks comma-separated: try -d ,)"
    if "," in text and delimiter != "," and _number(text.replace(",", ".")) is not None:
        return f"{text!r} is not a number (decimal commas are not supported; use a point)"
    return f"{text!r} is not a number"


def parse_text(data: bytes, name: str, *, delimiter: str | None = None, header: bool | None = None) -> Matrix:
    """Parse CSV/TSV/whitespace-separated numbers; see the contract for the rules.

    Large inputs go through polars' parser when that is installed and agrees
    that every cell is a finite number; anything else is read by the careful
    reader below, which decides what is accepted and words every error.
    """
    if len(data) >= _FAST_READ_BYTES:
        fast = _parse_fast(_bytes_pieces(data), len(data), name, delimiter, header)
        if fast is not None:
            return fast
    return _parse_careful(data, name, delimiter, header)


def _parse_careful(data: bytes, name: str, delimiter: str | None, header: bool | None) -> Matrix:
    """The careful reader: every rule of the contract, every error worded."""
    lines = _lines(_decode(data, name))
    first = _first_record_text(lines)
    if first is None:
        raise InputError(f"{name}: no data (the input is empty or only blank and # lines)")
    delimiter = delimiter or _sniff(first)
    rows, starts = _parse_records(lines, delimiter, name)
    columns, header = _columns(rows[0], header, name)
    commas_delimit = delimiter != "," and _looks_comma_separated(rows[0])
    body, starts = (rows[1:], starts[1:]) if header else (rows, starts)
    if not body:
        raise InputError(f"{name}: a header line but no data rows")
    width = len(columns)
    values = np.empty((width, len(body))).T  # column-major, as bncli.core prefers

    def first_bad_cell(rows: int) -> None:
        """Raise the error of the first cell, in reading order among the first ``rows`` data rows,
        that is not a finite number (cell by cell: this is the error path)."""
        for fields, start in zip(body[:rows], starts[:rows], strict=True):
            for column, field in enumerate(fields, start=1):
                value = _number(field)
                if value is None or not math.isfinite(value):
                    cell = _cell_name(column, columns if header else None)
                    problem = _cell_problem(field, value, delimiter, commas_delimit)
                    raise InputError(f"{name}: line {_field_line(fields, start, column)}, {cell}: {problem}")

    for index, (fields, start) in enumerate(zip(body, starts, strict=True)):
        if len(fields) != width:
            first_bad_cell(index)
            expected = "the header has" if header else "the first row has"
            raise InputError(f"{name}: line {start}: {len(fields)} fields, but {expected} {width}")
        try:
            values[index] = list(map(float, fields))  # float() in C, then the rest of _number's rule
        except ValueError:
            first_bad_cell(index + 1)
        row = "".join(fields)
        if not row.isascii() or "_" in row:
            first_bad_cell(index + 1)
    if not np.isfinite(values).all():
        first_bad_cell(len(body))
    return Matrix(values, columns, header, name)


def _columns(first: list[str], header: bool | None, name: str) -> tuple[list[str], bool]:
    """Column names and whether the first record is a header (auto: some field is not a number).

    Duplicate names are refused: results are keyed by name (json, --column), so a
    second column of the same name would silently hide the first.
    """
    fields = [field.strip() for field in first]
    if header is None:
        header = any(_number(field) is None for field in fields)
    if not header:
        return [str(i) for i in range(len(fields))], False
    positions: dict[str, list[int]] = {}
    for position, field in enumerate(fields, start=1):
        positions.setdefault(field, []).append(position)
    repeated = [
        f"{field!r} (columns {', '.join(map(str, where))})" for field, where in positions.items() if len(where) > 1
    ]
    if repeated:
        raise InputError(f"{name}: duplicate column names: {'; '.join(repeated)}; each column needs its own name")
    return fields, True


# Inputs this large are parsed by polars (~400 MB/s against ~10 MB/s for the careful
# reader), which pays for its import (~0.2 s) from about 2 MB on. They are parsed in
# pieces, so that the whole text is never in memory beside the numbers.
_FAST_READ_BYTES = 2 << 20
# polars holds ~10 kB per column of a frame (a 39 MB file of 10⁶ columns took 10 GB):
# files wider than this share of their size are read by the careful reader.
_POLARS_BYTES_PER_COLUMN = 16 << 10
_FAST_READ_MIN_COLUMNS = 256
_PIECE_BYTES = 32 << 20


def _file_pieces(path: str) -> Iterator[bytes]:
    """The file in pieces of about _PIECE_BYTES that end at a line end."""
    with open(path, "rb") as handle:
        while piece := handle.read(_PIECE_BYTES):
            yield piece + handle.readline()


def _bytes_pieces(data: bytes) -> Iterator[bytes]:
    start = 0
    while start < len(data):
        cut = data.find(b"\n", start + _PIECE_BYTES) + 1 or len(data)
        yield data[start:cut]
        start = cut


def _parse_fast(
    pieces: Iterator[bytes], total_bytes: int, name: str, delimiter: str | None, header: bool | None
) -> Matrix | None:
    """The matrix parsed by polars piece by piece, or None where the careful reader must decide.

    The numbers go into one column-major array, sized from the first piece's
    bytes per row (and grown in the rare case that the estimate falls short).
    """
    first_piece = next(pieces, b"")
    if not _plain_text(first_piece):
        return None
    layout = _fast_layout(first_piece, total_bytes, name, delimiter, header)
    if layout is None:
        return None
    delimiter, columns, header, skipped = layout
    values = np.empty((0, len(columns)))
    filled = 0
    for piece in itertools.chain([first_piece], pieces):
        if piece is not first_piece and not _plain_text(piece):
            return None
        piece = piece if piece.endswith(b"\n") else piece + b"\n"
        block = _polars_numbers(piece, delimiter, len(columns), skipped, comments=b"#" in piece)
        if block is None:
            return None
        if filled + len(block) > len(values):
            estimate = int(total_bytes / len(piece) * len(block) * 1.05) + 1024
            values = _grown(values, filled, max(estimate, 2 * len(values), filled + len(block)))
        values[filled : filled + len(block)] = block
        filled += len(block)
        skipped = 0
    return Matrix(values[:filled], columns, header, name)


def _fast_layout(
    head: bytes, total_bytes: int, name: str, delimiter: str | None, header: bool | None
) -> tuple[str, list[str], bool, int] | None:
    """From the first bytes of a large input: the delimiter, the column names, whether a header
    was read, and the lines before the data; None where the careful reader must decide."""
    located = _first_record(head)
    if located is None:
        return None
    start, end = located
    if end == len(head) and total_bytes > len(head):
        return None  # the first record goes on beyond these bytes
    try:
        line = head[start:end].decode("utf-8-sig").rstrip("\r")
    except UnicodeDecodeError:
        return None
    delimiter = delimiter or _sniff(line)
    if delimiter == WHITESPACE:
        return None
    try:
        first = next(csv.reader([line], delimiter=delimiter, skipinitialspace=True))
    except csv.Error:
        return None
    if len(first) > max(_FAST_READ_MIN_COLUMNS, total_bytes // _POLARS_BYTES_PER_COLUMN):
        return None  # polars' cost per column: a wide file would take many times its size
    try:
        columns, header = _columns(first, header, name)
    except InputError:
        return None  # the careful reader decides which problem of the whole input comes first
    skipped = head.count(b"\n", 0, end) + 1 if header else head.count(b"\n", 0, start)
    return delimiter, columns, header, skipped


def _plain_text(piece: bytes) -> bool:
    """Whether polars reads ``piece`` as the careful reader would: UTF-8 without NUL bytes
    (anywhere, # comments included) and without quotes (which may hide line ends)."""
    if b"\0" in piece or b'"' in piece:
        return False
    if piece.isascii():
        return True
    try:
        piece.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _grown(values: np.ndarray, filled: int, rows: int) -> np.ndarray:
    """A column-major array of ``rows`` rows that starts with the first ``filled`` of ``values``."""
    grown = np.empty((values.shape[1], rows)).T
    grown[:filled] = values[:filled]
    return grown


def _first_record(data: bytes) -> tuple[int, int] | None:
    """Byte offsets of the first line that is neither blank nor a # comment."""
    position = 0
    while position < len(data):
        end = data.find(b"\n", position)
        end = len(data) if end < 0 else end
        line = data[position:end].lstrip(b"\xef\xbb\xbf").strip()
        if line and not line.startswith(b"#"):
            return position, end
        position = end + 1
    return None


def _polars_numbers(
    data: bytes | str, delimiter: str, width: int, skipped_lines: int, comments: bool
) -> np.ndarray | None:
    """Every cell of ``data`` (text, or a file's path) after ``skipped_lines`` lines as float64
    (column-major), or None.

    A piece with no data rows is None too: the careful reader handles such files.
    """
    try:
        import polars as pl
    except ImportError:
        return None
    try:
        frame = pl.read_csv(
            data,
            has_header=False,
            separator=delimiter,
            # polars parses ~1.5× slower when it must look for comments
            comment_prefix="#" if comments else None,
            skip_lines=skipped_lines,
            schema={f"c{j}": pl.Float64 for j in range(width)},
        )
    except Exception:
        return None
    if frame.height == 0 or any(frame.null_count().row(0)):
        return None
    values = frame.to_numpy(order="fortran")
    return values if np.isfinite(values).all() else None


# ----------------------------------------------------------------------------- output


# Outputs this large are formatted by polars (~500 MB/s against ~15 MB/s for repr),
# unless they are so wide that its cost per column dominates (2 × 10⁶ took 2 GB, 9 s).
_FAST_WRITE_ELEMENTS = 200_000
_POLARS_ELEMENTS_PER_COLUMN = _POLARS_BYTES_PER_COLUMN // 8


def format_delimited(
    values: np.ndarray, columns: Sequence[str] | None, delimiter: str, row_labels: Sequence[str] | None = None
) -> str:
    """One matrix as csv/tsv text (see :func:`write_delimited`)."""
    buffer = io_module.BytesIO()
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
        tall = values.shape[1] <= max(_FAST_READ_MIN_COLUMNS, values.size // _POLARS_ELEMENTS_PER_COLUMN)
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
    buffer = io_module.StringIO()
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
        buffer = io_module.BytesIO()
        write_delimited(buffer, value, None, ",")
        stream.write(b"[[" + buffer.getvalue().rstrip(b"\n").replace(b"\n", b"], [") + b"]]")
    else:
        stream.write(json.dumps(to_jsonable(value), allow_nan=False).encode())


def format_json(obj) -> str:
    """JSON text (see :func:`write_json`)."""
    buffer = io_module.BytesIO()
    write_json(buffer, obj)
    return buffer.getvalue().decode("utf-8")


def format_for_path(path: str) -> str:
    """The output format that a file name implies (.csv .json .tsv .npy .md .svg .html .png .pdf), or None."""
    suffix = Path(path).suffix.lower()
    return _FORMAT_BY_SUFFIX.get(suffix)


_FORMAT_BY_SUFFIX = {
    ".csv": "csv",
    ".json": "json",
    ".tsv": "tsv",
    ".npy": "npy",
    ".md": "markdown",
    ".svg": "svg",
    ".html": "html",
    ".htm": "html",
    ".png": "png",
    ".pdf": "pdf",
}


def check_output_path(path: str, option: str) -> Path:
    """The file that writing ``path`` will create or replace (a symbolic link is written through).

    Refuses, before anything is computed, a path that names a folder or lies in no folder.
    """
    if path.endswith(("/", os.sep)) or Path(path).is_dir():
        raise InputError(f"{option} {printable(path)}: is a directory; give a file name")
    target = Path(os.path.realpath(path))
    if not target.parent.is_dir():
        linked = target != Path(path).absolute()
        folder = target.parent if linked else Path(path).parent
        through = f" (where {printable(path)} leads)" if linked else ""
        raise InputError(f"{option} {printable(path)}: no such directory {printable(str(folder))!r}{through}")
    return target


def write_files_atomically(
    files: Sequence[tuple[str, str, Callable[[BinaryIO], None]]], before_commit: Callable[[], None] | None = None
) -> None:
    """Write each (option, path, write) to a temporary file beside its path, then rename them all.

    All or nothing as far as the file system allows: if any write fails, no path is
    touched. ``before_commit`` (e.g. writing stdout) runs after the temporary files
    are complete and before any path is touched: if it fails, nothing is renamed. A
    path that exists and is not a regular file (/dev/null, a named pipe) is written
    to directly, before the renames: renaming over it would replace the device.
    """
    targets = [(option, path, check_output_path(path, option)) for option, path, _ in files]
    seen: dict[Path, str] = {}
    for option, path, target in targets:
        if target in seen:
            raise InputError(f"{option} {printable(path)}: {seen[target]} writes there too; give each its own file")
        seen[target] = option
    staged, direct = [], []
    try:
        for (option, path, target), (_, _, write) in zip(targets, files, strict=True):
            if target.exists() and not target.is_file():
                direct.append((option, path, target, write))
            else:
                _require_writable(option, path, target)
                staged.append((option, path, target, _staged(option, path, target, write)))
        if before_commit is not None:
            before_commit()
        for option, path, target, write in direct:
            try:
                with open(target, "wb") as stream:
                    write(stream)
            except OSError as error:
                raise OutputError(f"{option} {printable(path)}: cannot write: {error.strerror or error}") from None
        for option, path, target, temporary in staged:
            _copy_mode(target, temporary)
            try:
                os.replace(temporary, target)
            except OSError as error:
                raise OutputError(f"{option} {printable(path)}: cannot write: {error.strerror or error}") from None
    except BaseException:
        for *_, temporary in staged:
            _remove(temporary)
        raise


def _remove(temporary: str) -> None:
    Path(temporary).unlink(missing_ok=True)


def _require_writable(option: str, path: str, target: Path) -> None:
    """An existing file that the user may not write is not replaced (as a shell's > would not)."""
    if target.exists() and not os.access(target, os.W_OK):
        raise OutputError(f"{option} {printable(path)}: cannot write: Permission denied")


def _staged(option: str, path: str, target: Path, write: Callable[[BinaryIO], None]) -> str:
    """A temporary file beside ``target`` holding what ``write`` writes; its name."""
    import tempfile

    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as error:
        raise OutputError(f"{option} {printable(path)}: cannot write: {error.strerror or error}") from None
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
    except BaseException as error:
        _remove(temporary)
        if isinstance(error, OSError) and not isinstance(error, BrokenPipeError):
            raise OutputError(f"{option} {printable(path)}: cannot write: {error.strerror or error}") from None
        raise
    return temporary


def _copy_mode(target: Path, temporary: str) -> None:
    """Give the new file the mode an ordinary write would: the old file's, or 0666 less umask."""
    try:
        mode = target.stat().st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    os.chmod(temporary, mode)
