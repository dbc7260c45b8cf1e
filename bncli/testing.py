"""A pytest helper: one line in a test suite audits a batch-norm implementation.

from bncli.testing import assert_batchnorm

def test_my_batchnorm():
    assert_batchnorm(my_batchnorm)                    # every default case, both dtypes
    assert_batchnorm(my_batchnorm, dtypes=["float32"], layout="nchw")
"""

from __future__ import annotations


def assert_batchnorm(func, **options) -> None:
    """Audit ``func(x, weight, bias, eps, dy)``; AssertionError with the report as text unless PASS
    (INCOMPLETE too: a quantity returned in no case).

    ``options`` are those of :class:`bncli.audit.run.AuditOptions` (cases, extreme,
    dtypes, layout, timeout, consistency, quantities, eps).
    """
    from . import audit
    from .present.audit import report_text

    report = audit(func, **options)
    if not report.passed:
        raise AssertionError(report_text(report))
