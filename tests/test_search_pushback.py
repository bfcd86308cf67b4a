"""The search reindex against a cluster that pushes back and refuses inline scripts.

A throw-away OpenSearch node (the devstack's own runner jars, its own data and port)
with one write thread, a write queue of one and ``script.allowed_types: none``: bulk
requests sent three at a time are rejected with 429, and the painless digest of the
verify is refused. The reindex must still load every document, verify it by the
read-back digest, and swap the alias.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import kfm_maint

pytestmark = [pytest.mark.devstack, pytest.mark.usefixtures("catalog")]

NODE_SETTINGS = """\
network.host: 127.0.0.1
discovery.type: single-node
transport.port: 9300-9400
thread_pool.write.size: 1
thread_pool.write.queue_size: 1
script.allowed_types: none
"""


def _free_runner_port() -> int:
    """A free HTTP port the OpenSearch runner accepts (it binds at most 9299)."""
    for port in range(9290, 9200, -1):
        with socket.socket() as s, contextlib.suppress(OSError):
            s.bind(("127.0.0.1", port))
            return port
    pytest.fail("no free port in 9201-9290 for a throw-away OpenSearch node")


@pytest.fixture(scope="module")
def strict_search() -> Iterator[str]:
    """URL of a throw-away single OpenSearch node that rejects bulk load (429) and all scripts."""
    from devstack.stack import StackError, opensearch_jars

    try:
        jars = opensearch_jars()
    except StackError as exc:
        pytest.fail(str(exc))
    java = shutil.which("java")
    if java is None:
        pytest.fail("no java: run devstack/stack install opensearch")
    port = _free_runner_port()
    root = Path(tempfile.mkdtemp(prefix="kfm-strict-search-"))
    (root / "config").mkdir()
    (root / "tmp").mkdir()
    (root / "config" / "opensearch.yml").write_text(NODE_SETTINGS)
    log = (root / "node.log").open("wb")
    proc = subprocess.Popen(
        [java, "-Xms256m", "-Xmx512m", f"-Djava.io.tmpdir={root / 'tmp'}", "-cp", f"{jars}/*",
         "org.codelibs.opensearch.runner.OpenSearchRunner", "-basePath", str(root / "base"),
         "-confPath", str(root / "config"), "-numOfNode", "1", "-baseHttpPort", str(port - 1),
         "-clusterName", "kfm-strict-search"],
        stdout=log, stderr=subprocess.STDOUT, env={"PATH": os.environ.get("PATH", ""), "HOME": str(root)})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300  # a third JVM starting on 2 cores next to the stack
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/_cluster/health", timeout=2).json().get("status") in ("green", "yellow"):
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"throw-away OpenSearch did not come up on {url}; log {root / 'node.log'}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(root, ignore_errors=True)


def _write_rejections(url: str) -> int:
    stats = httpx.get(f"{url}/_nodes/stats/thread_pool", timeout=10).json()
    return sum(node["thread_pool"]["write"]["rejected"] for node in stats["nodes"].values())


def test_reindex_rides_out_bulk_rejections_and_verifies_without_scripts(strict_search: str, owner_pg: Any) -> None:
    # the node really is strict: an inline script is refused
    refused = httpx.post(f"{strict_search}/_scripts/painless/_execute", json={"script": {"source": "1"}}, timeout=10)
    assert refused.status_code == 400 and "cannot execute [inline] scripts" in refused.text, refused.text

    env = {"KFM_SEARCH__URL": strict_search}
    stamped = kfm_maint("identity", "stamp", "--targets", "search", "--no-verify", env=env)  # a new cluster
    assert stamped.returncode == 0, stamped.stdout + stamped.stderr
    proc = kfm_maint("reindex", "--targets", "search", "--batch-size", "20", "--json", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    counts = summary["counts"]
    events = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]

    assert _write_rejections(strict_search) > 0, "the node never pushed back: the test proves nothing"
    # kfm-maint saw the 429s and sent those documents again; the lines come from the bulk
    # writer threads and still carry the run's id
    pushed_back = [e for e in events if e["event"] == "bulk.pushed_back"]
    assert pushed_back and {e.get("run_id") for e in pushed_back} == {summary["run_id"]}
    # the painless digest was refused, and the read-back digest verified instead
    assert any(e["event"] == "digest.read_back" and "inline" in e["reason"] for e in events)
    published, _ = owner_pg.published_count()
    assert counts["verified"] == published
    alias_docs = httpx.get(f"{strict_search}/kfm-items/_count", timeout=10).json()["count"]
    assert alias_docs == published
