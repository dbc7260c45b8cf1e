"""What the user asked for, as plain option objects built by name. No numpy: the CLI imports this at start-up.

Every default is written here once; the CLI, the commands and the numeric core take it from here.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_EPS = 1e-5
DEFAULT_MOMENTUM = 0.1
DEFAULT_PRECISION = 6
DEFAULT_SEED = 0
DEFAULT_PROBES = 8
# --jacobian and explain build k×k numbers per column: at most this many in all (256 MB), e.g.
# one column of 4096 rows or 32 columns of 724.
MAX_MATRIX_ELEMENTS = 1 << 25
# A probe costs about one forward pass; more than this many is a full check's worth on any input
# that the probes are meant for, and keeps --probes from running for ever.
MAX_PROBES = 10_000

# Every output format, once. The groups below and each command's formats are chosen from it.
FORMATS = ("table", "csv", "tsv", "json", "npy", "markdown", "svg", "html", "png", "pdf")
ONE_MATRIX_FORMATS = ("csv", "tsv", "npy")  # one matrix of the result (--only chooses which)
RECORDED_FORMATS = ("svg", "html")  # the table view, recorded as a terminal shows it
FIGURE_FORMATS = ("png", "pdf")  # the pictures alone, drawn by matplotlib
PICTURE_FILE_FORMATS = RECORDED_FORMATS + FIGURE_FORMATS  # only as files; any command with pictures
# What each command writes besides picture files: the first is the default on a terminal, the
# second elsewhere.
FORWARD_FORMATS = ("table", "csv", "tsv", "json", "npy")
GRAD_FORMATS = FORWARD_FORMATS
EXPLAIN_FORMATS = ("table", "json", "markdown")
AUDIT_FORMATS = ("table", "json")
LAYOUTS = ("nc", "nchw", "nhwc")
# How an audited Python target is written: bncli's own convention, or as people write them (bncli.audit.styles).
STYLES = ("native", "cs231n", "torch", "jax")
INDEX_COLUMN_CHOICES = ("keep", "drop")  # an unnamed first column holding 0 … k−1 (pandas' index)
DEFAULT_TIMEOUT = 60.0
DTYPES = ("float64", "float32")
# The audit also runs in the half precisions (x and dy in them; weight, bias, eps, running statistics in float32).
HALF_DTYPES = ("float16", "bfloat16")
AUDIT_DTYPES = DTYPES + HALF_DTYPES
METHODS = ("central", "complex")
FORWARD_PARTS = ("y", "s", "stats")
GRAD_PARTS = ("dx", "dw", "db", "dy", "jacobian", "check")


@dataclass(frozen=True, kw_only=True)
class InputOptions:
    """The data and the batch-norm parameters: shared by every command that reads a matrix."""

    file: str | None = None  # None: stdin when piped, else the bundled sample; "-": stdin
    delimiter: str | None = None  # None: by extension, else sniffed
    header: bool | None = None  # None: a header iff some field of the first row is not a number
    index_column: str = "keep"  # "drop": an unnamed first column of 0 … k−1 (pandas' index) is left out
    eps: float = DEFAULT_EPS
    weight: str | None = None  # one number or a comma list of n; None: 1
    bias: str | None = None  # likewise; None: 0
    dtype: str = "float64"
    running: str | None = None  # running statistics to start from (training) or to use (--eval)
    save_running: str | None = None
    momentum: float = DEFAULT_MOMENTUM
    eval: bool = False


@dataclass(frozen=True, kw_only=True)
class OutputOptions:
    """How to show a result: never consulted while the result is computed."""

    format: str | None = None  # None: by --output's extension, else table on a terminal, csv otherwise
    output: str | None = None  # None: stdout
    precision: int = DEFAULT_PRECISION
    full: bool = False
    only: str | None = None  # one part of the result, in every format
    plot: bool = False  # pictures too (in tables and svg/html files; png/pdf files are pictures alone)


@dataclass(frozen=True, kw_only=True)
class CheckOptions:
    """``grad --check`` and its variants."""

    enabled: bool = False
    method: str = "central"
    step: float | None = None  # None: per method (gradcheck.default_step)
    rtol: float | None = None  # None: each error against its noise (gradcheck.NOISE_MULTIPLE)
    against: str | None = None
    sweep: bool = False
    fast: bool | None = None  # None: probes only when the full check would be slow
    probes: int | None = None  # None: DEFAULT_PROBES when probing


@dataclass(frozen=True, kw_only=True)
class ForwardRequest:
    inputs: InputOptions
    stats: bool = False


@dataclass(frozen=True, kw_only=True)
class GradRequest:
    inputs: InputOptions
    dy: str | None = None  # None: N(0, 1) draws from seed; "-": stdin
    seed: int = DEFAULT_SEED
    jacobian: bool = False
    columns: tuple[str, ...] = ()  # names or indices for --jacobian; empty: all
    check: CheckOptions = CheckOptions()


@dataclass(frozen=True, kw_only=True)
class ExplainRequest:
    inputs: InputOptions
    column: str | None = None  # name or index; None: the first
    dy: str | None = None
    seed: int = DEFAULT_SEED
