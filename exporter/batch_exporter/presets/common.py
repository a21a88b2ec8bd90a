"""What every preset uses: the shape of what it generates, its parameter check, SQL literals."""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

Generated = dict[str, dict[str, Any]]


def known_keys(params: Mapping[str, Any], allowed: Mapping[str, str]) -> None:
    """ValueError for a parameter the preset does not take (a typo must not be ignored)."""
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        shown = ", ".join(f"{key} ({what})" for key, what in allowed.items())
        raise ValueError(f"unknown parameter {unknown[0]!r}; this preset takes: {shown}")


def sql_text(value: str) -> str:
    """A SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def text_param(params: Mapping[str, Any], key: str, pattern: re.Pattern[str], what: str,
               default: str | None = None) -> str:
    """A text parameter that must match `pattern` (ValueError naming it otherwise); required unless it has a
    `default`."""
    value = params.get(key, default)
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise ValueError(f"{key}: expected {what}, got {value!r}")
    return value
