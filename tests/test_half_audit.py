"""bncli audit in half precision (--dtype float16|bfloat16|all), as real processes, and its budgets.

x and dy come in the half dtype; weight, bias, eps and the running statistics in float32
(PyTorch's mixed-precision convention). A correct mixed-precision implementation passes; one
that sums its statistics in the half dtype is INACCURATE with the accumulation named; one that
casts its running statistics down is WRONG where the cast overflows (running_var > 65504).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import run_process

from bncli.audit.cases import CASES, CASES_BY_NAME
from bncli.audit.findings import signatures
from bncli.audit.judge import compare
from bncli.audit.precisions import UNIT_ROUNDOFF, cast, finfo
from bncli.audit.reference import reference

TESTS = Path(__file__).resolve().parent
HALF = TESTS / "half_implementations.py"
EXAMPLES = TESTS.parent / "examples"
MIXED = f"{EXAMPLES / 'batchnorm_mixed.py'}:batchnorm"
ACCUMULATION = f"{EXAMPLES / 'half_accumulation.py'}:batchnorm"
CAST = f"{EXAMPLES / 'half_cast_eval.py'}:batchnorm"


def audit_json(target: str, *options: str, env: dict | None = None) -> tuple[int, dict]:
    done = run_process("audit", target, "-f", "json", *options, env=env)
    assert done.returncode in (0, 1), done.stderr.decode()
    assert b"Traceback" not in done.stderr and b"Warning" not in done.stderr, done.stderr.decode()
    return done.returncode, json.loads(done.stdout)


def of(name: str) -> str:
    return f"{HALF}:{name}"


def found(report: dict, kind: str) -> dict:
    matches = [f for f in report["findings"] if f["kind"] == kind]
    assert matches, report["diagnosis"]
    return matches[0]


# ----------------------------------------------------------------------------- inputs and references


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_a_half_case_has_half_x_and_dy_and_float32_parameters(dtype):
    inputs = CASES_BY_NAME["unit"].inputs(dtype)
    assert (inputs.x.dtype.name, inputs.dy.dtype.name) == (dtype, dtype)
    assert {a.dtype.name for a in (inputs.weight, inputs.bias, inputs.running_mean, inputs.running_var)} == {"float32"}
    assert inputs.eps == float(np.float32(inputs.eps))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_every_half_case_is_representable_in_its_dtype(dtype):
    for case in CASES:
        inputs = case.inputs(dtype)
        wide = inputs.x.astype(np.float64)
        assert np.isfinite(wide).all(), case.name
        assert np.ptp(wide, axis=0).max() > 0, case.name  # the data did not round to constants
        assert np.array_equal(cast(wide, dtype).astype(np.float64), wide)
        exact = reference(inputs).values
        largest = float(finfo(dtype).max)
        assert all(np.abs(exact[q]).max() < largest for q in ("y", "dx")), case.name  # a correct target can pass


def test_the_float16_huge_case_holds_a_running_variance_float16_cannot():
    inputs = CASES_BY_NAME["huge"].inputs("float16")
    assert inputs.running_var.min() > 65504


def test_the_reference_is_exact_for_the_rounded_inputs():
    """The float64 reference of the float16 case is bncli's core on exactly those float16 numbers."""
    inputs = CASES_BY_NAME["offset"].inputs("float16")
    ref = reference(inputs)
    x = inputs.x.astype(np.float64)
    mean, var = x.mean(axis=0), x.var(axis=0)
    y = inputs.weight.astype(np.float64) * (x - mean) / np.sqrt(var + inputs.eps) + inputs.bias.astype(np.float64)
    np.testing.assert_allclose(ref.values["y"], y, rtol=1e-12, atol=1e-12)


def test_y_rounded_to_float16_passes_and_three_units_more_do_not():
    """The budget of y in float16 is C_q = 4 times its last rounding (u·|y|, half a unit in the last place),
    beside float32's arithmetic: the correctly rounded y passes; y moved by three units in its last place
    (six roundings) is beyond it."""
    inputs = CASES_BY_NAME["unit"].inputs("float16")
    ref = reference(inputs)
    rounded = cast(ref.values["y"], "float16").astype(np.float64)
    assert compare("y", rounded, ref, inputs, "nc").verdict == "PASS"
    moved = rounded.copy()
    moved[3, 1] += 3 * float(np.spacing(np.float16(moved[3, 1])))
    assert compare("y", moved, ref, inputs, "nc").verdict != "PASS"


def test_dw_in_a_half_run_is_judged_at_float32():
    inputs = CASES_BY_NAME["unit"].inputs("float16")
    ref = reference(inputs)
    result = compare("dw", cast(ref.values["dw"], "float16").astype(np.float64), ref, inputs, "nc")
    assert result.budget == pytest.approx(4 * UNIT_ROUNDOFF["float32"])
    assert result.verdict != "PASS"


def test_implied_statistics_read_back_the_statistics_y_was_made_with():
    inputs = CASES_BY_NAME["offset"].inputs("float16")
    x = inputs.x.astype(np.float64)
    mean, std = x.mean(axis=0) + 0.25, x.std(axis=0) * 1.01
    y = inputs.weight * (x - mean) / std + inputs.bias
    got_mean, got_std, mean_error, std_error = signatures.implied_statistics(inputs, y)
    np.testing.assert_allclose(got_mean, mean, rtol=1e-9)
    np.testing.assert_allclose(got_std, std, rtol=1e-9)
    assert (mean_error < 1e-9).all() and (std_error < 1e-9).all()


# ----------------------------------------------------------------------------- processes


@pytest.mark.parametrize("mode", [(), ("--eval",)], ids=["training", "eval"])
def test_bncli_and_a_mixed_precision_numpy_pass_every_dtype(mode):
    for target in ("bncli", MIXED):
        code, report = audit_json(target, "--dtype", "all", *mode)
        assert (code, report["verdict"]) == (0, "PASS"), report["diagnosis"]
        assert {c["dtype"] for c in report["cases"]} == {"float64", "float32", "float16", "bfloat16"}
        half = [c for c in report["cases"] if c["dtype"] == "float16"]
        assert half[0]["quantities"]["dw"]["budget"] == pytest.approx(4 * 2.0**-24)


def test_the_target_is_given_half_x_and_dy_and_float32_parameters(tmp_path):
    record = tmp_path / "record.jsonl"
    code, report = audit_json(
        of("records_dtypes"), "--dtype", "bfloat16", "--case", "unit", env={"BNCLI_TEST_RECORD": str(record)}
    )
    assert (code, report["verdict"]) == (0, "PASS"), report["diagnosis"]
    given = json.loads(record.read_text().splitlines()[0])
    assert given == {"x": "bfloat16", "weight": "float32", "bias": "float32", "dy": "bfloat16", "eps": given["eps"]}
    assert given["eps"] == float(np.float32(1e-5))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_statistics_summed_in_the_half_dtype_are_inaccurate_and_the_accumulation_named(dtype):
    code, report = audit_json(ACCUMULATION, "--dtype", dtype)
    assert (code, report["verdict"]) == (1, "INACCURATE"), report["diagnosis"]
    finding = found(report, "low_precision_statistics")
    assert finding["dtype"] == dtype and "accumulated in " + dtype in finding["text"]
    assert f"unit/{dtype}" in finding["cases"] and f"offset/{dtype}" in finding["cases"]
    assert {"y", "dx", "dw"} <= set(finding["quantities"])
    wrongly_named = {"unbiased_variance", "eps_outside_sqrt", "one_pass_variance", "identically_zero"}
    assert not wrongly_named & {f["kind"] for f in report["findings"]}


def test_a_float16_sum_overflowing_is_named_as_the_statistics_out_of_range():
    code, report = audit_json(ACCUMULATION, "--dtype", "float16", "--case", "large_batch")
    finding = found(report, "intermediate_out_of_range")
    assert "Σ(x − m)²" in finding["text"] and "float32" in finding["text"]


@pytest.mark.parametrize("target", ["batchnorm_numpy.py:batchnorm", "cs231n_layers.py"])
def test_a_pure_half_textbook_is_inaccurate_with_its_float16_arithmetic_named(target):
    """The textbook numpy and the cs231n layer compute in their input's dtype throughout: within float16's own
    budget, beyond mixed precision's; their statistics kept in float16; float16's range left where it is."""
    code, report = audit_json(str(EXAMPLES / target), "--dtype", "float16")
    assert (code, report["verdict"]) == (1, "INACCURATE"), report["diagnosis"]
    finding = found(report, "lower_precision")
    assert {"dw", "db"} <= set(finding["quantities"]) and finding["dtype"] == "float16"
    assert "within float16's own budget" in finding["text"]
    ranges = found(report, "intermediate_out_of_range")
    assert "blood/float16" not in ranges["cases"]  # σ³ overflows there, but a textbook never forms it


def test_running_statistics_cast_to_float16_in_eval_are_wrong_and_named():
    code, report = audit_json(CAST, "--dtype", "float16", "--eval")
    assert (code, report["verdict"]) == (1, "WRONG")
    finding = found(report, "cast_to_input_dtype")
    assert "huge/float16" in finding["cases"] and "running_var" in finding["parameters"]
    assert "65504" in finding["text"] and "y = b" in finding["text"]
    huge = next(c for c in report["cases"] if c["name"] == "huge")
    assert huge["quantities"]["y"]["verdict"] == "WRONG"


def test_the_same_implementation_passes_in_training():
    code, report = audit_json(CAST, "--dtype", "float16")
    assert (code, report["verdict"]) == (0, "PASS"), report["diagnosis"]


def test_a_command_gets_float16_as_f2_and_bfloat16_as_float32_npy(tmp_path):
    program = tmp_path / "show_inputs.py"
    program.write_text(
        "import json, sys\nimport numpy as np\n"
        "folder = sys.argv[1]\nx = np.load(folder + '/x.npy')\n"
        "params = json.load(open(folder + '/params.json'))\n"
        "print(params['dtype'], x.dtype.str, file=sys.stderr)\nsys.exit(3)\n"
    )
    for dtype, stored in (("float16", "<f2"), ("bfloat16", "<f4")):
        done = run_process(
            "audit", "--cmd", f"{sys.executable} {program}", "--dtype", dtype, "--case", "unit", "-f", "json"
        )
        report = json.loads(done.stdout)
        assert report["cases"][0]["error"].endswith(f"{dtype} {stored}"), report["cases"][0]["error"]


def test_unknown_dtypes_and_an_eps_float32_cannot_hold_are_refused():
    done = run_process("audit", "bncli", "--dtype", "float8")
    assert done.returncode == 2 and b"float16" in done.stderr
    done = run_process("audit", "bncli", "--dtype", "float16", "--eps", "1e-60")
    assert done.returncode == 2
    assert done.stderr.decode().count("\n") == 1 and "float32" in done.stderr.decode()


@pytest.mark.torch
@pytest.mark.parametrize("mode", [(), ("--eval",)], ids=["training", "eval"])
@pytest.mark.parametrize("layout", ["nc", "nchw", "nhwc"])
def test_pytorch_cpu_kernels_pass_in_every_dtype(mode, layout):
    pytest.importorskip("torch")
    code, report = audit_json("torch", "--dtype", "all", "--layout", layout, *mode)
    assert (code, report["verdict"]) == (0, "PASS"), report["diagnosis"]


def test_a_formula_mistake_in_a_target_computing_in_half_is_wrong_and_named():
    code, report = audit_json(of("half_missing_mean_term"), "--dtype", "float16")
    assert (code, report["verdict"]) == (1, "WRONG")
    assert "unit/float16" in found(report, "missing_mean_term")["cases"]
    unit = next(c for c in report["cases"] if c["name"] == "unit")
    assert unit["quantities"]["dx"]["verdict"] == "WRONG"


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_eps_outside_the_root_in_mixed_precision_is_wrong_and_named_alone(dtype):
    """bfloat16 rounds the mistake away on the unit case; matched on large_eps, it is WRONG there."""
    code, report = audit_json(of("eps_outside_mixed"), "--dtype", dtype)
    assert (code, report["verdict"]) == (1, "WRONG")
    assert f"large_eps/{dtype}" in found(report, "eps_outside_sqrt")["cases"]
    assert not {"lower_precision", "low_precision_statistics"} & {f["kind"] for f in report["findings"]}


def test_dw_and_db_rounded_to_half_are_named_as_such_and_nothing_else():
    code, report = audit_json(of("gradients_in_half"), "--dtype", "float16")
    assert (code, report["verdict"]) == (1, "INACCURATE"), report["diagnosis"]
    assert {f["kind"] for f in report["findings"]} == {"lower_precision"}
    assert set(found(report, "lower_precision")["quantities"]) == {"dw", "db"}


def test_running_statistics_kept_in_float16_are_wrong_and_named():
    code, report = audit_json(of("running_kept_in_half"), "--dtype", "float16")
    assert (code, report["verdict"]) == (1, "WRONG")
    finding = found(report, "cast_to_input_dtype")
    assert set(finding["parameters"]) == {"running_mean", "running_var"} and "65504" in finding["text"]
    assert {f["kind"] for f in report["findings"]} == {"cast_to_input_dtype"}


def test_an_output_beyond_float16_comes_back_as_inf_and_passes():
    """--eps 1e-10 on the constant case: dx is 1.5e5 there, beyond 65504: float16's rounding of it is inf."""
    code, report = audit_json(MIXED, "--dtype", "float16", "--eps", "1e-10", "--case", "constant")
    assert (code, report["verdict"]) == (0, "PASS"), report["diagnosis"]


@pytest.mark.torch
def test_a_torch_module_wrapping_batchnorm1d_gets_its_running_statistics_in_eval(tmp_path):
    pytest.importorskip("torch")
    module = tmp_path / "wrapped.py"
    module.write_text(
        "from torch import nn\n\n\nclass Wrap(nn.Module):\n"
        "    def __init__(self, num_features, eps=1e-5):\n        super().__init__()\n"
        "        self.bn = nn.BatchNorm1d(num_features, eps=eps)\n\n"
        "    def forward(self, x):\n        return self.bn(x)\n"
    )
    code, report = audit_json(f"{module}:Wrap", "--style", "torch", "--dtype", "all", "--eval")
    assert (code, report["verdict"]) == (0, "PASS"), report["diagnosis"]


def test_the_python_api_takes_dtypes_all_and_none_and_refuses_an_empty_list():
    import bncli
    from bncli.errors import InputError

    assert [c.dtype for c in bncli.audit("bncli", dtypes="all", cases=["unit"]).cases] == [
        "float64", "float32", "float16", "bfloat16"
    ]  # fmt: skip
    assert [c.dtype for c in bncli.audit("bncli", dtypes=None, cases=["unit"]).cases] == ["float64", "float32"]
    with pytest.raises(InputError, match="no dtype given"):
        bncli.audit("bncli", dtypes=[])


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_an_affine_step_done_in_half_is_inaccurate_and_named_not_wrong(dtype):
    code, report = audit_json(of("affine_in_half"), "--dtype", dtype)
    assert (code, report["verdict"]) == (1, "INACCURATE"), report["diagnosis"]
    assert "more than their one rounding" in found(report, "lower_precision")["text"]
    assert not {"low_precision_statistics", "unbiased_variance", "eps_outside_sqrt"} & {
        f["kind"] for f in report["findings"]
    }


def test_a_one_pass_variance_in_float32_is_never_named_a_half_precision_rounding():
    code, report = audit_json(
        f"{EXAMPLES / 'one_pass_variance.py'}:batchnorm", "--dtype", "float16", "--layout", "nchw"
    )
    assert code == 1 and "lower_precision" not in {f["kind"] for f in report["findings"]}, report["diagnosis"]


def test_a_command_writing_bfloat16_npy_is_told_to_write_float32(tmp_path):
    program = tmp_path / "writes_bfloat16.py"
    program.write_text(
        "import sys\nimport ml_dtypes\nimport numpy as np\n"
        "folder = sys.argv[1]\nnp.save(folder + '/y.npy', np.load(folder + '/x.npy').astype(ml_dtypes.bfloat16))\n"
    )
    done = run_process(
        "audit", "--cmd", f"{sys.executable} {program}", "--dtype", "bfloat16", "--case", "unit", "-f", "json"
    )
    error = json.loads(done.stdout)["cases"][0]["error"]
    assert "write it as float32" in error, error


def test_dtypes_that_are_not_names_are_an_input_error():
    import bncli
    from bncli.errors import InputError

    with pytest.raises(InputError, match="a list of names"):
        bncli.audit("bncli", dtypes=16)
