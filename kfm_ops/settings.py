"""Harness settings: one pydantic-settings model, env prefix ``KFM_``.

Sources, later wins: the secrets directory (``KFM_SECRETS_DIR``; one file per
variable, named like the variable, e.g. ``KFM_POSTGIS__PASSWORD``), the env file
(``KFM_ENV_FILE``, default ``.env``), the process environment, explicit overrides.

A service section left unset means "not configured": its checks skip with a
reason, unless ``require_all_services`` turns that into a failure.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from kfm_ops.errors import UsageError
from kfm_ops.redact import register_secrets

Environment = Literal["dev", "staging", "production"]
SERVICES = ("postgis", "graph", "search", "cache", "policy", "llm")


def _check_url(value: str, schemes: tuple[str, ...], example: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in schemes or not parts.hostname:
        raise ValueError(f"expected a URL like {example}")
    try:
        parts.port  # noqa: B018 — raises on a non-numeric port
    except ValueError as exc:
        raise ValueError(f"expected a URL like {example}") from exc
    return value


class ServiceSettings(BaseModel):
    """What every service section has: timeouts in seconds."""

    model_config = {"extra": "forbid"}

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

    @field_validator("dsn", "write_dsn")
    @classmethod
    def _dsn(cls, v: str | None) -> str | None:
        return v and _check_url(v, ("postgresql", "postgres"), "postgresql://user@host:5432/kfm")


class GraphSettings(ServiceSettings):
    url: str
    username: str = "neo4j"
    password: SecretStr | None = None
    database: str = "neo4j"

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return _check_url(v, ("bolt", "neo4j", "bolt+s", "neo4j+s"), "bolt://host:7687")


class _HttpSettings(ServiceSettings):
    url: str

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return _check_url(v, ("http", "https"), "http://host:port").rstrip("/")


class SearchSettings(_HttpSettings):
    username: str | None = None
    password: SecretStr | None = None
    verify_certs: bool = True
    allow_yellow: bool = True


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
    min_cache_hit_ratio: float = Field(0.9, ge=0, le=1)
    min_hit_ratio_blocks: int = Field(10_000, ge=0)  # below this many block accesses the ratio is noise
    max_lock_wait_seconds: float = Field(5.0, gt=0)  # shorter lock waits are normal
    max_freshness_lag_seconds: float = Field(3600, gt=0)
    max_redis_memory_ratio: float = Field(0.9, gt=0, le=1)
    first_n: int = Field(10, ge=1, le=1000)
    baseline_file: Path | None = None  # known failures (TOML): reported as known until their expiry


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


class _SecretsDirSource(EnvSettingsSource):
    """Reads ``KFM_*`` variables from one-file-per-variable secrets (Docker/Kubernetes style)."""

    def __init__(self, settings_cls: type[BaseSettings], directory: Path | None) -> None:
        self._directory = directory
        super().__init__(settings_cls)

    def _load_env_vars(self) -> dict[str, str | None]:
        if not self._directory or not self._directory.is_dir():
            return {}
        found: dict[str, str | None] = {}
        for path in sorted(self._directory.iterdir()):
            if path.is_file() and path.name.upper().startswith("KFM_"):
                found[path.name.lower()] = path.read_text().strip()
        return found


class Settings(BaseSettings):
    """Everything kfm-ops needs to know, from ``KFM_*`` variables."""

    model_config = SettingsConfigDict(
        env_prefix="KFM_",
        env_nested_delimiter="__",
        extra="ignore",
        case_sensitive=False,
    )

    environment: Environment = "dev"
    require_all_services: bool = False
    contracts_dir: Path | None = None
    log_file: Path | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    actor: str = Field(default_factory=lambda: os.environ.get("USER") or os.environ.get("LOGNAME") or "unknown")

    postgis: PostgisSettings | None = None
    graph: GraphSettings | None = None
    search: SearchSettings | None = None
    cache: CacheSettings | None = None
    policy: PolicySettings | None = None
    llm: LlmSettings | None = None
    checks: CheckSettings = CheckSettings()
    metrics: MetricsSettings = MetricsSettings()
    history: HistorySettings = HistorySettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        secrets_dir = os.environ.get("KFM_SECRETS_DIR")
        return (
            init_settings,
            env_settings,
            dotenv_settings,
            _SecretsDirSource(settings_cls, Path(secrets_dir) if secrets_dir else None),
        )

    def section(self, service: str) -> ServiceSettings | None:
        if service not in SERVICES:
            raise UsageError(f"unknown service {service!r}", hint="known services: " + ", ".join(SERVICES))
        section: ServiceSettings | None = getattr(self, service)
        return section

    def configured(self) -> list[str]:
        return [name for name in SERVICES if getattr(self, name) is not None]

    def secret_values(self) -> list[str]:
        found = [s for name in SERVICES if (sec := getattr(self, name)) for s in sec.secrets()]
        return found + self.metrics.secrets() + self.history.secrets()


def _describe(error: Any) -> str:
    loc = [str(p) for p in error["loc"]]
    var = "KFM_" + "__".join(p.upper() for p in loc)
    msg = error["msg"].removeprefix("Value error, ")
    secret = any(p in {"password", "write_password", "token", "api_key"} for p in loc)
    got = "" if secret or "input" not in error or isinstance(error["input"], dict) else f" (got {error['input']!r})"
    return f"{var}: {msg}{got}"


def load_settings(env_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Build the settings, or raise :class:`UsageError` naming the bad variable."""
    env_file = env_file or os.environ.get("KFM_ENV_FILE") or ".env"
    if not Path(env_file).is_file() and env_file != ".env":
        raise UsageError(f"settings file {str(env_file)!r} does not exist", hint="fix KFM_ENV_FILE / --kfm-env-file")
    try:
        settings = Settings(_env_file=env_file, **overrides)
    except ValidationError as exc:
        problems = "; ".join(_describe(e) for e in exc.errors())
        raise UsageError(f"invalid settings: {problems}", hint="see README 'Configuration'") from None
    register_secrets(settings.secret_values())
    return settings
