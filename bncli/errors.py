"""The error vocabulary every layer shares; it imports nothing of bncli.

An :class:`InputError` is bad usage or bad input (exit 2), an :class:`OutputError` a result that
could not be written (exit 74). Both carry one line for the user; :func:`printable` makes any text
safe to put in that line, and :func:`note` puts a line that is not an error (a warning, a verdict)
on stderr, or, inside :func:`collected_notes` (the Python API), into a list for the caller.
"""

from __future__ import annotations

import sys
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar


class InputError(Exception):
    """Bad usage or bad input: one line for the user, exit code 2."""


class OutputError(Exception):
    """Writing a result failed (disk full, read-only, closed stdout): one line, exit code 74."""


# Control, format, surrogate and private-use characters; line and paragraph separators (U+2028, U+2029),
# which end a line wherever Unicode line breaking is followed.
_ESCAPED_CATEGORIES = frozenset(("Cc", "Cf", "Cs", "Co", "Zl", "Zp"))


def printable(text: str) -> str:
    """``text`` with control, format and separator characters and noncharacters escaped (``\\x1b``,
    ``\\n``, ``\\u2028``, ``\\ufffe``): safe on a terminal, in XML (svg, html) and in Markdown, one line."""
    return "".join(_escaped(ch) if _unprintable(ch) else ch for ch in text)


def _unprintable(ch: str) -> bool:
    return unicodedata.category(ch) in _ESCAPED_CATEGORIES or _noncharacter(ord(ch))


def _noncharacter(code: int) -> bool:
    """U+FDD0…U+FDEF and the last two code points of every plane (U+FFFE, U+FFFF, U+1FFFE…): never text, and
    U+FFFE and U+FFFF are not allowed in XML at all."""
    return 0xFDD0 <= code <= 0xFDEF or code & 0xFFFE == 0xFFFE


def _escaped(ch: str) -> str:
    return ch.encode("unicode_escape").decode("ascii")


_collecting: ContextVar[list[str] | None] = ContextVar("bncli_notes", default=None)


@contextmanager
def collected_notes() -> Iterator[list[str]]:
    """The notes of what runs inside, in the list given, instead of on stderr: a library must not print."""
    notes: list[str] = []
    token = _collecting.set(notes)
    try:
        yield notes
    finally:
        _collecting.reset(token)


def note(message: str) -> None:
    """A diagnostic line on stderr; a stderr that is closed or full does not change the outcome."""
    collecting = _collecting.get()
    if collecting is not None:
        collecting.append(message)
        return
    try:
        print(f"bncli: {printable(message)}", file=sys.stderr, flush=True)
    except (OSError, ValueError, AttributeError):
        pass
