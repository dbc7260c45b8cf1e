"""``bncli audit``: another implementation of batch norm, run on a battery of cases and judged."""

from __future__ import annotations

import sys
from enum import Enum
from typing import Annotated

import typer

from .. import options
from .app import app, run
from .common import OUTPUT, OneValueEach, Plot, option, output_option, validate_output, value_of

AuditFormat = Enum("AuditFormat", {name: name for name in options.AUDIT_FORMATS}, type=str)
AuditDType = Enum("AuditDType", {name: name for name in (*options.AUDIT_DTYPES, "all")}, type=str)
Layout = Enum("Layout", {name: name for name in options.LAYOUTS}, type=str)
Style = Enum("Style", {name: name for name in options.STYLES}, type=str)

AUDIT = "Audit"
AuditOutput = Annotated[str | None, output_option(".json; anything else json")]

EXAMPLES = """Examples:

  bncli audit examples/batchnorm_numpy.py:batchnorm

  bncli audit torch --layout nchw

  bncli audit torch --eval

  bncli audit my_layer.py:forward --quantities y

  bncli audit --style cs231n cs231n/layers.py:batchnorm_backward_alt

  bncli audit --style torch my_module.py:BatchNorm

  bncli audit --cmd './batchnorm' --dtype float64 -o report.json

  bncli audit --cmd 'env OMP_NUM_THREADS=1 ./batchnorm'

  bncli audit examples/syncbn_torch.py:syncbn --shards 5,11,0,3
"""


@app.command(cls=OneValueEach, epilog=EXAMPLES)
def audit(
    target: Annotated[
        str | None,
        typer.Argument(
            help="path/to/file.py:func or package.module:func (a Python function; see --style), torch, or bncli.",
            metavar="[TARGET]",
            show_default=False,
        ),
    ] = None,
    *,
    cmd: Annotated[
        str | None,
        option(
            "--cmd",
            help="Audit a program instead (any language): run once per case with a folder holding "
            "x.npy, dy.npy, params.json (and x.csv, dy.csv); it writes y, dx, dw, db there as .npy or .csv. "
            "The command is split into words and run without a shell: set a variable with "
            "'env VAR=value PROGRAM'.",
            panel=AUDIT,
            metavar="'PROGRAM [ARGS]'",
        ),
    ] = None,
    style: Annotated[
        Style | None,
        option(
            "--style",
            help="How TARGET is written. native: func(x, weight, bias, eps, dy); cs231n: FILE.py[:BACKWARD] "
            "with batchnorm_forward(x, gamma, beta, bn_param); torch: FILE.py:NAME, an nn.Module built as "
            "NAME(num_features, eps=eps) or f(x, weight, bias, eps) on tensors; jax: f(x, weight, bias, eps) "
            "on jax arrays. Default: detected from the file when only one fits, else native.",
            panel=AUDIT,
            show_default=False,
        ),
    ] = None,
    case: Annotated[
        list[str] | None,
        option("--case", help="Run only this case; repeatable (see --list-cases).", panel=AUDIT, metavar="NAME"),
    ] = None,
    list_cases: Annotated[bool, option("--list-cases", help="List the cases and exit.", panel=AUDIT)] = False,
    extreme: Annotated[
        bool,
        option("--extreme", help="Add the extreme cases (squares overflow or underflow), reported apart.", panel=AUDIT),
    ] = False,
    dtype: Annotated[
        AuditDType | None,
        option(
            "--dtype",
            help="Run the cases in this precision only (float16, bfloat16: x and dy in it, the parameters float32); "
            "all: the four. Default: float64 and float32.",
            panel=AUDIT,
            show_default=False,
        ),
    ] = None,
    layout: Annotated[
        Layout,
        option(
            "--layout",
            help="nc: batch × features (BatchNorm1d); nchw, nhwc: statistics per channel over N, H, W (BatchNorm2d).",
            panel=AUDIT,
        ),
    ] = Layout.nc,
    quantities: Annotated[
        str | None,
        option(
            "--quantities",
            help="Comma list of the quantities to judge (y, dx, dw, db, running_mean, running_var); one asked "
            "for and returned in no case makes the audit INCOMPLETE. Default: y, dx, dw, db and the running "
            "statistics the target declares.",
            panel=AUDIT,
            metavar="LIST",
            show_default=False,
        ),
    ] = None,
    eps: Annotated[
        float | None,
        option(
            "--eps",
            help="Run every case at this eps instead of its own (audit an implementation at the eps it fixes).",
            panel=AUDIT,
            show_default=False,
        ),
    ] = None,
    eval_mode: Annotated[
        bool,
        option(
            "--eval",
            help="Inference mode: the target gets training=False and running statistics far from the batch's "
            "(cs231n: mode test; torch: .eval()); y, dx judged against w·(x − rm)/√(rv + ε) + b, w/√(rv + ε).",
            panel=AUDIT,
        ),
    ] = False,
    timeout: Annotated[
        float, option("--timeout", help="Seconds each call may take before it is an ERROR.", panel=AUDIT, min=0.001)
    ] = options.DEFAULT_TIMEOUT,
    shards: Annotated[
        str | None,
        option(
            "--shards",
            help="Distributed (needs torch): split each batch into consecutive shards of these sizes (0 allowed; "
            "read as proportions when they do not add up to a case's rows), one process per shard in a gloo "
            "torch.distributed group. auto: even, uneven, with an empty shard, one shard.",
            panel=AUDIT,
            metavar="N1,N2,…|auto",
        ),
    ] = None,
    format: Annotated[
        AuditFormat | None,
        option(
            "--format",
            "-f",
            help="Output format. Default: by --output's extension, else table on a terminal, json otherwise.",
            panel=OUTPUT,
            show_default=False,
        ),
    ] = None,
    output: AuditOutput = None,
    plot: Plot = False,
) -> None:
    """Audit a batch-norm implementation (any language) on hard cases against exact references.

    Compares its y, dx, dw, db with bounds that a correct implementation attains at its precision,
    and tells rounding (INACCURATE) from formula errors (WRONG); exit 0 on PASS, 1 otherwise.
    """
    outputs = options.OutputOptions(format=value_of(format), output=output, plot=plot)
    dtypes = options.DTYPES if dtype is None else (dtype.value,)
    judged = {} if quantities is None else {"quantities": tuple(q.strip() for q in quantities.split(","))}
    run(
        lambda: _audit(
            list_cases,
            outputs,
            target=target,
            cmd=cmd,
            style=value_of(style),
            cases=tuple(case or ()),
            extreme=extreme,
            dtypes=dtypes,
            layout=layout.value,
            timeout=timeout,
            eps=eps,
            eval=eval_mode,
            **judged,
            shards=shards,
        )  # fmt: skip
    )


def _audit(list_cases: bool, outputs: options.OutputOptions, **settings) -> int:
    """``settings``: the fields of :class:`bncli.audit.run.AuditOptions`, by name."""
    from .. import commands, output
    from ..audit.run import AuditOptions
    from ..present.audit import audit_document

    if list_cases:
        return _list_cases(outputs)
    request = AuditOptions(**settings)
    fmt = validate_output(outputs, options.AUDIT_FORMATS, pictures=True)
    progress = _audit_progress()
    try:
        report = commands.audit(request, progress=progress)
    finally:
        if progress:
            progress(None)
    return output.emit(audit_document(report), outputs, fmt)


def _list_cases(outputs: options.OutputOptions) -> int:
    """The battery through the one dispatcher. It is for people: text on a pipe too, and in a file whose
    name implies no format, unlike the audit's report; json where -f json or a .json name asks for it."""
    from dataclasses import replace

    from .. import commands, output
    from ..formats import format_for_path
    from ..present.audit import cases_document

    if outputs.format is None and (outputs.output is None or format_for_path(outputs.output) is None):
        outputs = replace(outputs, format="table")
    fmt = validate_output(outputs, options.AUDIT_FORMATS)
    return output.emit(cases_document(commands.list_cases(extreme=True)), outputs, fmt)


def _audit_progress():
    """A line on a terminal's stderr naming the case being run, erased as the next begins."""
    try:
        terminal = sys.stderr.isatty()
    except (AttributeError, ValueError):
        terminal = False
    if not terminal:
        return None

    def show(what: str | None) -> None:
        sys.stderr.write("\r\x1b[K" if what is None else f"\r\x1b[Kaudit: {what}")
        sys.stderr.flush()

    return show
