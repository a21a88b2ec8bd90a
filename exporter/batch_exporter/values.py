"""Convert values as database drivers return them into the few types the sources need.

Errors name the value's type, never the value: a column may hold card numbers.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, time
from decimal import Decimal
from zoneinfo import ZoneInfo

_Number = int | float | Decimal


def as_utc_datetime(value: object, naive_tz: ZoneInfo) -> datetime | None:
    """DB value -> aware UTC datetime; naive values and dates are read in ``naive_tz``.

    Accepts datetime, date, ISO-8601 text (as SQLite stores it: space or 'T', optional fraction and
    offset or 'Z') and epoch seconds (int, float, Decimal). None stays None. A naive time that falls in
    a DST gap or overlap is resolved with ``fold=0`` (the earlier offset).
    """
    if value is None:
        return None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime.combine(value, time())
    elif isinstance(value, str):
        moment = _parse_iso(value)
    elif isinstance(value, bool):
        raise ValueError("expected a timestamp, got a bool")
    elif isinstance(value, (int, float, Decimal)):
        return _from_epoch(value)
    else:
        raise ValueError(f"expected a timestamp, got a value of type {type(value).__name__}")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=naive_tz)
    return moment.astimezone(UTC)


def as_float(value: object) -> float | None:
    """DB value -> float: int, float, Decimal, bool and numeric text. None stays None."""
    if value is None:
        return None
    if isinstance(value, (bool, int, float, Decimal)):
        try:
            return float(value)
        except OverflowError:
            raise ValueError(f"number of type {type(value).__name__} is too large for a float") from None
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            raise ValueError(f"text of length {len(value)} is not a number") from None
    raise ValueError(f"expected a number, got a value of type {type(value).__name__}")


def as_text(value: object) -> str | None:
    """DB value -> text for codes such as statuses: str, int, bool, Decimal, integral float, UTF-8 bytes.

    Trailing blanks are dropped because CHAR(n) columns come back blank-padded on some drivers.
    Numbers lose insignificant zeros (``Decimal('2.00')`` -> ``'2'``) so that ``2`` matches a configured ``"2"``.
    """
    if value is None:
        return None
    if isinstance(value, str):
        return value.rstrip(" ")
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        return _decimal_text(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("expected a code, got a non-finite float")
        return _decimal_text(Decimal(repr(value)))
    if isinstance(value, (bytes, bytearray, memoryview)):
        try:
            return bytes(value).decode("utf-8").rstrip(" ")
        except UnicodeDecodeError:
            raise ValueError(f"{type(value).__name__} of length {len(value)} is not UTF-8 text") from None
    raise ValueError(f"expected a code, got a value of type {type(value).__name__}")


def _parse_iso(text: str) -> datetime:
    stripped = text.strip()
    if stripped.endswith(("z", "Z")):
        stripped = stripped[:-1] + "+00:00"
    try:
        return datetime.fromisoformat(stripped)
    except ValueError:
        raise ValueError(f"text of length {len(text)} is not an ISO-8601 timestamp") from None


def _from_epoch(seconds: _Number) -> datetime:
    try:
        if isinstance(seconds, Decimal) and not seconds.is_finite():
            raise ValueError
        return datetime.fromtimestamp(float(seconds), tz=UTC)
    except (OverflowError, OSError, ValueError):
        kind = type(seconds).__name__
        raise ValueError(f"epoch seconds of type {kind} are not finite or out of range") from None


def _decimal_text(number: Decimal) -> str:
    if not number.is_finite():
        raise ValueError("expected a code, got a non-finite Decimal")
    if number == number.to_integral_value():
        return str(int(number))
    return format(number.normalize(), "f")
