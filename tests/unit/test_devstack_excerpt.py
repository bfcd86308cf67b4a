"""devstack quotes a failed server's log line: its secrets are masked before the line is cut."""

from __future__ import annotations

from pathlib import Path

from devstack.commands import _log_excerpt

SECRET = "devstack-canary-0123456789abcdef"


def test_a_secret_straddling_the_cut_is_masked_first(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_text("starting\nFATAL: " + "x" * 280 + SECRET + "\n")
    excerpt = _log_excerpt(log, 0, {"DEVSTACK_PG_PASSWORD": SECRET})
    assert "FATAL" in excerpt
    assert SECRET[:10] not in excerpt
