"""Secrets: which configured values are secret, masking them in logs, and writing 0600 files.

devstack never puts a secret on a command line (``/proc/<pid>/cmdline`` is world-readable):
servers get theirs through the environment, stdin or a file that is private from the start.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path

SECRET_MARKERS = ("PASSWORD", "API_KEY", "SECRET", "TOKEN")
MASK = "***"


def secret_values(cfg: Mapping[str, str]) -> list[str]:
    """The configured secret values (passwords, keys, tokens), longest first."""
    found = {value for key, value in cfg.items()
             if key.startswith(("DEVSTACK_", "KFM_")) and any(m in key for m in SECRET_MARKERS) and value}
    return sorted(found, key=lambda v: (-len(v), v))


def redact(text: str, cfg: Mapping[str, str]) -> str:
    """``text`` with every configured secret value replaced by ``***``."""
    for value in secret_values(cfg):
        text = text.replace(value, MASK)
    return text


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` as a file only its owner can read (mode 0600).

    The file is created that way, under umask 077 with O_EXCL and mode 0600, and then renamed
    over ``path``: there is no moment at which it exists with a wider mode.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    old = os.umask(0o077)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    finally:
        os.umask(old)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
