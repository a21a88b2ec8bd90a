"""Human units in configuration: durations ('90m', '14d') and sizes ('4GiB')."""
from __future__ import annotations

import re

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_DURATION_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}

_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)?", re.IGNORECASE)
_SIZE_FACTOR = {
    "b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4,
}

DURATION_HINT = "a duration such as 500ms, 30s, 15m, 1h30m or 14d (or a number of seconds)"
SIZE_HINT = "a size such as 512KiB, 64MiB, 4GiB or 4GB (or a number of bytes)"


def parse_duration(value: object) -> float:
    """Seconds from '1h30m'-style text or a plain non-negative number."""
    if isinstance(value, bool):
        raise ValueError(f"expected {DURATION_HINT}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"expected {DURATION_HINT}; negative durations make no sense")
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"expected {DURATION_HINT}")
    text = value.strip()
    pos = 0
    total = 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _DURATION_SECONDS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(f"expected {DURATION_HINT}")
    return total


def parse_size(value: object) -> int:
    """Bytes from '4GiB'-style text (binary and decimal prefixes) or a plain non-negative integer."""
    if isinstance(value, bool):
        raise ValueError(f"expected {SIZE_HINT}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"expected {SIZE_HINT}; negative sizes make no sense")
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected {SIZE_HINT}")
    match = _SIZE.fullmatch(value.strip())
    if not match:
        raise ValueError(f"expected {SIZE_HINT}")
    factor = _SIZE_FACTOR[(match.group(2) or "b").lower()]
    return int(float(match.group(1)) * factor)


def format_duration(seconds: float) -> str:
    """Compact text for a duration, for messages ('1h30m', '45s')."""
    whole = int(seconds)
    if whole != seconds or whole == 0:
        return f"{seconds:g}s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, whole = divmod(whole, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
