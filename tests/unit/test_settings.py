"""Settings: sources, validation and secret hygiene (no services needed)."""

from __future__ import annotations

import os
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


# --- a settings error names the variable and the expected form, never the value -----------------

def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in [v for v in os.environ if v.startswith("KFM_")]:
        monkeypatch.delenv(var)


def _error(env: Path) -> str:
    with pytest.raises(UsageError) as caught:
        load_settings(env)
    return str(caught.value)


@pytest.mark.parametrize(("line", "named", "suggested"), [
    (f"KFM_POSTGIS__WRITE_PASS={CANARY}", "KFM_POSTGIS__WRITE_PASS", "KFM_POSTGIS__WRITE_PASSWORD"),
    (f"KFM_LLM__APIKEY={CANARY}", "KFM_LLM__APIKEY", "KFM_LLM__API_KEY"),
    (f"KFM_CACHE__PASWORD='{CANARY} with spaces'", "KFM_CACHE__PASWORD", "KFM_CACHE__PASSWORD"),
])
def test_a_mistyped_secret_name_is_named_and_its_value_never_echoed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, line: str, named: str, suggested: str) -> None:
    _clean_env(monkeypatch)
    env = tmp_path / "kfm.env"
    env.write_text("KFM_POSTGIS__DSN=postgresql://u@h:5432/kfm\nKFM_LLM__URL=http://h:8011\nKFM_LLM__MODEL=m\n"
                   "KFM_CACHE__URL=redis://h:6379/0\n" + line + "\n")
    message = _error(env)
    assert named in message and suggested in message
    assert CANARY not in message


def test_a_mistyped_secret_file_is_named_and_its_value_never_echoed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _clean_env(monkeypatch)
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "KFM_GRAPH__PASSWD").write_text(CANARY + "\n")
    env = tmp_path / "kfm.env"
    env.write_text("KFM_GRAPH__URL=bolt://h:7687\n")
    monkeypatch.setenv("KFM_SECRETS_DIR", str(secrets))
    message = _error(env)
    assert "KFM_GRAPH__PASSWD" in message and "KFM_GRAPH__PASSWORD" in message
    assert CANARY not in message


@pytest.mark.parametrize(("line", "named", "form"), [
    (f"KFM_POSTGIS__DSN=mysql://u:p@ss{CANARY}@h/z", "KFM_POSTGIS__DSN", "postgresql://"),
    (f"KFM_POSTGIS__WRITE_DSN=postgresql://u:{CANARY} x@h:port/z", "KFM_POSTGIS__WRITE_DSN", "postgresql://"),
    (f"KFM_CACHE__URL=http://:{CANARY}@h", "KFM_CACHE__URL", "redis://"),
    (f"KFM_POLICY__URL={CANARY}", "KFM_POLICY__URL", "http://"),
    (f"KFM_POSTGIS__REPLICA_DSN=mysql://u:{CANARY}@h/kfm", "KFM_POSTGIS__REPLICA_DSN", "postgresql://"),
    (f'KFM_POSTGIS={{"dsn": "postgresql://u:{CANARY}@h/k", "x"', "KFM_POSTGIS", "KFM_POSTGIS__DSN"),
    (f"KFM_CHECKS=[{CANARY}", "KFM_CHECKS", "KFM_CHECKS__"),
])
def test_a_bad_url_or_section_value_is_never_echoed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, line: str, named: str, form: str) -> None:
    _clean_env(monkeypatch)
    env = tmp_path / "kfm.env"
    own = line.startswith(("KFM_POSTGIS__DSN=", "KFM_POSTGIS="))
    env.write_text(("" if own else "KFM_POSTGIS__DSN=postgresql://u@h:5432/kfm\n") + line + "\n")
    message = _error(env)
    assert named in message and form in message
    assert CANARY not in message and "p@ss" not in message


def test_a_bad_number_or_choice_still_shows_what_it_got(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _clean_env(monkeypatch)
    env = tmp_path / "kfm.env"
    env.write_text("KFM_ENVIRONMENT=prod\nKFM_CHECKS__FIRST_N=lots\n")
    message = _error(env)
    assert "KFM_ENVIRONMENT" in message and "'prod'" in message
    assert "KFM_CHECKS__FIRST_N" in message and "'lots'" in message


# --- bad input is a usage error, never a silent fallback ------------------------------------------

@pytest.mark.parametrize("var", ["KFM_POSTGIS__DSN", "KFM_POSTGIS__WRITE_DSN", "KFM_GRAPH__URL", "KFM_CACHE__URL"])
def test_an_empty_url_setting_is_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, var: str) -> None:
    _clean_env(monkeypatch)
    env = tmp_path / "kfm.env"
    env.write_text("KFM_POSTGIS__DSN=postgresql://u@h:5432/kfm\nKFM_GRAPH__URL=bolt://h:7687\n"
                   f"KFM_CACHE__URL=redis://h:6379/0\n{var}=\n")
    message = _error(env)
    assert var in message and "empty" in message


@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_settings_file_name_is_a_usage_error(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    _clean_env(monkeypatch)
    with pytest.raises(UsageError, match="KFM_ENV_FILE"):
        load_settings(value)
    monkeypatch.setenv("KFM_ENV_FILE", value)
    with pytest.raises(UsageError, match="KFM_ENV_FILE"):
        load_settings()


def test_a_settings_file_that_is_not_utf8_is_named_with_its_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _clean_env(monkeypatch)
    env = tmp_path / "kfm.env"
    env.write_bytes(b"KFM_ENVIRONMENT=dev\nKFM_POSTGIS__PASSWORD=\xff\xfe" + CANARY.encode() + b"\n")
    message = _error(env)
    assert str(env) in message and "line 2" in message and "UTF-8" in message
    assert CANARY not in message


def test_a_missing_secrets_dir_is_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _clean_env(monkeypatch)
    env = tmp_path / "kfm.env"
    env.write_text("KFM_ENVIRONMENT=dev\n")
    monkeypatch.setenv("KFM_SECRETS_DIR", str(tmp_path / "nope"))
    assert "KFM_SECRETS_DIR" in _error(env)
    monkeypatch.setenv("KFM_SECRETS_DIR", str(env))  # a file, not a folder
    assert "KFM_SECRETS_DIR" in _error(env)
    monkeypatch.setenv("KFM_SECRETS_DIR", "")
    assert "KFM_SECRETS_DIR" in _error(env)


def _secret_entry(secrets: Path, kind: str) -> Path:
    path = secrets / "KFM_CACHE__PASSWORD"
    if kind == "binary":
        path.write_bytes(b"\xff\xfe\x00" + CANARY.encode())
    elif kind == "unreadable":
        path.symlink_to("/proc/self/mem")  # a regular file that even root cannot read()
    elif kind == "fifo":
        os.mkfifo(path)  # reading it would block for ever
    elif kind == "folder":
        path.mkdir()
    return path


@pytest.mark.parametrize("kind", ["binary", "unreadable", "fifo", "folder"])
def test_a_secret_file_that_cannot_be_used_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    _clean_env(monkeypatch)
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    entry = _secret_entry(secrets, kind)
    env = tmp_path / "kfm.env"
    env.write_text("KFM_CACHE__URL=redis://h:6379/0\n")
    monkeypatch.setenv("KFM_SECRETS_DIR", str(secrets))
    message = _error(env)
    assert str(entry) in message
    assert CANARY not in message


@pytest.mark.parametrize("value", ["", "folder"])
def test_a_log_file_that_is_empty_or_a_folder_is_a_usage_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    _clean_env(monkeypatch)
    env = tmp_path / "kfm.env"
    env.write_text(f"KFM_LOG_FILE={tmp_path if value == 'folder' else ''}\n")
    assert "KFM_LOG_FILE" in _error(env)


def test_the_replica_password_is_a_secret_and_defaults_to_the_readers(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    _clean_env(monkeypatch)
    env = tmp_path / "kfm.env"
    env.write_text("KFM_POSTGIS__DSN=postgresql://u@h:5432/kfm\nKFM_POSTGIS__REPLICA_DSN=postgresql://u@r:5433/kfm\n"
                   f"KFM_POSTGIS__REPLICA_PASSWORD={CANARY}\n")
    settings = load_settings(env)
    assert settings.postgis is not None and settings.postgis.replica_max_wait == 30
    assert CANARY in settings.secret_values() and CANARY not in repr(settings)
    assert CANARY not in redact(f"replica login failed: {CANARY}")
