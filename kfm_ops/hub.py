"""The service hub: one lazily-opened client per service, shared by checks and actions.

Read clients are handed to anyone. Write clients only by a hub opened with
``writes_allowed`` (a kfm-maint action past its gates, not a dry run; or a test
marked ``kfm_writable``) — mutation is blocked by default and the refusal names
the way to unblock it.

Each service is warmed up once: the first use connects and pings within the
configured timeout; a failure is remembered, so every later use fails at once
with the same clear message instead of waiting out the timeout again.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

from kfm_ops import log
from kfm_ops.clients import adapter, describe
from kfm_ops.errors import ActionRefused, KfmError, NotConfigured, ServiceUnavailable
from kfm_ops.settings import SERVICES, Settings

# The retry policy of a warm-up: a reset or dropped connection is tried again (a peer
# restarting, a load balancer recycling); refusals, timeouts and auth failures are not.
WARM_UP_ATTEMPTS = 3
RETRY_BACKOFF = 0.5  # seconds, times the attempt number
TRANSIENT = ("connection reset", "connection closed")


class ServiceHub:
    def __init__(self, settings: Settings, *, writes_allowed: bool = False, application_name: str = "kfm-ops",
                 on_retry: Callable[[str, str], None] | None = None) -> None:
        self.settings = settings
        self.on_retry = on_retry
        self.writes_allowed = writes_allowed
        self.application_name = application_name
        self._clients: dict[tuple[str, bool], Any] = {}
        self._failures: dict[tuple[str, bool], KfmError] = {}
        self._versions: dict[str, str] = {}
        self._lock = threading.Lock()

    def configured(self, name: str) -> bool:
        return self.settings.section(name) is not None

    def client(self, name: str) -> Any:
        """The read-only client of service ``name``."""
        return self._get(name, write=False)

    def writer(self, name: str) -> Any:
        """A write-capable client; only for a hub opened by a confirmed action."""
        if not self.writes_allowed:
            raise ActionRefused(
                f"writes to {name} are blocked in this session",
                hint="mutations run only through kfm-maint actions (without --dry-run); "
                "in tests, mark the test with @pytest.mark.kfm_writable",
            )
        return self._get(name, write=True)

    def _get(self, name: str, *, write: bool) -> Any:
        section = self.settings.section(name)
        if section is None:
            raise NotConfigured(name)
        key = (name, write)
        with self._lock:
            if key in self._failures:
                raise self._failures[key]
            if key in self._clients:
                return self._clients[key]
            try:
                client = self._warm_up(name, section, write=write)
            except KfmError as exc:
                self._failures[key] = exc
                raise
            self._clients[key] = client
            return client

    def _warm_up(self, name: str, section: Any, *, write: bool) -> Any:
        """Open and ping, retrying only transient faults (a reset or dropped connection)."""
        module = adapter(name)
        kwargs = {"application_name": self.application_name} if name == "postgis" else {}
        for attempt in range(1, WARM_UP_ATTEMPTS + 1):
            client = None
            try:
                client = module.open(section, write=write, **kwargs)
                module.ping(client)
                return client
            except KfmError:
                raise
            except Exception as exc:  # noqa: BLE001 — any driver error means "unreachable"
                if client is not None:
                    with contextlib.suppress(Exception):  # best effort on a broken client
                        module.close(client)
                reason = describe(exc)
                if attempt == WARM_UP_ATTEMPTS or not reason.startswith(TRANSIENT):
                    raise ServiceUnavailable(name, section.where, reason) from None
                log.get_logger().warning("service.retry", service=name, attempt=attempt, reason=reason)
                if self.on_retry is not None:
                    self.on_retry(name, reason)
                time.sleep(RETRY_BACKOFF * attempt)
        raise AssertionError("unreachable")  # pragma: no cover — the loop returns or raises

    def unavailable(self) -> list[str]:
        """Services that failed their warm-up in this process."""
        return sorted({name for (name, _write), error in self._failures.items()
                       if isinstance(error, ServiceUnavailable)})

    def version(self, name: str) -> str:
        """The server version of ``name`` (warming it up if needed)."""
        if name not in self._versions:
            self._versions[name] = adapter(name).version(self.client(name))
        return self._versions[name]

    def status_lines(self) -> list[str]:
        """One line per service for report headers: version, not configured, or unreachable."""
        lines = []
        for name in SERVICES:
            if not self.configured(name):
                lines.append(f"{name}: not configured")
                continue
            try:
                lines.append(f"{name}: {self.version(name)} at {self.settings.section(name).where}")  # type: ignore[union-attr]
            except KfmError as exc:
                lines.append(f"{name}: UNAVAILABLE — {exc.message}")
            except Exception as exc:  # noqa: BLE001
                lines.append(f"{name}: version unknown ({describe(exc)})")
        return lines

    def close(self) -> None:
        with self._lock:
            for (name, _write), client in self._clients.items():
                with contextlib.suppress(Exception):  # closing is best effort
                    adapter(name).close(client)
            self._clients.clear()
