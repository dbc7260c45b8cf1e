"""The audit's verdicts and findings on implementations as people write them (tests/implementations.py),
and the same findings engine under ``grad --against``."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import run_process

import bncli
from bncli.audit.cases import CASES_BY_NAME
from bncli.audit.findings import KINDS, find, gradient_evidence
from bncli.audit.findings.signatures import computes_in, evident_eps
from bncli.testing import assert_batchnorm

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
sys.path.insert(0, str(TESTS))
sys.path.insert(0, str(ROOT / "examples"))

import implementations  # noqa: E402
import unbiased_variance  # noqa: E402


def audit_json(name: str, *options: str) -> tuple[int, dict]:
    """``bncli audit tests/implementations.py:NAME -f json`` as a real process (NAME may be a whole
    FILE.py:FUNC target instead): its exit code and report."""
    target = name if ":" in name else f"{TESTS / 'implementations.py'}:{name}"
    done = run_process("audit", target, "-f", "json", *options)
    assert done.returncode in (0, 1), done.stderr.decode()
    return done.returncode, json.loads(done.stdout)


def findings_of(report: dict, kind: str) -> list[dict]:
    return [f for f in report["findings"] if f["kind"] == kind]


def case_verdicts(report: dict, dtype: str | None = None) -> dict[str, str]:
    return {f"{c['name']}/{c['dtype']}": c["verdict"] for c in report["cases"] if dtype in (None, c["dtype"])}


# ------------------------------------------------------------------------- 1. a missing backward


def test_a_backward_returned_in_no_case_is_incomplete_and_fails_the_gate():
    code, report = audit_json("no_backward")
    assert (code, report["verdict"]) == (1, "INCOMPLETE")
    assert any("dx is returned in no case" in line for line in report["diagnosis"])
    with pytest.raises(AssertionError, match="INCOMPLETE"):
        assert_batchnorm(implementations.no_backward, dtypes=["float64"], cases=["unit"])


def test_quantities_leaves_the_missing_one_out():
    code, report = audit_json("no_backward", "--quantities", "y,dw,db")
    assert (code, report["verdict"]) == (0, "PASS")
    assert {c["quantities"]["dx"]["verdict"] for c in report["cases"]} == {"SKIPPED"}
    api = bncli.audit(implementations.no_backward, quantities=["y", "dw", "db"], dtypes=["float64"])
    assert api.verdict == "PASS"


def test_skipped_quantities_are_not_judged_even_when_wrong():
    report = bncli.audit(implementations.zero_dx, quantities=("y",), cases=["unit"], dtypes=["float64"])
    assert report.verdict == "PASS" and report.findings == []


def test_an_unknown_quantity_is_bad_usage():
    done = run_process("audit", "bncli", "--quantities", "y,dz")
    assert done.returncode == 2 and b"unknown quantity 'dz'" in done.stderr


def test_wrong_outranks_incomplete():
    def y_only_and_wrong(x, weight, bias, eps, dy):
        return {"y": implementations.eps_outside(x, weight, bias, eps, dy)[0]}

    assert bncli.audit(y_only_and_wrong, dtypes=["float64"]).verdict == "WRONG"


# ------------------------------------------------------------------------- 2. lower precision


def test_a_float32_program_is_inaccurate_on_float64_cases_not_wrong():
    code, report = audit_json("float32_always")
    assert (code, report["verdict"]) == (1, "INACCURATE")
    assert set(case_verdicts(report, "float64").values()) == {"INACCURATE"}
    assert set(case_verdicts(report, "float32").values()) == {"PASS"}
    (finding,) = report["findings"]
    assert finding["kind"] == "lower_precision" and finding["dtype"] == "float32"
    assert len(finding["cases"]) == 10 and all(where.endswith("/float64") for where in finding["cases"])
    # judged at float32's precision, its backward agrees with its own forward
    assert report["consistency"][0]["consistent"] is True


def test_a_float32_program_with_a_formula_error_is_still_wrong_on_the_float32_cases():
    report = bncli.audit(implementations.float32_missing_mean_term)
    assert report.verdict == "WRONG"
    kinds = {f.kind: f for f in report.findings}
    assert set(kinds) == {"lower_precision", "missing_mean_term"}
    assert all(where.endswith("/float32") for where in kinds["missing_mean_term"].cases)
    assert report.consistency[0].consistent is False  # a missing term is far beyond float32's noise


@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler")
def test_the_float_only_c_kernel_is_inaccurate_with_a_lower_precision_finding(tmp_path):
    kernel = tmp_path / "k"
    subprocess.run(["cc", "-O2", "-o", str(kernel), str(ROOT / "examples" / "batchnorm_float.c"), "-lm"], check=True)
    done = run_process("audit", "--cmd", str(kernel), "-f", "json")
    report = json.loads(done.stdout)
    assert (done.returncode, report["verdict"]) == (1, "INACCURATE")
    assert "WRONG" not in case_verdicts(report).values()
    assert [f["kind"] for f in report["findings"]] == ["lower_precision"]
    assert report["consistency"][0]["consistent"] is True


def test_computes_in_needs_evidence_and_names_the_narrowest_precision():
    rng = np.random.default_rng(0)
    values = rng.standard_normal(64)
    assert computes_in({"y": values}, "float64") == "float64"
    assert computes_in({"y": values.astype(np.float32).astype(np.float64)}, "float64") == "float32"
    assert computes_in({"y": values.astype(np.float16).astype(np.float64)}, "float32") == "float16"
    assert computes_in({"y": np.zeros(64)}, "float64") is None  # zeros prove nothing


# ------------------------------------------------------------------------- 3. a fixed eps


@pytest.mark.parametrize(("name", "eps"), [("eps_1e7", 1e-7), ("eps_10e7", 10e-7)])
def test_a_fixed_eps_is_named_with_its_value_not_as_eps_outside_the_root(name, eps):
    code, report = audit_json(name)
    assert (code, report["verdict"]) == (1, "WRONG")
    assert [f["kind"] for f in report["findings"]] == ["fixed_eps"]
    assert report["findings"][0]["eps"] == pytest.approx(eps, rel=1e-3)
    assert not any("outside the square root" in line for line in report["diagnosis"])


@pytest.mark.parametrize(("name", "eps"), [("eps_1e7", "1e-7"), ("eps_10e7", "10e-7")])
def test_auditing_at_the_implementations_own_eps_passes(name, eps):
    code, report = audit_json(name, "--eps", eps)
    assert (code, report["verdict"], report["findings"]) == (0, "PASS", [])


def test_eps_outside_the_root_is_not_a_fixed_eps():
    code, report = audit_json("eps_outside")
    assert [f["kind"] for f in report["findings"]] == ["eps_outside_sqrt"]


def test_evident_eps_reads_the_targets_eps_from_y_and_nothing_from_a_correct_one():
    inputs = CASES_BY_NAME["unit"].inputs("float64")
    args = (inputs.x, inputs.weight, inputs.bias, inputs.eps, inputs.dy)
    assert evident_eps(inputs, implementations.eps_1e7(*args)[0], "float64") == pytest.approx(1e-7, rel=1e-4)
    assert evident_eps(inputs, implementations.two_pass(*args)[0], "float64") is None


# ------------------------------------------------------------------------- 4. an all-zero dx


def test_an_all_zero_dx_is_identically_zero_and_nothing_else():
    code, report = audit_json("zero_dx")
    assert (code, report["verdict"]) == (1, "WRONG")
    (finding,) = report["findings"]
    assert finding["kind"] == "identically_zero" and finding["quantities"] == ["dx"]
    assert len(finding["cases"]) == len(report["cases"])
    assert report["diagnosis"] == [finding["text"]]  # not "eps outside the square root" on huge


def test_a_variant_never_matches_where_its_own_outputs_collapse():
    # On huge/float64 eps outside the root gives σ ≈ ε = 1e195: its y is b and its dx ≈ 0; so does this target
    report = bncli.audit(implementations.eps_outside, cases=["huge"], dtypes=["float64"])
    assert report.verdict == "WRONG"
    assert report.findings == []


# ------------------------------------------------------------------------- 5. range


def test_a_staged_backward_out_of_float32_range_gets_the_range_finding():
    code, report = audit_json("staged")
    assert (code, report["verdict"]) == (1, "INACCURATE")
    failing = {where for where, verdict in case_verdicts(report).items() if verdict != "PASS"}
    assert failing == {"tiny/float32", "huge/float32"}
    (finding,) = report["findings"]
    assert finding["kind"] == "intermediate_out_of_range"
    assert set(finding["cases"]) == failing and finding["quantities"] == ["dx"]
    assert "compute 1/σ once" in finding["text"] and "s term" not in finding["text"]


def test_the_textbook_two_pass_in_the_cases_dtype_passes_the_whole_battery():
    assert bncli.audit(implementations.two_pass).verdict == "PASS"


# ------------------------------------------------------------------------- 6. one-pass variance


def ratios(report: dict, where: str) -> float:
    case = next(c for c in report["cases"] if f"{c['name']}/{c['dtype']}" == where)
    return max(q["ratio"] for q in case["quantities"].values() if isinstance(q["ratio"], float))


@pytest.mark.parametrize("target", [f"{ROOT / 'examples' / 'one_pass_variance.py'}:batchnorm", "tree_one_pass"])
def test_one_pass_is_recognised_by_its_growth_and_listed_worst_first(target):
    code, report = audit_json(target)
    assert (code, report["verdict"]) == (1, "INACCURATE")
    (finding,) = report["findings"]
    assert finding["kind"] == "one_pass_variance"
    assert finding["cases"][0] == "offset/float64"  # where its error is largest: ×1e6 and more
    worst = [ratios(report, where) for where in finding["cases"]]
    assert worst == sorted(worst, reverse=True)
    assert "offset/float64" in finding["text"].split(":")[0]


def test_a_sequentially_accumulated_one_pass_is_not_numpys_yet_named():
    inputs = CASES_BY_NAME["offset"].inputs("float32")
    args = (inputs.x, inputs.weight, inputs.bias, inputs.eps, inputs.dy)
    ours, numpys = implementations.tree_one_pass(*args)[0], implementations.numpy_one_pass(*args)[0]
    assert not np.allclose(ours, numpys, rtol=1e-3)  # the numpy variant alone would not match it
    report = bncli.audit(implementations.tree_one_pass, cases=["offset"], dtypes=["float32"])
    assert [f.kind for f in report.findings] == ["one_pass_variance"]


# ------------------------------------------------------------------------- 7. zero-valued terms


def test_a_sum_of_x_minus_m_without_its_1_over_k_says_the_error_grows_with_the_data():
    report = bncli.audit(implementations.staged_no_mean_over_k, dtypes=["float64"])
    assert report.verdict == "INACCURATE"
    (line,) = [line for line in report.diagnosis if line.startswith("INACCURATE on")]
    assert "large_batch/float64" in line and "data's magnitude" in line and "Σ(x − m)" in line


def test_np_sum_without_an_axis_says_the_error_grows_with_the_data():
    report = bncli.audit(implementations.sum_without_axis, dtypes=["float64"])
    assert report.verdict == "INACCURATE"
    assert any("data's magnitude" in line for line in report.diagnosis)


# ------------------------------------------------------------------------- 8. structure


def test_findings_are_structured_beside_the_diagnosis_texts():
    code, report = audit_json(f"{ROOT / 'examples' / 'unbiased_variance.py'}:batchnorm")
    (finding,) = report["findings"]
    assert set(finding) == {"kind", "cases", "quantities", "text"}
    assert finding["kind"] == "unbiased_variance" and finding["quantities"] == ["y", "dx", "dw"]
    assert finding["text"] in report["diagnosis"]
    assert all(f["kind"] in KINDS for f in report["findings"])


def test_inputs_modified_in_place_is_a_finding():
    def scribbles(x, weight, bias, eps, dy):
        result = implementations.two_pass(x, weight, bias, eps, dy)
        x[...] = 0
        return result

    report = bncli.audit(scribbles, cases=["unit"], dtypes=["float64"])
    assert [f.kind for f in report.findings] == ["inputs_modified"]


def test_a_correct_implementation_has_no_findings():
    code, report = audit_json(f"{ROOT / 'examples' / 'batchnorm_numpy.py'}:batchnorm")
    assert (code, report["verdict"], report["findings"], report["diagnosis"]) == (0, "PASS", [], [])


# ------------------------------------------------------------------------- 9. grad --against


def test_grad_against_an_unbiased_variance_gradient_fails_and_names_it(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((200, 2)) * [1.0, 3.0] + [0.0, 2.0]
    dy = rng.standard_normal(x.shape)
    theirs = unbiased_variance.batchnorm(x, np.ones(2), np.zeros(2), 1e-5, dy)
    np.savetxt(tmp_path / "x.csv", x, delimiter=",", header="a,b", comments="")
    np.savetxt(tmp_path / "dy.csv", dy, delimiter=",", header="a,b", comments="")
    (tmp_path / "theirs.json").write_text(json.dumps({q: theirs[q].tolist() for q in ("dx", "dw", "db")}))
    done = run_process(
        "grad", "--check", tmp_path / "x.csv", "--dy", tmp_path / "dy.csv", "--against", tmp_path / "theirs.json",
        "-f", "json",
    )  # fmt: skip
    assert done.returncode == 1
    check = json.loads(done.stdout)["check"]
    assert check["passed"] is False
    assert [f["kind"] for f in check["findings"]] == ["unbiased_variance"]
    assert b"unbiased variance" in done.stderr


def test_the_engine_takes_a_cases_inputs_and_gradients_without_a_target():
    inputs = CASES_BY_NAME["unit"].inputs("float64")
    args = (inputs.x, inputs.weight, inputs.bias, inputs.eps, inputs.dy)
    given = implementations.eps_outside(*args)
    case = (inputs.x, inputs.dy, inputs.weight, inputs.bias, inputs.eps)
    evidence = gradient_evidence(*case, dict(zip(("dx", "dw", "db"), given[1:], strict=True)))
    assert [f.kind for f in find([evidence])] == ["eps_outside_sqrt"]
    correct = implementations.two_pass(*args)
    evidence = gradient_evidence(*case, dict(zip(("dx", "dw", "db"), correct[1:], strict=True)))
    assert find([evidence]) == []


def test_the_exactly_differentiated_unbiased_variant_is_the_derivative_of_its_forward():
    """Central differences of Σ dy·y for the unbiased-variance forward give that variant's dx (autograd's)."""
    from bncli.audit.findings.variants import VARIANTS

    inputs = CASES_BY_NAME["unit"].inputs("float64")
    exact = next(v for v in VARIANTS if v.compute.__name__ == "_unbiased_differentiated").values(inputs)
    k = inputs.x.shape[0]

    def loss(x):
        mean = x.mean(axis=0)
        std = np.sqrt(((x - mean) ** 2).sum(axis=0) / (k - 1) + inputs.eps)
        return float((inputs.dy * (inputs.weight * (x - mean) / std + inputs.bias)).sum())

    step, numerical = 1e-6, np.empty_like(inputs.x)
    for index in np.ndindex(inputs.x.shape):
        up, down = inputs.x.copy(), inputs.x.copy()
        up[index] += step
        down[index] -= step
        numerical[index] = (loss(up) - loss(down)) / (2 * step)
    np.testing.assert_allclose(exact["dx"], numerical, rtol=0, atol=1e-7)
    hand_written = next(v for v in VARIANTS if v.compute.__name__ == "_unbiased").values(inputs)
    assert np.abs(hand_written["dx"] - numerical).max() > 1e-3  # the two backwards differ on unit
