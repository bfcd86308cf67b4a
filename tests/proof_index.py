"""A tiny pytest plugin: dump, at collection, what each test is (docstring, markers, proves)."""

from __future__ import annotations

import json
import os

import pytest

from kfm_ops.settings import SERVICES


def _describe(item: pytest.Item) -> dict[str, object]:
    function = getattr(item, "function", None)
    doc = (function.__doc__ or "").strip().splitlines() if function else []
    risk = item.get_closest_marker("risk")
    return {
        "proves": [m.args[0] for m in item.iter_markers("proves") if m.args],
        "covers": sorted({pattern for m in item.iter_markers("covers") for pattern in m.args}),
        "doc": doc[0] if doc else "",
        "risk": risk.args[0] if risk and risk.args else "",
        "smoke": item.get_closest_marker("smoke") is not None,
        "services": [s for s in SERVICES if item.get_closest_marker(s)],
        "name": getattr(item, "originalname", item.name),
    }


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    path = os.environ.get("KFM_PROOF_INDEX")
    if path:
        with open(path, "w", encoding="utf-8") as handle:
            json.dump({item.nodeid: _describe(item) for item in items}, handle)
