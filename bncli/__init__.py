"""bncli: batch normalization and gradient checking from the command line."""

__version__ = "0.1.0"

# Bound here, after the package bncli.audit is imported, so that ``bncli.audit`` stays the function:
# importing a submodule later (bncli.audit.run) no longer rebinds the name to the package.
from .audit import audit as audit  # noqa: E402
