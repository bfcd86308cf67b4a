"""What an action is: a typed plan, an apply, the stores it locks and the checks that verify it.

The runner (:mod:`maintenance.runner`) takes an :class:`Action` through the gates:
``plan(hub)`` reads (never writes) and returns a :class:`Plan` whose ``details`` is the
action's own dataclass; ``apply(hub, plan, run)`` writes, with the run's context (run_id,
environment, progress) handed in by the runner.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, is_dataclass
from typing import Any, Generic, Protocol, TypeVar

from kfm_ops.hub import ServiceHub

D = TypeVar("D")

Progress = Callable[[str, int, int | None], None]
"""progress(label, done, total): progress bars on a terminal, nothing elsewhere."""


@dataclass
class Plan(Generic[D]):
    """What an action will do: what, how much, where, how to roll back, and its own details."""

    what: str
    where: list[str]
    how_much: dict[str, Any]
    rollback: str
    details: D
    steps: list[str] = field(default_factory=list)
    nothing_to_do: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"what": self.what, "where": self.where, "how_much": self.how_much, "rollback": self.rollback,
                "steps": self.steps, "nothing_to_do": self.nothing_to_do, "details": _plain(self.details)}


def _plain(value: Any) -> Any:
    """Plans, dataclasses and lists of them as JSON-ready values (for the ledger and the report)."""
    if isinstance(value, Plan):
        return value.as_dict()
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _nothing(*_args: object) -> None:
    return None


@dataclass(frozen=True)
class RunContext:
    """What the runner knows of this run and hands to ``apply``.

    ``checkpoint()`` is for the loops of ``apply``: call it between batches; it raises when
    the run's store locks are no longer held (the run must stop at once).
    """

    run_id: str
    environment: str
    progress: Progress = _nothing
    checkpoint: Callable[[], None] = _nothing


class Action(Protocol[D]):
    name: str
    """One name: the registry key, the ledger's ``action``, the report's node ids."""
    stores: tuple[str, ...]
    """The stores it locks (advisory locks named after them)."""
    derived: tuple[str, ...]
    """The derived stores it reads or writes: each must carry the canonical deployment stamp."""
    verify_markers: str
    """The ``-m`` expression of the checks that cover what it changes ("" = none)."""
    bootstraps_schema: bool
    """Whether it may run on an unmigrated, unstamped database (only ``migrate --environment X``, which stamps it)."""

    def plan(self, hub: ServiceHub) -> Plan[D]: ...

    def apply(self, hub: ServiceHub, plan: Plan[D], run: RunContext) -> dict[str, Any]: ...
