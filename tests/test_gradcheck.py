"""The gradient checker: correct gradients PASS and wrong ones FAIL, at every scale."""

from __future__ import annotations

import datasets
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bncli import core, numdiff
from bncli import gradcheck as gc

METHODS = ["central", "complex"]


def make_case(x, seed=0, dy=None):
    rng = np.random.default_rng(seed)
    w, b = datasets.parameters(rng, x.shape[1])
    dy = rng.standard_normal(x.shape) if dy is None else dy
    problem = gc.Problem(x, dy, w, b, 1e-5)
    bn = core.forward(x, w, b)
    grads = core.backward(dy, bn)
    jac = {c: core.jacobian(bn, c) for c in range(x.shape[1])}
    return problem, gc.CheckedGradients(grads.dx, grads.dw, grads.db, jac)


def check(problem, gradient, method, **kwargs):
    return gc.check_gradients(problem, gradient, method=method, **kwargs)


def with_constant_columns(rng):
    x = rng.standard_normal((8, 3))
    x[:, 1] = 42.0
    return x


CASES = {name: x for name, x in datasets.named(np.random.default_rng(11)).items()}
CASES["constant column"] = with_constant_columns(np.random.default_rng(1))
CASES["large k"] = np.random.default_rng(4).standard_normal((1500, 2)) * 1e9 + 3e10


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", list(CASES))
def test_correct_gradients_pass(name, method):
    problem, gradient = make_case(CASES[name])
    if name == "large k":
        gradient = gc.CheckedGradients(gradient.dx, gradient.dw, gradient.db)
    report = check(problem, gradient, method)
    assert report.passed, {q: c.max_rel_error for q, c in report.results.items()}
    assert set(report.results) == ({"dx", "dw", "db"} | ({"jacobian"} if gradient.jacobian else set()))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", ["unit", "blood", "mixed", "offset", "tiny", "huge"])
def test_one_wrong_element_fails_and_is_located(name, method):
    problem, gradient = make_case(CASES[name])
    dx = gradient.dx.copy()
    column = dx.shape[1] - 1
    row = int(np.argmax(np.abs(dx[:, column])))
    dx[row, column] *= 1 + 1e-3
    report = check(problem, gc.CheckedGradients(dx=dx), method)
    result = report.results["dx"]
    assert not report.passed
    assert (result.row, result.column) == (row, column)
    assert result.checked == dx[row, column]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", ["unit", "blood", "mixed", "offset", "tiny", "huge"])
def test_a_global_relative_error_fails(name, method):
    problem, gradient = make_case(CASES[name])
    report = check(problem, gc.CheckedGradients(dx=gradient.dx * (1 + 1e-4)), method)
    assert not report.passed


@pytest.mark.parametrize("method", METHODS)
def test_a_sign_flip_in_one_dw_fails_at_that_column(method):
    problem, gradient = make_case(CASES["blood"])
    dw = gradient.dw.copy()
    dw[2] = -dw[2]
    report = check(problem, gc.CheckedGradients(dw=dw, db=gradient.db), method)
    assert not report.results["dw"].passed and report.results["db"].passed
    assert report.results["dw"].column == 2 and report.results["dw"].row is None


@pytest.mark.parametrize("method", METHODS)
def test_constant_dy_gives_a_zero_dx_that_passes(method):
    x = CASES["blood"]
    dy = np.random.default_rng(0).standard_normal(x.shape)
    dy[:, 1] = 0.37
    problem, gradient = make_case(x, dy=dy)
    assert np.all(np.abs(gradient.dx[:, 1]) < 1e-12 * np.abs(gradient.dx[:, 0]).max())
    assert check(problem, gradient, method).passed
    exactly_zero = gradient.dx.copy()
    exactly_zero[:, 1] = 0.0
    assert check(problem, gc.CheckedGradients(dx=exactly_zero), method).passed


def test_common_derivation_mistakes_fail():
    problem, gradient = make_case(CASES["unit"])
    bn = core.forward(problem.x, problem.weight, problem.bias)
    k = problem.x.shape[0]
    g, w = problem.dy, problem.weight
    forgot_mean_term = w / (k * bn.std) * (k * g - bn.s * gradient.dw)
    unbiased = core.backward(g, core.forward(problem.x, w, problem.bias, eps=1e-5)).dx * np.sqrt((k - 1) / k)
    for wrong in (forgot_mean_term, unbiased, w / bn.std * g):
        assert not check(problem, gc.CheckedGradients(dx=wrong), "central").passed


@pytest.mark.parametrize("method", METHODS)
def test_probes_pass_correct_and_fail_wrong_gradients(method):
    problem, gradient = make_case(CASES["mixed"])
    assert check(problem, gradient, method, probes=8).passed
    wrong = gc.CheckedGradients(dx=gradient.dx * (1 + 1e-4), jacobian=gradient.jacobian)
    report = check(problem, wrong, method, probes=8)
    assert not report.results["dx"].passed and report.results["jacobian"].passed
    assert report.results["dx"].row is None


def test_wrong_jacobian_element_is_located():
    problem, gradient = make_case(CASES["unit"])
    jac = {c: j.copy() for c, j in gradient.jacobian.items()}
    jac[1][3, 5] += 1e-3 * np.abs(jac[1]).max()
    report = check(problem, gc.CheckedGradients(jacobian=jac), "central")
    result = report.results["jacobian"]
    assert not result.passed and (result.column, result.row, result.wrt_row) == (1, 3, 5)


def test_against_reports_the_distance_from_the_analytic_gradient():
    problem, ours = make_case(CASES["blood"])
    theirs = gc.CheckedGradients(dx=ours.dx * (1 + 1e-15), db=ours.db)
    report = check(problem, theirs, "complex", analytic=ours)
    assert report.passed and set(report.results) == {"dx", "db"}
    assert report.results["dx"].analytic_rel_error < 1e-14


def test_float32_gradients_pass_the_float32_bound():
    for name in ("unit", "blood", "mixed"):
        x32 = CASES[name].astype(np.float32)
        rng = np.random.default_rng(0)
        w, b = datasets.parameters(rng, x32.shape[1])
        dy = rng.standard_normal(x32.shape).astype(np.float32)
        w32, b32 = w.astype(np.float32), b.astype(np.float32)
        bn = core.forward(x32, w32, b32)
        grads = core.backward(dy, bn)
        problem = gc.Problem(x32.astype(float), dy.astype(float), w32.astype(float), b32.astype(float), 1e-5)
        checked = gc.CheckedGradients(*(np.asarray(a, float) for a in (grads.dx, grads.dw, grads.db)))
        for method in METHODS:
            report = gc.check_gradients(
                problem, checked, method=method, precision=gc.Precision(numdiff.unit_roundoff(np.float32))
            )
            assert report.passed, (name, method, {q: c.max_rel_error for q, c in report.results.items()})
            assert report.results["dx"].max_rel_error > 1e-9  # float32 rounding is visible: the bound must allow it


def test_sweep_shows_the_truncation_rounding_trade_off():
    problem, gradient = make_case(CASES["unit"])
    report = check(problem, gc.CheckedGradients(dx=gradient.dx), "central", sweep=True)
    errors = {p.step: p.max_rel_error for p in report.sweep}
    assert [p.is_default for p in report.sweep].count(True) == 1
    assert errors[1e-1] > 1e-7 > 1e3 * errors[1e-3]  # truncation at large steps: O(h⁴) after Richardson
    assert errors[1e-12] > errors[1e-5]  # rounding at small steps


def test_eval_mode_check():
    x = CASES["blood"]
    rng = np.random.default_rng(0)
    running = (x.mean(axis=0) * 1.01, x.var(axis=0) * 0.9)
    w, b = datasets.parameters(rng, x.shape[1])
    dy = rng.standard_normal(x.shape)
    problem = gc.Problem(x, dy, w, b, 1e-5, running)
    bn = core.forward_eval(x, *running, w, b)
    grads = core.backward(dy, bn)
    jac = {c: core.jacobian(bn, c) for c in range(x.shape[1])}
    for method in METHODS:
        assert check(problem, gc.CheckedGradients(grads.dx, grads.dw, grads.db, jac), method).passed
    training_dx = core.backward(dy, core.forward(x, w, b)).dx
    assert not check(problem, gc.CheckedGradients(dx=training_dx), "central").passed


def test_scale_shortcuts_match_the_element_scales():
    for running in (None, (np.zeros(3), np.ones(3))):
        rng = np.random.default_rng(9)
        x, dy = rng.standard_normal((7, 3)), rng.standard_normal((7, 3))
        w = np.array([0.5, -2.0, 1.5])
        problem = gc.Problem(x, dy, w, np.zeros(3), 1e-5, running)
        scales = numdiff.NaturalScales(problem.forward(x), dy, w)
        np.testing.assert_allclose(scales.dx_column_sums(), scales.dx.sum(axis=0), rtol=1e-13)
        np.testing.assert_allclose(scales.jacobian_row_sums([0, 2]), scales.jacobians([0, 2]).sum(axis=2), rtol=1e-13)


@pytest.mark.parametrize("method", METHODS)
def test_huge_bias_and_vanishing_columns_pass(method):
    x = np.column_stack([np.arange(6.0), 1e-300 * np.array([5, -3, 1, 2, -4, 0.5])])
    dy = np.random.default_rng(1).standard_normal(x.shape)
    w, b = np.array([1.5, 0.5]), np.array([1e308, -1e300])
    bn = core.forward(x, w, b)
    grads = core.backward(dy, bn)
    problem = gc.Problem(x, dy, w, b, 1e-5)
    assert check(problem, gc.CheckedGradients(grads.dx, grads.dw, grads.db), method).passed


def test_a_step_lost_in_rounding_is_refused():
    problem, gradient = make_case(CASES["offset"])
    with pytest.raises(gc.StepError) as raised:
        gc.check_gradients(problem, gc.CheckedGradients(dx=gradient.dx), step=1e-30)
    assert raised.value.columns == [0, 1]


@settings(max_examples=60, deadline=None)
@given(
    st.integers(2, 40),
    st.integers(1, 4),
    st.integers(0, 2**32 - 1),
    st.floats(-6, 12),
    st.floats(0, 1e9),
    st.sampled_from(METHODS),
)
def test_verdicts_hold_for_random_data_at_random_scales(k, n, seed, log_scale, offset, method):
    """Correct gradients PASS and a 1e-4 relative error FAILS, for magnitudes 1e-6…1e12 and offsets."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((k, n)) * 10**log_scale + rng.uniform(-1, 1, n) * offset * 10 ** (log_scale / 2)
    w, b = datasets.parameters(rng, n)
    dy = rng.standard_normal((k, n))
    bn = core.forward(x, w, b)
    grads = core.backward(dy, bn)
    problem = gc.Problem(x, dy, w, b, 1e-5)
    assert check(problem, gc.CheckedGradients(grads.dx, grads.dw, grads.db), method).passed
    scale = numdiff.NaturalScales(bn, dy, w).dx
    if np.max(np.abs(grads.dx) / scale) > 1e-2:  # dx not ~0 at its own scale (e.g. k = 2)
        assert not check(problem, gc.CheckedGradients(dx=grads.dx * (1 + 1e-4)), method).passed


def test_rounding_scale_shortcuts_match_the_element_scales():
    rng = np.random.default_rng(3)
    x, dy = rng.standard_normal((9, 3)) + [0.0, 1e3, -5.0], rng.standard_normal((9, 3))
    w, b = np.array([0.5, -2.0, 1.5]), np.array([1.0, 0.0, -3.0])
    bn = core.forward(x, w, b)
    scales = numdiff.RoundingScales(np.abs(bn.s), bn.mean, bn.std, w, b, np.abs(dy))
    np.testing.assert_allclose(scales.dx_column_sums(), scales.dx.sum(axis=0), rtol=1e-13)
    absg, o = np.abs(dy), 1 + np.abs(bn.mean) / bn.std
    np.testing.assert_allclose(scales.dw, 3 * (absg * (np.abs(bn.s) + o)).sum(axis=0), rtol=1e-13)  # ρ = √9
