"""The numeric core against independent references and invariants."""

from __future__ import annotations

import warnings

import datasets
import exact
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from bncli import core

RTOL = 1e-12


def assert_columns_close(actual, expected, rtol=RTOL, scale=None):
    """|actual − expected| ≤ rtol · (the column's largest |expected|, or a given scale)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    if scale is None:
        scale = np.max(np.abs(expected), axis=0)
    error = np.max(np.abs(actual - expected), axis=0)
    assert np.all(error <= rtol * scale), f"error {error} > {rtol} × {scale}"


@pytest.fixture(params=["unit", "blood", "mixed", "offset", "tiny", "huge"])
def case(request):
    rng = np.random.default_rng(7)
    x = datasets.named(rng)[request.param]
    w, b = datasets.parameters(rng, x.shape[1])
    g = rng.standard_normal(x.shape)
    return x, g, w, b


def test_forward_and_backward_match_the_exact_reference(case):
    x, g, w, b = case
    ref = exact.batchnorm(x, g, w, b)
    bn = core.forward(x, w, b)
    grads = core.backward(g, bn)
    for name in ("mean", "var", "std"):
        np.testing.assert_allclose(getattr(bn, name), ref[name], rtol=RTOL, err_msg=name)
    assert_columns_close(bn.s, ref["s"])
    assert_columns_close(bn.y - b, ref["y"] - b)
    assert_columns_close(grads.dx, ref["dx"])
    np.testing.assert_allclose(grads.dw, ref["dw"], rtol=RTOL)
    np.testing.assert_allclose(grads.db, ref["db"], rtol=RTOL)
    for column in range(x.shape[1]):
        assert_columns_close(core.jacobian(bn, column), ref["jacobian"][column])


def test_hand_computed_small_case():
    # x = (1, 2, 3): m = 2, v = 2/3, σ = sqrt(2/3 + ε), s = (−1, 0, 1)/σ.
    x = np.array([[1.0], [2.0], [3.0]])
    eps = 1e-5
    sigma = np.sqrt(2 / 3 + eps)
    bn = core.forward(x, 2.0, 0.5, eps)
    np.testing.assert_allclose(bn.s[:, 0], np.array([-1, 0, 1]) / sigma, rtol=1e-15)
    np.testing.assert_allclose(bn.y[:, 0], 2 * np.array([-1, 0, 1]) / sigma + 0.5, rtol=1e-15)
    g = np.array([[1.0], [0.0], [0.0]])
    grads = core.backward(g, bn)
    # dx = gᵀJ = first row of J = (2/(3σ))·(3 − 1 − s₁², −1 − s₁s₂, −1 − s₁s₃)
    s = bn.s[:, 0]
    expected = 2 / (3 * sigma) * np.array([2 - s[0] ** 2, -1 - s[0] * s[1], -1 - s[0] * s[2]])
    np.testing.assert_allclose(grads.dx[:, 0], expected, rtol=1e-14)
    assert grads.dw[0] == pytest.approx(-1 / sigma, rel=1e-15)
    assert grads.db[0] == 1.0


def test_refined_mean_keeps_the_variance_of_offset_data():
    rng = np.random.default_rng(3)
    x = 1e8 + rng.standard_normal((1000, 1))
    ref = exact.batchnorm(x[:50], x[:50], 1.0, 0.0)
    bn = core.forward(x[:50])
    assert abs(bn.var[0] / ref["var"][0] - 1) < 1e-14
    one_pass = np.mean(x[:50] ** 2) - np.mean(x[:50]) ** 2  # the formula bncli must not use
    assert abs(one_pass / ref["var"][0] - 1) > 1e-3


def test_constant_column_is_defined_because_eps_is_positive():
    x = np.column_stack([np.full(5, 0.1), np.arange(5.0)])
    bn = core.forward(x, 1.5, 0.25)
    assert np.all(np.abs(bn.s[:, 0]) < 1e-20)
    np.testing.assert_allclose(bn.y[:, 0], 0.25)
    assert bn.std[0] == pytest.approx(np.sqrt(1e-5), rel=1e-15)
    k = 5
    expected = 1.5 / (k * np.sqrt(1e-5)) * (k * np.eye(k) - 1)
    np.testing.assert_allclose(core.jacobian(bn, 0), expected, rtol=1e-12)


def test_single_row_is_degenerate_but_defined():
    bn = core.forward(np.array([[3.0, -7.0]]), 2.0, [0.5, 1.5])
    np.testing.assert_array_equal(bn.s, 0)
    np.testing.assert_array_equal(bn.y, [[0.5, 1.5]])
    grads = core.backward(np.array([[1.0, 2.0]]), bn)
    np.testing.assert_array_equal(grads.dx, 0)
    np.testing.assert_array_equal(core.jacobian(bn, 0), 0)


def test_eps_zero_on_a_constant_column_names_it():
    with pytest.raises(core.ZeroVarianceError) as raised:
        core.forward(np.array([[1.0, 1.0], [2.0, 1.0]]), eps=0.0)
    assert raised.value.columns == [1]


@pytest.mark.parametrize("magnitude", [1e150, 1e200, 1e300])
def test_huge_values_do_not_overflow(magnitude):
    rng = np.random.default_rng(5)
    base = rng.standard_normal((8, 2))
    bn = core.forward(base * magnitude, 1.0, 0.0)
    reference = core.forward(base, 1.0, 0.0, eps=1e-5 / magnitude**2 if magnitude < 1e154 else 0.0)
    assert np.all(np.isfinite(bn.s)) and np.all(np.isfinite(bn.y))
    assert_columns_close(bn.s, reference.s, rtol=1e-14)
    grads = core.backward(rng.standard_normal((8, 2)), bn)
    assert np.all(np.isfinite(grads.dx))
    if magnitude < 1e154:
        assert np.all(np.isfinite(bn.var))
    else:
        assert np.all(np.isinf(bn.var))  # not representable: the CLI refuses to print it


@pytest.mark.parametrize("magnitude", [1e-150, 1e-160, 1e-200, 1e-300, 1e-310, 1e-318])
def test_tiny_values_with_eps_zero_keep_their_variance(magnitude):
    """Scaled by powers of two, tiny data normalize as their order-1 originals do (subnormals too)."""
    base = np.array([[1.0, -3.0], [2.0, 5.0], [4.0, 0.5], [-1.0, 2.0]])
    x = base * magnitude  # subnormal below 2.2e-308: the data themselves have fewer digits
    reference = core.forward(x / magnitude, 1.0, 0.0, eps=0.0)
    bn = core.forward(x, 1.0, 0.0, eps=0.0)
    rtol = 1e-14 if magnitude > 1e-300 else 1e-4
    assert_columns_close(bn.s, reference.s, rtol=rtol)
    assert_columns_close(bn.std, reference.std * magnitude, rtol=rtol)
    g = np.array([[1.0, 2.0], [-1.0, 0.5], [0.25, 1.0], [3.0, -2.0]])
    dx = core.backward(g * magnitude, bn).dx  # w·g/σ stays of order 1
    assert_columns_close(dx, core.backward(g, reference).dx, rtol=rtol)


@pytest.mark.parametrize("dtype, top", [(np.float64, 1.7e308), (np.float32, 3.4e38)])
def test_data_at_the_top_of_the_float_range_are_normalized(dtype, top):
    """The power-of-two unit is 2^(e−1), not 2^e, which overflows for |x| ≥ 2^1023 (2^127)."""
    x = np.array([[top], [-top], [0.0]], dtype=dtype)
    bn = core.forward(x, 1.0, 0.0, eps=0.0)
    np.testing.assert_allclose(
        bn.s[:, 0], [np.sqrt(1.5), -np.sqrt(1.5), 0.0], rtol=1e-6 if dtype == np.float32 else 1e-15
    )


def test_overflowing_results_are_inf_without_warnings():
    """y, dx beyond the float range are inf (the CLI names them); numpy warns about nothing."""
    x = np.array([[1.0], [2.0], [4.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bn = core.forward(x, 1e308, 1e308)
        assert np.isinf(bn.y).any()
        huge_dy = core.backward(np.array([[1.7e308], [1e308], [-1.7e308]]), core.forward(x))
        assert np.isinf(huge_dy.dw).all() and np.isfinite(huge_dy.dx).all()  # Σ g·s ≈ -2.3e308; dx ≈ 2e307
        far = core.forward_eval(np.array([[-1e308], [2.0]]), np.array([1e308]), np.array([1.0]))
        assert np.isinf(far.y).any()


def test_float32_is_computed_in_float32():
    x = np.random.default_rng(0).standard_normal((6, 2)).astype(np.float32)
    bn = core.forward(x, np.float32(1), np.float32(0))
    assert bn.y.dtype == np.float32
    assert core.backward(x, bn).dx.dtype == np.float32


def test_complex_input_gives_exact_derivatives():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((7, 2))
    bn = core.forward(x)
    h = 1e-30
    column = core.jacobian(bn, 0)[:, 3]
    perturbed = x.astype(complex)
    perturbed[3, 0] += 1j * h
    np.testing.assert_allclose(core.forward(perturbed).y[:, 0].imag / h, column, rtol=1e-13, atol=1e-15)


def test_eval_mode_uses_the_running_statistics():
    x = np.array([[1.0, 4.0], [3.0, 8.0]])
    bn = core.forward_eval(x, np.array([1.0, 2.0]), np.array([4.0, 9.0]), 2.0, 1.0, eps=0.0)
    np.testing.assert_allclose(bn.y, [[1.0, 1 + 2 * 2 / 3], [3.0, 1 + 2 * 6 / 3]])
    grads = core.backward(np.ones((2, 2)), bn)
    np.testing.assert_allclose(grads.dx, [[1.0, 2 / 3], [1.0, 2 / 3]])
    np.testing.assert_allclose(core.jacobian(bn, 1), np.diag([2 / 3, 2 / 3]))


def test_running_update_matches_the_pytorch_rule():
    x = np.array([[1.0], [2.0], [6.0]])
    bn = core.forward(x)
    mean, var = core.update_running(np.zeros(1), np.ones(1), bn, momentum=0.1)
    assert mean[0] == pytest.approx(0.9 * 0 + 0.1 * 3.0)
    assert var[0] == pytest.approx(0.9 * 1 + 0.1 * 7.0)  # unbiased variance of (1, 2, 6) is 7
    with pytest.raises(ValueError):
        core.update_running(np.zeros(1), np.ones(1), core.forward(x[:1]), 0.1)


# ------------------------------------------------------------------ properties

finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
matrices = hnp.arrays(np.float64, st.tuples(st.integers(2, 12), st.integers(1, 4)), elements=finite)


def _spread_enough(x):
    return np.all(np.ptp(x, axis=0) > 1e-3)


@settings(max_examples=60, deadline=None)
@given(matrices, st.integers(-(10**6), 10**6))
def test_shift_invariance(x, shift):
    x = np.round(x)  # integers: x + shift is exact
    if not _spread_enough(x):
        return
    a, b = core.forward(x), core.forward(x + float(shift))
    assert_columns_close(b.s, a.s, rtol=1e-12, scale=np.ones(x.shape[1]))


@settings(max_examples=60, deadline=None)
@given(matrices, st.floats(0.1, 10))
def test_jacobian_is_symmetric_and_its_rows_sum_to_zero(x, w):
    bn = core.forward(x, w)
    k = x.shape[0]
    for column in range(x.shape[1]):
        jac = core.jacobian(bn, column)
        np.testing.assert_array_equal(jac, jac.T)
        u = w / (k * bn.std[column])
        assert np.all(np.abs(jac.sum(axis=1)) <= 1e-12 * u * k * k)


@settings(max_examples=60, deadline=None)
@given(matrices, st.data())
def test_dx_sums_to_zero_equals_gJ_and_keeps_the_shape(x, data):
    g = data.draw(hnp.arrays(np.float64, x.shape, elements=st.floats(-10, 10)))
    bn = core.forward(x, 1.5)
    grads = core.backward(g, bn)
    assert grads.dx.shape == x.shape and bn.y.shape == x.shape
    k = x.shape[0]
    u = 1.5 / (k * bn.std)
    scale = u * k * (np.abs(g).sum(axis=0) + 1e-300)
    assert np.all(np.abs(grads.dx.sum(axis=0)) <= 1e-12 * scale * k)
    for column in range(x.shape[1]):
        explicit = g[:, column] @ core.jacobian(bn, column)
        assert np.all(np.abs(grads.dx[:, column] - explicit) <= 1e-12 * scale[column] * k)


# ------------------------------------------------------- extreme scales side by side (issue 21)


def _beside(rng, *magnitudes, k=7):
    return rng.standard_normal((k, len(magnitudes))) * np.array(magnitudes)


@pytest.mark.parametrize(
    "dtype, magnitudes",
    [
        (np.float64, (1e-300, 1e300)),
        (np.float64, (1e-300, 1.0, 1e300)),
        (np.float64, (1e-320, 1e-150, 1e150)),
        (np.float32, (1e-23, 1e20)),
        (np.float32, (1e-38, 1.0, 3e37)),
    ],
)
@pytest.mark.parametrize("eps", [1e-5, 0.0])
def test_each_column_is_computed_as_it_is_alone(dtype, magnitudes, eps):
    """A tiny column beside a huge one (its own power-of-two unit, or none) is what it is alone."""
    rng = np.random.default_rng(21)
    x = _beside(rng, *magnitudes).astype(dtype)
    g = rng.standard_normal(x.shape).astype(dtype)
    w, b = np.linspace(0.5, 2, x.shape[1]).astype(dtype), np.zeros(x.shape[1], dtype)
    bn = core.forward(x, w, b, eps)
    grads = core.backward(g, bn)
    for c in range(x.shape[1]):
        alone = core.forward(x[:, [c]], w[[c]], b[[c]], eps)
        alone_grads = core.backward(g[:, [c]], alone)
        for name in ("mean", "var", "std"):
            np.testing.assert_array_equal(getattr(bn, name)[c], getattr(alone, name)[0], err_msg=name)
        for name, ours, theirs in (
            ("s", bn.s[:, c], alone.s[:, 0]),
            ("y", bn.y[:, c], alone.y[:, 0]),
            ("dx", grads.dx[:, c], alone_grads.dx[:, 0]),
            ("dw", grads.dw[c], alone_grads.dw[0]),
            ("db", grads.db[c], alone_grads.db[0]),
            ("jacobian", core.jacobian(bn, c), core.jacobian(alone, 0)),
        ):
            np.testing.assert_array_equal(ours, theirs, err_msg=f"{name} of column {c}")
        assert np.all(np.isfinite(bn.s[:, c])) and np.isfinite(grads.dw[c]), c  # not all zeros
        assert np.any(bn.s[:, c] != 0) and grads.dw[c] != 0, c


@pytest.mark.parametrize("eps", [1e-5, 0.0])
def test_a_file_from_1e_minus_300_to_1e300_matches_the_exact_reference(eps):
    rng = np.random.default_rng(3)
    x = _beside(rng, 1e-300, 1e-200, 1e-100, 1.0, 1e100, 1e200, 1e300)
    g = rng.standard_normal(x.shape)
    w = np.array([1.0, 2.0, 0.5, 1.0, 3.0, 1.0, 0.25])
    b = np.zeros(7)
    ref = exact.batchnorm(x, g, w, b, eps=eps)
    bn = core.forward(x, w, b, eps)
    grads = core.backward(g, bn)
    assert_columns_close(bn.s, ref["s"])
    assert_columns_close(bn.y, ref["y"])
    assert_columns_close(grads.dx, ref["dx"])
    np.testing.assert_allclose(grads.dw, ref["dw"], rtol=RTOL)
    np.testing.assert_allclose(grads.db, ref["db"], rtol=RTOL)
    np.testing.assert_allclose(bn.mean, ref["mean"], rtol=RTOL)
    for column in range(x.shape[1]):
        assert_columns_close(core.jacobian(bn, column), ref["jacobian"][column])


def _float32_rounding(values) -> np.ndarray:
    """The float32 nearest to each float64 value: what a correct float32 result prints."""
    return np.asarray(values, dtype=np.float64).astype(np.float32)


def test_float32_subnormal_data_give_correctly_rounded_dw():
    """float32 data of ~1e-45: dw (subnormal) is the exact value rounded once, its sign right.

    The residual mean of such data rounds to the subnormal grid, which shifted every s alike
    (dw off by ~db·0.7e-45/σ, enough to flip its sign); they are now centered in units of their own.
    """
    tiny = np.float32(np.finfo(np.float32).smallest_subnormal)
    for seed in range(20):
        rng = np.random.default_rng(seed)
        x = (rng.integers(-20, 21, (9, 1)) * tiny).astype(np.float32)
        g = rng.standard_normal((9, 1)).astype(np.float32)
        ref = exact.batchnorm(x.astype(np.float64), g.astype(np.float64), 1.0, 0.0)
        grads = core.backward(g, core.forward(x, np.float32(1), np.float32(0)))
        expected = _float32_rounding(ref["dw"])
        assert np.abs(grads.dw.astype(np.float64) - expected) <= tiny, (seed, grads.dw, ref["dw"])
        assert np.sign(grads.dw[0]) == np.sign(ref["dw"][0]) or ref["dw"][0] == 0, seed
        assert_columns_close(grads.dx, ref["dx"], rtol=1e-5)


def test_subnormal_float64_data_beside_eps_give_correct_s():
    """The same in float64 (data of ~1e-320 with ε = 1e-5): s = x/√ε, each rounded once."""
    tiny = np.finfo(np.float64).smallest_subnormal
    x = np.array([[3.0], [-5.0], [11.0], [0.0], [-2.0]]) * tiny
    g = np.array([[1.0], [-2.0], [0.5], [3.0], [1.5]])
    ref = exact.batchnorm(x, g, 1.0, 0.0)
    grads = core.backward(g, core.forward(x))
    np.testing.assert_allclose(grads.dw, ref["dw"], rtol=1e-3)  # dw itself is subnormal there
    assert_columns_close(grads.dx, ref["dx"])


@pytest.mark.parametrize("w", [1e308, -1e308, 1e-308])
def test_y_is_computed_where_weight_over_sigma_leaves_the_range(w):
    """w/σ (or w·(1/σ)) overflows or underflows though y = w·s is representable."""
    x = np.array([[0.001], [0.002], [0.004]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bn = core.forward(x, w, 0.0)
        expected = core.forward(x).s * w
        np.testing.assert_allclose(bn.y, expected, rtol=1e-15)
        assert np.all(np.isfinite(bn.y))


def test_dx_is_computed_where_weight_over_sigma_underflows():
    """w = 1e-300 beside σ = 1e300: w/σ underflows to 0, though dx = (w/σ)·O(g) is 1e-300·g/σ·…"""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((6, 1)) * 1e300
    g = rng.standard_normal((6, 1)) * 1e300
    bn = core.forward(x, 1e-300, 0.0)
    unit = core.forward(x / 1e300, 1.0, 0.0, eps=0.0)
    dx = core.backward(g, bn).dx
    assert_columns_close(dx, core.backward(g / 1e300, unit).dx * 1e-300, rtol=1e-13)
    assert np.all(dx != 0)
