"""The live index behind the search alias: its mapping and shard topology are the contract's (search.json)."""

from __future__ import annotations

import pytest

from kfm_ops import contracts
from kfm_ops.pytest_plugin.assertions import expect, fail_with
from kfm_ops.pytest_plugin.fixtures import ContractLoader
from kfm_ops.settings import Settings
from kfm_ops.stores.search import SearchStore
from kfm_ops.stores.search.indices import flatten_mapping
from kfm_ops.stores.search.nodes import topology

REINDEX_HINT = "run `kfm-maint reindex --targets search` (builds a new index from the contract and swaps the alias)"


@pytest.mark.smoke
@pytest.mark.risk("low")
@pytest.mark.covers("search:alias", "search:dynamic", "search:field:*")
def test_search_mapping_matches_contract(search: SearchStore, kfm_contract: ContractLoader) -> None:
    """Every index behind the alias is strict, maps geometry as geo_shape, and has exactly the contract's fields."""
    contract = kfm_contract("search")
    alias = contract["alias"]
    where = search.where(f"alias {alias}")
    expect(search.client.indices.exists_alias(name=alias), f"alias {alias} does not exist", where, hint=REINDEX_HINT)
    live = search.client.indices.get_mapping(index=alias)
    wanted = flatten_mapping(contract["mappings"]["properties"])
    for index, body in sorted(live.items()):
        mapping = body["mappings"]
        here = search.where(f"index {index} (alias {alias})")
        dynamic = str(mapping.get("dynamic", "true")).lower()
        expect(dynamic == contract["mappings"]["dynamic"],
               f"mapping is dynamic={dynamic}, contract says {contract['mappings']['dynamic']}: "
               "unmapped fields get added silently", here, hint=REINDEX_HINT)
        have = flatten_mapping(mapping.get("properties", {}))
        geometry = have.get("geometry", {}).get("type")
        expect(geometry == "geo_shape", f"field geometry is mapped as {geometry}, not geo_shape", here,
               ["geometry"], hint=REINDEX_HINT)
        extra = sorted(set(have) - set(wanted))
        missing = sorted(set(wanted) - set(have))
        changed = sorted(f"{f} ({have[f]}, contract {wanted[f]})" for f in set(have) & set(wanted)
                         if any(have[f].get(k) != v for k, v in wanted[f].items()))
        if extra or missing or changed:
            fail_with(f"mapping differs from search.json: {len(extra)} fields not in the contract "
                      f"(dynamically added?), {len(missing)} missing, {len(changed)} changed", here,
                      [f"+{f}" for f in extra] + [f"-{f}" for f in missing] + [f"~{c}" for c in changed],
                      hint=REINDEX_HINT)


@pytest.mark.smoke
@pytest.mark.risk("medium")
@pytest.mark.covers("search:alias", "search:index_prefix", "search:meta:*")
def test_search_alias_serves_one_verified_index(search: SearchStore, kfm_contract: ContractLoader) -> None:
    """The alias resolves to one index of the contract's prefix, marked verified, with every _meta.kfm field."""
    contract = kfm_contract("search")
    alias, prefix = contract["alias"], contract["index_prefix"]
    where = search.where(f"alias {alias}")
    live = sorted(search.client.indices.get_alias(name=alias)) if search.client.indices.exists_alias(name=alias) else []
    expect(len(live) == 1, f"alias {alias} resolves to {len(live)} indices (readers need exactly one)", where, live,
           hint=REINDEX_HINT)
    index = live[0]
    expect(index.startswith(prefix), f"alias {alias} serves {index}, not an index kfm-ops built ({prefix}NNNN)", where,
           [index], hint=REINDEX_HINT)
    meta = search.client.indices.get_mapping(index=index)[index]["mappings"].get("_meta", {}).get("kfm", {})
    state = meta.get("state")
    expect(state == "verified", f"alias {alias} serves {index}, whose state is {state!r}, not 'verified': it never "
           "passed a rebuild's verification", where, [index],
           hint="kfm-maint reindex rollback (the previous verified index), or kfm-maint reindex --targets search")
    absent = [f for f in contract["meta_fields"] if not meta.get(f)]
    expect(not absent, f"index {index} lacks _meta.kfm fields of search.json", where, absent, hint=REINDEX_HINT)


@pytest.mark.smoke
@pytest.mark.risk("low")
@pytest.mark.covers("search:setting:*")
def test_search_index_settings_match_contract(search: SearchStore, kfm_contract: ContractLoader) -> None:
    """The index behind the alias has the contract's settings (refresh interval; the shard topology is below)."""
    contract = kfm_contract("search")
    alias = contract["alias"]
    live = search.client.indices.get_settings(index=alias, params={"flat_settings": "true"})
    differing = []
    for index, body in sorted(live.items()):
        have = body["settings"]
        for name, wanted in contract["settings"].items():
            value = have.get(f"index.{name}")
            if str(value) != str(wanted):
                differing.append(f"{index} {name} ({value}, contract {wanted})")
    expect(not differing, f"{len(differing)} index settings differ from search.json", search.where(f"alias {alias}"),
           differing, hint=REINDEX_HINT)


@pytest.mark.smoke
@pytest.mark.risk("medium")
@pytest.mark.covers("search:shards:*")
def test_search_index_topology_matches_contract(search: SearchStore, kfm_contract: ContractLoader,
                                                 kfm_settings: Settings) -> None:
    """Every index behind the alias has the primaries and replicas search.json gives this environment."""
    environment = kfm_settings.environment
    if environment is None:
        pytest.skip("KFM_ENVIRONMENT is not set: the contract's shard topology is per environment")
    contract = kfm_contract("search")
    alias = contract["alias"]
    expect(search.client.indices.exists_alias(name=alias), f"alias {alias} does not exist", search.where(),
           hint=REINDEX_HINT)
    primaries, replicas = contracts.search_shards(contract, environment)
    wrong = []
    for index in sorted(search.client.indices.get_alias(name=alias)):
        have = topology(search.client, index)
        if have != (primaries, replicas):
            wrong.append(f"{index} ({have[0]} primaries, {have[1]} replicas)")
    expect(not wrong, f"{len(wrong)} indices behind {alias} differ from the {environment} topology of search.json "
           f"({primaries} primaries, {replicas} replicas)", search.where(f"alias {alias}"), wrong,
           hint="replicas alone: PUT <index>/_settings {\"index.number_of_replicas\": N}; primaries: "
           + REINDEX_HINT)
