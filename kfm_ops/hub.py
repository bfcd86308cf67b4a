"""The service hub: one lazily-opened client per service, shared by checks and actions.

Read clients are handed to anyone. Write clients only to a hub that holds an open
:class:`~kfm_ops.gates.Gate` (a confirmed, non-dry-run action) — mutation is
blocked by default and the refusal names the way to unblock it.

Each service is warmed up once: the first use connects and pings within the
configured timeout; a failure is remembered, so every later use fails at once
with the same clear message instead of waiting out the timeout again.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

from kfm_ops.clients import adapter, describe
from kfm_ops.errors import ActionRefused, KfmError, NotConfigured, ServiceUnavailable
from kfm_ops.settings import SERVICES, Settings


class ServiceHub:
    def __init__(self, settings: Settings, *, writes_allowed: bool = False, application_name: str = "kfm-ops") -> None:
        self.settings = settings
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
            module = adapter(name)
            client = None
            try:
                kwargs = {"application_name": self.application_name} if name == "postgis" else {}
                client = module.open(section, write=write, **kwargs)
                module.ping(client)
            except KfmError as exc:
                self._failures[key] = exc
                raise
            except Exception as exc:  # noqa: BLE001 — any driver error means "unreachable"
                if client is not None:
                    with contextlib.suppress(Exception):  # best effort on a broken client
                        module.close(client)
                error = ServiceUnavailable(name, section.where, describe(exc))
                self._failures[key] = error
                raise error from None
            self._clients[key] = client
            return client

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
