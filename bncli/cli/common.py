"""What the commands share: the options every command declares alike, and the steps around running one."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from enum import Enum
from typing import Annotated

import typer
from typer.core import TyperCommand

from .. import options

Format = Enum("Format", {name: name for name in options.FORWARD_FORMATS + options.GRAD_FORMATS}, type=str)
DType = Enum("DType", {name: name for name in options.DTYPES}, type=str)
IndexChoice = Enum("IndexChoice", {name: name for name in options.INDEX_COLUMN_CHOICES}, type=str)

INPUT = "Input"
OUTPUT = "Output"
MODE = "Running statistics and eval mode"


UsageError = next(cls for cls in typer.BadParameter.__mro__ if cls.__name__ == "UsageError")


class OneValueEach(TyperCommand):
    """A command whose single-value options may each be given once: click would keep the last silently.

    The arguments are parsed once more, before click's own parse, for the order in which options
    were met; that parse has no effects (no callbacks, no conversions) and fails where click's would.
    """

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        if not ctx.resilient_parsing:  # shell completion: any prefix of a command line is fine
            _, _, order = self.make_parser(ctx).parse_args(args=list(args))
            refuse_repeated(order)
        return super().parse_args(ctx, args)


def refuse_repeated(order: list) -> None:
    """A usage error naming the first option in ``order`` (params as met) that holds one value but was met twice.

    A plain flag (``--check``) given twice says the same thing twice; a ``--x/--no-x`` pair holds a value.
    """
    counts: dict[int, int] = {}
    for param in order:
        counts[id(param)] = counts.get(id(param), 0) + 1
    for param in dict.fromkeys(order):
        plain_flag = getattr(param, "is_flag", False) and not getattr(param, "secondary_opts", None)
        repeatable = getattr(param, "multiple", False) or getattr(param, "count", False) or plain_flag
        if getattr(param, "param_type_name", "") == "option" and not repeatable and counts[id(param)] > 1:
            names = "/".join(sorted([*param.opts, *param.secondary_opts], key=lambda name: (-len(name), name)))
            raise UsageError(f"{names} given {counts[id(param)]} times; it takes one value: give it once")


def option(*names: str, help: str, panel: str, **settings):
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
    option(
        "--delimiter",
        "-d",
        help="Field delimiter: , ; | tab whitespace … Default: .tsv → tab, else sniffed.",
        panel=INPUT,
        metavar="CHAR",
    ),
]
Header = Annotated[
    bool | None,
    option(
        "--header/--no-header",
        help="First row is a header. Default: yes iff a field in it is not a number.",
        panel=INPUT,
        show_default=False,
    ),
]
IndexColumn = Annotated[
    IndexChoice,
    option(
        "--index-column",
        help="An unnamed first column holding 0 … k−1 (the index pandas' to_csv() writes): keep it as data "
        "(named on stderr), or drop it from FILE and likewise from --dy and --against.",
        panel=INPUT,
    ),
]
Eps = Annotated[float, option("--eps", help="ε added to the variance (≥ 0).", panel=INPUT)]
Weight = Annotated[
    str | None,
    option(
        "--weight",
        "-w",
        help="w (gamma): one number, or a comma list of one per column. Default: 1.",
        panel=INPUT,
        metavar="W",
    ),
]
Bias = Annotated[
    str | None,
    option(
        "--bias",
        "-b",
        help="b (beta): one number, or a comma list of one per column. Default: 0.",
        panel=INPUT,
        metavar="B",
    ),
]
Dtype = Annotated[DType, option("--dtype", help="Precision of the analytic computation.", panel=INPUT)]
FormatOption = Annotated[
    Format | None,
    option(
        "--format",
        "-f",
        help="Output format. Default: by --output's extension, else table on a terminal, csv otherwise.",
        panel=OUTPUT,
        show_default=False,
    ),
]
PICTURE_FILES = ".svg .html: the table view with its pictures; .png .pdf: the pictures (needs matplotlib)"


def output_option(formats: str) -> object:
    return option(
        "--output",
        "-o",
        help=f"Write here (atomically) instead of stdout; the extension sets the format ({formats}; {PICTURE_FILES}).",
        panel=OUTPUT,
        metavar="PATH",
    )


Output = Annotated[str | None, output_option(".json .tsv .npy .csv; anything else csv")]
Precision = Annotated[
    int,
    option(
        "--precision", "-p", min=1, max=17, help="Significant digits in tables (csv/tsv/json round-trip).", panel=OUTPUT
    ),
]
Full = Annotated[bool, option("--full", help="Show every element of large tables instead of a summary.", panel=OUTPUT)]
Dy = Annotated[
    str | None,
    option(
        "--dy",
        help="Upstream gradient ∂e/∂y, same shape as the data; '-' reads stdin. Default: N(0,1) draws from --seed.",
        panel=INPUT,
        metavar="PATH",
    ),
]
Seed = Annotated[int, option("--seed", min=0, help="Seed of the default dy and of --fast's directions.", panel=INPUT)]
Plot = Annotated[
    bool,
    option(
        "--plot",
        help="Also draw pictures (heatmaps, error maps, curves) in the table view and svg/html/png files.",
        panel=OUTPUT,
    ),
]
Running = Annotated[
    str | None,
    option(
        "--running",
        help="Running statistics (JSON) to start from, or to normalize with in --eval.",
        panel=MODE,
        metavar="PATH",
    ),
]
SaveRunning = Annotated[
    str | None,
    option(
        "--save-running", help="Write the running statistics updated by this batch (JSON).", panel=MODE, metavar="PATH"
    ),
]
Momentum = Annotated[float, option("--momentum", help="Momentum of the running statistics, as in PyTorch.", panel=MODE)]
Eval = Annotated[bool, option("--eval", help="Inference mode: normalize with --running statistics.", panel=MODE)]


def value_of(choice: Enum | None) -> str | None:
    return None if choice is None else choice.value


_INPUT_FIELDS = frozenset(field.name for field in fields(options.InputOptions))


def input_options(parameters: Mapping[str, object]) -> options.InputOptions:
    """The input options of a command from its parameters (its ``locals()`` on entry): every one named as
    a field of InputOptions, a choice by its value; the fields a command does not declare keep their defaults."""
    chosen = {name: value for name, value in parameters.items() if name in _INPUT_FIELDS}
    return options.InputOptions(**{name: value_of(v) if isinstance(v, Enum) else v for name, v in chosen.items()})


def validate_output(outputs: options.OutputOptions, formats: tuple[str, ...], **what) -> str:
    """The format to write, or an input error for output options that cannot show what was asked for."""
    from .. import formats as output_formats

    return output_formats.validate(outputs, formats=formats, stdout_is_tty=output_formats.stdout_is_terminal(), **what)


def check_save_running(inputs: options.InputOptions) -> None:
    if inputs.save_running:
        from ..io.files import check_output_path

        check_output_path(inputs.save_running, "--save-running")
