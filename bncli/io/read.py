"""Reading matrices: CSV/TSV/whitespace text (from a file or stdin) and .npy arrays.

The careful reader (:mod:`bncli.io.careful`) decides what text is accepted and words every
error; large inputs go through the fast reader (:mod:`bncli.io.fast`) where it agrees.
"""

from __future__ import annotations

import math
import os
import stat
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..errors import InputError, note
from . import fast
from .careful import WHITESPACE, parse_careful
from .matrix import Matrix

STDIN_NAME = "<stdin>"
STDIN_PATIENCE = 2.0  # seconds of a silent stdin before bncli says it is waiting for it
SAMPLE_NAME = "blood.csv"
SAMPLE_DY_NAME = "blood_dy.csv"
_DELIMITER_NAMES = {
    "tab": "\t",
    "\\t": "\t",
    "comma": ",",
    "semicolon": ";",
    "space": WHITESPACE,
    WHITESPACE: WHITESPACE,
}


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
    path: str,
    data: bytes | None = None,
    *,
    delimiter: str | None = None,
    header: bool | None = None,
    finite: bool = True,
) -> Matrix:
    """Read a matrix from ``path`` (or from ``data`` already read, e.g. stdin, named ``path``).

    ``.npy`` files are loaded with pickles refused; anything else is text. With ``finite`` false,
    text may hold NaN and infinity (the results of another program, judged rather than refused).
    """
    if data is None and path.lower().endswith(".npy"):
        return _read_npy(path)
    if delimiter is None and path.lower().endswith(".tsv"):
        delimiter = "\t"
    if data is None:
        if _size(path) < _FAST_READ_BYTES:
            return parse_careful(read_bytes(path), path, delimiter, header, finite)
        matrix = fast.parse_file(path, _size(path), delimiter, header)  # None unless every cell is finite
        return matrix or parse_careful(read_bytes(path), path, delimiter, header, finite)
    return parse_text(data, path, delimiter=delimiter, header=header, finite=finite)


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
            _first_byte_or_a_note(sys.stdin.buffer)
        return _read_text_stream(sys.stdin.buffer, name)
    except OSError as error:
        raise InputError(f"{name}: cannot read: {error.strerror or error}") from None


def _first_byte_or_a_note(stream) -> None:
    """Wait for stdin's first byte (or its end); if none comes within STDIN_PATIENCE seconds (a notebook's
    or a subprocess's stdin that nobody writes to), say on stderr that bncli is waiting, and keep waiting.

    The main thread waits in the read itself, so that Ctrl-C ends it at once as it ends any read."""
    import threading

    if not hasattr(stream, "peek"):
        return
    waiting = threading.Timer(
        STDIN_PATIENCE,
        note,
        (f"waiting for data on stdin (nothing for {STDIN_PATIENCE:g} s); give FILE, or close stdin to end the input",),
    )
    waiting.daemon = True
    waiting.start()
    try:
        stream.peek(1)
    finally:
        waiting.cancel()


def _read_text_stream(stream, name: str) -> bytes:
    """All of ``stream``, stopped at the first piece holding a NUL byte: an endless binary stream
    (``cat /dev/zero | bncli forward``) is refused at once, not after filling the memory."""
    pieces = []
    while piece := stream.read(fast.PIECE_BYTES):
        if b"\0" in piece and not pieces and piece[:6] == b"\x93NUMPY":
            raise InputError(f"{name}: a .npy array on stdin; give its file name instead")
        if b"\0" in piece:
            raise InputError(f"{name}: binary data (NUL bytes); expected CSV/TSV text or a .npy file")
        pieces.append(piece)
    return b"".join(pieces)


def _read_npy(path: str) -> Matrix:
    values = _npy_values(_load_npy(path), path)
    return Matrix(values, [str(i) for i in range(values.shape[1])], False, path)


def _load_npy(path: str) -> np.ndarray:
    """The array in a .npy file, pickles refused; every failure an :class:`InputError`."""
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
    return array


def _npy_values(array: np.ndarray, path: str) -> np.ndarray:
    """A loaded array as a (k, n) matrix of finite float64 numbers."""
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
    return values


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


def parse_text(
    data: bytes, name: str, *, delimiter: str | None = None, header: bool | None = None, finite: bool = True
) -> Matrix:
    """Parse CSV/TSV/whitespace-separated numbers; see the contract for the rules (``finite``: as
    for :func:`read_matrix`).

    Large inputs go through polars' parser when that is installed and agrees
    that every cell is a finite number; anything else is read by the careful
    reader below, which decides what is accepted and words every error.
    """
    if len(data) >= _FAST_READ_BYTES:
        matrix = fast.parse_bytes(data, name, delimiter, header)
        if matrix is not None:
            return matrix
    return parse_careful(data, name, delimiter, header, finite)


# Inputs this large are parsed by polars (~400 MB/s against ~10 MB/s for the careful
# reader), which pays for its import (~0.2 s) from about 2 MB on.
_FAST_READ_BYTES = 2 << 20
