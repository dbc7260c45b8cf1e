"""grad --check: numerical gradients of batch norm from its forward pass alone, and their comparison.

Pure numpy, no I/O. :func:`check_gradients` is the entry point; the notes on where to
differentiate, the step, the verdict against each element's noise and the cost are in
:mod:`bncli.gradcheck.check`. The modules, each one job: :mod:`.problem` (what is
differentiated), :mod:`.derivatives` (numerical derivatives), :mod:`.noise` (what a value may
be off by), :mod:`.compare` (one quantity against its numerical value), :mod:`.check` (the run).
"""

from .check import SWEEP_STEPS, CheckReport, SweepPoint, check_gradients
from .compare import Comparison
from .derivatives import ProgressCallback
from .noise import NOISE_MULTIPLE, Precision, evident_precision
from .problem import METHODS, CheckedGradients, Problem, StepError, default_step

__all__ = [
    "METHODS",
    "NOISE_MULTIPLE",
    "SWEEP_STEPS",
    "CheckReport",
    "CheckedGradients",
    "Comparison",
    "Precision",
    "ProgressCallback",
    "Problem",
    "StepError",
    "SweepPoint",
    "check_gradients",
    "default_step",
    "evident_precision",
]
