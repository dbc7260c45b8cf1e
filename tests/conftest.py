from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from bncli import inputs
from bncli.cli import app


class Run:
    """The result of one bncli invocation: exit code, stdout, stderr."""

    def __init__(self, code: int, stdout: str, stderr: str):
        self.code, self.stdout, self.stderr = code, stdout, stderr

    @property
    def json(self):
        return json.loads(self.stdout)

    def matrix(self, skip_header: bool = True) -> np.ndarray:
        lines = self.stdout.strip().splitlines()[1 if skip_header else 0 :]
        return np.array([[float(v) for v in line.split(",")] for line in lines])

    def __repr__(self):
        return f"Run(code={self.code}, stdout={self.stdout[:300]!r}, stderr={self.stderr[:500]!r})"


@pytest.fixture
def bncli():
    """Invoke the app in process (typer's CliRunner); stdin is piped input or nothing."""
    runner = CliRunner()

    def invoke(*args: str, input: str | bytes | None = None, env: dict | None = None) -> Run:
        result = runner.invoke(app, [str(a) for a in args], input=input, env=env)
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        return Run(result.exit_code, result.stdout, result.stderr)

    return invoke


@pytest.fixture
def terminal_stdin(monkeypatch):
    """Pretend stdin is a terminal, so that no FILE means the bundled sample."""
    monkeypatch.setattr(inputs, "stdin_is_piped", lambda: False)


def run_process(
    *args: str, input: bytes | None = None, timeout: float = 120, env: dict | None = None
) -> subprocess.CompletedProcess:
    """bncli as a real process (python -m bncli), for pipes, exit codes and signals; ``env`` adds variables."""
    return subprocess.run(
        [sys.executable, "-m", "bncli", *map(str, args)],
        input=input,
        capture_output=True,
        timeout=timeout,
        env=None if env is None else {**os.environ, **env},
    )


@pytest.fixture
def data_csv(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("a,b,c\n1.5,-2,1e8\n2.25,7,100000001.5\n-0.5,3,99999999\n4,0.1,100000000.25\n")
    return path


def on_terminal(
    argv: list[str], columns: int, env: dict | None = None, cwd=None, lines: int = 50, timeout: float = 120
) -> str:
    """What ``argv`` shows on a pseudo-terminal ``columns`` × ``lines`` (stdout and stderr together;
    stdin /dev/null, so bncli without FILE uses the sample). ``env`` replaces variables; COLUMNS and
    LINES are left out unless it sets them."""
    import fcntl
    import pty
    import struct
    import termios
    import time

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", lines, columns, 0, 0))
    environment = {key: value for key, value in os.environ.items() if key not in ("COLUMNS", "LINES")}
    process = subprocess.Popen(
        [str(a) for a in argv],
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
        cwd=cwd,
        env=environment | (env or {}),
    )
    os.close(follower)
    chunks = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal is gone: every writer has exited
            break
        if not chunk:
            break
        chunks.append(chunk)
    process.wait(timeout=max(1.0, deadline - time.monotonic()))
    os.close(leader)
    return b"".join(chunks).decode("utf-8", errors="replace")
