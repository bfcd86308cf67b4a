"""The report header asks each service for its version within its connect timeout, and not at all under --collect-only.

Every service points at a silent peer: a real TCP server that accepts connections and never
answers. Query timeouts are 600 s and the pytest process gets 120 s: a header that waited a
query timeout would fail this test by timing out, so no wall clock is asserted.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from kfm_ops.settings import SERVICES

QUERY_TIMEOUT = 600


@pytest.fixture
def silent_peer() -> Iterator[tuple[int, list[socket.socket]]]:
    """(port, accepted): a TCP server that accepts every connection, holds it open and never sends a byte."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.1)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], accepted
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    server.close()


def _session(tmp_path: Path, port: int, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_nothing.py").write_text("def test_nothing():\n    pass\n")
    env_file = tmp_path / "kfm.env"
    lines = [f"KFM_POSTGIS__DSN=postgresql://kfm_reader@127.0.0.1:{port}/kfm", f"KFM_GRAPH__URL=bolt://127.0.0.1:{port}",
             f"KFM_SEARCH__URL=http://127.0.0.1:{port}", f"KFM_CACHE__URL=redis://127.0.0.1:{port}/0",
             f"KFM_POLICY__URL=http://127.0.0.1:{port}", f"KFM_LLM__URL=http://127.0.0.1:{port}", "KFM_LLM__MODEL=m"]
    timeouts = ("CONNECT_TIMEOUT=1", f"QUERY_TIMEOUT={QUERY_TIMEOUT}")
    lines += [f"KFM_{s.upper()}__{t}" for s in SERVICES for t in timeouts]
    env_file.write_text("\n".join(lines) + "\n")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("KFM_")}, "KFM_ENV_FILE": str(env_file)}
    return subprocess.run([sys.executable, "-m", "pytest", str(tmp_path), "-p", "no:cacheprovider", *args],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)


def test_the_header_gives_up_on_a_silent_service_within_its_connect_timeout(
        tmp_path: Path, silent_peer: tuple[int, list[socket.socket]]) -> None:
    port, accepted = silent_peer
    proc = _session(tmp_path, port)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    for service in SERVICES:
        assert f"  {service}: UNAVAILABLE" in proc.stdout, proc.stdout[:3000]
    assert accepted, "the header did not try the services at all"


def test_the_header_does_not_probe_under_collect_only(
        tmp_path: Path, silent_peer: tuple[int, list[socket.socket]]) -> None:
    port, accepted = silent_peer
    proc = _session(tmp_path, port, "--collect-only")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "not probed (--collect-only)" in proc.stdout
    assert accepted == []
