"""Property-based fuzzing of kfm-maint's arguments and of the settings.

Whatever the input: no traceback, the usage exit code (2) with a one-line message
naming the bad value, and nothing written — every run points every service at a
closed port and carries --dry-run, so even a valid command cannot write.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kfm_ops.errors import UsageError
from kfm_ops.settings import load_settings
from maintenance.cli import main

CLOSED = {"KFM_POSTGIS__DSN": "postgresql://kfm_reader@127.0.0.1:1/kfm",
          "KFM_POSTGIS__WRITE_DSN": "postgresql://kfm_owner@127.0.0.1:1/kfm",
          "KFM_GRAPH__URL": "bolt://127.0.0.1:1", "KFM_SEARCH__URL": "http://127.0.0.1:1",
          "KFM_CACHE__URL": "redis://127.0.0.1:1/0", "KFM_POLICY__URL": "http://127.0.0.1:1",
          "KFM_LLM__URL": "http://127.0.0.1:1", "KFM_POSTGIS__CONNECT_TIMEOUT": "1"}

text = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40)
WORDS = ["check", "smoke", "migrate", "sample-data", "init", "reindex", "rollback", "cache", "rebuild", "user",
         "create", "--targets", "--items", "--seed", "--keep", "--username", "--role", "--environment",
         "--confirm", "--json", "--prune", "--force", "search", "graph", "stats", "summaries", "production",
         "PRODUCTION", "-1", "0", "99999999999999", "1e3", ""]
argv = st.lists(st.one_of(st.sampled_from(WORDS), text), max_size=8)


@pytest.fixture(autouse=True)
def _closed_services(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in CLOSED.items():
        monkeypatch.setenv(name, value)


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main([*args, "--dry-run", "--no-verify"])
    except SystemExit as exc:  # argparse's own --help / --version
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(args=argv)
def test_any_arguments_end_cleanly(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    if any(a in ("check", "smoke") for a in args):
        args = [a for a in args if a not in ("check", "smoke")]  # those run pytest: covered elsewhere
    code, out, err = _run(args, capsys)
    assert "Traceback" not in out + err
    assert code in (0, 2, 3, 4), (args, code, err)
    if code == 2:
        errors = [line for line in err.splitlines() if line.startswith("kfm-maint: error:")]
        assert len(errors) == 1, err


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=text.filter(lambda v: v.strip() and not set(v.split(",")) <= {"search", "graph"}))
def test_unknown_targets_are_named(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = _run(["reindex", f"--targets={value}"], capsys)  # "=": a value may start with "-"
    assert code == 2, err
    bad = [t.strip() for t in value.split(",") if t.strip() and t.strip() not in ("search", "graph")]
    assert not bad or repr(bad[0]) in err


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(number=st.one_of(st.integers(max_value=0), st.integers(min_value=5_000_001)))
def test_out_of_range_item_counts_are_named(number: int, capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = _run(["sample-data", "init", "--items", str(number)], capsys)
    assert code == 2 and str(number) in err, err


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=text.filter(lambda v: v not in ("dev", "staging", "production")))
def test_unknown_environments_are_named(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = _run(["--environment", name, "migrate"], capsys)
    assert code == 2, err
    assert "--environment" in err


SETTINGS = ["KFM_POSTGIS__DSN", "KFM_GRAPH__URL", "KFM_SEARCH__URL", "KFM_CACHE__URL", "KFM_ENVIRONMENT",
            "KFM_POSTGIS__CONNECT_TIMEOUT", "KFM_CHECKS__FIRST_N", "KFM_LLM__FLAVOUR", "KFM_REQUIRE_ALL_SERVICES"]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(SETTINGS), value=text)
def test_any_setting_value_is_accepted_or_named(name: str, value: str) -> None:
    with pytest.MonkeyPatch.context() as patch:  # one example's variable must not leak into the next
        patch.setenv(name, value)
        try:
            load_settings()
        except UsageError as exc:
            assert name in str(exc)
