"""The gate binds every store: one deployment identity, stamped explicitly, checked by every action.

Second targets stamped differently — a throw-away PostgreSQL cluster, a throw-away Redis, a
second search index set (another contract alias), the graph's own stamp changed — and every
action refuses (exit 3, naming the store and both identities) and writes nothing anywhere.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from kfm_ops import contracts
from tests import fingerprint
from tests.helpers import LOCAL_PLAINTEXT, kfm_maint
from tests.plugins.faults import injected

pytestmark = [pytest.mark.devstack, pytest.mark.usefixtures("catalog")]

ACTIONS = [["cache", "rebuild"], ["reindex", "--targets", "search", "--force"], ["reindex", "--targets", "graph"],
           ["reindex", "rollback"], ["sample-data", "init", "--items", "50"], ["migrate"],
           ["user", "create", "--username", "kfm-proof-id", "--role", "viewer", "--password-env", "PW"]]
OTHER = str(uuid.UUID(int=0xBEEF))


@pytest.fixture
def stores(owner_pg: Any, search_writer: Any, graph_writer: Any, cache_writer: Any) -> Any:
    return lambda: fingerprint.everything(owner_pg, search_writer, graph_writer, cache_writer)


@pytest.fixture(scope="module")
def scratch_pg(scratch_postgres: Any) -> Iterator[dict[str, str]]:
    """Settings of a throw-away PostgreSQL cluster (trust auth), empty: no schema, no marker."""
    port, _sql = scratch_postgres
    user = "postgres" if os.geteuid() == 0 else os.environ.get("USER", "postgres")
    dsn = f"postgresql://{user}@127.0.0.1:{port}/postgres"
    yield {"KFM_POSTGIS__DSN": dsn, "KFM_POSTGIS__PASSWORD": "", "KFM_POSTGIS__WRITE_DSN": dsn,
           "KFM_POSTGIS__WRITE_PASSWORD": "scratch-unused", **LOCAL_PLAINTEXT}  # staging/production steps too


def _refused(proc: Any, *needles: str) -> None:
    assert proc.returncode == 3, proc.stdout + proc.stderr
    for needle in needles:
        assert needle in proc.stderr, (needle, proc.stderr)


def test_an_unmarked_database_takes_no_write_until_stamped_explicitly(scratch_pg: dict[str, str]) -> None:
    for args in (["sample-data", "init", "--items", "10"], ["cache", "rebuild"], ["migrate"]):
        _refused(kfm_maint(*args, env=scratch_pg), "carries no environment marker",
                 "kfm-maint migrate --environment")
    _refused(kfm_maint("migrate", "--environment", "production",
                       env={**scratch_pg, "KFM_ENVIRONMENT": "production"}),
             "targets production")
    unset = kfm_maint("migrate", "--environment", "dev", env={**scratch_pg, "KFM_ENVIRONMENT": ""})
    assert unset.returncode == 2 and "KFM_ENVIRONMENT" in unset.stderr, unset.stderr
    stamped = kfm_maint("migrate", "--environment", "dev", "--json", "--no-verify", env=scratch_pg)
    assert stamped.returncode == 0, stamped.stdout + stamped.stderr
    assert '"stamped": 1' in stamped.stdout
    again = kfm_maint("migrate", "--environment", "dev", "--json", "--no-verify", env=scratch_pg)
    assert again.returncode == 0 and '"stamped": 0' in again.stdout  # a stamp is never remade
    _refused(kfm_maint("migrate", "--environment", "staging", env={**scratch_pg, "KFM_ENVIRONMENT": "staging"}),
             "says it is 'dev'")


def test_read_and_write_connections_of_two_deployments_are_refused(scratch_pg: dict[str, str], stores: Any) -> None:
    """The read DSN on a database stamped as another deployment: no action runs, nothing is written."""
    assert kfm_maint("migrate", "--environment", "dev", "--no-verify", env=scratch_pg).returncode == 0
    mixed = {"KFM_POSTGIS__DSN": scratch_pg["KFM_POSTGIS__DSN"], "KFM_POSTGIS__PASSWORD": "", "PW": "x" * 16}
    before = stores()
    for args in ACTIONS:
        _refused(kfm_maint(*args, env=mixed), "(read DSN) belongs to dev deployment",
                 "the canonical database to dev deployment")
    assert stores() == before


@pytest.fixture
def other_redis(scratch_redis: tuple[int, Any]) -> dict[str, str]:
    """Settings of a throw-away Redis (password set here), not stamped yet."""
    port, client = scratch_redis
    client.config_set("requirepass", "scratch-cache-pw")
    return {"KFM_CACHE__URL": f"redis://127.0.0.1:{port}/0", "KFM_CACHE__USERNAME": "default",
            "KFM_CACHE__PASSWORD": "scratch-cache-pw", "KFM_CACHE__WRITE_USERNAME": "default",
            "KFM_CACHE__WRITE_PASSWORD": "scratch-cache-pw"}


def test_a_cache_of_another_deployment_is_refused_and_stamped_only_on_request(
        other_redis: dict[str, str], scratch_redis: tuple[int, Any], stores: Any) -> None:
    _port, client = scratch_redis
    key = contracts.load("cache")["redis"]["identity_key"]
    before = stores()
    _refused(kfm_maint("cache", "rebuild", env=other_redis), "carries no deployment identity",
             "kfm-maint identity stamp --targets cache")
    client.auth("scratch-cache-pw")
    client.hset(key, mapping={"deployment_id": OTHER, "environment": "dev"})
    scratch_before = sorted(client.keys("*"))
    _refused(kfm_maint("cache", "rebuild", env=other_redis), f"belongs to dev deployment {OTHER}",
             "the canonical database to dev deployment")
    _refused(kfm_maint("identity", "stamp", "--targets", "cache", env=other_redis), "add --replace")
    assert stores() == before and sorted(client.keys("*")) == scratch_before
    replaced = kfm_maint("identity", "stamp", "--targets", "cache", "--replace", "--no-verify", env=other_redis)
    assert replaced.returncode == 0, replaced.stdout + replaced.stderr
    assert client.hget(key, "deployment_id") != OTHER
    after = stores()  # the shared stack's stores were never touched (the ledger recorded the stamping run)
    after["postgis"].pop("kfm_ops.audit_ledger")
    before["postgis"].pop("kfm_ops.audit_ledger")
    assert after == before


def test_a_search_index_set_of_another_deployment_is_refused(search_writer: Any, contracts_copy: Any,
                                                              stores: Any) -> None:
    """Another alias/prefix/identity index on the same cluster, stamped by another deployment."""
    index = "kfm-proof-identity"
    env = contracts_copy("search", lambda c: c.update(alias="kfm-proof-items", index_prefix="kfm-proof-items-v",
                                                     identity_index=index))
    search_writer.indices.delete(index=index, ignore_unavailable=True)
    meta = {"kfm_identity": {"deployment_id": OTHER, "environment": "dev"}}
    with injected(lambda: search_writer.indices.create(index=index, body={"mappings": {"_meta": meta}}),
                  lambda: search_writer.indices.delete(index=index, ignore_unavailable=True)):
        before = stores()
        for args in (["reindex", "--targets", "search"], ["reindex", "rollback"]):
            _refused(kfm_maint(*args, env=env), f"belongs to dev deployment {OTHER}")
        assert stores() == before


def test_a_graph_of_another_deployment_is_refused(graph_writer: Any, stores: Any) -> None:
    label = contracts.load("graph")["identity_label"]
    stamped = graph_writer.run(f"MATCH (n:{label}) RETURN n.deployment_id AS d")[0]["d"]
    with injected(lambda: graph_writer.run(f"MATCH (n:{label}) SET n.deployment_id = $d", d=OTHER),
                  lambda: graph_writer.run(f"MATCH (n:{label}) SET n.deployment_id = $d", d=stamped)):
        before = stores()
        _refused(kfm_maint("reindex", "--targets", "graph", "--prune"), f"belongs to dev deployment {OTHER}")
        _refused(kfm_maint("reindex", "--targets", "search,graph"), f"belongs to dev deployment {OTHER}")
        assert stores() == before
