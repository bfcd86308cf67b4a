"""Known failures: a baseline file of checks that fail for a known reason, each with an owner and an expiry.

The file is TOML (``KFM_CHECKS__BASELINE_FILE``)::

    [[known]]
    check = "opschecks/health/test_search.py::test_search_cluster_health"
    reason = "single-node staging cluster stays yellow (OPS-123)"
    owner = "search-team"
    expires = 2026-03-31

A listed check that fails is reported as *known* (pytest's xfail, strict) until the end of its
expiry day; from the next day on it fails again. A listed check that passes fails as
XPASS(strict): the entry is no longer needed. Entries past their expiry and entries that
name no collected check are reported (the report header, ``kfm-maint report``).
"""

from __future__ import annotations

import datetime as dt
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kfm_ops.errors import UsageError

FIELDS = ("check", "reason", "owner", "expires")


@dataclass(frozen=True)
class Known:
    check: str
    reason: str
    owner: str
    expires: dt.date

    def matches(self, check: str) -> bool:
        """Whether this entry names ``check`` (its full id, or its tail after a ``/``)."""
        return check == self.check or check.endswith("/" + self.check)

    def expired(self, today: dt.date) -> bool:
        return today > self.expires

    def as_dict(self) -> dict[str, str]:
        return {"check": self.check, "reason": self.reason, "owner": self.owner, "expires": self.expires.isoformat()}


def _entry(path: Path, number: int, raw: Any) -> Known:
    where = f"baseline {str(path)!r}, entry {number}"
    if not isinstance(raw, dict):
        raise UsageError(f"{where}: expected a table [[known]]")
    missing = [f for f in FIELDS if not raw.get(f)]
    unknown = sorted(set(raw) - set(FIELDS))
    if missing or unknown:
        problems = ([f"missing {', '.join(missing)}"] if missing else []) + \
            ([f"unknown {', '.join(unknown)}"] if unknown else [])
        raise UsageError(f"{where}: " + "; ".join(problems),
                         hint="each entry needs check, reason, owner and expires (a date: 2026-03-31)")
    expires = raw["expires"]
    if isinstance(expires, str):
        try:
            expires = dt.date.fromisoformat(expires)
        except ValueError:
            expires = None
    if isinstance(expires, dt.datetime) or not isinstance(expires, dt.date):
        raise UsageError(f"{where}: expires must be a date like 2026-03-31, got {raw['expires']!r}")
    if "::" not in str(raw["check"]):
        raise UsageError(f"{where}: check must be a check id like 'opschecks/health/test_x.py::test_y', "
                         f"got {raw['check']!r}")
    return Known(str(raw["check"]), str(raw["reason"]), str(raw["owner"]), expires)


@dataclass(frozen=True)
class Baseline:
    path: Path | None
    entries: tuple[Known, ...] = ()

    def active(self, check: str, today: dt.date) -> Known | None:
        """The unexpired entry naming ``check``, if any."""
        return next((e for e in self.entries if e.matches(check) and not e.expired(today)), None)

    def expired(self, today: dt.date) -> list[Known]:
        return [e for e in self.entries if e.expired(today)]

    def unused(self, checks: list[str]) -> list[Known]:
        """Entries naming none of ``checks`` (a renamed or removed check, a typo)."""
        return [e for e in self.entries if not any(e.matches(c) for c in checks)]

    def summary(self, checks: list[str], today: dt.date) -> dict[str, Any]:
        """What reports show: the file, and its expired and unused entries."""
        return {"file": str(self.path) if self.path else None, "entries": len(self.entries),
                "expired": [e.as_dict() for e in self.expired(today)],
                "unused": [e.as_dict() for e in self.unused(checks)]}


def load(path: Path | None) -> Baseline:
    """The baseline at ``path`` (an empty one when no file is configured); a bad file is a usage error."""
    if path is None:
        return Baseline(None)
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"baseline file {str(path)!r} not found", hint="fix KFM_CHECKS__BASELINE_FILE") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"baseline file {str(path)!r} is not valid TOML: {exc}") from None
    unknown = sorted(set(data) - {"known"})
    if unknown:
        raise UsageError(f"baseline {str(path)!r}: unknown key(s) {', '.join(unknown)}; entries are [[known]] tables")
    raw = data.get("known", [])
    if not isinstance(raw, list):
        raise UsageError(f"baseline {str(path)!r}: known must be an array of tables ([[known]])")
    entries = tuple(_entry(Path(path), n, item) for n, item in enumerate(raw, 1))
    seen: set[str] = set()
    for entry in entries:
        if entry.check in seen:
            raise UsageError(f"baseline {str(path)!r}: {entry.check} is listed twice")
        seen.add(entry.check)
    return Baseline(Path(path), entries)
