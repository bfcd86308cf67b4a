"""Paths in settings and options: where a relative one points, and whether an output can be written.

A relative path in the settings means the operator's directory, ``KFM_BASE_DIR`` — set by
:func:`kfm_ops.checkrun.run_pytest` for the check runs it starts elsewhere (isolated), the
current directory otherwise.

A run that cannot write its report or its log must say so before it connects anywhere,
not after an action has changed something: a bad path is a usage error naming the option.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from kfm_ops.errors import UsageError

BASE_DIR = "KFM_BASE_DIR"


def anchored(path: str | Path) -> Path:
    """``path`` as the operator meant it: ``~`` expanded, a relative one under ``KFM_BASE_DIR`` if set."""
    target = Path(path).expanduser()
    base = os.environ.get(BASE_DIR)
    return target if target.is_absolute() or not base else Path(base) / target


def writable(path: str | Path, option: str, *, make_parents: bool = False) -> Path:
    """``path`` if a file can be written there (created, appended or replaced), else :class:`UsageError`.

    Nothing is left behind: an existing file is opened for appending and closed unchanged;
    for a new one, a probe file is created in its folder and removed.
    """
    if not str(path).strip():
        raise UsageError(f"{option} is empty", hint=f"name a file, or leave {option} out")
    target = Path(path)
    hint = f"name a file {option} can write to (an existing folder you may write in)"
    if target.is_dir():
        raise UsageError(f"{option} {target} is a folder", hint="name a file in it")
    try:
        if make_parents:
            target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():  # non-blocking: a FIFO nobody reads fails here instead of hanging
            os.close(os.open(target, os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK))
        else:
            fd, probe = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
            os.close(fd)
            os.unlink(probe)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise UsageError(f"{option} {target}: cannot write there ({reason})", hint=hint) from None
    return target
