"""bncli: batch normalization and gradient checking from the command line."""

__version__ = "0.1.0"


def audit(func, **options):
    """Audit a batch-norm implementation; returns a :class:`bncli.auditing.AuditReport`.

    ``func`` is a callable ``func(x, weight, bias, eps, dy)`` returning a mapping with
    any of "y", "dx", "dw", "db" (or a tuple), or a target name: "FILE.py:FUNC",
    "package.module:FUNC", "torch", "bncli". ``options`` are those of
    :class:`bncli.auditing.AuditOptions`: ``cases``, ``extreme``, ``dtypes``,
    ``layout``, ``timeout``, ``cmd``, ``consistency``. The report has ``.verdict``
    (PASS, INACCURATE, WRONG, ERROR) and ``.passed``.
    """
    from .auditing import AuditOptions, run_audit  # lazy: this package is imported at CLI start-up

    return run_audit(AuditOptions(target=func, **options))
