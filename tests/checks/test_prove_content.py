"""Proofs of the content checks: records edited in place, their copied content hash left as it was.

Each fault below passes every content-hash comparison (test_cross_store); the content checks
must name the record and the field.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from kfm_ops.content import scrub_slice
from kfm_ops.partition import IdRange
from kfm_ops.stores.postgis import PUBLISHED_ITEMS
from tests.plugins.faults import injected
from tests.proving import assert_fails, assert_passes

pytestmark = pytest.mark.devstack

CONTENT = "opschecks/consistency/test_content.py::"
CROSS = "opschecks/consistency/test_cross_store.py::"
MAP = "opschecks/contract/test_search_mapping.py::"
ALIAS = "kfm-items"


def _item(owner_pg: Any, sensitivity: str) -> str:
    row = owner_pg.execute(f"SELECT id FROM {PUBLISHED_ITEMS} WHERE sensitivity = %s ORDER BY id LIMIT 1 OFFSET 3",
                           (sensitivity,)).fetchone()
    assert row, "the sample catalog is not loaded"
    return str(row[0])


def _live(search_writer: Any) -> str:
    return next(iter(search_writer.indices.get_alias(name=ALIAS)))


@pytest.mark.proves(CONTENT + "test_search_documents_match_their_derivation")
def test_search_documents_edited_in_place(search_writer: Any, owner_pg: Any) -> None:
    """A title rewritten, and a restricted item relabelled public with its geometry still generalized: the
    content hash and the fingerprints stay, so the hash comparison passes."""
    index = _live(search_writer)
    titled, relabelled = _item(owner_pg, "public"), _item(owner_pg, "restricted")
    saved = {i: search_writer.get(index=index, id=i)["_source"] for i in (titled, relabelled)}

    def edit() -> None:
        search_writer.update(index=index, id=titled, body={"doc": {"title": "edited in place"}})
        search_writer.update(index=index, id=relabelled, body={"doc": {"sensitivity": "public"}})
        search_writer.indices.refresh(index=index)

    def restore() -> None:
        for i, doc in saved.items():
            search_writer.index(index=index, id=i, body=doc)
        search_writer.indices.refresh(index=index)

    with injected(edit, restore):
        assert_passes(CROSS + "test_search_matches_canonical")
        assert_fails(CONTENT + "test_search_documents_match_their_derivation", "2 stale", f"{titled} (title)",
                     f"{relabelled} (sensitivity)")


@pytest.mark.proves(CONTENT + "test_search_documents_match_their_derivation")
def test_scrub_slice_reads_its_share_and_says_so(search_writer: Any, owner_pg: Any) -> None:
    """A catalog over KFM_CHECKS__CONTENT_MAX_RECORDS is read one slice per run: a title edited inside this run's
    slice fails, naming the slice; one edited outside it is left to the run whose slice holds it."""
    env = {"KFM_CHECKS__CONTENT_MAX_RECORDS": "500", "KFM_CHECKS__CONTENT_SLICE_SECONDS": "1000000000"}
    mine = scrub_slice(owner_pg.item_estimate(), 500, 1e9, time.time(), owner_pg.id_sample)
    assert isinstance(mine, IdRange), "the sample catalog holds more than 500 items"
    ids = [r[0] for r in owner_pg.rows(f'SELECT id FROM {PUBLISHED_ITEMS} ORDER BY id COLLATE "C"')]
    inside = next(i for i in ids if mine.holds(i))
    outside = next(i for i in ids if not mine.holds(i))
    index = _live(search_writer)
    saved = {i: search_writer.get(index=index, id=i)["_source"] for i in (inside, outside)}

    def edit() -> None:
        for i in saved:
            search_writer.update(index=index, id=i, body={"doc": {"title": "edited in place"}})
        search_writer.indices.refresh(index=index)

    def restore() -> None:
        for i, doc in saved.items():
            search_writer.index(index=index, id=i, body=doc)
        search_writer.indices.refresh(index=index)

    with injected(edit, restore):
        assert_fails(CONTENT + "test_search_documents_match_their_derivation", "1 stale", f"{inside} (title)",
                     f"scrub slice {mine.label}", env=env)


@pytest.mark.proves(CONTENT + "test_graph_items_match_their_derivation")
def test_graph_relationship_lost_and_property_edited(graph_writer: Any, owner_pg: Any) -> None:
    """One item loses its LOCATED_IN links (its node intact), another's title is edited in place."""
    unplaced = owner_pg.scalar(f"SELECT i.id FROM {PUBLISHED_ITEMS} i JOIN kfm.item_places p ON p.item_id = i.id "
                               "ORDER BY i.id LIMIT 1")
    titled = _item(owner_pg, "public")
    places = [r["p"] for r in graph_writer.run("MATCH (:Item {id: $id})-[:LOCATED_IN]->(p:Place) RETURN p.id AS p",
                                               id=unplaced)]
    title = graph_writer.run("MATCH (i:Item {id: $id}) RETURN i.title AS t", id=titled)[0]["t"]
    assert places, unplaced

    def edit() -> None:
        graph_writer.run("MATCH (:Item {id: $id})-[r:LOCATED_IN]->() DELETE r", id=unplaced)
        graph_writer.run("MATCH (i:Item {id: $id}) SET i.title = 'edited in place'", id=titled)

    def restore() -> None:
        graph_writer.run("MATCH (i:Item {id: $id}) UNWIND $places AS pid MATCH (p:Place {id: pid}) "
                         "CREATE (i)-[:LOCATED_IN]->(p)", id=unplaced, places=places)
        graph_writer.run("MATCH (i:Item {id: $id}) SET i.title = $t", id=titled, t=title)

    with injected(edit, restore):
        assert_passes(CROSS + "test_graph_matches_canonical")
        assert_fails(CONTENT + "test_graph_items_match_their_derivation", "2 stale", f"{unplaced} (LOCATED_IN",
                     f"{titled} (properties.title)")


@pytest.mark.proves(CONTENT + "test_cache_summaries_match_their_derivation")
def test_cache_summary_values_stale_counts_right(cache_writer: Any) -> None:
    """A summary's extent went stale; its item count (what the count check reads) is still right."""
    key = "kfm:summary:dataset:courthouses"
    before = cache_writer.hget(key, "extent_bbox")
    with injected(lambda: cache_writer.hset(key, "extent_bbox", "-100,37,-99,38"),
                  lambda: cache_writer.hset(key, "extent_bbox", before)):
        assert_passes(CROSS + "test_cache_counts_match_canonical")
        assert_fails(CONTENT + "test_cache_summaries_match_their_derivation", "1 stale", "courthouses (extent_bbox)")


@pytest.mark.proves(MAP + "test_search_alias_serves_one_verified_index")
def test_alias_serving_an_index_that_never_verified(search_writer: Any) -> None:
    index = _live(search_writer)
    meta = search_writer.indices.get_mapping(index=index)[index]["mappings"]["_meta"]
    with injected(lambda: search_writer.indices.put_mapping(
            index=index, body={"_meta": {"kfm": {**meta["kfm"], "state": "building"}}}),
            lambda: search_writer.indices.put_mapping(index=index, body={"_meta": meta})):
        assert_fails(MAP + "test_search_alias_serves_one_verified_index", f"serves {index}", "'building'",
                     "not 'verified'")


@pytest.mark.proves(CONTENT + "test_graph_reference_nodes_match_their_derivation")
def test_dataset_node_edited_and_used_link_lost(graph_writer: Any) -> None:
    link = graph_writer.run("MATCH (a:Activity)-[:USED]->(d:Dataset) RETURN a.id AS a, d.id AS d "
                            "ORDER BY a, d LIMIT 1")[0]
    dataset = graph_writer.run("MATCH (d:Dataset) RETURN d.id AS id, d.title AS t ORDER BY id LIMIT 1")[0]

    def edit() -> None:
        graph_writer.run("MATCH (:Activity {id: $a})-[r:USED]->(:Dataset {id: $d}) DELETE r", **link)
        graph_writer.run("MATCH (d:Dataset {id: $id}) SET d.title = 'edited in place'", id=dataset["id"])

    def restore() -> None:
        graph_writer.run("MATCH (a:Activity {id: $a}) MATCH (d:Dataset {id: $d}) MERGE (a)-[:USED]->(d)", **link)
        graph_writer.run("MATCH (d:Dataset {id: $id}) SET d.title = $t", **dataset)

    with injected(edit, restore):
        assert_fails(CONTENT + "test_graph_reference_nodes_match_their_derivation",
                     f"Dataset {dataset['id']} (title)", f"USED {link['a']} -> {link['d']} (missing)")


GRAPH_SCHEMA = "opschecks/contract/test_graph_schema.py::"


@pytest.mark.proves(GRAPH_SCHEMA + "test_graph_indexes_match_contract")
def test_sync_bucket_index_dropped(graph_writer: Any) -> None:
    with injected(lambda: graph_writer.run("DROP INDEX kfm_item_sync_bucket IF EXISTS"),
                  lambda: graph_writer.run("CREATE INDEX kfm_item_sync_bucket IF NOT EXISTS "
                                           "FOR (i:Item) ON (i.sync_bucket)")):
        assert_fails(GRAPH_SCHEMA + "test_graph_indexes_match_contract", "kfm_item_sync_bucket (missing")


@pytest.mark.proves(GRAPH_SCHEMA + "test_graph_relationships_match_contract")
def test_reversed_and_unknown_relationships(graph_writer: Any, owner_pg: Any) -> None:
    item = _item(owner_pg, "public")

    def add() -> None:
        graph_writer.run("MATCH (i:Item {id: $id})-[:IN_DATASET]->(d:Dataset) "
                         "CREATE (d)-[:IN_DATASET {proof: true}]->(i)", id=item)
        graph_writer.run("MATCH (i:Item {id: $id}) MATCH (p:Place) WITH i, p LIMIT 1 "
                         "CREATE (i)-[:MENTIONS {proof: true}]->(p)", id=item)

    with injected(add, lambda: graph_writer.run("MATCH ()-[r {proof: true}]->() DELETE r")):
        assert_fails(GRAPH_SCHEMA + "test_graph_relationships_match_contract",
                     ":MENTIONS from :Item (not in graph.json)",
                     ":IN_DATASET from :Dataset to :Item (graph.json: Item -> Dataset)")


@pytest.mark.proves(MAP + "test_search_index_settings_match_contract")
def test_refresh_interval_changed(search_writer: Any) -> None:
    index = _live(search_writer)
    def interval(value: str) -> None:
        search_writer.indices.put_settings(index=index, body={"index": {"refresh_interval": value}})

    with injected(lambda: interval("30s"), lambda: interval("1s")):
        assert_fails(MAP + "test_search_index_settings_match_contract", f"{index} refresh_interval (30s, contract 1s)")
