"""How SIGINT, SIGTERM and SIGHUP end bncli: what the entry point installs and the command line reads.

Ctrl-C raises KeyboardInterrupt; SIGTERM and SIGHUP raise :class:`Terminated`, which unwinds the
same way, so temporary files are removed on the way out. The first signal wins: later ones are
ignored so that they cannot cut that cleanup short.
"""

import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager


class Terminated(BaseException):
    """SIGTERM or SIGHUP: unwinds like Ctrl-C, so temporary files are removed on the way out."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


received: int | None = None  # the SIGTERM or SIGHUP that ends this run, once one arrived
_held: list[int] | None = None  # inside held(): the signals that arrived, acted on as it ends


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


@contextmanager
def held() -> Iterator[None]:
    """A step that a signal must not cut in two (a file created, its name not yet known to the code
    that removes it): a signal that arrives inside is acted on as the step ends.

    Python runs signal handlers in the main thread whichever thread the signal reached, so this
    holds them from polars' threads too, where blocking the signal in one thread would not.
    """
    global _held
    outer, _held = _held, []
    try:
        yield
    finally:
        arrived, _held = _held, outer
        if arrived and outer is not None:
            outer.extend(arrived)
        elif arrived:
            _act_on(arrived[0])


def _act_on(signum: int) -> None:
    if not _unwinding():
        raise KeyboardInterrupt if signum == signal.SIGINT else Terminated(signum)


def _interrupt(signum, frame) -> None:
    ignore_further_signals()
    if _held is not None:
        _held.append(signum)
    else:
        _act_on(signum)


def _terminate(signum, frame) -> None:
    global received
    received = signum
    ignore_further_signals()
    if _held is not None:
        _held.append(signum)
    else:
        _act_on(signum)
