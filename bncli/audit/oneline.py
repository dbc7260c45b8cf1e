"""What a target raised, in one line: the exception's own reason even when its ``__str__`` is broken."""

from __future__ import annotations

LONGEST = 200


def reason(error: BaseException) -> str:
    """The first non-blank line of ``str(error)``; when that raises, of its arguments (the reason it was given)."""
    try:
        text = str(error)
    except BaseException:  # noqa: BLE001 - the target's __str__ may raise anything
        text = _arguments(error)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return _shortened(lines[0]) if lines else ""


def describe(error: BaseException) -> str:
    """The exception's type and :func:`reason`, e.g. ``ValueError: bad shape``."""
    text = f"{type(error).__name__}: {reason(error)}".rstrip(": ")
    return _shortened(text)


def _arguments(error: BaseException) -> str:
    try:
        return ", ".join(argument if isinstance(argument, str) else repr(argument) for argument in error.args)
    except BaseException:  # noqa: BLE001 - an argument's __repr__ too
        return ""


def _shortened(text: str) -> str:
    return text if len(text) <= LONGEST else text[: LONGEST - 1] + "…"
