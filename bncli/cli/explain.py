"""``bncli explain``: the article's derivation, step by step, on one column."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

from .. import options
from .app import app, run
from .common import (
    INPUT,
    OUTPUT,
    Bias,
    Delimiter,
    DType,
    Dtype,
    Dy,
    Eps,
    Eval,
    File,
    Full,
    Header,
    IndexChoice,
    IndexColumn,
    OneValueEach,
    Precision,
    Running,
    Seed,
    Weight,
    input_options,
    option,
    output_option,
    validate_output,
    value_of,
)

ExplainFormat = Enum("ExplainFormat", {name: name for name in options.EXPLAIN_FORMATS}, type=str)
ExplainOutput = Annotated[str | None, output_option(".json .md; anything else json")]

EXAMPLES = """Examples:

  bncli explain -c Hb                                 (the bundled sample's haemoglobin column)

  bncli explain sample_data/blood.csv -c Hb --dy sample_data/blood_dy.csv -o notes.md
"""


@app.command(cls=OneValueEach, epilog=EXAMPLES)
def explain(
    file: File = None,
    *,
    column: Annotated[
        str | None,
        option(
            "--column",
            "-c",
            help="The column explained (name or 0-based index). Default: the first.",
            panel=INPUT,
            metavar="NAME",
        ),
    ] = None,
    dy: Dy = None,
    seed: Seed = options.DEFAULT_SEED,
    delimiter: Delimiter = None,
    header: Header = None,
    index_column: IndexColumn = IndexChoice.keep,
    eps: Eps = options.DEFAULT_EPS,
    weight: Weight = None,
    bias: Bias = None,
    dtype: Dtype = DType.float64,
    format: Annotated[
        ExplainFormat | None,
        option(
            "--format",
            "-f",
            help="Output format (markdown: LaTeX formulas, for notes). Default: by --output's "
            "extension (.md: markdown), else table on a terminal, json otherwise.",
            panel=OUTPUT,
            show_default=False,
        ),
    ] = None,
    output: ExplainOutput = None,
    precision: Precision = options.DEFAULT_PRECISION,
    full: Full = False,
    running: Running = None,
    eval: Eval = False,
) -> None:
    """The article's derivation on one column: m, v, s, dm/dx, dv/dx, u, R, J = u·R, dx, dw, db, each checked."""
    inputs = input_options(locals())
    outputs = options.OutputOptions(format=value_of(format), output=output, precision=precision, full=full)
    request = options.ExplainRequest(inputs=inputs, column=column, dy=dy, seed=seed)
    run(lambda: _explain(request, outputs))


def _explain(request: options.ExplainRequest, outputs: options.OutputOptions) -> int:
    from .. import commands, output
    from ..present.explain import explain_document

    fmt = validate_output(outputs, options.EXPLAIN_FORMATS)
    result = commands.explain(request)
    return output.emit(explain_document(result), outputs, fmt)
