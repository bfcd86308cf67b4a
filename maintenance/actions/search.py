"""``kfm-maint reindex --targets search`` (blue/green) and ``kfm-maint reindex rollback``.

build a new versioned index (the contract's primaries, no replicas, refresh off) → stream +
bulk-load → refresh → verify against the canonical set → converge with the changes committed
meanwhile → raise the replicas to the contract's number and wait (bounded) for green → swap the
alias in one ``_aliases`` call → prune. Until the swap nothing that readers use is touched; a
failure at any step deletes only the half-built index and names the step. The search room
(:mod:`kfm_ops.stores.search`) does the work; this module orders it.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kfm_ops import changes, contracts, converge, log
from kfm_ops.changes import Changes, ChangeSlot
from kfm_ops.consistency import SearchSide, search_matches
from kfm_ops.derive import DOCUMENT_TABLES, grid_degrees, search_documents
from kfm_ops.digest import Digest
from kfm_ops.errors import ActionFailed, Interrupted, KfmError, ServiceError
from kfm_ops.hub import ServiceHub
from kfm_ops.interrupt import STOP
from kfm_ops.stores.postgis import Mark, PostgisStore
from kfm_ops.stores.search import SearchStore
from kfm_ops.stores.search.bulk import BUILD_SETTINGS, BULK_DOCS, BULK_IN_FLIGHT, BulkLoader
from kfm_ops.stores.search.indices import discard, mark, point_alias, prune, search_state
from kfm_ops.stores.search.nodes import Shard, data_nodes, explain, set_replicas, topology, wait_green
from maintenance.action import Plan, RunContext
from maintenance.actions.partitions import PARTITION_WAIT
from maintenance.actions.sync import change_slot
from maintenance.partitioned import Coordinator

# After the build, rounds bring the new index to newer snapshots (then the swap, and one round more
# right after it). A round that finds at most CONVERGED changes ends them. So does a backlog that stopped
# shrinking (a round found at least STEADY times what the one before did) while the rounds write the
# changes far faster than the pipelines make them: each round pays a fixed cost to find the differences
# in the whole catalog, and what the pipelines write meanwhile is all another round would find again.
MAX_ROUNDS = 6
CONVERGED = 200
STEADY = 0.8


def _contract(hub: ServiceHub) -> dict[str, Any]:
    return contracts.load("search", hub.settings.contracts_dir)


def rounds_done(rounds: list[int], *, written: float, applied: float) -> bool:
    """Whether the convergence rounds may stop after the last of ``rounds`` (changes per round), given the
    rate the pipelines wrote at during it and the rate the round wrote its changes at (both per second)."""
    steady = len(rounds) > 1 and rounds[-1] >= STEADY * rounds[-2] and applied >= 2 * written
    return rounds[-1] <= CONVERGED or steady


@dataclass
class ReindexPlan:
    alias: str
    new_index: str
    live: list[str]
    newest_update: str | None
    primaries: int = 1
    replicas: int = 0


class ReindexSearch:
    name = "reindex-search"
    stores = ("search",)
    derived = ("search",)
    verify_markers = "search"
    bootstraps_schema = False

    def __init__(self, *, keep: int = 2, force: bool = False, batch_size: int = BULK_DOCS,
                 threads: int = BULK_IN_FLIGHT, partitions: int = 1, partition_wait: float = PARTITION_WAIT) -> None:
        self.keep = keep
        self.force = force or partitions > 1  # a coordinator always builds: its workers are started with it
        self.batch_size = batch_size
        self.threads = threads
        self.partitions = partitions
        self.partition_wait = partition_wait

    def plan(self, hub: ServiceHub) -> Plan[ReindexPlan]:
        contract = _contract(hub)
        search = hub.search()
        state = search_state(search.client, contract)
        alias, live, new_index = state.alias, state.live, state.next_index
        count, newest = hub.postgis().published_count()
        environment = hub.settings.environment or "dev"  # the runner refuses actions without one
        primaries, replicas = contracts.search_shards(contract, environment)
        up_to_date = False
        if len(live) == 1 and not self.force:
            # Idempotence: a live index with the contract mapping, topology and the canonical content is left alone.
            mapping = search.client.indices.get_mapping(index=live[0])[live[0]]["mappings"]
            same_mapping = {k: v for k, v in mapping.items() if k != "_meta"} == contract["mappings"]
            same_shape = topology(search.client, live[0]) == (primaries, replicas)
            up_to_date = same_mapping and same_shape and search_matches(hub.canonical(), search, alias,
                                                                        store="search").clean
        return Plan(
            what=f"nothing to do: {alias} is current (use --force to rebuild)" if up_to_date
            else f"build {new_index} from {count} published items, verify, swap alias {alias}",
            where=[f"search {search.address}: alias {alias} (now → {', '.join(live) or 'nothing'})"],
            how_much={"documents": count, "live_index": ",".join(live) or None,
                      "existing_indices": len(state.metas), "primaries": primaries, "replicas": replicas},
            rollback=f"`kfm-maint reindex rollback` points {alias} back at {live[0] if live else 'nothing'}",
            steps=[] if up_to_date else [
                f"create {new_index} (contract mapping, {primaries} primaries, no replicas, refresh off)",
                *(["stream + bulk-load published items from one canonical snapshot",
                   "refresh, verify every id + content hash against that snapshot, flush"] if self.partitions == 1 else
                  [f"export one canonical snapshot; wait (at most {self.partition_wait:g}s) for its "
                   f"{self.partitions} partitions: kfm-maint reindex --targets search --partition i/"
                   f"{self.partitions}, i = 0..{self.partitions - 1}",
                   "refresh, verify every id + content hash against that snapshot (the partitions' digests "
                   "combined), flush"]),
                "converge with the changes committed meanwhile (rounds on newer snapshots)",
                f"raise replicas to {replicas} ({environment}) and wait for green "
                f"(at most {search.section.green_timeout:g}s)",
                f"swap alias {alias} atomically", "converge once more right after the swap",
                f"prune to the newest {self.keep} verified indices"],
            details=ReindexPlan(alias, new_index, live, newest.isoformat() if newest else None, primaries, replicas),
            nothing_to_do=up_to_date,
        )

    def apply(self, hub: ServiceHub, plan: Plan[ReindexPlan], run: RunContext) -> dict[str, Any]:
        d = plan.details
        if plan.nothing_to_do:
            return {"index": d.live[0], "documents_loaded": 0, "unchanged": True}
        search = hub.search(write=True)
        client = search.client
        reader = hub.canonical()  # the replica when configured: its snapshot's instant never outruns its replay
        contract = _contract(hub)
        grid = grid_degrees(hub.policy(), hub.settings.contracts_dir)
        new = d.new_index
        loader = BulkLoader(client, new, action=self.name, batch_size=self.batch_size, in_flight=self.threads)
        step = "create"
        try:
            settings = {"number_of_shards": d.primaries, "number_of_replicas": 0,  # replicas once it is whole
                        **contract["settings"], **BUILD_SETTINGS}
            body = {"settings": settings,
                    "mappings": {**contract["mappings"], "_meta": {"kfm": {"state": "building", "run_id": run.run_id}}}}
            client.indices.create(index=new, body=body)
            with reader.snapshot() as instant:  # build and verify against one view of the canonical store
                total, _newest = reader.published_count()
                built = reader.mark(DOCUMENT_TABLES)
                if self.partitions > 1:
                    step = "partitions"
                    parts = self._coordinate(hub, reader, new, grid, run, total)
                    loaded = sum(int(r["counts"]["documents_loaded"]) for r in parts)
                else:
                    step = "bulk"

                    def batch_done(done: int) -> None:
                        run.progress("search documents", done, total)
                        run.checkpoint()  # between bulk requests: stop at once if our lock is gone

                    loaded = loader.load(search_documents(reader, grid), on_done=batch_done)
                step = "refresh"
                with ThreadPoolExecutor(max_workers=2, thread_name_prefix="kfm-verify") as pool:
                    # the snapshot's digest needs no index: summed while the index is readied and digested
                    canonical = Digest.combine(Digest(*r["counts"]["digest"]) for r in parts) \
                        if self.partitions > 1 else pool.submit(reader.published_digest)
                    client.indices.put_settings(index=new, body={"index": {
                        "refresh_interval": contract["settings"]["refresh_interval"],
                        "translog.durability": "request"}})
                    client.indices.refresh(index=new)
                    # durable before the swap: the flush is disk work, done beside the digests' CPU work
                    flushed = pool.submit(client.indices.flush, index=new)
                    step = "verify"
                    diff = search_matches(reader, search, new, store=f"search index {new}",
                                          first_n=hub.settings.checks.first_n, canonical=canonical)
                    step = "flush"  # a failed flush is named as its own step, not as the verify's
                    flushed.result()
                if not diff.clean:
                    raise ActionFailed(self.name, "verify", diff.summary(),
                                       hint="the new index differs from the snapshot it was built from; the live "
                                       "alias was not touched")
            step = "converge"
            slot = change_slot(hub, "search", write=True)
            slot = slot if slot is not None and slot.state().trusted else None  # else: the digests find them
            rounds, instant, built = self._converge(reader, search, new, grid, loader, run, instant, built, slot)
            step = "replicas"
            self._replicate(search, new, d.replicas, run)
            mark(client, new, "verified", run.run_id)
            step = "swap"
            run.checkpoint()  # never swap the alias without holding the lock
            point_alias(client, d.alias, d.live, new)
        except Interrupted:
            STOP.clear()  # the bulk workers have stopped; the clean-up request itself must go out
            discard(client, new)
            raise Interrupted(f"interrupted by SIGTERM during step '{step}'",
                              hint=f"alias {d.alias} and its live index were left untouched") from None
        except ActionFailed:
            discard(client, new)
            raise
        except KfmError as exc:  # a store failed: discard the half-built index, name the step
            discard(client, new)
            reason = exc.message if isinstance(exc, ServiceError) else str(exc)
            raise ActionFailed(self.name, step, reason,
                               hint=f"alias {d.alias} and its live index were left untouched") from None
        except BaseException:  # Ctrl-C, a bug: still never leave a half-built index behind
            discard(client, new)
            raise
        run.progress("search documents", loaded, total)
        # once more right after the swap: what was committed while the alias moved reaches the live index now
        with reader.snapshot() as instant:
            after, told, _here = self._round(reader, search, new, grid, loader, run, built, slot)
        if slot is not None and told is not None:  # the live index now holds what the slot named: it moves on
            slot.advance(told.advance_to)
        hub.postgis(write=True).record_watermark("search", instant, run.run_id)
        pruned = prune(client, search_state(client, contract), self.keep)
        return {"index": new, "documents_loaded": loaded, "verified": diff.compared, "rounds": rounds,
                "rounds_found_by": "change slot" if slot is not None else "digests",
                "converged_after_swap": after.changes, "previous": ",".join(d.live) or None, "pruned": len(pruned)}

    def _coordinate(self, hub: ServiceHub, reader: PostgisStore, index: str, grid: float, run: RunContext,
                    total: int) -> list[dict[str, Any]]:
        """Export the open snapshot, hand its partitions out, and wait until every one has loaded its share."""
        coordinator = Coordinator(hub.postgis(write=True), self.name, run.run_id, self.partitions)
        coordinator.open(reader.export_snapshot(), {"index": index, "grid": grid, "documents": total})
        log.get_logger().info("reindex.partitions", partitions=self.partitions, index=index)
        return coordinator.wait(self.partition_wait, checkpoint=run.checkpoint,
                                keepalive=reader.ping,
                                progress=lambda done: run.progress("partitions", done, self.partitions))

    def _replicate(self, search: SearchStore, index: str, replicas: int, run: RunContext) -> None:
        """Raise ``index`` to ``replicas`` copies and wait for green, at most KFM_SEARCH__GREEN_TIMEOUT: a swap
        never puts readers on an index with less redundancy than the contract asks for."""
        client = search.client
        if replicas:
            set_replicas(client, index, replicas)
        timeout = search.section.green_timeout
        missing = wait_green(client, index, timeout, between=run.checkpoint)
        if missing:
            raise ActionFailed(self.name, "replicas", _not_green(client, index, timeout, missing),
                               hint="the live alias was not touched and the new index was deleted; bring the "
                               "missing nodes back (or give the environment fewer replicas in search.json), "
                               "then re-run")

    def _round(self, reader: PostgisStore, search: SearchStore, index: str, grid: float, loader: BulkLoader,
               run: RunContext, since: Mark, slot: ChangeSlot | None,
               ) -> tuple[converge.Converged, Changes | None, Mark]:
        """One convergence of ``index`` with the reader's open snapshot (the index holds the snapshot ``since``
        stands for, and what earlier rounds wrote): the ids the search store's change slot names when it is
        trusted (what changed since the live index's last sync: a superset of what changed since this build's
        snapshot, the rest compares equal and is not written); else nothing at all when no table a document
        derives from changed since (:meth:`PostgisStore.unchanged_since`), else the bucket digests."""
        started = time.monotonic()
        here = reader.mark(DOCUMENT_TABLES)
        if slot is None and reader.unchanged_since(since):
            return converge.Converged(finding_s=time.monotonic() - started), None, here
        told = changes.told(reader, slot.control, slot) if slot is not None else None
        ids = told.follow(reader, SearchSide(search, index).datasets_present) if told is not None else None
        return converge.search(reader, search, index, grid, loader, action=self.name, checkpoint=run.checkpoint,
                               ids=ids), told, here

    def _converge(self, reader: PostgisStore, search: SearchStore, index: str, grid: float, loader: BulkLoader,
                  run: RunContext, built_at: datetime, built: Mark,
                  slot: ChangeSlot | None) -> tuple[list[int], datetime, Mark]:
        """Bring the new index to newer snapshots until what changed meanwhile is little; fail when the
        canonical store changes faster than the rounds catch up (naming both rates)."""
        rounds: list[int] = []
        previous, since = built_at, built
        written = applied = 0.0
        for _ in range(MAX_ROUNDS):
            started = time.monotonic()
            with reader.snapshot() as instant:
                done, _told, since = self._round(reader, search, index, grid, loader, run, since, slot)
            rounds.append(done.changes)
            writing_s = max(time.monotonic() - started - done.finding_s, 0.001)
            written = done.changes / max((instant - previous).total_seconds(), 0.001)
            applied = done.changes / writing_s
            log.get_logger().info("reindex.round", changes=done.changes, since_s=(instant - previous).total_seconds(),
                                  finding_s=round(done.finding_s, 3), writing_s=round(writing_s, 3))
            if rounds_done(rounds, written=written, applied=applied):
                return rounds, instant, since
            previous = instant
        raise ActionFailed(self.name, "converge", f"still {rounds[-1]} changes after {len(rounds)} rounds "
                           f"({', '.join(map(str, rounds))}): the canonical store changes at ~{written:.0f}/s, the "
                           f"rounds write ~{applied:.0f}/s", hint="the live alias was not touched; re-run when the "
                           "pipelines write less, or rely on kfm-maint sync between rebuilds")


def _not_green(client: Any, index: str, timeout: float, missing: list[Shard]) -> str:
    """Which copies of ``index`` were not started after ``timeout`` s, and the cluster's reason for the first."""
    waiting = [s for s in missing if s.state == "UNASSIGNED"] or missing
    why = explain(client, waiting[0]) if waiting[0].state == "UNASSIGNED" else waiting[0].state.lower()
    shown = ", ".join(s.label() for s in missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
    return (f"index {index} not green after {timeout:g}s: {len(missing)} shard copies not started "
            f"({data_nodes(client)} data nodes): {shown}; first: {why}")


@dataclass
class RollbackPlan:
    alias: str
    live: list[str]
    target: str


class RollbackSearch:
    name = "reindex-rollback"
    stores = ("search",)
    derived = ("search",)
    verify_markers = ""  # the canonical store may have moved on since; rollback's own check is the alias
    bootstraps_schema = False

    def plan(self, hub: ServiceHub) -> Plan[RollbackPlan]:
        state = search_state(hub.search().client, _contract(hub))
        alias, live = state.alias, state.live
        current = max(map(state.version, live), default=-1)
        candidates = [n for n in state.verified() if n not in live and state.version(n) < current]
        if not candidates:
            raise ActionFailed(self.name, "plan", f"no verified index older than {', '.join(live) or 'nothing'}",
                               hint="nothing to roll back to; run `kfm-maint reindex --targets search`")
        target = candidates[0]  # the newest verified index older than the live one
        return Plan(what=f"point alias {alias} back at {target}", where=[f"search alias {alias}"],
                    how_much={"from": ",".join(live), "to": target},
                    rollback="`kfm-maint reindex --targets search` rebuilds a fresh index",
                    steps=[f"swap alias {alias} → {target} atomically"],
                    details=RollbackPlan(alias, live, target))

    def apply(self, hub: ServiceHub, plan: Plan[RollbackPlan], run: RunContext) -> dict[str, Any]:
        d = plan.details
        store: SearchStore = hub.search(write=True)
        run.checkpoint()
        point_alias(store.client, d.alias, d.live, d.target)
        return {"alias": d.alias, "now": d.target, "was": ",".join(d.live)}
