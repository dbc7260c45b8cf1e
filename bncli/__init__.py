"""bncli: batch normalization and gradient checking from the command line, and from Python.

``bncli.forward``, ``bncli.grad`` and ``bncli.check`` (see :mod:`bncli.api`) take arrays;
``bncli.audit`` audits an implementation. They are loaded on first use, so that
``import bncli`` (and the CLI's start-up) loads neither numpy nor the commands.
"""

__version__ = "0.1.0"

# Bound here, after the package bncli.audit is imported, so that ``bncli.audit`` stays the function:
# importing a submodule later (bncli.audit.run) no longer rebinds the name to the package.
from .audit import audit as audit  # noqa: E402
from .errors import InputError as InputError  # noqa: E402

_API = ("forward", "grad", "check", "CheckReport")
__all__ = ["InputError", "audit", *_API]


def __getattr__(name: str):
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'bncli' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
