"""``kfm-maint user create``: idempotent upsert of an operator account (argon2 hashes).

The password comes from an environment variable, the first line of stdin or a regular
file (at most 4 KiB: nothing more is read), or is generated and written to a new 0600
file whose path is printed. It is never printed, logged, put in the plan, the report or
the ledger.
"""

from __future__ import annotations

import os
import re
import secrets
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerifyMismatchError

from kfm_ops.errors import ActionRefused, UsageError
from kfm_ops.hub import ServiceHub
from kfm_ops.paths import writable
from kfm_ops.redact import register_secret
from kfm_ops.stores.postgis import PostgisStore
from maintenance.action import Plan, RunContext

USERNAME = re.compile(r"^[a-z][a-z0-9_.-]{1,62}$")
MIN_PASSWORD = 12
MAX_PASSWORD = 4096  # bytes; one more is read to tell "too long" from "just fits"


def password_hasher() -> PasswordHasher:
    """Argon2id with pinned parameters: a library upgrade must not change what a new hash costs.

    RFC 9106's second recommended option (section 4, for hosts where 2 GiB per hash is too much):
    t=3 passes over m=64 MiB with p=4 lanes, a 16-byte salt, a 32-byte tag — above OWASP's
    floor for argon2id (m=19 MiB, t=2, p=1).
    """
    return PasswordHasher(time_cost=3, memory_cost=64 * 1024, parallelism=4, hash_len=32, salt_len=16, type=Type.ID)


def _decoded(data: bytes, flag: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{flag}: the password is not UTF-8 text") from None


def _read_file(file: str) -> str:
    """At most MAX_PASSWORD + 1 bytes of a regular file (a FIFO would block, a device never end)."""
    flag = f"--password-file {file}"
    try:
        fd = os.open(file, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO must not block the open itself
    except OSError as exc:
        raise UsageError(f"{flag}: cannot read it ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UsageError(f"{flag}: not a regular file", hint="write the password into a file, or use "
                             "--password-stdin / --password-env")
        try:
            data = handle.read(MAX_PASSWORD + 2)  # + a newline
        except OSError as exc:
            raise UsageError(f"{flag}: cannot read it ({exc.strerror})") from None
    return _decoded(data, flag)


@dataclass
class UserPlan:
    exists: bool
    password_change: bool


class UserCreate:
    name = "user-create"
    stores = ("auth",)
    derived: tuple[str, ...] = ()
    verify_markers = ""
    bootstraps_schema = False

    def __init__(self, *, username: str, role: str, rotate: bool = False, password_env: str | None = None,
                 password_stdin: bool = False, password_file: str | None = None,
                 password_out: str | None = None) -> None:
        if not USERNAME.fullmatch(username):
            raise UsageError(f"--username {username!r} is not a valid operator name",
                             hint="use 2-63 characters: a lowercase letter, then lowercase letters, digits, _ . -")
        self.username = username
        self.role = role
        self.rotate = rotate
        self.password = self._read_password(password_env, password_stdin, password_file)
        self.generated = self.password is None
        self.password_out = Path(password_out) if password_out else Path.cwd() / f"kfm-operator-{username}.password"
        if self.generated:  # an output path: checked before anything connects
            writable(self.password_out, "--password-out")
        self._hasher = password_hasher()

    @staticmethod
    def _read_password(env: str | None, stdin: bool, file: str | None) -> str | None:
        if env is not None:
            if env not in os.environ:
                raise UsageError(f"--password-env {env}: that environment variable is not set")
            flag, value = f"--password-env {env}", os.environ[env]
        elif stdin:  # the first line, and never more than the limit (an endless stdin is not read to its end)
            flag, value = "--password-stdin", _decoded(sys.stdin.buffer.readline(MAX_PASSWORD + 1), "--password-stdin")
            value = value.removesuffix("\n").removesuffix("\r")
        elif file is not None:
            flag, value = f"--password-file {file}", _read_file(file).rstrip("\n")
        else:
            return None
        if len(value.encode()) > MAX_PASSWORD:
            raise UsageError(f"{flag}: the password is longer than {MAX_PASSWORD // 1024} KiB",
                             hint="give the password itself (one line), not a file of other content")
        if len(value) < MIN_PASSWORD:
            raise UsageError(f"the given password is too short (under {MIN_PASSWORD} characters)")
        register_secret(value)
        return value

    def plan(self, hub: ServiceHub) -> Plan[UserPlan]:
        # the password hashes are the owner's to read: the check role has no access to kfm_auth
        row = hub.postgis_owner().execute(
            "SELECT role, password_hash FROM kfm_auth.operators WHERE username = %s", (self.username,)
        ).fetchone()
        exists = row is not None
        role_change = exists and row[0] != self.role  # type: ignore[index]
        password_change = not exists or self.rotate
        if exists and not self.rotate and self.password is not None and not self._matches(row[1]):  # type: ignore[index]
            raise ActionRefused(f"operator {self.username} exists with another password",
                                hint="add --rotate-password to replace it")
        if password_change and self.generated and self.password_out.exists():
            raise UsageError(f"--password-out {self.password_out} already exists",
                             hint="choose a new path: a generated password is never written over a file")
        steps = []
        if not exists:
            steps.append(f"create operator {self.username} with role {self.role}")
        if role_change:
            steps.append(f"change role {row[0]} → {self.role}")  # type: ignore[index]
        if exists and password_change:
            steps.append("rotate the password")
        if password_change and self.generated:
            steps.append(f"write a generated password to {self.password_out} (mode 0600)")
        return Plan(what=f"upsert operator {self.username}", where=["postgis: kfm_auth.operators"],
                    how_much={"accounts": 1, "exists": exists}, steps=steps,
                    rollback="delete or re-rotate the account with kfm-maint user create --rotate-password",
                    details=UserPlan(exists, password_change), nothing_to_do=not steps)

    def _matches(self, stored: str) -> bool:
        try:
            return self._hasher.verify(stored, self.password or "")
        except (VerifyMismatchError, InvalidHashError):
            return False

    def apply(self, hub: ServiceHub, plan: Plan[UserPlan], run: RunContext) -> dict[str, Any]:
        if plan.nothing_to_do:
            return {"accounts_changed": 0}
        conn = hub.postgis(write=True)
        password_file = None
        if plan.details.password_change and self.generated:
            self.password = secrets.token_urlsafe(24)
            register_secret(self.password)
            password_file = self._write_secret_file(self.password)
        try:
            self._upsert(conn, plan)
        except BaseException:
            if password_file:  # no password file for an account that was not written
                password_file.unlink(missing_ok=True)
            raise
        counts: dict[str, Any] = {"accounts_changed": 1, "password_changed": plan.details.password_change}
        if password_file:
            counts["password_file"] = str(password_file)
        return counts

    def _upsert(self, conn: PostgisStore, plan: Plan[UserPlan]) -> None:
        if plan.details.password_change:
            conn.execute(
                "INSERT INTO kfm_auth.operators (username, role, password_hash) VALUES (%s, %s, %s) "
                "ON CONFLICT (username) DO UPDATE SET role = excluded.role, password_hash = excluded.password_hash, "
                "rotated_at = now()",
                (self.username, self.role, self._hasher.hash(self.password or "")),
            )
        else:
            conn.execute("UPDATE kfm_auth.operators SET role = %s WHERE username = %s", (self.role, self.username))

    def _write_secret_file(self, password: str) -> Path:
        fd = os.open(self.password_out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(password + "\n")
        return self.password_out
