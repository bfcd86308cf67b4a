"""Reading OpenSearch's own units: byte sizes and disk watermarks."""

from __future__ import annotations

import re


def parse_byte_size(text: str) -> int:
    """OpenSearch byte sizes (``10gb``, ``500mb``, ``123b``) → bytes."""
    match = re.fullmatch(r"\s*([\d.]+)\s*([kmgtp]?b?)\s*", text.lower())
    if not match:
        raise ValueError(f"not a byte size: {text!r}")
    unit = match.group(2).rstrip("b")
    factor = 1024 ** ("kmgtp".index(unit) + 1) if unit else 1
    return int(float(match.group(1)) * factor)


def watermark_exceeded(setting: str, total_bytes: int, available_bytes: int) -> tuple[bool, str]:
    """Whether a disk watermark (``"90%"``, ``"0.9"`` or a free-space size ``"10gb"``) is crossed.

    Returns the verdict and a description of the comparison for messages.
    """
    used = total_bytes - available_bytes
    value = setting.strip().lower()
    if value.endswith("%") or re.fullmatch(r"[\d.]+", value):
        ratio = float(value.rstrip("%")) / 100 if value.endswith("%") else float(value)
        used_ratio = used / total_bytes if total_bytes else 0.0
        return used_ratio >= ratio, f"disk used {used_ratio:.1%} vs watermark {setting}"
    minimum_free = parse_byte_size(value)
    return available_bytes <= minimum_free, f"disk free {available_bytes} B vs watermark {setting} free"
