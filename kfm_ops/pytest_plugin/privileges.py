"""Least privilege: does a check session hold credentials that could write?

Check sessions are read-only by construction, but credentials that *could* write are a
risk of their own (a leaked check runner becomes a writer). The plugin warns when it
finds such credentials; the probes themselves change nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from kfm_ops.errors import KfmError, ServiceError
from kfm_ops.faults import PERMISSION
from kfm_ops.hub import ServiceHub

WRITABLE_SQL = """
SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname IN ('kfm', 'kfm_ops', 'kfm_cache', 'kfm_auth') AND c.relkind IN ('r', 'm', 'p')
  AND has_table_privilege(c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE')
ORDER BY 1 LIMIT 3
"""


def _postgis(hub: ServiceHub) -> str | None:
    store = hub.postgis()
    if store.scalar("SELECT rolsuper FROM pg_roles WHERE rolname = current_user"):
        return "the check role is a superuser"
    tables = [r[0] for r in store.rows(WRITABLE_SQL)]
    return f"the check role can write {', '.join(tables)}" if tables else None


def _cache(hub: ServiceHub) -> str | None:
    client = hub.cache().client
    try:
        client.delete(f"kfm:privilege-probe:{uuid.uuid4().hex}")  # a write command on a key that does not exist
    except ServiceError as exc:
        if exc.fault == PERMISSION:
            return None
        raise
    return f"the check user {client.acl_whoami()!r} may run write commands"


PROBES = {"postgis": _postgis, "cache": _cache}


def write_capable(hub: ServiceHub, services: Iterable[str]) -> list[str]:
    """One line per service of ``services`` (configured, answering) whose check credentials could write."""
    found = []
    for service in services:
        probe = PROBES.get(service)
        if probe is None or not hub.configured(service):
            continue
        try:
            problem = probe(hub)
        except KfmError:
            continue  # unreachable: the checks themselves report it
        if problem:
            found.append(f"{service}: {problem} — give the checks read-only credentials")
    return found
