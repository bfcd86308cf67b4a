"""When the reindex's convergence rounds stop: few changes, or a backlog that only its own fixed cost sustains."""

from __future__ import annotations

import pytest

from maintenance.actions.search import rounds_done


@pytest.mark.parametrize(("rounds", "written", "applied", "done"), [
    ([150], 50.0, 40.0, True),                      # few changes left: done, whatever the rates
    ([2775], 50.0, 900.0, False),                   # the first round after the build: never steady alone
    ([2775, 1023], 50.0, 900.0, False),             # still shrinking fast
    ([2775, 1023, 591, 516], 50.0, 600.0, True),    # stopped shrinking, written 12x faster than made: steady
    ([900, 1100], 120.0, 150.0, False),             # growing and barely written faster than made: outrun
    ([600, 620], 50.0, 90.0, False),                # not shrinking, but the writes are the bottleneck
])
def test_rounds_done(rounds: list[int], written: float, applied: float, done: bool) -> None:
    assert rounds_done(rounds, written=written, applied=applied) is done
