"""Tables at every width (issue 21): no number split, a bounded width, no trailing spaces (real processes)."""

from __future__ import annotations

import re
import time

import pytest
from conftest import run_process

from bncli.io import read

SAMPLE = read.sample_path()
EXAMPLES = read.sample_path().parent.parent.parent / "examples"
# A number as the tables print it: 9.46e-13, -0.105, ×1.9e2, 10×4; what a split leaves are two other tokens.
NUMBER = re.compile(r"[-−+]?[×]?\d[\d.]*(?:e[-+]?\d+)?(?:×\d+)*")
WIDTHS = range(40, 121)


def numbers(text: str) -> list[str]:
    return sorted(NUMBER.findall(text))


def table(*args, columns: int, precision: str = "6", invoke=None) -> str:
    """The table view ``columns`` wide: as a real process, or in process with ``invoke`` (the bncli fixture)."""
    # --full: no matrix summarised to fit the width; the audit prints ratios, not values
    args = (*args, "-f", "table", *(() if args[0] == "audit" else ("-p", precision, "--full")))
    if invoke is None:
        run = run_process(*args, env={"COLUMNS": str(columns)})
        code, stdout, stderr = run.returncode, run.stdout.decode(), run.stderr.decode()
    else:
        run = invoke(*args, env={"COLUMNS": str(columns)})
        code, stdout, stderr = run.code, run.stdout, run.stderr
    assert code in (0, 1) and stderr.count("\n") <= 1, (code, stdout, stderr)
    return stdout


COMMANDS = {
    "check": ("grad", SAMPLE, "--check"),
    "check against": ("grad", SAMPLE, "--dy", read.sample_path(read.SAMPLE_DY_NAME), "--check", "--only", "check"),
    "failing check": ("grad", SAMPLE, "--check", "--rtol", "1e-13"),
    "audit": ("audit", f"{EXAMPLES / 'one_pass_variance.py'}:batchnorm", "--case", "offset", "--case", "unit"),
}


def table_lines(text: str) -> list[str]:
    """The lines of tables: a line of prose (context, verdict) stays one line, for grep, and may be longer."""
    return [line for line in text.splitlines()[1:] if not line.startswith(("PASS", "FAIL"))]


@pytest.mark.parametrize("precision", ["6", "17"])
@pytest.mark.parametrize("command", COMMANDS)
def test_no_number_is_split_at_any_width_from_40_to_120(bncli, command, precision):
    """Every number of the widest rendering appears whole at every width (the layout may stack cells)."""
    if command == "audit" and precision == "17":
        pytest.skip("the audit prints ratios, not values")
    expected = numbers(table(*COMMANDS[command], columns=400, precision=precision, invoke=bncli))
    assert len(expected) > 5, expected
    for width in WIDTHS:
        text = table(*COMMANDS[command], columns=width, precision=precision, invoke=bncli)
        if command != "audit":  # whose findings are lines of prose, each kept whole for grep
            assert max(map(len, table_lines(text))) <= width, (width, text)
        assert numbers(text) == expected, (width, text)


@pytest.mark.parametrize("width", [40, 47, 55])
@pytest.mark.parametrize("command", ["check", "audit"])
def test_a_narrow_terminal_shows_every_number_whole(command, width):
    expected = numbers(table(*COMMANDS[command], columns=200))
    assert numbers(table(*COMMANDS[command], columns=width)) == expected


def test_a_huge_columns_is_clamped_in_time_and_width():
    started = time.monotonic()
    run = run_process("explain", SAMPLE, "-c", "Hb", "-f", "table", env={"COLUMNS": "10000000"}, timeout=60)
    assert run.returncode == 0 and time.monotonic() - started < 20, run
    assert max(map(len, run.stdout.decode().splitlines())) <= 1000


@pytest.mark.parametrize("command", [("explain", SAMPLE, "-c", "Hb"), ("grad", SAMPLE, "--check")])
def test_a_table_into_a_pipe_is_80_wide_or_columns_and_has_no_trailing_spaces(command):
    plain = run_process(*command, "-f", "table", env={"COLUMNS": ""})
    set_width = run_process(*command, "-f", "table", env={"COLUMNS": "64"})
    for run, width in ((plain, 80), (set_width, 64)):
        lines = run.stdout.decode().splitlines()
        assert run.returncode == 0 and max(map(len, table_lines(run.stdout.decode()))) <= width, (width, run)
        assert max(map(len, lines)) > width - 15, (width, run)
        assert not [line for line in lines if line != line.rstrip()], (width, run)
