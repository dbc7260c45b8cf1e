"""Bad input: one line on stderr, exit 2, nothing on stdout, --output untouched, no traceback.

BAD_INPUTS is the table in the README ("Bad input"), row by row.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import numpy as np
import pytest
from conftest import cpu_seconds, needs_proc, run_process, wait_until
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

GOOD = "a,b\n1,2\n3,5\n4,4\n"
CONSTANT = "a,b\n1,7\n2,7\n3,7\n"

# (case, files {name: content}, arguments, what stderr must say)
BAD_INPUTS = [
    ("missing file", {}, ["forward", "nope.csv"], "nope.csv: no such file"),
    ("a directory", {}, ["forward", "."], ".: is a directory"),
    ("empty file", {"e.csv": ""}, ["forward", "e.csv"], "e.csv: no data"),
    ("only comments", {"c.csv": "# nothing\n\n"}, ["forward", "c.csv"], "c.csv: no data"),
    ("header only", {"h.csv": "a,b\n"}, ["forward", "h.csv"], "h.csv: a header line but no data rows"),
    ("binary data", {"b.csv": b"\x89PNG\r\n\x1a\n\x00\x00"}, ["forward", "b.csv"], "b.csv: binary data"),
    (
        "invalid UTF-8",
        {"l.csv": b"a,b\n1,\xe92\n"},
        ["forward", "l.csv"],
        "l.csv: line 2, byte 3: 0xe9 is not valid UTF-8; bncli reads UTF-8",
    ),
    (
        "not a number",
        {"x.csv": "a,b\n1,2\n3,abc\n"},
        ["forward", "x.csv"],
        "x.csv: line 3, column 2 ('b'): 'abc' is not a number",
    ),
    ("empty cell", {"x.csv": "a,b\n1,2\n3,\n"}, ["forward", "x.csv"], "x.csv: line 3, column 2 ('b'): an empty cell"),
    (
        "decimal comma",
        {"x.csv": "a;b\n1,5;2\n3;4\n"},
        ["forward", "x.csv"],
        "'1,5' is not a number (decimal commas are not supported",
    ),
    (
        "ragged rows",
        {"r.csv": "a,b\n1,2\n3,4,5\n"},
        ["forward", "r.csv"],
        "r.csv: line 3: 3 fields, but the header has 2",
    ),
    (
        "NaN",
        {"n.csv": "a,b\n1,2\nnan,4\n"},
        ["forward", "n.csv"],
        "n.csv: line 3, column 1 ('a'): 'nan': NaN and infinity are not allowed",
    ),
    (
        "infinity",
        {"n.csv": "1,2\n3,-inf\n"},
        ["forward", "n.csv"],
        "n.csv: line 2, column 2: '-inf': NaN and infinity are not allowed",
    ),
    (
        "--dy of the wrong shape",
        {"d.csv": GOOD, "dy.csv": "1,2\n3,4\n"},
        ["grad", "d.csv", "--dy", "dy.csv"],
        "--dy dy.csv: shape 2×2, but the data is 3×2",
    ),
    (
        "--dy not numbers",
        {"d.csv": GOOD, "dy.csv": "a,b\n1,2\n3,x\n4,4\n"},
        ["grad", "d.csv", "--dy", "dy.csv"],
        "dy.csv: line 3, column 2 ('b'): 'x' is not a number",
    ),
    (
        "--weight of the wrong length",
        {"d.csv": GOOD},
        ["forward", "d.csv", "-w", "1,2,3"],
        "--weight: 3 values, but the data has 2 columns",
    ),
    ("--bias not a number", {"d.csv": GOOD}, ["forward", "d.csv", "-b", "x"], "--bias 'x': not a number"),
    (
        "--against of the wrong shape",
        {"d.csv": GOOD, "g.csv": "1,2\n"},
        ["grad", "d.csv", "--against", "g.csv"],
        "--against g.csv: shape 1×2, but the data is 3×2",
    ),
    (
        "--against JSON of the wrong shape",
        {"d.csv": GOOD, "g.json": '{"dw": [1, 2, 3]}'},
        ["grad", "d.csv", "--against", "g.json"],
        "'dw' has shape (3,), but it must be (2,)",
    ),
    (
        "--against JSON without gradients",
        {"d.csv": GOOD, "g.json": '{"dz": 1}'},
        ["grad", "d.csv", "--against", "g.json"],
        'any of "dx", "dw", "db"',
    ),
    (
        "--eps negative",
        {"d.csv": GOOD},
        ["forward", "d.csv", "--eps", "-1e-5"],
        "--eps -1e-05: must be a finite number ≥ 0",
    ),
    (
        "--eps 0 with a constant column",
        {"c.csv": CONSTANT},
        ["forward", "c.csv", "--eps", "0"],
        "c.csv: column 'b': zero variance with --eps 0",
    ),
    (
        "unknown --column name",
        {"d.csv": GOOD},
        ["grad", "d.csv", "--jacobian", "-c", "z", "-f", "json"],
        "--column 'z': no such column",
    ),
    (
        "--column index out of range",
        {"d.csv": GOOD},
        ["grad", "d.csv", "--jacobian", "-c", "2", "-f", "json"],
        "--column '2': no such column",
    ),
    (
        "--only jacobian with several columns",
        {"d.csv": GOOD},
        ["grad", "d.csv", "--jacobian", "--only", "jacobian"],
        "--only jacobian prints one column's Jacobian",
    ),
    ("unknown format", {"d.csv": GOOD}, ["forward", "d.csv", "-f", "xml"], "'xml' is not one of"),
    ("unknown option", {"d.csv": GOOD}, ["forward", "d.csv", "--frobnicate"], "No such option: --frobnicate"),
    (
        "values beyond float64 in var",
        {"h.csv": "a\n1e300\n-1e300\n5e299\n"},
        ["forward", "h.csv", "-f", "json"],
        "var of column 'a' overflows float64",
    ),
    (
        "a value beyond float32 with --dtype float32",
        {"f.csv": "a,b\n1,2\n1e39,3\n4,4\n"},
        ["forward", "f.csv", "--dtype", "float32"],
        "f.csv: 1e+39 in column 'a' does not fit float32 (largest 3.4e+38)",
    ),
    (
        "--step lost in rounding",
        {"d.csv": GOOD},
        ["grad", "d.csv", "--check", "--step", "1e-300"],
        "--step 1e-300 is lost in rounding or overflows in column 'a'",
    ),
    ("--seed negative", {"d.csv": GOOD}, ["grad", "d.csv", "--seed", "-1"], "-1 is not in the range x>=0"),
    ("--eval without --running", {"d.csv": GOOD}, ["forward", "d.csv", "--eval"], "--eval needs --running PATH"),
    (
        "--running not JSON",
        {"d.csv": GOOD, "r.json": "{"},
        ["forward", "d.csv", "--eval", "--running", "r.json"],
        "--running r.json: not valid JSON",
    ),
    (
        "--running without var",
        {"d.csv": GOOD, "r.json": '{"columns": ["a", "b"], "mean": [0, 0]}'},
        ["forward", "d.csv", "--eval", "--running", "r.json"],
        "missing key(s) var",
    ),
    (
        "--running with other columns",
        {"d.csv": GOOD, "r.json": '{"columns": ["a", "c"], "mean": [0, 0], "var": [1, 1]}'},
        ["forward", "d.csv", "--eval", "--running", "r.json"],
        "differ from the data's",
    ),
    (
        "--running with a negative variance",
        {"d.csv": GOOD, "r.json": '{"columns": ["a", "b"], "mean": [0, 0], "var": [1, -1]}'},
        ["forward", "d.csv", "--eval", "--running", "r.json"],
        "negative variance for column 'b'",
    ),
    (
        "--save-running from one row",
        {"o.csv": "a\n3\n"},
        ["forward", "o.csv", "--save-running", "r.json"],
        "at least 2 rows",
    ),
    (
        "--jacobian of too many rows",
        {"t.csv": "a\n" + "\n".join(map(str, range(6000)))},
        ["grad", "t.csv", "--jacobian", "-f", "json"],
        "--jacobian: 1 column(s) of 6000×6000 are 3.6e+07 numbers, more than 3.36e+07; at most 5792 rows fit",
    ),
    (
        "--jacobian of too many columns",
        {"t.csv": "\n".join(",".join(["1", str(i)] * 20) for i in range(1000))},
        ["grad", "t.csv", "--jacobian", "-f", "json"],
        "--jacobian: 40 column(s) of 1000×1000 are 4e+07 numbers, more than 3.36e+07; choose at most 33 with --column",
    ),
    (
        "--output into a missing folder",
        {"d.csv": GOOD},
        ["forward", "d.csv", "-o", "no/such/dir/out.csv"],
        "no such directory",
    ),
]


@pytest.mark.parametrize("case, files, args, message", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input(case, files, args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name, content in files.items():
        (tmp_path / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    output = tmp_path / "precious.csv"
    output.write_text("keep me")
    before = sorted(p.name for p in tmp_path.iterdir())
    extra = [] if "-o" in args else ["-o", output.name]
    run = run_process(*args, *extra)
    stderr = run.stderr.decode()
    assert run.returncode == 2, stderr
    assert run.stdout == b""
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1, stderr
    assert stderr.startswith("bncli: error: ") and message in stderr, stderr
    assert output.read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_empty_stdin(bncli):
    run = bncli("forward", input="")
    assert run.code == 2 and run.stdout == "" and "<stdin>: no data" in run.stderr


def test_one_row_is_computed_with_a_warning(bncli):
    run = bncli("grad", "-f", "json", "-b", "0.5", input="a,b\n3,-4\n")
    assert run.code == 0 and "single row" in run.stderr
    assert run.json["dx"] == [[0.0, 0.0]]
    y = bncli("forward", "-b", "0.5", input="a,b\n3,-4\n").matrix()
    np.testing.assert_array_equal(y, [[0.5, 0.5]])


def test_huge_values_give_the_right_answer_where_it_exists(bncli):
    run = bncli("forward", "-f", "csv", input="a\n1e300\n-1e300\n5e299\n")
    assert run.code == 0
    np.testing.assert_allclose(
        run.matrix()[:, 0], [0.9805806756909202, -1.3728129459672882, 0.3922322702763681], rtol=1e-15
    )
    grad = bncli("grad", "--check", "-f", "json", input="a\n1e300\n-1e300\n5e299\n")
    assert grad.code == 0 and grad.json["check"]["passed"]


@needs_proc
def test_ctrl_c_ends_quietly_with_130(tmp_path):
    path = tmp_path / "big.csv"
    np.savetxt(path, np.random.default_rng(0).standard_normal((1500, 20)), delimiter=",")
    process = subprocess.Popen(
        [sys.executable, "-m", "bncli", "grad", str(path), "--sweep", "-f", "json"],  # 13 full checks: ~10 s
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    # Starting takes under 0.5 s of processor time, so after 1 s bncli is inside the checks, however busy the machine.
    wait_until(process, lambda: cpu_seconds(process.pid) >= 1.0, "bncli was inside the checks")
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert b"Traceback" not in stderr and stdout == b""


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=120))
def test_no_garbage_makes_a_traceback(bncli, data):
    run = bncli("grad", "--check", "-f", "json", input=data)
    assert run.code in (0, 2)
    if run.code == 2:
        assert run.stdout == "" and len(run.stderr.strip().splitlines()) == 1
    else:
        assert json.loads(run.stdout)["check"]["passed"]
