"""The console entry point: signals and standard streams first, then the command line.

Importing the command line (Typer) takes a moment; Ctrl-C, SIGTERM or SIGHUP in that
moment ends bncli quietly like at any other time, instead of with a traceback.
"""

import os
import sys

from . import __version__, signals


def _guard_standard_streams() -> None:
    """Put /dev/null on a closed stdin, stdout or stderr descriptor.

    Otherwise the next file bncli opens takes that descriptor, and a note meant for
    stderr lands in it. sys.stdin and sys.stdout stay None (Python's mark of a closed
    stream), so reading or writing them still says the stream is closed; notes for a
    closed stderr are dropped.
    """
    for descriptor in (0, 1, 2):
        try:
            os.fstat(descriptor)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != descriptor:
                os.dup2(null, descriptor)
                os.close(null)
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 (open for the life of the process)


def _sane_terminal_size() -> None:
    """Drop COLUMNS or LINES that are not usable sizes (0, -5, 'abc'): Rich and the help would print nothing."""
    for name, smallest in (("COLUMNS", 20), ("LINES", 5)):
        value = os.environ.get(name)
        if value is not None and not (value.isdigit() and int(value) >= smallest):
            del os.environ[name]


def _print_version() -> None:
    try:
        if sys.stdout is None:
            raise OSError("stdout is closed")
        print(f"bncli {__version__}", flush=True)
    except OSError as error:
        message = error.strerror or error
        sys.stderr.write(f"bncli: error: cannot write the version to stdout: {message}\n")
        os._exit(74)  # no final flush of a stdout that already failed
    sys.exit(0)


def _one_blas_thread() -> None:
    """bncli's sums down columns are memory-bound dot products (np.vecdot), where OpenBLAS's threads
    only add synchronisation: on 2 busy cores they made a forward pass of 1e6×10 take 0.65 s
    instead of 0.03 s. bncli runs its own threads where work divides (the gradient check).
    Set before numpy is first imported; a user's own setting is kept."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def main() -> None:
    _one_blas_thread()
    _guard_standard_streams()
    _sane_terminal_size()
    if sys.stdout is not None:  # help on a stdout that cannot encode its box characters: '?' for them
        sys.stdout.reconfigure(errors="replace")
    signals.install()
    try:
        if sys.argv[1:] in (["--version"], ["-V"]):  # answered before Typer builds the commands
            _print_version()
        from .cli import main as run_command_line

        run_command_line()
    except KeyboardInterrupt:
        sys.exit(130)
    except signals.Terminated as received:
        sys.exit(128 + received.signum)
    finally:
        # The exit status is decided, and two things in CPython would still turn it into a death by
        # SIGINT (return code -2). Its shutdown puts back the default action of every signal it
        # handles (not of an ignored one), and a Ctrl-C in those last ~30 ms killed a finished run.
        # And a KeyboardInterrupt that ends code exec() runs from a string (dataclasses and
        # namedtuple make methods so while modules are imported) marks the interrupt unhandled for
        # good, though bncli caught it; under `python -m` the interpreter then kills itself with
        # SIGINT after exiting 130. The next exec() of a string clears that mark.
        signals.ignore_further_signals()
        exec("")
