"""The derived cache: Redis through redis-py. Checks log in as the read-only ACL user, actions as the owner.

Every command leaves through :meth:`_Redis.execute_command` or a pipeline's ``execute``:
that is the store's error boundary. The summary layout (keys, fields, the index set, the
meta hash) is the cache contract's; what the summaries hold is derived in
:mod:`kfm_ops.derive`.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import TYPE_CHECKING, Any, ClassVar, cast

import redis
from redis.client import Pipeline

from kfm_ops.errors import KfmError, ServiceError, UsageError
from kfm_ops.faults import PERMISSION, translate
from kfm_ops.identity import Identity
from kfm_ops.settings import CacheSettings
from kfm_ops.stores.base import Store

SCAN_COUNT = 500
"""COUNT hint of each SCAN step over the summary keys."""


if TYPE_CHECKING:  # redis-py's classes are generic only in its stubs
    _RedisBase = redis.Redis[str]
    _PipelineBase = Pipeline[str]
else:
    _RedisBase, _PipelineBase = redis.Redis, Pipeline


class _Redis(_RedisBase):
    """A client whose every command translates driver errors (the cache store's boundary)."""

    boundary: tuple[str, str] = ("cache", "?")

    def execute_command(self, *args: Any, **options: Any) -> Any:
        try:
            return super().execute_command(*args, **options)
        except KfmError:
            raise
        except Exception as exc:
            raise translate(exc, *self.boundary) from exc

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> _PipelineBase:
        pipe = _Pipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint)
        pipe.boundary = self.boundary
        return pipe


class _Pipeline(_PipelineBase):
    boundary: tuple[str, str] = ("cache", "?")

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        try:
            return super().execute(raise_on_error)
        except KfmError:
            raise
        except Exception as exc:
            raise translate(exc, *self.boundary) from exc


class CacheStore(Store[CacheSettings]):
    """A Redis client (strings decoded) for the read-only cache user, or the owner when ``write``."""

    service: ClassVar[str] = "cache"
    label: ClassVar[str] = "redis"

    def __init__(self, section: CacheSettings, *, write: bool = False) -> None:
        super().__init__(section, write=write)
        if write and not section.write_password:
            raise UsageError("cache write access needs KFM_CACHE__WRITE_PASSWORD",
                             hint="set the cache owner credentials")
        username = section.write_username if write else section.username
        secret = section.write_password if write else section.password
        tls: dict[str, Any] = {}
        if section.url.startswith("rediss:"):
            # verified, host name checked (options in the URL's query win: transport.py classes them)
            tls = {"ssl_cert_reqs": "required", "ssl_check_hostname": True,
                   "ssl_ca_certs": str(section.ca_file) if section.ca_file else None,
                   "ssl_certfile": str(section.client_cert) if section.client_cert else None,
                   "ssl_keyfile": str(section.client_key) if section.client_key else None}
        self.client = cast(_Redis, _Redis.from_url(
            section.url,
            **tls,
            username=username,
            password=secret.get_secret_value() if secret else None,
            socket_connect_timeout=section.connect_timeout,
            socket_timeout=section.query_timeout,
            decode_responses=True,
            client_name="kfm-ops",
        ))
        self.client.boundary = (self.service, self.address)

    def ping(self) -> None:
        self.client.ping()

    def version(self) -> str:
        return f"Redis {self.client.info('server')['redis_version']}"

    def close(self) -> None:
        self.client.close()

    def identity(self, key: str) -> Identity | None:
        """The deployment stamp in the identity hash, if there is one."""
        return Identity.from_fields(dict(self.client.hgetall(key)))

    def stamp(self, key: str, identity: Identity, run_id: str) -> None:
        """Write the deployment stamp (a hash without TTL), replacing any other in one MULTI/EXEC."""
        fields: dict[str | bytes, Any] = {"stamped_by": run_id}
        fields.update(identity.as_fields())
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(key)
        pipe.hset(key, mapping=fields)
        pipe.execute()

    def write_capable(self) -> str | None:
        """Why this user could write (a write command is allowed by its ACL), or None. Changes nothing:
        the probe deletes a key that does not exist."""
        try:
            self.client.delete(f"kfm:privilege-probe:{uuid.uuid4().hex}")
        except ServiceError as exc:
            if exc.fault == PERMISSION:
                return None
            raise
        return f"the user {self.client.acl_whoami()!r} may run write commands"

    # --- summaries (the cache contract's layout)
    def replace_summary(self, key: str, fields: dict[str | bytes, Any], ttl: int) -> None:
        """Replace one summary hash and its TTL atomically (MULTI/EXEC): readers see the old or the new."""
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(key)
        pipe.hset(key, mapping=fields)
        pipe.expire(key, ttl)
        pipe.execute()

    def swap_index(self, staging: str, index_key: str, members: bool) -> None:
        """Put the staging index set in place of the live one atomically (RENAME); no members: delete it."""
        if members:
            self.client.rename(staging, index_key)  # type: ignore[no-untyped-call]
        else:
            self.client.delete(index_key)

    def write_meta(self, meta_key: str, watermark: str, run_id: str) -> None:
        """Record a rebuild in the meta hash and bump its generation."""
        self.client.hset(meta_key, mapping={"watermark": watermark, "run_id": run_id,
                                            "built_at": str(int(time.time()))})
        self.client.hincrby(meta_key, "generation", 1)


def decode_summary(kind: str, raw: Any) -> dict[str, Any] | None:
    """A cache summary value as a dict (a Redis hash, or a JSON string); None if neither."""
    if kind == "hash":
        return dict(raw or {})
    if kind == "string":
        try:
            value = json.loads(raw)
        except (TypeError, ValueError):
            return None
        return value if isinstance(value, dict) else None
    return None


def key_pattern(template: str) -> str:
    """``kfm:summary:dataset:{dataset_id}`` → the SCAN pattern ``kfm:summary:dataset:*``."""
    return re.sub(r"\{[^}]+\}", "*", template)


def summary_key(template: str, dataset_id: str) -> str:
    """The summary key of one dataset: only ``{dataset_id}`` is substituted (no format-string access)."""
    return template.replace("{dataset_id}", dataset_id)
