"""A small client of the local stack's Toxiproxy (HTTP API on 127.0.0.1:8474) for fault tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from tests.helpers import free_port

API = f"http://127.0.0.1:{os.environ.get('DEVSTACK_TOXIPROXY_PORT', '8474')}"


class Proxy:
    def __init__(self, name: str, upstream: str) -> None:
        self.name = name
        self.port = free_port()
        self.http = httpx.Client(base_url=API, timeout=10)
        self.http.delete(f"/proxies/{name}")
        self.http.post("/proxies", json={"name": name, "listen": f"127.0.0.1:{self.port}",
                                         "upstream": upstream, "enabled": True}).raise_for_status()

    def toxic(self, kind: str, stream: str = "downstream", **attributes: Any) -> None:
        self.http.post(f"/proxies/{self.name}/toxics", json={
            "name": f"{kind}_{stream}", "type": kind, "stream": stream, "toxicity": 1.0,
            "attributes": attributes}).raise_for_status()

    def clear(self) -> None:
        for toxic in self.http.get(f"/proxies/{self.name}/toxics").json():
            self.http.delete(f"/proxies/{self.name}/toxics/{toxic['name']}")

    def enable(self, enabled: bool) -> None:
        self.http.post(f"/proxies/{self.name}", json={"enabled": enabled}).raise_for_status()

    def close(self) -> None:
        self.http.delete(f"/proxies/{self.name}")
        self.http.close()


@contextmanager
def proxy(name: str, upstream: str) -> Iterator[Proxy]:
    """A Toxiproxy proxy in front of ``upstream`` (host:port) for the duration of the block."""
    p = Proxy(f"kfm-test-{name}", upstream)
    try:
        yield p
    finally:
        p.close()
