"""Least privilege: does a check session hold credentials that could write?

Check sessions are read-only by construction, but credentials that *could* write are a
risk of their own (a leaked check runner becomes a writer). Where the server can say so
(PostgreSQL's privileges, Redis's ACL) the stores answer ``write_capable()``; the report
header warns, and the smoke checks in ``opschecks/health/test_privileges.py`` fail. The
probes change nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

from kfm_ops.errors import KfmError
from kfm_ops.hub import ServiceHub

PROBED = ("postgis", "cache")
"""The services whose server can say whether a credential may write (OpenSearch without its security
plugin and Neo4j Community have no privileges to ask about)."""


def write_capable(hub: ServiceHub, services: Iterable[str]) -> list[str]:
    """One line per service of ``services`` (configured, answering) whose check credentials could write."""
    found = []
    for service in services:
        if service not in PROBED or not hub.configured(service):
            continue
        try:
            problem = hub.postgis().write_capable() if service == "postgis" else hub.cache().write_capable()
        except KfmError:
            continue  # unreachable: the checks themselves report it
        if problem:
            found.append(f"{service}: check credentials: {problem} — give the checks read-only credentials")
    return found
