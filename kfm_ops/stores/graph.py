"""The knowledge graph: Neo4j through the official driver.

Read handles run every query in a READ transaction (the server refuses writes there);
the writer variant runs WRITE transactions. Everything the harness asks of the graph —
the (id, content_hash) stream, the constraints, the batched upserts of a sync — is here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import neo4j

from kfm_ops import transport
from kfm_ops.buckets import Digests
from kfm_ops.identity import Identity
from kfm_ops.settings import GraphSettings
from kfm_ops.stores.base import Store

FETCH_SIZE = 250
NEO4J_MAJOR = 5
"""The Neo4j major version the graph contract is written for."""

# One round trip per batch. Items whose content_hash and links_hash are unchanged stop at the WHERE;
# changed and new items lose their outgoing relationships and get them re-CREATEd (no MERGE needed:
# an item reaching the CREATEs has none left). Their WAS_DERIVED_FROM links come back in the
# derived pass (:meth:`GraphStore.link_derived`), once every item exists.
UPSERT_ITEMS = """
UNWIND $rows AS r
MERGE (i:Item {id: r.id})
WITH i, r WHERE i.content_hash IS NULL OR i.content_hash <> r.content_hash
                 OR i.links_hash IS NULL OR i.links_hash <> r.links_hash OR i.sync_h1 IS NULL
CALL { WITH i MATCH (i)-[old]->() DELETE old }
SET i.dataset_id = r.dataset_id, i.title = r.title, i.sensitivity = r.sensitivity, i.geometry_wkt = r.geometry_wkt,
    i.content_hash = r.content_hash, i.links_hash = r.links_hash, i.updated_at = r.updated_at,
    i.sync_bucket = r.sync_bucket, i.sync_h1 = r.sync_h1, i.sync_h2 = r.sync_h2
WITH i, r
CALL { WITH i, r MATCH (d:Dataset {id: r.dataset_id}) CREATE (i)-[:IN_DATASET]->(d) }
CALL { WITH i, r MATCH (a:Activity {id: r.generated_by}) CREATE (i)-[:WAS_GENERATED_BY]->(a) }
CALL { WITH i, r UNWIND r.places AS pid MATCH (p:Place {id: pid}) CREATE (i)-[:LOCATED_IN]->(p) }
RETURN count(i) AS changed
"""
LINK_DERIVED = """
UNWIND $rows AS r
MATCH (i:Item {id: r.subject}) MATCH (s:Item {id: r.object})
WITH i, s WHERE NOT (i)-[:WAS_DERIVED_FROM]->(s)
CREATE (i)-[:WAS_DERIVED_FROM]->(s)
RETURN count(*) AS created
"""
# One Item node as the content comparison sees it: its properties, and the ids it points at per relationship type.
ITEM_RECORDS = """
MATCH (i:Item) WHERE {where}
WITH i ORDER BY i.id LIMIT $n
RETURN i.id AS id, properties(i) AS p, [(i)-[r]->(t) | [type(r), t.id]] AS links ORDER BY id
"""
# The nodes items point at, keyed by id; each write sets all their contract properties.
MERGE_NODES: dict[str, str] = {  # SET n = r: exactly the derived properties, whatever the node carried before
    "Dataset": "UNWIND $rows AS r MERGE (n:Dataset {id: r.id}) SET n = r",
    "Activity": "UNWIND $rows AS r MERGE (n:Activity {id: r.id}) SET n = r",
    "Place": "UNWIND $rows AS r MERGE (n:Place {id: r.id}) SET n = r",
}
MERGE_USED = ("UNWIND $rows AS r MATCH (a:Activity {id: r.activity}) MATCH (d:Dataset {id: r.dataset}) "
              "MERGE (a)-[:USED]->(d)")


def quoted(name: str) -> str:
    """A Cypher identifier (label, property, constraint name) in backquotes."""
    return "`" + name.replace("`", "``") + "`"


class GraphStore(Store[GraphSettings]):
    """A driver plus the database and access mode every query of this store uses."""

    service: ClassVar[str] = "graph"
    label: ClassVar[str] = "neo4j"

    def __init__(self, section: GraphSettings, *, write: bool = False, retry: bool = True) -> None:
        """``retry=False``: a failed transaction is not tried again (a report header's quick probe)."""
        super().__init__(section, write=write)
        self.database = section.database
        self.timeout = section.query_timeout
        url, tls = section.url, dict[str, Any]()
        scheme, rest = url.split("://", 1)
        if scheme.endswith("+s") and transport.customised(section):
            # a CA or client certificate of our own: the driver takes them as an SSL context, and only on the
            # bolt:// / neo4j:// schemes (encrypted, verified: the context checks the chain and the host name)
            url = f"{scheme.removesuffix('+s')}://{rest}"
            tls = {"encrypted": True, "ssl_context": transport.ssl_context(section)}
        with self.errors():
            username, secret = ((section.write_username, section.write_password)
                                if write and section.write_username else (section.username, section.password))
            self.driver = neo4j.GraphDatabase.driver(
                url,
                **tls,
                auth=(username, secret.get_secret_value() if secret else ""),
                connection_timeout=section.connect_timeout,
                connection_acquisition_timeout=section.connect_timeout + section.query_timeout,
                max_transaction_retry_time=section.connect_timeout if retry else 0,
                max_connection_pool_size=4,
                # Records come in batches of fetch_size; a query that fails (times out) mid-result must
                # still read the batch in flight before the connection is usable, so on a crawling link
                # that batch decides how long failing takes: 1000 records of ~90 B at 2 kB/s is ~45 s, 250 ~11 s.
                fetch_size=FETCH_SIZE,
                user_agent="kfm-ops",
                notifications_min_severity="OFF",  # server hints ("label does not exist") are not our output
            )

    def where(self, thing: str = "") -> str:
        return f"{self.label} {self.address} database {self.database}" + (f" {thing}" if thing else "")

    def run(self, query: str, **params: Any) -> list[dict[str, Any]]:
        """Run one query in its own transaction and return the records as dicts (nodes and relationships as
        dicts too)."""
        return self._execute(query, params, lambda r: r.data())

    def plain(self, query: str, **params: Any) -> list[dict[str, Any]]:
        """:meth:`run` for queries returning only maps, lists and scalars: the values as the driver decoded them,
        without converting each one again (a third of the time of a large read)."""
        return self._execute(query, params, lambda r: dict(zip(r.keys(), r, strict=True)))

    def _execute(self, query: str, params: dict[str, Any],
                 convert: Callable[[neo4j.Record], dict[str, Any]]) -> list[dict[str, Any]]:
        mode = neo4j.WRITE_ACCESS if self.write else neo4j.READ_ACCESS
        with self.errors(), self.driver.session(database=self.database, default_access_mode=mode) as session:

            @neo4j.unit_of_work(timeout=self.timeout)
            def work(tx: neo4j.ManagedTransaction) -> list[dict[str, Any]]:
                return [convert(r) for r in tx.run(query, params)]

            execute = session.execute_write if self.write else session.execute_read
            return execute(work)

    # --- reading
    def item_pairs(self, *, batch: int = 10_000) -> Iterator[tuple[str, str]]:
        """(id, content_hash) of the Item nodes, id-ordered, in keyset pages on the constrained id."""
        after = ""
        while True:
            rows = self.plain("MATCH (i:Item) WHERE i.id > $after RETURN i.id AS id, i.content_hash AS h "
                              "ORDER BY i.id LIMIT $n", after=after, n=batch)
            if not rows:
                return
            for row in rows:
                yield row["id"], row["h"] or ""
            after = rows[-1]["id"]

    def bucket_digests(self, which: list[int] | None = None) -> Digests:
        """Per bucket of the Item nodes (of the buckets ``which`` only, when given: an index finds them):
        (count, sum of sync_h1, sum of sync_h2), summed by Neo4j."""
        where = "WHERE i.sync_bucket IN $which " if which is not None else ""
        rows = self.plain(f"MATCH (i:Item) {where}RETURN i.sync_bucket AS b, count(*) AS n, sum(i.sync_h1) AS h1, "
                          "sum(i.sync_h2) AS h2", which=which)
        return {(-1 if r["b"] is None else int(r["b"])): (int(r["n"]), int(r["h1"]), int(r["h2"])) for r in rows}

    def pairs_in_buckets(self, buckets: list[int]) -> Iterator[tuple[str, str]]:
        """(id, content_hash) of the Item nodes in ``buckets``, id-ordered (an index on sync_bucket finds them)."""
        wanted = [b for b in buckets if b >= 0]
        rows = self.plain("MATCH (i:Item) WHERE i.sync_bucket IN $b OR ($none AND i.sync_bucket IS NULL) "
                          "RETURN i.id AS id, i.content_hash AS h ORDER BY i.id", b=wanted, none=-1 in buckets)
        for row in rows:
            yield row["id"], row["h"] or ""

    def pairs_of(self, ids: list[str]) -> list[tuple[str, str]]:
        """(id, content_hash) of the Item nodes among ``ids``, id-ordered (the id index finds each)."""
        rows = self.plain("UNWIND $ids AS id MATCH (i:Item {id: id}) RETURN i.id AS id, i.content_hash AS h", ids=ids)
        return sorted((r["id"], r["h"] or "") for r in rows)

    def item_records(self, *, ids: list[str] | None = None, batch: int = 2000, within: str = "true",
                     params: dict[str, Any] | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
        """(id, record) of the Item nodes (``within``: a Cypher condition on ``i``, with its ``params``), id-ordered,
        page by page: the node's properties and, per outgoing relationship type, the sorted ids it points at —
        what the content comparison reads (kfm_ops.content)."""
        after = ""
        while True:
            rows = self.plain(ITEM_RECORDS.format(where=("i.id IN $ids AND i.id > $after" if ids is not None
                                                       else "i.id > $after") + f" AND {within}"),
                            after=after, n=batch, ids=ids or [], **(params or {}))
            for row in rows:
                links: dict[str, list[str]] = {}
                for kind, target in row["links"]:
                    found = links.setdefault(kind, [])
                    if target is not None:  # a node without an id: the type is still named
                        found.append(target)
                yield row["id"], {"properties": row["p"], **{t: sorted(v) for t, v in links.items()}}
            if len(rows) < batch:
                return
            after = rows[-1]["id"]

    def derived_from_any(self, ids: list[str]) -> list[str]:
        """The Item nodes with a WAS_DERIVED_FROM link to any of ``ids`` (as the graph has them now)."""
        rows = self.run("UNWIND $ids AS id MATCH (s:Item)-[:WAS_DERIVED_FROM]->(:Item {id: id}) "
                        "RETURN DISTINCT s.id AS s", ids=ids)
        return [r["s"] for r in rows]

    def datasets_present(self, dataset_ids: list[str]) -> set[str]:
        """Which of ``dataset_ids`` have at least one Item node."""
        rows = self.run("MATCH (d:Dataset) WHERE d.id IN $ids AND EXISTS { (:Item)-[:IN_DATASET]->(d) } "
                        "RETURN d.id AS d", ids=dataset_ids)  # a degree lookup per dataset, not an item scan
        return {r["d"] for r in rows}

    def dataset_ids(self, ids: list[str]) -> dict[str, str]:
        """The dataset_id each Item node of ``ids`` carries."""
        rows = self.run("UNWIND $ids AS id MATCH (i:Item {id: id}) RETURN i.id AS id, i.dataset_id AS d", ids=ids)
        return {r["id"]: r["d"] for r in rows}

    def count(self, label: str) -> int:
        return int(self.run(f"MATCH (n:{quoted(label)}) RETURN count(n) AS n")[0]["n"])

    def identity(self, label: str) -> Identity | None:
        """The deployment stamp on the graph's one identity node, if there is one."""
        rows = self.run(f"MATCH (n:{quoted(label)}) RETURN properties(n) AS p LIMIT 2")
        return Identity.from_fields(rows[0]["p"]) if len(rows) == 1 else None

    # --- writing (a writer store)
    def stamp(self, label: str, identity: Identity, run_id: str) -> None:
        """Write the deployment stamp: exactly one identity node."""
        self.run(f"MATCH (n:{quoted(label)}) DETACH DELETE n")
        self.run(f"CREATE (n:{quoted(label)}) SET n = $p", p={**identity.as_fields(), "stamped_by": run_id})

    def ensure_schema(self, contract: dict[str, Any]) -> int:
        """Create the contract's uniqueness constraints and indexes that are missing; return how many were created."""
        existing = {r["name"] for r in self.run("SHOW CONSTRAINTS YIELD name RETURN name")}
        existing |= {r["name"] for r in self.run("SHOW INDEXES YIELD name RETURN name")}
        created = 0
        for c in contract["constraints"]:
            if c["name"] not in existing:
                self.run(f"CREATE CONSTRAINT {quoted(c['name'])} IF NOT EXISTS FOR (n:{quoted(c['label'])}) "
                         f"REQUIRE n.{quoted(c['property'])} IS UNIQUE")
                created += 1
        for index in contract.get("indexes", []):
            if index["name"] not in existing:
                self.run(f"CREATE INDEX {quoted(index['name'])} IF NOT EXISTS FOR (n:{quoted(index['label'])}) "
                         f"ON (n.{quoted(index['property'])})")
                created += 1
        return created

    def merge_nodes(self, label: str, rows: list[dict[str, Any]]) -> None:
        self.run(MERGE_NODES[label], rows=rows)

    def merge_used(self, rows: list[dict[str, Any]]) -> None:
        self.run(MERGE_USED, rows=rows)

    def upsert_items(self, rows: list[dict[str, Any]]) -> int:
        """Upsert a batch of items with their relationships; return how many changed."""
        return int(self.run(UPSERT_ITEMS, rows=rows)[0]["changed"])

    def link_derived(self, rows: list[dict[str, Any]]) -> int:
        """Create the missing WAS_DERIVED_FROM links of a batch; return how many were created."""
        return int(self.run(LINK_DERIVED, rows=rows)[0]["created"])

    def delete_items(self, ids: list[str]) -> None:
        if ids:
            self.run("UNWIND $ids AS id MATCH (i:Item {id: id}) DETACH DELETE i", ids=ids)

    def retain(self, label: str, ids: list[str]) -> int:
        """Delete the ``label`` nodes (Dataset, Activity, Place) whose id is not in ``ids``; return how many."""
        if label not in MERGE_NODES:
            raise ValueError(f"retain() is for the reference labels {sorted(MERGE_NODES)}, not {label!r}")
        return int(self.run(f"MATCH (n:{label}) WHERE NOT n.id IN $ids DETACH DELETE n RETURN count(*) AS n",
                            ids=ids)[0]["n"])

    def retain_used(self, rows: list[dict[str, Any]]) -> int:
        """Delete the USED links not in ``rows`` (activity, dataset); return how many."""
        keep = [f"{r['activity']}\x00{r['dataset']}" for r in rows]
        return int(self.run("MATCH (a:Activity)-[u:USED]->(d:Dataset) WHERE NOT a.id + '\x00' + d.id IN $keep "
                            "DELETE u RETURN count(*) AS n", keep=keep)[0]["n"])

    # --- Store
    def ping(self) -> None:
        with self.errors():
            self.driver.verify_connectivity()
        self.run("RETURN 1 AS ok")

    def version(self) -> str:
        rows = self.run("CALL dbms.components() YIELD name, versions, edition "
                        "RETURN name, versions[0] AS v, edition")
        return ", ".join(f"{r['name']} {r['v']} ({r['edition']})" for r in rows)

    def close(self) -> None:
        self.driver.close()
