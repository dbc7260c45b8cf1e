"""bncli audit through the Python API: verdicts, diagnosis, errors, targets, layouts, references."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from decimal import Decimal, localcontext
from pathlib import Path

import numpy as np
import pytest

import bncli
from bncli import core
from bncli.audit import cases, reference
from bncli.errors import InputError
from bncli.options import DTYPES, LAYOUTS
from bncli.present.audit import consistency_line, renderables, report_json
from bncli.testing import assert_batchnorm

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
sys.path.insert(0, str(EXAMPLES))

import batchnorm_numpy  # noqa: E402
import missing_mean_term  # noqa: E402
import one_pass_variance  # noqa: E402
import unbiased_variance  # noqa: E402


def verdicts(report, quantity=None):
    """{(case, dtype): verdict} of the cases, or of one quantity."""
    return {(r.name, r.dtype): r.verdict if quantity is None else r.quantities[quantity].verdict for r in report.cases}


def textbook(x, weight, bias, eps, dy, *, std_of=None, dx_of=None):
    """A two-pass batch norm in x's dtype with a pluggable σ and dx, for the classic mistakes (layout nc)."""
    k = x.shape[0]
    mean = x.mean(axis=0)
    var = ((x - mean) ** 2).mean(axis=0)
    std = np.sqrt(var + x.dtype.type(eps)) if std_of is None else std_of(var, x.dtype.type(eps), k)
    s = (x - mean) / std
    db, dw = dy.sum(axis=0), (dy * s).sum(axis=0)
    a = weight / std
    dx = a * (dy - db / k - s * dw / k) if dx_of is None else dx_of(a, dy, s, k)
    return {"y": weight * s + bias, "dx": dx, "dw": dw, "db": db}


def eps_outside(x, weight, bias, eps, dy):
    return textbook(x, weight, bias, eps, dy, std_of=lambda var, eps, k: np.sqrt(var) + eps)


def no_s_term(x, weight, bias, eps, dy):
    return textbook(x, weight, bias, eps, dy, dx_of=lambda a, g, s, k: a * (g - g.sum(axis=0) / k))


def eval_mode_gradient(x, weight, bias, eps, dy):
    return textbook(x, weight, bias, eps, dy, dx_of=lambda a, g, s, k: a * g)


def swapped(x, weight, bias, eps, dy):
    result = textbook(x, weight, bias, eps, dy)
    return {**result, "dw": result["db"], "db": result["dw"]}


# ------------------------------------------------------------------- correct targets


def test_self_test_passes_every_case_in_both_dtypes_including_extremes():
    report = bncli.audit("bncli", extreme=True)
    assert report.passed and report.verdict == "PASS", report.text
    names = {case.name for case in cases.list_cases()}
    assert {(name, dtype) for name in names for dtype in DTYPES} == set(verdicts(report))
    assert report.consistency[0].consistent


def test_battery_has_the_cases_the_issue_asks_for():
    default = {case.name for case in cases.list_cases(extreme=False)}
    assert default >= {"unit", "blood", "offset", "tiny", "huge", "constant", "two_rows", "large_batch"}
    assert default >= {"dy_constant", "large_eps"}
    assert all(case.extreme for case in cases.list_cases() if case.name not in default)
    inputs = cases.CASES[0].inputs("float32")
    assert inputs.x.dtype == np.float32 and np.array_equal(inputs.x, cases.CASES[0].inputs("float32").x)


@pytest.mark.parametrize("layout", ["nc", "nchw"])
def test_textbook_numpy_passes(layout):
    assert_batchnorm(batchnorm_numpy.batchnorm, layout=layout)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_self_test_passes_in_every_layout_and_indices_follow_the_layout(layout):
    assert bncli.audit("bncli", layout=layout, cases=["unit", "offset"]).passed
    k, n = 16, 4
    shape = cases.layout_shape(k, n, layout)
    a = np.arange(k * n, dtype=float).reshape(k, n)
    laid = cases.to_layout(a, layout)
    assert laid.shape == shape
    np.testing.assert_array_equal(cases.from_layout(laid, layout), a)
    assert laid[tuple(cases.layout_index(9, 2, k, n, layout))] == a[9, 2]


def test_nhwc_textbook_passes_and_a_layout_mistake_is_caught():
    assert_batchnorm(batchnorm_numpy.batchnorm_nhwc, layout="nhwc")
    report = bncli.audit(batchnorm_numpy.batchnorm, layout="nhwc", cases=["unit"], dtypes="float64")
    assert report.verdict == "ERROR"  # channels taken from axis 1 of (N, H, W, C): wrong shapes


# --------------------------------------------------------------- the classic mistakes


def test_one_pass_variance_is_inaccurate_not_wrong():
    report = bncli.audit(one_pass_variance.batchnorm)
    assert report.verdict == "INACCURATE"
    for dtype in DTYPES:
        assert verdicts(report)[("unit", dtype)] == "PASS"
        assert verdicts(report)[("offset", dtype)] == "INACCURATE"
        offset = next(r for r in report.cases if (r.name, r.dtype) == ("offset", dtype))
        assert offset.quantities["y"].ratio > 10  # discriminates by a wide factor
    assert any("one-pass variance" in line for line in report.diagnosis)


@pytest.mark.parametrize(
    "func, quantities, name",
    [
        (unbiased_variance.batchnorm, ("y", "dx", "dw"), "unbiased variance"),
        (eps_outside, ("y", "dx", "dw"), "eps outside the square root"),
        (missing_mean_term.batchnorm, ("dx",), "dx without the mean term"),
        (no_s_term, ("dx",), "dx without the s term"),
        (eval_mode_gradient, ("dx",), "eval-mode gradient"),
        (swapped, ("dw", "db"), "dw and db swapped"),
    ],
)
def test_formula_mistakes_are_wrong_and_named(func, quantities, name):
    report = bncli.audit(func, cases=["unit", "offset", "two_rows"])
    assert report.verdict == "WRONG"
    for dtype in DTYPES:
        assert verdicts(report)[("unit", dtype)] == "WRONG"
    for quantity in quantities:  # float32 rounding may hide a small mistake in some quantity; float64 shows all
        assert verdicts(report, quantity)[("unit", "float64")] == "WRONG", report.text
    named = [line for line in report.diagnosis if name in line]
    assert len(named) == 1, report.diagnosis
    assert all(name not in line for line in report.diagnosis if line is not named[0])


def test_failures_name_the_worst_element_with_both_values():
    report = bncli.audit(missing_mean_term.batchnorm, cases=["dy_constant"], dtypes=["float64"])
    dx = report.cases[0].quantities["dx"]
    assert dx.feature in ("dy=0.7", "dy=-2.5") and dx.expected == 0 and dx.obtained != 0
    assert dx.beyond == 48 and dx.ratio > 1e10 and len(dx.worst) == 2
    document = json.loads(json.dumps(report_json(report), allow_nan=False))
    q = document["cases"][0]["quantities"]["dx"]
    assert set(q) >= {"verdict", "max_error", "budget", "worst", "beyond"}
    assert q["worst"]["feature"] == dx.feature and q["beyond"] == 48
    assert {"target", "verdict", "cases", "diagnosis"} <= set(document)
    assert document["yardstick"][0]["name"] == "unit"  # run although --case left it out
    assert document["cases"][0]["quantities"]["y"]["worst"] is None


def test_backward_inconsistent_with_own_forward_is_reported():
    wrong = bncli.audit(missing_mean_term.batchnorm, cases=["unit"], dtypes="float64")
    assert wrong.consistency[0].consistent is False
    assert "dx" in consistency_line(wrong.consistency[0])
    right = bncli.audit(one_pass_variance.batchnorm, cases=["unit"], dtypes="float64")
    assert right.consistency[0].consistent is True


def test_y_only_target_is_incomplete_unless_only_y_is_asked_for():
    def y_only(x, w, b, eps, dy):
        return (batchnorm_numpy.batchnorm(x, w, b, eps, dy)["y"],)

    report = bncli.audit(y_only)
    assert report.verdict == "INCOMPLETE" and not report.passed
    assert all(r.verdict == "PASS" for r in report.cases)  # each case passes what it returns
    assert all(r.quantities["dx"].verdict == r.quantities["db"].verdict == "MISSING" for r in report.cases)
    assert report.consistency[0].consistent is None
    assert bncli.audit(y_only, quantities=["y"]).verdict == "PASS"


def test_nan_where_the_exact_value_is_finite_is_beyond_budget_not_error():
    def nan_on_two_rows(x, w, b, eps, dy):
        result = batchnorm_numpy.batchnorm(x, w, b, eps, dy)
        if x.shape[0] == 2:
            result["y"] = np.full_like(x, np.nan)
        return result

    report = bncli.audit(nan_on_two_rows, cases=["two_rows"], dtypes="float64")
    assert verdicts(report, "y") == {("two_rows", "float64"): "INACCURATE"}
    assert json.dumps(report_json(report), allow_nan=False)


def test_assert_batchnorm_message_is_the_report():
    with pytest.raises(AssertionError, match=r"(?s)INACCURATE.*offset.*one-pass variance"):
        assert_batchnorm(one_pass_variance.batchnorm, cases=["offset"])


# ------------------------------------------------------------------ errors and usage


def test_raising_hanging_and_malformed_targets_are_errors_and_the_audit_goes_on():
    def flaky(x, w, b, eps, dy):
        if x.shape[0] == 2:
            raise RuntimeError("two rows are not supported")
        if x.shape[0] == 12:
            time.sleep(3)
        if x.shape[0] == 64:
            return {"y": x.T}
        if x.dtype == np.float32 and x.shape[0] == 16:
            return "garbage"
        return batchnorm_numpy.batchnorm(x, w, b, eps, dy)

    names = ["unit", "two_rows", "constant", "offset", "blood"]
    report = bncli.audit(flaky, cases=names, timeout=0.3)
    assert report.verdict == "ERROR"
    errors = {(r.name, r.dtype): r.error for r in report.cases if r.verdict == "ERROR"}
    assert "two rows are not supported" in errors[("two_rows", "float64")]
    assert errors[("two_rows", "float64")].startswith("case two_rows (float64): raised RuntimeError")
    assert "timed out after 0.3 s" in errors[("constant", "float32")]
    assert "shape (3, 64), expected (64, 3)" in errors[("offset", "float64")]
    assert "str" in errors[("unit", "float32")]
    assert verdicts(report)[("blood", "float64")] == "PASS" and verdicts(report)[("unit", "float64")] == "PASS"
    assert all("\n" not in message for message in errors.values())


@pytest.mark.parametrize(
    "target, options, message",
    [
        ("bncli", {"cases": ["nope"]}, "unknown case 'nope'"),
        ("missing.py:f", {}, "no file missing.py"),
        (f"{EXAMPLES / 'batchnorm_numpy.py'}:absent", {}, "has no function 'absent'"),
        ("no_such_module_xyz:f", {}, "cannot import no_such_module_xyz"),
        ("bncli", {"dtypes": ["float8"]}, "unknown dtype"),
        ("bncli", {"layout": "nwc"}, "unknown layout"),
        (None, {"cmd": "no-such-program-xyz"}, "not found"),
    ],
)
def test_bad_usage_is_an_input_error(target, options, message):
    with pytest.raises(InputError, match=message):
        bncli.audit(target, **options)


def test_torch_missing_is_an_input_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(InputError, match="PyTorch is not installed"):
        bncli.audit("torch")


def test_file_target_imports_modules_beside_it(tmp_path):
    (tmp_path / "helper_for_audit.py").write_text(
        f"import sys; sys.path.insert(0, {str(EXAMPLES)!r})\nfrom batchnorm_numpy import batchnorm\n"
    )
    (tmp_path / "impl.py").write_text("from helper_for_audit import batchnorm as bn\n")
    assert bncli.audit(f"{tmp_path / 'impl.py'}:bn", cases=["unit"]).passed


# ------------------------------------------------------------------------ --cmd


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
def test_c_example_passes_through_cmd_and_temporary_folders_are_removed(tmp_path, monkeypatch):
    binary = tmp_path / "batchnorm"
    subprocess.run(["cc", "-O2", "-o", str(binary), str(EXAMPLES / "batchnorm.c"), "-lm"], check=True)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    report = bncli.audit(None, cmd=str(binary))
    assert report.passed, report.text
    assert list(scratch.iterdir()) == []


def test_cmd_failures_are_errors_with_the_last_stderr_line(tmp_path):
    script = tmp_path / "prog.py"
    script.write_text(
        "import json, sys, time, numpy as np\n"
        "folder = sys.argv[1]\n"
        "params = json.load(open(folder + '/params.json'))\n"
        "if params['case'] == 'two_rows':\n"
        "    print('warming up', file=sys.stderr); sys.exit('cannot handle two rows')\n"
        "if params['case'] == 'constant':\n"
        "    time.sleep(30)\n"
        "x = np.loadtxt(folder + '/x.csv', delimiter=',', ndmin=2)\n"
        "assert np.array_equal(x, np.load(folder + '/x.npy'))\n"
        "mean = x.mean(0); std = np.sqrt(x.var(0) + params['eps'])\n"
        "np.save(folder + '/y.npy', np.array(params['weight']) * (x - mean) / std + np.array(params['bias']))\n"
    )
    cmd = f"{sys.executable} {script}"
    start = time.monotonic()
    report = bncli.audit(None, cmd=cmd, cases=["unit", "two_rows", "constant"], dtypes="float64", timeout=1.0)
    assert time.monotonic() - start < 10
    errors = {r.name: r.error for r in report.cases}
    assert errors["two_rows"] == "case two_rows (float64): exit status 1: cannot handle two rows"
    assert errors["constant"] == "case constant (float64): timed out after 1 s"
    assert verdicts(report)[("unit", "float64")] == "PASS"
    assert report.cases[0].quantities["dx"].verdict == "MISSING"


# ------------------------------------------------------------------ the references


def _decimal_reference(inputs: cases.CaseInputs) -> dict[str, np.ndarray]:
    """y, dx, dw, db in 40-digit decimal from the closed forms (independent of bncli.core)."""
    out = {name: [] for name in cases.QUANTITIES}
    with localcontext() as ctx:
        ctx.prec = 40
        eps = Decimal(inputs.eps)
        for j in range(inputs.x.shape[1]):
            x = [Decimal(float(v)) for v in inputs.x[:, j]]
            g = [Decimal(float(v)) for v in inputs.dy[:, j]]
            w, b, k = Decimal(float(inputs.weight[j])), Decimal(float(inputs.bias[j])), len(x)
            m = sum(x) / k
            sigma = (sum((v - m) * (v - m) for v in x) / k + eps).sqrt()
            s = [(v - m) / sigma for v in x]
            db, dw = sum(g), sum(gi * si for gi, si in zip(g, s, strict=True))
            out["y"].append([w * si + b for si in s])
            out["dx"].append([w / (k * sigma) * (k * gi - db - si * dw) for gi, si in zip(g, s, strict=True)])
            out["dw"].append(dw)
            out["db"].append(db)
    as_float = lambda values: np.array(values, dtype=object).astype(float)  # noqa: E731
    return {
        "y": as_float(out["y"]).T,
        "dx": as_float(out["dx"]).T,
        "dw": as_float(out["dw"]),
        "db": as_float(out["db"]),
    }


@pytest.mark.parametrize("case", cases.list_cases(), ids=lambda case: case.name)
def test_references_are_exact_at_natural_scale(case):
    for dtype in DTYPES:
        inputs = case.inputs(dtype)
        ref = reference.reference(inputs)
        exact = _decimal_reference(inputs)
        for name in cases.QUANTITIES:
            error = np.abs(ref.values[name] - exact[name]) / ref.scales[name]
            assert error.max() <= 1e-15, (case.name, dtype, name, error.max())


def test_core_keeps_digits_when_the_variance_underflows():
    x = np.array([[1.0, -2.0], [3.0, 0.5], [-0.25, 4.0]])
    dy = np.array([[0.5, -1.0], [2.0, 0.25], [-1.5, 1.0]])
    for tiny, dtype in ((2.0**-540, np.float64), (2.0**-70, np.float32)):  # squares underflow to 0
        scaled = core.forward((x * tiny).astype(dtype), eps=0.0)
        np.testing.assert_allclose(scaled.s, core.forward(x, eps=0.0).s, rtol=4 * np.finfo(dtype).eps)
        # With an ordinary eps the variance is negligible: s ≈ (x − m)/√ε, dx ≈ (w/√ε)·(dy − mean dy).
        bn = core.forward((x * tiny).astype(dtype), eps=1e-5)
        dx = core.backward(dy.astype(dtype), bn).dx
        np.testing.assert_allclose(dx, (dy - dy.mean(axis=0)) / np.sqrt(1e-5), rtol=1e-5)


# ---------------------------------------------------------------------- torch


@pytest.mark.extras
def test_torch_passes_the_default_battery():
    pytest.importorskip("torch")
    report = bncli.audit("torch")
    assert report.passed, report.text


def test_rich_rendering_shows_verdicts_failures_diagnosis_and_the_overall_line():
    from rich.console import Console

    console = Console(width=120, record=True, force_terminal=False)
    report = bncli.audit(missing_mean_term.batchnorm, cases=["two_rows"], extreme=True)
    for part in renderables(report, console.width):
        console.print(part)
    text = console.export_text()
    assert "two_rows" in text and "extreme cases" in text and "yardstick only" in text
    assert "diagnosis: dx matches dx without the mean term" in text
    assert "self-consistency (unit/float64): dx disagrees" in text
    assert text.rstrip().splitlines()[-1].startswith("WRONG: 6 case runs")


def test_a_file_that_fails_to_import_is_an_input_error(tmp_path):
    (tmp_path / "broken.py").write_text("import sys\nsys.exit('this is a script, not a module')\n")
    with pytest.raises(InputError, match="importing .*broken.py failed: SystemExit: this is a script"):
        bncli.audit(f"{tmp_path / 'broken.py'}:f")


@pytest.mark.parametrize(
    "returned, message",
    [
        ({"y": [[1.0, 2.0], [3.0]]}, "y is not an array"),
        ({"dx": np.ones((16, 4), complex)}, "dx is not an array of real numbers"),
        ({"dw": "abc"}, "dw is not an array of real numbers"),
        ({"db": np.ones(5)}, "db has shape (5,), expected (4,)"),
        ({}, "returned none of y, dx, dw, db"),
        ((1, 2, 3, 4, 5), "a sequence of 5 items"),
        (None, "returned nothing"),
    ],
)
def test_malformed_results_are_errors(returned, message):
    report = bncli.audit(lambda *args: returned, cases=["unit"], dtypes="float64")
    assert report.verdict == "ERROR" and message in report.cases[0].error
