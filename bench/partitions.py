"""Partitioned runs on this machine: two partitions in parallel against one process.

    python -m bench.partitions [--sizes 100000,1000000] [--runs 3] [--out docs/benchmarks.md]

For each catalog size (``sample-data init --items``), the median of ``--runs`` of:

- the search rebuild in one process (``reindex --targets search --force``);
- the same rebuild partitioned in two: the coordinator (``--partitions 2``) and both workers at once;
- partitioned in two with the workers one after the other: the coordination without the parallelism;
- a sync of 10,000 changed items (search and graph) in one process, and in two parallel partitions.

Wall time from the first process started to the last one ended, and each process's peak RSS. The
default catalog is restored at the end. Writes its own section of docs/benchmarks.md (bench.run keeps
it). Speed is measured here, never asserted in tests.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.redact import splice
from bench.run import default_catalog, kfm_maint, measured
from kfm_ops.hub import ServiceHub
from kfm_ops.settings import load_settings
from kfm_ops.stores.postgis import PUBLISHED_ITEMS

ROOT = Path(__file__).resolve().parent.parent
START, END = "<!-- bench.partitions: start -->", "<!-- bench.partitions: end -->"
CHANGES = 10_000
WAIT = "1800"


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "maintenance.cli", *args, "--no-verify", "--json"]


def _together(commands: list[list[str]], *, stagger: float = 0.0) -> dict[str, Any]:
    """Run ``commands`` at once (each after ``stagger`` s); wall seconds until all ended, each one's peak RSS."""
    from concurrent.futures import ThreadPoolExecutor

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=len(commands)) as pool:
        futures = []
        for command in commands:
            futures.append(pool.submit(measured, command))
            time.sleep(stagger)
        results = [f.result() for f in futures]
    bad = [r for r in results if r["code"] != 0]
    if bad:
        raise SystemExit(f"a partitioned run failed: {bad[0]['stdout'][-1500:]} {bad[0]['stderr'][-1500:]}")
    return {"seconds": time.monotonic() - started, "rss_mib": [round(r["rss_mib"]) for r in results]}


def _sequential_workers(action: list[str], workers: list[list[str]]) -> dict[str, Any]:
    """The coordinator, and its workers one after the other while it waits."""
    from concurrent.futures import ThreadPoolExecutor

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=1) as pool:
        lead = pool.submit(measured, action)
        time.sleep(1.0)
        done = [measured(w) for w in workers]
        results = [lead.result(), *done]
    if any(r["code"] for r in results):
        raise SystemExit(f"a partitioned run failed: {[r['stderr'][-800:] for r in results if r['code']]}")
    return {"seconds": time.monotonic() - started, "rss_mib": [round(r["rss_mib"]) for r in results]}


def change(hub: ServiceHub, n: int) -> None:
    """Pipeline-style updates of ``n`` published items (title, content hash, updated_at)."""
    hub.postgis(write=True).execute(
        "UPDATE kfm.items SET title = title || ' ·', content_hash = encode(sha256(convert_to(content_hash || "
        f"'bench', 'UTF8')), 'hex'), updated_at = now() WHERE id IN (SELECT id FROM {PUBLISHED_ITEMS} "
        "ORDER BY md5(id) LIMIT %s)", (n,))


def rebuilds(runs: int) -> dict[str, list[float]]:
    reindex = ["reindex", "--targets", "search", "--force"]
    found: dict[str, list[float]] = {"one": [], "two_parallel": [], "two_sequential": []}
    rss: dict[str, list[int]] = {}
    for _ in range(runs):
        one = measured(_cli(*reindex))
        if one["code"]:
            raise SystemExit(f"reindex failed: {one['stderr'][-1500:]}")
        found["one"].append(one["seconds"])
        rss["one"] = [round(one["rss_mib"])]
        lead = _cli(*reindex, "--partitions", "2", "--partition-wait", WAIT)
        workers = [_cli("reindex", "--targets", "search", "--partition", f"{i}/2", "--partition-wait", WAIT)
                   for i in range(2)]
        both = _together([lead, *workers], stagger=0.3)
        found["two_parallel"].append(both["seconds"])
        rss["two_parallel"] = both["rss_mib"]
        found["two_sequential"].append(_sequential_workers(lead, workers)["seconds"])
    return {**found, "rss": rss}  # type: ignore[dict-item]


def syncs(hub: ServiceHub, runs: int) -> dict[str, list[float]]:
    found: dict[str, list[float]] = {"one": [], "two_parallel": []}
    targets = ["--targets", "search,graph"]
    for _ in range(runs):
        change(hub, CHANGES)
        one = measured(_cli("sync", *targets))
        if one["code"]:
            raise SystemExit(f"sync failed: {one['stderr'][-1500:]}")
        found["one"].append(one["seconds"])
        change(hub, CHANGES)
        lead = _cli("sync", *targets, "--partitions", "2", "--partition-wait", WAIT)
        workers = [_cli("sync", *targets, "--partition", f"{i}/2", "--partition-wait", WAIT) for i in range(2)]
        found["two_parallel"].append(_together([lead, *workers], stagger=0.3)["seconds"])
    return found


def one_size(hub: ServiceHub, size: int, runs: int) -> dict[str, Any]:
    print(f"[bench] {size} items: sample catalog", flush=True)
    kfm_maint("sample-data", "init", "--items", str(size))
    kfm_maint("reindex", "--targets", "search,graph", "--prune")
    published = hub.postgis().scalar(f"SELECT count(*) FROM {PUBLISHED_ITEMS}")
    print(f"[bench] {size}: rebuilds, one process against two partitions", flush=True)
    rebuild = rebuilds(runs)
    print(f"[bench] {size}: sync of {CHANGES} changes, one process against two partitions", flush=True)
    return {"items": size, "published": published, "reindex": rebuild, "sync": syncs(hub, runs)}


def _median(values: list[float]) -> float:
    return statistics.median(values)


def section(results: list[dict[str, Any]], runs: int) -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else "?"
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [START, "## Partitioned runs: two partitions in parallel against one process", "",
             f"Measured {when} with `python -m bench.partitions` ({cpu}, {os.cpu_count()} cores, Python "
             f"{platform.python_version()}; the stack's servers on the same cores). Median of {runs} runs, wall "
             "time from the first process started to the last one ended (interpreter start-ups included). "
             "*Two in parallel*: the coordinator (`--partitions 2`) and both workers (`--partition 0/2`, `1/2`) at "
             "once; *two in sequence*: the workers one after the other — the coordination's own cost.", "",
             "| items | rebuild, one process | two partitions in parallel | ratio | two in sequence | "
             f"sync of {CHANGES:,} changes, one process | two partitions in parallel | ratio |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        one, two, seq = (_median(r["reindex"][k]) for k in ("one", "two_parallel", "two_sequential"))
        sync_one, sync_two = _median(r["sync"]["one"]), _median(r["sync"]["two_parallel"])
        lines.append(f"| {r['published']:,} | {one:.1f} s | {two:.1f} s | {two / one:.2f}× | {seq:.1f} s | "
                     f"{sync_one:.1f} s | {sync_two:.1f} s | {sync_two / sync_one:.2f}× |")
    last = results[-1]["reindex"]["rss"]
    every = {r["published"]: {k: [round(x, 1) for x in v] for k, v in r["reindex"].items() if k != "rss"}
             for r in results}
    lines += ["", f"Peak RSS at {results[-1]['published']:,} items: one process {last['one'][0]} MiB; "
              f"coordinator and workers {', '.join(f'{m} MiB' for m in last['two_parallel'])}. Every rebuild, "
              f"in seconds: `{json.dumps(every)}`. What the ratios mean on larger machines: docs/scale.md.", END]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    args = parser.parse_args()
    hub = ServiceHub(load_settings(), writes_allowed=True)
    try:
        results = [one_size(hub, int(size), args.runs) for size in args.sizes.split(",")]
    finally:
        print("[bench] restoring the default catalog", flush=True)
        default_catalog()
        hub.close()
    (ROOT / "bench" / "partitions.json").write_text(json.dumps(results, indent=2) + "\n")
    out = Path(args.out)
    out.write_text(splice(out.read_text() if out.is_file() else "# Benchmarks\n", section(results, args.runs),
                          START, END))
    print(f"[bench] written {out}")


if __name__ == "__main__":
    main()
