"""The bncli application (Typer): the app, --version, and how a command's failures become exit codes.

Only Typer is imported at start-up; numpy, Rich and the numeric code load inside
the commands, so that ``bncli --version`` and ``--help`` start fast.

Exit codes: 0 success; 1 a check or audit found a problem; 2 bad usage or input;
74 the result could not be written; 130/129/143 interrupted (SIGINT/SIGHUP/SIGTERM);
141 the reader closed the pipe; 70 a bug in bncli.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Annotated

import typer

from .. import __version__, signals

EXIT_INPUT = 2
EXIT_OUTPUT = 74  # EX_IOERR in sysexits.h
EXIT_BUG = 70  # EX_SOFTWARE
EXIT_BROKEN_PIPE = 141

app = typer.Typer(
    name="bncli",
    help="Batch normalization and gradient checking: forward pass, backward pass, Jacobian, and a numerical check "
    "of gradients (bncli's own or yours) that holds at every scale.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        print(f"bncli {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", "-V", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """Batch normalization and gradient checking from the command line."""


def run(action: Callable[[], int]) -> None:
    """Run a command; every failure becomes one line on stderr and its exit code."""
    from ..errors import InputError, OutputError, printable

    def fail(message: str, code: int) -> typer.Exit:
        try:
            print(f"bncli: error: {printable(message)}", file=sys.stderr, flush=True)
        except (OSError, ValueError, AttributeError):
            pass
        return typer.Exit(code)

    try:
        code = action()
    except InputError as error:
        raise fail(str(error), EXIT_INPUT) from None
    except OutputError as error:
        raise fail(str(error), EXIT_OUTPUT) from None
    except BrokenPipeError:
        _silence_stdout()
        raise typer.Exit(EXIT_BROKEN_PIPE) from None
    except OSError as error:  # writing to stdout (full disk, closed stream)
        _silence_stdout()
        raise fail(f"cannot write the result to stdout: {error.strerror or error}", EXIT_OUTPUT) from None
    except MemoryError:
        raise fail("out of memory: the input is too large for this machine", EXIT_INPUT) from None
    except Exception as error:  # a bug in bncli: one line; the traceback on request
        if signals.received is not None:
            raise signals.Terminated(signals.received) from None
        if os.environ.get("BNCLI_DEBUG"):
            raise
        first_line = (str(error).splitlines() or [""])[0]
        raise fail(
            f"internal error: {type(error).__name__}: {first_line} (a bug; BNCLI_DEBUG=1 shows the traceback)",
            EXIT_BUG,
        ) from None
    if code:
        raise typer.Exit(code)


def _silence_stdout() -> None:
    """After a failed write to stdout, point it at /dev/null so the final flush is quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
    except OSError:
        pass


def _click_exception() -> type[Exception]:
    """click's ClickException (Typer's vendored copy or click itself)."""
    return next(cls for cls in typer.BadParameter.__mro__ if cls.__name__ == "ClickException")


def main() -> None:
    """Console entry point: like ``app()``, but usage errors are one line and exit 2."""
    click_exception = _click_exception()
    try:
        code = app(standalone_mode=False)
    except click_exception as error:
        if type(error).__name__ == "NoArgsIsHelpError":  # the help is already printed
            sys.exit(error.exit_code)
        command = sys.argv[1] if len(sys.argv) > 1 and not sys.argv[1].startswith("-") else ""
        hint = f" (see 'bncli {command} --help')" if command else " (see 'bncli --help')"
        print(f"bncli: error: {error.format_message()}{hint}", file=sys.stderr)
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except OSError as error:  # the help or a listing could not be written
        _silence_stdout()
        print(f"bncli: error: cannot write to stdout: {error.strerror or error}", file=sys.stderr)
        sys.exit(EXIT_OUTPUT)
    except BaseException:
        # A library that checks for signals inside its own code (polars does) may turn our Terminated
        # into an exception of its own: the signal still decides how the run ends.
        if signals.received is not None:
            sys.exit(128 + signals.received)
        raise
    sys.exit(code if isinstance(code, int) else 0)
