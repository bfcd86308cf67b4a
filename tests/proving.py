"""How a proof asserts: run one check in its own pytest process and see it fail, naming the fault."""

from __future__ import annotations

from collections.abc import Callable

from tests.helpers import CheckResult, run_check

PROOF = "kfm-proof"
"""Prefix of every object a proof creates (indices, keys, ids, application names)."""


def assert_failed(nodeid: str, result: CheckResult, *needles: str, unreachable: bool = False) -> str:
    """Assert a check's result is a failure naming every needle; return its message.

    ``unreachable``: an error (the service's fixture failed) counts as the failure too.
    """
    __tracebackhide__ = True
    allowed = ("failed", "error") if unreachable else ("failed",)
    assert result.outcome in allowed, f"{nodeid}: expected {'/'.join(allowed)}, got {result.outcome}: {result.message}"
    missing = [n for n in needles if n not in result.message]
    assert not missing, f"{nodeid} failed, but its message does not name {missing}: {result.message}"
    return result.message


def assert_fails(nodeid: str, *needles: str, env: dict[str, str] | None = None, unreachable: bool = False) -> str:
    """Run one check in a fresh pytest process; assert it failed naming every needle. Returns the message."""
    __tracebackhide__ = True
    return assert_failed(nodeid, run_check(nodeid, env=env), *needles, unreachable=unreachable)


def assert_passes(nodeid: str, env: dict[str, str] | None = None) -> None:
    """Run one check in a fresh pytest process; assert it passed (the stack is healthy again)."""
    __tracebackhide__ = True
    result = run_check(nodeid, env=env)
    assert result.outcome == "passed", f"{nodeid}: expected passed, got {result.outcome}: {result.message}"


def assert_fails_injected(nodeid: str, inject: Callable[[], None], holds: Callable[[], bool], *needles: str,
                          attempts: int = 3) -> str:
    """inject(), then assert_fails — for a fault the server may undo by itself during the check run.

    When the check passed and ``holds()`` says the fault is gone, the check was right: inject
    again (up to ``attempts`` times). A pass while the fault still holds fails as usual.
    """
    __tracebackhide__ = True
    for _ in range(attempts):
        inject()
        result = run_check(nodeid)
        if result.outcome != "passed" or holds():
            break
    return assert_failed(nodeid, result, *needles)
