"""An independent reference: batch norm in 50-digit decimal arithmetic, straight from the article.

Slow (pure Python) and for small matrices only; shares no code with bncli. The
Jacobian is built element by element from the article's formulas
(∂y_i/∂x_j = w·(k·δ_ij − 1 − s_i s_j)/(k·sqrt(v + ε))) and dx = gᵀJ is summed
from it, so the closed form in bncli.core is checked against the definition.
"""

from __future__ import annotations

from decimal import Decimal, localcontext

import numpy as np

DIGITS = 50


def _column(x, g, w, b, eps):
    k = len(x)
    xs = [Decimal(float(v)) for v in x]
    gs = [Decimal(float(v)) for v in g]
    w, b, eps = Decimal(float(w)), Decimal(float(b)), Decimal(float(eps))
    m = sum(xs) / k
    v = sum((xi - m) ** 2 for xi in xs) / k
    sigma = (v + eps).sqrt()
    s = [(xi - m) / sigma for xi in xs]
    y = [w * si + b for si in s]
    jac = [[w * ((k if i == j else 0) - 1 - s[i] * s[j]) / (k * sigma) for j in range(k)] for i in range(k)]
    dx = [sum(gs[i] * jac[i][j] for i in range(k)) for j in range(k)]
    dw = sum(gi * si for gi, si in zip(gs, s, strict=True))
    db = sum(gs)
    return m, v, sigma, s, y, jac, dx, dw, db


def batchnorm(x, g, w, b, eps=1e-5):
    """Exact-to-50-digits forward and backward; returns a dict of float64 arrays."""
    x, g = np.asarray(x, float), np.asarray(g, float)
    n = x.shape[1]
    w = np.broadcast_to(np.asarray(w, float), (n,))
    b = np.broadcast_to(np.asarray(b, float), (n,))
    with localcontext() as ctx:
        ctx.prec = DIGITS
        columns = [_column(x[:, j], g[:, j], w[j], b[j], eps) for j in range(n)]

    def f(values):
        return np.array([[float(v) for v in col] for col in values]).T

    return {
        "mean": np.array([float(c[0]) for c in columns]),
        "var": np.array([float(c[1]) for c in columns]),
        "std": np.array([float(c[2]) for c in columns]),
        "s": f([c[3] for c in columns]),
        "y": f([c[4] for c in columns]),
        "jacobian": [np.array([[float(v) for v in row] for row in c[5]]) for c in columns],
        "dx": f([c[6] for c in columns]),
        "dw": np.array([float(c[7]) for c in columns]),
        "db": np.array([float(c[8]) for c in columns]),
    }
