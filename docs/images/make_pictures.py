"""Make the example pictures of README.pictures.md (Rich SVG export at 80 columns).

    python docs/images/make_pictures.py

Data: the bundled sample (bncli/sample_data/blood.csv, 10 × 4) and its upstream
gradient (blood_dy.csv), eps = 1e-5.
- jacobian-hb.svg: J = ∂y/∂x of column Hb (weight 1, bias 0).
- error-map.svg: a gradient check of a classic bug, with weights 1, 2, 0.5, 1:
  a backward pass that uses the first column's weight for every column. The
  error of each dx element is measured as bncli's check measures it: against
  central differences (default step), over the element's natural scale, over
  the bound rtol = 1e-6.
"""

from pathlib import Path

import numpy as np
from rich.console import Console

from bncli import core, gradcheck, pictures, tables

HERE = Path(__file__).parent
x = tables.read_matrix(str(tables.sample_path())).values
dy = tables.read_matrix(str(tables.sample_path("blood_dy.csv"))).values
names = ["RBC", "WBC", "PLT", "Hb"]
k, n = x.shape


def save(picture, name: str) -> None:
    console = Console(record=True, width=80, color_system="truecolor", file=open("/dev/null", "w"))
    console.print(picture)
    console.save_svg(str(HERE / name), title="bncli")


save(pictures.Heatmap(core.jacobian(core.forward(x), names.index("Hb")), "∂y/∂x of Hb (10 × 10)"), "jacobian-hb.svg")

weight, rtol = np.array([1.0, 2.0, 0.5, 1.0]), 1e-6
problem = gradcheck.Problem(x, dy, weight, np.zeros(n), 1e-5)
bn = problem.forward(x)
step = gradcheck.default_step("central", k) * bn.std
numerical, _ = gradcheck._numerical_dx_and_jacobians(
    problem, gradcheck._differentiation_point(problem), step, "central", [], None
)
buggy = core.backward(dy, core.forward(x, weight[0], 0.0, 1e-5)).dx  # the first weight for every column
scale = gradcheck._Scales(bn, dy, weight).dx
ratio = np.abs(buggy - numerical) / np.maximum(scale, np.finfo(float).tiny) / rtol
save(pictures.ErrorMap(ratio, col_labels=names, title="dx: error over the bound (rtol 1e-06)"), "error-map.svg")
