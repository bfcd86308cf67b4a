"""The live mapping behind the search alias equals the contract mapping (search.json)."""

from __future__ import annotations

from typing import Any

import pytest

from kfm_ops.checks_support import call, expect, fail_with, flatten_mapping

REINDEX_HINT = "run `kfm-maint reindex --targets search` (builds a new index from the contract and swaps the alias)"


@pytest.mark.smoke
@pytest.mark.risk("low")
def test_search_mapping_matches_contract(search: Any, kfm_settings: Any, kfm_contract: Any) -> None:
    """Every index behind the alias is strict, maps geometry as geo_shape, and has exactly the contract's fields."""
    contract = kfm_contract("search")
    alias = contract["alias"]
    first_n = kfm_settings.checks.first_n
    where = f"opensearch {kfm_settings.search.where} alias {alias}"
    exists = call("alias lookup failed", where, search.indices.exists_alias, name=alias)
    expect(exists, f"alias {alias} does not exist", where, hint=REINDEX_HINT)
    live = call("get mapping failed", where, search.indices.get_mapping, index=alias)
    wanted = flatten_mapping(contract["mappings"]["properties"])
    for index, body in sorted(live.items()):
        mapping = body["mappings"]
        here = f"opensearch {kfm_settings.search.where} index {index} (alias {alias})"
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
                      first_n=first_n, hint=REINDEX_HINT)
