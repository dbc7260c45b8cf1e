"""examples/bncli_audit.h: C and C++ programs built by the system compiler, audited through --cmd as processes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import bncli

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
STRICT = ["-O2", "-Wall", "-Wextra", "-pedantic", "-Werror"]
COMPILERS = {  # the header's promise: C99, and the same file as C++
    "c": ["cc", "-std=c99", *STRICT],
    "c++": ["c++", "-x", "c++", "-std=c++11", *STRICT],
}

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")

UNBIASED_VARIANCE = r"""
#include <math.h>
#include "bncli_audit.h"

int main(int argc, char **argv) {  /* double only; divides the variance by k - 1: WRONG in training mode */
    bncli_case c = bncli_open(argc, argv);
    double *x = bncli_read_double(&c, "x"), *dy = bncli_read_double(&c, "dy");
    double *y = bncli_new_double(c.size), *dx = bncli_new_double(c.size);
    double *dw = bncli_new_double(c.features), *db = bncli_new_double(c.features);
    for (long j = 0; j < c.features; j++) {
        double mean = 0, var = 0, k = (double)c.count;
        for (long i = 0; i < c.count; i++) mean += x[bncli_index(&c, i, j)] / k;
        for (long i = 0; i < c.count; i++) var += pow(x[bncli_index(&c, i, j)] - mean, 2) / (k - 1);
        double std = sqrt(var + c.eps);
        dw[j] = db[j] = 0;
        for (long i = 0; i < c.count; i++) {
            long e = bncli_index(&c, i, j);
            db[j] += dy[e];
            dw[j] += dy[e] * (x[e] - mean) / std;
        }
        for (long i = 0; i < c.count; i++) {
            long e = bncli_index(&c, i, j);
            double s = (x[e] - mean) / std;
            y[e] = c.weight[j] * s + c.bias[j];
            dx[e] = c.weight[j] / std * (dy[e] - db[j] / k - s * dw[j] / k);
        }
    }
    bncli_write_double(&c, "y", y);
    bncli_write_double(&c, "dx", dx);
    bncli_write_double(&c, "dw", dw);
    bncli_write_double(&c, "db", db);
    return 0;
}
"""


def compiled(source: Path, folder: Path, language: str = "c") -> Path:
    command = COMPILERS[language]
    if shutil.which(command[0]) is None:
        pytest.skip(f"no {command[0]}")
    binary = folder / f"{source.stem}-{language}"
    subprocess.run([*command, f"-I{EXAMPLES}", "-o", str(binary), str(source), "-lm"], check=True)
    return binary


def audit_process(binary: Path, *options: str) -> tuple[int, dict]:
    """``bncli audit --cmd BINARY`` as a user runs it: its exit status and its json report."""
    done = subprocess.run(
        [sys.executable, "-m", "bncli", "audit", "--cmd", str(binary), "-f", "json", *options],
        capture_output=True,
        text=True,
        timeout=300,
    )
    return done.returncode, json.loads(done.stdout)


def verdicts(report: dict) -> dict[tuple[str, str], str]:
    return {(case["name"], case["dtype"]): case["verdict"] for case in report["cases"]}


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    folder = tmp_path_factory.mktemp("c_header")
    return lambda source, language="c": compiled(source, folder, language)


@pytest.mark.parametrize("language", COMPILERS)
@pytest.mark.parametrize("layout", ["nc", "nchw", "nhwc"])
def test_the_c_example_passes_every_default_case_in_every_layout(build, language, layout):
    status, report = audit_process(build(EXAMPLES / "batchnorm.c", language), "--layout", layout)
    assert (status, report["verdict"]) == (0, "PASS"), [c for c in report["cases"] if c["verdict"] != "PASS"]
    assert len(report["cases"]) == 20


def test_a_float_only_kernel_passes_in_float32_and_not_in_float64(build):
    status, report = audit_process(build(EXAMPLES / "batchnorm_float.c"))
    assert status == 1
    by_dtype = {dtype: {v for (_, d), v in verdicts(report).items() if d == dtype} for dtype in ("float32", "float64")}
    assert by_dtype["float32"] == {"PASS"}
    assert "PASS" not in by_dtype["float64"]  # float's rounding, 1e7 × float64's budget


def test_an_unbiased_variance_in_c_is_wrong_and_named_as_in_numpy(build, tmp_path):
    source = tmp_path / "unbiased.c"
    source.write_text(UNBIASED_VARIANCE)
    status, report = audit_process(build(source), "--dtype", "float64")
    assert (status, report["verdict"]) == (1, "WRONG")
    assert verdicts(report)[("unit", "float64")] == "WRONG"
    sys.path.insert(0, str(EXAMPLES))
    import unbiased_variance

    native = bncli.audit(unbiased_variance.batchnorm, dtypes="float64")
    assert verdicts(report) == {(case.name, case.dtype): case.verdict for case in native.cases}
    assert report["diagnosis"] == native.diagnosis
    assert any("unbiased variance" in line for line in report["diagnosis"])


# ----------------------------------------------------- the header on its own: files as bncli writes them, and not


def case_folder(folder: Path, x: np.ndarray, dy: np.ndarray | None = None, params_text: str | None = None) -> Path:
    folder.mkdir()
    np.save(folder / "x.npy", x)
    np.save(folder / "dy.npy", np.ones_like(x) if dy is None else dy)
    params = {"case": "unit", "dtype": "float64", "layout": "nc", "shape": [3, 2], "eps": 1e-05}
    params |= {"weight": [1.0, 2.0], "bias": [0.0, 0.5]}
    (folder / "params.json").write_text(params_text or json.dumps(params))
    return folder


def run_on(binary: Path, folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(binary), str(folder)], capture_output=True, text=True, timeout=30)


X = np.array([[1.0, -2.0], [3.0, 0.25], [4.5, 7.0]])


def test_params_json_is_read_whatever_its_whitespace_and_number_syntax(build, tmp_path):
    params = (
        '\n{ "case" : "un\\"it",\t"extra": {"nested": [1, "a]"]}, "dtype":"float64", "layout" :"nc",\n'
        '  "shape" : [ 3 , 2 ] , "eps": 1E-5, "weight": [1, 2.0e0], "bias": [ -0.0, 5e-1 ] }\n'
    )
    folder = case_folder(tmp_path / "case", X, params_text=params)
    done = run_on(build(EXAMPLES / "batchnorm.c"), folder)
    assert done.returncode == 0, done.stderr
    std = np.sqrt(X.var(axis=0) + 1e-5)
    np.testing.assert_allclose(np.load(folder / "y.npy"), np.array([1.0, 2.0]) * (X - X.mean(0)) / std + [0, 0.5])
    assert np.load(folder / "dw.npy").shape == (2,)
    assert np.load(folder / "y.npy").dtype == np.float64


@pytest.mark.parametrize(
    "x, message",
    [
        (X.astype(">f8"), "x.npy: dtype '>f8'; this header reads '<f8' and '<f4' only"),
        (X.astype(np.int64), "x.npy: dtype '<i8'; this header reads '<f8' and '<f4' only"),
        (np.asfortranarray(X), "x.npy: Fortran order; this header reads C order only"),
        (X[:2], "x.npy: shape (2, 2), not the shape in params.json"),
    ],
    ids=["big-endian", "integers", "fortran-order", "shape"],
)
def test_arrays_it_cannot_read_are_refused_in_one_line(build, tmp_path, x, message):
    done = run_on(build(EXAMPLES / "batchnorm.c"), case_folder(tmp_path / "case", x))
    assert done.returncode == 1
    assert done.stderr == f"bncli_audit.h: {message}\n"


def test_a_truncated_array_is_refused(build, tmp_path):
    folder = case_folder(tmp_path / "case", X)
    data = (folder / "x.npy").read_bytes()
    (folder / "x.npy").write_bytes(data[:-8])
    done = run_on(build(EXAMPLES / "batchnorm.c"), folder)
    assert (done.returncode, done.stderr) == (1, "bncli_audit.h: x.npy: truncated: 5 of 6 elements\n")


def test_params_without_a_field_a_kernel_needs_are_refused(build, tmp_path):
    params = '{"dtype": "float64", "layout": "nc", "shape": [3, 2], "weight": [1, 2], "bias": [0, 0]}'
    done = run_on(build(EXAMPLES / "batchnorm.c"), case_folder(tmp_path / "case", X, params_text=params))
    assert (done.returncode, done.stderr) == (
        1,
        "bncli_audit.h: params.json: needs dtype, layout, shape, eps, weight and bias\n",
    )
