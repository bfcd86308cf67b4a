"""Secret redaction shared by logs, reports, error messages and the audit ledger.

Two layers: every secret value the harness was configured with is registered and
replaced wherever it appears; patterns catch the shapes secrets come in when they
were never registered (URL user-info, Authorization headers, bearer tokens,
``key=value`` pairs with a secret-named key, quoted or not).

Linear time, whatever the text: every pattern here starts at a literal, bounds its
repeats, and ends in at most one greedy run of a single character class — so an attempt
fails within a few characters or succeeds and is consumed. The value scanner moves
forward only. ``tests/unit/test_redact.py`` checks both by shape, and fuzzes canaries
through texts up to 1 MB; ``bench/redact.py`` measures it (docs/benchmarks.md).
"""

from __future__ import annotations

import heapq
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

MASK = "***"

_lock = threading.Lock()
_secrets: set[str] = set()

# scheme://user:password@host → scheme://user:***@host. The authority ends at "/", "?", "#" or
# whitespace; the password runs from the first ":" to the LAST "@" (a password may hold "@").
_AUTHORITY = re.compile(r"(?<=:)//([^\s/?#]*)")

# A secret-named key matches inside longer names: sslpassword, client_secret, KFM_LLM__API_KEY.
_KEYS = r"pass(?:word|wd|phrase)?|pwd|secret|token|credentials?|apikey|(?:api|access|private|secret|auth)[_-]?key"
_SEP = r"[\"']?[ \t]{0,8}[:=][ \t]{0,8}"


class _Pattern(Protocol):
    def search(self, text: str, pos: int, /) -> re.Match[str] | None: ...
    def match(self, text: str, pos: int, /) -> re.Match[str] | None: ...


@dataclass(frozen=True)
class Kind:
    """One shape of secret value: what introduces it, and how far it runs."""

    name: str
    trigger: _Pattern
    run: _Pattern
    """The value when it is not quoted (from where the trigger ended)."""
    quoted: Mapping[str, _Pattern] = field(default_factory=dict)
    """Quote character → the run of its content up to a backslash, the closing quote or a newline."""
    keep_scheme: bool = False
    """Keep the credential's scheme word ("Bearer ***"): it says what kind of secret it was."""


_QUOTED = {"'": re.compile(r"[^'\\\n]*"), '"': re.compile(r'[^"\\\n]*')}
_SCHEME = re.compile(r"(?i)(?:bearer|basic|token|digest|negotiate)[ \t]{1,8}")

KINDS: tuple[Kind, ...] = (
    # Authorization: Basic dXNlcjpwdw== — the unquoted value runs to the end of the line.
    Kind("header", re.compile(rf"(?i)authorization{_SEP}"), re.compile(r"[^\r\n]+"), _QUOTED, keep_scheme=True),
    Kind("bearer", re.compile(r"(?i)bearer[ \t]{1,8}"), re.compile(r"[A-Za-z0-9._~+/=-]{6,}")),
    # password=…, sslpassword=…, "api_key": "…", token: …, password='a b c' (libpq quoting)
    Kind("pair", re.compile(rf"(?i)(?:{_KEYS}){_SEP}"), re.compile(r"[^\s\"'&,;}]+"), _QUOTED),
)

PATTERNS: tuple[re.Pattern[str], ...] = (
    _AUTHORITY, _SCHEME, *_QUOTED.values(),
    *(p for kind in KINDS for p in (kind.trigger, kind.run) if isinstance(p, re.Pattern)),
)
"""Every regex the redactor runs (the shape test walks them)."""


def register_secret(value: str | None) -> None:
    """Remember a secret value so that it is masked wherever it shows up."""
    if value and len(value) >= 4:
        with _lock:
            _secrets.add(value)


def register_secrets(values: Iterable[str | None]) -> None:
    for value in values:
        register_secret(value)


def _quoted(text: str, start: int, inner: _Pattern) -> tuple[int, int]:
    """(end of the content, end of the value) of the quoted value opening at ``text[start]``."""
    i = start + 1
    while True:
        found = inner.match(text, i)
        i = found.end() if found else i
        if i + 1 < len(text) and text[i] == "\\" and text[i + 1] != "\n":
            i += 2  # an escaped character; an escape never carries a value past its line
            continue
        closed = i < len(text) and text[i] == text[start]
        return i, i + closed


def values(text: str, kind: Kind) -> Iterator[tuple[int, int]]:
    """Spans of the secret values ``kind`` introduces in ``text``, left to right.

    One forward pass: each search starts where the last trigger ended (a key may sit inside
    another key's value: ``password=password='a b'``), and a trigger inside an unquoted run
    already spanned is skipped (its run would end where that one did), so no character is
    read by two runs.
    """
    pos = covered = 0
    while (found := kind.trigger.search(text, pos)) is not None:
        pos = start = found.end()
        if start < covered:
            continue
        quote = text[start] if start < len(text) else ""
        if quote in kind.quoted:
            stop, pos = _quoted(text, start, kind.quoted[quote])
            start, covered = start + 1, pos
        else:
            run = kind.run.match(text, start)
            if run is None:
                continue
            stop = covered = run.end()
        if kind.keep_scheme and (scheme := _SCHEME.match(text, start, stop)) and scheme.end() < stop:
            start = scheme.end()
        if start < stop:
            yield start, stop


def _authorities(text: str) -> Iterator[tuple[int, int]]:
    for found in _AUTHORITY.finditer(text):
        authority, offset = found.group(1), found.start(1)
        at = authority.rfind("@")
        colon = authority.find(":", 0, at) if at > 0 else -1
        if colon >= 0 and colon + 1 < at:
            yield offset + colon + 1, offset + at


def redact(text: str) -> str:
    """Return ``text`` with every known secret and secret-shaped substring masked."""
    if not text:
        return text
    with _lock:
        known = sorted(_secrets, key=len, reverse=True)
    for secret in known:
        if secret in text:
            text = text.replace(secret, MASK)
    # Every shape is found in the same text, then the spans are merged: masking one shape first
    # must not hide the key that introduces another.
    spans = heapq.merge(_authorities(text), *(values(text, kind) for kind in KINDS))
    out: list[str] = []
    done = 0
    current: list[int] | None = None
    for start, stop in spans:
        if current is not None and start <= current[1]:
            current[1] = max(current[1], stop)
            continue
        if current is not None:
            out += [text[done:current[0]], MASK]
            done = current[1]
        current = [start, stop]
    if current is None:
        return text
    out += [text[done:current[0]], MASK, text[current[1]:]]
    return "".join(out)


def clip(text: str, limit: int) -> str:
    """``text`` redacted, then cut to ``limit`` characters (cutting first could halve a secret past its mask)."""
    text = redact(text)
    return text if len(text) <= limit else text[:limit] + "…"


def redact_obj(obj: Any) -> Any:
    """Redact every string inside a JSON-like structure (dict keys stay as they are)."""
    if isinstance(obj, str):
        return redact(obj)
    if isinstance(obj, dict):
        return {k: redact_obj(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [redact_obj(v) for v in obj]
    return obj
