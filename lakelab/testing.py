"""A pytest helper for your own suite: ``assert_objective(my_dpo, like="dpo")``.

Runs ``lakelab.verify.verify`` and fails with the whole report (every check, the likely bug of
each failure) when any check fails.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lakelab.verify import Report, verify

__all__ = ["assert_objective"]


def assert_objective(
    fn: Callable[..., Any], like: str, hparams: dict[str, Any] | None = None, **kw: Any
) -> Report:
    """Assert that ``fn`` passes every check against objective ``like``; returns the report."""
    report = verify(fn, like=like, hparams=hparams, **kw)
    if not report.ok:
        raise AssertionError(f"{fn!r} does not implement {like!r}:\n{report}")
    return report
