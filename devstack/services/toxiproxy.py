"""Toxiproxy: the fault-injection proxy's API server (Go binary built by the stack)."""

from __future__ import annotations

import json
from pathlib import Path

from devstack.binaries import locate
from devstack.errors import ProbeError
from devstack.net import http
from devstack.pins import TOXIPROXY_VERSION
from devstack.services.base import Service


class Toxiproxy(Service):
    name = "toxiproxy"
    title = "Toxiproxy"
    pinned = TOXIPROXY_VERSION.lstrip("v")
    port_keys = ("DEVSTACK_TOXIPROXY_PORT",)
    steps = ("go-toxiproxy",)
    timeout = 30.0
    stop_timeout = 10.0

    def command(self) -> tuple[list[str], dict[str, str], Path]:
        self.dir.mkdir(parents=True, exist_ok=True)
        argv = [str(locate("toxiproxy", self.st.bin)), "-host", "127.0.0.1", "-port", str(self.port)]
        return argv, self.base_env(HOME=str(self.dir)), self.dir

    def probe(self) -> str:
        code, body = http(f"http://127.0.0.1:{self.port}/version")
        if code != 200:
            raise ProbeError(f"GET /version answered HTTP {code}")
        try:
            return str(json.loads(body).get("version", "?")).lstrip("v")
        except ValueError:
            return body.decode(errors="replace").strip().lstrip("v")
