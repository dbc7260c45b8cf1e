"""Running statistics and eval mode through the CLI, against a hand-written BatchNorm1d rule."""

from __future__ import annotations

import json

import numpy as np

from bncli import core
from bncli.io import read

SAMPLE = read.sample_path()


def write(path, x, header="a,b,c"):
    path.write_text(header + "\n" + "\n".join(",".join(map(repr, row)) for row in x.tolist()) + "\n")
    return path


def batches(tmp_path):
    rng = np.random.default_rng(8)
    scales = np.array([1e-3, 1.0, 1e6])
    return [
        write(tmp_path / f"b{i}.csv", rng.standard_normal((k, 3)) * scales + 10 * scales)
        for i, k in enumerate((6, 9, 5))
    ]


def test_chained_running_statistics_follow_the_momentum_rule(bncli, tmp_path):
    b0, b1, _ = batches(tmp_path)
    running = tmp_path / "run.json"
    assert bncli("forward", b0, "--save-running", running, "--momentum", "0.2").code == 0
    assert bncli("forward", b1, "--running", running, "--save-running", running, "--momentum", "0.2").code == 0
    saved = json.loads(running.read_text())
    assert saved["columns"] == ["a", "b", "c"] and saved["batches"] == 2 and saved["momentum"] == 0.2
    mean, var = np.zeros(3), np.ones(3)
    for path in (b0, b1):
        x = read.read_matrix(str(path)).values
        mean = 0.8 * mean + 0.2 * x.mean(axis=0)
        var = 0.8 * var + 0.2 * x.var(axis=0, ddof=1)
    np.testing.assert_allclose(saved["mean"], mean, rtol=1e-13)
    np.testing.assert_allclose(saved["var"], var, rtol=1e-13)


def test_eval_mode_forward_and_grad(bncli, tmp_path):
    b0, _, test = batches(tmp_path)
    running = tmp_path / "run.json"
    bncli("forward", b0, "--save-running", running)
    saved = json.loads(running.read_text())
    x = read.read_matrix(str(test)).values
    w, b = np.array([0.5, -2.0, 3.0]), np.array([1.0, 0.0, -1.0])
    expected_y = w * (x - saved["mean"]) / np.sqrt(np.array(saved["var"]) + 1e-5) + b
    y = bncli("forward", test, "--eval", "--running", running, "-w", "0.5,-2,3", "-b", "1,0,-1").matrix()
    np.testing.assert_allclose(y, expected_y, rtol=1e-13)
    doc = bncli(
        "grad", test, "--eval", "--running", running, "-w", "0.5,-2,3", "--jacobian", "--check", "-f", "json"
    ).json
    assert doc["mode"] == "eval" and doc["check"]["passed"]
    dy = np.array(doc["dy"])
    np.testing.assert_allclose(doc["dx"], w / np.sqrt(np.array(saved["var"]) + 1e-5) * dy, rtol=1e-13)
    jac = np.array(doc["jacobian"]["b"])
    np.testing.assert_array_equal(jac, np.diag(np.diag(jac)))
    np.testing.assert_allclose(np.diag(jac), -2.0 / np.sqrt(saved["var"][1] + 1e-5), rtol=1e-14)


def test_eval_check_table_and_stats_show_the_mode(bncli, tmp_path):
    b0, _, test = batches(tmp_path)
    running = tmp_path / "run.json"
    bncli("forward", b0, "--save-running", running)
    table = bncli("grad", test, "--eval", "--running", running, "--check", "--jacobian", "-f", "table")
    assert table.code == 0 and "eval mode (running statistics)" in table.stdout and "diagonal" in table.stdout
    stats = bncli("forward", test, "--eval", "--running", running, "--stats", "-f", "table").stdout
    assert "running mean" in stats and "batch mean" in stats
    saved = bncli("forward", b0, "--save-running", tmp_path / "again.json", "--stats", "-f", "table").stdout
    assert "running mean (saved)" in saved


def test_save_running_is_written_atomically_and_only_on_success(bncli, tmp_path):
    running = tmp_path / "run.json"
    running.write_text("old")
    run = bncli("forward", "--save-running", running, "--eps", "-1", input="a\n1\n2\n")
    assert run.code == 2 and running.read_text() == "old"


def test_eval_with_the_sample(bncli, tmp_path):
    running = tmp_path / "run.json"
    data = read.read_matrix(str(SAMPLE))
    stats = {"columns": data.columns, "mean": data.values.mean(0).tolist(), "var": data.values.var(0).tolist()}
    running.write_text(json.dumps(stats))
    doc = bncli("forward", SAMPLE, "--eval", "--running", running, "-f", "json").json
    expected = core.forward(data.values).y  # the batch's own statistics: same y up to rounding
    np.testing.assert_allclose(doc["y"], expected, rtol=1e-12, atol=1e-12)
