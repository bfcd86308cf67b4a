"""Errors and console output shared by every devstack module."""

from __future__ import annotations

import sys


class StackError(Exception):
    """A failure that ends the command with a one-paragraph message."""


class ProbeError(Exception):
    """A readiness probe did not succeed (yet)."""


def say(msg: str) -> None:
    print(msg, flush=True)


def warn(msg: str) -> None:
    print(f"devstack: warning: {msg}", file=sys.stderr, flush=True)
