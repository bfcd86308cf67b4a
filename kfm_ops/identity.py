"""One deployment identity, carried by every store: which deployment (and environment) a store belongs to.

``kfm-maint migrate --environment X`` stamps the canonical database (``kfm_ops.environment``:
a deployment id and the environment); ``kfm-maint identity stamp`` copies that stamp into each
derived store (search: the ``_meta`` of a small identity index; graph: one identity node;
cache: one hash). Every action compares the stamps of the stores it reads or writes with the
canonical one — the read and the write connection of PostgreSQL included — and refuses on any
difference or a missing stamp; the identity checks report the same as smoke failures. So
settings that point one store at another deployment (a staging read DSN next to a production
write DSN, a production search URL next to a dev database) cannot mix them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from kfm_ops import contracts
from kfm_ops.errors import ActionRefused

if TYPE_CHECKING:
    from kfm_ops.hub import ServiceHub

DERIVED = ("search", "graph", "cache")
"""The stores that carry a copy of the canonical stamp."""


@dataclass(frozen=True)
class Identity:
    """A deployment: its id (a UUID made when the canonical database was stamped) and its environment."""

    deployment_id: str
    environment: str

    def __str__(self) -> str:
        return f"{self.environment} deployment {self.deployment_id}"

    def as_fields(self) -> dict[str, str]:
        return {"deployment_id": self.deployment_id, "environment": self.environment}

    @classmethod
    def from_fields(cls, fields: dict[str, object] | None) -> Identity | None:
        """The identity a stamp's fields describe; None when it is missing or incomplete."""
        if not fields or not fields.get("deployment_id") or not fields.get("environment"):
            return None
        return cls(str(fields["deployment_id"]), str(fields["environment"]))


def read(hub: ServiceHub, service: str, *, write: bool = False) -> Identity | None:
    """The stamp ``service`` carries (``write``: read it through the writer, for PostgreSQL's write DSN)."""
    settings_dir = hub.settings.contracts_dir
    if service == "postgis":
        return hub.postgis(write=write).identity()
    if service == "search":
        return hub.search().identity(contracts.load("search", settings_dir)["identity_index"])
    if service == "graph":
        return hub.graph().identity(contracts.load("graph", settings_dir)["identity_label"])
    if service == "cache":
        return hub.cache().identity(contracts.load("cache", settings_dir)["redis"]["identity_key"])
    raise ValueError(f"{service} carries no deployment identity")


def require_same(hub: ServiceHub, canonical: Identity, services: tuple[str, ...], *, action: str) -> None:
    """Refuse (exit 3) unless the read connection and every derived store in ``services`` carry ``canonical``."""
    for service in ("postgis", *[s for s in DERIVED if s in services]):
        found = read(hub, service)
        where = hub.settings.section(service)
        place = f"{service} at {where.where if where else '?'}" + (" (read DSN)" if service == "postgis" else "")
        if found is None:
            raise ActionRefused(
                f"{action} refused: {place} carries no deployment identity (the canonical database is {canonical})",
                hint=f"if it belongs to this deployment, stamp it: kfm-maint identity stamp --targets {service}"
                if service != "postgis" else "point KFM_POSTGIS__DSN at the same database as KFM_POSTGIS__WRITE_DSN")
        if found != canonical:
            raise ActionRefused(
                f"{action} refused: {place} belongs to {found}, the canonical database to {canonical}",
                hint="the settings point at stores of two deployments; fix the KFM_"
                + service.upper() + "__* settings (or, if the store was rebuilt for this deployment, "
                "kfm-maint identity stamp --replace)")
