"""Operator password hashes carry the argon2 parameters kfm-ops pins, whatever the library's defaults."""

from __future__ import annotations

import base64
import re

import argon2
import pytest
from argon2 import Type

from maintenance.actions import users


class _DriftedDefaults(argon2.PasswordHasher):
    """A PasswordHasher whose defaults moved (as a library upgrade may move them)."""

    def __init__(self, time_cost: int = 1, memory_cost: int = 8192, parallelism: int = 1, hash_len: int = 16,
                 salt_len: int = 8, encoding: str = "utf-8", type: Type = Type.I) -> None:  # noqa: A002
        super().__init__(time_cost, memory_cost, parallelism, hash_len, salt_len, encoding, type)


def _b64(part: str) -> bytes:
    return base64.b64decode(part + "=" * (-len(part) % 4))


def test_a_stored_hash_carries_the_pinned_parameters(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(users, "PasswordHasher", _DriftedDefaults)
    encoded = users.UserCreate(username="ana", role="operator")._hasher.hash("correct horse battery staple")
    found = re.fullmatch(r"\$(argon2\w+)\$v=(\d+)\$m=(\d+),t=(\d+),p=(\d+)\$([^$]+)\$([^$]+)", encoded)
    assert found, encoded
    variant, version, memory, time, lanes, salt, digest = found.groups()
    # RFC 9106 section 4, the second recommended option (for memory-constrained hosts)
    assert (variant, int(version)) == ("argon2id", 19)
    assert (int(memory), int(time), int(lanes)) == (64 * 1024, 3, 4)
    assert (len(_b64(salt)), len(_b64(digest))) == (16, 32)
