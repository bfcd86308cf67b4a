"""The kfm-ops exception tree and the exit codes it maps to.

::

    KfmError                      exit 70  (anything unexpected but ours)
     ├── UsageError               exit 2   bad flags, bad settings, unknown names
     │    └── NotConfigured       exit 2   a service has no settings
     ├── ServiceError             exit 4   a service failed: (service, fault class, where)
     ├── ContractViolation        exit 1   a store disagrees with the contract
     ├── ActionRefused            exit 3   a safety gate said no; nothing changed
     │    └── LockHeld            exit 3   another run holds the action's lock
     ├── ActionFailed             exit 5   a step of an action failed; live state kept
     └── Interrupted              exit 5   SIGTERM / Ctrl-C stopped an action at a safe point

Every error carries context (service, step, gate …) and a ``hint`` naming what to
do. Messages pass through :mod:`kfm_ops.redact` so they never carry a secret.
Driver exceptions never travel past a store: each store translates them, by type,
into a :class:`ServiceError` (:mod:`kfm_ops.faults` holds the one table).
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

from kfm_ops.redact import redact


class ExitCode(IntEnum):
    """Documented exit codes, shared by ``kfm-maint`` and the check runner."""

    OK = 0
    CHECKS_FAILED = 1
    USAGE = 2
    REFUSED = 3
    UNREACHABLE = 4
    ACTION_FAILED = 5
    INTERNAL = 70


class KfmError(Exception):
    """Base of every error kfm-ops raises on purpose."""

    exit_code: ExitCode = ExitCode.INTERNAL

    def __init__(self, message: str, *, hint: str = "", **context: Any) -> None:
        self.message = redact(message)
        self.hint = redact(hint)
        self.context = {k: redact(str(v)) for k, v in context.items()}
        super().__init__(self.message)

    def __str__(self) -> str:
        return f"{self.message} — {self.hint}" if self.hint else self.message


class UsageError(KfmError):
    """Bad input: a flag, an argument or a setting. Nothing was attempted."""

    exit_code = ExitCode.USAGE


class NotConfigured(UsageError):
    """A service has no settings; its checks are skipped (or fail under --kfm-require-all)."""

    def __init__(self, service: str) -> None:
        self.service = service
        super().__init__(
            f"{service} is not configured",
            hint=f"set KFM_{service.upper()}__URL (or __DSN) to check it",
            service=service,
        )


class ServiceError(KfmError):
    """A configured service failed: it is unreachable, timed out, refused us, or answered an error.

    ``fault`` is the fault class (see :mod:`kfm_ops.faults`); ``status`` the HTTP status when
    the service answered one.
    """

    exit_code = ExitCode.UNREACHABLE

    def __init__(self, service: str, where: str, fault: str, detail: str, *, status: int | None = None) -> None:
        self.service = service
        self.where = where
        self.fault = fault
        self.status = status
        self.detail = redact(detail)
        from kfm_ops.faults import UNREACHABLE  # the table module imports this one

        verb = "unreachable" if fault in UNREACHABLE else "failed"
        super().__init__(
            f"{service} {verb} at {where}: {fault} ({self.detail})",
            hint="check the service is up (local stack: devstack/stack status) and the KFM_"
            + service.upper()
            + "__* settings",
            service=service,
            fault=fault,
        )

    @property
    def reason(self) -> str:
        """``fault (detail)``: the part after the place, for messages that name the place themselves."""
        return f"{self.fault} ({self.detail})"


class ContractViolation(KfmError):
    """A store's live state disagrees with the KFM contract."""

    exit_code = ExitCode.CHECKS_FAILED


class ActionRefused(KfmError):
    """A safety gate refused a mutating action before it changed anything."""

    exit_code = ExitCode.REFUSED


class LockHeld(ActionRefused):
    """Another run of the same action holds its lock."""

    def __init__(self, action: str, holder: str) -> None:
        super().__init__(
            f"{action} is already running (holder run_id={holder})",
            hint="wait for that run to finish; a killed run releases its lock on disconnect",
            action=action,
            holder=holder,
        )


class ActionFailed(KfmError):
    """A step of a mutating action failed; the live state was left as it was."""

    exit_code = ExitCode.ACTION_FAILED

    def __init__(self, action: str, step: str, reason: str, *, hint: str = "") -> None:
        self.action = action
        self.step = step
        super().__init__(f"{action} failed at step '{step}': {reason}", hint=hint, action=action, step=step)


class Interrupted(KfmError):
    """SIGTERM or Ctrl-C stopped an action at a safe point; the live state was left as it was."""

    exit_code = ExitCode.ACTION_FAILED
