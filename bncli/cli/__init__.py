"""The bncli command line (Typer): one module per command, on one app.

Each command declares its options, builds the option objects by name, and runs the command
through :func:`bncli.cli.app.run`, which maps its errors to exit codes. The command modules are
imported here in the order ``bncli --help`` lists them: importing one registers its command.
"""

from .app import app, main

# isort: off
from . import forward, grad, explain, audit  # noqa: F401
# isort: on

__all__ = ["app", "main"]
