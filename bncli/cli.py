"""The bncli command line (Typer): declare the options, build option objects by name, map errors to exit codes.

Only Typer is imported at start-up; numpy, Rich and the numeric code load inside
the commands, so that ``bncli --version`` and ``--help`` start fast.

Exit codes: 0 success; 1 a check or audit found a problem; 2 bad usage or input;
74 the result could not be written; 130/129/143 interrupted (SIGINT/SIGHUP/SIGTERM);
141 the reader closed the pipe; 70 a bug in bncli.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from enum import Enum
from typing import Annotated

import typer

from . import __version__, entry, options
from .entry import Terminated

EXIT_INPUT = 2
EXIT_OUTPUT = 74  # EX_IOERR in sysexits.h
EXIT_BUG = 70  # EX_SOFTWARE
EXIT_BROKEN_PIPE = 141

app = typer.Typer(
    name="bncli",
    help="Batch normalization and gradient checking: forward pass, backward pass, Jacobian, and a numerical check "
    "of gradients (bncli's own or yours) that holds at every scale.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

Format = Enum("Format", {name: name for name in options.FORWARD_FORMATS + options.GRAD_FORMATS}, type=str)
AuditFormat = Enum("AuditFormat", {name: name for name in options.AUDIT_FORMATS}, type=str)
ExplainFormat = Enum("ExplainFormat", {name: name for name in options.EXPLAIN_FORMATS}, type=str)
Layout = Enum("Layout", {name: name for name in options.LAYOUTS}, type=str)
DType = Enum("DType", {name: name for name in options.DTYPES}, type=str)
Method = Enum("Method", {name: name for name in options.METHODS}, type=str)
ForwardPart = Enum("ForwardPart", {name: name for name in options.FORWARD_PARTS}, type=str)
GradPart = Enum("GradPart", {name: name for name in options.GRAD_PARTS}, type=str)

INPUT = "Input"
OUTPUT = "Output"
MODE = "Running statistics and eval mode"
CHECK = "Gradient check"
AUDIT = "Audit"


def _option(*names: str, help: str, panel: str, **settings):
    return typer.Option(*names, help=help, rich_help_panel=panel, **settings)


def path(text: str) -> str:
    """An argument that names a file: the help shows its type by this function's name, <path>."""
    return text


File = Annotated[
    str | None,
    typer.Argument(
        help="CSV, TSV or .npy file; '-' reads stdin. Omitted: stdin when piped, else the bundled sample.",
        metavar="[FILE]",
        show_default=False,
        parser=path,
    ),
]
Delimiter = Annotated[
    str | None,
    _option(
        "--delimiter",
        "-d",
        help="Field delimiter: , ; | tab whitespace … Default: .tsv → tab, else sniffed.",
        panel=INPUT,
        metavar="CHAR",
    ),
]
Header = Annotated[
    bool | None,
    _option(
        "--header/--no-header",
        help="First row is a header. Default: yes iff a field in it is not a number.",
        panel=INPUT,
        show_default=False,
    ),
]
Eps = Annotated[float, _option("--eps", help="ε added to the variance (≥ 0).", panel=INPUT)]
Weight = Annotated[
    str | None,
    _option(
        "--weight",
        "-w",
        help="w (gamma): one number, or a comma list of one per column. Default: 1.",
        panel=INPUT,
        metavar="W",
    ),
]
Bias = Annotated[
    str | None,
    _option(
        "--bias",
        "-b",
        help="b (beta): one number, or a comma list of one per column. Default: 0.",
        panel=INPUT,
        metavar="B",
    ),
]
Dtype = Annotated[DType, _option("--dtype", help="Precision of the analytic computation.", panel=INPUT)]
FormatOption = Annotated[
    Format | None,
    _option(
        "--format",
        "-f",
        help="Output format. Default: by --output's extension, else table on a terminal, csv otherwise.",
        panel=OUTPUT,
        show_default=False,
    ),
]
PICTURE_FILES = ".svg .html: the table view with its pictures; .png .pdf: the pictures (needs bncli\\[plot])"


def _output_option(formats: str) -> object:
    return _option(
        "--output",
        "-o",
        help=f"Write here (atomically) instead of stdout; the extension sets the format ({formats}; {PICTURE_FILES}).",
        panel=OUTPUT,
        metavar="PATH",
    )


Output = Annotated[str | None, _output_option(".json .tsv .npy .csv; anything else csv")]
AuditOutput = Annotated[str | None, _output_option(".json; anything else json")]
ExplainOutput = Annotated[str | None, _output_option(".json .md; anything else json")]
Precision = Annotated[
    int,
    _option(
        "--precision", "-p", min=1, max=17, help="Significant digits in tables (csv/tsv/json round-trip).", panel=OUTPUT
    ),
]
Full = Annotated[bool, _option("--full", help="Show every element of large tables instead of a summary.", panel=OUTPUT)]
Dy = Annotated[
    str | None,
    _option(
        "--dy",
        help="Upstream gradient ∂e/∂y, same shape as the data; '-' reads stdin. Default: N(0,1) draws from --seed.",
        panel=INPUT,
        metavar="PATH",
    ),
]
Seed = Annotated[int, _option("--seed", min=0, help="Seed of the default dy and of --fast's directions.", panel=INPUT)]
Plot = Annotated[
    bool,
    _option(
        "--plot",
        help="Also draw pictures (heatmaps, error maps, curves) in the table view and svg/html/png files.",
        panel=OUTPUT,
    ),
]
Running = Annotated[
    str | None,
    _option(
        "--running",
        help="Running statistics (JSON) to start from, or to normalize with in --eval.",
        panel=MODE,
        metavar="PATH",
    ),
]
SaveRunning = Annotated[
    str | None,
    _option(
        "--save-running", help="Write the running statistics updated by this batch (JSON).", panel=MODE, metavar="PATH"
    ),
]
Momentum = Annotated[
    float, _option("--momentum", help="Momentum of the running statistics, as in PyTorch.", panel=MODE)
]
Eval = Annotated[bool, _option("--eval", help="Inference mode: normalize with --running statistics.", panel=MODE)]

FORWARD_EXAMPLES = """Examples:

  bncli forward sample_data/blood.csv -f table --stats

  cat data.csv | bncli forward --only s > s.csv

  bncli forward data.csv -o y.npy
"""

GRAD_EXAMPLES = """Examples:

  bncli grad --check                                  (the bundled sample)

  bncli grad sample_data/blood.csv --jacobian -c Hb -f table

  bncli grad data.csv --dy dy.csv --against my_dx.csv

  cat dy.csv | bncli grad data.csv --dy - --only dx
"""


EXPLAIN_EXAMPLES = """Examples:

  bncli explain -c Hb                                 (the bundled sample's haemoglobin column)

  bncli explain sample_data/blood.csv -c Hb --dy sample_data/blood_dy.csv -o notes.md
"""

AUDIT_EXAMPLES = """Examples:

  bncli audit examples/batchnorm_numpy.py:batchnorm

  bncli audit torch --layout nchw

  bncli audit --cmd './batchnorm' --dtype float64 -o report.json
"""


def _version(value: bool) -> None:
    if value:
        print(f"bncli {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", "-V", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """Batch normalization and gradient checking from the command line."""


@app.command(epilog=FORWARD_EXAMPLES)
def forward(
    file: File = None,
    *,
    delimiter: Delimiter = None,
    header: Header = None,
    eps: Eps = options.DEFAULT_EPS,
    weight: Weight = None,
    bias: Bias = None,
    dtype: Dtype = DType.float64,
    format: FormatOption = None,
    output: Output = None,
    precision: Precision = options.DEFAULT_PRECISION,
    full: Full = False,
    only: Annotated[
        ForwardPart | None,
        _option(
            "--only",
            help="Show only this part, in every format. Default: y (csv/tsv/npy), all (json, table).",
            panel=OUTPUT,
            show_default=False,
        ),
    ] = None,
    stats: Annotated[
        bool, _option("--stats", help="Also show per-column mean, var, std, weight, bias.", panel=OUTPUT)
    ] = False,
    running: Running = None,
    save_running: SaveRunning = None,
    momentum: Momentum = options.DEFAULT_MOMENTUM,
    eval: Eval = False,
) -> None:
    """Forward pass: y = w·(x − mean)/sqrt(var + eps) + b for each column."""
    inputs = options.InputOptions(
        file=file, delimiter=delimiter, header=header, eps=eps, weight=weight, bias=bias, dtype=dtype.value,
        running=running, save_running=save_running, momentum=momentum, eval=eval,
    )  # fmt: skip
    outputs = options.OutputOptions(
        format=_value(format), output=output, precision=precision, full=full, only=_value(only)
    )
    request = options.ForwardRequest(inputs=inputs, stats=stats)
    _run(lambda: _forward(request, outputs))


@app.command(epilog=GRAD_EXAMPLES)
def grad(
    file: File = None,
    *,
    dy: Dy = None,
    seed: Seed = options.DEFAULT_SEED,
    delimiter: Delimiter = None,
    header: Header = None,
    eps: Eps = options.DEFAULT_EPS,
    weight: Weight = None,
    bias: Bias = None,
    dtype: Dtype = DType.float64,
    jacobian: Annotated[
        bool, _option("--jacobian", help="Also compute the per-column Jacobian ∂y/∂x (k×k).", panel=OUTPUT)
    ] = False,
    column: Annotated[
        list[str] | None,
        _option(
            "--column",
            "-c",
            help="Column (name or 0-based index) for --jacobian; repeatable. Default: all.",
            panel=OUTPUT,
            metavar="NAME",
        ),
    ] = None,
    format: FormatOption = None,
    output: Output = None,
    precision: Precision = options.DEFAULT_PRECISION,
    full: Full = False,
    plot: Plot = False,
    only: Annotated[
        GradPart | None,
        _option(
            "--only",
            help="Show only this part, in every format (jacobian implies --jacobian, check --check). "
            "Default: dx (csv/tsv/npy), all (json, table).",
            panel=OUTPUT,
            show_default=False,
        ),
    ] = None,
    check: Annotated[
        bool, _option("--check", help="Compare the gradients with numerical derivatives; exit 1 on FAIL.", panel=CHECK)
    ] = False,
    method: Annotated[
        Method, _option("--method", help="central differences, or complex step (exact to rounding).", panel=CHECK)
    ] = Method.central,
    step: Annotated[
        float | None,
        _option(
            "--step",
            help="Step relative to each column's std. Default: (ε·k)^(1/3) central (1 in eval mode, "
            "where y is affine), 1e-20 complex.",
            panel=CHECK,
            show_default=False,
        ),
    ] = None,
    rtol: Annotated[
        float | None,
        _option(
            "--rtol",
            help="Pass bound on the relative error. Default: 1e-6 central, 1e-10 complex, 1e-5 float32.",
            panel=CHECK,
            show_default=False,
        ),
    ] = None,
    against: Annotated[
        str | None,
        _option(
            "--against",
            help="Check your own gradient instead: a CSV (dx) or JSON with any of dx, dw, db; "
            "'-' reads a CSV from stdin. Implies --check.",
            panel=CHECK,
            metavar="PATH",
        ),
    ] = None,
    sweep: Annotated[
        bool,
        _option("--sweep", help="Also show the numerical error for steps 1e-1 … 1e-12. Implies --check.", panel=CHECK),
    ] = False,
    fast: Annotated[
        bool | None,
        _option(
            "--fast/--no-fast",
            help="Check along random directions (O(k·n) each) instead of every element; "
            "implies --check. Default: only when the full check would take seconds. --no-fast: the "
            "element-wise check.",
            panel=CHECK,
            show_default=False,
        ),
    ] = None,
    probes: Annotated[
        int | None,
        _option(
            "--probes",
            help=f"Number of random directions for --fast (implies it; 1 to {options.MAX_PROBES}). "
            f"Default: {options.DEFAULT_PROBES}.",
            panel=CHECK,
            show_default=False,
        ),
    ] = None,
    running: Running = None,
    save_running: SaveRunning = None,
    momentum: Momentum = options.DEFAULT_MOMENTUM,
    eval: Eval = False,
) -> None:
    """Backward pass: dx, dw, db for an upstream gradient dy; --jacobian; --check."""
    inputs = options.InputOptions(
        file=file, delimiter=delimiter, header=header, eps=eps, weight=weight, bias=bias, dtype=dtype.value,
        running=running, save_running=save_running, momentum=momentum, eval=eval,
    )  # fmt: skip
    outputs = options.OutputOptions(
        format=_value(format), output=output, precision=precision, full=full, only=_value(only), plot=plot
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
    _run(lambda: _grad(request, outputs))


def _value(choice: Enum | None) -> str | None:
    return None if choice is None else choice.value


def _forward(request: options.ForwardRequest, outputs: options.OutputOptions) -> int:
    from . import commands, output

    extras = {"stats": "--stats"} if request.stats else {}
    fmt = _validate(outputs, options.FORWARD_FORMATS, extras=extras, default="y")
    _check_save_running(request.inputs)
    result = commands.forward(request)
    return output.emit(output.forward_document(result, request.inputs.save_running), outputs, fmt)


def _grad(request: options.GradRequest, outputs: options.OutputOptions) -> int:
    from . import commands, output
    from .render import ProgressBar

    extras = {}
    if request.jacobian:
        extras["jacobian"] = "--jacobian"
    if request.check.sweep:
        extras["check"] = "--sweep"
    drawable = request.jacobian or request.check.enabled
    fmt = _validate(outputs, options.GRAD_FORMATS, extras=extras, default="dx", pictures=drawable)
    _check_save_running(request.inputs)
    with ProgressBar("gradient check") as progress:
        result = commands.grad(request, progress)
    return output.emit(output.grad_document(result, request.inputs.save_running), outputs, fmt)


def _validate(outputs: options.OutputOptions, formats: tuple[str, ...], **what) -> str:
    from . import output

    return output.validate(outputs, formats=formats, stdout_is_tty=output.stdout_is_terminal(), **what)


def _check_save_running(inputs: options.InputOptions) -> None:
    if inputs.save_running:
        from .io.files import check_output_path

        check_output_path(inputs.save_running, "--save-running")


@app.command(epilog=EXPLAIN_EXAMPLES)
def explain(
    file: File = None,
    *,
    column: Annotated[
        list[str] | None,
        _option(
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
    eps: Eps = options.DEFAULT_EPS,
    weight: Weight = None,
    bias: Bias = None,
    dtype: Dtype = DType.float64,
    format: Annotated[
        ExplainFormat | None,
        _option(
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
    inputs = options.InputOptions(
        file=file, delimiter=delimiter, header=header, eps=eps, weight=weight, bias=bias, dtype=dtype.value,
        running=running, eval=eval,
    )  # fmt: skip
    outputs = options.OutputOptions(format=_value(format), output=output, precision=precision, full=full)
    request = options.ExplainRequest(inputs=inputs, column=_one_column(column), dy=dy, seed=seed)
    _run(lambda: _explain(request, outputs))


def _one_column(given: list[str] | None) -> str | None:
    """explain's --column, given at most once (a second one would silently replace the first)."""
    if given and len(given) > 1:
        raise typer.BadParameter(f"explain walks through one column; --column was given {len(given)} times")
    return given[0] if given else None


def _explain(request: options.ExplainRequest, outputs: options.OutputOptions) -> int:
    from . import commands, output

    fmt = _validate(outputs, options.EXPLAIN_FORMATS)
    result = commands.explain(request)
    return output.emit(output.explain_document(result), outputs, fmt)


@app.command(epilog=AUDIT_EXAMPLES)
def audit(
    target: Annotated[
        str | None,
        typer.Argument(
            help="path/to/file.py:func or package.module:func (a Python function), torch, or bncli.",
            metavar="[TARGET]",
            show_default=False,
        ),
    ] = None,
    *,
    cmd: Annotated[
        str | None,
        _option(
            "--cmd",
            help="Audit a program instead (any language): run once per case with a folder holding "
            "x.npy, dy.npy, params.json (and x.csv, dy.csv); it writes y, dx, dw, db there as .npy or .csv.",
            panel=AUDIT,
            metavar="'PROGRAM [ARGS]'",
        ),
    ] = None,
    case: Annotated[
        list[str] | None,
        _option("--case", help="Run only this case; repeatable (see --list-cases).", panel=AUDIT, metavar="NAME"),
    ] = None,
    list_cases: Annotated[bool, _option("--list-cases", help="List the cases and exit.", panel=AUDIT)] = False,
    extreme: Annotated[
        bool,
        _option(
            "--extreme", help="Add the extreme cases (squares overflow or underflow), reported apart.", panel=AUDIT
        ),
    ] = False,
    dtype: Annotated[
        DType | None,
        _option(
            "--dtype", help="Run the cases in this precision only. Default: both.", panel=AUDIT, show_default=False
        ),
    ] = None,
    layout: Annotated[
        Layout,
        _option(
            "--layout",
            help="nc: batch × features (BatchNorm1d); nchw, nhwc: statistics per channel over N, H, W (BatchNorm2d).",
            panel=AUDIT,
        ),
    ] = Layout.nc,
    timeout: Annotated[
        float, _option("--timeout", help="Seconds each call may take before it is an ERROR.", panel=AUDIT, min=0.001)
    ] = options.DEFAULT_TIMEOUT,
    format: Annotated[
        AuditFormat | None,
        _option(
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
    outputs = options.OutputOptions(format=_value(format), output=output, plot=plot)
    dtypes = options.DTYPES if dtype is None else (dtype.value,)
    _run(
        lambda: _audit(
            list_cases,
            outputs,
            target=target,
            cmd=cmd,
            cases=tuple(case or ()),
            extreme=extreme,
            dtypes=dtypes,
            layout=layout.value,
            timeout=timeout,
        )  # fmt: skip
    )


def _audit(list_cases: bool, outputs: options.OutputOptions, **settings) -> int:
    """``settings``: the fields of :class:`bncli.auditing.AuditOptions`, by name."""
    from . import auditing, output

    if list_cases:
        cases = auditing.list_cases(extreme=True)
        if outputs.format == "json":
            from .io.write import format_json

            listing = [{"name": c.name, "description": c.description, "extreme": c.extreme} for c in cases]
            print(format_json({"cases": listing}), end="")
            return 0
        for case in cases:
            extreme = " (--extreme)" if case.extreme else ""
            print(f"{case.name:<14} {case.description}{extreme}")
        return 0
    if (settings["target"] is None) == (settings["cmd"] is None):
        from .errors import InputError

        raise InputError("audit needs a TARGET or --cmd 'PROGRAM [ARGS]' (one of them); see 'bncli audit --help'")
    fmt = _validate(outputs, options.AUDIT_FORMATS, pictures=True)
    progress = _audit_progress()
    try:
        report = auditing.run_audit(auditing.AuditOptions(**settings), progress=progress)
    finally:
        if progress:
            progress(None)
    return output.emit(output.audit_document(report), outputs, fmt)


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


# ------------------------------------------------------------------ running a command


def _run(action: Callable[[], int]) -> None:
    """Run a command; every failure becomes one line on stderr and its exit code."""
    from .errors import InputError, OutputError, printable

    def fail(message: str, code: int) -> typer.Exit:
        try:
            print(f"bncli: error: {printable(message)}", file=sys.stderr, flush=True)
        except (OSError, ValueError, AttributeError):
            pass
        return typer.Exit(code)

    try:
        code = action()
    except InputError as error:
        raise fail(str(error), EXIT_INPUT) from None
    except OutputError as error:
        raise fail(str(error), EXIT_OUTPUT) from None
    except BrokenPipeError:
        _silence_stdout()
        raise typer.Exit(EXIT_BROKEN_PIPE) from None
    except OSError as error:  # writing to stdout (full disk, closed stream)
        _silence_stdout()
        raise fail(f"cannot write the result to stdout: {error.strerror or error}", EXIT_OUTPUT) from None
    except MemoryError:
        raise fail("out of memory: the input is too large for this machine", EXIT_INPUT) from None
    except Exception as error:  # a bug in bncli: one line; the traceback on request
        if entry.received is not None:
            raise Terminated(entry.received) from None
        if os.environ.get("BNCLI_DEBUG"):
            raise
        first_line = (str(error).splitlines() or [""])[0]
        raise fail(
            f"internal error: {type(error).__name__}: {first_line} (a bug; BNCLI_DEBUG=1 shows the traceback)",
            EXIT_BUG,
        ) from None
    if code:
        raise typer.Exit(code)


def _silence_stdout() -> None:
    """After a failed write to stdout, point it at /dev/null so the final flush is quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
    except OSError:
        pass


def _click_exception() -> type[Exception]:
    """click's ClickException (Typer's vendored copy or click itself)."""
    return next(cls for cls in typer.BadParameter.__mro__ if cls.__name__ == "ClickException")


def main() -> None:
    """Console entry point: like ``app()``, but usage errors are one line and exit 2."""
    click_exception = _click_exception()
    try:
        code = app(standalone_mode=False)
    except click_exception as error:
        if type(error).__name__ == "NoArgsIsHelpError":  # the help is already printed
            sys.exit(error.exit_code)
        command = sys.argv[1] if len(sys.argv) > 1 and not sys.argv[1].startswith("-") else ""
        hint = f" (see 'bncli {command} --help')" if command else " (see 'bncli --help')"
        print(f"bncli: error: {error.format_message()}{hint}", file=sys.stderr)
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except OSError as error:  # the help or a listing could not be written
        _silence_stdout()
        print(f"bncli: error: cannot write to stdout: {error.strerror or error}", file=sys.stderr)
        sys.exit(EXIT_OUTPUT)
    except BaseException:
        # A library that checks for signals inside its own code (polars does) may turn our Terminated
        # into an exception of its own: the signal still decides how the run ends.
        if entry.received is not None:
            sys.exit(128 + entry.received)
        raise
    sys.exit(code if isinstance(code, int) else 0)
