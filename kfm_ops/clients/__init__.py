"""Service adapters: a registry of name → module, imported lazily.

Each adapter module provides ``open(section, *, write) -> client``, ``ping(client)``,
``version(client) -> str`` and ``close(client)``. Read clients are read-only by
construction; write clients exist only behind a safety gate (:mod:`kfm_ops.hub`).
"""

from __future__ import annotations

from types import ModuleType

from kfm_ops.registry import resolve

REGISTRY: dict[str, str] = {
    "postgis": "kfm_ops.clients.postgis",
    "graph": "kfm_ops.clients.graph",
    "search": "kfm_ops.clients.search",
    "cache": "kfm_ops.clients.cache",
    "policy": "kfm_ops.clients.policy",
    "llm": "kfm_ops.clients.llm",
}


def adapter(name: str) -> ModuleType:
    """The adapter module for service ``name``."""
    module: ModuleType = resolve(REGISTRY, name, "service")
    return module


_DRIVER_SERVICE = {"psycopg": "postgis", "neo4j": "graph", "opensearchpy": "search", "redis": "cache",
                   "urllib3": "search", "httpx": "http", "httpcore": "http"}


def service_of(exc: BaseException) -> str | None:
    """Which service a driver exception came from (by the driver that raised it), if any."""
    for cause in (exc, exc.__cause__, exc.__context__):
        if cause is not None:
            package = type(cause).__module__.split(".", 1)[0]
            if package in _DRIVER_SERVICE:
                return _DRIVER_SERVICE[package]
    return None


_OS_FAULTS: tuple[tuple[type[BaseException], str], ...] = (
    (ConnectionRefusedError, "connection refused"),
    (ConnectionResetError, "connection reset"),
    (BrokenPipeError, "connection closed"),
    (ConnectionAbortedError, "connection closed"),
    (TimeoutError, "timeout"),
)
_TEXT_FAULTS = (
    ("refused", "connection refused"), ("reset by peer", "connection reset"), ("timed out", "timeout"),
    ("timeout", "timeout"), ("reset", "connection reset"), ("authentication", "authentication failed"),
    ("unauthorized", "authentication failed"), ("wrongpass", "authentication failed"),
    ("password", "authentication failed"), ("eof", "connection closed"), ("closed", "connection closed"),
    ("defunct", "connection closed"), ("connection broken", "connection closed"),
    ("incompleteread", "connection closed"),
)


def _chain(exc: BaseException) -> list[BaseException]:
    found: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in found and len(found) < 10:
        found.append(current)
        current = current.__cause__ or current.__context__
    return found


def fault_class(exc: BaseException) -> str | None:
    """The fault behind a driver error: the OS error in its chain first, else its words."""
    chain = _chain(exc)
    for cause in chain:
        for kind, fault in _OS_FAULTS:
            if isinstance(cause, kind):
                return fault
    text = " ".join(str(c) for c in chain).lower()
    return next((fault for needle, fault in _TEXT_FAULTS if needle in text), None)


def describe(exc: BaseException) -> str:
    """A one-line, secret-free reason naming the fault class (refused, timeout, auth, reset …)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    fault = fault_class(exc)
    detail = f"{type(exc).__name__}: {text[:200]}"
    return f"{fault} ({detail})" if fault else detail
