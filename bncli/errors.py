"""The error vocabulary every layer shares; it imports nothing of bncli.

An :class:`InputError` is bad usage or bad input (exit 2), an :class:`OutputError` a result that
could not be written (exit 74). Both carry one line for the user; :func:`printable` makes any text
safe to put in that line, and :func:`note` puts a line that is not an error (a warning, a verdict)
on stderr.
"""

from __future__ import annotations

import sys
import unicodedata


class InputError(Exception):
    """Bad usage or bad input: one line for the user, exit code 2."""


class OutputError(Exception):
    """Writing a result failed (disk full, read-only, closed stdout): one line, exit code 74."""


def printable(text: str) -> str:
    """``text`` with control and format characters escaped (``\\x1b``, ``\\n``): safe on a terminal, one line."""
    return "".join(
        ch if unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Co") else ch.encode("unicode_escape").decode("ascii")
        for ch in text
    )


def note(message: str) -> None:
    """A diagnostic line on stderr; a stderr that is closed or full does not change the outcome."""
    try:
        print(f"bncli: {printable(message)}", file=sys.stderr, flush=True)
    except (OSError, ValueError, AttributeError):
        pass
