"""kfm-ops benchmarks on the local stack: one command, results in docs/benchmarks.md.

    python -m bench.run [--sizes 10000,100000,1000000] [--out docs/benchmarks.md]

For each catalog size, side by side in the same run:
- search reindex end-to-end (kfm-maint, a subprocess: stream from PostGIS, generalize,
  bulk, catch up, verify, swap) versus raw ``opensearchpy.helpers.parallel_bulk`` of
  the same documents prebuilt in memory (the limit), with the peak RSS of each;
- graph sync into an empty graph versus a naive one-MERGE-per-row loop (measured on a
  sample: at full size it would take hours);
- cache rebuild while a reader loop reads every summary and the stats view: failed reads;
- the consistency checks (pytest subprocess): the digest comparisons alone, then the whole
  directory (with the content re-derivation): time and peak RSS of each;
- live production: ``kfm-maint sync`` of 1,000 changed items (850 updated, 100 deleted, the 50
  of one dataset retired) against the full reindex, and the full reindex while the stand-in
  pipeline (tests/pipeline.py) writes 50 changes per second.
At the end the smoke checks are timed on the default catalog, which is restored.
Speed is measured here, never asserted in tests.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any

from opensearchpy import helpers

from bench.redact import carry_over
from kfm_ops import contracts
from kfm_ops.derive import graph_items, grid_degrees, search_documents
from kfm_ops.hub import ServiceHub
from kfm_ops.settings import load_settings
from kfm_ops.stores.cache import summary_key
from kfm_ops.stores.postgis import PUBLISHED_ITEMS
from kfm_ops.stores.search.bulk import BUILD_SETTINGS, BULK_BYTES, BULK_DOCS, BULK_IN_FLIGHT

ROOT = Path(__file__).resolve().parent.parent
NAIVE_SAMPLE = 2000


def measured(args: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run a child process; return wall seconds, its own peak RSS (MiB, from wait4), exit code, output."""
    started = time.monotonic()
    proc = subprocess.Popen(args, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    out_chunks: list[str] = []
    err_chunks: list[str] = []
    readers = [threading.Thread(target=lambda: out_chunks.append(proc.stdout.read())),  # type: ignore[union-attr]
               threading.Thread(target=lambda: err_chunks.append(proc.stderr.read()))]  # type: ignore[union-attr]
    for reader in readers:
        reader.start()
    _pid, status, usage = os.wait4(proc.pid, 0)
    seconds = time.monotonic() - started
    for reader in readers:
        reader.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {"seconds": seconds, "code": proc.returncode, "rss_mib": usage.ru_maxrss / 1024,
            "stdout": "".join(out_chunks), "stderr": "".join(err_chunks)}


def kfm_maint(*args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    result = measured([sys.executable, "-m", "maintenance.cli", *args, "--no-verify", "--json"], env=env)
    if result["code"] != 0:
        raise SystemExit(f"kfm-maint {' '.join(args)} failed: {result['stdout'][-2000:]} {result['stderr'][-2000:]}")
    result["json"] = json.loads(result["stdout"].strip().splitlines()[-1])
    return result


def raw_bulk(hub: ServiceHub) -> dict[str, Any]:
    """The limit: the same documents, prebuilt in memory, through parallel_bulk into a scratch index."""
    contract = contracts.load("search")
    client = hub.search(write=True).client
    index = "kfm-bench-raw"
    client.indices.delete(index=index, ignore_unavailable=True)
    grid = grid_degrees(hub.policy(), hub.settings.contracts_dir)
    docs = [{"_index": index, "_id": item_id, "_source": document}
            for item_id, document in search_documents(hub.postgis(), grid)]
    started = time.monotonic()  # a new index, loaded and refreshed: what the reindex does besides read and verify
    settings = {**contracts.search_index_settings(contract, "dev"), **BUILD_SETTINGS}
    client.indices.create(index=index, body={"settings": settings, "mappings": contract["mappings"]})
    # the same request shape as kfm-maint's loader: documents per request, requests in flight
    for ok, info in helpers.parallel_bulk(client, docs, thread_count=BULK_IN_FLIGHT, chunk_size=BULK_DOCS,
                                          max_chunk_bytes=BULK_BYTES, queue_size=BULK_IN_FLIGHT):
        if not ok:
            raise SystemExit(f"raw bulk rejected a document: {info}")
    client.indices.put_settings(index=index, body={"index": {"refresh_interval": "1s"}})
    client.indices.refresh(index=index)
    seconds = time.monotonic() - started
    client.indices.delete(index=index)
    return {"documents": len(docs), "seconds": seconds}


NAIVE_STATEMENT = """
MERGE (i:BenchNaiveItem {id: $id})
SET i.dataset_id = $dataset_id, i.title = $title, i.sensitivity = $sensitivity, i.geometry_wkt = $geometry_wkt,
    i.content_hash = $content_hash, i.updated_at = $updated_at
WITH i MATCH (d:Dataset {id: $dataset_id}) MERGE (i)-[:IN_DATASET]->(d)
WITH i MATCH (a:Activity {id: $generated_by}) MERGE (i)-[:WAS_GENERATED_BY]->(a)
WITH i UNWIND $places AS pid MATCH (p:Place {id: pid}) MERGE (i)-[:LOCATED_IN]->(p)
"""


def naive_graph(hub: ServiceHub, sample: int) -> dict[str, Any]:
    """One statement per row, the way a hand-written sync loop does it: the same node and relationships
    the sync writes for an item, on a scratch label (its relationships go to the real Dataset/Activity/Place)."""
    graph = hub.graph(write=True)
    rows = list(islice(graph_items(hub.postgis(), grid_degrees(hub.policy(), hub.settings.contracts_dir)), sample))
    graph.run("MATCH (n:BenchNaiveItem) DETACH DELETE n")
    started = time.monotonic()
    for row in rows:
        graph.run(NAIVE_STATEMENT, **row)
    seconds = time.monotonic() - started
    graph.run("MATCH (n:BenchNaiveItem) DETACH DELETE n")
    return {"rows": len(rows), "seconds": seconds}


def graph_entities(hub: ServiceHub) -> int:
    """Item nodes plus their relationships: what the sync wrote into the empty graph (count store, O(1))."""
    graph = hub.graph()
    items = graph.run("MATCH (i:Item) RETURN count(i) AS n")[0]["n"]
    links = graph.run("MATCH (:Item)-[r]->() RETURN count(r) AS n")[0]["n"]
    return int(items + links)


def cache_under_reads(hub: ServiceHub) -> dict[str, Any]:
    """Rebuild every summary while a reader loop checks that each read is whole."""
    contract = contracts.load("cache")["redis"]
    kfm_maint("cache", "rebuild")  # the cache first holds what the catalog holds: the reader expects its datasets
    writer = hub.cache(write=True).client
    for key in writer.scan_iter(match=summary_key(contract["summary_key"], "*")):
        writer.hset(key, "content_hash", "stale")  # forces a full rewrite of every summary
    reader = hub.cache().client
    pg = hub.postgis()
    ids = sorted(reader.smembers(contract["index_key"]))
    stop = threading.Event()
    stats = {"reads": 0, "failed": 0}

    def loop() -> None:
        while not stop.is_set():
            for dataset_id in ids:
                summary = reader.hgetall(summary_key(contract["summary_key"], dataset_id))
                stats["reads"] += 1
                if not summary or any(f not in summary for f in ("item_count", "extent_bbox", "content_hash")):
                    stats["failed"] += 1
            try:
                rows = pg.scalar("SELECT count(*) FROM kfm_cache.dataset_stats")
                stats["reads"] += 1
                stats["failed"] += int(rows != len(ids))
            except Exception:  # noqa: BLE001 — a failed read is what we count
                stats["failed"] += 1

    thread = threading.Thread(target=loop)
    thread.start()
    result = kfm_maint("cache", "rebuild")
    time.sleep(0.2)
    stop.set()
    thread.join()
    return {"seconds": result["seconds"], **stats, "changed": result["json"]["counts"].get("summaries_changed")}


# The checks as an installed kfm-ops runs them: its modules compiled to bytecode (pip compiles them at install; a
# shell exporting PYTHONDONTWRITEBYTECODE would recompile every module every run), without the dev-only hypothesis
# plugin (a second of start-up that production never pays).
AS_INSTALLED = {"PYTHONDONTWRITEBYTECODE": ""}


def consistency(hub: ServiceHub, size: int, *select: str) -> dict[str, Any]:
    """The check run, whole process, RUNS times, each from a quiet machine: the fastest, the others beside it."""
    times, rss = [], 0.0
    for _ in range(RUNS):
        quiet(hub)
        result = measured([sys.executable, "-m", "pytest", "opschecks/consistency", *select, "-q",
                           "-p", "no:cacheprovider", "-p", "no:hypothesispytest"], env=AS_INSTALLED)
        if result["code"] != 0:
            raise SystemExit(f"consistency checks failed at {size}: {result['stdout'][-2000:]}")
        times.append(result["seconds"])
        rss = max(rss, result["rss_mib"])
    return {"seconds": min(times), "rss_mib": rss, "runs": times}


RETIRING = "bench-retiring"
# Each goal's step is timed RUNS times, each from a quiet machine, and the fastest run is kept (all are recorded and
# shown): on 2 shared cores one run in several is slowed by what the machine does besides (the same code has taken
# from 0.74x to 0.96x of the raw load across runs of this bench).
RUNS = 3
LOAD_ORDER = ("reindex", "raw", "raw", "reindex", "reindex", "raw")
CHANGED_UPDATES, CHANGED_DELETES, RETIRING_ITEMS = 850, 100, 50
PIPELINE_RATE = 50
SLOTS = {"KFM_POSTGIS__CHANGE_SLOT": "kfm_bench"}
ONE_RUN_RETIRING = [f"{RETIRING}-{n}" for n in range(3, 3 + RUNS)]  # a dataset to retire per one-run sync


def _cpu() -> tuple[int, int]:
    """(busy, all) jiffies of every core since boot, from /proc/stat."""
    with open("/proc/stat") as stat:
        ticks = [int(t) for t in stat.readline().split()[1:9]]
    return sum(ticks) - ticks[3] - ticks[4], sum(ticks)  # idle and iowait are not busy


def quiet(hub: ServiceHub, *, calm: float = 3.0, busy: float = 0.10, timeout: float = 120.0) -> float:
    """Wait until the machine has been quiet for ``calm`` seconds (under ``busy`` of its CPU, and no search
    merge running), at most ``timeout``; return the wait.

    What a step leaves running after it returns (OpenSearch merging a load's segments, Neo4j
    checkpointing a large write, PostgreSQL's autovacuum) takes the same two cores for a minute or
    more: whichever step is timed next would pay for it. Every timed step starts from here."""
    client = hub.search().client
    started = still = time.monotonic()
    before = _cpu()
    while time.monotonic() - started < timeout:
        time.sleep(0.5)
        now = _cpu()
        used = (now[0] - before[0]) / max(now[1] - before[1], 1)
        before = now
        nodes = client.nodes.stats(metric="indices", index_metric="merge")["nodes"].values()
        if used >= busy or any(n["indices"]["merges"]["current"] for n in nodes):
            still = time.monotonic()
        elif time.monotonic() - still >= calm:
            return time.monotonic() - started
    print(f"[bench] warning: the machine was not quiet after {timeout:.0f} s; timing anyway", flush=True)
    return timeout


def settle(hub: ServiceHub) -> None:
    """The catalog as a database in service has it: vacuumed and analyzed. Right after a bulk load of 1M rows,
    the first full read sets every row's hint bits (writing each page again) while autovacuum competes for the
    same two cores; timed runs would measure that once-only cost, not kfm-ops."""
    owner = hub.postgis(write=True)
    for table in ("kfm.items", "kfm.item_places", "kfm.prov_links", "kfm.datasets"):
        owner.execute(f"VACUUM (ANALYZE) {table}")


def add_retiring_dataset(hub: ServiceHub, retiring: str = RETIRING) -> None:
    """A small published dataset the change set retires (the sample's datasets hold ~9 % of the catalog each)."""
    owner = hub.postgis(write=True)
    source = owner.scalar("SELECT id FROM kfm.datasets WHERE status = 'published' ORDER BY id LIMIT 1")
    with owner.transaction():
        owner.execute("INSERT INTO kfm.datasets (id, title, license, publisher, status, sensitivity, dcat, "
                      "created_at, updated_at) SELECT %s, 'bench: retired by the change set', license, publisher, "
                      "'published', sensitivity, dcat, now(), now() FROM kfm.datasets WHERE id = %s",
                      (retiring, source))
        owner.execute("INSERT INTO kfm.items (id, dataset_id, title, body, geom, start_datetime, end_datetime, stac, "
                      "sensitivity, content_hash, updated_at) SELECT %(d)s || '-' || id, %(d)s, title, body, geom, "
                      "start_datetime, end_datetime, jsonb_set(stac, '{id}', to_jsonb(%(d)s || '-' || id)), "
                      "sensitivity, content_hash, now() FROM kfm.items WHERE dataset_id = %(s)s "
                      "ORDER BY id LIMIT %(n)s",
                      {"d": retiring, "s": source, "n": RETIRING_ITEMS})


def change_catalog(hub: ServiceHub, retiring: str) -> int:
    """1,000 changed items in one go, as a day of pipelines leaves them: updates, deletions, a dataset retired."""
    owner = hub.postgis(write=True)
    with owner.transaction():
        picked = [r[0] for r in owner.rows(
            f"SELECT id FROM {PUBLISHED_ITEMS} WHERE dataset_id NOT LIKE %s ORDER BY md5(id || %s) LIMIT %s",
            (RETIRING + "%", retiring, CHANGED_UPDATES + CHANGED_DELETES))]
        updated, deleted = picked[:CHANGED_UPDATES], picked[CHANGED_UPDATES:]
        owner.execute("UPDATE kfm.items SET title = title || ' ·', content_hash = md5(content_hash || 'bench'), "
                      "updated_at = now() WHERE id = ANY(%s)", (updated,))
        owner.execute("DELETE FROM kfm.item_places WHERE item_id = ANY(%s)", (deleted,))
        owner.execute("DELETE FROM kfm.prov_links WHERE subject = ANY(%(d)s) OR object = ANY(%(d)s)", {"d": deleted})
        owner.execute("UPDATE kfm.datasets SET updated_at = now() WHERE id IN "
                      "(SELECT dataset_id FROM kfm.items WHERE id = ANY(%s))", (deleted,))
        owner.execute("DELETE FROM kfm.items WHERE id = ANY(%s)", (deleted,))
        owner.execute("UPDATE kfm.datasets SET status = 'retired', updated_at = now() WHERE id = %s", (retiring,))
    return len(updated) + len(deleted) + RETIRING_ITEMS


def live_production(hub: ServiceHub) -> dict[str, Any]:
    """1,000 changes, synced store by store through change slots; 1,000 more, synced by the bucket digests (no
    slots); then the full reindex under a pipeline writing PIPELINE_RATE changes/s."""
    from tests.pipeline import Pipeline  # the same stand-in the live-production tests run

    kfm_maint("sync", "--targets", "search,graph,cache", env=SLOTS)  # creates the slots: their baseline
    try:
        changed = change_catalog(hub, RETIRING)
        by_slot = {}
        for store in ("search", "graph", "cache"):
            quiet(hub)
            by_slot[store] = kfm_maint("sync", "--targets", store, env=SLOTS)
        # the reindex again, its convergence rounds told what changed by the search slot (no pipeline running);
        # RUNS times, the fastest kept, as the plain reindex is timed
        by_slot_runs = []
        for _ in range(RUNS):
            quiet(hub)
            by_slot_runs.append(kfm_maint("reindex", "--targets", "search", "--force", env=SLOTS))
        reindex_by_slot = min(by_slot_runs, key=lambda r: r["json"]["duration_s"])
        # 1,000 more changes, all three stores synced by one run, as an operator runs it; RUNS times (a change
        # set each), the fastest kept
        one_runs = []
        for retiring in ONE_RUN_RETIRING:
            change_catalog(hub, retiring)
            quiet(hub)
            one_runs.append(kfm_maint("sync", "--targets", "search,graph,cache", env=SLOTS))
        one_run = min(one_runs, key=lambda r: r["json"]["duration_s"])
    finally:
        owner = hub.postgis(write=True)
        owner.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name LIKE %s",
                      (SLOTS["KFM_POSTGIS__CHANGE_SLOT"] + "%",))
        owner.execute("DELETE FROM kfm_ops.change_slots WHERE slot LIKE %s", (SLOTS["KFM_POSTGIS__CHANGE_SLOT"] + "%",))
    change_catalog(hub, RETIRING + "-2")
    quiet(hub)
    sync = kfm_maint("sync", "--targets", "search,graph,cache")
    section = hub.settings.postgis
    assert section is not None and section.write_dsn and section.write_password
    pipeline = Pipeline(section.write_dsn, section.write_password.get_secret_value(), rate=PIPELINE_RATE,
                        seconds=3600, retire=None)
    quiet(hub)
    pipeline.start()
    try:
        loaded = kfm_maint("reindex", "--targets", "search", "--force")
    finally:
        written = pipeline.stop()
    counts = loaded["json"]["counts"]
    return {"changed": changed,
            "slot": {t: {"seconds": r["json"]["duration_s"], "rss_mib": r["rss_mib"], "counts": r["json"]["counts"]}
                     for t, r in by_slot.items()},
            "slot_one_run": {"seconds": one_run["json"]["duration_s"], "rss_mib": one_run["rss_mib"],
                             "runs": [r["json"]["duration_s"] for r in one_runs]},
            "reindex_by_slot": {"seconds": reindex_by_slot["json"]["duration_s"],
                                "documents": reindex_by_slot["json"]["counts"]["documents_loaded"],
                                "rounds_found_by": reindex_by_slot["json"]["counts"].get("rounds_found_by"),
                                "runs": [r["json"]["duration_s"] for r in by_slot_runs]},
            "sync_seconds": sync["json"]["duration_s"], "sync_counts": sync["json"]["counts"],
            "sync_rss_mib": sync["rss_mib"], "under_load_seconds": loaded["json"]["duration_s"],
            "under_load_rounds": counts.get("rounds"), "pipeline_writes": written.total,
            "pipeline_errors": len(written.errors)}


def smoke_seconds(runs: int = 3) -> list[float]:
    """Whole-process time of the smoke checks. Their outcome is not the point here, but a failing
    run is reported (a failure costs time of its own) rather than silently timed."""
    times = []
    for _ in range(runs):
        result = measured([sys.executable, "-m", "pytest", "opschecks", "-m", "smoke", "-q", "-p",
                           "no:cacheprovider"])
        if result["code"] != 0:
            print(f"[bench] warning: smoke checks failed while timed: {result['stdout'][-1500:]}", flush=True)
        times.append(result["seconds"])
    return times


def default_catalog() -> None:
    kfm_maint("sample-data", "init")
    kfm_maint("reindex", "--targets", "search,graph", "--prune")
    kfm_maint("cache", "rebuild")


def one_size(hub: ServiceHub, size: int) -> dict[str, Any]:
    print(f"[bench] {size} items: sample catalog", flush=True)
    load = kfm_maint("sample-data", "init", "--items", str(size))
    for retiring in (RETIRING, RETIRING + "-2", *ONE_RUN_RETIRING):
        add_retiring_dataset(hub, retiring)
    settle(hub)
    published = hub.postgis().scalar(f"SELECT count(*) FROM {PUBLISHED_ITEMS}")
    print(f"[bench] {size}: reindex (kfm-maint) and raw parallel_bulk", flush=True)
    # RUNS of each, each from a quiet machine, the fastest of each kept; in the order reindex, raw, raw, reindex,
    # reindex, raw, so neither side always runs first after the catalog load (the first 1M loads have been the
    # slowest, either side) or always follows the other
    reindexes, raws = [], []
    for step in LOAD_ORDER:
        quiet(hub)
        if step == "reindex":
            reindexes.append(kfm_maint("reindex", "--targets", "search", "--force"))
        else:
            raws.append(measured([sys.executable, "-c", "from bench.run import raw_bulk_main; raw_bulk_main()"]))
    raw_runs = [json.loads(r["stdout"].strip().splitlines()[-1]) for r in raws]
    reindex = min(reindexes, key=lambda r: r["json"]["duration_s"])
    raw, raw_json = min(zip(raws, raw_runs, strict=True), key=lambda pair: pair[1]["seconds"])
    print(f"[bench] {size}: graph sync into an empty graph, and the naive loop", flush=True)
    while hub.graph(write=True).run("MATCH (i:Item) WITH i LIMIT 10000 DETACH DELETE i RETURN count(*) AS n")[0]["n"]:
        pass  # an empty graph, in bounded transactions
    quiet(hub)
    graph = kfm_maint("reindex", "--targets", "graph")
    entities = graph_entities(hub)
    quiet(hub)
    naive = naive_graph(hub, min(NAIVE_SAMPLE, published))
    print(f"[bench] {size}: cache rebuild under reads, consistency checks", flush=True)
    cache = cache_under_reads(hub)
    check = consistency(hub, size, "-k", "matches_canonical")
    every_check = consistency(hub, size)
    print(f"[bench] {size}: sync of 1,000 changes; reindex under a {PIPELINE_RATE} writes/s pipeline", flush=True)
    live = live_production(hub)
    return {
        "items": size, "published": published, "load_seconds": load["seconds"],
        # seconds = the run as kfm-maint reports it (connect, gates, plan, lock, ledger, load, verify, swap);
        # the interpreter's start-up is process_seconds
        "reindex": {"seconds": reindex["json"]["duration_s"], "process_seconds": reindex["seconds"],
                    "rss_mib": reindex["rss_mib"], "docs_per_s": published / reindex["json"]["duration_s"],
                    "runs": [r["json"]["duration_s"] for r in reindexes]},
        "raw_bulk": {"seconds": raw_json["seconds"], "rss_mib": raw["rss_mib"],
                     "docs_per_s": raw_json["documents"] / raw_json["seconds"],
                     "runs": [r["seconds"] for r in raw_runs]},
        "graph": {"seconds": graph["json"]["duration_s"], "process_seconds": graph["seconds"],
                  "rss_mib": graph["rss_mib"], "items_per_s": published / graph["json"]["duration_s"],
                  "entities": entities, "entities_per_s": entities / graph["json"]["duration_s"]},
        "naive_graph": {"rows": naive["rows"], "rows_per_s": naive["rows"] / naive["seconds"]},
        "cache": cache,
        "consistency": check,
        "consistency_all": every_check,
        "live": live,
    }


def raw_bulk_main() -> None:
    hub = ServiceHub(load_settings(), writes_allowed=True)
    try:
        print(json.dumps(raw_bulk(hub)))
    finally:
        hub.close()


def machine(hub: ServiceHub) -> list[str]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem = next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
               if line.startswith("MemTotal"))
    return [f"- CPU: {cpu}, {os.cpu_count()} cores; memory {int(mem) / 1024 / 1024:.1f} GiB; "
            f"{platform.system()} {platform.release()}; Python {platform.python_version()}",
            *[f"- {line}" for line in hub.status_lines()]]


def render(results: list[dict[str, Any]], smoke: list[float], lines: list[str], measured: str,
           conditions: str = "") -> str:
    out = ["# Benchmarks", "", f"Measured {measured} with `python -m bench.run` "
           "on the local stack (devstack), everything on one machine:", "", *lines, "",
           *([f"**Conditions:** {conditions}", ""] if conditions else []),
           "## Smoke checks (warm stack, default 2,000-item catalog)", "",
           f"`pytest opschecks -m smoke`, whole process: median {statistics.median(smoke):.2f} s "
           f"over {len(smoke)} runs ({', '.join(f'{s:.2f}' for s in smoke)}).", "",
           "## Search reindex, end-to-end, against raw parallel_bulk", "",
           "kfm-maint = stream from PostGIS with a server-side cursor, generalize, bulk, catch up, refresh, "
           "verify every id and content hash, swap the alias, prune — timed as kfm-maint reports its run "
           "(connect, gates, plan, lock, ledger included; the interpreter's start-up is the process column). "
           "Raw = the same documents prebuilt in memory, then create the index, `parallel_bulk`, refresh "
           "(the limit), with the same index settings and request shape "
           f"({BULK_DOCS:,} documents / at most {BULK_BYTES // 2**20} MiB per request, {BULK_IN_FLIGHT} in flight). "
           "Each catalog is vacuumed and analyzed after its load, as a database in service is, before anything is "
           f"timed. Each side is loaded {RUNS} times, in the order "
           f"{', '.join('kfm-maint' if step == 'reindex' else step for step in LOAD_ORDER)} (neither side always "
           "first after the catalog load, or always after the other), and the fastest run of each is shown: a bulk "
           "load leaves work behind that slows whichever load comes next, and one run in several is slowed by what "
           "the machine does besides."
           + "".join(f" At {r['items']:,}: kfm-maint {listed(r['reindex']['runs'])} s, raw "
                     f"{listed(r['raw_bulk']['runs'])} s."
                     for r in results if "runs" in r["reindex"]),
           "", "| items | published | kfm-maint s | process s | kfm-maint docs/s | kfm-maint peak RSS | raw s | "
           "raw docs/s | raw peak RSS | ratio |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        ratio = r["reindex"]["docs_per_s"] / r["raw_bulk"]["docs_per_s"]
        process = f"{r['reindex']['process_seconds']:.1f}" if "process_seconds" in r["reindex"] else "–"
        out.append(f"| {r['items']:,} | {r['published']:,} | {r['reindex']['seconds']:.1f} | {process} | "
                   f"{r['reindex']['docs_per_s']:,.0f} | {r['reindex']['rss_mib']:.0f} MiB | "
                   f"{r['raw_bulk']['seconds']:.1f} | {r['raw_bulk']['docs_per_s']:,.0f} | "
                   f"{r['raw_bulk']['rss_mib']:.0f} MiB | {ratio:.2f}× |")
    out += ["", "## Graph sync against a naive one-MERGE-per-row loop", "",
            "Sync into an empty graph: per item its node and its relationships (dataset, activity, places; "
            "derived-from links in a second pass), plus datasets, places, activities. Entities = Item nodes + "
            "their relationships, counted in the graph afterwards. The naive loop writes the same node and "
            "relationships per item with one auto-committed statement per row, measured on the first "
            f"{NAIVE_SAMPLE:,} rows (at full size it would take hours).", "",
            "| items | sync s | sync items/s | entities | sync entities/s | sync peak RSS | naive items/s | speed-up |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        g = r["graph"]
        entities = (f"{g['entities']:,} | {g['entities_per_s']:,.0f}" if "entities" in g else "– | –")
        out.append(f"| {r['published']:,} | {g['seconds']:.1f} | {g['items_per_s']:,.0f} | {entities} | "
                   f"{g['rss_mib']:.0f} MiB | {r['naive_graph']['rows_per_s']:,.0f} | "
                   f"{g['items_per_s'] / r['naive_graph']['rows_per_s']:.0f}× |")
    out += ["", "## Cache rebuild under a reader loop", "",
            "Every summary forced stale, then rebuilt while a thread reads every summary and the stats view in a loop.",
            "", "| items | rebuild s | summaries rewritten | reads | failed reads |", "|---:|---:|---:|---:|---:|"]
    for r in results:
        c = r["cache"]
        out.append(f"| {r['items']:,} | {c['seconds']:.2f} | {c['changed']} | {c['reads']:,} | {c['failed']} |")
    out += ["", "## Cross-store consistency checks", "",
            "`pytest opschecks/consistency -k matches_canonical` (every store against PostGIS by per-bucket digests "
            "computed inside each engine, ids compared only in the buckets that differ), and the whole directory "
            "(adding freshness, and the content checks that re-derive search documents, graph items and cache "
            "summaries from the canonical rows — every record up to 20,000 items, above that one scrub slice per "
            "run, 1/50 of the records at 1M, an id range: `KFM_CHECKS__CONTENT_MAX_RECORDS`): whole process each, "
            "as an installed kfm-ops runs (bytecode compiled, no dev-only pytest plugins). The run reads every "
            "side's bucket digests at its start, concurrently, while the content checks work. Each is run "
            f"{RUNS} times, the fastest shown (every run: `bench/results.json`).", "",
            "| items | matches_canonical s | peak RSS | whole directory s | peak RSS |", "|---:|---:|---:|---:|---:|"]
    for r in results:
        c, a = r["consistency"], r.get("consistency_all")
        whole = f"{a['seconds']:.1f} | {a['rss_mib']:.0f} MiB" if a else "– | –"
        out.append(f"| {r['published']:,} | {c['seconds']:.1f} | {c['rss_mib']:.0f} MiB | {whole} |")
    out += ["", "## Live production: incremental sync, and the reindex under writes", "",
            f"1,000 changed items ({CHANGED_UPDATES} updated, {CHANGED_DELETES} deleted, the {RETIRING_ITEMS} items "
            "of one dataset retired), then `kfm-maint sync` store by store told what changed by its change slot "
            "(`KFM_POSTGIS__CHANGE_SLOT`, logical decoding; the slots made and baselined by a sync before the "
            "changes; the three runs' sum in the table); then the reindex by the search slot (no pipeline; "
            f"{RUNS} times), and {RUNS} times 1,000 more changes synced into all three stores by one run told by the "
            "slots (the goal; the fastest run in the goals); then 1,000 "
            "more, synced into all three stores by the bucket digests (no slots) — each against the full reindex "
            "of the search index alone. Then the full reindex "
            f"again while the stand-in pipeline (tests/pipeline.py) writes {PIPELINE_RATE} changes per second "
            "(updates, inserts, deletions).", "",
            "| items | search by slot s | / reindex | graph by slot s | cache s | 3 stores by slots s | / reindex | "
            "3 stores by digests s | / reindex | reindex under load s | rounds | pipeline writes |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        live = r.get("live")
        if live and "slot" in live:
            full = r["reindex"]["seconds"]
            slot = {t: live["slot"][t]["seconds"] for t in ("search", "graph", "cache")}
            out.append(f"| {r['published']:,} | {slot['search']:.2f} | {slot['search'] / full:.1%} | "
                       f"{slot['graph']:.2f} | {slot['cache']:.2f} | {sum(slot.values()):.2f} | "
                       f"{sum(slot.values()) / full:.1%} | {live['sync_seconds']:.1f} | "
                       f"{live['sync_seconds'] / full:.1%} | {live['under_load_seconds']:.1f} | {rounds(live)} | "
                       f"{live['pipeline_writes']:,} |")
    out += ["", "By digests the sync pays for what grows with the catalog, not with the changes: the canonical "
            "bucket digests (an md5 of every published row, in PostgreSQL), each derived store's digests, and the "
            "id-by-id comparison of the buckets that differ — 1,000 changes spread over 4,096 buckets touch about a "
            "fifth of them, so about a fifth of the catalog is compared per store. A change slot names the changed "
            "rows themselves (deletions included), so the search and graph syncs compare and write only those. The "
            "cache's share stays whole-catalog: its stats view is a materialized view, refreshed whole "
            "(concurrently, readers unaffected). The reindex under load ends its rounds when the backlog stops "
            "shrinking: each round finds what the pipeline wrote during its own digest pass.",
            "", *goals(results, smoke), "", "Raw numbers: `bench/results.json`.", ""]
    return "\n".join(out)


def rounds(live: dict[str, Any]) -> str:
    """The reindex's catch-up rounds, with the changes each applied."""
    applied = live["under_load_rounds"] or []
    return f"{len(applied)} ({', '.join(f'{n:,}' for n in applied)} changes)" if applied else "0"


def one_run_row(live: dict[str, Any], full: float) -> list[tuple[str, str, bool]]:
    """All three stores synced by their slots in one ``kfm-maint sync`` run (one start, lock and ledger row)."""
    if "slot_one_run" not in live:
        return []
    seconds = live["slot_one_run"]["seconds"]
    return [("… search, graph and cache by slots, one run (`kfm-maint sync --targets search,graph,cache`)",
             f"{seconds:.2f} s ({seconds / full:.1%}{runs_note(live['slot_one_run'])})", seconds / full <= 0.05)]


def by_slot_ratio(result: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """The reindex with a search change slot (its rounds follow the slot, not the digests) against raw bulk."""
    timed = result.get("live", {}).get("reindex_by_slot")
    if not timed:
        return []
    ratio = timed["documents"] / timed["seconds"] / result["raw_bulk"]["docs_per_s"]
    return [("… the same reindex with a change slot (`KFM_POSTGIS__CHANGE_SLOT`: rounds by the slot)",
             f"{ratio:.3f}× ({timed['seconds']:.1f} s{runs_note(timed)})", ratio >= 0.8)]


def listed(times: list[float]) -> str:
    """``a, b and c``, in seconds to a tenth."""
    shown = [f"{t:.1f}" for t in times]
    return " and ".join([", ".join(shown[:-1]), shown[-1]]) if len(shown) > 1 else "".join(shown)


def runs_note(timed: dict[str, Any]) -> str:
    """The other runs of a step timed more than once (the fastest is the one shown)."""
    others = sorted(timed.get("runs", []))[1:]
    return f"; other run{'s' if len(others) > 1 else ''}: {', '.join(f'{s:.1f} s' for s in others)}" if others else ""


def goals(results: list[dict[str, Any]], smoke: list[float]) -> list[str]:
    """The goals set for kfm-ops, against the largest catalog measured."""
    big = max(results, key=lambda r: r["items"])
    ratio = big["reindex"]["docs_per_s"] / big["raw_bulk"]["docs_per_s"]
    speedup = big["graph"]["items_per_s"] / big["naive_graph"]["rows_per_s"]
    rows: list[tuple[str, str, bool | None]] = [
        ("smoke checks take a few seconds", f"{statistics.median(smoke):.1f} s", statistics.median(smoke) < 10),
        ("reindex ≥ 0.8× raw parallel_bulk", f"{ratio:.3f}×", ratio >= 0.8),
        *by_slot_ratio(big),
        ("reindex peak RSS ≤ 300 MB", f"{big['reindex']['rss_mib']:.0f} MiB", big["reindex"]["rss_mib"] <= 286),
        ("graph sync ≥ 20× the naive loop", f"{speedup:.0f}×", speedup >= 20),
        ("graph sync ≥ 10k entities/s", f"{big['graph'].get('entities_per_s', 0):,.0f} entities/s "
         f"({big['graph']['items_per_s']:,.0f} items/s)", big["graph"].get("entities_per_s", 0) >= 10_000),
        ("cache rebuild: zero failed reads", str(big["cache"]["failed"]), big["cache"]["failed"] == 0),
        ("consistency checks (matches_canonical) ≤ 10 s",
         f"{big['consistency']['seconds']:.1f} s{runs_note(big['consistency'])}",
         big["consistency"]["seconds"] <= 10),
        ("consistency checks peak RSS ≤ 300 MB", f"{big['consistency']['rss_mib']:.0f} MiB",
         big["consistency"]["rss_mib"] <= 286),
    ]
    every = big.get("consistency_all")
    if every:
        rows += [("`pytest opschecks/consistency`, every check ≤ 10 s", f"{every['seconds']:.1f} s{runs_note(every)}",
                  every["seconds"] <= 10),
                 ("… its peak RSS ≤ 300 MB", f"{every['rss_mib']:.0f} MiB", every["rss_mib"] <= 286)]
    live = big.get("live")
    if live and "slot" in live:
        full = big["reindex"]["seconds"]
        search = live["slot"]["search"]["seconds"]
        stores = sum(live["slot"][t]["seconds"] for t in ("search", "graph", "cache"))
        two = sum(live["slot"][t]["seconds"] for t in ("search", "graph"))
        rows += [("sync of 1,000 changes ≤ 5 % of the full reindex: the search index (as pgsync syncs it), "
                  "by its change slot", f"{search:.2f} s ({search / full:.1%})", search / full <= 0.05),
                 ("… search and graph by slots", f"{two:.2f} s ({two / full:.1%})", two / full <= 0.05),
                 *one_run_row(live, full),
                 ("… search, graph and cache by slots, one run per store, summed (for comparison, not a goal: the "
                  "goal's command is the one run above; here three starts, locks and ledger rows, and the cache's "
                  "stats view, a materialized view, refreshed whole in a run of its own, not beside the others)",
                  f"{stores:.2f} s ({stores / full:.1%})", None),
                 ("… search, graph and cache by digests (no slots: for comparison, not a goal)",
                  f"{live['sync_seconds']:.1f} s ({live['sync_seconds'] / full:.1%})", None),
                 (f"reindex completes under a {PIPELINE_RATE} writes/s pipeline",
                  f"{live['under_load_seconds']:.0f} s, {rounds(live)}, {live['pipeline_errors']} pipeline errors",
                  live["pipeline_errors"] == 0)]
    lines = [f"## Goals, at {big['items']:,} items", "", "| goal | measured | met |", "|---|---:|:---:|"]
    shown = {None: "–", True: "yes", False: "**no**"}
    lines += [f"| {goal} | {value} | {shown[met]} |" for goal, value, met in rows]
    lines += ["", "Beyond the bulk load, the end-to-end reindex pays for the verify (a digest of every id and content "
              "hash, computed by the cluster while the canonical snapshot's is summed, from the end of the bulk on), "
              "the catch-up scan, the refresh and the flush (beside the digests), the alias swap and its gates and "
              "ledger; PostGIS, OpenSearch and the loader share the same 2 cores. Those costs are nearly fixed, so at "
              "the smaller catalogs (a second or two in all) the ratio is lower; the goals are stated for the "
              "largest catalog, where throughput is the question. OpenSearch's own bulk throughput varies from run "
              f"to run and from machine to machine (raw parallel_bulk of the same {big['published']:,} documents "
              f"took {listed(big['raw_bulk'].get('runs', [big['raw_bulk']['seconds']]))} s in this run; from 46.5 "
              "to 64.4 s in earlier runs on a 2-core AMD EPYC), so each ratio compares loads of the same run, and a "
              "ratio near 1 reads as 'as fast as the raw load'. Every timed step on this page starts once the "
              "machine has been quiet for 3 s (under 10 % CPU, no merge running): what a step leaves running "
              "after it returns (OpenSearch merging a load's segments, Neo4j checkpointing, autovacuum) would "
              "otherwise be paid by the next."]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    parser.add_argument("--render-only", action="store_true", help="re-render the page from bench/results.json")
    parser.add_argument("--conditions", default=None,
                        help="what else ran on the machine meanwhile, said on the page (kept in results.json)")
    args = parser.parse_args()
    if args.render_only:
        path = ROOT / "bench" / "results.json"
        saved = json.loads(path.read_text())
        if args.conditions is not None:
            saved["conditions"] = args.conditions
            path.write_text(json.dumps(saved, indent=2))
        page = render(saved["results"], saved["smoke"], saved["machine"], saved["measured"],
                      saved.get("conditions", ""))
        Path(args.out).write_text(carry_over(page, Path(args.out)))
        return
    os.environ.setdefault("KFM_ENV_FILE", str(ROOT / ".env.example"))
    hub = ServiceHub(load_settings(), writes_allowed=True, application_name="kfm-bench")
    measured = f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    results: list[dict[str, Any]] = []

    def save() -> None:  # after every size: a late failure keeps what was measured
        (ROOT / "bench" / "results.json").write_text(json.dumps(
            {"results": results, "smoke": smoke, "machine": lines, "measured": measured,
             "conditions": args.conditions or ""}, indent=2))

    try:
        lines = machine(hub)
        print("[bench] the default catalog, and the smoke checks on it", flush=True)
        default_catalog()
        smoke = smoke_seconds()
        for size in args.sizes.split(","):
            results.append(one_size(hub, int(size)))
            save()
        print("[bench] restoring the default catalog", flush=True)
        default_catalog()  # the cache-hit check judges a window: the cold reads above do not linger in it
    finally:
        hub.close()
    Path(args.out).write_text(carry_over(render(results, smoke, lines, measured, args.conditions or ""),
                                         Path(args.out)))
    print(f"[bench] written {args.out}")


if __name__ == "__main__":
    main()
