"""Settings: sources, validation and secret hygiene (no services needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kfm_ops.errors import UsageError
from kfm_ops.redact import redact
from kfm_ops.settings import load_settings

CANARY = "canary-Secret-7f3a9c"


def test_secrets_are_not_in_repr(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env = tmp_path / "kfm.env"
    env.write_text(f"KFM_POSTGIS__DSN=postgresql://u@h:5432/kfm\nKFM_POSTGIS__PASSWORD={CANARY}\n")
    settings = load_settings(env)
    assert settings.postgis is not None
    assert settings.postgis.password is not None
    assert settings.postgis.password.get_secret_value() == CANARY
    assert CANARY not in repr(settings)
    assert CANARY not in str(settings.model_dump())


def test_password_inside_a_dsn_is_registered_and_masked(tmp_path: Path) -> None:
    env = tmp_path / "kfm.env"
    env.write_text(f"KFM_POSTGIS__DSN=postgresql://u:{CANARY}x@h:5432/kfm\n")
    load_settings(env)
    assert CANARY not in redact(f"connect failed for {CANARY}x")


def test_unset_service_is_not_configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("KFM_POSTGIS__DSN", "KFM_GRAPH__URL"):
        monkeypatch.delenv(var, raising=False)
    env = tmp_path / "kfm.env"
    env.write_text("KFM_ENVIRONMENT=staging\n")
    settings = load_settings(env)
    assert settings.environment == "staging"
    assert settings.postgis is None
    assert "postgis" not in settings.configured()


def test_secrets_dir_supplies_variables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "KFM_CACHE__PASSWORD").write_text(CANARY + "\n")
    env = tmp_path / "kfm.env"
    env.write_text("KFM_CACHE__URL=redis://127.0.0.1:6379/0\n")
    monkeypatch.setenv("KFM_SECRETS_DIR", str(secrets))
    monkeypatch.delenv("KFM_CACHE__PASSWORD", raising=False)
    settings = load_settings(env)
    assert settings.cache is not None and settings.cache.password is not None
    assert settings.cache.password.get_secret_value() == CANARY


def test_invalid_value_names_variable_and_form(tmp_path: Path) -> None:
    env = tmp_path / "kfm.env"
    env.write_text("KFM_CACHE__URL=http://wrong\n")
    with pytest.raises(UsageError) as caught:
        load_settings(env)
    assert "KFM_CACHE__URL" in str(caught.value)
    assert "redis://" in str(caught.value)
