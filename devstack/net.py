"""Loopback networking: who holds a port, is it free, and plain HTTP to a local service."""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import urllib.error
import urllib.request
from pathlib import Path

from devstack.errors import ProbeError
from devstack.processes import all_pids


def port_holders(port: int) -> list[int]:
    """Pids that own a TCP socket bound to `port` (best effort, needs /proc)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) > 9 and int(parts[1].rsplit(":", 1)[1], 16) == port and parts[3] in ("0A", "07"):
                inodes.add(parts[9])
    if not inodes or inodes == {"0"}:
        return []
    pids = []
    for pid in all_pids():
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if link.startswith("socket:[") and link[8:-1] in inodes:
                        pids.append(pid)
                        break
        except OSError:
            continue
    return pids


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def http(url: str, *, method: str = "GET", headers: dict[str, str] | None = None,
         body: bytes | None = None, timeout: float = 3.0, context: ssl.SSLContext | None = None) -> tuple[int, bytes]:
    """One request to a loopback service: ``http://127.0.0.1:…``, or ``https://127.0.0.1:…`` with ``context``."""
    handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
    if context is not None:
        handlers.append(urllib.request.HTTPSHandler(context=context))
    opener = urllib.request.build_opener(*handlers)
    if not (url.startswith("http://127.0.0.1:") or (context is not None and url.startswith("https://127.0.0.1:"))):
        raise ValueError(f"devstack only talks to loopback over http (or https with the stack's CA): {url}")
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})  # noqa: S310
    try:
        with opener.open(req, timeout=timeout) as resp:
            return int(resp.status), bytes(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise ProbeError(f"{url}: {reason}") from None
