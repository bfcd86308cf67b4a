"""Redis via redis-py. Checks use the read-only ACL user; actions the write user."""

from __future__ import annotations

import redis

from kfm_ops.errors import UsageError
from kfm_ops.settings import CacheSettings


def open(section: CacheSettings, *, write: bool) -> redis.Redis:  # noqa: A001
    if write and not section.write_password:
        raise UsageError("cache write access needs KFM_CACHE__WRITE_PASSWORD", hint="set the cache owner credentials")
    username = section.write_username if write else section.username
    secret = section.write_password if write else section.password
    return redis.Redis.from_url(
        section.url,
        username=username,
        password=secret.get_secret_value() if secret else None,
        socket_connect_timeout=section.connect_timeout,
        socket_timeout=section.query_timeout,
        decode_responses=True,
        client_name="kfm-ops",
    )


def ping(client: redis.Redis) -> None:
    client.ping()


def version(client: redis.Redis) -> str:
    return f"Redis {client.info('server')['redis_version']}"


def close(client: redis.Redis) -> None:
    client.close()
