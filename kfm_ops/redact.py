"""Secret redaction shared by logs, reports, error messages and the audit ledger.

Two layers: every secret value the harness was configured with is registered and
replaced wherever it appears; patterns catch the shapes secrets come in when they
were never registered (URL user-info, Authorization headers, key=value pairs).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from typing import Any

MASK = "***"

_lock = threading.Lock()
_secrets: set[str] = set()

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # scheme://user:password@host → scheme://user:***@host
    (re.compile(r"(?P<pre>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)[^@\s]+(?P<post>@)"), rf"\g<pre>{MASK}\g<post>"),
    # Authorization: Bearer xyz / Basic xyz
    (re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?)(bearer|basic|token)?\s*[^\s\"',}]+"), rf"\1\2 {MASK}"),
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]{6,}"), rf"\1 {MASK}"),
    # password=..., api_key: ..., token=..., secret=... (libpq conninfo, query strings, dicts)
    (
        re.compile(
            r"(?i)(\b(?:password|passwd|pwd|api[_-]?key|apikey|token|secret)[\"']?\s*[:=]\s*[\"']?)"
            r"(?!\*\*\*)[^\s\"'&,;}]+"
        ),
        rf"\1{MASK}",
    ),
)


def register_secret(value: str | None) -> None:
    """Remember a secret value so that it is masked wherever it shows up."""
    if value and len(value) >= 4:
        with _lock:
            _secrets.add(value)


def register_secrets(values: Iterable[str | None]) -> None:
    for value in values:
        register_secret(value)


def redact(text: str) -> str:
    """Return ``text`` with every known secret and secret-shaped substring masked."""
    if not text:
        return text
    with _lock:
        known = sorted(_secrets, key=len, reverse=True)
    for secret in known:
        if secret in text:
            text = text.replace(secret, MASK)
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text


def redact_obj(obj: Any) -> Any:
    """Redact every string inside a JSON-like structure (dict keys stay as they are)."""
    if isinstance(obj, str):
        return redact(obj)
    if isinstance(obj, dict):
        return {k: redact_obj(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [redact_obj(v) for v in obj]
    return obj
