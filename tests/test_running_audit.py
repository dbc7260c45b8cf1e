"""bncli audit with running statistics (PyTorch's rule) and in eval mode (--eval), as real processes."""

from __future__ import annotations

import json
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import run_process
from running_implementations import batch_statistics_always, correct

import bncli
from bncli.audit.cases import CASES_BY_NAME
from bncli.audit.reference import reference
from bncli.errors import InputError

TESTS = Path(__file__).resolve().parent
RUNNING = TESTS / "running_implementations.py"
EXAMPLES = TESTS.parent / "examples"


def audit_json(target: str, *options: str) -> tuple[int, dict]:
    done = run_process("audit", target, "-f", "json", *options)
    assert done.returncode in (0, 1), done.stderr.decode()
    return done.returncode, json.loads(done.stdout)


def of(name: str) -> str:
    return f"{RUNNING}:{name}"


def kinds(report: dict) -> set[str]:
    return {f["kind"] for f in report["findings"]}


def running_verdicts(report: dict) -> set[str]:
    return {c["quantities"][q]["verdict"] for c in report["cases"] for q in ("running_mean", "running_var")}


def test_running_statistics_by_pytorchs_rule_pass_and_are_in_the_json():
    code, report = audit_json(of("correct"))
    assert (code, report["verdict"]) == (0, "PASS")
    assert running_verdicts(report) == {"PASS"}
    assert all(c["quantities"]["running_var"]["budget"] > 0 for c in report["cases"])


def test_a_biased_running_variance_is_wrong_and_named():
    code, report = audit_json(of("biased_running_var"))
    assert (code, report["verdict"]) == (1, "WRONG")
    unit = next(c for c in report["cases"] if c["name"] == "unit" and c["dtype"] == "float64")
    assert unit["quantities"]["running_var"]["verdict"] == "WRONG"
    assert unit["quantities"]["running_mean"]["verdict"] == "PASS"
    found = [f for f in report["findings"] if f["kind"] == "biased_running_variance"]
    assert found and found[0]["quantities"] == ["running_var"]
    assert "unbiased" in found[0]["text"]


def test_the_reversed_momentum_convention_is_wrong_and_named():
    code, report = audit_json(of("keras_momentum"))
    assert (code, report["verdict"]) == (1, "WRONG")
    found = [f for f in report["findings"] if f["kind"] == "reversed_momentum"]
    assert found and set(found[0]["quantities"]) == {"running_mean", "running_var"}
    assert "Keras" in found[0]["text"]


def test_a_target_without_running_statistics_is_judged_on_y_dx_dw_db_alone():
    code, report = audit_json(f"{TESTS / 'implementations.py'}:two_pass")
    assert (code, report["verdict"]) == (0, "PASS")
    assert all(set(c["quantities"]) == {"y", "dx", "dw", "db"} for c in report["cases"])


def test_declared_running_statistics_never_returned_are_incomplete():
    code, report = audit_json(of("declares_but_never_returns"))
    assert (code, report["verdict"]) == (1, "INCOMPLETE")
    assert running_verdicts(report) == {"MISSING"}
    assert any("running_mean, running_var are returned in no case" in line for line in report["diagnosis"])


def test_only_the_declared_keywords_are_passed():
    code, report = audit_json(of("training_only_keyword"), "--case", "unit")
    assert (code, report["verdict"]) == (0, "PASS"), report


def test_eval_mode_is_judged_against_the_running_statistics():
    code, report = audit_json(of("correct"), "--eval")
    assert (code, report["verdict"]) == (0, "PASS")
    assert running_verdicts(report) == {"PASS"}  # unchanged in eval mode


def test_batch_statistics_in_eval_mode_are_wrong_and_named():
    code, report = audit_json(of("batch_statistics_always"), "--eval")
    assert (code, report["verdict"]) == (1, "WRONG")
    unit = next(c for c in report["cases"] if c["name"] == "unit" and c["dtype"] == "float64")
    assert unit["quantities"]["y"]["verdict"] == "WRONG"
    found = [f for f in report["findings"] if f["kind"] == "batch_statistics_in_eval"]
    assert found and "y" in found[0]["quantities"]
    assert len(found[0]["cases"]) >= 10  # the running statistics are far from every case's batch


def test_the_same_target_passes_training_mode():
    code, report = audit_json(of("batch_statistics_always"))
    assert (code, report["verdict"]) == (0, "PASS")


@pytest.mark.parametrize("mode", [(), ("--eval",)])
def test_the_self_audit_passes_with_running_statistics(mode):
    code, report = audit_json("bncli", *mode)
    assert (code, report["verdict"]) == (0, "PASS")
    assert running_verdicts(report) == {"PASS"}


@pytest.mark.torch
@pytest.mark.parametrize("mode", [(), ("--eval",)])
def test_torch_passes_with_running_statistics(mode):
    pytest.importorskip("torch")
    code, report = audit_json("torch", *mode)
    assert (code, report["verdict"]) == (0, "PASS"), report["diagnosis"]
    assert running_verdicts(report) == {"PASS"}


CS231N_PYTORCH_RULE = """
import numpy as np

def batchnorm_forward(x, gamma, beta, bn_param):
    eps, momentum, mode = bn_param["eps"], bn_param["momentum"], bn_param["mode"]
    running_mean, running_var = bn_param["running_mean"], bn_param["running_var"]
    if mode == "train":
        mean = x.mean(axis=0)
        var = ((x - mean) ** 2).mean(axis=0)
        k = x.shape[0]
        bn_param["running_mean"] = (1 - momentum) * running_mean + momentum * mean
        bn_param["running_var"] = (1 - momentum) * running_var + momentum * var * (k / (k - 1))
    else:
        mean, var = running_mean, running_var
    std = np.sqrt(var + x.dtype.type(eps))
    xhat = (x - mean) / std
    return gamma * xhat + beta, (xhat, gamma, std, mode == "train")

def batchnorm_backward(dout, cache):
    xhat, gamma, std, training = cache
    k = dout.shape[0]
    db, dw = dout.sum(axis=0), (dout * xhat).sum(axis=0)
    dx = (gamma / std) * (dout - db / k - xhat * dw / k) if training else (gamma / std) * dout
    return dx, dw, db
"""


@pytest.mark.parametrize("mode", [(), ("--eval",)])
def test_the_cs231n_style_carries_bn_params_running_statistics(tmp_path, mode):
    layers = tmp_path / "layers.py"
    layers.write_text(textwrap.dedent(CS231N_PYTORCH_RULE))
    code, report = audit_json(str(layers), *mode)
    assert (code, report["verdict"]) == (0, "PASS"), report["diagnosis"]
    if not mode:  # in test mode a forward leaves them as they are: not returned, MISSING
        assert running_verdicts(report) == {"PASS"}


def test_the_cs231n_assignments_convention_is_named(tmp_path):
    """The assignment's running = momentum·running + (1 − momentum)·batch with the biased variance."""
    layers = tmp_path / "layers.py"
    text = textwrap.dedent(CS231N_PYTORCH_RULE)
    text = text.replace(
        'bn_param["running_mean"] = (1 - momentum) * running_mean + momentum * mean',
        'bn_param["running_mean"] = momentum * running_mean + (1 - momentum) * mean',
    ).replace(
        'bn_param["running_var"] = (1 - momentum) * running_var + momentum * var * (k / (k - 1))',
        'bn_param["running_var"] = (1 - momentum) * running_var + momentum * var',
    )
    layers.write_text(text)
    code, report = audit_json(str(layers))
    assert (code, report["verdict"]) == (1, "WRONG")
    assert {"reversed_momentum", "biased_running_variance"} <= kinds(report)


TORCH_MODULE_BIASED = """
import torch
from torch import nn

class BatchNorm(nn.Module):
    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def forward(self, x):
        if self.training:
            mean, var = x.mean(0), x.var(0, unbiased=False)
            with torch.no_grad():
                self.running_mean.lerp_(mean, self.momentum)
                self.running_var.lerp_(var, self.momentum)
        else:
            mean, var = self.running_mean, self.running_var
        return self.weight * (x - mean) / torch.sqrt(var + self.eps) + self.bias
"""


@pytest.mark.torch
def test_the_torch_style_judges_the_modules_buffers(tmp_path):
    pytest.importorskip("torch")
    module = tmp_path / "module.py"
    module.write_text(textwrap.dedent(TORCH_MODULE_BIASED))
    code, report = audit_json(f"{module}:BatchNorm", "--style", "torch")
    assert (code, report["verdict"]) == (1, "WRONG")
    assert kinds(report) == {"biased_running_variance"}
    code, report = audit_json(f"{module}:BatchNorm", "--style", "torch", "--eval")
    assert (code, report["verdict"]) == (0, "PASS"), report["diagnosis"]


def test_eval_references_use_running_statistics_far_from_the_batchs():
    """Every default case's eval-mode y differs from its training-mode y by the order of y itself."""
    for case in CASES_BY_NAME.values():
        if case.extreme:
            continue
        inputs = case.inputs("float64")
        training = reference(inputs).values["y"]
        evaluated = reference(replace(inputs, training=False)).values["y"]
        assert np.max(np.abs(training - evaluated)) > 0.1 * np.max(np.abs(training - inputs.bias)), case.name


def test_eval_refuses_a_program_and_shards():
    for extra in (("--cmd", "./batchnorm"), ("bncli", "--shards", "2,2")):
        done = run_process("audit", "--eval", *extra)
        assert done.returncode == 2
        assert "--eval audits a Python function given training=False" in done.stderr.decode()


@pytest.mark.parametrize("layout", ["nc", "nchw"])
def test_a_cs231n_test_mode_without_a_cache_is_judged_on_y_alone(layout):
    """The assignment's test mode returns cache None: no backward to call, so dx, dw, db are not expected
    (README: "a forward that returns the cache None is judged on y alone"), and the report says so."""
    example = str(EXAMPLES / "cs231n_layers.py")
    code, report = audit_json(example, "--layout", layout, "--eval")
    assert (code, report["verdict"], report["mode"]) == (0, "PASS", "eval"), report["diagnosis"]
    assert {c["quantities"]["y"]["verdict"] for c in report["cases"] if not c["extreme"]} == {"PASS"}
    alone = [line for line in report["diagnosis"] if "y is judged alone" in line]
    assert len(alone) == 1 and "no cache" in alone[0], report["diagnosis"]


def test_a_running_statistic_asked_for_that_the_target_never_returns_is_incomplete():
    """--quantities running_mean on a target that declares none: judging nothing must not PASS."""
    for asked in ("running_mean", "running_var", "y,running_var"):
        code, report = audit_json(f"{TESTS / 'implementations.py'}:two_pass", "--quantities", asked)
        assert (code, report["verdict"]) == (1, "INCOMPLETE"), (asked, report["diagnosis"])
        never = asked.split(",")[-1]
        assert any(f"{never} is returned in no case: INCOMPLETE" in line for line in report["diagnosis"]), asked
        assert {c["quantities"][never]["verdict"] for c in report["cases"]} == {"MISSING"}


def test_eval_on_a_function_that_declares_no_training_is_a_usage_error():
    """It cannot be told it is in inference mode, so it cannot be audited in it."""
    done = run_process("audit", f"{TESTS / 'implementations.py'}:two_pass", "--eval")
    assert done.returncode == 2, done.stdout.decode()
    lines = done.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and b"Traceback" not in done.stderr, lines
    assert "declares no training" in lines[0] and "training=True" in lines[0], lines[0]
    assert not done.stdout


def test_the_python_api_refuses_eval_for_a_callable_without_training():
    from implementations import two_pass

    with pytest.raises(InputError, match="declares no training"):
        bncli.audit(two_pass, cases=["unit"], eval=True)


@pytest.mark.torch
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_torch_passes_eval_mode_in_every_layout(layout):
    pytest.importorskip("torch")
    code, report = audit_json("torch", "--eval", "--layout", layout, "--case", "unit", "--case", "offset")
    assert (code, report["verdict"]) == (0, "PASS"), report["diagnosis"]


def test_the_python_api_passes_the_declared_keywords_to_a_callable():
    assert bncli.audit(correct, cases=["unit", "offset"], eval=True).passed
    report = bncli.audit(batch_statistics_always, cases=["unit"], eval=True)
    assert report.verdict == "WRONG"
    assert [f.kind for f in report.findings] == ["batch_statistics_in_eval"]
