"""A small client of the local stack's Toxiproxy (its HTTP API on DEVSTACK_TOXIPROXY_PORT) for fault tests.

The services it proxies are the ones the settings point at (``upstream``), and ``through`` gives the
settings that reach a service through a proxy instead: whatever ports this stack runs on.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from devstack.config import load_config
from kfm_ops.settings import load_settings
from tests.helpers import free_port

API = f"http://127.0.0.1:{load_config()['DEVSTACK_TOXIPROXY_PORT']}"
# the settings that name where each service is (a DSN's user, database and options are kept)
URL_SETTINGS = {"postgis": ("DSN", "WRITE_DSN"), "graph": ("URL",), "search": ("URL",), "cache": ("URL",),
                "policy": ("URL",), "llm": ("URL",)}


def _address(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}"


def upstream(service: str) -> str:
    """host:port of ``service`` as the settings (KFM_ENV_FILE, .env, the environment) name it."""
    section = load_settings().section(service)
    assert section is not None, f"{service} is not configured"
    return _address(getattr(section, URL_SETTINGS[service][0].lower()))


def through(service: str, port: int, settings: Any = None) -> dict[str, str]:
    """The ``KFM_<SERVICE>__*`` URL settings of ``service`` rewritten to reach it at 127.0.0.1:``port``."""
    section = (settings or load_settings()).section(service)
    assert section is not None, f"{service} is not configured"
    env = {}
    for name in URL_SETTINGS[service]:
        url = getattr(section, name.lower())
        if url:
            parts = urlsplit(url)
            user = f"{parts.username}@" if parts.username else ""
            env[f"KFM_{service.upper()}__{name}"] = urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{port}"))
    return env


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
