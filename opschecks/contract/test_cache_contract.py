"""The cache matches cache.json: the stats materialized view, summary keys with TTLs and fields, the meta hash."""

from __future__ import annotations

import pytest

from kfm_ops.pytest_plugin.assertions import expect
from kfm_ops.pytest_plugin.fixtures import ContractLoader
from kfm_ops.stores.cache import SCAN_COUNT, CacheStore, decode_summary, key_pattern
from kfm_ops.stores.postgis import PostgisStore

REBUILD_HINT = "run `kfm-maint cache rebuild`"
SCAN_MAX_KEYS = 100_000
"""Upper bound of summary keys one check run examines (the scan stays bounded)."""


@pytest.mark.smoke
@pytest.mark.risk("low")
@pytest.mark.covers("cache:view:*", "cache:view_column:*", "cache:unique_index:*")
def test_cache_matview_populated(postgis: PostgisStore, kfm_contract: ContractLoader) -> None:
    """Each contract materialized view exists, is populated, and has its unique index on the contract columns."""
    for view, spec in kfm_contract("cache")["materialized_views"].items():
        schema, name = view.split(".")
        where = postgis.where(f"materialized view {view}")
        rows = postgis.rows("SELECT ispopulated FROM pg_matviews WHERE schemaname = %s AND matviewname = %s",
                            (schema, name))
        expect(rows, f"materialized view {view} does not exist", where, hint="run `kfm-maint migrate`")
        expect(rows[0][0], f"materialized view {view} is not populated (created WITH NO DATA, never refreshed)",
               where, hint=REBUILD_HINT)
        columns = [r[0] for r in postgis.rows("SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) "
                                              "AND attnum > 0 AND NOT attisdropped ORDER BY attnum", (view,))]
        expect(columns == spec["columns"], f"columns {columns} differ from the contract {spec['columns']}", where,
               sorted(set(columns) ^ set(spec["columns"])), hint="run `kfm-maint migrate`")
        unique = postgis.rows("SELECT i.indisunique AND i.indisvalid FROM pg_index i "
                              "JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
                              "WHERE i.indrelid = to_regclass(%s) AND n.nspname = %s AND c.relname = %s",
                              (view, schema, spec["unique_index"]))
        expect(unique and unique[0][0], f"unique index {schema}.{spec['unique_index']} is missing or not unique: "
               "REFRESH MATERIALIZED VIEW CONCURRENTLY needs it", where, [spec["unique_index"]],
               hint="run `kfm-maint migrate`, then `kfm-maint cache rebuild`")


@pytest.mark.smoke
@pytest.mark.risk("low")
@pytest.mark.covers("cache:summary_key", "cache:summary_field:*", "cache:summary_ttl_seconds",
                    "cache:summary_ttl_min_seconds")
def test_cache_summary_keys(cache: CacheStore, kfm_contract: ContractLoader) -> None:
    """Every dataset summary key has a TTL within the contract bounds and all the contract fields (bounded SCAN)."""
    redis_contract = kfm_contract("cache")["redis"]
    pattern = key_pattern(redis_contract["summary_key"])
    ttl_min, ttl_max = redis_contract["summary_ttl_min_seconds"], redis_contract["summary_ttl_seconds"]
    fields = redis_contract["summary_fields"]
    where = cache.where(f"keys {pattern}")
    client = cache.client
    bad_ttl: list[str] = []
    bad_fields: list[str] = []
    seen = 0
    cursor = 0
    while True:
        cursor, keys = client.scan(cursor=cursor, match=pattern, count=SCAN_COUNT)
        keys = sorted(keys)[: max(0, SCAN_MAX_KEYS - seen)]
        seen += len(keys)
        if keys:
            pipe = client.pipeline(transaction=False)
            for key in keys:
                pipe.ttl(key)
                pipe.type(key)
            meta = pipe.execute()
            pipe = client.pipeline(transaction=False)
            kinds = meta[1::2]
            for key, kind in zip(keys, kinds, strict=True):
                if kind == "hash":
                    pipe.hgetall(key)
                elif kind == "string":
                    pipe.get(key)
                else:
                    pipe.type(key)  # neither hash nor JSON string: reported as lacking every field
            values = pipe.execute()
            for key, ttl, kind, value in zip(keys, meta[0::2], kinds, values, strict=True):
                if ttl == -2:
                    continue  # expired between SCAN and TTL
                if not ttl_min <= ttl <= ttl_max:
                    bad_ttl.append(f"{key} (TTL {'none' if ttl == -1 else ttl})")
                summary = decode_summary(kind, value)
                absent = fields if summary is None else [f for f in fields if f not in summary]
                if absent:
                    bad_fields.append(f"{key} ({kind}; missing {', '.join(absent)})")
        if cursor == 0 or seen >= SCAN_MAX_KEYS:
            break
    expect(not bad_ttl, f"{len(bad_ttl)} of {seen} summary keys have a TTL outside [{ttl_min}, {ttl_max}]s "
           "(stale summaries never expire)", where, bad_ttl, hint=REBUILD_HINT)
    expect(not bad_fields, f"{len(bad_fields)} of {seen} summary keys lack contract fields", where, bad_fields,
           hint=REBUILD_HINT)


@pytest.mark.smoke
@pytest.mark.risk("low")
@pytest.mark.covers("cache:meta_key", "cache:meta_field:*")
def test_cache_meta_hash(cache: CacheStore, kfm_contract: ContractLoader) -> None:
    """The cache meta hash (cache.json meta_key) exists with all its contract fields non-empty."""
    redis_contract = kfm_contract("cache")["redis"]
    key = redis_contract["meta_key"]
    where = cache.where(f"key {key}")
    kind = cache.client.type(key)
    expect(kind == "hash", f"{key} is {'missing' if kind == 'none' else 'a ' + kind + ', not a hash'}", where,
           hint=REBUILD_HINT)
    meta = cache.client.hgetall(key)
    absent = [f for f in redis_contract["meta_fields"] if not meta.get(f)]
    expect(not absent, f"{key} lacks {len(absent)} contract fields", where, absent, hint=REBUILD_HINT)
