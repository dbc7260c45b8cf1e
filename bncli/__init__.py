"""bncli: batch normalization and gradient checking from the command line."""

__version__ = "0.1.0"
