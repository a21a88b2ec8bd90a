"""Convert values as database drivers return them into the few types the sources need.

Errors name the value's type, never the value: a column may hold card numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Literal, TypeGuard
from zoneinfo import ZoneInfo

_Number = int | float | Decimal

# How a run table keeps started_at/ended_at (the `runs.timestamps` setting): "auto" reads what the driver
# returns (datetime, ISO text, or a number as epoch seconds); the epoch forms declare numbers in that unit.
TimestampStorage = Literal["auto", "epoch_seconds", "epoch_milliseconds"]
EpochUnit = Literal["seconds", "milliseconds"]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_UTC_ZONE = ZoneInfo("UTC")
# 10**11 is 5138-11-16 in epoch seconds but 1973-03-03 in epoch milliseconds: a run table's latest start
# is below it in seconds and above it in milliseconds, whatever the table's age.
_MILLISECONDS_FROM = 10**11
_BEYOND_MILLISECONDS = 10**14  # 5138 again, in milliseconds
_UNIT_STEP: dict[EpochUnit, timedelta] = {"seconds": timedelta(seconds=1), "milliseconds": timedelta(milliseconds=1)}


def as_utc_datetime(value: object, naive_tz: ZoneInfo, *, epoch_unit: EpochUnit = "seconds") -> datetime | None:
    """DB value -> aware UTC datetime; naive values and dates are read in ``naive_tz``.

    Accepts datetime, date, ISO-8601 text (as SQLite stores it: space or 'T', optional fraction and
    offset or 'Z') and epoch numbers (int, float, Decimal) in ``epoch_unit``. None stays None. A naive
    time that falls in a DST gap or overlap is resolved with ``fold=0`` (the earlier offset).
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
        return _from_epoch(value) if epoch_unit == "seconds" else _from_epoch_milliseconds(value)
    else:
        raise ValueError(f"expected a timestamp, got a value of type {type(value).__name__}")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=naive_tz)
    return moment.astimezone(UTC)


def epoch_number(moment: datetime, unit: EpochUnit) -> int:
    """An aware ``moment`` as whole epoch seconds or milliseconds, rounded down (exact integer arithmetic)."""
    return (moment - EPOCH) // _UNIT_STEP[unit]


def stored_epoch_unit(storage: TimestampStorage, sample: object) -> EpochUnit | None:
    """The unit of the numbers a run table keeps its times in, or None when it keeps datetimes or text.

    ``sample`` is a stored start time (None when there is none yet): under "auto" a number means epoch
    seconds, anything else no epoch at all.
    """
    if storage == "epoch_seconds":
        return "seconds"
    if storage == "epoch_milliseconds":
        return "milliseconds"
    return "seconds" if _is_number(sample) else None


def check_stored_timestamps(storage: TimestampStorage, sample: object, column: str) -> None:
    """Raise ValueError when a stored start time ``sample`` (of ``column``) contradicts ``storage``.

    The message says what ``runs.timestamps`` should be instead; it names the value's type and its
    number of digits, never the value.
    """
    if sample is None:
        return
    if not _is_number(sample):
        if storage != "auto":
            raise ValueError(
                f"{storage} declares epoch numbers, but {column} holds values of type {type(sample).__name__}: "
                "leave timestamps out (auto) for TIMESTAMP, DATETIME, DATETIME2 and ISO text columns")
        return
    magnitude = abs(Decimal(sample))
    if not magnitude.is_finite():
        return  # reading the row reports it
    digits = len(str(int(magnitude)))
    if magnitude >= _BEYOND_MILLISECONDS:
        raise ValueError(
            f"{column} holds {digits}-digit numbers, beyond epoch milliseconds (microseconds, or another "
            "format?): convert them to timestamps or epoch seconds in runs.query")
    if magnitude >= _MILLISECONDS_FROM and storage != "epoch_milliseconds":
        what = "auto reads numbers as epoch seconds" if storage == "auto" else "epoch_seconds"
        raise ValueError(
            f"{column} holds {digits}-digit numbers, too large for epoch seconds ({what}): if they are "
            "epoch milliseconds write `timestamps: epoch_milliseconds`; other number formats need "
            "runs.query converting them to timestamps")
    if magnitude < _MILLISECONDS_FROM and storage == "epoch_milliseconds":
        raise ValueError(
            f"{column} holds {digits}-digit numbers, epoch seconds rather than milliseconds (those have 12 "
            "or 13 digits since 1973): write `timestamps: epoch_seconds`")


def read_epoch_columns(row: Sequence[object], columns: Mapping[int, str], unit: EpochUnit) -> tuple[object, ...]:
    """``row`` with the numbers at the positions of ``columns`` read as epoch times in ``unit`` (aware UTC
    datetimes); other values stay as they are. A ValueError names the column. A tuple without such
    numbers is returned as it is: most tables keep their times as timestamps, and a fleet's window may
    hold a hundred thousand rows."""
    size = len(row)
    for position in columns:
        if position < size and isinstance(row[position], (int, float, Decimal)):  # bool too: read below
            break
    else:
        return row if isinstance(row, tuple) else tuple(row)
    out = list(row)
    for position, column in columns.items():
        value = out[position] if position < size else None
        if _is_number(value):
            try:
                out[position] = as_utc_datetime(value, _UTC_ZONE, epoch_unit=unit)
            except ValueError as exc:
                raise ValueError(f"column {column}: {exc}") from None
    return tuple(out)


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


def _from_epoch_milliseconds(milliseconds: _Number) -> datetime:
    try:
        if isinstance(milliseconds, int):
            return EPOCH + timedelta(milliseconds=milliseconds)
        micro = Decimal(milliseconds) * 1000  # exact for Decimal and float alike, rounded once below
        return EPOCH + timedelta(microseconds=int(micro.to_integral_value(ROUND_HALF_EVEN)))
    except (OverflowError, ValueError, ArithmeticError):
        kind = type(milliseconds).__name__
        raise ValueError(f"epoch milliseconds of type {kind} are not finite or out of range") from None


def _is_number(value: object) -> TypeGuard[_Number]:
    return isinstance(value, (int, float, Decimal)) and not isinstance(value, bool)


def _decimal_text(number: Decimal) -> str:
    if not number.is_finite():
        raise ValueError("expected a code, got a non-finite Decimal")
    if number == number.to_integral_value():
        return str(int(number))
    return format(number.normalize(), "f")
