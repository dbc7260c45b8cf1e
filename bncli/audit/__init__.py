"""Audit another implementation of batch norm: a battery of cases, exact references, budgets, verdicts.

The modules, each one job: :mod:`.cases` (the battery and layouts), :mod:`.reference`
(exact values, natural scales, budgets), :mod:`.judge` (well-formed outputs, verdicts),
:mod:`.findings` (what the outputs show: the classic mistakes, precision, range),
:mod:`.consistency` (the backward against the target's own forward), :mod:`.run` (the driver,
the only importer of :mod:`.targets`),
:mod:`.targets` (how a function, program, torch or bncli is called) and :mod:`.worker`
(the process a Python function runs in), :mod:`.styles` (cs231n, torch and jax code,
adapted). This module is imported at start-up: it imports nothing.
"""


def audit(func, **options):
    """Audit a batch-norm implementation; returns a :class:`bncli.audit.run.AuditReport`.

    ``func`` is a callable ``func(x, weight, bias, eps, dy)`` returning a mapping with
    any of "y", "dx", "dw", "db", "running_mean", "running_var" (or a tuple y, dx, dw, db);
    it is passed those of the keywords running_mean, running_var, momentum, training that it
    declares. Or a target name: "FILE.py:FUNC",
    "package.module:FUNC", "torch", "bncli". ``options`` are those of
    :class:`bncli.audit.run.AuditOptions`: ``cases``, ``extreme``, ``dtypes`` (float64, float32, float16,
    bfloat16, or "all"; default float64 and float32), ``layout``, ``timeout``, ``cmd``, ``consistency``,
    ``quantities`` (those judged; default y, dx, dw, db and the running statistics the target declares),
    ``eps`` (every case at this eps), ``eval`` (inference mode), ``style`` (native, cs231n, torch, jax; None:
    detected from a named file). The report has ``.verdict`` (PASS, INACCURATE, INCOMPLETE,
    WRONG, ERROR), ``.passed`` and ``.findings``.
    """
    from .run import AuditOptions, run_audit  # lazy: this package is imported at CLI start-up

    return run_audit(AuditOptions(target=func, **options))
