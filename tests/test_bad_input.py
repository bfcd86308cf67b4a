"""Bad input: exit 2, one line on stderr naming it, only the JSON document on stdout, nothing attempted.

kfm-maint and a plain pytest session run in subprocesses, as an operator runs them. The settings
point PostgreSQL at a sentinel: a local listener that counts the connections it is offered, so
"validated before any work" is observed, not assumed. No service is needed.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CANARY = "canary-Bad-Input-5e1d"


@pytest.fixture
def sentinel() -> Iterator[tuple[int, Callable[[], int]]]:
    """(port, offered): a TCP listener that closes every connection; offered() stops it and counts them."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.1)
    accepted: list[int] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            accepted.append(1)
            conn.close()

    def offered() -> int:
        stop.set()
        thread.join()
        server.setblocking(False)
        while True:  # whatever is still in the backlog was offered too
            try:
                server.accept()[0].close()
            except BlockingIOError:
                return len(accepted)
            accepted.append(1)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], offered
    stop.set()
    server.close()


def _env(**extra: str) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("KFM_")}, **extra}


def _settings(tmp_path: Path, port: int, extra: str = "") -> Path:
    env_file = tmp_path / "kfm.env"
    env_file.write_text(f"KFM_POSTGIS__DSN=postgresql://kfm_reader@127.0.0.1:{port}/kfm\n"
                        f"KFM_POSTGIS__WRITE_DSN=postgresql://kfm_owner@127.0.0.1:{port}/kfm\n{extra}")
    return env_file


def _not_utf8(tmp_path: Path, port: int) -> tuple[list[str], dict[str, str]]:
    env_file = _settings(tmp_path, port)
    env_file.write_bytes(env_file.read_bytes() + b"KFM_ENVIRONMENT=\xff\xfe\n")
    return ["--env-file", str(env_file)], {}


def _secrets(tmp_path: Path, write: Callable[[Path], None]) -> dict[str, str]:
    folder = tmp_path / "secrets"
    folder.mkdir()
    write(folder / "KFM_POSTGIS__PASSWORD")
    return {"KFM_SECRETS_DIR": str(folder)}


def _under_a_file(tmp_path: Path) -> str:
    (tmp_path / "plain").write_text("")
    return str(tmp_path / "plain" / "out.json")  # its folder is a regular file: nothing can be written there


# (id, builder(tmp_path, port) -> (arguments, environment), what the one line must name)
CASES: list[tuple[str, Callable[[Path, int], tuple[list[str], dict[str, str]]], str]] = [
    ("binary secret file", lambda t, p: ([], _secrets(t, lambda f: f.write_bytes(b"\xff\xfe\x00" + CANARY.encode()))),
     "KFM_POSTGIS__PASSWORD"),
    ("unreadable secret file", lambda t, p: ([], _secrets(t, lambda f: f.symlink_to("/proc/self/mem"))),
     "KFM_POSTGIS__PASSWORD"),
    ("secret FIFO", lambda t, p: ([], _secrets(t, os.mkfifo)), "KFM_POSTGIS__PASSWORD"),
    ("missing secrets dir", lambda t, p: ([], {"KFM_SECRETS_DIR": str(t / "nope")}), "KFM_SECRETS_DIR"),
    ("settings file not UTF-8", _not_utf8, "kfm.env"),
    ("empty --env-file", lambda t, p: (["--env-file", ""], {}), "--env-file"),
    ("empty KFM_LOG_FILE", lambda t, p: ([], {"KFM_LOG_FILE": ""}), "KFM_LOG_FILE"),
    ("KFM_LOG_FILE a folder", lambda t, p: ([], {"KFM_LOG_FILE": str(t)}), "KFM_LOG_FILE"),
    ("KFM_LOG_FILE unwritable", lambda t, p: ([], {"KFM_LOG_FILE": _under_a_file(t)}), "KFM_LOG_FILE"),
    ("--json-report-file unwritable", lambda t, p: (["--json-report-file", _under_a_file(t)], {}),
     "--json-report-file"),
    ("--json-report-file a folder", lambda t, p: (["--json-report-file", str(t)], {}), "--json-report-file"),
    ("empty --json-report-file", lambda t, p: (["--json-report-file", ""], {}), "--json-report-file"),
    ("empty KFM_POSTGIS__DSN", lambda t, p: ([], {"KFM_POSTGIS__DSN": ""}), "KFM_POSTGIS__DSN"),
    ("empty KFM_POSTGIS__WRITE_DSN", lambda t, p: ([], {"KFM_POSTGIS__WRITE_DSN": ""}), "KFM_POSTGIS__WRITE_DSN"),
    ("mistyped secret name", lambda t, p: ([], {"KFM_POSTGIS__WRITE_PASS": CANARY}), "KFM_POSTGIS__WRITE_PASS"),
]


def _run(args: list[str], env: dict[str, str], *, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "maintenance.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


# `check` runs pytest in a child process: its own input is checked before the child starts.
CHECK_CASES = [c for c in CASES if c[0] in ("missing secrets dir", "KFM_LOG_FILE unwritable",
                                            "--json-report-file unwritable", "mistyped secret name")]
MATRIX = [(["migrate", "--dry-run"], *case) for case in CASES] + [(["check", "--", "-m", "smoke"], *case)
                                                                   for case in CHECK_CASES]


@pytest.mark.parametrize(("command", "build", "named"), [(c, b, n) for c, _, b, n in MATRIX],
                         ids=[f"{c[0]}: {i}" for c, i, _, _ in MATRIX])
def test_kfm_maint_bad_input_exits_2_in_one_line_before_any_work(
        tmp_path: Path, sentinel: tuple[int, Callable[[], int]], command: list[str],
        build: Callable[[Path, int], tuple[list[str], dict[str, str]]], named: str) -> None:
    port, offered = sentinel
    args, env = build(tmp_path, port)
    if "--env-file" not in args:
        args = ["--env-file", str(_settings(tmp_path, port)), *args]
    proc = _run(["--json", *args, *command], _env(**env))
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("kfm-maint: error:") and named in lines[0], proc.stderr
    document = json.loads(proc.stdout)  # stdout is exactly one JSON document
    assert document["exit_code"] == 2 and named in document["error"]["message"]
    assert CANARY not in proc.stdout + proc.stderr
    assert offered() == 0, "kfm-maint connected before it validated its input"


# The pytest face shares load_settings and the log with kfm-maint: a few of each kind.
PYTEST_CASES = [c for c in CASES if c[0] in ("binary secret file", "missing secrets dir", "settings file not UTF-8",
                                             "empty KFM_LOG_FILE", "KFM_LOG_FILE unwritable", "empty KFM_POSTGIS__DSN",
                                             "mistyped secret name")] + [
    ("empty KFM_ENV_FILE", lambda t, p: ([], {"KFM_ENV_FILE": ""}), "KFM_ENV_FILE"),
    ("--json-report-file unwritable", lambda t, p: (["--json-report", f"--json-report-file={_under_a_file(t)}"], {}),
     "--json-report-file"),
]


@pytest.mark.parametrize(("build", "named"), [(b, n) for _, b, n in PYTEST_CASES], ids=[i for i, _, _ in PYTEST_CASES])
def test_a_plain_pytest_session_reports_bad_input_as_a_usage_error(
        tmp_path: Path, sentinel: tuple[int, Callable[[], int]],
        build: Callable[[Path, int], tuple[list[str], dict[str, str]]], named: str) -> None:
    port, offered = sentinel
    args, env = build(tmp_path, port)
    env_file = args[1] if args[:1] == ["--env-file"] else str(_settings(tmp_path, port))
    args = [a for a in args if a != "--env-file" and a != env_file]
    pytest_args = ["opschecks", "--collect-only", "-q", "-p", "no:cacheprovider", *args]
    proc = subprocess.run([sys.executable, "-m", "pytest", *pytest_args], cwd=ROOT,
                          env=_env(**{"KFM_ENV_FILE": env_file, **env}), capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode == 4, (proc.stdout, proc.stderr)  # pytest's own usage-error code
    assert named in proc.stderr and "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    assert CANARY not in proc.stdout + proc.stderr
    assert offered() == 0, "the session connected before it validated its input"
