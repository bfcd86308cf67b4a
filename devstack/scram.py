"""SCRAM-SHA-256 password verifiers, computed client-side as psql's ``\\password`` does.

devstack sets the PostgreSQL role passwords from these verifiers, so the server never sees
the cleartext password: it cannot reach the server log, pg_stat_activity or a WAL record.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import stringprep
import unicodedata

ITERATIONS = 4096  # PostgreSQL's default scram_iterations
SALT_BYTES = 16  # what PostgreSQL generates

_PROHIBITED = (
    stringprep.in_table_c12, stringprep.in_table_c21, stringprep.in_table_c22, stringprep.in_table_c3,
    stringprep.in_table_c4, stringprep.in_table_c5, stringprep.in_table_c6, stringprep.in_table_c7,
    stringprep.in_table_c8, stringprep.in_table_c9, stringprep.in_table_a1,
)


def saslprep(password: str) -> str:
    """RFC 4013 SASLprep as PostgreSQL (and libpq) apply it to a SCRAM password.

    Like PostgreSQL, an ASCII password is used as it is, and so is a password SASLprep rejects.
    """
    if password.isascii():
        return password
    mapped = "".join(" " if stringprep.in_table_c12(ch) else ch
                     for ch in password if not stringprep.in_table_b1(ch))
    norm = unicodedata.normalize("NFKC", mapped)
    if not norm or any(check(ch) for ch in norm for check in _PROHIBITED):
        return password
    if any(stringprep.in_table_d1(ch) for ch in norm) and (
            any(stringprep.in_table_d2(ch) for ch in norm)
            or not (stringprep.in_table_d1(norm[0]) and stringprep.in_table_d1(norm[-1]))):
        return password
    return norm


def scram_sha256(password: str, *, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    """The ``SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`` verifier of ``password``."""
    salt = salt if salt is not None else os.urandom(SALT_BYTES)
    salted = hashlib.pbkdf2_hmac("sha256", saslprep(password).encode("utf-8"), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode("ascii")

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"
