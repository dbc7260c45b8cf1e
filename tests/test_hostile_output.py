"""Hostile environments and outputs: failed runs write nothing, streams and signals end cleanly (real processes).

Each test is named by the behaviour it pins.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import needs_proc, on_terminal, run_process, signals, wait_until, waits_on_a_pipe

from bncli.io import read

SAMPLE = read.sample_path()
PYTHON_BNCLI = [sys.executable, "-m", "bncli"]


def one_line_error(run, code: int = 2) -> str:
    stderr = run.stderr.decode()
    assert run.returncode == code, run
    assert "Traceback" not in stderr and "Warning" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bncli: error: "), lines
    return lines[0]


def shell(command: str, cwd: Path, timeout: float = 120, env: dict | None = None) -> subprocess.CompletedProcess:
    """A shell pipeline in which `bncli` is this interpreter's bncli."""
    bncli = " ".join(f"'{part}'" for part in PYTHON_BNCLI)
    return subprocess.run(
        ["bash", "-c", command.replace("bncli ", bncli + " ")],
        capture_output=True,
        cwd=cwd,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


DATA = "a,b\n1,2\n3,5\n4,4\n6,1\n"


@pytest.fixture
def data(tmp_path):
    (tmp_path / "d.csv").write_text(DATA)
    return tmp_path


@pytest.fixture(scope="module")
def saved_running(tmp_path_factory) -> bytes:
    """The running statistics bncli saves for DATA (one batch), made by one process for the module."""
    folder = tmp_path_factory.mktemp("running")
    (folder / "d.csv").write_text(DATA)
    assert run_process("forward", folder / "d.csv", "--save-running", folder / "r.json").returncode == 0
    return (folder / "r.json").read_bytes()


# ------------------------------------------------------ a failed run writes nothing


@pytest.mark.parametrize(
    "extra",
    [
        ["-o", "no/dir/y.csv"],
        ["--only", "jacobian", "-f", "json", "--column", "zz"],
        ["--dy", "missing.csv"],
        ["--check", "--step", "-1"],
    ],
)
def test_a_failed_run_leaves_the_running_statistics_untouched(data, saved_running, extra):
    running = data / "r.json"
    running.write_bytes(saved_running)
    before = running.read_bytes()
    command = "grad" if extra[0] != "-o" else "forward"
    args = [command, data / "d.csv", "--running", running, "--save-running", running, *extra]
    run = subprocess.run([*PYTHON_BNCLI, *map(str, args)], capture_output=True, cwd=data)
    one_line_error(run)
    assert running.read_bytes() == before and json.loads(before)["batches"] == 1


def test_output_and_running_statistics_are_written_together(data):
    running, out = data / "r.json", data / "y.csv"
    assert run_process("forward", data / "d.csv", "--save-running", running, "-o", out).returncode == 0
    assert json.loads(running.read_text())["batches"] == 1 and out.read_text().startswith("a,b\n")
    assert sorted(p.name for p in data.iterdir()) == ["d.csv", "r.json", "y.csv"]


# ------------------------------------------------------- nothing half-written


def test_a_huge_weight_gives_whole_json_or_one_error(data):
    run = run_process("grad", "-w", "1e308", "--check", "-f", "json", input=b"a\n1\n2\n4\n")
    if run.returncode == 0:
        assert json.loads(run.stdout)["check"]["passed"]
    else:
        one_line_error(run)
        assert run.stdout == b""
    csv = run_process("grad", "-w", "1e308", "--check", input=b"a\n1\n2\n4\n")
    assert csv.returncode in (0, 2) and b"FAIL" not in csv.stderr  # a correct gradient never FAILs


# ---------------------------------------------------- bad input is exit 2, not 70


@pytest.mark.parametrize(
    "content",
    [
        '{"columns": 5, "mean": [0, 0], "var": [1, 1]}',
        '{"columns": null, "mean": [0, 0], "var": [1, 1]}',
        '{"columns": ["a", "b"], "mean": [0, 0], "var": [1, 1], "batches": "x"}',
        '{"columns": ["a", "b"], "mean": [0, 0], "var": [1, 1], "batches": ' + "9" * 5000 + "}",
        '{"columns": ["a", "b"], "mean": [0, 0], "var": [1, 1], "momentum": "fast"}',
        "[" * 100_000 + "]" * 100_000,
        '{"columns": ["a", "b"], "mean": [1e999, 0], "var": [1, 1]}',
    ],
    ids=["columns 5", "columns null", "batches x", "5000 digits", "momentum text", "deep nesting", "1e999"],
)
def test_bad_running_files_are_input_errors(data, content):
    running = data / "r.json"
    running.write_text(content)
    one_line_error(run_process("forward", data / "d.csv", "--running", running))
    one_line_error(run_process("forward", data / "d.csv", "--eval", "--running", running))


def test_closed_stdin_and_huge_step_are_input_errors(data):
    one_line_error(shell("bncli forward - <&-", data))
    one_line_error(run_process("grad", data / "d.csv", "--fast", "--step", "1e200"))


# ----------------------------------------------------- output failures are exit 74


def test_a_full_stdout_is_an_output_error(data):
    line = one_line_error(shell("bncli forward d.csv > /dev/full", data), code=74)
    assert "No space left" in line
    line = one_line_error(run_process("forward", data / "d.csv", "-o", "/dev/full"), code=74)
    assert "--output /dev/full" in line


def test_a_closed_stdout_is_an_output_error(data):
    assert "stdout is closed" in one_line_error(shell("bncli forward d.csv >&-", data), code=74)


def test_closed_or_full_stderr_does_not_change_the_result(data):
    closed = shell("bncli grad d.csv --check 2>&-", data)
    assert closed.returncode == 0 and closed.stdout.decode().startswith("a,b\n")
    assert b"PASS" not in closed.stdout and b"bncli" not in closed.stdout
    full = shell("bncli grad d.csv --check 2>/dev/full", data)
    assert full.returncode == 0 and full.stdout == closed.stdout
    sample = shell("bncli forward 2>&- </dev/null", data)
    assert sample.returncode == 0 and b"using the bundled sample" not in sample.stdout


# ----------------------------------------------------------------- pipes close


def test_a_closed_pipe_ends_with_141(data):
    table = shell("bncli grad d.csv --check -f table | head -1; echo ${PIPESTATUS[0]} >&2", data)
    assert table.stderr.decode().strip().splitlines()[-1] in ("0", "141")  # 0 when all fit in the pipe first
    big = data / "big.csv"
    np.savetxt(big, np.random.default_rng(0).standard_normal((60_000, 5)), delimiter=",")  # ~3 MB
    run = shell("bncli forward big.csv | head -c 100 > /dev/null; echo ${PIPESTATUS[0]} >&2", data)
    assert run.stderr.decode().strip().splitlines() == ["141"]


# ------------------------------------------------------- signals end cleanly


def _temporary_output(folder: Path) -> Path | None:
    return next((p for p in folder.iterdir() if p.name.startswith(".out.csv.")), None)


def _temporary_output_exists(folder: Path) -> bool:
    return _temporary_output(folder) is not None


def _temporary_output_is_being_written(folder: Path) -> bool:
    """Inside polars' writer: the temporary file holds its first bytes (a Ctrl-C comes back a second time there)."""
    temporary = _temporary_output(folder)
    try:
        return temporary is not None and temporary.stat().st_size > 0
    except FileNotFoundError:  # renamed into place meanwhile: out.csv exists
        return False


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
@pytest.mark.parametrize("moment", [_temporary_output_exists, _temporary_output_is_being_written],
                         ids=["opened", "writing"])  # fmt: skip
@needs_proc
def test_a_signal_during_a_write_leaves_no_temporary_file(large_csv, tmp_path, signum, moment):
    process = subprocess.Popen([*PYTHON_BNCLI, "forward", str(large_csv), "-o", str(tmp_path / "out.csv")],
                               stderr=subprocess.PIPE)  # fmt: skip
    wait_until(process, lambda: moment(tmp_path) or (tmp_path / "out.csv").exists(), "the output file was opened")
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    expected = 130 if signum == signal.SIGINT else 128 + signum
    assert process.returncode in (expected, 0) and b"Traceback" not in stderr, (process.returncode, stderr)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left in ([], ["out.csv"])  # a signal between mkstemp's file and its name once left the file


def _bncli_at_its_entry(process: subprocess.Popen, may_end: bool = False) -> bool:
    """Wait until bncli's entry has installed its handlers: SIGINT's comes first, so a caught SIGTERM shows both.
    False where ``may_end`` and the run ended first."""
    return wait_until(
        process, lambda: signal.SIGTERM in signals(process.pid, "SigCgt"), "bncli's entry", may_end=may_end
    )


@needs_proc
def test_ctrl_c_at_start_up_prints_no_traceback():
    """From bncli's entry on, Ctrl-C ends it quietly with 130, or the run was already complete (0).

    The interpreter's own start before that (importing site) runs no bncli code; Python itself
    reports an interrupt there.
    """
    process = subprocess.Popen([*PYTHON_BNCLI, "forward", str(SAMPLE)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if _bncli_at_its_entry(process, may_end=True):  # a busy machine may let the whole run end between polls
        process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert b"Traceback" not in stderr and b"Exception ignored" not in stderr, stderr
    assert process.returncode in (0, 130)


@needs_proc
def test_ctrl_c_while_bncli_waits_for_its_input_ends_with_130():
    process = subprocess.Popen([*PYTHON_BNCLI, "forward", "-"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)  # fmt: skip
    _bncli_at_its_entry(process)
    wait_until(process, lambda: waits_on_a_pipe(process.pid), "bncli waited for stdin")
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert (process.returncode, stdout, stderr) == (130, b"", b"")


@needs_proc
def test_ctrl_c_after_the_result_is_complete_changes_nothing():
    """Once bncli's exit status is decided it ignores signals (its mark: SIGINT ignored), and its exit
    status stays, though Python's shutdown would otherwise put back the default action, death by SIGINT."""
    expected = run_process("forward", SAMPLE)
    process = subprocess.Popen([*PYTHON_BNCLI, "forward", str(SAMPLE)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _bncli_at_its_entry(process)
    wait_until(process, lambda: signal.SIGINT in signals(process.pid, "SigIgn"), "bncli ignored signals")
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert (process.returncode, stdout, stderr) == (0, expected.stdout, expected.stderr)


def test_ctrl_c_inside_code_run_by_exec_still_ends_with_130(tmp_path):
    """A KeyboardInterrupt that ends code exec() runs from a string (dataclasses and namedtuple make
    methods so, while bncli imports Typer and Rich) must not make ``python -m bncli`` die by SIGINT."""
    package = tmp_path / "interrupted_bncli"
    package.mkdir()
    (package / "__main__.py").write_text(
        "import importlib\n"
        "from bncli import entry\n"
        "command_line = importlib.import_module('bncli.cli.app')  # the module; bncli.cli.app is also the app\n"
        "command_line.app = lambda **options: exec('raise KeyboardInterrupt')  # as a Ctrl-C would, then\n"
        "entry.main()\n"
    )
    run = subprocess.run([sys.executable, "-m", package.name], capture_output=True, cwd=tmp_path, timeout=60)
    assert (run.returncode, run.stdout, run.stderr) == (130, b"", b"")


# ------------------------------------------------------------ tables anywhere


def test_a_table_in_a_file_does_not_depend_on_the_terminal(data):
    from bncli import core

    texts = set()
    for columns in ("0", "20", "abc", "300"):
        out = data / "t.txt"
        assert (
            run_process("forward", data / "d.csv", "-f", "table", "-o", out, env={"COLUMNS": columns}).returncode == 0
        )
        texts.add(out.read_text())
    assert len(texts) == 1
    text = texts.pop()
    y = core.forward(read.read_matrix(str(data / "d.csv")).values).y
    assert "y = w·s + b" in text and all(f"{v:.6g}" in text for v in y.ravel())
    narrow = run_process("forward", data / "d.csv", "-f", "table", env={"COLUMNS": "20"}).stdout.decode()
    assert all(f"{v:.6g}" in narrow for v in y.ravel()), narrow


@pytest.mark.parametrize("environment", [{"PYTHONIOENCODING": "ascii"}, {"PYTHONIOENCODING": "latin-1"},
                                         {"LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONIOENCODING": ""}])  # fmt: skip
def test_a_stdout_that_cannot_encode_the_table_gets_all_of_it(environment):
    run = run_process("grad", SAMPLE, "--check", "-f", "table", env=environment)
    assert run.returncode == 0 and b"Traceback" not in run.stderr, run
    text = run.stdout.decode("latin-1")
    assert "PASS:" in text and "db" in text and text.rstrip().endswith(")")


# ---------------------------------------------------------- messages say it right


def test_control_characters_in_a_header_are_escaped_in_the_verdict(tmp_path):
    data = tmp_path / "d.csv"
    data.write_bytes(b'"x\x1b[31m"\n1\n3\n4\n')
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("1\n3\n5\n")
    run = run_process("grad", data, "--against", wrong)
    assert run.returncode == 1 and b"\x1b" not in run.stderr and b"\\x1b[31m" in run.stderr


def test_messages_name_the_right_option_and_file(data):
    line = one_line_error(run_process("forward", data / "d.csv", "--save-running", data / "no" / "r.json"))
    assert line.startswith("bncli: error: --save-running ")
    running = data / "r.json"
    running.write_text('{"columns": ["a", "b"], "mean": [0, 0], "var": [0, 1]}')
    line = one_line_error(run_process("forward", data / "d.csv", "--eval", "--running", running, "--eps", "0"))
    assert "--running" in line and "'a'" in line
    named = data / "new\nline.csv"
    named.write_text("a\n1\nx\n")
    assert "new\\nline.csv" in one_line_error(run_process("forward", named))


def test_a_missing_output_folder_is_reported_before_the_check(tmp_path):
    big = tmp_path / "big.csv"
    np.savetxt(big, np.random.default_rng(0).standard_normal((3000, 10)), delimiter=",")
    start = time.monotonic()
    one_line_error(run_process("grad", big, "--check", "--no-fast", "-o", tmp_path / "missing" / "x.csv"))
    assert time.monotonic() - start < 10  # the full check alone takes longer


# -------------------------------------------------------------------- bounds


def test_probes_are_bounded():
    assert "--probes" in one_line_error(run_process("grad", SAMPLE, "--probes", str(10**30)))
    assert "--probes" in one_line_error(run_process("grad", SAMPLE, "--probes", "100000"))


def test_output_to_a_folder_name_or_through_a_link(data):
    line = one_line_error(run_process("forward", data / "d.csv", "-o", str(data / "newdir") + "/"))
    assert "newdir" in line and not (data / "newdir").exists()
    target = data / "target.csv"
    target.write_text("old")
    link = data / "link.csv"
    link.symlink_to(target)
    assert run_process("forward", data / "d.csv", "-o", link).returncode == 0
    assert link.is_symlink() and target.read_text().startswith("a,b\n")


def test_stdin_as_dash_refuses_devices_for_every_option(data):
    line = one_line_error(shell("bncli forward - < /dev/zero", data))
    assert "<stdin>: a character device" in line
    line = one_line_error(shell("bncli grad d.csv --dy - < /dev/urandom", data))
    assert "--dy -: a character device" in line


# -------------------------------------------------------------- a fresh clone, attacked


def test_an_endless_binary_pipe_is_refused_at_once(data):
    start = time.monotonic()
    line = one_line_error(shell("head -c 300000000 /dev/zero | bncli forward", data))
    assert "binary data (NUL bytes)" in line and time.monotonic() - start < 30


def test_columns_0_on_a_terminal_still_shows_the_table(data):
    shown = on_terminal([*PYTHON_BNCLI, "forward", "d.csv"], 80, {"COLUMNS": "0", "NO_COLOR": "1"}, cwd=data)
    assert "y = w·s + b" in shown


def test_running_statistics_are_not_saved_when_stdout_fails(data, saved_running):
    running = data / "r.json"
    running.write_bytes(saved_running)
    before = running.read_bytes()
    one_line_error(shell("bncli forward d.csv --running r.json --save-running r.json > /dev/full", data), code=74)
    assert running.read_bytes() == before
    shell("bncli forward d.csv --save-running new.json | true", data)
    assert not (data / "new.json").exists() or json.loads((data / "new.json").read_text())["batches"] == 1
    line = one_line_error(run_process("forward", data / "d.csv", "--save-running", running, "-o", running))
    assert "writes there too" in line and running.read_bytes() == before


@pytest.mark.parametrize("command", ["bncli --help > /dev/full", "bncli --version > /dev/full", "bncli --version >&-"])
def test_help_and_version_on_a_stream_that_fails(data, command):
    one_line_error(shell(command, data), code=74)


def test_help_and_listings_on_an_ascii_stdout(data):
    for command in ("bncli grad --help", "bncli audit --list-cases"):
        run = shell(command, data, env={"PYTHONIOENCODING": "ascii"})
        assert run.returncode == 0 and run.stdout and b"Traceback" not in run.stderr, run


def test_explain_at_the_top_of_the_float_range_is_one_line(data):
    one_line_error(run_process("explain", input=b"a\n1.7e308\n-1.7e308\n1.7e308\n"))
    one_line_error(run_process("explain", "--dtype", "float32", input=b"a\n3e38\n-3e38\n0\n"))


def test_columns_and_stdin_are_checked_whoever_reads_them(data):
    assert "'9'" in one_line_error(run_process("grad", data / "d.csv", "-c", "9"))
    explain_twice = run_process("explain", data / "d.csv", "-c", "a", "-c", "b")
    assert explain_twice.returncode == 2 and b"--column/-c given 2 times" in explain_twice.stderr
    line = one_line_error(shell("cat d.csv | bncli grad d.csv --dy - --against -", data))
    assert "both read stdin" in line
    assert "--output ''" in one_line_error(run_process("forward", data / "d.csv", "-o", ""))


def test_numbers_are_ascii_and_long_cells_are_cut_in_messages(data):
    assert "'1_000' is not a number" in one_line_error(run_process("forward", input=b"a\n1_000\n2\n"))
    assert "is not a number" in one_line_error(run_process("forward", input="a\n١\n2\n".encode()))
    line = one_line_error(run_process("forward", input=b"a\n" + b"1" * 400_000 + b"x\n2\n"))
    assert len(line) < 300


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write any file")
def test_a_read_only_output_file_is_not_replaced(data):
    target = data / "ro.csv"
    target.write_text("old")
    target.chmod(0o444)
    one_line_error(run_process("forward", data / "d.csv", "-o", target), code=74)
    assert target.read_text() == "old"


def test_running_files_hold_json_numbers_only(data):
    running = data / "r.json"
    running.write_text('{"columns": ["a", "b"], "mean": ["1", 0], "var": [1, 1]}')
    assert "'mean' is not an array of numbers" in one_line_error(
        run_process("forward", data / "d.csv", "--running", running)
    )
    running.write_text('{"columns": ["a", "b"], "mean": [0, 0], "var": [1, ' + "9" * 5000 + "]}")
    line = one_line_error(run_process("forward", data / "d.csv", "--running", running))
    assert "thousands of digits" in line and "sys.set_int_max_str_digits" not in line
