"""A pytest helper: one line in a test suite audits a batch-norm implementation.

from bncli.testing import assert_batchnorm

def test_my_batchnorm():
    assert_batchnorm(my_batchnorm)                    # every default case, both dtypes
    assert_batchnorm(my_batchnorm, dtypes=["float32"], layout="nchw")
"""

from __future__ import annotations


def assert_batchnorm(func, **options) -> None:
    """Audit ``func(x, weight, bias, eps, dy)``; AssertionError with the report's table view unless PASS
    (INCOMPLETE too: a quantity returned in no case).

    ``options`` are those of :class:`bncli.audit.run.AuditOptions` (cases, extreme,
    dtypes, layout, timeout, consistency, quantities, eps).
    """
    __tracebackhide__ = True  # pytest shows the caller's line and the report, not this helper
    from . import audit

    report = audit(func, **options)
    if not report.passed:
        raise AssertionError("\n" + report.text)
