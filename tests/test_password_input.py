"""`kfm-maint user create` reads a password of at most 4 KiB, from a regular file or stdin, and never echoes it.

Each run is a real kfm-maint process with its memory capped, and the call has a timeout: an
unbounded read (``/dev/zero``) or a blocking one (a FIFO nobody writes) fails the test by
running out of memory or time instead of taking the machine with it. The password is read
before anything connects (the settings point at a port nothing listens on).
"""

from __future__ import annotations

import io
import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import IO

import pytest

from kfm_ops.errors import UsageError
from maintenance.actions.users import MAX_PASSWORD, UserCreate

ROOT = Path(__file__).resolve().parents[2]
CANARY = "pw-canary-3b7e"


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))


def _user_create(tmp_path: Path, *args: str, stdin: IO[bytes] | int | None = subprocess.DEVNULL,
                 input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:  # noqa: A002
    env_file = tmp_path / "kfm.env"
    env_file.write_text("KFM_POSTGIS__DSN=postgresql://u@127.0.0.1:9/kfm\n"
                        "KFM_POSTGIS__WRITE_DSN=postgresql://u@127.0.0.1:9/kfm\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KFM_")}
    return subprocess.run([sys.executable, "-m", "maintenance.cli", "--env-file", str(env_file), "user", "create",
                           "--username", "ana", "--role", "operator", "--dry-run", *args], cwd=ROOT, env=env,
                          stdin=stdin, input=input, capture_output=True, timeout=30, preexec_fn=_cap_memory,
                          check=False)


def _refused(proc: subprocess.CompletedProcess[bytes], flag: str) -> str:
    stderr = proc.stderr.decode(errors="replace")
    assert proc.returncode == 2, (proc.stdout, stderr)
    lines = stderr.splitlines()
    assert len(lines) == 1 and flag in lines[0], stderr
    assert CANARY.encode() not in proc.stdout + proc.stderr
    return lines[0]


def test_a_device_as_password_file_is_refused(tmp_path: Path) -> None:
    assert "not a regular file" in _refused(_user_create(tmp_path, "--password-file", "/dev/zero"), "--password-file")


def test_a_fifo_as_password_file_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pw.fifo"
    os.mkfifo(fifo)
    assert "not a regular file" in _refused(_user_create(tmp_path, "--password-file", str(fifo)), "--password-file")


def test_an_over_long_password_file_is_refused_and_not_echoed(tmp_path: Path) -> None:
    path = tmp_path / "pw"
    path.write_text(CANARY * (MAX_PASSWORD // len(CANARY) + 1))
    assert "4 KiB" in _refused(_user_create(tmp_path, "--password-file", str(path)), "--password-file")


def test_an_endless_stdin_is_read_no_further_than_the_limit(tmp_path: Path) -> None:
    with open("/dev/zero", "rb") as zero:
        assert "4 KiB" in _refused(_user_create(tmp_path, "--password-stdin", stdin=zero), "--password-stdin")


def test_an_over_long_stdin_line_is_refused_and_not_echoed(tmp_path: Path) -> None:
    line = (CANARY * (MAX_PASSWORD // len(CANARY) + 1) + "\n").encode()
    _refused(_user_create(tmp_path, "--password-stdin", stdin=None, input=line), "--password-stdin")


def test_a_password_of_the_limit_is_read_from_stdin_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    password = "p" * MAX_PASSWORD
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(password.encode() + b"\nnext line\n")))
    assert UserCreate(username="ana", role="operator", password_stdin=True).password == password
    path = tmp_path / "pw"
    path.write_text(password + "\n")
    assert UserCreate(username="ana", role="operator", password_file=str(path)).password == password


def test_a_password_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "pw"
    path.write_bytes(b"\xff\xfe" + CANARY.encode())
    with pytest.raises(UsageError, match="--password-file") as caught:
        UserCreate(username="ana", role="operator", password_file=str(path))
    assert CANARY not in str(caught.value)


def test_an_unwritable_password_out_is_refused_before_connecting(tmp_path: Path) -> None:
    """A generated password's file is an output path: checked before anything connects (else: exit 4)."""
    (tmp_path / "plain").write_text("")
    proc = _user_create(tmp_path, "--password-out", str(tmp_path / "plain" / "pw"))
    assert "cannot write" in _refused(proc, "--password-out")
