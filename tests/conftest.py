from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from bncli import inputs
from bncli.cli import app

TESTS = Path(__file__).resolve().parent
# What every real-process test reaches, through run_process, on_terminal or a shell pipeline.
PROCESS_MODULES = ("subprocess", "pty")


def _spawns_processes(code: types.CodeType, namespace: dict, seen: set) -> bool:
    """Whether ``code`` names a process module, or calls a function of the test suite that does.

    Follows names through the test modules' globals (helpers such as run_process, shell or
    audit) and into nested functions and lambdas; bncli's own code is not followed, so an
    in-process test whose library call happens to start a program stays in the fast tier.
    """
    if code in seen:
        return False
    seen.add(code)
    for name in code.co_names:
        value = namespace.get(name)
        if name in PROCESS_MODULES or (isinstance(value, types.ModuleType) and value.__name__ in PROCESS_MODULES):
            return True
        if isinstance(value, types.FunctionType) and _in_tests(value):
            if _spawns_processes(value.__code__, value.__globals__, seen):
                return True
    nested = (const for const in code.co_consts if isinstance(const, types.CodeType))
    return any(_spawns_processes(inner, namespace, seen) for inner in nested)


def _in_tests(function: types.FunctionType) -> bool:
    return Path(function.__code__.co_filename).resolve().is_relative_to(TESTS)


def _test_function(item: pytest.Function) -> types.FunctionType:
    """The test's own function (Hypothesis wraps the one it was given)."""
    hypothesis = getattr(item.function, "hypothesis", None)
    return hypothesis.inner_test if hypothesis is not None else item.function


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``slow`` every test that starts a real process, itself or through a fixture of the suite."""
    for item in items:
        if not isinstance(item, pytest.Function):
            continue
        functions = [_test_function(item)]
        for definitions in item._fixtureinfo.name2fixturedefs.values():
            functions += [d.func for d in definitions if isinstance(d.func, types.FunctionType) and _in_tests(d.func)]
        seen: set = set()
        if any(_spawns_processes(f.__code__, f.__globals__, seen) for f in functions):
            item.add_marker(pytest.mark.slow)


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


ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def audit_process(*args, cwd=None, timeout=300) -> subprocess.CompletedProcess:
    """``bncli audit ARGS`` as a real process, from ``cwd``; stdout and stderr captured as bytes."""
    return subprocess.run(
        [sys.executable, "-m", "bncli", "audit", *map(str, args)], capture_output=True, cwd=cwd, timeout=timeout
    )


def no_traceback(run) -> None:
    assert b"Traceback" not in run.stderr and b"Warning" not in run.stderr, run.stderr.decode()


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


needs_proc = pytest.mark.skipif(not Path("/proc/self/wchan").exists(), reason="needs Linux /proc")


def process_state(pid: int) -> str:
    """The one-letter state of process ``pid`` (Linux /proc): R running, S sleeping, Z ended, not yet reaped…"""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def cpu_seconds(pid: int) -> float:
    """The processor time process ``pid`` has used so far, in all its threads (user and system)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def signals(pid: int, kind: str) -> set[int]:
    """The signals process ``pid`` has a handler for (``kind`` "SigCgt") or ignores ("SigIgn")."""
    line = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith(kind + ":"))
    mask = int(line.split()[1], 16)
    return {signum for signum in range(1, 65) if mask >> (signum - 1) & 1}


def waits_on_a_pipe(pid: int) -> bool:
    """Whether process ``pid`` sleeps in the kernel on a pipe (reading stdin, or writing to a full stdout)."""
    return process_state(pid) == "S" and "pipe" in Path(f"/proc/{pid}/wchan").read_text()


def wait_until(process: subprocess.Popen, condition, what: str, timeout: float = 60, may_end: bool = False) -> bool:
    """Poll ``condition()`` until it holds (True); fail if ``timeout`` seconds pass, or if ``process``
    ends first, unless ``may_end`` (then False: on a busy machine a short run can end between polls).

    The process is not reaped here, so its /proc entry stays readable after it ends.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if process_state(process.pid) == "Z" and not condition():
            if may_end:
                return False
            pytest.fail(f"the process ended before {what}")
        if time.monotonic() > deadline:
            pytest.fail(f"{timeout} s passed before {what}")
        time.sleep(0.0005)
    return True


@pytest.fixture(scope="session")
def large_csv(tmp_path_factory) -> Path:
    """400 000 × 5 random numbers (~10 MB): long enough to write that a signal lands inside the writer."""
    path = tmp_path_factory.mktemp("large") / "large.csv"
    np.savetxt(path, np.random.default_rng(1).standard_normal((400_000, 5)), delimiter=",")
    return path


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
