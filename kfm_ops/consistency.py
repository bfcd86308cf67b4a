"""Cross-store consistency: each derived store compared with the canonical published items.

Search compares order-free digests first (both computed where the data is: PostGIS
streams its pairs into :class:`~kfm_ops.digest.Digest`, OpenSearch aggregates its own)
and runs the sorted merge of :mod:`kfm_ops.compare` only on a mismatch, to name the ids.
The graph is merged directly (keyset pages on the constrained id).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from kfm_ops.compare import Diff, compare
from kfm_ops.digest import Digest
from kfm_ops.stores.graph import GraphStore
from kfm_ops.stores.postgis import PostgisStore
from kfm_ops.stores.search import SearchStore
from kfm_ops.stores.search.reading import search_digest, search_pairs


def search_matches(postgis: PostgisStore, search: SearchStore, index: str, *, store: str,
                   first_n: int = 10) -> Diff:
    """Compare a search index (or alias) with the canonical set: digests first, the merge on a mismatch.

    The canonical digest (streamed from PostGIS, summed here) is computed in a thread
    while the cluster computes its own. Equal digests give a clean Diff with
    ``compared`` = the count; a mismatch runs :func:`compare`, which names the
    missing, orphaned and stale ids.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="kfm-digest") as pool:
        canonical = pool.submit(lambda: Digest.of(postgis.published_pairs()))
        derived = search_digest(search.client, index)
        if canonical.result() == derived:
            return Diff(store=store, first_n=first_n, compared=derived.count)
    return compare(postgis.published_pairs(), search_pairs(search.client, index), store=store, first_n=first_n)


def graph_matches(postgis: PostgisStore, graph: GraphStore, *, store: str, first_n: int = 10,
                  on_orphan: Callable[[str], None] | None = None) -> Diff:
    """Compare the graph's Item nodes with the canonical set (sorted merge)."""
    return compare(postgis.published_pairs(), graph.item_pairs(), store=store, first_n=first_n, on_orphan=on_orphan)
