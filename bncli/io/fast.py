"""The fast reader: large CSV/TSV text parsed by polars, where it agrees with the careful reader.

polars parses ~400 MB/s against the careful reader's ~10 MB/s, but it accepts things the
contract refuses and words no error. So it is only offered inputs on which the two agree
(plain UTF-8 text without NUL bytes or quotes, a header the careful rules accept, every cell
a finite number); for anything else it returns None and the careful reader decides.
"""

from __future__ import annotations

import csv
import itertools
import mmap
from collections.abc import Iterator

import numpy as np

from ..errors import InputError
from .careful import WHITESPACE, column_names, sniff
from .matrix import Matrix

# polars holds ~10 kB per column of a frame (a 39 MB file of 10⁶ columns took 10 GB):
# files wider than this share of their size are read by the careful reader.
POLARS_BYTES_PER_COLUMN = 16 << 10
POLARS_MIN_COLUMNS = 256
PIECE_BYTES = 32 << 20


def parse_file(path: str, size: int, delimiter: str | None, header: bool | None) -> Matrix | None:
    """A large file's matrix, or None where the careful reader must decide.

    Plain ASCII text is parsed by polars from its path in one parallel call (polars maps the
    file itself): ~0.15 s faster on 186 MB than pieces, at a peak RSS (~516 MB) still below a
    polars-only script's. Other text is parsed piece by piece.
    """
    layout = _plain_ascii_layout(path, size, delimiter, header)
    if layout is None:
        return _parse_pieces(_file_pieces(path), size, path, delimiter, header)
    delimiter, columns, header, skipped, first_line, comments = layout
    values = _polars_numbers(path, delimiter, len(columns), skipped, comments)
    return None if values is None else Matrix(values, columns, header, path, first_line=first_line)


def parse_bytes(data: bytes, name: str, delimiter: str | None, header: bool | None) -> Matrix | None:
    """The matrix of large text already read (stdin), or None where the careful reader must decide."""
    return _parse_pieces(_bytes_pieces(data), len(data), name, delimiter, header)


_HEAD_BYTES = 1 << 20


def _plain_ascii_layout(
    path: str, size: int, delimiter: str | None, header: bool | None
) -> tuple[str, list[str], bool, int, int, bool] | None:
    """The layout (see :func:`_fast_layout`) and whether there are # comments, of a file that
    polars may parse from its path; None for any other file.

    The text is checked through a memory map, without copying it: plain ASCII (UTF-8 needs
    decoding: the piece reader checks it), no NUL, no quote, and a line end at the end
    (polars would accept a last line "3,4," that the careful reader refuses).
    """
    try:
        with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            text = np.frombuffer(mapped, np.uint8)
            plain = mapped[-1:] == b"\n" and mapped.find(b"\0") < 0 and mapped.find(b'"') < 0 and text.max() < 0x80
            del text  # a view of the map must be gone before the map closes
            head, comments = mapped[:_HEAD_BYTES], plain and mapped.find(b"#") >= 0
    except (OSError, ValueError, BufferError):  # an empty file, a pipe: the piece reader decides
        return None
    layout = _fast_layout(head, size, path, delimiter, header) if plain else None
    return None if layout is None else (*layout, comments)


def _file_pieces(path: str) -> Iterator[bytes]:
    """The file in pieces of about PIECE_BYTES that end at a line end."""
    with open(path, "rb") as handle:
        while piece := handle.read(PIECE_BYTES):
            yield piece + handle.readline()


def _bytes_pieces(data: bytes) -> Iterator[bytes]:
    start = 0
    while start < len(data):
        cut = data.find(b"\n", start + PIECE_BYTES) + 1 or len(data)
        yield data[start:cut]
        start = cut


def _parse_pieces(
    pieces: Iterator[bytes], total_bytes: int, name: str, delimiter: str | None, header: bool | None
) -> Matrix | None:
    """The matrix parsed by polars piece by piece, or None where the careful reader must decide.

    Pieces keep the whole text from being in memory beside the numbers, which go into
    one column-major array, sized from the first piece's bytes per row (and grown in
    the rare case that the estimate falls short).
    """
    first_piece = next(pieces, b"")
    if not _plain_text(first_piece):
        return None
    layout = _fast_layout(first_piece, total_bytes, name, delimiter, header)
    if layout is None:
        return None
    delimiter, columns, header, skipped, first_line = layout
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
    return Matrix(values[:filled], columns, header, name, first_line=first_line)


def _fast_layout(
    head: bytes, total_bytes: int, name: str, delimiter: str | None, header: bool | None
) -> tuple[str, list[str], bool, int, int] | None:
    """From the first bytes of a large input: the delimiter, the column names, whether a header
    was read, the lines before the data, and the line of the first record; None where the careful
    reader must decide."""
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
    delimiter = delimiter or sniff(line)
    if delimiter == WHITESPACE:
        return None
    try:
        first = next(csv.reader([line], delimiter=delimiter, skipinitialspace=True))
    except csv.Error:
        return None
    if len(first) > max(POLARS_MIN_COLUMNS, total_bytes // POLARS_BYTES_PER_COLUMN):
        return None  # polars' cost per column: a wide file would take many times its size
    try:
        columns, header = column_names(first, header, name)
    except InputError:
        return None  # the careful reader decides which problem of the whole input comes first
    first_line = head.count(b"\n", 0, start) + 1
    return delimiter, columns, header, first_line if header else first_line - 1, first_line


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
