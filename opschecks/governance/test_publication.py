"""Publication rules: STAC gate, provenance completeness, dataset licensing, audit ledger."""

from __future__ import annotations

import pytest

from kfm_ops.pipeline import chunks
from kfm_ops.pytest_plugin.assertions import expect, first_n
from kfm_ops.pytest_plugin.fixtures import ContractLoader
from kfm_ops.stores.policy import ItemGate, PolicyStore
from kfm_ops.stores.postgis import PUBLISHED_DATASETS, PUBLISHED_ITEMS, PostgisStore

GATE_BATCH = 500


@pytest.mark.risk("medium")
@pytest.mark.covers("policy:item_gate.*")
def test_published_items_pass_stac_gate(postgis: PostgisStore, policy: PolicyStore,
                                       kfm_contract: ContractLoader) -> None:
    """Every published item passes the STAC item gate of the live OPA policy (where and how: policy.json)."""
    gate = ItemGate.of(kfm_contract("policy"))
    denied: list[str] = []
    reasons: set[str] = set()
    checked = 0
    items = postgis.stream(f"SELECT id, stac FROM {PUBLISHED_ITEMS} ORDER BY id", batch=GATE_BATCH)
    for rows in chunks(items, GATE_BATCH):
        decisions = policy.decide_all(gate, rows)
        if not checked and gate.batch is not None:  # the single-item gate (its input shape) is the batch's twin
            item_id, stac = rows[0]
            alone = policy.decide(gate, stac)
            expect(alone.allow == decisions[item_id].allow,
                   f"the gate's single-item decision ({'allow' if alone.allow else 'deny'}) disagrees with its batch "
                   f"on {item_id}: policy.json item_gate names input {gate.input_key!r}, allow {gate.allow_key!r}, "
                   f"deny {gate.deny_key!r}", policy.where("data." + gate.decision.replace("/", ".")), [item_id],
                   hint="make policy.json item_gate match how the deployed bundle reads its input and answers")
        for item_id, decision in decisions.items():
            if not decision.allow:
                denied.append(item_id)
                reasons.update(decision.deny[:3])
        checked += len(rows)
    expect(checked > 0, "no published items to check", postgis.where("kfm.items"),
           hint="load the catalog (dev: kfm-maint sample-data init)")
    expect(not denied, f"{len(denied)} of {checked} published items fail the STAC gate "
           f"({'; '.join(sorted(reasons)[:5])})", policy.where(gate.document),
           denied, "fix the items in the pipelines and re-publish; the gate is in kfm_ops/contracts/policy")


def _offenders(postgis: PostgisStore, sql: str) -> tuple[list[str], int]:
    """The first N offenders a query finds, and how many there are in all (one round trip)."""
    rows = postgis.rows(f"SELECT x, count(*) OVER () FROM ({sql}) AS q(x) ORDER BY x LIMIT %s", (first_n(),))
    return [r[0] for r in rows], (rows[0][1] if rows else 0)


UNGENERATED_SQL = f"""
SELECT i.id FROM {PUBLISHED_ITEMS} i
WHERE NOT EXISTS (SELECT 1 FROM kfm.prov_links l JOIN kfm.prov_activities a ON a.id = l.object
                  WHERE l.subject = i.id AND l.relation = 'wasGeneratedBy')
"""


@pytest.mark.smoke
@pytest.mark.risk("low")
def test_published_items_were_generated_by_an_activity(postgis: PostgisStore) -> None:
    """Every published item has a wasGeneratedBy link to an existing PROV activity."""
    ids, total = _offenders(postgis, UNGENERATED_SQL)
    expect(not total, "published items without a generating PROV activity",
           postgis.where("kfm.prov_links (wasGeneratedBy)"), ids,
           "provenance comes from the pipelines: re-run the item's pipeline to record it", total=total)


DANGLING_SQL = """
SELECT l.relation || ' ' || l.subject || ' -> ' || l.object FROM kfm.prov_links l
WHERE NOT EXISTS (SELECT 1 FROM kfm.items e WHERE e.id = l.subject)
  AND NOT EXISTS (SELECT 1 FROM kfm.datasets e WHERE e.id = l.subject)
  AND NOT EXISTS (SELECT 1 FROM kfm.prov_activities e WHERE e.id = l.subject)
   OR (l.relation IN ('wasDerivedFrom', 'used')
       AND NOT EXISTS (SELECT 1 FROM kfm.items e WHERE e.id = l.object)
       AND NOT EXISTS (SELECT 1 FROM kfm.datasets e WHERE e.id = l.object))
   OR (l.relation = 'wasGeneratedBy' AND NOT EXISTS (SELECT 1 FROM kfm.prov_activities e WHERE e.id = l.object))
"""


@pytest.mark.smoke
@pytest.mark.risk("low")
def test_no_dangling_provenance(postgis: PostgisStore) -> None:
    """Every PROV link joins existing entities and activities (wasDerivedFrom, used, wasGeneratedBy)."""
    links, total = _offenders(postgis, DANGLING_SQL)
    expect(not total, f"{total} PROV links point at entities that do not exist", postgis.where("kfm.prov_links"),
           links, "fix the provenance records in the pipelines (kfm-ops never edits the canonical store)",
           total=total)


@pytest.mark.smoke
@pytest.mark.risk("low")
def test_published_datasets_have_license_and_publisher(postgis: PostgisStore) -> None:
    """Every published dataset names a license and a publisher."""
    rows = postgis.rows(f"SELECT id FROM {PUBLISHED_DATASETS} "
                        "WHERE coalesce(btrim(license), '') = '' OR coalesce(btrim(publisher), '') = '' ORDER BY id")
    expect(not rows, "published datasets without a license or publisher", postgis.where("kfm.datasets"),
           [r[0] for r in rows], "add the DCAT license/publisher in the catalog pipeline, or unpublish the dataset")


@pytest.mark.smoke
@pytest.mark.risk("low")
@pytest.mark.covers("postgis:state:kfm_ops.audit_ledger")
def test_every_maintenance_run_has_an_end_record(postgis: PostgisStore) -> None:
    """No audit-ledger run is left without an end record (except runs still alive)."""
    rows = postgis.rows(
        "SELECT l.run_id::text || ' (' || l.action || ', started ' || l.started_at || ')' "
        "FROM kfm_ops.audit_ledger l WHERE l.ended_at IS NULL AND NOT EXISTS ("
        "  SELECT 1 FROM pg_stat_activity a WHERE a.application_name LIKE 'kfm-maint/' || l.run_id || '/%') "
        "ORDER BY l.started_at")
    expect(not rows, "maintenance runs without an end record (killed mid-run?)", postgis.where("kfm_ops.audit_ledger"),
           [r[0] for r in rows],
           "the next run of any kfm-maint action marks them aborted; check what they left with `kfm-maint check`")
