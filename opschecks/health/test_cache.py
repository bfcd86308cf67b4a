"""Redis health: ping, eviction policy and memory against the contract, no evictions.

Everything is read from INFO: the read-only cache user is not allowed CONFIG GET.
"""

from __future__ import annotations

import pytest

from kfm_ops.pytest_plugin.assertions import expect
from kfm_ops.pytest_plugin.fixtures import ContractLoader
from kfm_ops.settings import Settings
from kfm_ops.stores.cache import CacheStore


@pytest.mark.smoke
@pytest.mark.risk("low")
def test_cache_ping(cache: CacheStore) -> None:
    """Redis answers PING."""
    expect(cache.client.ping() is True, "PING did not return PONG", cache.where(),
           hint="check the Redis server and the KFM_CACHE__* credentials")


@pytest.mark.smoke
@pytest.mark.risk("low")
@pytest.mark.covers("cache:maxmemory_policy")
def test_cache_eviction_policy(cache: CacheStore, kfm_contract: ContractLoader) -> None:
    """maxmemory-policy (INFO memory) is one the cache contract allows."""
    allowed = kfm_contract("cache")["redis"]["maxmemory_policy"]
    policy = cache.client.info("memory")["maxmemory_policy"]
    expect(policy in allowed, f"maxmemory-policy is {policy}, not one of {', '.join(allowed)}", cache.where(),
           hint=f"CONFIG SET maxmemory-policy {allowed[0]} (and persist it in redis.conf)")


@pytest.mark.smoke
@pytest.mark.risk("low")
def test_cache_memory_ratio(cache: CacheStore, kfm_settings: Settings) -> None:
    """used_memory stays below max_redis_memory_ratio of maxmemory (of system memory when unlimited)."""
    where = cache.where()
    info = cache.client.info("memory")
    used = int(info["used_memory"])
    limit = int(info.get("maxmemory") or 0)
    basis = "maxmemory"
    if limit == 0:
        limit, basis = int(info.get("total_system_memory") or 0), "system memory (maxmemory unset)"
    expect(limit > 0, "neither maxmemory nor total_system_memory is reported", where,
           hint="set maxmemory in redis.conf")
    ratio = used / limit
    maximum = kfm_settings.checks.max_redis_memory_ratio
    expect(ratio <= maximum, f"memory use {used} B is {ratio:.0%} of {basis} {limit} B, above {maximum:.0%}",
           where, hint="raise maxmemory or run `kfm-maint cache rebuild` to drop stale summaries")


@pytest.mark.smoke
@pytest.mark.risk("low")
def test_cache_no_evictions(cache: CacheStore) -> None:
    """No key has been evicted for lack of memory (INFO stats evicted_keys == 0)."""
    evicted = int(cache.client.info("stats")["evicted_keys"])
    expect(evicted == 0, f"{evicted} keys were evicted since the stats were last reset", cache.where(),
           hint="raise maxmemory; then `kfm-maint cache rebuild` (evicted summaries are missing) "
           "and CONFIG RESETSTAT")
