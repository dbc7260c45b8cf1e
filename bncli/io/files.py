"""Output files: checked before any work, and written all together, each atomically."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

from .. import signals
from ..errors import InputError, OutputError, printable


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
    targets = _distinct_targets(files)
    staged: list[tuple[str, str, Path, str]] = []
    try:
        direct = []
        for (option, path, target), (_, _, write) in zip(targets, files, strict=True):
            if target.exists() and not target.is_file():
                direct.append((option, path, target, write))
            else:
                _require_writable(option, path, target)
                staged.append((option, path, target, _staged(option, path, target, write)))
        if before_commit is not None:
            before_commit()
        for option, path, target, write in direct:
            _write_directly(option, path, target, write)
        for option, path, target, temporary in staged:
            _rename(option, path, target, temporary)
    except BaseException:
        for *_, temporary in staged:
            _remove(temporary)
        raise


def _distinct_targets(files: Sequence[tuple[str, str, Callable]]) -> list[tuple[str, str, Path]]:
    """Each (option, path) with the file it writes, checked; one file written twice is refused."""
    targets = [(option, path, check_output_path(path, option)) for option, path, _ in files]
    seen: dict[Path, str] = {}
    for option, path, target in targets:
        if target in seen:
            raise InputError(f"{option} {printable(path)}: {seen[target]} writes there too; give each its own file")
        seen[target] = option
    return targets


def _write_directly(option: str, path: str, target: Path, write: Callable[[BinaryIO], None]) -> None:
    try:
        with open(target, "wb") as stream:
            write(stream)
    except OSError as error:
        raise _cannot_write(option, path, error) from None


def _rename(option: str, path: str, target: Path, temporary: str) -> None:
    """The temporary file becomes ``target``, with the mode an ordinary write would give it."""
    _copy_mode(target, temporary)
    try:
        os.replace(temporary, target)
    except OSError as error:
        raise _cannot_write(option, path, error) from None


def _cannot_write(option: str, path: str, error: OSError) -> OutputError:
    return OutputError(f"{option} {printable(path)}: cannot write: {error.strerror or error}")


def _remove(temporary: str) -> None:
    Path(temporary).unlink(missing_ok=True)


def _require_writable(option: str, path: str, target: Path) -> None:
    """An existing file that the user may not write is not replaced (as a shell's > would not)."""
    if target.exists() and not os.access(target, os.W_OK):
        raise OutputError(f"{option} {printable(path)}: cannot write: Permission denied")


def _staged(option: str, path: str, target: Path, write: Callable[[BinaryIO], None]) -> str:
    """A temporary file beside ``target`` holding what ``write`` writes; its name."""
    import tempfile  # not needed at start-up

    temporary = None
    try:
        with signals.held():  # from the file's creation to its name in ``temporary``
            handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        with os.fdopen(handle, "wb") as stream:
            write(stream)
    except BaseException as error:
        if temporary is not None:
            _remove(temporary)
        if isinstance(error, OSError) and not isinstance(error, BrokenPipeError):
            raise _cannot_write(option, path, error) from None
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
