"""Every store belongs to one deployment: the canonical stamp, and the same stamp in each derived store.

``kfm-maint migrate --environment X`` stamps the canonical database; ``kfm-maint identity
stamp`` copies the stamp into the derived stores. A store carrying another deployment's stamp
(or none) means the settings mix deployments — actions refuse it, and these checks fail.
"""

from __future__ import annotations

import pytest

from kfm_ops.identity import Identity
from kfm_ops.pytest_plugin.assertions import expect
from kfm_ops.pytest_plugin.fixtures import ContractLoader
from kfm_ops.settings import Settings
from kfm_ops.stores.cache import CacheStore
from kfm_ops.stores.graph import GraphStore
from kfm_ops.stores.postgis import PostgisStore
from kfm_ops.stores.search import SearchStore

STAMP_HINT = "kfm-maint identity stamp --targets {store} (only if it belongs to this deployment)"


def _canonical(postgis: PostgisStore) -> Identity:
    __tracebackhide__ = True
    found = postgis.identity()
    expect(found is not None, "the canonical database carries no deployment identity",
           postgis.where("table kfm_ops.environment"),
           hint="stamp it explicitly: kfm-maint migrate --environment <dev|staging|production>")
    assert found is not None
    return found


def _matches(store: str, found: Identity | None, canonical: Identity, where: str) -> None:
    __tracebackhide__ = True
    expect(found is not None, f"the {store} store carries no deployment identity (canonical: {canonical})", where,
           hint=STAMP_HINT.format(store=store))
    expect(found == canonical, f"the {store} store belongs to {found}, the canonical database to {canonical}", where,
           hint="the settings point at stores of two deployments: fix the KFM_" + store.upper() + "__* settings")


@pytest.mark.smoke
@pytest.mark.risk("low")
@pytest.mark.covers("postgis:state:kfm_ops.environment")
def test_canonical_identity_stamped(postgis: PostgisStore, kfm_settings: Settings) -> None:
    """The canonical database carries a deployment stamp whose environment is the one KFM_ENVIRONMENT names."""
    canonical = _canonical(postgis)
    expected = kfm_settings.environment
    expect(expected is None or canonical.environment == expected,
           f"the canonical database is stamped '{canonical.environment}' but KFM_ENVIRONMENT is '{expected}'",
           postgis.where("table kfm_ops.environment"), hint="you may be checking the wrong database")


@pytest.mark.smoke
@pytest.mark.risk("low")
@pytest.mark.covers("search:identity_index")
def test_search_identity_matches(postgis: PostgisStore, search: SearchStore, kfm_contract: ContractLoader) -> None:
    """The search cluster's identity index carries the canonical deployment stamp."""
    index = kfm_contract("search")["identity_index"]
    _matches("search", search.identity(index), _canonical(postgis), search.where(f"index {index}"))


@pytest.mark.smoke
@pytest.mark.risk("low")
@pytest.mark.covers("graph:identity_label")
def test_graph_identity_matches(postgis: PostgisStore, graph: GraphStore, kfm_contract: ContractLoader) -> None:
    """The graph's one identity node carries the canonical deployment stamp."""
    label = kfm_contract("graph")["identity_label"]
    _matches("graph", graph.identity(label), _canonical(postgis), graph.where(f"label {label}"))


@pytest.mark.smoke
@pytest.mark.risk("low")
@pytest.mark.covers("cache:identity_key")
def test_cache_identity_matches(postgis: PostgisStore, cache: CacheStore, kfm_contract: ContractLoader) -> None:
    """The cache's identity hash carries the canonical deployment stamp."""
    key = kfm_contract("cache")["redis"]["identity_key"]
    _matches("cache", cache.identity(key), _canonical(postgis), cache.where(f"key {key}"))
