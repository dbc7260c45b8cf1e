"""bncli audit --style: cs231n layers, torch modules and functions, jax functions, as people write them.

Each implementation here does the arithmetic of a native example (examples/batchnorm_numpy.py,
unbiased_variance.py, missing_mean_term.py) in its own style; the audit must reach the same
verdicts and findings. Tests that need torch or jax are marked so and skip without them.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from conftest import run_process

from bncli.audit import styles
from bncli.errors import InputError

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

CS231N_CORRECT = """
import numpy as np

def batchnorm_forward(x, gamma, beta, bn_param):
    eps = bn_param["eps"]
    mean = x.mean(axis=0)
    var = ((x - mean) ** 2).mean(axis=0)
    std = np.sqrt(var + x.dtype.type(eps))
    xhat = (x - mean) / std
    return gamma * xhat + beta, (xhat, gamma, std)

def batchnorm_backward(dout, cache):
    xhat, gamma, std = cache
    k = dout.shape[0]
    dbeta, dgamma = dout.sum(axis=0), (dout * xhat).sum(axis=0)
    return (gamma / std) * (dout - dbeta / k - xhat * dgamma / k), dgamma, dbeta
"""
CS231N_UNBIASED = CS231N_CORRECT.replace("((x - mean) ** 2).mean(axis=0)", "x.var(axis=0, ddof=1)")
CS231N_NO_MEAN_TERM = CS231N_CORRECT.replace("(dout - dbeta / k - xhat", "(dout - xhat")

TORCH_CORRECT = """
import torch
from torch import nn

class BatchNorm(nn.Module):
    def __init__(self, num_features, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))

    def forward(self, x):
        mean = x.mean(0)
        var = ((x - mean) ** 2).mean(0)
        return self.weight * (x - mean) / torch.sqrt(var + self.eps) + self.bias
"""
TORCH_UNBIASED = TORCH_CORRECT.replace("((x - mean) ** 2).mean(0)", "x.var(0)")  # torch.var: ÷ (k − 1)
TORCH_NO_MEAN_TERM = """
import torch
from torch import nn

class Normalize(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, eps):
        mean = x.mean(0)
        std = torch.sqrt(((x - mean) ** 2).mean(0) + eps)
        s = (x - mean) / std
        ctx.save_for_backward(s, weight, std)
        return weight * s + bias

    @staticmethod
    def backward(ctx, dy):
        s, weight, std = ctx.saved_tensors
        k = dy.shape[0]
        dw = (dy * s).sum(0, keepdim=True)  # the shape of its parameters, (1, C)
        return (weight / std) * (dy - s * dw / k), dw, dy.sum(0, keepdim=True), None

class BatchNorm(nn.Module):
    def __init__(self, num_features, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.gamma = nn.Parameter(torch.ones(1, num_features))
        self.beta = nn.Parameter(torch.zeros(1, num_features))

    def forward(self, x):
        return Normalize.apply(x, self.gamma, self.beta, self.eps)
"""

JAX_CORRECT = """
import jax.numpy as jnp

def batchnorm(x, weight, bias, eps):
    mean = x.mean(axis=0)
    var = ((x - mean) ** 2).mean(axis=0)
    return weight * (x - mean) / jnp.sqrt(var + eps) + bias
"""
TORCH_FUNCTION = """
import torch

def batchnorm(x, weight, bias, eps):
    mean = x.mean(0)
    return weight * (x - mean) / torch.sqrt(((x - mean) ** 2).mean(0) + eps) + bias
"""
JAX_UNBIASED = JAX_CORRECT.replace("((x - mean) ** 2).mean(axis=0)", "x.var(axis=0, ddof=1)")
JAX_NO_MEAN_TERM = """
import jax
import jax.numpy as jnp

@jax.custom_vjp
def normalize(x, weight, bias, eps):
    return forward(x, weight, bias, eps)[0]

def forward(x, weight, bias, eps):
    mean = x.mean(axis=0)
    std = jnp.sqrt(((x - mean) ** 2).mean(axis=0) + eps)
    s = (x - mean) / std
    return weight * s + bias, (s, weight, std)

def backward(saved, dy):
    s, weight, std = saved
    k = dy.shape[0]
    dw = (dy * s).sum(axis=0)
    return (weight / std) * (dy - s * dw / k), dw, dy.sum(axis=0), None

normalize.defvjp(forward, backward)

def batchnorm(x, weight, bias, eps):
    return normalize(x, weight, bias, eps)
"""

NATIVE = {
    "correct": f"{EXAMPLES / 'batchnorm_numpy.py'}:batchnorm",
    "unbiased": f"{EXAMPLES / 'unbiased_variance.py'}:batchnorm",
    "no_mean_term": f"{EXAMPLES / 'missing_mean_term.py'}:batchnorm",
}
STYLED = {
    "cs231n": ("", {"correct": CS231N_CORRECT, "unbiased": CS231N_UNBIASED, "no_mean_term": CS231N_NO_MEAN_TERM}),
    "torch": (":BatchNorm", {"correct": TORCH_CORRECT, "unbiased": TORCH_UNBIASED, "no_mean_term": TORCH_NO_MEAN_TERM}),
    "jax": (":batchnorm", {"correct": JAX_CORRECT, "unbiased": JAX_UNBIASED, "no_mean_term": JAX_NO_MEAN_TERM}),
}
NEEDS = {"torch": pytest.mark.torch, "jax": pytest.mark.jax}
# The native unbiased example writes its backward by hand, for the biased forward: it disagrees with its own
# y. Autograd differentiates the unbiased forward exactly, so there the backward agrees with y, and only that
# differs.
AUTOGRAD_OF_ITS_FORWARD = {("torch", "unbiased"), ("jax", "unbiased")}


def write(folder: Path, name: str, source: str) -> str:
    path = folder / f"{name}.py"
    path.write_text(textwrap.dedent(source))
    return str(path)


def audit_json(*args: str, env: dict | None = None) -> tuple[int, dict]:
    done = run_process("audit", *args, "-f", "json", env=env)
    assert done.returncode in (0, 1), done.stderr.decode()
    return done.returncode, json.loads(done.stdout)


def usage_error(*args: str, env: dict | None = None) -> str:
    """The one line bncli prints for a target it cannot use (exit 2)."""
    done = run_process("audit", *args, env=env)
    assert done.returncode == 2, (done.returncode, done.stdout.decode(), done.stderr.decode())
    lines = done.stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def findings(report: dict) -> tuple:
    """What the audit concluded, without the target's name or its exact errors: each finding's kind,
    quantities and cases (as a set: cases are listed worst first, and the worst depends on the
    rounding of the arithmetic, which autograd and a hand-written backward do in other orders)."""
    quantities = {
        (case["name"], case["dtype"]): {q: result["verdict"] for q, result in case["quantities"].items()}
        for case in report["cases"]
    }
    found = sorted((f["kind"], tuple(f["quantities"]), tuple(sorted(f["cases"]))) for f in report["findings"])
    consistent = [c["consistent"] for c in report["consistency"]]
    return report["verdict"], quantities, found, consistent


def framework(style: str):
    if style in NEEDS:
        pytest.importorskip(style)


@pytest.fixture(scope="module")
def native_findings():
    return {mistake: findings(audit_json(target)[1]) for mistake, target in NATIVE.items()}


@pytest.mark.parametrize("mistake", list(NATIVE))
@pytest.mark.parametrize("style", [pytest.param(s, marks=NEEDS.get(s, ())) for s in STYLED], ids=list(STYLED))
def test_a_style_gets_the_verdicts_and_findings_of_the_same_arithmetic_written_natively(
    style, mistake, native_findings, tmp_path
):
    framework(style)
    suffix, sources = STYLED[style]
    target = write(tmp_path, f"{style}_{mistake}", sources[mistake]) + suffix
    code, report = audit_json("--style", style, target)
    assert report["target"] == f"{target} as {style}"
    verdict, quantities, diagnosis, consistent = native_findings[mistake]
    if (style, mistake) in AUTOGRAD_OF_ITS_FORWARD:
        consistent = [True]
    assert findings(report) == (verdict, quantities, diagnosis, consistent)
    assert code == (0 if mistake == "correct" else 1)


@pytest.mark.parametrize(
    "target, style",
    [
        ("cs231n_layers.py", "cs231n"),
        ("cs231n_layers.py:batchnorm_backward_alt", "cs231n"),
        pytest.param("torch_module.py:BatchNorm", "torch", marks=pytest.mark.torch),
        pytest.param("jax_batchnorm.py:batchnorm", "jax", marks=pytest.mark.jax),
    ],
)
def test_the_examples_pass_in_their_style_detected_from_the_file(target, style):
    framework(style)
    code, report = audit_json(str(EXAMPLES / target))
    assert (code, report["verdict"]) == (0, "PASS")
    assert report["target"].endswith(f" as {style}")


def test_cs231n_spatial_functions_serve_the_nchw_layout():
    code, report = audit_json(str(EXAMPLES / "cs231n_layers.py"), "--layout", "nchw", "--case", "unit")
    assert (code, report["verdict"], report["cases"][0]["shape"]) == (0, "PASS", [4, 4, 2, 2])


@pytest.mark.torch
def test_a_torch_module_is_built_fresh_in_training_mode_for_every_call(tmp_path):
    """A module whose output depends on its history (buffers, accumulated .grad) passes only if no
    call sees another's module; a BatchNorm1d inside passes only in training mode, its weight found by name."""
    pytest.importorskip("torch")
    source = """
    import torch
    from torch import nn

    class Layer(nn.Module):
        def __init__(self, num_features, eps=1e-5):
            super().__init__()
            self.inner = nn.BatchNorm1d(num_features, eps=eps)
            self.register_buffer("calls", torch.zeros(()))

        def forward(self, x):
            self.calls += 1
            assert self.inner.weight.grad is None, "gradient left from an earlier call"
            return self.inner(x) * self.calls
    """
    code, report = audit_json("--style", "torch", write(tmp_path, "layer", source) + ":Layer")
    assert (code, report["verdict"]) == (0, "PASS"), report


@pytest.mark.torch
def test_a_torch_function_on_tensors_gets_its_backward_from_autograd(tmp_path):
    pytest.importorskip("torch")
    source = """
    import torch.nn.functional as F

    def batchnorm(x, weight, bias, eps):
        return F.batch_norm(x, None, None, weight, bias, training=True, eps=eps)
    """
    code, report = audit_json(write(tmp_path, "functional", source) + ":batchnorm")  # torch, detected
    assert (code, report["verdict"], report["target"].endswith(" as torch")) == (0, "PASS", True)


@pytest.mark.torch
def test_a_torch_target_is_imported_once_per_audit_and_a_crash_ends_only_its_worker(tmp_path):
    pytest.importorskip("torch")
    imports = tmp_path / "imports.txt"
    source = f"""
    import os
    import sys
    import torch

    with open({str(imports)!r}, "a") as log:
        log.write("imported\\n")

    def batchnorm(x, weight, bias, eps):
        print("a print of the target's", file=sys.stdout)
        if x.shape[0] == 2:
            os._exit(3)
        return torch.nn.functional.batch_norm(x, None, None, weight, bias, training=True, eps=eps)
    """
    target = write(tmp_path, "crashing", source) + ":batchnorm"
    done = run_process("audit", "--style", "torch", target, "--case", "unit", "--case", "offset", "-f", "json")
    report = json.loads(done.stdout)
    assert done.returncode == 0
    assert [c["verdict"] for c in report["cases"]] == ["PASS", "PASS"] * 2
    assert imports.read_text().count("imported") == 1
    done = run_process("audit", "--style", "torch", target, "--case", "two_rows", "--case", "unit", "-f", "json")
    report = json.loads(done.stdout)
    verdicts = {(c["name"], c["dtype"]): c["verdict"] for c in report["cases"]}
    assert verdicts == {
        ("two_rows", "float64"): "ERROR",
        ("unit", "float64"): "PASS",
        ("two_rows", "float32"): "ERROR",
        ("unit", "float32"): "PASS",
    }
    assert "ended the process (exit status 3)" in report["cases"][0]["error"]


CS231N_OUT_ONLY = CS231N_CORRECT.replace("return gamma * xhat + beta, (xhat, gamma, std)", "return gamma * xhat + beta")
TORCH_NO_EPS = TORCH_CORRECT.replace("def __init__(self, num_features, eps=1e-5):", "def __init__(self, num_features):")
TORCH_NO_AFFINE = TORCH_CORRECT.replace("self.weight =", "self.scale =").replace("self.bias =", "self.shift =")
TORCH_NOT_A_MODULE = "import torch\n\nclass BatchNorm:\n    def __init__(self, num_features, eps=1e-5):\n        pass\n"


@pytest.mark.parametrize(
    "style, source, suffix, expected",
    [
        ("cs231n", "def affine_forward(x, w, b):\n    pass\n", "", "style cs231n calls batchnorm_forward from"),
        ("cs231n", CS231N_OUT_ONLY, "", "batchnorm_forward returned a ndarray of shape (16, 4); "),
        pytest.param("torch", TORCH_NO_EPS, ":BatchNorm", "BatchNorm(num_features, eps=eps)", marks=pytest.mark.torch),
        pytest.param(
            "torch",
            TORCH_NO_AFFINE,
            ":BatchNorm",
            "its parameters are scale (4,), shift (4,); style torch expects weight and bias",
            marks=pytest.mark.torch,
        ),  # fmt: skip
        pytest.param(
            "torch", TORCH_NOT_A_MODULE, ":BatchNorm", "not a torch.nn.Module subclass", marks=pytest.mark.torch
        ),  # fmt: skip
        pytest.param(
            "jax",
            JAX_CORRECT.replace("eps):", "eps, dy):"),
            ":batchnorm",
            "batchnorm(x, weight, bias, eps, dy) cannot be called as f(x, weight, bias, eps), which style jax",
            marks=pytest.mark.jax,
        ),  # fmt: skip
    ],
    ids=["cs231n-no-forward", "cs231n-no-cache", "torch-no-eps", "torch-no-affine", "torch-class", "jax-native"],
)
def test_a_target_that_is_not_what_its_style_expects_is_one_line_and_exit_2(style, source, suffix, expected, tmp_path):
    framework(style)
    line = usage_error("--style", style, write(tmp_path, "target", source) + suffix)
    assert expected in line
    assert line.startswith("bncli: error: ")


@pytest.mark.torch
@pytest.mark.jax
@pytest.mark.parametrize(
    "style, source, suffix, uses",
    [("torch", JAX_CORRECT, ":batchnorm", "jax"), ("jax", TORCH_FUNCTION, ":batchnorm", "torch")],
    ids=["jax-as-torch", "torch-as-jax"],
)
def test_a_function_of_the_other_framework_is_one_line_and_exit_2(style, source, suffix, uses, tmp_path):
    """A jax function called on torch tensors raises in every case: that is the style's mismatch, not the
    target's ERROR."""
    framework("torch")
    framework("jax")
    line = usage_error("--style", style, write(tmp_path, "target", source) + suffix, "--case", "unit")
    assert f"uses {uses}" in line and f"--style {uses}" in line, line


@pytest.mark.parametrize(
    "style, source",
    [
        pytest.param("torch", TORCH_FUNCTION, marks=pytest.mark.torch),
        pytest.param("jax", JAX_CORRECT, marks=pytest.mark.jax),
    ],
    ids=["torch-function", "jax"],
)
def test_eval_on_a_styled_function_that_has_no_mode_is_one_line_and_exit_2(style, source, tmp_path):
    """f(x, weight, bias, eps) cannot be told it is in inference mode (was WRONG, batch statistics in eval)."""
    framework(style)
    line = usage_error("--style", style, write(tmp_path, "target", source) + ":batchnorm", "--eval", "--case", "unit")
    assert "--eval" in line and "inference mode" in line and "training mode" in line, line


@pytest.mark.parametrize("style", [pytest.param(s, marks=NEEDS[s]) for s in ("torch", "jax")])
@pytest.mark.parametrize("case", ["unit", "blood", "two_rows"])
def test_autograds_backward_of_an_unbiased_variance_is_named_on_every_case(style, case, tmp_path):
    """Autograd differentiates the unbiased forward exactly (its s term over k − 1, not k): dx is beyond budget
    by far on every case, and must be named with y and dw, not only where k is large enough to blur the two."""
    framework(style)
    suffix, sources = STYLED[style]
    code, report = audit_json(
        "--style", style, write(tmp_path, "unbiased", sources["unbiased"]) + suffix, "--case", case
    )
    assert code == 1
    assert {c["quantities"]["dx"]["verdict"] for c in report["cases"]} == {"WRONG"}
    found = {f["kind"]: f["quantities"] for f in report["findings"]}
    assert found.get("unbiased_variance") == ["y", "dx", "dw"], report["diagnosis"]


@pytest.mark.parametrize("style, install", [("torch", "pip install torch"), ("jax", "pip install jax")])
def test_a_missing_framework_is_exit_2_naming_the_install(style, install, tmp_path):
    hidden = tmp_path / "hidden" / style
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text(f"raise ImportError('No module named {style}')\n")
    target = write(tmp_path, "target", "def batchnorm(x, weight, bias, eps):\n    return x\n") + ":batchnorm"
    line = usage_error("--style", style, target, env={"PYTHONPATH": str(tmp_path / "hidden")})
    assert f"style {style} needs {style}, which is not installed" in line and install in line


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--style", "torch", "--cmd", "true"], "--style torch applies to a TARGET naming Python code"),
        (["--style", "cs231n", "bncli"], "--style cs231n applies to a TARGET naming Python code"),
        (["--style", "cs231n", "--layout", "nhwc", str(EXAMPLES / "cs231n_layers.py")], "style cs231n has no nhwc"),
    ],
)
def test_a_style_that_cannot_apply_is_a_usage_error(args, expected):
    assert expected in usage_error(*args)


def test_the_flag_wins_over_detection():
    line = usage_error("--style", "native", str(EXAMPLES / "cs231n_layers.py"))
    assert "expected FILE.py:FUNCTION" in line


# ----------------------------------------------------------------------------- detection (in process)


@pytest.mark.parametrize(
    "source, name, style",
    [
        (CS231N_CORRECT, "", "cs231n"),
        (CS231N_CORRECT, "batchnorm_backward", "cs231n"),
        ("def batchnorm(x, weight, bias, eps, dy):\n    pass\n", "batchnorm", "native"),
        ("def batchnorm(x, weight, bias, eps, dy):\n    pass\n", "", "native"),
        (TORCH_CORRECT, "BatchNorm", "torch"),
        ("import torch\ndef f(x, weight, bias, eps):\n    pass\n", "f", "torch"),
        (JAX_CORRECT, "batchnorm", "jax"),
        ("import torch, jax\ndef f(x, weight, bias, eps):\n    pass\n", "f", "native"),  # either: ambiguous
        ("import torch\ndef f(x, weight, bias, eps, dy):\n    pass\n", "f", "native"),
        ("class BatchNorm:\n    pass\n", "BatchNorm", "native"),
        ("def f(*args):\n    pass\n", "f", "native"),
        ("this is not python", "f", "native"),
    ],
)
def test_detection_picks_a_style_only_when_one_fits(source, name, style, tmp_path):
    path = write(tmp_path, "target", source)
    assert styles.detect(f"{path}:{name}" if name else path) == style


def test_detection_reads_no_file_it_is_not_given_and_never_runs_the_target(tmp_path):
    marker = tmp_path / "ran"
    path = write(tmp_path, "target", f"open({str(marker)!r}, 'w')\n{CS231N_CORRECT}")
    assert styles.detect(path) == "cs231n"
    assert not marker.exists()
    assert styles.detect("package.module:func") == "native"
    assert styles.detect(str(tmp_path / "absent.py")) == "native"


def test_choose_keeps_programs_callables_and_builtin_targets_native():
    assert styles.choose(None, cmd="./kernel", style=None, layout="nc") == "native"
    assert styles.choose(print, cmd=None, style="native", layout="nc") == "native"
    assert styles.choose("torch", cmd=None, style=None, layout="nc") == "native"
    with pytest.raises(InputError, match="unknown style 'keras'"):
        styles.choose("f.py:f", cmd=None, style="keras", layout="nc")


def test_the_python_api_takes_a_style():
    import bncli

    report = bncli.audit(str(EXAMPLES / "cs231n_layers.py"), style="cs231n", cases=["unit"], dtypes=["float64"])
    assert report.verdict == "PASS"
    assert report.target.endswith(" as cs231n")
