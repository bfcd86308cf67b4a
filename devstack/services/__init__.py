"""The ten services of the stack, in start order, the optional ones, and how to pick some of them by name."""

from __future__ import annotations

from devstack.config import Stack
from devstack.errors import StackError
from devstack.services.base import Service
from devstack.services.llm import LLM
from devstack.services.neo4j import Neo4j
from devstack.services.opa import OPA
from devstack.services.opensearch import OpenSearch, OpenSearchNode2
from devstack.services.postgis import PostGIS
from devstack.services.postgis_standby import PostgisStandby
from devstack.services.prometheus import Prometheus, Pushgateway
from devstack.services.redis import Redis
from devstack.services.stunnel import Stunnel
from devstack.services.toxiproxy import Toxiproxy

SERVICE_CLASSES: list[type[Service]] = [PostGIS, OpenSearch, Neo4j, Redis, OPA, LLM, Toxiproxy, Prometheus,
                                        Pushgateway, Stunnel]
# started only by an option of `up` (--postgis-standby, --opensearch-nodes 2), each after the service it follows
OPTIONAL_CLASSES: dict[type[Service], type[Service]] = {PostgisStandby: PostGIS, OpenSearchNode2: OpenSearch}
ALIASES = {"postgres": "postgis", "postgresql": "postgis", "pg": "postgis", "search": "opensearch",
           "graph": "neo4j", "cache": "redis", "policy": "opa", "toxi": "toxiproxy", "prom": "prometheus",
           "metrics": "prometheus", "pgw": "pushgateway", "tls": "stunnel"}

__all__ = ["ALIASES", "LLM", "OPA", "OPTIONAL_CLASSES", "SERVICE_CLASSES", "Neo4j", "OpenSearch", "OpenSearchNode2",
           "PostGIS", "PostgisStandby", "Prometheus", "Pushgateway", "Redis", "Service", "Stunnel", "Toxiproxy",
           "all_classes", "services"]


def all_classes() -> list[type[Service]]:
    """Every service class, the optional ones right after the service they follow (``down`` stops them first)."""
    ordered: list[type[Service]] = []
    for cls in SERVICE_CLASSES:
        ordered.append(cls)
        ordered += [opt for opt, follows in OPTIONAL_CLASSES.items() if follows is cls]
    return ordered


def services(st: Stack, names: list[str] | None = None, *, optional: bool = False) -> list[Service]:
    """The services named (any, optional ones included), or all: the optional ones only with ``optional``."""
    all_svcs = [cls(st) for cls in all_classes()]
    if not names:
        return [s for s in all_svcs if optional or not s.optional]
    by_name = {s.name: s for s in all_svcs}
    picked = []
    for raw in names:
        name = ALIASES.get(raw.lower(), raw.lower())
        if name not in by_name:
            raise StackError(f"unknown service {raw!r}; known: {', '.join(by_name)}")
        if by_name[name] not in picked:
            picked.append(by_name[name])
    return [s for s in all_svcs if s in picked]
