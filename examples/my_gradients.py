"""Gradients computed "in your own code", saved for `bncli grad --against` to judge.

    python3 examples/my_gradients.py                  # writes mine.json: dx, dw, db (correct)
    python3 examples/my_gradients.py --forget-mean    # writes mine.json with dx missing its mean term

Both use the bundled sample (sample_data/blood.csv) and its upstream gradient (blood_dy.csv).
"""

import json
import sys
from pathlib import Path

import numpy as np
from batchnorm_numpy import batchnorm

SAMPLE = Path(__file__).resolve().parent.parent / "sample_data"



def read(name: str) -> np.ndarray:
    """A CSV of the sample: # comments, a header line, then numbers."""
    rows = [line for line in (SAMPLE / name).read_text().splitlines() if line and not line.startswith("#")]
    return np.array([[float(v) for v in row.split(",")] for row in rows[1:]])


x, dy = read("blood.csv"), read("blood_dy.csv")
n = x.shape[1]
grads = batchnorm(x, np.ones(n), np.zeros(n), 1e-5, dy)
if "--forget-mean" in sys.argv:  # the classic slip: dx without the −Σdy/k term
    std = np.sqrt(x.var(axis=0) + 1e-5)
    s = (x - x.mean(axis=0)) / std
    grads["dx"] = (dy - s * grads["dw"] / len(x)) / std
Path("mine.json").write_text(json.dumps({name: grads[name].tolist() for name in ("dx", "dw", "db")}))
print("wrote mine.json: dx, dw, db for sample_data/blood.csv with dy from sample_data/blood_dy.csv")
