"""``bncli forward``: y, and with --stats the per-column statistics."""

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
    Precision,
    Running,
    SaveRunning,
    Weight,
    check_save_running,
    input_options,
    option,
    validate_output,
    value_of,
)

ForwardPart = Enum("ForwardPart", {name: name for name in options.FORWARD_PARTS}, type=str)

EXAMPLES = """Examples:

  bncli forward sample_data/blood.csv -f table --stats

  cat data.csv | bncli forward --only s > s.csv

  bncli forward data.csv -o y.npy
"""

Only = Annotated[
    ForwardPart | None,
    option(
        "--only",
        help="Show only this part, in every format. Default: y (csv/tsv/npy), all (json, table).",
        panel=OUTPUT,
        show_default=False,
    ),
]
Stats = Annotated[bool, option("--stats", help="Also show per-column mean, var, std, weight, bias.", panel=OUTPUT)]


@app.command(cls=OneValueEach, epilog=EXAMPLES)
def forward(
    file: File = None,
    *,
    delimiter: Delimiter = None,
    header: Header = None,
    index_column: IndexColumn = IndexChoice.keep,
    eps: Eps = options.DEFAULT_EPS,
    weight: Weight = None,
    bias: Bias = None,
    dtype: Dtype = DType.float64,
    format: FormatOption = None,
    output: Output = None,
    precision: Precision = options.DEFAULT_PRECISION,
    full: Full = False,
    only: Only = None,
    stats: Stats = False,
    running: Running = None,
    save_running: SaveRunning = None,
    momentum: Momentum = options.DEFAULT_MOMENTUM,
    eval: Eval = False,
) -> None:
    """Forward pass: y = w·(x − mean)/sqrt(var + eps) + b for each column."""
    inputs = input_options(locals())
    outputs = options.OutputOptions(
        format=value_of(format), output=output, precision=precision, full=full, only=value_of(only)
    )
    request = options.ForwardRequest(inputs=inputs, stats=stats)
    run(lambda: _forward(request, outputs))


def _forward(request: options.ForwardRequest, outputs: options.OutputOptions) -> int:
    from .. import commands, output
    from ..present.forward import forward_document

    extras = {"stats": "--stats"} if request.stats else {}
    fmt = validate_output(outputs, options.FORWARD_FORMATS, extras=extras, default="y")
    check_save_running(request.inputs)
    result = commands.forward(request)
    return output.emit(forward_document(result, request.inputs.save_running), outputs, fmt)
