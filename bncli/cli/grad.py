"""``bncli grad``: dx, dw, db for an upstream gradient; --jacobian; --check and its variants."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

from .. import options
from .app import app, run
from .common import (
    OUTPUT,
    Bias,
    Delimiter,
    DType,
    Dtype,
    Dy,
    Eps,
    Eval,
    File,
    FormatOption,
    Full,
    Header,
    IndexChoice,
    IndexColumn,
    Momentum,
    OneValueEach,
    Output,
    Plot,
    Precision,
    Running,
    SaveRunning,
    Seed,
    Weight,
    check_save_running,
    input_options,
    option,
    validate_output,
    value_of,
)

Method = Enum("Method", {name: name for name in options.METHODS}, type=str)
GradPart = Enum("GradPart", {name: name for name in options.GRAD_PARTS}, type=str)

CHECK = "Gradient check"

EXAMPLES = """Examples:

  bncli grad --check                                  (the bundled sample)

  bncli grad sample_data/blood.csv --jacobian -c Hb -f table

  bncli grad data.csv --dy dy.csv --against my_dx.csv

  cat dy.csv | bncli grad data.csv --dy - --only dx
"""

Jacobian = Annotated[bool, option("--jacobian", help="Also compute the per-column Jacobian ∂y/∂x (k×k).", panel=OUTPUT)]
Column = Annotated[
    list[str] | None,
    option(
        "--column",
        "-c",
        help="Column (name or 0-based index) for --jacobian; repeatable. Default: all.",
        panel=OUTPUT,
        metavar="NAME",
    ),
]
Only = Annotated[
    GradPart | None,
    option(
        "--only",
        help="Show only this part, in every format (jacobian implies --jacobian, check --check). "
        "Default: dx (csv/tsv/npy), all (json, table).",
        panel=OUTPUT,
        show_default=False,
    ),
]
Check = Annotated[
    bool, option("--check", help="Compare the gradients with numerical derivatives; exit 1 on FAIL.", panel=CHECK)
]
MethodOption = Annotated[
    Method, option("--method", help="central differences, or complex step (exact to rounding).", panel=CHECK)
]
Step = Annotated[
    float | None,
    option(
        "--step",
        help="Step relative to each column's std. Default: (ε·k)^(1/3) central (1 in eval mode, "
        "where y is affine), 1e-20 complex.",
        panel=CHECK,
        show_default=False,
    ),
]
Rtol = Annotated[
    float | None,
    option(
        "--rtol",
        help="Pass bound on the relative error. Default: 1e-6 central, 1e-10 complex, 1e-5 float32.",
        panel=CHECK,
        show_default=False,
    ),
]
Against = Annotated[
    str | None,
    option(
        "--against",
        help="Check your own gradient instead: a CSV (dx) or JSON with any of dx, dw, db; "
        "'-' reads a CSV from stdin. Implies --check.",
        panel=CHECK,
        metavar="PATH",
    ),
]
Sweep = Annotated[
    bool,
    option("--sweep", help="Also show the numerical error for steps 1e-1 … 1e-12. Implies --check.", panel=CHECK),
]
Fast = Annotated[
    bool | None,
    option(
        "--fast/--no-fast",
        help="Check along random directions (O(k·n) each) instead of every element; "
        "implies --check. Default: only when the full check would take seconds. --no-fast: the "
        "element-wise check.",
        panel=CHECK,
        show_default=False,
    ),
]
Probes = Annotated[
    int | None,
    option(
        "--probes",
        help=f"Number of random directions for --fast (implies it; 1 to {options.MAX_PROBES}). "
        f"Default: {options.DEFAULT_PROBES}.",
        panel=CHECK,
        show_default=False,
    ),
]


@app.command(cls=OneValueEach, epilog=EXAMPLES)
def grad(
    file: File = None,
    *,
    dy: Dy = None,
    seed: Seed = options.DEFAULT_SEED,
    delimiter: Delimiter = None,
    header: Header = None,
    index_column: IndexColumn = IndexChoice.keep,
    eps: Eps = options.DEFAULT_EPS,
    weight: Weight = None,
    bias: Bias = None,
    dtype: Dtype = DType.float64,
    jacobian: Jacobian = False,
    column: Column = None,
    format: FormatOption = None,
    output: Output = None,
    precision: Precision = options.DEFAULT_PRECISION,
    full: Full = False,
    plot: Plot = False,
    only: Only = None,
    check: Check = False,
    method: MethodOption = Method.central,
    step: Step = None,
    rtol: Rtol = None,
    against: Against = None,
    sweep: Sweep = False,
    fast: Fast = None,
    probes: Probes = None,
    running: Running = None,
    save_running: SaveRunning = None,
    momentum: Momentum = options.DEFAULT_MOMENTUM,
    eval: Eval = False,
) -> None:
    """Backward pass: dx, dw, db for an upstream gradient dy; --jacobian; --check."""
    inputs = input_options(locals())
    outputs = options.OutputOptions(
        format=value_of(format), output=output, precision=precision, full=full, only=value_of(only), plot=plot
    )
    checks = options.CheckOptions(
        enabled=check or sweep or fast is not None or probes is not None or against is not None
        or only == GradPart.check,
        method=method.value, step=step, rtol=rtol, against=against, sweep=sweep, fast=fast, probes=probes,
    )  # fmt: skip
    request = options.GradRequest(
        inputs=inputs, dy=dy, seed=seed, jacobian=jacobian or outputs.only == "jacobian", columns=tuple(column or ()),
        check=checks,
    )  # fmt: skip
    run(lambda: _grad(request, outputs))


def _grad(request: options.GradRequest, outputs: options.OutputOptions) -> int:
    from .. import commands, output
    from ..present.grad import grad_document
    from ..render import ProgressBar

    extras = {}
    if request.jacobian:
        extras["jacobian"] = "--jacobian"
    if request.check.sweep:
        extras["check"] = "--sweep"
    drawable = request.jacobian or request.check.enabled
    fmt = validate_output(outputs, options.GRAD_FORMATS, extras=extras, default="dx", pictures=drawable)
    check_save_running(request.inputs)
    with ProgressBar("gradient check") as progress:
        result = commands.grad(request, progress)
    return output.emit(grad_document(result, request.inputs.save_running), outputs, fmt)
