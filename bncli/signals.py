"""How SIGINT, SIGTERM and SIGHUP end bncli: what the entry point installs and the command line reads.

Ctrl-C raises KeyboardInterrupt; SIGTERM and SIGHUP raise :class:`Terminated`, which unwinds the
same way, so temporary files are removed on the way out. The first signal wins: later ones are
ignored so that they cannot cut that cleanup short.
"""

import signal
import sys


class Terminated(BaseException):
    """SIGTERM or SIGHUP: unwinds like Ctrl-C, so temporary files are removed on the way out."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


received: int | None = None  # the SIGTERM or SIGHUP that ends this run, once one arrived


def install() -> None:
    """Handle SIGTERM and SIGHUP with :class:`Terminated` and SIGINT with KeyboardInterrupt, once each."""
    signal.signal(signal.SIGINT, _interrupt)  # first: a caught SIGTERM then shows (in /proc) that Ctrl-C is ours too
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _terminate)


def ignore_further_signals() -> None:
    """One interrupt ends bncli; the next ones must not stop its cleanup (polars answers a Ctrl-C
    that reaches it with a second one)."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)


def _unwinding() -> bool:
    """Whether an interrupt is already being handled (polars raises KeyboardInterrupt itself for a
    Ctrl-C that reaches it, and Python's own handler then runs once more, inside the cleanup), or
    the run is already ending with its exit status decided."""
    return isinstance(sys.exc_info()[1], KeyboardInterrupt | Terminated | SystemExit)


def _interrupt(signum, frame) -> None:
    ignore_further_signals()
    if not _unwinding():
        raise KeyboardInterrupt


def _terminate(signum, frame) -> None:
    global received
    received = signum
    ignore_further_signals()
    if not _unwinding():
        raise Terminated(signum)
