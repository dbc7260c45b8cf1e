"""bncli explain: the article's derivation on one column, against core, the exact reference and the article."""

from __future__ import annotations

import json
import re
from io import StringIO

import datasets
import exact
import numpy as np
import pytest
from rich.console import Console

from bncli import core, explain, render
from bncli.errors import InputError
from bncli.io import read, write
from bncli.present import explain as present

CONTRACT_KEYS = [
    "column", "k", "eps", "weight", "bias", "x", "m", "v", "std", "s", "dm_dx", "dv_dx",
    "u", "R", "J", "dy", "dx_via_J", "dx", "dw", "db",
]  # fmt: skip


@pytest.fixture(scope="module")
def sample():
    """The bundled sample and its upstream gradient, as bncli grad reads them."""
    data = read.read_matrix(str(read.sample_path()))
    dy = read.read_matrix(str(read.sample_path(read.SAMPLE_DY_NAME))).values
    return data, dy


@pytest.fixture(params=["unit", "blood", "mixed", "offset", "tiny", "huge"])
def case(request):
    """Hidden-scale data (1e-6 … 1e12, large offsets), non-trivial w and b, a random dy."""
    rng = np.random.default_rng(13)
    x = datasets.named(rng)[request.param]
    w, b = datasets.parameters(rng, x.shape[1])
    return x, rng.standard_normal(x.shape), w, b


def dx_scale(s, g, w, k, std):
    """The natural scale of dx = gᵀ(uR): |u|·(k|g_i| + Σ|g| + |s_i|·Σ|g s|), from independent values."""
    return abs(w) / (k * std) * (k * np.abs(g) + np.abs(g).sum() + np.abs(s) * np.abs(g * s).sum())


def test_r_follows_the_articles_two_cases(case):
    x, g, w, b = case
    ref = exact.batchnorm(x, g, w, b)
    k = x.shape[0]
    for column in range(x.shape[1]):
        e = explain.explain_column(x, g, w, b, column=column)
        s = ref["s"][:, column]
        product = np.outer(s, s)
        diagonal = np.diag_indices(k)
        off = ~np.eye(k, dtype=bool)
        scale = 1 + np.abs(product) + k * np.eye(k)
        tolerance = 1e-14 * scale
        assert np.all(np.abs(e.R[diagonal] - (k - 1 - s * s)) <= tolerance[diagonal])
        assert np.all(np.abs(e.R[off] - (-1 - product[off])) <= tolerance[off])


def test_j_is_u_times_r_and_matches_the_exact_jacobian(case):
    x, g, w, b = case
    ref = exact.batchnorm(x, g, w, b)
    k = x.shape[0]
    for column in range(x.shape[1]):
        e = explain.explain_column(x, g, w, b, column=column)
        np.testing.assert_array_equal(e.J, e.u * e.R)
        np.testing.assert_allclose(e.u, w[column] / (k * ref["std"][column]), rtol=1e-14)
        scale = abs(e.u) * (1 + np.abs(np.outer(e.s, e.s)) + k * np.eye(k))
        assert np.all(np.abs(e.J - ref["jacobian"][column]) <= 1e-13 * scale)


def test_dy_times_j_equals_the_closed_form_at_natural_scale(case):
    x, g, w, b = case
    ref = exact.batchnorm(x, g, w, b)
    k = x.shape[0]
    for column in range(x.shape[1]):
        e = explain.explain_column(x, g, w, b, column=column)
        scale = dx_scale(ref["s"][:, column], g[:, column], w[column], k, ref["std"][column])
        assert np.max(np.abs(e.dx_via_J - e.dx) / scale) <= 1e-15
        assert e.dx_difference <= 1e-15
        # Both routes are right, not merely equal: the 50-digit dx is gᵀJ summed from the article's J.
        assert np.max(np.abs(e.dx - ref["dx"][:, column]) / scale) <= 1e-14
        assert np.max(np.abs(e.dx_via_J - ref["dx"][:, column]) / scale) <= 1e-14


def test_derivatives_of_m_and_v_and_their_central_differences(case):
    x, g, w, b = case
    ref = exact.batchnorm(x, g, w, b)
    k = x.shape[0]
    for column in range(x.shape[1]):
        e = explain.explain_column(x, g, w, b, column=column)
        np.testing.assert_array_equal(e.dm_dx, np.full(k, 1 / k))
        # 2(x_i − m)/k = 2·s_i·σ/k, both factors from the 50-digit reference.
        dv_dx = 2 * ref["s"][:, column] * ref["std"][column] / k
        np.testing.assert_allclose(e.dv_dx, dv_dx, rtol=0, atol=1e-15 * 2 * ref["std"][column])
        assert e.dm_dx_disagreement < 1e-8 and e.dv_dx_disagreement < 1e-8
        assert e.J_asymmetry == 0 and e.J_row_sum < 1e-15


def test_the_central_differences_catch_a_wrong_derivative():
    rng = np.random.default_rng(3)
    x, g = rng.standard_normal((8, 1)), rng.standard_normal((8, 1))
    e = explain.explain_column(x, g)
    problem = explain.gc.Problem(x, g, np.ones(1), np.zeros(1), core.DEFAULT_EPS)
    wrong = explain._checks(problem, e.dm_dx * 0.99, e.dv_dx / 2, e.J, e.dx_via_J - e.dx)
    assert wrong["dm_dx_disagreement"] > 1e-3 and wrong["dv_dx_disagreement"] > 0.1
    right = explain._checks(problem, e.dm_dx, e.dv_dx, e.J, e.dx_via_J - e.dx)
    assert right["dm_dx_disagreement"] < 1e-9 and right["dv_dx_disagreement"] < 1e-9


def test_on_the_sample_every_quantity_is_cores_whole_matrix_result_bit_for_bit(sample):
    data, dy = sample
    bn = core.forward(data.values, 1.0, 0.0, core.DEFAULT_EPS)
    grads = core.backward(dy, bn)
    for column, name in enumerate(data.columns):
        e = explain.explain_column(data.values, dy, column=column, name=name)
        obj = explanation_json_roundtrip(e)
        for key, expected in [
            ("x", data.values[:, column]),
            ("m", bn.mean[column]),
            ("v", bn.var[column]),
            ("std", bn.std[column]),
            ("s", bn.s[:, column]),
            ("J", core.jacobian(bn, column)),
            ("dy", dy[:, column]),
            ("dx", grads.dx[:, column]),
            ("dw", grads.dw[column]),
            ("db", grads.db[column]),
        ]:
            np.testing.assert_array_equal(getattr(e, key), expected, err_msg=key)
            np.testing.assert_array_equal(np.array(obj[key]), expected, err_msg=f"json {key}")


def test_on_the_sample_json_equals_what_grad_prints_to_the_last_digit(bncli, sample):
    data, dy = sample
    path = str(read.sample_path(read.SAMPLE_DY_NAME))
    run = bncli("grad", str(read.sample_path()), "--dy", path, "--jacobian", "-c", "Hb", "-f", "json")
    assert run.code == 0, run
    e = explanation_json_roundtrip(explain.explain_column(data.values, dy, column=3, name="Hb"))
    column = [row[3] for row in run.json["dx"]]
    assert e["dx"] == column
    assert e["dw"] == run.json["dw"][3] and e["db"] == run.json["db"][3]
    assert e["J"] == run.json["jacobian"]["Hb"]


def test_a_column_of_a_matrix_larger_than_cores_blocks_equals_the_whole_matrix_result():
    # 1100 × 500 float64 is 4.4 MB, more than core's 4 MiB row blocks: one column
    # computed alone would be summed in other blocks and may differ in the last bit.
    rng = np.random.default_rng(5)
    x, g = 1e8 + rng.standard_normal((1100, 500)), rng.standard_normal((1100, 500))
    bn = core.forward(x)
    grads = core.backward(g, bn)
    e = explain.explain_column(x, g, column=7)
    np.testing.assert_array_equal(e.dx, grads.dx[:, 7])
    np.testing.assert_array_equal(e.s, bn.s[:, 7])
    assert e.dw == grads.dw[7] and e.db == grads.db[7]


def test_float32_is_cores_float32_result():
    rng = np.random.default_rng(9)
    x, g = datasets.mixed_magnitudes(rng), rng.standard_normal((12, 5))
    x32, g32 = x.astype(np.float32), g.astype(np.float32)
    bn = core.forward(x32, np.ones(5, np.float32), np.zeros(5, np.float32))  # as grad casts w and b
    grads = core.backward(g32, bn)
    for column in range(5):
        e = explain.explain_column(x, g, column=column, dtype="float32")
        assert e.dtype == "float32" and e.dx.dtype == np.float32
        np.testing.assert_array_equal(e.dx, grads.dx[:, column])
        np.testing.assert_array_equal(e.J, core.jacobian(bn, column))
        assert e.dx_difference < 1e-6 and e.dv_dx_disagreement < 1e-5


def test_eval_mode_walks_the_inference_formula_to_a_diagonal_jacobian(sample):
    data, dy = sample
    mean, var = np.array([4.5e12, 7e9, 2.5e11, 140.0]), np.array([1e22, 1e18, 3e21, 30.0])
    w = np.array([0.5, -2.0, 1.5, 3.0])
    bn = core.forward_eval(data.values, mean, var, w, 0.0)
    grads = core.backward(dy, bn)
    k = data.shape[0]
    for column in range(4):
        e = explain.explain_column(data.values, dy, w, running=(mean, var), column=column)
        assert not e.training
        sigma = np.sqrt(var[column] + core.DEFAULT_EPS)
        assert e.m == mean[column] and e.v == var[column]
        np.testing.assert_allclose(e.u, w[column] / sigma, rtol=1e-15)
        np.testing.assert_array_equal(e.R, np.eye(k))
        np.testing.assert_array_equal(e.J, np.diag(np.diag(e.J)))  # diagonal
        np.testing.assert_array_equal(np.diag(e.J), e.u)
        np.testing.assert_array_equal(e.J, core.jacobian(bn, column))
        np.testing.assert_array_equal(e.dx, grads.dx[:, column])
        np.testing.assert_allclose(e.dx, e.u * dy[:, column], rtol=1e-15)
        np.testing.assert_array_equal(e.dm_dx, 0)
        np.testing.assert_array_equal(e.dv_dx, 0)
        assert e.dm_dx_numerical.max() == e.dv_dx_numerical.max() == 0
        assert e.dx_difference <= 1e-15
    text = "\n".join(present.context(e)) + str([note for step in present.steps(e) for note in step.notes])
    assert "eval mode" in text and "collapses to the diagonal" in text


def test_json_has_exactly_the_contracts_keys(sample):
    data, dy = sample
    e = explain.explain_column(data.values, dy, column=3, name="Hb")
    obj = explanation_json_roundtrip(e)
    assert list(obj) == CONTRACT_KEYS
    assert obj["column"] == "Hb" and obj["k"] == 10
    for key in ("x", "s", "dm_dx", "dv_dx", "dy", "dx_via_J", "dx"):
        assert len(obj[key]) == 10 and all(isinstance(v, float) for v in obj[key]), key
    for key in ("R", "J"):
        assert len(obj[key]) == 10 and all(len(row) == 10 for row in obj[key]), key
    for key in ("eps", "weight", "bias", "m", "v", "std", "u", "dw", "db"):
        assert isinstance(obj[key], float), key


def explanation_json_roundtrip(e):
    """The json object as bncli writes it and a script reads it back (NaN and infinity refused)."""
    return json.loads(write.format_json(present.explanation_json(e)))


def test_markdown_has_the_articles_latex_and_the_values(sample):
    data, dy = sample
    e = explain.explain_column(data.values, dy, column=3, name="Hb")
    text = present.explanation_markdown(e)
    for latex in (
        r"m=\sum_{t=0}^{k-1}x_{t}/k",
        r"s_{i} = \frac{x_{i} - m}{\sqrt{v + \varepsilon}}",
        r"\frac{dv}{dx_i} = 2(x_i-m)/k",
        r"u = \frac{w}{k \sqrt{v + \varepsilon}}",
        r"k-1 - s_is_j, & i = j\\ -1 - s_is_j, & i \neq j",
        r"\nabla y_{(x)}=uR",
        r"\nabla e_{(w)} = \nabla e_{(y)} \cdot s",
        r"\nabla e_{(b)} = \sum_{i=0}^{k-1} \nabla e_{(y)}",
    ):
        assert latex in text, latex
    assert text.count("$$") % 2 == 0
    assert f"= {e.m:.6g}\n" in text and f"= {e.u:.6g}\n" in text and f"= {e.dw:.6g}\n" in text
    assert f"| 9 | 126 | {e.s[9]:.6g} |" in text and "| 10 |" not in text  # rows from 0, as grad numbers them
    assert f"{e.R[0, 0]:.6g} & {e.R[0, 1]:.6g}" in text
    assert "\\vdots" not in text  # ten rows are shown whole


def test_markdown_summarises_long_columns_unless_full():
    rng = np.random.default_rng(2)
    x, g = 5e12 + 1e11 * rng.standard_normal(30), rng.standard_normal(30)
    e = explain.explain_column(x, g)
    summary, full = present.explanation_markdown(e), present.explanation_markdown(e, full=True)
    assert "| ⋮ |" in summary and r"\vdots" in summary and r"\cdots" in summary and r"\ddots" in summary
    assert "| 29 |" in summary and "| 15 |" not in summary
    assert "⋮" not in full and r"\vdots" not in full and "| 15 |" in full
    assert r"\times 10^{12}" in summary  # powers of ten as LaTeX writes them


def rendered(e, width: int, full: bool = False) -> str:
    console = Console(file=StringIO(), width=width, highlight=False, soft_wrap=False)
    console.print(present.explanation_view(render.Renderer(console, 6, full), e))
    return console.file.getvalue()


@pytest.mark.parametrize("width", [80, 140])
def test_rich_rendering_shows_each_step_and_cuts_nothing(sample, width):
    data, dy = sample
    e = explain.explain_column(data.values, dy, column=3, name="Hb")
    text = rendered(e, width)
    assert max(len(line) for line in text.splitlines()) <= width
    for position, step in enumerate(present.steps(e), 1):
        assert f"{position}. {step.title}" in text
        for formula in step.formulas:
            assert formula.unicode in text
    for note in ("largest disagreement", "J is symmetric", "rows sum to 0", "the two agree"):
        assert note in text
    tokens = text.split()
    for vector in (e.x, e.s, e.dv_dx, e.dy, e.dx_via_J, e.dx, e.R[:, 0], e.J[:, -1]):
        for value in vector:
            assert f"{value:.6g}" in tokens
    for value in (e.m, e.v, e.std, e.u, e.dw, e.db):
        assert f"{value:.6g}" in tokens
    # The only ellipses are the summary column and the "i = 1 … k" of the first line: no cut value.
    assert all(token == "…" for token in tokens if "…" in token)


def test_rich_rendering_summarises_large_matrices_unless_full():
    rng = np.random.default_rng(4)
    e = explain.explain_column(rng.standard_normal(24), rng.standard_normal(24))
    summary, full = rendered(e, 400).split(), rendered(e, 400, full=True).split()
    assert "⋮" in summary and "⋮" not in full
    for value in e.J.ravel():
        assert f"{value:.6g}" in full


def test_rich_rendering_shows_data_names_literally():
    e = explain.explain_column(np.arange(4.0), np.ones(4), name="[bold]x\x1b[31m")
    text = rendered(e, 80)
    assert "[bold]x\\x1b[31m" in text and "\x1b" not in text


def test_too_many_rows_is_an_input_error_with_advice():
    explain._require_small(4096)  # R and J: 2·4096² = 2**25 numbers, the limit
    with pytest.raises(InputError, match=re.escape("at most 4096 rows fit")):
        explain.explain_column(np.arange(4097.0), np.zeros(4097))


def test_degenerate_columns_stay_finite():
    single = explain.explain_column(np.array([3.0]), np.array([2.0]))
    np.testing.assert_array_equal(single.R, [[0.0]])
    np.testing.assert_array_equal(single.dx, [0.0])
    constant = explain.explain_column(np.full(5, 0.1), np.arange(5.0))
    np.testing.assert_array_equal(constant.s, 0)
    explanation_json_roundtrip(constant)
    assert constant.dv_dx_disagreement < 1e-8 and constant.dx_difference < 1e-15
    with pytest.raises(InputError, match="zero variance"):
        explain.explain_column(np.full(5, 0.1), np.arange(5.0), eps=0.0, name="c")


def test_json_of_a_large_column_carries_r_and_j_in_full():
    # 500² elements: write.write_json writes R and J in bulk (its fast path for large matrices).
    rng = np.random.default_rng(6)
    e = explain.explain_column(1.7e9 + rng.uniform(0, 5, 500), rng.standard_normal(500))
    obj = explanation_json_roundtrip(e)
    assert obj["R"] == e.R.tolist() and obj["J"] == e.J.tolist() and obj["dx"] == e.dx.tolist()
