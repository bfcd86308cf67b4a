"""The cost model of docs/scale.md: each part of a run, measured at 10k, 100k and 1M items.

    python -m bench.scale [--sizes 10000,100000,1000000] [--out docs/benchmarks.md]

Per catalog size (``sample-data init --items N``, then ``reindex --targets search,graph``), each part
where it runs (median of 3):

- PostgreSQL: the bucket digests (one aggregation; the parallel workers its plan uses), one
  partition's share of them (``--partition 0/4``: a full scan with a filter), the (id, content_hash)
  stream to the client;
- OpenSearch: the bucket digests (terms + sum), the rebuild's digest (a painless scripted_metric);
- Neo4j: the bucket digests (a Cypher aggregation);
- the client: a child process that streams every pair and digests it (its peak RSS);
- ``kfm-maint sync --targets search,graph`` with nothing changed and with 1,000 changed items.

Writes bench/scale.json and its section of docs/benchmarks.md; docs/scale.md extrapolates from it.
The default catalog is restored at the end. Speed is measured here, never asserted in tests.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.partitions import change
from bench.redact import splice
from bench.run import default_catalog, kfm_maint, measured
from kfm_ops.hub import ServiceHub
from kfm_ops.partition import Partition
from kfm_ops.settings import load_settings
from kfm_ops.stores.postgis import PUBLISHED_ITEMS
from kfm_ops.stores.search.reading import bucket_digests, search_digest

ROOT = Path(__file__).resolve().parent.parent
START, END = "<!-- bench.scale: start -->", "<!-- bench.scale: end -->"
ALIAS = "kfm-items"
STREAM = ("from kfm_ops.hub import ServiceHub; from kfm_ops.settings import load_settings; "
          "hub = ServiceHub(load_settings()); print(hub.postgis().published_digest().count)")


def _timed(work: Callable[[], object], runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def parallel_workers(hub: ServiceHub) -> int:
    """The parallel workers PostgreSQL plans for the bucket-digest aggregation."""
    from kfm_ops.stores.postgis import _BUCKET_COLUMNS

    plan = hub.postgis().rows(f"EXPLAIN SELECT b, count(*), sum(h1), sum(h2) FROM (SELECT {_BUCKET_COLUMNS} "
                              f"FROM {PUBLISHED_ITEMS}) x GROUP BY b")
    return max([int(line.split("Workers Planned:")[1]) for (line,) in plan if "Workers Planned:" in line] or [0])


def one_size(hub: ServiceHub, size: int) -> dict[str, Any]:
    print(f"[bench] {size} items: sample catalog, search and graph", flush=True)
    kfm_maint("sample-data", "init", "--items", str(size))
    kfm_maint("reindex", "--targets", "search,graph", "--prune")
    pg, client, graph = hub.postgis(), hub.search().client, hub.graph()
    published = int(pg.scalar(f"SELECT count(*) FROM {PUBLISHED_ITEMS}"))
    print(f"[bench] {size}: digests where the data is", flush=True)
    stream = measured([sys.executable, "-c", STREAM])
    found = {
        "items": size, "published": published,
        "pg_buckets_s": _timed(pg.bucket_digests),
        "pg_partition_s": _timed(lambda: pg.bucket_digests(Partition(0, 4))),
        "pg_parallel_workers": parallel_workers(hub),
        "pg_stream_s": _timed(pg.published_digest),
        "search_buckets_s": _timed(lambda: bucket_digests(client, ALIAS)),
        "search_digest_s": _timed(lambda: search_digest(client, ALIAS)),
        "graph_buckets_s": _timed(graph.bucket_digests),
        "stream_process_s": stream["seconds"], "stream_rss_mib": stream["rss_mib"],
    }
    print(f"[bench] {size}: sync with nothing and with 1,000 changes", flush=True)
    found["sync_idle_s"] = kfm_maint("sync", "--targets", "search,graph")["json"]["duration_s"]
    change(hub, 1000)
    synced = kfm_maint("sync", "--targets", "search,graph")
    found["sync_1000_s"], found["sync_rss_mib"] = synced["json"]["duration_s"], synced["rss_mib"]
    return found


def section(results: list[dict[str, Any]]) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    cols = [("published", "items", "{:,}"), ("pg_buckets_s", "PG bucket digests", "{:.2f} s"),
            ("pg_parallel_workers", "PG workers planned", "{}"), ("pg_partition_s", "PG, one partition of 4",
                                                                  "{:.2f} s"),
            ("pg_stream_s", "PG pairs → client digest", "{:.2f} s"), ("search_buckets_s", "OpenSearch bucket digests",
                                                                    "{:.2f} s"),
            ("search_digest_s", "OpenSearch rebuild digest", "{:.2f} s"), ("graph_buckets_s", "Neo4j bucket digests",
                                                                           "{:.2f} s"),
            ("stream_rss_mib", "client peak RSS, full stream", "{:.0f} MiB"), ("sync_idle_s", "sync, nothing changed",
                                                                               "{:.1f} s"),
            ("sync_1000_s", "sync, 1,000 changed", "{:.1f} s")]
    lines = [START, "## The parts of a run, by size", "",
             f"Measured {when} with `python -m bench.scale` (median of 3, each part where it runs; the sync end "
             "to end as kfm-maint reports it). The cost model built on it: [scale.md](scale.md#the-cost-model).", "",
             "| " + " | ".join(label for _, label, _ in cols) + " |", "|" + "---:|" * len(cols)]
    for r in results:
        lines.append("| " + " | ".join(fmt.format(r[key]) for key, _, fmt in cols) + " |")
    return "\n".join([*lines, END])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    args = parser.parse_args()
    hub = ServiceHub(load_settings(), writes_allowed=True)
    try:
        results = [one_size(hub, int(size)) for size in args.sizes.split(",")]
    finally:
        print("[bench] restoring the default catalog", flush=True)
        default_catalog()
        hub.close()
    (ROOT / "bench" / "scale.json").write_text(json.dumps(results, indent=2) + "\n")
    out = Path(args.out)
    out.write_text(splice(out.read_text() if out.is_file() else "# Benchmarks\n", section(results), START, END))
    print(f"[bench] written {out}")


if __name__ == "__main__":
    main()
