"""Which format a request gets, and whether that format can carry what was asked for.

:func:`validate` runs before anything is computed: a request the chosen output cannot carry is
refused with one line naming the fix, and a missing folder or picture library before the work.
"""

from __future__ import annotations

import sys
from pathlib import Path

from . import options
from .errors import InputError
from .io.files import check_output_path
from .options import FIGURE_FORMATS, ONE_MATRIX_FORMATS, PICTURE_FILE_FORMATS

MATRIX_PARTS = (set(options.FORWARD_PARTS) | set(options.GRAD_PARTS)) - {"check"}  # what csv can print alone


def stdout_is_terminal() -> bool:
    try:
        return sys.stdout is not None and sys.stdout.isatty()
    except ValueError:  # closed
        return False


def resolve_format(outputs: options.OutputOptions, formats: tuple[str, ...], stdout_is_tty: bool) -> str:
    """--format; else --output's extension (a picture file, or one of ``formats``); else by stdout.

    ``formats[0]`` is what a terminal gets and ``formats[1]`` what a pipe or any other file gets.
    """
    if outputs.format:
        return outputs.format
    if outputs.output:
        implied = format_for_path(outputs.output)
        writable = formats + PICTURE_FILE_FORMATS
        if implied is None or (implied not in writable and "csv" in formats):
            return formats[1]  # forward and grad: "anything else csv", as the contract has it
        if implied not in writable:
            suffix = Path(outputs.output).suffix
            raise InputError(
                f"--output {outputs.output}: a {suffix} file holds {implied}, which this command does not write "
                f"({', '.join(formats)}); name the file for one of them, or give --format"
            )
        return implied
    return formats[0] if stdout_is_tty else formats[1]


def format_for_path(path: str) -> str | None:
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


# ------------------------------------------------------------------- validation


def validate(
    outputs: options.OutputOptions,
    *,
    formats: tuple[str, ...],
    extras: dict[str, str] | None = None,
    default: str | None = None,
    pictures: bool = False,
    stdout_is_tty: bool,
) -> str:
    """Refuse, before anything is computed, output options that cannot show what was asked for.

    ``formats``: what the command can write (the first for a terminal, the second
    otherwise); ``extras`` maps each part asked for beyond the default (e.g.
    "stats": "--stats") to the option that asked; ``pictures``: whether the
    command has pictures to draw with --plot. Returns the format.
    """
    if outputs.output == "":
        raise InputError("--output '': give a file name (or leave --output out for stdout)")
    fmt = resolve_format(outputs, formats, stdout_is_tty)
    _validate_destination(outputs, fmt, formats, stdout_is_tty)
    _validate_parts(outputs, fmt, extras or {}, default)
    _validate_pictures(outputs, fmt, pictures)
    if outputs.output:
        check_output_path(outputs.output, "--output")
    return fmt


def _validate_destination(outputs: options.OutputOptions, fmt: str, formats: tuple[str, ...], stdout_is_tty: bool):
    """The format is one this command writes, and goes where it can: pictures and binary data to a file."""
    if fmt not in formats + PICTURE_FILE_FORMATS:
        raise InputError(f"--format {fmt}: this command writes {', '.join(formats)}")
    if fmt in PICTURE_FILE_FORMATS and not outputs.output:
        raise InputError(f"{fmt} pictures are written to a file: give --output NAME.{fmt}")
    if fmt == "npy" and not outputs.output and stdout_is_tty:
        raise InputError("-f npy writes binary data: give --output FILE.npy or pipe it")


def _validate_parts(outputs: options.OutputOptions, fmt: str, extras: dict[str, str], default: str | None) -> None:
    if fmt in ONE_MATRIX_FORMATS:
        shown = outputs.only or default
        for part, option in extras.items():
            if part != shown:
                alone = f"--only {part} for it alone, or " if part in MATRIX_PARTS else ""
                fix = f"use {alone}-f json or -f table for everything"
                raise InputError(f"{option}: {fmt} output carries one matrix ({shown}); {fix}")
    elif outputs.only:
        for part, option in extras.items():
            if part != outputs.only:
                raise InputError(f"{option}: --only {outputs.only} shows {outputs.only} alone; drop one of them")


def _validate_pictures(outputs: options.OutputOptions, fmt: str, pictures: bool) -> None:
    if (outputs.plot or fmt in FIGURE_FORMATS) and not pictures:
        asked = "--plot" if outputs.plot else f"--output {outputs.output}"
        raise InputError(
            f"{asked}: nothing to draw here; pictures are drawn of the Jacobian (grad --jacobian), "
            "the check (grad --check, --sweep) and audits"
        )
    if outputs.plot and fmt not in ("table", *PICTURE_FILE_FORMATS):
        raise InputError(
            f"--plot draws pictures, which {fmt} cannot carry: use -f table, or -o NAME.svg, .html or .png"
        )
    if fmt in FIGURE_FORMATS:  # refused now, as a missing folder is, not after all the work
        from .figures import require_matplotlib

        require_matplotlib(fmt)
