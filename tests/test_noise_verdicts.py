"""grad --check judges each element against its own noise: sharp at every batch size (issue 17, part 1).

A gradient off by k/(k−1) (the unbiased variance in training mode) is the smallest classic
mistake: every dx and dw element is off by about 1/(2k), relative. Against a tolerance on the
natural scale it hid from k ≈ 10⁴ on; against the noise of the numerical derivative it fails at
every k up to 10⁶, with and without probes, in dx alone and in dw alone.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import run_process

from bncli import core, numdiff
from bncli import gradcheck as gc
from bncli.io import read


def unbiased_gradients(k: int, n: int = 3, seed: int = 0):
    """x, dy and the dx, dw of a batch norm whose variance divides by k − 1 (w = 1, b = 0)."""
    rng = np.random.default_rng(seed)
    x, dy = rng.standard_normal((k, n)), rng.standard_normal((k, n))
    std = np.sqrt(x.var(axis=0, ddof=1) + 1e-5)
    s = (x - x.mean(axis=0)) / std
    dw = (dy * s).sum(axis=0)
    dx = (dy - dy.mean(axis=0) - s * dw / k) / std
    return x, dy, dx, dw


def problem_of(x, dy):
    n = x.shape[1]
    return gc.Problem(x, dy, np.ones(n), np.zeros(n), 1e-5)


@pytest.mark.parametrize("k", [2, 3, 10, 100, 1000, 3000, 10_000, 100_000, 1_000_000])
def test_an_unbiased_variance_fails_in_dx_alone_and_in_dw_alone_at_every_k(k):
    x, dy, dx, dw = unbiased_gradients(k)
    problem = problem_of(x, dy)
    modes = [None, 8] if k <= 3000 else [8]  # the CLI compares every element up to k²·n = 1e8
    for probes in modes:
        for wrong in (gc.CheckedGradients(dx=dx), gc.CheckedGradients(dw=dw)):
            report = gc.check_gradients(problem, wrong, probes=probes)
            (comparison,) = report.results.values()
            assert not report.passed, (k, probes, comparison)
            assert comparison.error_over_noise > 5 * gc.NOISE_MULTIPLE  # by a margin, not by luck


@pytest.mark.parametrize("k", [2, 10, 1000, 100_000])
def test_correct_gradients_stay_far_below_the_bound_at_every_k(k):
    rng = np.random.default_rng(k)
    x, dy = rng.standard_normal((k, 3)) * [1e-6, 1.0, 1e12] + [0.0, 1e8, 0.0], rng.standard_normal((k, 3))
    w, b = np.array([0.5, -2.0, 1.5]), np.array([1.0, 0.0, -3.0])
    grads = core.backward(dy, core.forward(x, w, b))
    problem = gc.Problem(x, dy, w, b, 1e-5)
    for probes in [None, 8] if k <= 1000 else [8]:
        report = gc.check_gradients(problem, gc.CheckedGradients(grads.dx, grads.dw, grads.db), probes=probes)
        assert report.passed and all(c.error_over_noise < gc.NOISE_MULTIPLE / 4 for c in report.results.values())


def test_the_noise_is_reported_on_the_natural_scale_and_error_over_noise_at_the_worst_element():
    x, dy, dx, _ = unbiased_gradients(50)
    comparison = gc.check_gradients(problem_of(x, dy), gc.CheckedGradients(dx=dx)).results["dx"]
    assert comparison.over_noise == comparison.error_over_noise  # the verdict's element is the worst one
    assert comparison.abs_error == pytest.approx(abs(comparison.checked - comparison.numerical))
    assert 0 < comparison.noise < 1e-8 < comparison.max_rel_error


def test_rtol_bounds_the_error_on_the_natural_scale_as_a_user_sets_it():
    x, dy, dx, _ = unbiased_gradients(20_000)
    problem = problem_of(x, dy)
    loose = gc.check_gradients(problem, gc.CheckedGradients(dx=dx), probes=8, rtol=1e-6)
    assert loose.passed and loose.rtol == 1e-6 and loose.noise_multiple is None
    assert not gc.check_gradients(problem, gc.CheckedGradients(dx=dx), probes=8).passed


def test_gradients_printed_with_float32_precision_are_judged_at_that_precision():
    rng = np.random.default_rng(0)
    full = gc.evident_precision(rng.standard_normal(100))
    assert full.unit == pytest.approx(1.1e-16, rel=0.01) and full.printed == 0 and not full.exact_mean
    assert gc.evident_precision(rng.standard_normal(100).astype(np.float32).astype(float)).unit > 5e-8
    six_digits = gc.evident_precision(np.array([float(f"{v:.6g}") for v in rng.standard_normal(100)]))
    assert six_digits.printed == pytest.approx(5e-6) and six_digits.unit < 1e-15  # rounded in print, per element


def test_a_wrong_gradient_printed_with_6_digits_fails_and_a_float32_one_at_an_offset_float32_cannot_resolve():
    """Found by a hostile run: 6 digits widened the whole budget (an unbiased-variance dx passed), and
    float32 numbers at data of 1e8 + N(0, 1) let any dx pass, a constant included."""
    x, dy, dx, _ = unbiased_gradients(3000)
    six = np.array([[float(f"{v:.6g}") for v in row] for row in dx])
    precision = gc.evident_precision(six)
    assert not gc.check_gradients(problem_of(x, dy), gc.CheckedGradients(dx=six), precision=precision).passed
    rng = np.random.default_rng(2)
    offset = 1e8 + rng.standard_normal((10, 3))
    dy = rng.standard_normal((10, 3))
    constant = np.full((10, 3), 0.5, dtype=np.float32).astype(float)
    precision = gc.evident_precision(constant)
    assert not gc.check_gradients(problem_of(offset, dy), gc.CheckedGradients(dx=constant), precision=precision).passed


def test_bncli_s_own_float32_gradients_pass_beside_an_offset_column():
    """Found by a hostile run: columns 1e-8·N, 1e8 + N, 1e8·N at k = 3000 in float32 FAILed at 13.6 noise."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3000, 3)) * [1e-8, 1.0, 1e8] + [0.0, 1e8, 0.0]
    x32, dy32 = x.astype(np.float32), rng.standard_normal((3000, 3)).astype(np.float32)
    ones, zeros = np.ones(3, np.float32), np.zeros(3, np.float32)
    grads = core.backward(dy32, core.forward(x32, ones, zeros))
    problem = gc.Problem(x32.astype(float), dy32.astype(float), np.ones(3), np.zeros(3), 1e-5)
    checked = gc.CheckedGradients(*(np.asarray(a, float) for a in (grads.dx, grads.dw, grads.db)))
    precision = gc.Precision(numdiff.unit_roundoff(np.float32), exact_mean=False)
    assert gc.check_gradients(problem, checked, precision=precision).passed


def write_csv(path, values, header="a,b,c"):
    np.savetxt(path, values, delimiter=",", header=header, comments="", fmt="%.17g")


@pytest.mark.parametrize("k, mode, hidden_before", [(20_000, [], True), (2_000, ["--no-fast"], False)])
def test_grad_against_an_unbiased_dx_fails_where_it_used_to_pass(tmp_path, k, mode, hidden_before):
    """The issue's table: at k = 20,000 the automatic probes said PASS ("4.6e-07")."""
    x, dy, dx, _ = unbiased_gradients(k)
    for name, values in (("x.csv", x), ("dy.csv", dy), ("dx.csv", dx)):
        write_csv(tmp_path / name, values)
    run = run_process("grad", tmp_path / "x.csv", "--dy", tmp_path / "dy.csv", "--against", tmp_path / "dx.csv",
                      *mode, "--only", "check", "-f", "json")  # fmt: skip
    assert run.returncode == 1, run.stderr.decode()
    import json

    result = json.loads(run.stdout)["check"]["results"]["dx"]
    assert not result["passed"] and result["error_over_noise"] > 5 * gc.NOISE_MULTIPLE
    if hidden_before:
        assert result["max_rel_error"] < 1e-6  # what a natural-scale tolerance of 1e-6 passed
    assert "FAIL: dx" in run.stderr.decode()


# ------------------------------ numbers printed with a fixed number of decimals (%.6f, round(x, 3))


@pytest.mark.parametrize("decimals", [3, 6])
def test_a_gradient_printed_with_fixed_decimals_passes_when_correct_and_fails_when_unbiased(tmp_path, decimals):
    """Found in round 3: a correct dx written with %.6f FAILed (an element of 1e-9 printed as 0), as the
    rounding in print was taken as relative only, from the most significant digits any number had."""
    names = (read.SAMPLE_NAME, read.SAMPLE_DY_NAME)
    sample, sample_dy = (read.read_matrix(str(read.sample_path(name))) for name in names)
    x, dy, k = sample.values, sample_dy.values, len(sample.values)
    correct = core.backward(dy, core.forward(x)).dx  # elements from 4e-13 to 0.09
    std = np.sqrt(x.var(axis=0, ddof=1) + 1e-5)
    s = (x - x.mean(axis=0)) / std
    unbiased = (dy - dy.mean(axis=0) - s * (dy * s).sum(axis=0) / k) / std
    for dx, code in ((correct, 0), (unbiased, 1)):
        given = tmp_path / "dx.csv"
        np.savetxt(given, dx, delimiter=",", header=",".join(sample.columns), comments="", fmt=f"%.{decimals}f")
        run = run_process("grad", sample.source, "--dy", sample_dy.source, "--against", given, "-f", "json")
        assert run.returncode == code, run.stderr.decode()


def test_fixed_decimals_allow_half_a_unit_of_the_last_decimal_and_no_more():
    x, dy, wrong, _ = unbiased_gradients(3000)
    grads = core.backward(dy, core.forward(x))
    six = np.round(grads.dx, 6)
    precision = gc.evident_precision(six)
    assert precision.quantum == pytest.approx(5e-7)
    assert gc.check_gradients(problem_of(x, dy), gc.CheckedGradients(dx=six), precision=precision).passed
    six_wrong = np.round(grads.dx * 1.01, 6)
    precision = gc.evident_precision(six_wrong)
    assert not gc.check_gradients(problem_of(x, dy), gc.CheckedGradients(dx=six_wrong), precision=precision).passed
