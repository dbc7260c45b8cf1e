"""The Python API (bncli.forward, grad, check; the audit's report), and what a new user meets first:
the README's Quickstart and Python examples, the audit's help and verdict line, the install hints."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import run_process

import bncli
from bncli import core
from bncli.errors import InputError

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
EXAMPLES = ROOT / "examples"
BLOOD = ROOT / "sample_data" / "blood.csv"
CORRECT = f"{EXAMPLES / 'batchnorm_numpy.py'}:batchnorm"
MISSING_MEAN_TERM = f"{EXAMPLES / 'missing_mean_term.py'}:batchnorm"


def python_blocks(text: str) -> list[tuple[int, str]]:
    """(line number, code) of every ```python block."""
    blocks, lines = [], text.splitlines()
    for number, line in enumerate(lines, start=1):
        if line.strip() == "```python":
            end = next(i for i in range(number, len(lines)) if lines[i].strip() == "```")
            blocks.append((number, "\n".join(lines[number:end])))
    return blocks


def run_python(code: str, cwd: Path = ROOT, env: dict | None = None) -> subprocess.CompletedProcess:
    """``code`` run by this interpreter as ``python -`` from ``cwd``, as someone pasting it there would."""
    return subprocess.run(
        [sys.executable, "-"], input=code.encode(), capture_output=True, cwd=cwd, timeout=300, env=env
    )


@pytest.fixture(scope="module")
def blood() -> np.ndarray:
    return np.loadtxt(BLOOD, delimiter=",", comments="#", skiprows=3)


# ------------------------------------------------------------------- bncli.forward, grad


def test_forward_takes_an_array_and_returns_the_cli_result(blood):
    from bncli.commands import ForwardResult

    result = bncli.forward(blood, weight=2.0, bias=[0, 1, 2, 3], eps=1e-3)
    expected = core.forward(blood, np.full(4, 2.0), np.arange(4.0), 1e-3)
    assert isinstance(result, ForwardResult)
    np.testing.assert_array_equal(result.model.bn.y, expected.y)
    assert result.model.columns == ["0", "1", "2", "3"] and result.model.eps == 1e-3


def test_forward_takes_lists_and_column_names():
    result = bncli.forward([[1.0, 10.0], [2.0, 30.0], [4.0, 20.0]], columns=["a", "b"])
    assert result.model.columns == ["a", "b"]
    np.testing.assert_allclose(result.model.bn.y.mean(axis=0), 0, atol=1e-15)


def test_forward_agrees_with_the_cli_on_the_same_data(blood):
    run = run_process("forward", BLOOD, "-f", "json")
    assert run.returncode == 0, run.stderr
    cli_y = np.array(json.loads(run.stdout)["y"])
    np.testing.assert_array_equal(bncli.forward(blood).model.bn.y, cli_y)


def test_grad_with_a_given_dy_is_the_cores_backward(blood):
    from bncli.commands import GradResult

    dy = np.random.default_rng(3).standard_normal(blood.shape)
    result = bncli.grad(blood, dy)
    expected = core.backward(dy, core.forward(blood, np.ones(4), np.zeros(4), 1e-5))
    assert isinstance(result, GradResult) and result.check is None
    np.testing.assert_array_equal(result.gradients.dx, expected.dx)
    np.testing.assert_array_equal(result.gradients.dw, expected.dw)


def test_grad_without_dy_draws_the_clis_dy(blood):
    run = run_process("grad", BLOOD, "-f", "json", "--seed", "5")
    assert run.returncode == 0, run.stderr
    np.testing.assert_array_equal(bncli.grad(blood, seed=5).gradients.dx, np.array(json.loads(run.stdout)["dx"]))


def test_grad_jacobian_of_one_column(blood):
    result = bncli.grad(blood, columns=["a", "b", "c", "d"], jacobian=["b"])
    assert list(result.jacobians) == [1] and result.jacobians[1].shape == (10, 10)
    assert list(bncli.grad(blood, jacobian=True).jacobians) == [0, 1, 2, 3]


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: bncli.forward([1.0, 2.0, 3.0]), "x: shape (3,); expected a 2-D array"),
        (lambda: bncli.forward([["a", "b"], ["c", "d"]]), "x: not an array of real numbers"),
        (lambda: bncli.forward([[1.0, np.nan], [2.0, 3.0]]), "x: row 0, column '1': NaN and infinity are not"),
        (lambda: bncli.forward(np.zeros((0, 3))), "x: no data"),
        (lambda: bncli.forward([[1.0, 2.0], [3.0, 5.0]], eps=-1), "--eps -1.0: must be a finite number ≥ 0"),
        (lambda: bncli.forward([[1.0, 2.0], [3.0, 5.0]], weight=[1, 2, 3]), "--weight: 3 values, but the data"),
        (lambda: bncli.forward([[1.0, 2.0], [3.0, 5.0]], columns=["a"]), "columns: 1 name(s) for 2 columns"),
        (lambda: bncli.forward([[1.0, 2.0], [3.0, 5.0]], dtype="int8"), "dtype 'int8': use float64 or float32"),
        (lambda: bncli.grad([[1.0, 2.0], [3.0, 5.0]], [[1.0], [2.0]]), "dy: shape (2, 1), but the data is 2×2"),
        (lambda: bncli.check([[1.0, 2.0], [3.0, 5.0]], against={"dW": [1, 2]}), "against: unknown key 'dW'"),
        (lambda: bncli.check([[1.0, 2.0], [3.0, 5.0]], against={"dw": [1.0]}), "against: 'dw' has shape (1,)"),
    ],
)
def test_a_bad_argument_is_an_input_error_of_one_line(call, message):
    with pytest.raises(InputError) as caught:
        call()
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_input_error_is_exported():
    assert bncli.InputError is InputError


# ------------------------------------------------------------------------- bncli.check


def test_check_of_the_right_gradients_passes(blood):
    dy = np.random.default_rng(1).standard_normal(blood.shape)
    mine = core.backward(dy, core.forward(blood, np.ones(4), np.zeros(4), 1e-5))
    report = bncli.check(blood, dy, against={"dx": mine.dx, "dw": mine.dw, "db": mine.db})
    assert report.passed and report.verdict.startswith("PASS")
    assert report.json["passed"] is True and set(report.json["results"]) == {"dx", "dw", "db"}
    assert "gradient check" in report.text and "PASS" in report.text
    assert len(repr(report)) < 200 and "PASS" in repr(report)


def test_check_of_a_wrong_dx_fails_and_says_where(blood):
    dy = np.random.default_rng(1).standard_normal(blood.shape)
    mine = core.backward(dy, core.forward(blood, np.ones(4), np.zeros(4), 1e-5))
    wrong = mine.dx * 10 / 9
    report = bncli.check(blood, dy, against=wrong)  # an array is dx, as a CSV file given to --against
    assert not report.passed and report.verdict.startswith("FAIL")
    assert report.json["results"]["dx"]["passed"] is False
    assert "FAIL" in report.text and "\x1b[" not in report.text


def test_check_without_against_checks_bnclis_own_gradients(blood):
    report = bncli.check(blood)
    assert report.passed and report.result.check.against is None


def test_check_prints_nothing_and_carries_its_precision_note_on_the_report(blood, capfd):
    dy = np.random.default_rng(1).standard_normal(blood.shape)
    mine = core.backward(dy, core.forward(blood, np.ones(4), np.zeros(4), 1e-5))
    report = bncli.check(blood, dy, against={"dx": mine.dx.astype(np.float32)})
    assert report.passed
    assert capfd.readouterr() == ("", "")
    assert len(report.notes) == 1 and "float32 numbers" in report.notes[0], report.notes
    assert bncli.check(blood, dy, against=mine.dx).notes == ()


def test_check_carries_the_findings_on_a_failing_against_as_notes(blood, capfd):
    dy = np.random.default_rng(1).standard_normal(blood.shape)
    unbiased = blood.var(0, ddof=1) + 1e-5
    s = (blood - blood.mean(0)) / np.sqrt(unbiased)
    report = bncli.check(blood, dy, against={"dx": (dy - dy.mean(0) - s * (dy * s).mean(0)) / np.sqrt(unbiased)})
    assert not report.passed
    assert capfd.readouterr() == ("", "")
    assert any("unbiased variance" in text for text in report.notes), report.notes


@pytest.mark.parametrize(
    ("call", "said"),
    [
        (lambda: bncli.forward([[1.0, 2.0]]), "a single row"),
        (lambda: bncli.grad([[1.0, 2.0], [1.0, 3.0]]), "constant column(s) '0'"),
    ],
)
def test_forward_and_grad_print_nothing_and_warn_what_the_commands_note(call, said, capfd):
    from bncli.api import BncliWarning

    with pytest.warns(BncliWarning) as warned:
        call()
    assert capfd.readouterr() == ("", "")
    assert any(said in str(warning.message) for warning in warned), [str(w.message) for w in warned]


def test_grad_against_prints_the_precision_note_on_stderr_as_before(tmp_path):
    data, dx = tmp_path / "x.csv", tmp_path / "dx32.csv"
    data.write_text("a,b\n1.5,10\n2.5,30\n-1,20\n4,0\n")
    dy = ["--dy", str(read_sample_dy(tmp_path))]
    ours = run_process("grad", data, *dy, "-f", "csv")
    values = np.loadtxt(ours.stdout.decode().splitlines()[1:], delimiter=",").astype(np.float32)
    dx.write_text("a,b\n" + "".join(f"{float(a)!r},{float(b)!r}\n" for a, b in values))
    run = run_process("grad", data, *dy, "--against", dx, "-f", "json")
    assert run.returncode == 0, run.stderr.decode()
    assert run.stderr.decode() == (
        f"bncli: --against {dx}: its numbers are float32 numbers: each is judged with the rounding that "
        "allows (unit roundoff 6e-08)\n"
        "bncli: PASS: dx agree with the numerical derivatives: every error ≤ 8 × its noise (largest 0.023) "
        "(central, step 9.61e-06·σ)\n"
    )


def read_sample_dy(tmp_path: Path) -> Path:
    path = tmp_path / "dy.csv"
    path.write_text("a,b\n1,-1\n2,0.5\n-3,2\n0.25,1\n")
    return path


# ------------------------------------------------------------ the audit report in Python


@pytest.fixture(scope="module")
def wrong_report():
    return bncli.audit(MISSING_MEAN_TERM, dtypes=["float64"], cases=["unit", "blood"])


def test_the_audit_report_has_a_short_repr(wrong_report):
    shown = repr(wrong_report)
    assert len(shown) < 200 and "WRONG" in shown and "missing_mean_term.py" in shown


def test_the_audit_report_text_is_the_table_view_without_colour(wrong_report):
    text = wrong_report.text
    assert "\x1b[" not in text and "bncli audit of" in text and "diagnosis" in text
    assert text.rstrip().splitlines()[-1].startswith("WRONG: 2 case runs")
    assert all(line == line.rstrip() for line in text.splitlines())


def test_the_audit_report_json_is_the_clis_json_object(wrong_report):
    run = run_process("audit", MISSING_MEAN_TERM, "--dtype", "float64", "--case", "unit", "--case", "blood")
    assert run.returncode == 1
    assert isinstance(wrong_report.json, dict)
    assert wrong_report.json == json.loads(run.stdout)


def test_assert_batchnorm_failure_shows_the_users_line_and_the_report_only(tmp_path):
    test_file = tmp_path / "test_user.py"
    test_file.write_text(
        textwrap.dedent(f"""
        from bncli.testing import assert_batchnorm

        def test_mine():
            assert_batchnorm({MISSING_MEAN_TERM!r}, dtypes=["float64"], cases=["unit"])  # the user's line
        """)
    )
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test_file)],
        capture_output=True,
        cwd=tmp_path,
        timeout=300,
    )
    out = run.stdout.decode()
    assert run.returncode == 1, out
    assert "# the user's line" in out and "WRONG: 1 case run" in out and "diagnosis" in out
    assert "bncli/testing.py" not in out and "raise AssertionError" not in out


def test_assert_batchnorm_passes_quietly_on_a_correct_implementation():
    from bncli.testing import assert_batchnorm

    assert_batchnorm(CORRECT, dtypes=["float64"], cases=["unit"])


# ------------------------------------------------------------------------ the README


@pytest.mark.parametrize("line, code", python_blocks(README.read_text()), ids=lambda v: str(v)[:20])
def test_every_python_block_of_the_readme_runs_from_the_repository_root(line, code):
    run = run_python(code)
    assert run.returncode == 0, f"README line {line}:\n{run.stderr.decode()[-3000:]}"


def test_the_readme_documents_each_api_function_with_an_example():
    code = "\n".join(block for _, block in python_blocks(README.read_text()))
    for call in ("bncli.forward(", "bncli.grad(", "bncli.check(", "bncli.audit(", ".text", ".json"):
        assert call in code, call


def test_the_quickstart_activates_the_venv_before_any_bare_bncli(tmp_path):
    """Every later command is a bare ``bncli``: the Quickstart must say how to get it on PATH."""
    text = README.read_text()
    quickstart = text.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    activation = quickstart.find(". .venv/bin/activate")
    first_bare = re.search(r"^\$ bncli ", text, flags=re.MULTILINE)
    assert activation != -1 and text.find(quickstart) + activation < first_bare.start()


def test_the_activated_venv_gives_a_bare_bncli_in_a_fresh_shell(tmp_path):
    """The Quickstart's activation, in a shell whose PATH has no bncli: `bncli` runs."""
    venv = Path(sys.prefix)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    run = subprocess.run(
        ["bash", "-c", f"cd {tmp_path} && ln -s {venv} .venv && . .venv/bin/activate && bncli --version"],
        capture_output=True,
        env=env,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr


def test_no_install_hint_names_bncli_on_the_package_index():
    """bncli is not on PyPI: `pip install 'bncli[plot]'` fails from a clone."""
    for path in [README, *sorted((ROOT / "bncli").rglob("*.py"))]:
        assert "bncli[plot]" not in path.read_text().replace("\\[", "["), path


def test_a_picture_without_matplotlib_names_an_install_that_works_from_a_clone(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "matplotlib.py").write_text("raise ImportError('blocked for the test')\n")
    env = {"PYTHONPATH": f"{blocker}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    run = run_process("grad", BLOOD, "--jacobian", "-c", "RBC", "-o", tmp_path / "j.png", env=env)
    assert run.returncode == 2
    assert b"pip install matplotlib" in run.stderr and b"'.[plot]'" in run.stderr


# ------------------------------------------------------------------- audit: help, verdict


def test_audit_help_says_cmd_runs_without_a_shell():
    run = run_process("audit", "--help", env={"COLUMNS": "200"})
    text = " ".join(run.stdout.decode().split())
    assert run.returncode == 0 and "without a shell" in text and "env VAR=value" in text


def test_a_variable_assignment_in_cmd_is_answered_with_the_env_form():
    run = run_process("audit", "--cmd", "OMP_NUM_THREADS=1 ./k", "--case", "unit")
    message = run.stderr.decode()
    assert run.returncode == 2 and "'OMP_NUM_THREADS=1' not found" in message
    assert "without a shell" in message and "env VAR=value" in message and len(message.splitlines()) == 1


@pytest.mark.parametrize("where", ["file", "pipe"])
def test_audit_prints_its_verdict_on_stderr_when_stdout_does_not_show_it(where, tmp_path):
    report = tmp_path / "report.json"
    args = ["audit", MISSING_MEAN_TERM, "--dtype", "float64", "--case", "unit"]
    run = run_process(*args, *(["-o", report] if where == "file" else []))
    assert run.returncode == 1
    assert run.stderr.decode().splitlines()[-1] == "bncli: WRONG: 1 case run (1 WRONG)"


def test_audit_table_in_a_pipe_shows_the_verdict_once():
    run = run_process("audit", CORRECT, "--dtype", "float64", "--case", "unit", "-f", "table")
    assert run.returncode == 0
    assert "PASS: 1 case run (1 PASS)" in run.stdout.decode() and b"PASS" not in run.stderr


# -------------------------------------------------------------------------- start-up


def test_import_bncli_loads_neither_numpy_nor_the_commands():
    code = "import sys, bncli; print(sorted(m for m in ('numpy', 'bncli.commands', 'rich') if m in sys.modules))"
    run = run_python(code, cwd=Path("/"))
    assert run.returncode == 0 and run.stdout.decode().strip() == "[]", run.stderr
