"""The versioned indices behind the contract alias: their ``_meta`` state, the alias swap, pruning.

Each index kfm-ops builds is named ``<index_prefix><NNNN>`` and carries its state in
``_meta.kfm`` (building → verified), so rollback only ever goes back to a verified index
and prune clears what a killed run left behind.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from typing import Any

from opensearchpy import OpenSearch


@dataclass
class SearchState:
    """The versioned indices of the search contract, as plan, rollback and prune see them."""

    alias: str
    prefix: str
    live: list[str]  # the indices the alias points at now
    metas: dict[str, dict[str, Any]]  # every versioned index -> its _meta.kfm
    taken: frozenset[str] = frozenset()  # every index under the prefix, kfm-ops' or not

    def version(self, name: str) -> int:
        match = re.fullmatch(re.escape(self.prefix) + r"(\d+)", name)
        return int(match.group(1)) if match else -1

    @property
    def next_index(self) -> str:
        """A version past every name in use: an index of that name made by hand, or by a stray request, never
        blocks a rebuild (and is never managed)."""
        return f"{self.prefix}{max([0, *map(self.version, self.metas), *map(self.version, self.taken)]) + 1:04d}"

    def verified(self) -> list[str]:
        """Verified (or live) indices, newest first."""
        return sorted((n for n, m in self.metas.items() if m.get("state") == "verified" or n in self.live),
                      key=self.version, reverse=True)


def ours(prefix: str, found: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The indices kfm-ops made, with their ``_meta.kfm``: named exactly ``<prefix>NNNN`` and carrying the state.

    Anything else that matches the prefix pattern (a hand-made ``<prefix>backup``, another
    tool's index) is never counted, rolled back to, or pruned.
    """
    pattern = re.compile(re.escape(prefix) + r"\d{4}")
    metas = {name: (body.get("mappings", {}).get("_meta") or {}).get("kfm") for name, body in found.items()}
    return {name: meta for name, meta in metas.items() if pattern.fullmatch(name) and isinstance(meta, dict)}


def search_state(client: OpenSearch, contract: dict[str, Any]) -> SearchState:
    """Read the alias and the versioned indices kfm-ops made under the contract's prefix."""
    alias, prefix = contract["alias"], contract["index_prefix"]
    live = sorted(client.indices.get_alias(name=alias)) if client.indices.exists_alias(name=alias) else []
    found = client.indices.get(index=f"{prefix}*", ignore_unavailable=True, allow_no_indices=True)
    return SearchState(alias, prefix, live, ours(prefix, found), frozenset(found))


def point_alias(client: OpenSearch, alias: str, live: list[str], target: str) -> None:
    """Move ``alias`` from the ``live`` indices to ``target`` in one ``_aliases`` call: readers never see a gap."""
    actions: list[dict[str, Any]] = [{"remove": {"index": old, "alias": alias}} for old in live]
    client.indices.update_aliases(body={"actions": [*actions, {"add": {"index": target, "alias": alias}}]})


def mark(client: OpenSearch, index: str, state: str, run_id: str) -> None:
    """Record ``state`` (building, verified) and the run in the index's ``_meta.kfm``."""
    client.indices.put_mapping(index=index, body={"_meta": {"kfm": {"state": state, "run_id": run_id}}})


def prune(client: OpenSearch, state: SearchState, keep: int) -> list[str]:
    """Delete leftovers of killed runs and all but the newest ``keep`` verified indices."""
    keep_set = set(state.live) | set(state.verified()[:keep])
    doomed = sorted(n for n in state.metas if n not in keep_set)
    for name in doomed:
        client.indices.delete(index=name, ignore_unavailable=True)
    return doomed


def discard(client: OpenSearch, index: str) -> None:
    """Delete a half-built index, best effort (prune removes it next time if this fails)."""
    with contextlib.suppress(Exception):
        client.indices.delete(index=index, ignore_unavailable=True)


def flatten_mapping(properties: dict[str, Any], prefix: str = "") -> dict[str, dict[str, Any]]:
    """``{"title": {"type": "text", "fields": {"raw": …}}}`` → ``{"title": {...}, "title.raw": {...}}``.

    Each value keeps the field's own parameters (without ``properties`` / ``fields``).
    """
    flat: dict[str, dict[str, Any]] = {}
    for name, spec in properties.items():
        path = f"{prefix}{name}"
        own = {k: v for k, v in spec.items() if k not in ("properties", "fields")}
        own.setdefault("type", "object" if "properties" in spec else None)
        flat[path] = own
        if "properties" in spec:
            flat.update(flatten_mapping(spec["properties"], f"{path}."))
        if "fields" in spec:
            flat.update(flatten_mapping(spec["fields"], f"{path}."))
    return flat
