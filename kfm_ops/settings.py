"""Harness settings: one pydantic-settings model, env prefix ``KFM_``.

Sources, later wins: the secrets directory (``KFM_SECRETS_DIR``; one file per
variable, named like the variable, e.g. ``KFM_POSTGIS__PASSWORD``), the env file
(``KFM_ENV_FILE``, default ``.env``), the process environment, explicit overrides.

A service section left unset means "not configured": its checks skip with a
reason, unless ``require_all_services`` turns that into a failure.
"""

from __future__ import annotations

import difflib
import os
import re
import types
from collections.abc import Iterable
from pathlib import Path
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from kfm_ops.errors import UsageError
from kfm_ops.paths import anchored
from kfm_ops.redact import register_secrets
from kfm_ops.sections import (
    CacheSettings,
    CheckSettings,
    GraphSettings,
    HistorySettings,
    LlmSettings,
    MetricsSettings,
    PolicySettings,
    PostgisSettings,
    SearchSettings,
    ServiceSettings,
)

__all__ = ["SERVICES", "CacheSettings", "CheckSettings", "Environment", "GraphSettings", "HistorySettings",
           "LlmSettings", "MetricsSettings", "PolicySettings", "PostgisSettings", "SearchSettings", "ServiceSettings",
           "Settings", "load_settings"]

Environment = Literal["dev", "staging", "production"]
SERVICES = ("postgis", "graph", "search", "cache", "policy", "llm")


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The settings section model inside ``X | None``, if any."""
    options = get_args(annotation) if get_origin(annotation) in (Union, types.UnionType) else (annotation,)
    return next((o for o in options if isinstance(o, type) and issubclass(o, BaseModel)), None)


class _SecretsDirSource(EnvSettingsSource):
    """Reads ``KFM_*`` variables from one-file-per-variable secrets (Docker/Kubernetes style)."""

    def __init__(self, settings_cls: type[BaseSettings], directory: Path | None) -> None:
        self._directory = directory
        super().__init__(settings_cls)

    def _load_env_vars(self) -> dict[str, str | None]:
        if self._directory is None:
            return {}
        hint = "point KFM_SECRETS_DIR at a readable folder of KFM_* files, or unset it"
        try:
            entries = sorted(self._directory.iterdir())
        except OSError as exc:
            raise UsageError(f"KFM_SECRETS_DIR {self._directory}: cannot read it ({_reason(exc)})", hint=hint) from None
        return {path.name.lower(): _read_secret(path) for path in entries if path.name.upper().startswith("KFM_")}


SECRET_FILE_LIMIT = 64 * 1024  # a secret is short; more is a wrong file (a log, an image, a device)


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def _read_secret(path: Path) -> str:
    """The value in one secret file: a regular, readable, UTF-8 file (a FIFO or device would block or never end)."""
    hint = "one value per file, as UTF-8 text, named like its variable"
    if not path.is_file():
        raise UsageError(f"secret file {path}: not a regular file", hint=hint)
    try:
        with path.open("rb") as handle:
            data = handle.read(SECRET_FILE_LIMIT + 1)
    except OSError as exc:
        raise UsageError(f"secret file {path}: cannot read it ({_reason(exc)})", hint=hint) from None
    if len(data) > SECRET_FILE_LIMIT:
        raise UsageError(f"secret file {path}: longer than {SECRET_FILE_LIMIT // 1024} KiB", hint=hint)
    try:
        return data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise UsageError(f"secret file {path}: not UTF-8 text", hint=hint) from None


class Settings(BaseSettings):
    """Everything kfm-ops needs to know, from ``KFM_*`` variables."""

    model_config = SettingsConfigDict(
        env_prefix="KFM_",
        env_nested_delimiter="__",
        extra="ignore",
        case_sensitive=False,
    )

    environment: Environment | None = None  # actions refuse to run without it (no default environment)
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

    @property
    def environment_label(self) -> str:
        """The environment for logs, the check history and metrics labels: ``unset`` when none is configured."""
        return self.environment or "unset"

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
            _SecretsDirSource(settings_cls, anchored(secrets_dir) if secrets_dir else None),
        )

    @field_validator("log_file", mode="before")
    @classmethod
    def _log_file(cls, v: Any) -> Any:
        if isinstance(v, str) and not v.strip():
            raise ValueError("is empty; name a file, or unset it to log to stderr")
        if v is not None and anchored(v).is_dir():
            raise ValueError("is a folder; name a file in it")
        return v

    @field_validator("contracts_dir", "log_file")
    @classmethod
    def _anchored(cls, v: Path | None) -> Path | None:
        return anchored(v) if v is not None else None

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


_SECTIONS: dict[str, type[BaseModel]] = {
    name: model for name in (*SERVICES, "checks") if (model := _model_of(Settings.model_fields[name].annotation))
}


def _var(loc: Iterable[Any]) -> str:
    return "KFM_" + "__".join(str(p).upper() for p in loc)


def _shown(loc: tuple[Any, ...], value: Any) -> str:
    """`` (got 'x')`` for a number, a flag or a choice; nothing for anything else.

    A URL, a name, a secret or an unknown variable is never shown back: a mistyped or
    misplaced secret must not land in a terminal, a CI log or a report.
    """
    model: type[BaseModel] | None = Settings
    annotation: Any = None
    for part in loc:
        field = model.model_fields.get(str(part)) if model else None
        if field is None:
            return ""
        annotation = field.annotation
        model = _model_of(annotation)
    options = [a for a in get_args(annotation) if a is not type(None)] if get_origin(annotation) in (
        Union, UnionType) else [annotation]  # Environment | None is as plain as Environment
    plain = all(get_origin(a) is Literal or a in (int, float, bool) for a in options)
    if plain and isinstance(value, str | int | float) and re.fullmatch(r"[\w.+-]{0,24}", str(value)):
        return f" (got {str(value)!r})"
    return ""


def _one_by_one(section: str) -> str:
    """What to write instead of a whole section in one (JSON) variable."""
    model = _SECTIONS.get(section)
    own = [f for f in model.model_fields if f not in ServiceSettings.model_fields] if model else []
    names = ", ".join(_var((section, f)) for f in own[:3])
    return f"set the section's variables one by one ({names or _var((section, 'NAME'))}, …), not {_var((section,))}"


def _describe(error: Any) -> str:
    loc = tuple(error["loc"])
    var = _var(loc)
    if error["type"] == "extra_forbidden":
        section = _SECTIONS.get(str(loc[0])) if len(loc) == 2 else None
        known = list(section.model_fields) if section else []
        close = difflib.get_close_matches(str(loc[-1]).lower(), known, n=1, cutoff=0.6)
        return f"{var}: not a kfm-ops setting" + (f" (did you mean {_var((loc[0], close[0]))}?)" if close else "")
    if len(loc) == 1 and str(loc[0]) in _SECTIONS and error["type"] in ("model_type", "dict_type"):
        return f"{var}: {_one_by_one(str(loc[0]))}"
    msg = str(error["msg"]).removeprefix("Value error, ")
    if "{var}" in msg:  # a section-wide rule (the TLS files) names its own variables, never their values
        return msg.replace("{var}", var)
    return f"{var}: {msg}{_shown(loc, error.get('input'))}"


def _read_env_file(path: Path) -> None:
    """A settings file must be a readable UTF-8 text file; say which line is not."""
    hint = "fix KFM_ENV_FILE / --env-file / --kfm-env-file"
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"settings file {str(path)!r}: cannot read it ({_reason(exc)})", hint=hint) from None
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise UsageError(f"settings file {str(path)!r}: line {line} is not UTF-8 text", hint=hint) from None


def load_settings(env_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Build the settings, or raise :class:`UsageError` naming the bad variable."""
    if env_file is None:
        env_file = os.environ.get("KFM_ENV_FILE")
    if env_file is not None and not str(env_file).strip():
        raise UsageError("the settings file name (KFM_ENV_FILE / --env-file) is empty",
                         hint="name a file, or leave it out to read .env")
    named = str(env_file or ".env")
    env_file = anchored(named)
    if env_file.is_file():
        _read_env_file(env_file)
    elif named != ".env" or env_file.exists():
        what = "is not a regular file" if env_file.exists() else "does not exist"
        raise UsageError(f"settings file {named!r} {what}", hint="fix KFM_ENV_FILE / --env-file / --kfm-env-file")
    secrets_dir = os.environ.get("KFM_SECRETS_DIR")
    if secrets_dir is not None and not (secrets_dir.strip() and anchored(secrets_dir).is_dir()):
        raise UsageError(f"KFM_SECRETS_DIR {secrets_dir!r} is not a folder",
                         hint="point it at the folder of KFM_* secret files, or unset it")
    try:
        settings = Settings(_env_file=env_file, _env_file_encoding="utf-8", **overrides)
    except ValidationError as exc:
        problems = "; ".join(_describe(e) for e in exc.errors())
        raise UsageError(f"invalid settings: {problems}", hint="see README 'Configuration'") from None
    except SettingsError as exc:  # a section given as one (malformed JSON) variable
        field = re.search(r'field "(\w+)"', str(exc))
        name = field.group(1) if field else ""
        raise UsageError(f"invalid settings: {_var((name,)) if name else 'a KFM_* variable'}: {_one_by_one(name)}",
                         hint="see README 'Configuration'") from None
    register_secrets(settings.secret_values())
    return settings
