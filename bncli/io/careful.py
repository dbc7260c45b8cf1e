"""The careful reader: every rule of the contract for CSV/TSV/whitespace text, every error worded.

It decides what is accepted; the fast reader (:mod:`bncli.io.fast`) only takes inputs on which
it agrees with this one. Every problem is an :class:`InputError` naming the source, the line and
the column where that applies.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterator, Sequence

import numpy as np

from ..errors import InputError
from .matrix import Matrix

WHITESPACE = "whitespace"
_SNIFFED = ("\t", ",", ";")


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


def sniff(text: str) -> str:
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
        return _unquoted_records(lines, delimiter)
    return _quoted_records(lines, delimiter, name)


def _unquoted_records(lines: list[str], delimiter: str) -> tuple[list[list[str]], list[int]]:
    """Records of one line each: without quotes, nothing joins lines."""
    numbered = [(number, line) for number, line in enumerate(lines, start=1) if not _is_skipped(line)]
    if delimiter == WHITESPACE:
        rows = [line.split() for _, line in numbered]
    else:
        rows = list(csv.reader((line for _, line in numbered), delimiter=delimiter, skipinitialspace=True))
    return rows, [number for number, _ in numbered]


class _LineFeed:
    """The lines, one at a time, for a csv reader: it pulls exactly the lines of one record per
    record, so the position reached tells where the next record begins."""

    def __init__(self, lines: list[str], delimiter: str):
        self.lines = lines
        self.position = 0
        # Spaces after a closing quote ("4"  ) would be an error for the strict reader.
        self._trailing = "" if delimiter == " " else " "

    def __iter__(self) -> Iterator[str]:
        while self.position < len(self.lines):
            self.position += 1
            yield self.lines[self.position - 1].rstrip(self._trailing) + "\n"

    def skip_blank_and_comments(self) -> int:
        """Moves past blank and # lines; the line (1-based) that the next record starts on."""
        while self.position < len(self.lines) and _is_skipped(self.lines[self.position]):
            self.position += 1
        return self.position + 1


def _quoted_records(lines: list[str], delimiter: str, name: str) -> tuple[list[list[str]], list[int]]:
    """Records under RFC 4180 quoting, each with the line it starts on."""
    feed = _LineFeed(lines, delimiter)
    reader = csv.reader(iter(feed), delimiter=delimiter, skipinitialspace=True, strict=True)
    rows, starts = [], []
    while True:
        first_line = feed.skip_blank_and_comments()
        try:
            fields = next(reader, None)
        except csv.Error as error:
            raise _quoting_error(error, name, first_line) from None
        if fields is None:
            return rows, starts
        rows.append(fields)
        starts.append(first_line)


def _quoting_error(error: csv.Error, name: str, line: int) -> InputError:
    """The csv module's complaint about the record starting on ``line``, with what it means."""
    message = str(error)
    if "expected after" in message:
        hint = " (text after a closing quote)"
    elif "field larger" in message or "end of data" in message:
        hint = " (a quote opened here is never closed)"
    else:
        hint = ""
    return InputError(f"{name}: line {line}: {message}{hint}")


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


def is_number(field: str) -> bool:
    """Whether a field (spaces around it aside) is a number as bncli reads one: a header needs a field that is not."""
    return _number(field.strip()) is not None


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


def parse_careful(data: bytes, name: str, delimiter: str | None, header: bool | None, finite: bool = True) -> Matrix:
    """The careful reader: every rule of the contract, every error worded.

    With ``finite`` false, NaN and infinity are numbers like any other (another program's results).
    """
    lines = _lines(_decode(data, name))
    first = _first_record_text(lines)
    if first is None:
        raise InputError(f"{name}: no data (the input is empty or only blank and # lines)")
    delimiter = delimiter or sniff(first)
    rows, starts = _parse_records(lines, delimiter, name)
    columns, header = column_names(rows[0], header, name)
    commas_delimit = delimiter != "," and _looks_comma_separated(rows[0])
    first_line = starts[0]
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
                if value is None or (finite and not math.isfinite(value)):
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
    if finite and not np.isfinite(values).all():
        first_bad_cell(len(body))
    return Matrix(values, columns, header, name, first_line=first_line)


def column_names(first: list[str], header: bool | None, name: str) -> tuple[list[str], bool]:
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
