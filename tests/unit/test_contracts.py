"""Contracts are validated when loaded: every identifier they supply has its shape, or exit 2 names it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from kfm_ops import contracts
from kfm_ops.errors import UsageError


def _copy(tmp_path: Path, name: str, change: Any) -> Path:
    folder = tmp_path / "contracts"
    shutil.copytree(contracts.BUILTIN, folder)
    data = json.loads((folder / f"{name}.json").read_text())
    change(data)
    (folder / f"{name}.json").write_text(json.dumps(data))
    return folder


def test_the_builtin_contracts_are_valid() -> None:
    for name in contracts.NAMES:
        assert contracts.load(name)


@pytest.mark.parametrize(("name", "change", "field"), [
    ("search", lambda c: c.update(alias="kfm-items,*"), "alias"),
    ("search", lambda c: c.update(index_prefix="Kfm Items"), "index_prefix"),
    ("graph", lambda c: c["labels"].update({"Item`) DETACH DELETE (n": {"key": "id", "properties": []}}), "labels"),
    ("graph", lambda c: c["constraints"][0].update(property="id} RETURN 1 //"), "constraints[0].property"),
    ("cache", lambda c: c["redis"].update(summary_key="kfm:{dataset_id.__class__}"), "redis.summary_key"),
    ("cache", lambda c: c["redis"].update(meta_key="kfm meta"), "redis.meta_key"),
    ("postgis", lambda c: c["tables"].update({"kfm.items; DROP TABLE x": {"columns": {}}}), "tables"),
])
def test_a_bad_identifier_is_refused_at_load(tmp_path: Path, name: str, change: Any, field: str) -> None:
    folder = _copy(tmp_path, name, change)
    with pytest.raises(UsageError) as refused:
        contracts.load(name, folder)
    assert field in refused.value.message and refused.value.exit_code == 2


def test_the_builtin_extent_is_kansas_inside_the_crs_range() -> None:
    name, bbox, crs = contracts.extent(contracts.load("postgis"))
    assert name == "Kansas" and crs == (-180.0, -90.0, 180.0, 90.0)
    assert crs[0] < bbox[0] < bbox[2] < crs[2] and crs[1] < bbox[1] < bbox[3] < crs[3]


WORLD = [-180, -90, 180, 90]


@pytest.mark.parametrize("extent", [None, {"bbox": [1, 2, 3]}, {"bbox": [3, 0, 1, 1], "crs_bounds": WORLD},
                                    {"bbox": ["a", 0, 1, 1], "crs_bounds": WORLD}, {"bbox": [0, 0, 1, 1]}])
def test_a_bad_extent_is_a_usage_error_naming_it(extent: Any) -> None:
    with pytest.raises(UsageError, match=r"extent\.(bbox|crs_bounds) is"):
        contracts.extent({"extent": extent} if extent is not None else {})


OTHERS = {"staging": {"primaries": 1, "replicas": 1}, "production": {"primaries": 1, "replicas": 1}}


@pytest.mark.parametrize("shards", [None, {"dev": {"primaries": 1, "replicas": 0}},
                                    {"dev": {"primaries": 0, "replicas": 0}, **OTHERS},
                                    {"dev": {"primaries": 1, "replicas": "one"}, **OTHERS}])
def test_a_bad_shard_topology_is_refused_at_load(tmp_path: Path, shards: Any) -> None:
    folder = _copy(tmp_path, "search", lambda c: c.update(shards=shards))
    with pytest.raises(UsageError, match=r"search contract: shards\.(dev|staging|production) is") as refused:
        contracts.load("search", folder)
    assert refused.value.exit_code == 2


def test_an_index_gets_the_environment_topology_and_the_contract_settings() -> None:
    search = contracts.load("search")
    assert contracts.search_shards(search, "dev") == (1, 0)
    production = contracts.search_index_settings(search, "production")
    assert production["number_of_shards"] == contracts.search_shards(search, "production")[0] >= 1
    assert production["refresh_interval"] == search["settings"]["refresh_interval"]
    assert contracts.search_index_settings(search, "production", replicas=0)["number_of_replicas"] == 0
