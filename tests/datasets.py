"""Test data at the scales that trip naive implementations (shared by the test modules)."""

from __future__ import annotations

import numpy as np

from bncli.io import read


def blood() -> np.ndarray:
    return read.read_matrix(str(read.sample_path())).values


def mixed_magnitudes(rng, k=12) -> np.ndarray:
    """Columns from ~1e-6 to ~1e12 in magnitude, some with offsets."""
    return np.column_stack(
        [
            1e-6 * rng.standard_normal(k),
            3e-6 + 1e-7 * rng.standard_normal(k),
            rng.standard_normal(k),
            1e6 * rng.standard_normal(k),
            5e12 + 1e11 * rng.standard_normal(k),
        ]
    )


def offset(rng, k=16) -> np.ndarray:
    """Large offsets relative to the spread: 1e8 + noise, timestamps ~1.7e9 with a spread of seconds."""
    return np.column_stack([1e8 + rng.standard_normal(k), 1.7e9 + rng.uniform(0, 5, k)])


def named(rng) -> dict[str, np.ndarray]:
    return {
        "unit": rng.standard_normal((10, 3)),
        "blood": blood(),
        "mixed": mixed_magnitudes(rng),
        "offset": offset(rng),
        "tiny": 1e-6 * rng.standard_normal((9, 2)),
        "huge": 1e12 * rng.standard_normal((9, 2)),
    }


def parameters(rng, n):
    """Per-column weight and bias, neither trivial."""
    return rng.uniform(0.5, 2.0, n) * rng.choice([-1, 1], n), rng.standard_normal(n)
