"""What kfm-maint prints: the plan for people, one JSON document for machines."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from kfm_ops.errors import UsageError
from kfm_ops.redact import register_secret
from maintenance.action import Plan
from maintenance.output import Output


@dataclass
class Details:
    index: str


def plan() -> Plan[Details]:
    return Plan(what="build kfm-items-v0002", where=["search h:9200: alias kfm-items"],
                how_much={"documents": 10}, rollback="reindex rollback", details=Details("kfm-items-v0002"),
                steps=["create", "swap"])


def test_plan_renders_what_where_how_much_rollback_verify_and_steps(capsys: pytest.CaptureFixture[str]) -> None:
    out = Output(json_mode=False)
    out.plan("reindex-search", plan(), "dev", dry_run=True, verify="pytest --pyargs opschecks -m 'search'")
    text = capsys.readouterr().out
    for line in ("PLAN (dry run: nothing will be written) — reindex-search on dev", "what:     build kfm-items-v0002",
                 "where:    search h:9200: alias kfm-items", "how much: documents=10", "rollback: reindex rollback",
                 "verify:   pytest --pyargs opschecks -m 'search'", "1. create", "2. swap"):
        assert line in text


def test_plan_as_dict_carries_the_typed_details() -> None:
    nested = Plan(what="w", where=[], how_much={}, rollback="r", details=[plan()])
    as_dict = nested.as_dict()
    assert as_dict["details"][0]["details"] == {"index": "kfm-items-v0002"}
    json.dumps(as_dict)


def test_json_mode_prints_one_redacted_document(capsys: pytest.CaptureFixture[str]) -> None:
    register_secret("canary-out-7f3a9c")
    out = Output(json_mode=True)
    out.plan("reindex-search", plan(), "dev", dry_run=False)
    out.error(UsageError("bad value canary-out-7f3a9c", hint="fix it"))
    out.result({"command": "reindex-search", "counts": {"n": 1}}, 2)
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert len(lines) == 1
    document = json.loads(lines[0])
    assert document["exit_code"] == 2 and document["ok"] is False and document["plan"]["what"]
    assert "canary-out-7f3a9c" not in captured.out + captured.err
