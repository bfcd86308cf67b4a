"""kfm-maint's command-line contract: help everywhere, usage errors as one line with exit 2."""

from __future__ import annotations

import pytest

from tests.helpers import kfm_maint

COMMANDS = [[], ["check"], ["smoke"], ["report"], ["migrate"], ["sample-data"], ["sample-data", "init"], ["reindex"],
            ["cache"], ["cache", "rebuild"], ["user"], ["user", "create"]]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "kfm-maint")
def test_every_command_has_help(command: list[str]) -> None:
    proc = kfm_maint(*command, "--help")
    assert proc.returncode == 0, proc.stderr
    assert "usage: kfm-maint" in proc.stdout
    assert "--dry-run" in proc.stdout  # the global options are accepted after every command


@pytest.mark.parametrize(("args", "named"), [
    (["--bogus"], "--bogus"),
    (["reindex", "--targets", "search,nosuch"], "nosuch"),
    (["reindex", "--targets", ""], "''"),
    (["reindex", "--keep", "-3", "--targets", "search"], "-3"),
    (["reindex", "--keep", "many", "--targets", "search"], "many"),
    (["sample-data", "init", "--items", "0"], "0"),
    (["sample-data", "init", "--items", "99999999999"], "99999999999"),
    (["cache", "rebuild", "--targets", "stats,bogus"], "bogus"),
    (["--environment", "prod", "migrate"], "prod"),
    (["user", "create", "--username", "Bad Name!", "--role", "admin", "--dry-run"], "Bad Name!"),
    (["user", "create", "--username", "ok", "--role", "emperor"], "emperor"),
    (["nosuchcommand"], "nosuchcommand"),
])
def test_bad_arguments_exit_2_with_one_line_naming_the_value(args: list[str], named: str) -> None:
    proc = kfm_maint(*args)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    errors = [line for line in proc.stderr.splitlines() if line.startswith("kfm-maint: error:")]
    assert len(errors) == 1, proc.stderr
    assert named in errors[0]


def test_reindex_without_targets_is_a_usage_error() -> None:
    proc = kfm_maint("reindex")
    assert proc.returncode == 2
    assert "--targets" in proc.stderr


@pytest.mark.parametrize(("var", "value", "named"), [
    ("KFM_POSTGIS__DSN", "mysql://x@y/z", "KFM_POSTGIS__DSN"),
    ("KFM_GRAPH__URL", "not a url", "KFM_GRAPH__URL"),
    ("KFM_ENVIRONMENT", "prod", "KFM_ENVIRONMENT"),
    ("KFM_POSTGIS__CONNECT_TIMEOUT", "-1", "KFM_POSTGIS__CONNECT_TIMEOUT"),
    ("KFM_SEARCH__URL", "http://host:notaport", "KFM_SEARCH__URL"),
    ("KFM_CHECKS__FIRST_N", "0", "KFM_CHECKS__FIRST_N"),
])
def test_bad_settings_exit_2_naming_the_variable(var: str, value: str, named: str) -> None:
    proc = kfm_maint("migrate", "--dry-run", env={var: value})
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert named in proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_secret_setting_never_echoes_the_value() -> None:
    proc = kfm_maint("migrate", "--dry-run", env={"KFM_POSTGIS__PASSWORD": "", "KFM_POSTGIS__DSN": "nope-canary-x"})
    assert proc.returncode == 2
    assert "KFM_POSTGIS__DSN" in proc.stderr


def test_missing_env_file_is_a_usage_error() -> None:
    proc = kfm_maint("--env-file", "/nonexistent/kfm.env", "migrate", "--dry-run")
    assert proc.returncode == 2
    assert "/nonexistent/kfm.env" in proc.stderr
