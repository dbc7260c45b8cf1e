"""A gradient that is wrong by the smallest classic mistake, at a batch size of your choice.

    python3 examples/unbiased_gradients.py 200000     # writes batch.csv, batch_dy.csv, unbiased_dx.csv

batch.csv holds k rows of 4 standard-normal columns, batch_dy.csv an upstream gradient, and
unbiased_dx.csv the dx of a batch norm that divides the variance by k − 1 instead of k: every
element is off by about 1/(2k), relative (2.5e-6 at k = 200,000).
"""

import sys

import numpy as np

k = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
rng = np.random.default_rng(0)
x, dy = rng.standard_normal((k, 4)), rng.standard_normal((k, 4))
std = np.sqrt(x.var(axis=0, ddof=1) + 1e-5)  # the mistake: ddof=1 in training mode
s = (x - x.mean(axis=0)) / std
dx = (dy - dy.mean(axis=0) - s * (dy * s).mean(axis=0)) / std
header = "a,b,c,d"
for name, values in (("batch.csv", x), ("batch_dy.csv", dy), ("unbiased_dx.csv", dx)):
    np.savetxt(name, values, delimiter=",", header=header, comments="", fmt="%.17g")
print(f"wrote batch.csv, batch_dy.csv and unbiased_dx.csv: {k} rows × 4 columns")
