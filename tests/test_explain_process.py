"""bncli explain as a user runs it: real processes, exit codes, files."""

from __future__ import annotations

import json

import numpy as np
from conftest import run_process

from bncli.io import read

SAMPLE = read.sample_path()
SAMPLE_DY = read.sample_path(read.SAMPLE_DY_NAME)


def test_explain_equals_grad_to_the_last_digit():
    explained = json.loads(run_process("explain", SAMPLE, "-c", "Hb", "--dy", SAMPLE_DY, "-f", "json").stdout)
    grad = json.loads(run_process("grad", SAMPLE, "--dy", SAMPLE_DY, "--jacobian", "-c", "Hb", "-f", "json").stdout)
    column = grad["columns"].index("Hb")
    assert explained["dx"] == [row[column] for row in grad["dx"]]
    assert explained["dw"] == grad["dw"][column] and explained["db"] == grad["db"][column]
    assert explained["J"] == grad["jacobian"]["Hb"]
    expected = {"column", "k", "eps", "weight", "bias", "x", "m", "v", "std", "s", "dm_dx", "dv_dx", "u", "R", "J"}
    assert expected | {"dy", "dx_via_J", "dx", "dw", "db"} == set(explained)
    by_index = json.loads(run_process("explain", SAMPLE, "-c", "3", "--dy", SAMPLE_DY, "-f", "json").stdout)
    assert by_index == explained


def test_explain_writes_markdown_notes_and_tables(tmp_path):
    notes = tmp_path / "notes.md"
    assert run_process("explain", SAMPLE, "-c", "Hb", "-o", notes).returncode == 0
    text = notes.read_text()
    assert "$$" in text and "\\frac" in text and "Hb" in text
    table = run_process("explain", SAMPLE, "-c", "Hb", "-f", "table").stdout.decode()
    for step in ("Mean and variance", "u and R", "∂y/∂x = u·R", "dx = ∂e/∂x, two ways", "dw and db"):
        assert step in table
    piped = run_process("explain", "-c", "Hb", input=SAMPLE.read_bytes())
    assert json.loads(piped.stdout)["column"] == "Hb"


def test_explain_in_eval_mode_has_a_diagonal_jacobian(tmp_path):
    running = tmp_path / "run.json"
    assert run_process("forward", SAMPLE, "--save-running", running).returncode == 0
    doc = json.loads(run_process("explain", SAMPLE, "--eval", "--running", running, "-f", "json").stdout)
    jacobian = np.array(doc["J"])
    np.testing.assert_array_equal(jacobian, np.diag(np.diag(jacobian)))


def test_explain_refuses_what_it_cannot_do(tmp_path):
    assert run_process("explain", SAMPLE, "-c", "nope").returncode == 2
    assert run_process("explain", SAMPLE, "-f", "csv").returncode == 2
    constant = tmp_path / "c.csv"
    constant.write_text("a\n1\n1\n1\n")
    run = run_process("explain", constant, "--eps", "0")
    assert run.returncode == 2 and b"zero variance" in run.stderr


def test_explain_one_column_while_another_is_constant_with_eps_0():
    data = b"a,b\n3,1\n3,2\n3,4\n"
    run = run_process("explain", "--eps", "0", "-c", "b", "-w", "5,7", "-f", "json", input=data)
    doc = json.loads(run.stdout)
    assert run.returncode == 0 and doc["column"] == "b" and doc["weight"] == 7.0
    assert run_process("explain", "--eps", "0", "-c", "a", input=data).returncode == 2
