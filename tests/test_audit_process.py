"""bncli audit as a user runs it: real processes, exit codes, files; targets that fail every way."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from conftest import EXAMPLES, ROOT, audit_process, no_traceback, run_process

from bncli.io import read

SAMPLE = read.sample_path()
SAMPLE_DY = read.sample_path(read.SAMPLE_DY_NAME)


def test_the_self_test_passes_everything_in_both_dtypes():
    run = audit_process("bncli", "--extreme", "-f", "json")
    no_traceback(run)
    report = json.loads(run.stdout)
    assert run.returncode == 0 and report["verdict"] == "PASS"
    assert {(c["name"], c["dtype"]) for c in report["cases"]} >= {("unit", "float32"), ("extreme_tiny", "float64")}
    assert all(c["verdict"] == "PASS" for c in report["cases"])


def test_a_textbook_numpy_implementation_passes():
    run = audit_process(f"{EXAMPLES / 'batchnorm_numpy.py'}:batchnorm")
    no_traceback(run)
    assert run.returncode == 0, run.stdout.decode()[-2000:]
    assert b"PASS" in run.stdout


def test_one_pass_variance_is_inaccurate_not_wrong_and_named():
    run = audit_process(f"{EXAMPLES / 'one_pass_variance.py'}:batchnorm", "-f", "json")
    report = json.loads(run.stdout)
    assert run.returncode == 1 and report["verdict"] == "INACCURATE"
    unit = [c for c in report["cases"] if c["name"] == "unit"]
    offset = [c for c in report["cases"] if c["name"] == "offset"]
    assert all(c["verdict"] == "PASS" for c in unit) and all(c["verdict"] == "INACCURATE" for c in offset)
    assert any("one-pass variance" in line for line in report["diagnosis"])


@pytest.mark.parametrize(
    "example, named",
    [("unbiased_variance.py", "unbiased variance"), ("missing_mean_term.py", "mean term")],
)
def test_formula_mistakes_are_wrong_and_named(example, named):
    run = audit_process(f"{EXAMPLES / example}:batchnorm", "--dtype", "float64")
    text = run.stdout.decode()
    assert run.returncode == 1 and "WRONG" in text and named in text, text[-3000:]


def test_targets_that_fail_are_errors_and_the_rest_goes_on(tmp_path):
    target = tmp_path / "flaky.py"
    target.write_text(
        "import numpy as np, time\n"
        "def bn(x, w, b, eps, dy):\n"
        "    if x.shape[0] == 2:\n"
        "        raise RuntimeError('two rows are not supported')\n"
        "    if x.shape[0] > 1000:\n"
        "        time.sleep(30)\n"
        "    if x.shape[0] == 12:\n"
        "        return {'y': np.zeros((3, 3))}\n"
        "    m = x.mean(0); v = ((x - m) ** 2).mean(0)\n"
        "    return {'y': w * (x - m) / np.sqrt(v + eps) + b}\n"
    )
    run = audit_process(f"{target}:bn", "--dtype", "float64", "--timeout", "2", "-f", "json")
    no_traceback(run)
    report = json.loads(run.stdout)
    by_name = {c["name"]: c for c in report["cases"]}
    assert run.returncode == 1 and report["verdict"] == "ERROR"
    assert by_name["two_rows"]["verdict"] == "ERROR" and "two rows are not supported" in by_name["two_rows"]["error"]
    assert by_name["large_batch"]["verdict"] == "ERROR" and "2" in by_name["large_batch"]["error"]
    assert by_name["constant"]["verdict"] == "ERROR" and "shape" in by_name["constant"]["error"]
    assert by_name["unit"]["quantities"]["y"]["verdict"] == "PASS"
    assert by_name["unit"]["quantities"]["dx"]["verdict"] == "MISSING"


@pytest.mark.parametrize(
    "target, message",
    [
        ("no/such/file.py:f", "no/such/file.py"),
        ("examples/batchnorm_numpy.py:nothing_here", "nothing_here"),
        ("no_such_module_anywhere:f", "no_such_module_anywhere"),
        ("justaword", "justaword"),
    ],
)
def test_a_target_that_cannot_be_found_is_an_input_error(target, message):
    run = audit_process(target, cwd=ROOT)
    lines = run.stderr.decode().strip().splitlines()
    assert run.returncode == 2 and run.stdout == b"" and len(lines) == 1 and message in lines[0], lines


def test_usage_errors_of_audit():
    assert audit_process("bncli", "--case", "nope").returncode == 2
    assert audit_process().returncode == 2
    assert audit_process("bncli", "--cmd", "true").returncode == 2
    listed = audit_process("--list-cases")
    assert listed.returncode == 0 and b"unit" in listed.stdout and b"--extreme" in listed.stdout


@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler")
def test_the_c_example_passes_through_cmd(tmp_path):
    program = tmp_path / "batchnorm"
    subprocess.run(["cc", "-O2", "-o", program, EXAMPLES / "batchnorm.c", "-lm"], check=True)
    run = audit_process("--cmd", program, "-f", "json", "-o", tmp_path / "report.json")
    no_traceback(run)
    report = json.loads((tmp_path / "report.json").read_text())
    assert run.returncode == 0 and report["verdict"] == "PASS" and run.stdout == b""


def test_a_command_that_fails_is_an_error_with_its_last_stderr_line(tmp_path):
    script = tmp_path / "fails.sh"
    script.write_text("#!/bin/sh\necho 'starting' >&2\necho 'cannot open x.csv: no luck' >&2\nexit 3\n")
    script.chmod(0o755)
    run = audit_process("--cmd", script, "--case", "unit", "--dtype", "float64", "-f", "json")
    case = json.loads(run.stdout)["cases"][0]
    assert run.returncode == 1 and case["verdict"] == "ERROR" and "cannot open x.csv: no luck" in case["error"]


def test_torch_is_audited_or_refused_with_what_to_install():
    run = audit_process("torch", "--dtype", "float64", "--layout", "nchw")
    no_traceback(run)
    try:
        import torch  # noqa: F401
    except ImportError:
        assert run.returncode == 2 and b"torch" in run.stderr
    else:
        assert run.returncode == 0, run.stdout.decode()[-2000:]


HOSTILE = """
import ctypes, os, re, sys
import numpy as np

def _textbook(x, w, b, eps, dy):
    m = x.mean(0); d = x - m; v = (d * d).mean(0); s = d / np.sqrt(v + eps)
    return {"y": w * s + b}

def exits(x, w, b, eps, dy):
    if x.shape[0] == 2:
        os._exit(0)
    return _textbook(x, w, b, eps, dy)

def crashes(x, w, b, eps, dy):
    if x.shape[0] == 2:
        ctypes.string_at(0)
    return _textbook(x, w, b, eps, dy)

def prints(x, w, b, eps, dy):
    print("debugging output")
    os.write(1, b"raw output\\n")
    return _textbook(x, w, b, eps, dy)

def holds_the_interpreter(x, w, b, eps, dy):
    if x.shape[0] == 2:
        re.match(r"(a+)+$", "a" * 64 + "b")
    return _textbook(x, w, b, eps, dy)

def in_place(x, w, b, eps, dy):
    x -= x.mean(0)
    return _textbook(x, w, b, eps, dy)
"""


@pytest.fixture
def hostile(tmp_path):
    path = tmp_path / "hostile.py"
    path.write_text(HOSTILE)
    return path


@pytest.mark.parametrize(
    "function, message",
    [
        ("exits", "ended the process (exit status 0)"),
        ("crashes", "killed by signal"),
        ("holds_the_interpreter", "timed out"),
    ],
)
def test_a_target_that_exits_crashes_or_hangs_is_an_error_for_that_case(hostile, function, message):
    cases = ("--case", "unit", "--case", "two_rows", "--case", "blood")
    run = audit_process(f"{hostile}:{function}", "--dtype", "float64", *cases, "--timeout", "3", "-f", "json")
    no_traceback(run)
    cases = {c["name"]: c for c in json.loads(run.stdout)["cases"]}
    assert run.returncode == 1 and cases["two_rows"]["verdict"] == "ERROR" and message in cases["two_rows"]["error"]
    assert cases["blood"]["quantities"]["y"]["verdict"] == "PASS"  # a new worker took the next case


def test_what_a_target_prints_never_reaches_stdout(hostile):
    run = audit_process(f"{hostile}:prints", "--dtype", "float64", "--case", "unit", "--quantities", "y", "-f", "json")
    assert json.loads(run.stdout)["verdict"] == "PASS"
    assert b"debugging output" in run.stderr and b"raw output" in run.stderr


def test_a_target_that_changes_its_inputs_is_named(hostile):
    report = json.loads(
        audit_process(f"{hostile}:in_place", "--dtype", "float64", "--case", "unit", "-f", "json").stdout
    )
    assert any("changed its input x in place" in line for line in report["diagnosis"])


def test_ctrl_c_during_cmd_ends_the_program_too(tmp_path):
    import signal
    import time

    marker = tmp_path / "alive"
    script = tmp_path / "forever.sh"
    script.write_text(f"#!/bin/sh\nwhile true; do touch '{marker}'; sleep 0.1; done\n")
    script.chmod(0o755)
    process = subprocess.Popen([sys.executable, "-m", "bncli", "audit", "--cmd", str(script), "--case", "unit"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.monotonic() + 30
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=30)
    assert process.returncode == 130
    time.sleep(0.5)
    marker.unlink()
    time.sleep(0.5)
    assert not marker.exists(), "the --cmd program is still running"


def test_non_python_files_and_unwritable_formats_are_usage_errors(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("this is not python\n")
    run = audit_process(f"{text}:f")
    assert run.returncode == 2 and len(run.stderr.decode().strip().splitlines()) == 1
    refused = audit_process("bncli", "--case", "unit", "-o", tmp_path / "r.npy")
    assert refused.returncode == 2 and b".npy" in refused.stderr and not (tmp_path / "r.npy").exists()


BROKEN = """
import numpy as np

def _good(x, w, b, eps, dy):
    m = x.mean(0); d = x - m; v = (d * d).mean(0); s = d / np.sqrt(v + eps)
    k = x.shape[0]
    db = dy.sum(0); dw = (dy * s).sum(0)
    return w * s + b, (w / np.sqrt(v + eps)) * (dy - db / k - s * dw / k), dw, db

def nan_dx(x, w, b, eps, dy):
    y, dx, dw, db = _good(x, w, b, eps, dy)
    return y, dx * np.nan, dw, db

def inf_y(x, w, b, eps, dy):
    y, dx, dw, db = _good(x, w, b, eps, dy)
    return y * np.inf, dx, dw, db

def long_message(x, w, b, eps, dy):
    raise ValueError("first line\\n" + "x" * 100_000)

notfunc = 5
"""


@pytest.fixture
def broken(tmp_path):
    path = tmp_path / "broken.py"
    path.write_text(BROKEN)
    return path


def test_self_consistency_never_agrees_with_nan_or_inf(broken):
    for function, expected in (("nan_dx", "dx disagrees"), ("inf_y", "not finite")):
        run = audit_process(f"{broken}:{function}", "--case", "unit", "--dtype", "float64", "-f", "table")
        no_traceback(run)
        line = next(line for line in run.stdout.decode().splitlines() if "self-consistency" in line)
        assert expected in line and "the backward agrees" not in line, line


def test_exception_messages_are_their_first_line_and_short(broken):
    report = json.loads(
        audit_process(f"{broken}:long_message", "--case", "unit", "--dtype", "float64", "-f", "json").stdout
    )
    error = report["cases"][0]["error"]
    assert "first line" in error and len(error) < 300
    message = audit_process(f"{broken}:notfunc").stderr.decode()
    assert "is not a function (it is of type int)" in message


def test_cmd_outputs_nan_csv_like_npy_and_shapes_strictly(tmp_path):
    script = tmp_path / "out.py"
    script.write_text(
        "import os, sys, numpy as np\n"
        "d = sys.argv[1]\n"
        "x = np.load(d + '/x.npy')\n"
        "nan = os.path.basename(sys.argv[0]) == 'out_nan.py'\n"
        "if nan: np.savetxt(d + '/y.csv', np.full(x.shape, np.nan), delimiter=',')\n"
        "else: np.savetxt(d + '/y.csv', x.reshape(-1, 1), delimiter=',')\n"
    )
    nan_script = tmp_path / "out_nan.py"
    nan_script.write_text(script.read_text())
    nan_case = json.loads(
        audit_process("--cmd", f"{sys.executable} {nan_script}", "--case", "unit", "-f", "json").stdout
    )
    assert nan_case["cases"][0]["quantities"]["y"]["verdict"] in ("WRONG", "INACCURATE")
    reshaped = json.loads(audit_process("--cmd", f"{sys.executable} {script}", "--case", "unit", "-f", "json").stdout)
    assert reshaped["cases"][0]["verdict"] == "ERROR" and "shape" in reshaped["cases"][0]["error"]


def test_cmd_background_processes_end_with_each_call(tmp_path):
    import time

    marker = tmp_path / "alive"
    script = tmp_path / "bg.sh"
    script.write_text(f"#!/bin/sh\n(while true; do touch '{marker}'; sleep 0.1; done &)\nexit 0\n")
    script.chmod(0o755)
    run = audit_process("--cmd", script, "--case", "unit", "--dtype", "float64", "--timeout", "20")
    assert run.returncode == 1  # nothing written: MISSING everything, an ERROR case
    time.sleep(0.5)
    marker.unlink(missing_ok=True)
    time.sleep(0.5)
    assert not marker.exists(), "a background process of the program is still running"


def test_values_below_float32_are_refused_not_flushed():
    run = run_process("forward", "--dtype", "float32", input=b"a\n1e-50\n2e-50\n4e-50\n")
    assert run.returncode == 2 and b"is 0 in float32" in run.stderr


def test_list_cases_as_json():
    listing = json.loads(audit_process("--list-cases", "-f", "json").stdout)
    assert {"unit", "extreme_tiny"} <= {case["name"] for case in listing["cases"]}


def test_list_cases_goes_to_the_output_file_in_its_format(tmp_path):
    listing = tmp_path / "lc.json"
    run = audit_process("--list-cases", "-o", listing)
    assert run.returncode == 0 and run.stdout == b"", run.stderr.decode()
    assert {"unit", "extreme_tiny"} <= {case["name"] for case in json.loads(listing.read_text())["cases"]}
    text = tmp_path / "lc.txt"
    assert audit_process("--list-cases", "-o", text).returncode == 0
    assert text.read_text().startswith("unit ") and "(--extreme)" in text.read_text()


def test_list_cases_as_json_into_any_file(tmp_path):
    listing = tmp_path / "cases.out"
    run = audit_process("--list-cases", "-f", "json", "-o", listing)
    assert run.returncode == 0 and run.stdout == b""
    cases = json.loads(listing.read_text())["cases"]
    assert {"name", "description", "extreme"} == set(cases[0]) and cases[-1]["extreme"] is True


def test_list_cases_refuses_plot_with_the_reason():
    run = audit_process("--list-cases", "--plot")
    lines = run.stderr.decode().strip().splitlines()
    assert run.returncode == 2 and run.stdout == b"" and len(lines) == 1 and "--plot" in lines[0], lines


@pytest.mark.parametrize(
    "args, message",
    [
        (["--eps", "0", "--case", "constant"], "--eps 0: case 'constant' has a constant column"),
        (["--eps", "1e300", "--case", "unit"], "--eps 1e+300: does not fit float32"),
    ],
)
def test_an_eps_that_leaves_a_case_undefined_or_does_not_fit_its_dtype_is_refused(args, message):
    """Found by a hostile run: --eps 0 on the constant case was an internal error (exit 70), and 1e300
    made bncli's own float32 self-audit WRONG."""
    run = audit_process("bncli", *args)
    assert run.returncode == 2 and run.stdout == b"", run
    assert run.stderr.decode().count("\n") == 1 and message in run.stderr.decode()
