"""What a new user trips over in inputs and options (issue 21), each as bncli run as a real process."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import run_process

from bncli.io import read

SAMPLE = read.sample_path()
SAMPLE_DY = read.sample_path(read.SAMPLE_DY_NAME)


def _text(run: subprocess.CompletedProcess) -> tuple[str, str]:
    return run.stdout.decode(), run.stderr.decode()


def _csv_matrix(text: str) -> np.ndarray:
    lines = text.strip().splitlines()[1:]
    return np.array([[float(v) for v in line.split(",")] for line in lines])


# ------------------------------------------------ 17: --cmd csv outputs through bncli's reader

_BATCHNORM_PROGRAM = """
import json, sys
from pathlib import Path
import numpy as np

folder = Path(sys.argv[1])
params = json.loads((folder / "params.json").read_text())
x, dy = np.load(folder / "x.npy"), np.load(folder / "dy.npy")
w, b, eps = np.array(params["weight"]), np.array(params["bias"]), params["eps"]
m, v = x.mean(0), x.var(0)
s = (x - m) / np.sqrt(v + eps)
k = x.shape[0]
outputs = {
    "y": w * s + b,
    "dx": w / np.sqrt(v + eps) / k * (k * dy - dy.sum(0) - s * (dy * s).sum(0)),
    "dw": (dy * s).sum(0)[None, :],
    "db": dy.sum(0)[None, :],
}
STYLE = __STYLE__
for name, values in outputs.items():
    rows = [",".join(STYLE.format(repr(float(v))) for v in row) for row in values.tolist()]
    (folder / f"{name}.csv").write_bytes(__PREFIX__ + ("\\n".join(rows) + "\\n").encode())
"""


@pytest.mark.parametrize(
    ("style", "prefix"),
    [("{}", b"\xef\xbb\xbf"), ('"{}"', b""), ('"{}"', b"\xef\xbb\xbf")],
    ids=["bom", "quoted", "bom-and-quoted"],
)
def test_cmd_csv_outputs_with_a_bom_or_quoted_numbers_are_read_as_bncli_reads_them(tmp_path, style, prefix):
    program = tmp_path / "bn.py"
    program.write_text(_BATCHNORM_PROGRAM.replace("__STYLE__", repr(style)).replace("__PREFIX__", repr(prefix)))
    run = run_process(
        "audit", "--cmd", f"{sys.executable} {program}", "--case", "unit", "--dtype", "float64", "-f", "json"
    )
    stdout, stderr = _text(run)
    assert run.returncode == 0, stderr
    case = json.loads(stdout)["cases"][0]
    assert case["error"] is None and case["verdict"] == "PASS"


def test_cmd_empty_csv_output_is_an_error_without_numpy_warning(tmp_path):
    program = tmp_path / "empty.py"
    program.write_text("import sys, pathlib\npathlib.Path(sys.argv[1], 'y.csv').write_text('')\n")
    run = run_process(
        "audit", "--cmd", f"{sys.executable} {program}", "--case", "unit", "--dtype", "float64", "-f", "json"
    )
    stdout, stderr = _text(run)
    assert "UserWarning" not in stderr and "Warning" not in stderr
    case = json.loads(stdout)["cases"][0]
    assert case["verdict"] == "ERROR" and "y.csv" in case["error"] and "no data" in case["error"]


def test_cmd_csv_outputs_may_hold_nan_and_infinity_as_results(tmp_path):
    program = tmp_path / "nan.py"
    program.write_text(
        "import sys, pathlib, numpy as np\n"
        "x = np.load(pathlib.Path(sys.argv[1], 'x.npy'))\n"
        "rows = ['nan,' + ','.join(['inf'] * (x.shape[1] - 1))] * x.shape[0]\n"
        "pathlib.Path(sys.argv[1], 'y.csv').write_text('\\n'.join(rows) + '\\n')\n"
    )
    run = run_process(
        "audit", "--cmd", f"{sys.executable} {program}", "--case", "unit", "--dtype", "float64", "-f", "json"
    )
    case = json.loads(_text(run)[0])["cases"][0]
    assert case["error"] is None and case["quantities"]["y"]["verdict"] != "PASS"


# ------------------------------------------------------- 22: a single-value option given twice


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("forward", SAMPLE, "--eps", "1", "--eps", "2"), "--eps"),
        (("forward", SAMPLE, "--eps=1", "--eps", "2"), "--eps"),
        (("forward", SAMPLE, "-o", "a.csv", "-o", "b.json"), "--output"),
        (("forward", SAMPLE, "-o", "a.csv", "--output=b.json"), "--output"),
        (("grad", SAMPLE, "--only", "dw", "--only", "db"), "--only"),
        (("grad", SAMPLE, "-p3", "-p", "4"), "--precision"),
        (("grad", SAMPLE, "--header", "--no-header"), "--header"),
        (("explain", SAMPLE, "-c", "Hb", "--column", "0"), "--column"),
        (("audit", "bncli", "--timeout", "1", "--timeout", "2"), "--timeout"),
    ],
)
def test_a_single_value_option_given_twice_is_refused_naming_it(tmp_path, args, named):
    run = subprocess.run(
        [sys.executable, "-m", "bncli", *map(str, args)], capture_output=True, timeout=120, cwd=tmp_path
    )
    stdout, stderr = _text(run)
    assert run.returncode == 2 and not stdout
    assert named in stderr and "2 times" in stderr and stderr.count("\n") == 1
    assert not list(tmp_path.iterdir())


def test_repeatable_options_and_a_value_that_looks_like_an_option_stay_allowed():
    run = run_process("grad", SAMPLE, "--jacobian", "-c", "Hb", "-c", "0", "-f", "json")
    assert run.returncode == 0, run.stderr
    run = run_process("forward", SAMPLE, "--weight", "2", "--", "--eps")
    assert run.returncode == 2 and b"2 times" not in run.stderr


# ------------------------------------------------------- 26: --dy and --against matched by name


def _data_and_reordered(tmp_path, what: np.ndarray):
    data = tmp_path / "data.csv"
    data.write_text("a,b,c\n1,10,-3\n2,30,5\n4,20,0\n7,0,1\n")
    given = tmp_path / "given.csv"
    given.write_text("c,a,b\n" + "".join(f"{r[2]!r},{r[0]!r},{r[1]!r}\n" for r in what.tolist()))
    plain = tmp_path / "plain.csv"
    plain.write_text("a,b,c\n" + "".join(",".join(map(repr, r)) + "\n" for r in what.tolist()))
    return data, given, plain


def test_dy_with_its_columns_reordered_is_matched_by_name(tmp_path):
    dy = np.random.default_rng(3).standard_normal((4, 3))
    data, reordered, plain = _data_and_reordered(tmp_path, dy)
    by_name = run_process("grad", data, "--dy", reordered, "-f", "json")
    by_position = run_process("grad", data, "--dy", plain, "-f", "json")
    assert by_name.returncode == by_position.returncode == 0, by_name.stderr
    assert json.loads(by_name.stdout) == json.loads(by_position.stdout)


def test_against_with_its_columns_reordered_is_matched_by_name(tmp_path):
    data = tmp_path / "data.csv"
    data.write_text("a,b,c\n1,10,-3\n2,30,5\n4,20,0\n7,0,1\n")
    dx = run_process("grad", data, "--only", "dx", "-f", "csv", "-p", "17")
    dx_values = _csv_matrix(dx.stdout.decode())
    _, reordered, _ = _data_and_reordered(tmp_path, dx_values)
    run = run_process("grad", data, "--against", reordered, "-f", "json")
    assert run.returncode == 0, run.stderr


def test_dy_whose_header_names_columns_the_data_lacks_is_refused_naming_them(tmp_path):
    data = tmp_path / "data.csv"
    data.write_text("a,b,c\n1,10,-3\n2,30,5\n4,20,0\n")
    dy = tmp_path / "dy.csv"
    dy.write_text("a,B,x\n1,2,3\n4,5,6\n7,8,9\n")
    run = run_process("grad", data, "--dy", dy)
    stderr = run.stderr.decode()
    assert run.returncode == 2 and "'B'" in stderr and "'x'" in stderr and "--dy" in stderr
    run = run_process("explain", data, "--dy", dy, "-f", "json")
    assert run.returncode == 2 and "'B'" in run.stderr.decode()


# ----------------------------------------------------------- 27: a pandas to_csv() index column

_PANDAS = ",a,b\n0,1.5,10\n1,2.5,30\n2,-1,20\n3,4,0\n"


def test_a_pandas_index_column_is_named_on_stderr_and_kept_as_given(tmp_path):
    data = tmp_path / "frame.csv"
    data.write_text(_PANDAS)
    run = run_process("forward", data, "-f", "json")
    assert run.returncode == 0
    assert json.loads(run.stdout)["columns"] == ["", "a", "b"]
    stderr = run.stderr.decode()
    assert "index" in stderr and "--index-column drop" in stderr


def test_index_column_drop_drops_it_from_the_data_and_the_dy(tmp_path):
    data = tmp_path / "frame.csv"
    data.write_text(_PANDAS)
    dy = tmp_path / "dy.csv"
    dy.write_text(",a,b\n0,1,-1\n1,2,0.5\n2,-3,2\n3,0.25,1\n")
    dropped = run_process("grad", data, "--dy", dy, "--index-column", "drop", "-f", "json")
    assert dropped.returncode == 0, dropped.stderr
    assert json.loads(dropped.stdout)["columns"] == ["a", "b"]
    plain_data, plain_dy = tmp_path / "plain.csv", tmp_path / "plain_dy.csv"
    plain_data.write_text("a,b\n1.5,10\n2.5,30\n-1,20\n4,0\n")
    plain_dy.write_text("a,b\n1,-1\n2,0.5\n-3,2\n0.25,1\n")
    plain = run_process("grad", plain_data, "--dy", plain_dy, "-f", "json")
    assert json.loads(dropped.stdout)["dx"] == json.loads(plain.stdout)["dx"]
    assert b"index" not in dropped.stderr


def test_an_empty_first_name_over_other_numbers_is_no_index_column(tmp_path):
    data = tmp_path / "frame.csv"
    data.write_text(",a\n5,1\n1,2\n2,3\n")
    run = run_process("forward", data, "--index-column", "drop", "-f", "json")
    assert run.returncode == 0 and json.loads(run.stdout)["columns"] == ["", "a"]
    assert b"index" not in run.stderr


# -------------------------------------------------------------- 29: explain's dy and its column


def test_explain_without_dy_says_where_dy_came_from_and_which_column_it_chose():
    run = run_process("explain", SAMPLE, "-f", "markdown")
    stdout, stderr = _text(run)
    assert run.returncode == 0
    assert "given" not in stdout and "N(0, 1)" in stdout
    assert "'RBC'" in stderr and "-c" in stderr
    given = run_process("explain", SAMPLE, "-c", "Hb", "--dy", SAMPLE_DY, "-f", "markdown")
    stdout, stderr = _text(given)
    assert "given" in stdout and "N(0, 1)" not in stdout and "'Hb'" not in stderr


# --------------------------------------------------------------------- 30: std = √(var + ε)


def test_stats_table_labels_std_as_the_square_root_of_var_plus_eps():
    run = run_process("forward", SAMPLE, "--stats", "-f", "table")
    assert "√(var + ε)" in run.stdout.decode()
    run = run_process("forward", SAMPLE, "--stats", "-f", "json")
    assert "std" in json.loads(run.stdout)


def test_a_column_whose_variance_eps_swamps_is_named_on_stderr(tmp_path):
    data = tmp_path / "data.csv"
    data.write_text("tiny,const,ok\n1e-4,3,1\n-1e-4,3,2\n2e-4,3,5\n")
    run = run_process("forward", data)
    stderr = run.stderr.decode()
    assert run.returncode == 0
    assert "'tiny'" in stderr and "'const'" in stderr and "'ok'" not in stderr
    assert "constant" in stderr
    assert run_process("forward", data, "--eps", "1e-12").stderr.decode().count("'tiny'") == 0


# ----------------------------------------------------------- 33: unknown keys in --against JSON


def test_unknown_key_in_against_json_is_refused_naming_it_and_the_known_ones(tmp_path):
    against = tmp_path / "mine.json"
    against.write_text(json.dumps({"dW": [0, 0, 0, 0], "db": [0, 0, 0, 0]}))
    run = run_process("grad", SAMPLE, "--dy", SAMPLE_DY, "--against", against)
    stderr = run.stderr.decode()
    assert run.returncode == 2 and "'dW'" in stderr and "dx" in stderr and "dw" in stderr


# ------------------------------------------------------------ 36: an open but silent stdin


def test_a_silent_stdin_pipe_is_named_after_two_seconds_and_still_read():
    process = subprocess.Popen(
        [sys.executable, "-m", "bncli", "forward", "-f", "csv"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    time.sleep(3.5)
    stdout, stderr = process.communicate(SAMPLE.read_bytes(), timeout=60)
    assert process.returncode == 0
    assert b"waiting for data on stdin" in stderr
    assert len(stdout.decode().strip().splitlines()) == 11


def test_a_prompt_stdin_pipe_gets_no_waiting_note():
    run = run_process("forward", input=SAMPLE.read_bytes())
    assert run.returncode == 0 and b"waiting" not in run.stderr


# --------------------------------------------------- 38: rows from 0 everywhere; did you mean


def test_explain_numbers_rows_from_zero_as_grad_and_audit_do():
    run = run_process("explain", SAMPLE, "-c", "Hb", "-f", "markdown")
    lines = run.stdout.decode().splitlines()
    first_rows = [line for line in lines if line.startswith("| 0 |")]
    assert first_rows and not any(line.startswith(f"| {10} |") for line in lines)
    assert "i = 0 … k−1" in run.stdout.decode() or "0 … 9" in run.stdout.decode()


@pytest.mark.parametrize("command", [("explain",), ("grad", "--jacobian")])
def test_a_column_name_in_the_wrong_case_is_suggested(tmp_path, command):
    data = tmp_path / "data.csv"
    data.write_text("age,height\n30,1.8\n40,1.7\n50,1.6\n")
    run = run_process(*command, data, "-c", "Age", "-f", "json")
    assert run.returncode == 2 and "did you mean 'age'?" in run.stderr.decode()


# ----------------------------------------------- 18: what overflows names every possible cause


def test_y_beyond_float64_through_weight_and_bias_names_them_not_only_the_data(tmp_path):
    data = tmp_path / "small.csv"
    data.write_text("a\n1\n2\n3\n")
    run = run_process("forward", data, "-w", "1e308", "-b", "1e308")
    stderr = run.stderr.decode()
    assert run.returncode == 2 and "--weight" in stderr and "--bias" in stderr and "Warning" not in stderr
    finite = run_process("forward", data, "-w", "1e308")
    assert finite.returncode == 0 and not finite.stderr


def test_eps_0_swamps_nothing_even_where_the_variance_underflows(tmp_path):
    data = tmp_path / "subnormal.csv"
    data.write_text("a\n1e-320\n3e-320\n2e-320\n")
    run = run_process("forward", data, "--eps", "0")
    assert run.returncode == 0 and run.stderr == b""
