"""One result, every format: what is asked for appears or is refused, never dropped (run as real processes)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import run_process

from bncli import core
from bncli.io import read

SAMPLE = read.sample_path()
SAMPLE_DY = read.sample_path(read.SAMPLE_DY_NAME)


def refused(run, *fixes: str) -> None:
    """Exit 2, nothing on stdout, one line on stderr naming each fix."""
    lines = run.stderr.decode().strip().splitlines()
    assert run.returncode == 2 and run.stdout == b"", run
    assert len(lines) == 1 and lines[0].startswith("bncli: error: "), lines
    for fix in fixes:
        assert fix in lines[0], lines[0]


def test_a_jacobian_asked_for_in_a_pipe_is_refused_with_the_fix():
    refused(run_process("grad", SAMPLE, "--jacobian", "-c", "Hb"), "--only jacobian", "-f json")
    only = run_process("grad", SAMPLE, "--jacobian", "-c", "Hb", "--only", "jacobian")
    assert only.returncode == 0 and only.stdout.decode().splitlines()[0].startswith("Hb[0],Hb[1]")


@pytest.mark.parametrize(
    "args, fixes",
    [
        (["forward", "--stats"], ["--only stats", "-f json"]),
        (["forward", "--stats", "-f", "tsv"], ["--only stats"]),
        (["grad", "--sweep"], ["-f table"]),
        (["grad", "--jacobian", "-f", "npy", "-o", "j.npy"], ["--only jacobian"]),
        (["forward", "--stats", "--only", "y", "-f", "json"], ["drop one"]),
    ],
)
def test_requests_a_format_cannot_carry_are_refused(args, fixes, tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "bncli", args[0], str(SAMPLE), *args[1:]], capture_output=True, cwd=tmp_path
    )
    refused(run, *fixes)
    assert list(tmp_path.iterdir()) == []


def test_only_means_the_same_in_every_format():
    doc = json.loads(run_process("grad", SAMPLE, "--only", "jacobian", "-c", "0", "-f", "json").stdout)
    assert set(doc) == {"columns", "jacobian"} and set(doc["jacobian"]) == {"RBC"}
    assert np.array(doc["jacobian"]["RBC"]).shape == (10, 10)
    stats_table = run_process("forward", SAMPLE, "--only", "stats", "-f", "table").stdout.decode()
    assert "per-column statistics" in stats_table and "y = w·s + b" not in stats_table
    dw_json = json.loads(run_process("grad", SAMPLE, "--only", "dw", "-f", "json").stdout)
    assert set(dw_json) == {"columns", "dw"}
    dw_table = run_process("grad", SAMPLE, "--only", "dw", "-f", "table").stdout.decode()
    assert "dw = Σ dy·s" in dw_table and "db" not in dw_table and "dx =" not in dw_table
    s_csv = run_process("forward", SAMPLE, "--only", "s").stdout.decode().splitlines()
    s = core.forward(read.read_matrix(str(SAMPLE)).values).s
    np.testing.assert_array_equal([[float(v) for v in line.split(",")] for line in s_csv[1:]], s)


def test_stats_sweep_and_jacobian_appear_in_json_and_tables():
    doc = json.loads(run_process("grad", SAMPLE, "--sweep", "--jacobian", "-c", "Hb", "-f", "json").stdout)
    assert "sweep" in doc["check"] and set(doc["jacobian"]) == {"Hb"}
    table = run_process("grad", SAMPLE, "--sweep", "--jacobian", "-c", "Hb", "-f", "table").stdout.decode()
    assert "numerical dx error by step" in table and "∂y/∂x of column Hb" in table
    forward = run_process("forward", SAMPLE, "--stats", "-f", "table").stdout.decode()
    assert "per-column statistics" in forward and "y = w·s + b" in forward


def test_npy_output_reads_back_exactly(tmp_path):
    target = tmp_path / "y.npy"
    assert run_process("forward", SAMPLE, "-o", target).returncode == 0
    y = np.load(target, allow_pickle=False)
    np.testing.assert_array_equal(y, core.forward(read.read_matrix(str(SAMPLE)).values).y)
    again = run_process("forward", target, "--only", "s").stdout.decode().splitlines()
    np.testing.assert_array_equal([[float(v) for v in line.split(",")] for line in again], core.forward(y).s)
    piped = run_process("grad", SAMPLE, "--only", "dw", "-f", "npy")
    assert piped.stdout.startswith(b"\x93NUMPY")


def test_dy_dash_reads_stdin():
    from_stdin = run_process("grad", SAMPLE, "--dy", "-", input=SAMPLE_DY.read_bytes())
    from_file = run_process("grad", SAMPLE, "--dy", SAMPLE_DY)
    assert from_stdin.returncode == 0 and from_stdin.stdout == from_file.stdout
    refused(run_process("grad", "--dy", "-", input=SAMPLE_DY.read_bytes()), "FILE as a path")


def test_against_without_dy_says_which_dy_and_suggests_dy(tmp_path):
    data = read.read_matrix(str(SAMPLE)).values
    dy = read.read_matrix(str(SAMPLE_DY)).values
    mine = tmp_path / "mine.csv"
    np.savetxt(mine, core.backward(dy, core.forward(data)).dx, delimiter=",")  # for the file's dy
    wrong_dy = run_process("grad", SAMPLE, "--against", mine)
    assert wrong_dy.returncode == 1
    assert "seed 0, drawn by bncli" in wrong_dy.stderr.decode() and "--dy" in wrong_dy.stderr.decode()
    right_dy = run_process("grad", SAMPLE, "--against", mine, "--dy", SAMPLE_DY)
    assert right_dy.returncode == 0 and "drawn by bncli" not in right_dy.stderr.decode()


def test_seed_seeds_the_probe_directions():
    errors = []
    for seed in ("0", "1", "7"):
        run = run_process("grad", SAMPLE, "--dy", SAMPLE_DY, "--fast", "--seed", seed, "-f", "json")
        errors.append(json.loads(run.stdout)["check"]["results"]["dx"]["max_abs_error"])
    assert len(set(errors)) == 3


def test_no_fast_forces_the_element_wise_check(bncli, monkeypatch):
    from bncli import commands

    monkeypatch.setattr(commands, "FULL_CHECK_LIMIT", 100)
    probed = bncli("grad", SAMPLE, "--check", "-f", "json").json["check"]
    assert probed["probes"] == 8
    full = bncli("grad", SAMPLE, "--no-fast", "-f", "json")
    assert full.code == 0 and full.json["check"]["probes"] is None and "random directional" not in full.stderr
    assert full.json["check"]["results"]["dx"]["worst"]["row"] is not None
    assert bncli("grad", SAMPLE, "--no-fast", "--probes", "3").code == 2


def test_a_failure_reports_how_many_and_the_worst_per_column(tmp_path):
    data = read.read_matrix(str(SAMPLE)).values
    dy = read.read_matrix(str(SAMPLE_DY)).values
    dx = core.backward(dy, core.forward(data)).dx
    dx[4, 2] *= 1.001
    dx[7, 2] *= 1.001
    dx[1, 0] *= 1.01
    mine = tmp_path / "mine.csv"
    np.savetxt(mine, dx, delimiter=",")
    run = run_process("grad", SAMPLE, "--dy", SAMPLE_DY, "--against", mine, "-f", "json")
    result = json.loads(run.stdout)["check"]["results"]["dx"]
    assert run.returncode == 1 and result["beyond"] == 3
    assert set(result["columns"]) == {"RBC", "WBC", "PLT", "Hb"}
    assert result["columns"]["RBC"] > 1e-4 and result["columns"]["PLT"] > 1e-4 and result["columns"]["Hb"] < 1e-9
    table = run_process("grad", SAMPLE, "--dy", SAMPLE_DY, "--against", mine, "-f", "table").stdout.decode()
    assert "dx: 3 beyond" in table and "worst error / natural scale per column" in table


def test_help_names_paths_says_what_implies_check_and_shows_examples():
    text = run_process("grad", "--help", env={"COLUMNS": "200"}).stdout.decode()
    for option in ("--dy", "--against", "--output", "--running", "--save-running"):
        line = next(line for line in text.splitlines() if option + " " in line)
        assert "PATH" in line and "<str>" not in line, line
    sweep = next(line for line in text.splitlines() if "--sweep" in line)
    assert "Implies --check" in sweep
    assert "Examples" in text and "--no-fast" in text
    assert "--install-completion" in run_process("--help").stdout.decode()


def _imported_modules(path) -> set[str]:
    """The bncli modules a source file imports, at its top or inside its functions."""
    import ast

    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            found |= {f"{module}.{alias.name}".strip(".") for alias in node.names} | {module}
    return found


def test_the_dispatcher_knows_no_command_and_no_input():
    from pathlib import Path

    import bncli.output

    imported = _imported_modules(Path(bncli.output.__file__))
    assert not {name for name in imported if name.split(".")[0] in ("commands", "inputs", "present", "cli")}


def test_explain_markdown_escapes_what_markdown_and_its_math_read_in_names(tmp_path):
    """$ starts math (GitHub, MathJax), & an entity, ~ strikethrough: a name is shown as written."""
    name = "a$b$&amp;~~c~~"
    data = tmp_path / "d.csv"
    data.write_text(f"{name},z\n1,2\n3,4\n5,1\n")
    run = run_process("explain", data, "-c", "0", "-f", "markdown")
    assert run.returncode == 0, run
    heading = run.stdout.decode().splitlines()[0]
    assert heading.endswith(r"column a\$b\$\&amp;\~\~c\~\~"), heading
