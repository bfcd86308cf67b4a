"""The sections of the settings: one per service (with its TLS files), the check thresholds, metrics, history.

:mod:`kfm_ops.settings` assembles them into ``Settings`` (``KFM_<SECTION>__<FIELD>``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from kfm_ops.paths import anchored
from kfm_ops.tls_settings import TlsSettings, dsn_sslmode, plaintext_scheme


def _check_url(value: str, schemes: tuple[str, ...], example: str) -> str:
    if not value.strip():
        raise ValueError(f"is empty; expected a URL like {example} (leave the variable unset if there is none)")
    parts = urlsplit(value)
    if parts.scheme not in schemes or not parts.hostname:
        raise ValueError(f"expected a URL like {example}")
    try:
        parts.port  # noqa: B018 — raises on a non-numeric port
    except ValueError as exc:
        raise ValueError(f"expected a URL like {example}") from exc
    return value


class ServiceSettings(TlsSettings):
    """What every service section has: timeouts in seconds, and its transport security (:class:`TlsSettings`)."""

    model_config = ConfigDict(extra="forbid")

    connect_timeout: float = Field(5.0, gt=0, le=300)
    query_timeout: float = Field(30.0, gt=0, le=3600)

    def secrets(self) -> list[str]:
        """Every secret of this section, including a password written into a URL."""
        found = [v.get_secret_value() for v in self.__dict__.values() if isinstance(v, SecretStr)]
        for value in self.__dict__.values():
            if isinstance(value, str) and "://" in value and (password := urlsplit(value).password):
                found.append(password)
        return found

    @property
    def where(self) -> str:
        """host:port of the service, for messages (never user-info)."""
        url = str(getattr(self, "url", None) or getattr(self, "dsn", ""))
        parts = urlsplit(url)
        host = parts.hostname or "?"
        return f"{host}:{parts.port}" if parts.port else host


class PostgisSettings(ServiceSettings):
    dsn: str
    password: SecretStr | None = None
    write_dsn: str | None = None
    write_password: SecretStr | None = None
    # heavy reads (the consistency streams, the rebuild and sync streams) from a streaming replica, as the
    # read role (its password: replica_password, else password); docs/scale.md, "Reading from a replica"
    replica_dsn: str | None = None
    replica_password: SecretStr | None = None
    # how long a run waits for the replica to replay what the primary had committed when it started; past
    # that, an action's watermark is the replica's last replayed commit, a check fails naming the lag
    replica_max_wait: float = Field(30.0, ge=0, le=3600)
    # `kfm-maint sync` reads what changed from logical replication slots named <change_slot>_<store>
    # (wal_level=logical, REPLICATION on the write role; kfm_ops/changes.py); unset: bucket digests only
    change_slot: str | None = Field(None, pattern=r"^[a-z0-9_]{1,50}$")

    @field_validator("dsn", "write_dsn", "replica_dsn")
    @classmethod
    def _dsn(cls, v: str | None) -> str | None:
        return None if v is None else _check_url(v, ("postgresql", "postgres"), "postgresql://user@host:5432/kfm")

    def plaintext_url(self) -> str:
        for name, dsn in (("DSN", self.dsn), ("WRITE_DSN", self.write_dsn), ("REPLICA_DSN", self.replica_dsn)):
            mode = dsn_sslmode(dsn or "")
            if mode in ("disable", "allow", "prefer"):
                return f"{{var}}__{name} says sslmode={mode}, which does not verify the server (drop it: the CA " \
                       "file makes it verify-full)"
        return ""


class GraphSettings(ServiceSettings):
    url: str
    username: str = "neo4j"
    password: SecretStr | None = None
    write_username: str | None = None  # actions only; unset: the check account (give checks a reader)
    write_password: SecretStr | None = None
    database: str = "neo4j"

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return _check_url(v, ("bolt", "neo4j", "bolt+s", "neo4j+s"), "bolt://host:7687")

    def plaintext_url(self) -> str:
        return plaintext_scheme(self.url, ("bolt", "neo4j"), "bolt+s:// or neo4j+s://")


class _HttpSettings(ServiceSettings):
    url: str

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return _check_url(v, ("http", "https"), "http://host:port").rstrip("/")

    def plaintext_url(self) -> str:
        return plaintext_scheme(self.url, ("http",), "https://")


class SearchSettings(_HttpSettings):
    username: str | None = None
    password: SecretStr | None = None
    write_username: str | None = None  # actions only; unset: the check account (give checks a reader)
    write_password: SecretStr | None = None
    verify_certs: bool = True
    # a yellow cluster (replica shards unassigned: redundancy lost) fails the health checks unless allowed
    allow_yellow: bool = False
    # how long a rebuild waits for its new index's replicas (green) before the alias swap
    green_timeout: float = Field(300.0, gt=0, le=86400)


class CacheSettings(ServiceSettings):
    url: str
    username: str | None = None
    password: SecretStr | None = None
    write_username: str | None = None
    write_password: SecretStr | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return _check_url(v, ("redis", "rediss"), "redis://host:6379/0")

    def plaintext_url(self) -> str:
        return plaintext_scheme(self.url, ("redis",), "rediss://")


class PolicySettings(_HttpSettings):
    token: SecretStr | None = None


class LlmSettings(_HttpSettings):
    flavour: Literal["openai", "ollama"] = "openai"
    model: str
    api_key: SecretStr | None = None
    latency_budget: float = Field(20.0, gt=0, le=600)


class CheckSettings(BaseModel):
    """Thresholds the checks compare against (the contract holds the shapes)."""

    model_config = {"extra": "forbid"}

    max_connection_ratio: float = Field(0.8, gt=0, le=1)
    max_query_seconds: float = Field(300, gt=0)
    max_idle_in_transaction_seconds: float = Field(60, gt=0)
    max_xid_age: int = Field(1_000_000_000, gt=0)
    max_replication_lag_seconds: float = Field(60, gt=0)
    max_slot_behind_mb: float = Field(1024, gt=0)  # WAL a logical slot keeps the server holding for it
    min_cache_hit_ratio: float = Field(0.9, ge=0, le=1)
    # the hit ratio is judged over a window (two samples this far apart), not since the last stats reset:
    # one bulk load leaves the cumulative ratio low for weeks on a healthy database
    hit_ratio_window_seconds: float = Field(3.0, gt=0, le=300)
    min_hit_ratio_blocks: int = Field(1_000, ge=0)  # below this many block accesses in the window it is noise
    max_lock_wait_seconds: float = Field(5.0, gt=0)  # shorter lock waits are normal
    max_freshness_lag_seconds: float = Field(3600, gt=0)
    # the content checks read at most about this many items per run: a larger catalog is read one id range per run,
    # the slice the clock points at (one per content_slice_seconds: an hourly schedule reads it all every N runs);
    # 0: the whole catalog every run (kfm_ops/content.py, scrub_slice)
    content_max_records: int = Field(20_000, ge=0)
    content_slice_seconds: float = Field(3600, gt=0)
    # a change whose transaction began up to this long before a sync's snapshot may have committed after it
    transaction_margin_seconds: float = Field(300, ge=0)
    max_redis_memory_ratio: float = Field(0.9, gt=0, le=1)
    # old-generation heap in use after collections: above this a node spends its time in GC, then trips breakers
    max_search_heap_ratio: float = Field(0.85, gt=0, le=1)
    first_n: int = Field(10, ge=1, le=1000)
    baseline_file: Path | None = None  # known failures (TOML): reported as known until their expiry

    @field_validator("baseline_file")
    @classmethod
    def _anchored(cls, v: Path | None) -> Path | None:
        return anchored(v) if v is not None else None


class MetricsSettings(BaseModel):
    """Prometheus output of check runs and actions (the textfile is a command-line option)."""

    model_config = {"extra": "forbid"}

    pushgateway_url: str | None = None  # push every run here (grouped by job and environment)
    job: str = Field("kfm-opschecks", pattern=r"^[A-Za-z0-9_.-]{1,64}$")  # the check runs' job and suite
    timeout: float = Field(10.0, gt=0, le=120)

    @field_validator("pushgateway_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if not v:  # set but empty: not configured (kfm-maint clears it for the pytest it starts)
            return None
        return _check_url(v, ("http", "https"), "http://pushgateway:9091").rstrip("/")

    def secrets(self) -> list[str]:
        password = urlsplit(self.pushgateway_url).password if self.pushgateway_url else None
        return [password] if password else []


class HistorySettings(BaseModel):
    """The check-run history in kfm_ops (written by ``kfm-maint check``, read by ``kfm-maint report``)."""

    model_config = {"extra": "forbid"}

    retention_days: int = Field(90, ge=1, le=3650)  # older runs are deleted when a run is recorded
    max_runs: int = Field(5000, ge=10, le=1_000_000)  # per environment and suite, newest kept
    flap_window: int = Field(10, ge=3, le=1000)  # runs in which a check that changes twice is flapping
    dsn: str | None = None  # a narrow role for the history writes; default: KFM_POSTGIS__WRITE_DSN
    password: SecretStr | None = None

    @field_validator("dsn")
    @classmethod
    def _dsn(cls, v: str | None) -> str | None:
        return v and _check_url(v, ("postgresql", "postgres"), "postgresql://user@host:5432/kfm")

    def secrets(self) -> list[str]:
        found = [self.password.get_secret_value()] if self.password else []
        if self.dsn and (password := urlsplit(self.dsn).password):
            found.append(password)
        return found
