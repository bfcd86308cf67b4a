"""Neo4j via the official driver. Read handles run every query in READ access mode."""

from __future__ import annotations

from typing import Any

import neo4j

from kfm_ops.settings import GraphSettings

FETCH_SIZE = 250


class GraphHandle:
    """A driver plus the database and access mode every query of this handle uses."""

    def __init__(self, driver: neo4j.Driver, database: str, *, write: bool, timeout: float) -> None:
        self.driver = driver
        self.database = database
        self.write = write
        self.timeout = timeout

    def run(self, query: str, **params: Any) -> list[dict[str, Any]]:
        """Run one query in its own transaction and return the records as dicts."""
        mode = neo4j.WRITE_ACCESS if self.write else neo4j.READ_ACCESS
        with self.driver.session(database=self.database, default_access_mode=mode) as session:

            @neo4j.unit_of_work(timeout=self.timeout)
            def work(tx: neo4j.ManagedTransaction) -> list[dict[str, Any]]:
                return [r.data() for r in tx.run(query, params)]  # type: ignore[arg-type]

            execute = session.execute_write if self.write else session.execute_read
            return execute(work)


def open(section: GraphSettings, *, write: bool) -> GraphHandle:  # noqa: A001
    driver = neo4j.GraphDatabase.driver(
        section.url,
        auth=(section.username, section.password.get_secret_value() if section.password else ""),
        connection_timeout=section.connect_timeout,
        connection_acquisition_timeout=section.connect_timeout + section.query_timeout,
        max_transaction_retry_time=section.connect_timeout,
        max_connection_pool_size=4,
        # Records come in batches of fetch_size; a query that fails (times out) mid-result must
        # still read the batch in flight before the connection is usable, so on a crawling link
        # that batch decides how long failing takes: 1000 records of ~90 B at 2 kB/s is ~45 s, 250 ~11 s.
        fetch_size=FETCH_SIZE,
        user_agent="kfm-ops",
        notifications_min_severity="OFF",  # server hints ("label does not exist") are not our output
    )
    return GraphHandle(driver, section.database, write=write, timeout=section.query_timeout)


def ping(handle: GraphHandle) -> None:
    handle.driver.verify_connectivity()
    handle.run("RETURN 1 AS ok")


def version(handle: GraphHandle) -> str:
    rows = handle.run("CALL dbms.components() YIELD name, versions, edition RETURN name, versions[0] AS v, edition")
    return ", ".join(f"{r['name']} {r['v']} ({r['edition']})" for r in rows)


def close(handle: GraphHandle) -> None:
    handle.driver.close()
