"""Ending the processes a target runs in, with everything they started in their group."""

from __future__ import annotations

import os
import signal
import subprocess


def has_ended(process: subprocess.Popen) -> bool:
    """Whether ``process`` has ended, without reaping it: its group can still be killed by its id."""
    try:
        return os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:  # reaped already
        return True


def kill_group(process: subprocess.Popen) -> int:
    """End the process and everything in its group (its own session), reap it; its exit status."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    return process.wait()
