"""Proofs of the identity checks: stamp a store with another deployment (or none), see the check fail, restore."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from kfm_ops import contracts
from tests.plugins.faults import injected
from tests.proving import assert_fails

pytestmark = [pytest.mark.devstack, pytest.mark.usefixtures("catalog")]

ID = "opschecks/contract/test_identity.py::"
OTHER = str(uuid.UUID(int=0xDEAD))


@pytest.mark.proves(ID + "test_canonical_identity_stamped")
def test_canonical_stamp_removed(owner_pg: Any) -> None:
    stamped = owner_pg.scalar("SELECT deployment_id FROM kfm_ops.environment")
    with injected(lambda: owner_pg.execute("UPDATE kfm_ops.environment SET deployment_id = NULL"),
                  lambda: owner_pg.execute("UPDATE kfm_ops.environment SET deployment_id = %s", (stamped,))):
        assert_fails(ID + "test_canonical_identity_stamped", "carries no deployment identity",
                     "kfm-maint migrate --environment")


@pytest.mark.proves(ID + "test_canonical_identity_stamped")
def test_settings_name_another_environment() -> None:
    assert_fails(ID + "test_canonical_identity_stamped", "stamped 'dev' but KFM_ENVIRONMENT is 'staging'",
                 env={"KFM_ENVIRONMENT": "staging"})


@pytest.mark.proves(ID + "test_search_identity_matches")
def test_search_stamped_by_another_deployment(search_writer: Any) -> None:
    index = contracts.load("search")["identity_index"]
    meta = search_writer.indices.get_mapping(index=index)[index]["mappings"]["_meta"]
    other = {"kfm_identity": {**meta["kfm_identity"], "deployment_id": OTHER}}
    with injected(lambda: search_writer.indices.put_mapping(index=index, body={"_meta": other}),
                  lambda: search_writer.indices.put_mapping(index=index, body={"_meta": meta})):
        assert_fails(ID + "test_search_identity_matches", f"belongs to dev deployment {OTHER}", index)


@pytest.mark.proves(ID + "test_search_identity_matches")
def test_search_unstamped(search_writer: Any) -> None:
    index = contracts.load("search")["identity_index"]
    meta = search_writer.indices.get_mapping(index=index)[index]["mappings"]["_meta"]
    with injected(lambda: search_writer.indices.delete(index=index),
                  lambda: search_writer.indices.create(index=index, body={
                      "settings": {"number_of_shards": 1, "number_of_replicas": 0},
                      "mappings": {"dynamic": "strict", "properties": {}, "_meta": meta}})):
        assert_fails(ID + "test_search_identity_matches", "carries no deployment identity",
                     "kfm-maint identity stamp --targets search")


@pytest.mark.proves(ID + "test_graph_identity_matches")
def test_graph_stamped_by_another_deployment(graph_writer: Any) -> None:
    label = contracts.load("graph")["identity_label"]
    stamped = graph_writer.run(f"MATCH (n:{label}) RETURN n.deployment_id AS d")[0]["d"]
    with injected(lambda: graph_writer.run(f"MATCH (n:{label}) SET n.deployment_id = $d", d=OTHER),
                  lambda: graph_writer.run(f"MATCH (n:{label}) SET n.deployment_id = $d", d=stamped)):
        assert_fails(ID + "test_graph_identity_matches", f"belongs to dev deployment {OTHER}")


@pytest.mark.proves(ID + "test_cache_identity_matches")
def test_cache_stamped_by_another_deployment(cache_writer: Any, redis_snapshot: Any) -> None:
    key = contracts.load("cache")["redis"]["identity_key"]
    redis_snapshot(key)
    cache_writer.hset(key, "deployment_id", OTHER)
    assert_fails(ID + "test_cache_identity_matches", f"belongs to dev deployment {OTHER}", key)
