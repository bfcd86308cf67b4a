"""Redis health: ping, eviction policy and memory against the contract, no evictions.

Everything is read from INFO: the read-only cache user is not allowed CONFIG GET.
"""

from __future__ import annotations

from typing import Any

import pytest

from kfm_ops.checks_support import call, expect


def _where(kfm_settings: Any) -> str:
    return f"redis {kfm_settings.cache.where}"


@pytest.mark.smoke
@pytest.mark.risk("low")
def test_cache_ping(cache: Any, kfm_settings: Any) -> None:
    """Redis answers PING."""
    where = _where(kfm_settings)
    expect(call("PING failed", where, cache.ping) is True, "PING did not return PONG", where,
           hint="check the Redis server and the KFM_CACHE__* credentials")


@pytest.mark.smoke
@pytest.mark.risk("low")
def test_cache_eviction_policy(cache: Any, kfm_settings: Any, kfm_contract: Any) -> None:
    """maxmemory-policy (INFO memory) is one the cache contract allows."""
    where = _where(kfm_settings)
    allowed = kfm_contract("cache")["redis"]["maxmemory_policy"]
    policy = call("INFO memory failed", where, cache.info, "memory")["maxmemory_policy"]
    expect(policy in allowed, f"maxmemory-policy is {policy}, not one of {', '.join(allowed)}", where,
           hint=f"CONFIG SET maxmemory-policy {allowed[0]} (and persist it in redis.conf)")


@pytest.mark.smoke
@pytest.mark.risk("low")
def test_cache_memory_ratio(cache: Any, kfm_settings: Any) -> None:
    """used_memory stays below max_redis_memory_ratio of maxmemory (of system memory when unlimited)."""
    where = _where(kfm_settings)
    info = call("INFO memory failed", where, cache.info, "memory")
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
def test_cache_no_evictions(cache: Any, kfm_settings: Any) -> None:
    """No key has been evicted for lack of memory (INFO stats evicted_keys == 0)."""
    where = _where(kfm_settings)
    evicted = int(call("INFO stats failed", where, cache.info, "stats")["evicted_keys"])
    expect(evicted == 0, f"{evicted} keys were evicted since the stats were last reset", where,
           hint="raise maxmemory; then `kfm-maint cache rebuild` (evicted summaries are missing) "
           "and CONFIG RESETSTAT")
