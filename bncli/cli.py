"""The bncli command line (Typer): options in, one result out, exit codes 0/1/2 (70, 130, 141).

Only Typer is imported at start-up; numpy, Rich and the numeric code load
inside the commands, so that ``bncli --version`` and ``--help`` start fast.
"""

import os
import sys
from collections.abc import Callable
from enum import Enum
from typing import Annotated, Optional

import typer

from . import __version__

app = typer.Typer(
    name="bncli",
    help="Batch normalization and gradient checking: forward pass, backward pass, Jacobian, and a numerical check "
    "of gradients (bncli's own or yours) that holds at every scale.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


class Format(str, Enum):
    table = "table"
    csv = "csv"
    tsv = "tsv"
    json = "json"


class DType(str, Enum):
    float64 = "float64"
    float32 = "float32"


class Method(str, Enum):
    central = "central"
    complex = "complex"


class ForwardOnly(str, Enum):
    y = "y"
    s = "s"
    stats = "stats"


class GradOnly(str, Enum):
    dx = "dx"
    dw = "dw"
    db = "db"
    jacobian = "jacobian"


INPUT = "Input"
OUTPUT = "Output"
MODE = "Running statistics and eval mode"
CHECK = "Gradient check"

File = Annotated[
    Optional[str],
    typer.Argument(
        help="CSV, TSV or .npy file; '-' reads stdin. Omitted: stdin when piped, else the bundled sample.",
        show_default=False,
    ),
]
Delimiter = Annotated[
    Optional[str],
    typer.Option(
        "--delimiter",
        "-d",
        help="Field delimiter (',', ';', tab, whitespace, …). Default: .tsv → tab, else sniffed.",
        rich_help_panel=INPUT,
    ),
]
Header = Annotated[
    Optional[bool],
    typer.Option(
        "--header/--no-header",
        help="First row is a header. Default: yes iff some field in it is not a number.",
        show_default=False,
        rich_help_panel=INPUT,
    ),
]
Eps = Annotated[float, typer.Option("--eps", help="ε added to the variance (≥ 0).", rich_help_panel=INPUT)]
Weight = Annotated[
    Optional[str],
    typer.Option(
        "--weight",
        "-w",
        help="w (gamma): one number, or a comma list of one per column. Default: 1.",
        rich_help_panel=INPUT,
    ),
]
Bias = Annotated[
    Optional[str],
    typer.Option(
        "--bias",
        "-b",
        help="b (beta): one number, or a comma list of one per column. Default: 0.",
        rich_help_panel=INPUT,
    ),
]
Precision64 = Annotated[
    DType, typer.Option("--dtype", help="Precision of the analytic computation.", rich_help_panel=INPUT)
]
FormatOpt = Annotated[
    Optional[Format],
    typer.Option(
        "--format",
        "-f",
        help="Output format. Default: table on a terminal, csv otherwise (or by --output's extension).",
        show_default=False,
        rich_help_panel=OUTPUT,
    ),
]
Output = Annotated[
    Optional[str],
    typer.Option("--output", "-o", help="Write here (atomically) instead of stdout.", rich_help_panel=OUTPUT),
]
Digits = Annotated[
    int,
    typer.Option(
        "--precision",
        "-p",
        min=1,
        max=17,
        help="Significant digits in tables (csv/tsv/json always round-trip).",
        rich_help_panel=OUTPUT,
    ),
]
Full = Annotated[
    bool,
    typer.Option("--full", help="Show every element of large tables instead of a summary.", rich_help_panel=OUTPUT),
]
RunningIn = Annotated[
    Optional[str],
    typer.Option(
        "--running",
        help="Running statistics (JSON) to start from, or to normalize with in --eval.",
        rich_help_panel=MODE,
    ),
]
SaveRunning = Annotated[
    Optional[str],
    typer.Option(
        "--save-running", help="Write the running statistics updated by this batch (JSON).", rich_help_panel=MODE
    ),
]
Momentum = Annotated[
    float,
    typer.Option(
        "--momentum", help="Momentum of the running statistics, as in PyTorch's BatchNorm1d.", rich_help_panel=MODE
    ),
]
Eval = Annotated[
    bool,
    typer.Option(
        "--eval",
        help="Inference mode: normalize with --running statistics instead of the batch's.",
        rich_help_panel=MODE,
    ),
]


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


def _run(action: Callable[[], int]) -> None:
    """Run a command: input errors become one line on stderr and exit 2; a closed pipe ends quietly."""
    from .commands import InputError

    try:
        code = action()
    except InputError as error:
        print(f"bncli: error: {error}", file=sys.stderr)
        raise typer.Exit(2) from None
    except BrokenPipeError:
        # The reader (e.g. `head`) has what it wanted; silence the final flush too.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        raise typer.Exit(141) from None
    except Exception as error:  # a bug in bncli: one line; the traceback on request
        if os.environ.get("BNCLI_DEBUG"):
            raise
        first_line = (str(error).splitlines() or [""])[0]
        print(
            f"bncli: internal error: {type(error).__name__}: {first_line} (a bug; BNCLI_DEBUG=1 shows the traceback)",
            file=sys.stderr,
        )
        raise typer.Exit(70) from None
    if code:
        raise typer.Exit(code)


@app.command()
def forward(
    file: File = None,
    *,
    delimiter: Delimiter = None,
    header: Header = None,
    eps: Eps = 1e-5,
    weight: Weight = None,
    bias: Bias = None,
    dtype: Precision64 = DType.float64,
    format: FormatOpt = None,
    output: Output = None,
    precision: Digits = 6,
    full: Full = False,
    only: Annotated[
        Optional[ForwardOnly],
        typer.Option(
            "--only", help="Matrix for csv/tsv output. Default: y.", show_default=False, rich_help_panel=OUTPUT
        ),
    ] = None,
    stats: Annotated[
        bool, typer.Option("--stats", help="Also show per-column mean, var, std, weight, bias.", rich_help_panel=OUTPUT)
    ] = False,
    running: RunningIn = None,
    save_running: SaveRunning = None,
    momentum: Momentum = 0.1,
    eval: Eval = False,
) -> None:
    """Forward pass: y = w·(x − mean)/sqrt(var + eps) + b for each column."""
    from . import commands

    inputs, outputs = _options(locals())
    _run(lambda: commands.forward(inputs, outputs, show_stats=stats))


@app.command()
def grad(
    file: File = None,
    *,
    dy: Annotated[
        Optional[str],
        typer.Option(
            "--dy",
            help="Upstream gradient ∂e/∂y, same shape as the data. Default: N(0,1) draws from --seed.",
            rich_help_panel=INPUT,
        ),
    ] = None,
    seed: Annotated[
        int,
        typer.Option("--seed", min=0, help="Seed of the default dy and of --fast's directions.", rich_help_panel=INPUT),
    ] = 0,
    delimiter: Delimiter = None,
    header: Header = None,
    eps: Eps = 1e-5,
    weight: Weight = None,
    bias: Bias = None,
    dtype: Precision64 = DType.float64,
    jacobian: Annotated[
        bool, typer.Option("--jacobian", help="Also show the per-column Jacobian ∂y/∂x (k×k).", rich_help_panel=OUTPUT)
    ] = False,
    column: Annotated[
        Optional[list[str]],
        typer.Option(
            "--column",
            "-c",
            help="Column (name or 0-based index) for --jacobian; repeatable. Default: all.",
            rich_help_panel=OUTPUT,
        ),
    ] = None,
    format: FormatOpt = None,
    output: Output = None,
    precision: Digits = 6,
    full: Full = False,
    only: Annotated[
        Optional[GradOnly],
        typer.Option(
            "--only", help="Matrix for csv/tsv output. Default: dx.", show_default=False, rich_help_panel=OUTPUT
        ),
    ] = None,
    check: Annotated[
        bool,
        typer.Option(
            "--check", help="Compare the gradients with numerical derivatives; exit 1 on FAIL.", rich_help_panel=CHECK
        ),
    ] = False,
    method: Annotated[
        Method,
        typer.Option(
            "--method", help="central differences, or complex step (exact to rounding).", rich_help_panel=CHECK
        ),
    ] = Method.central,
    step: Annotated[
        Optional[float],
        typer.Option(
            "--step",
            help="Step relative to each column's std. Default: (ε·k)^(1/3) central (1 in eval mode, where y is affine), 1e-20 complex.",
            show_default=False,
            rich_help_panel=CHECK,
        ),
    ] = None,
    rtol: Annotated[
        Optional[float],
        typer.Option(
            "--rtol",
            help="Pass bound on the relative error. Default: 1e-6 central, 1e-10 complex, 1e-5 float32.",
            show_default=False,
            rich_help_panel=CHECK,
        ),
    ] = None,
    against: Annotated[
        Optional[str],
        typer.Option(
            "--against",
            help="Check your own gradient instead: a CSV (dx) or JSON with any of dx, dw, db. Implies --check.",
            rich_help_panel=CHECK,
        ),
    ] = None,
    sweep: Annotated[
        bool,
        typer.Option("--sweep", help="Also show the numerical error for steps 1e-1 … 1e-12.", rich_help_panel=CHECK),
    ] = False,
    fast: Annotated[
        bool,
        typer.Option(
            "--fast",
            help="Check along random directions (directional derivatives, O(k·n) each) instead of every element. Implies --check.",
            rich_help_panel=CHECK,
        ),
    ] = False,
    probes: Annotated[
        Optional[int],
        typer.Option(
            "--probes",
            help="Number of random directions for --fast (implies it). Default: 8.",
            show_default=False,
            rich_help_panel=CHECK,
        ),
    ] = None,
    running: RunningIn = None,
    save_running: SaveRunning = None,
    momentum: Momentum = 0.1,
    eval: Eval = False,
) -> None:
    """Backward pass: dx, dw, db for an upstream gradient dy; --jacobian; --check."""
    from . import commands

    inputs, outputs = _options(locals())
    wants_check = check or sweep or fast or probes is not None
    checks = commands.CheckOptions(
        wants_check, method.value, step, rtol, against, sweep, fast or probes is not None, probes
    )
    _run(
        lambda: commands.grad(
            inputs, outputs, checks, dy_path=dy, seed=seed, show_jacobian=jacobian, column_selection=column
        )
    )


def _options(given: dict):
    """The input and output options that both commands share, from a command's arguments."""
    from .commands import InputOptions, OutputOptions

    enum_value = lambda option: option and option.value
    inputs = InputOptions(
        **{
            name: given[name]
            for name in (
                "file",
                "delimiter",
                "header",
                "eps",
                "weight",
                "bias",
                "running",
                "save_running",
                "momentum",
                "eval",
            )
        },
        dtype=given["dtype"].value,
    )
    outputs = OutputOptions(
        enum_value(given["format"]), given["output"], given["precision"], given["full"], enum_value(given["only"])
    )
    return inputs, outputs


def _click_exception() -> type[Exception]:
    """click's ClickException (Typer's vendored copy or click itself)."""
    return next(cls for cls in typer.BadParameter.__mro__ if cls.__name__ == "ClickException")


def main() -> None:
    """Console entry point: like ``app()``, but usage errors are one line and exit 2."""
    if sys.argv[1:] in (["--version"], ["-V"]):  # answered before Typer builds the commands
        print(f"bncli {__version__}")
        sys.exit(0)
    click_exception = _click_exception()
    try:
        code = app(standalone_mode=False)
    except click_exception as error:
        if type(error).__name__ == "NoArgsIsHelpError":  # the help is already printed
            sys.exit(error.exit_code)
        command = " ".join(sys.argv[1:2]) if sys.argv[1:2] and not sys.argv[1].startswith("-") else ""
        hint = f" (see 'bncli {command} --help')".replace("  ", " ") if command else " (see 'bncli --help')"
        print(f"bncli: error: {error.format_message()}{hint}", file=sys.stderr)
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
