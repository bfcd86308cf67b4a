"""Structured logging: JSON lines (readable on a TTY), with run_id and redaction.

Every event carries ``run_id``, ``environment`` and ``component``. The redaction
processor runs last before rendering, so nothing reaches a handler unmasked.
"""

from __future__ import annotations

import logging
import sys
import uuid
from collections.abc import Mapping, MutableMapping
from contextlib import suppress
from pathlib import Path
from typing import Any, TextIO

import structlog

from kfm_ops.paths import writable
from kfm_ops.redact import redact, redact_obj


def new_run_id() -> str:
    return str(uuid.uuid4())


def _redact_event(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> Mapping[str, Any]:
    if "exception" in event:
        event["exception"] = redact(str(event["exception"]))
    return redact_obj(event)  # type: ignore[no-any-return]


class _CurrentStderr:
    """Whatever ``sys.stderr`` is at the time of writing (pytest swaps it); logging never raises."""

    def write(self, text: str) -> int:
        try:
            return sys.stderr.write(text)
        except (ValueError, OSError):  # closed by a capture that ended: drop the line
            return 0

    def flush(self) -> None:
        with suppress(ValueError, OSError):
            sys.stderr.flush()

    def isatty(self) -> bool:
        try:
            return sys.stderr.isatty()
        except (ValueError, OSError):
            return False


def configure(
    *,
    run_id: str,
    environment: str,
    component: str,
    level: str = "info",
    log_file: Path | None = None,
    stream: TextIO | None = None,
) -> None:
    """Configure structlog once per process; later calls only rebind the context."""
    out: Any = stream or _CurrentStderr()
    if log_file is not None:
        writable(log_file, "KFM_LOG_FILE", make_parents=True)  # a usage error, before any work
        out = open(log_file, "a", encoding="utf-8")  # noqa: SIM115 — lives as long as the process
    renderer: Any = (structlog.dev.ConsoleRenderer(colors=False) if out.isatty()
                     else structlog.processors.JSONRenderer(sort_keys=True))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _redact_event,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(run_id=run_id, environment=environment, component=component)


def get_logger(**bind: Any) -> Any:
    if not structlog.is_configured():  # asked for before configure(): stderr and redacted all the same
        stderr: Any = _CurrentStderr()
        structlog.configure(processors=[structlog.processors.add_log_level, _redact_event,
                                        structlog.processors.JSONRenderer(sort_keys=True)],
                            logger_factory=structlog.PrintLoggerFactory(file=stderr))
    return structlog.get_logger().bind(**bind)
