"""Calibration of grad --check's verdict: error / noise of correct and of wrong gradients.

    python bench/noise.py            # correct gradients over random problems; the unbiased variance by k

The verdict FAILs where |checked − numerical| > NOISE_MULTIPLE × noise (bncli/gradcheck.py). This
prints the largest error/noise of correct gradients (they must stay well below the multiple) and
the smallest of a gradient that divides the variance by k − 1 (it must stay well above), with
and without probes, for k from 2 to 10⁶.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from bncli import core
from bncli import gradcheck as gc


def random_problem(rng, trial: int):
    """Batches as the test suite and users make them: heavy tails, offsets, outliers, ties, eps 0."""
    k = int(rng.choice([2, 3, 4, 5, 7, 10, 20, 50, 200, 800]))
    n = int(rng.integers(1, 4))
    kind = trial % 6
    x = {
        0: lambda: rng.standard_normal((k, n)),
        1: lambda: rng.standard_cauchy((k, n)),
        2: lambda: rng.standard_normal((k, n)) * 10.0 ** rng.uniform(-8, 12, n) + 10.0 ** rng.uniform(-8, 12, n),
        3: lambda: rng.exponential(size=(k, n)) ** 3,
        4: lambda: np.round(rng.standard_normal((k, n)) * 3),
        5: lambda: rng.standard_normal((k, n)) * np.r_[1e4, np.ones(k - 1)][:, None],
    }[kind]()
    w = rng.uniform(0.5, 2, n) * rng.choice([-1, 1], n)
    b = rng.standard_normal(n) * 10.0 ** rng.uniform(-2, 6)
    dy = rng.standard_normal((k, n)) * 10.0 ** rng.uniform(-5, 5)
    if trial % 7 == 0:
        dy[:, 0] = 1.0
    eps = float(rng.choice([1e-5, 1e-3, 0.0 if kind in (0, 1, 3) else 1e-5]))
    return x, w, b, dy, eps


def correct(trials: int) -> None:
    print(f"correct gradients, {trials} random problems: largest error/noise (FAIL above {gc.NOISE_MULTIPLE:g})")
    worst: dict[tuple, float] = {}
    rng = np.random.default_rng(123)
    for trial in range(trials):
        x, w, b, dy, eps = random_problem(rng, trial)
        try:
            bn = core.forward(x, w, b, eps)
        except core.ZeroVarianceError:
            continue
        g = core.backward(dy, bn)
        checked = gc.CheckedGradients(g.dx, g.dw, g.db, {0: core.jacobian(bn, 0)})
        problem = gc.Problem(x, dy, w, b, eps)
        for method, probes in (("central", None), ("central", 8), ("complex", None)):
            report = gc.check_gradients(problem, checked, method=method, probes=probes)
            for name, comparison in report.results.items():
                key = (method, "probes" if probes else "every element", name)
                worst[key] = max(worst.get(key, 0.0), comparison.error_over_noise)
    for (method, scope, name), ratio in sorted(worst.items()):
        print(f"  {method:8} {scope:14} {name:9} {ratio:8.3g}")


def unbiased(largest_k: int) -> None:
    print("a dx and dw off by k/(k−1) (unbiased variance): error/noise, FAIL above", f"{gc.NOISE_MULTIPLE:g}")
    for k in (2, 3, 10, 100, 1000, 3000, 10_000, 100_000, 1_000_000):
        if k > largest_k:
            break
        rng = np.random.default_rng(k)
        x, dy = rng.standard_normal((k, 3)), rng.standard_normal((k, 3))
        w, b = np.ones(3), np.zeros(3)
        std = np.sqrt(x.var(axis=0, ddof=1) + 1e-5)
        s = (x - x.mean(axis=0)) / std
        dw = (dy * s).sum(axis=0)
        dx = (dy - dy.mean(axis=0) - s * dw / k) / std
        problem = gc.Problem(x, dy, w, b, 1e-5)
        cells = []
        for probes in [None, 8] if k <= 3000 else [8]:
            start = time.perf_counter()
            report = gc.check_gradients(problem, gc.CheckedGradients(dx=dx, dw=dw), probes=probes)
            took = time.perf_counter() - start
            ratios = ", ".join(f"{q} {c.error_over_noise:.3g}" for q, c in report.results.items())
            verdict = "PASS" if report.passed else "FAIL"
            cells.append(f"{'probes' if probes else 'every element'}: {ratios} {verdict} ({took:.2f} s)")
        print(f"  k = {k:>9,}   " + "   ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=600)
    parser.add_argument("--largest-k", type=int, default=1_000_000)
    args = parser.parse_args()
    correct(args.trials)
    unbiased(args.largest_k)


if __name__ == "__main__":
    main()
