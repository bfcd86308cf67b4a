"""The ten services of the stack, in start order, and how to pick some of them by name."""

from __future__ import annotations

from devstack.config import Stack
from devstack.errors import StackError
from devstack.services.base import Service
from devstack.services.llm import LLM
from devstack.services.neo4j import Neo4j
from devstack.services.opa import OPA
from devstack.services.opensearch import OpenSearch
from devstack.services.postgis import PostGIS
from devstack.services.prometheus import Prometheus, Pushgateway
from devstack.services.redis import Redis
from devstack.services.stunnel import Stunnel
from devstack.services.toxiproxy import Toxiproxy

SERVICE_CLASSES: list[type[Service]] = [PostGIS, OpenSearch, Neo4j, Redis, OPA, LLM, Toxiproxy, Prometheus,
                                        Pushgateway, Stunnel]
ALIASES = {"postgres": "postgis", "postgresql": "postgis", "pg": "postgis", "search": "opensearch",
           "graph": "neo4j", "cache": "redis", "policy": "opa", "toxi": "toxiproxy", "prom": "prometheus",
           "metrics": "prometheus", "pgw": "pushgateway", "tls": "stunnel"}

__all__ = ["ALIASES", "LLM", "OPA", "SERVICE_CLASSES", "Neo4j", "OpenSearch", "PostGIS", "Prometheus",
           "Pushgateway", "Redis", "Service", "Stunnel", "Toxiproxy", "services"]


def services(st: Stack, names: list[str] | None = None) -> list[Service]:
    all_svcs = [cls(st) for cls in SERVICE_CLASSES]
    if not names:
        return all_svcs
    by_name = {s.name: s for s in all_svcs}
    picked = []
    for raw in names:
        name = ALIASES.get(raw.lower(), raw.lower())
        if name not in by_name:
            raise StackError(f"unknown service {raw!r}; known: {', '.join(by_name)}")
        if by_name[name] not in picked:
            picked.append(by_name[name])
    return [s for s in all_svcs if s in picked]
