"""Driver values to timestamps, numbers and codes (the real-server round trip is in test_database.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batch_exporter.values import (
    as_float,
    as_text,
    as_utc_datetime,
    check_stored_timestamps,
    epoch_number,
    read_epoch_columns,
)

TOKYO = ZoneInfo("Asia/Tokyo")
NEW_YORK = ZoneInfo("America/New_York")
# 2026-11-27 02:00:05 in Tokyo
MOMENT = datetime(2026, 11, 26, 17, 0, 5, tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    "value, expected",
    [
        (datetime(2026, 11, 27, 2, 0, 5), MOMENT),
        (datetime(2026, 11, 27, 2, 0, 5, tzinfo=TOKYO), MOMENT),
        (datetime(2026, 11, 26, 12, 0, 5, tzinfo=timezone(timedelta(hours=-5))), MOMENT),
        (date(2026, 11, 27), datetime(2026, 11, 26, 15, 0, tzinfo=UTC)),
        ("2026-11-27 02:00:05", MOMENT),
        ("2026-11-27T02:00:05", MOMENT),
        (" 2026-11-27 02:00:05 ", MOMENT),
        ("2026-11-26T17:00:05Z", MOMENT),
        ("2026-11-26 17:00:05z", MOMENT),
        ("2026-11-27T02:00:05+09:00", MOMENT),
        ("2026-11-27 02:00:05.250", MOMENT + timedelta(milliseconds=250)),
        ("2026-11-27 02:00:05.123456789", MOMENT + timedelta(microseconds=123456)),
        ("2026-11-27", datetime(2026, 11, 26, 15, 0, tzinfo=UTC)),
        (int(MOMENT.timestamp()), MOMENT),
        (MOMENT.timestamp() + 0.5, MOMENT + timedelta(milliseconds=500)),
        (Decimal(int(MOMENT.timestamp())) + Decimal("0.25"), MOMENT + timedelta(milliseconds=250)),
        (0, datetime(1970, 1, 1, tzinfo=UTC)),
        (None, None),
    ],
)
def test_timestamps_in_every_shape_become_aware_utc(value: object, expected: datetime | None) -> None:
    result = as_utc_datetime(value, TOKYO)
    assert result == expected
    if result is not None:
        assert result.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "value, expected",
    [
        ((MOMENT - EPOCH) // timedelta(milliseconds=1), MOMENT),
        ((MOMENT - EPOCH) // timedelta(milliseconds=1) + 250, MOMENT + timedelta(milliseconds=250)),
        (float((MOMENT - EPOCH) // timedelta(milliseconds=1)) + 0.5, MOMENT + timedelta(microseconds=500)),
        (Decimal((MOMENT - EPOCH) // timedelta(milliseconds=1)) + Decimal("0.001"), MOMENT + timedelta(microseconds=1)),
        (-1, EPOCH - timedelta(milliseconds=1)),
        (0, EPOCH),
    ],
)
def test_epoch_milliseconds_are_read_exactly(value: object, expected: datetime) -> None:
    assert as_utc_datetime(value, TOKYO, epoch_unit="milliseconds") == expected
    # text and datetimes do not change meaning with the unit
    assert as_utc_datetime("2026-11-27 02:00:05", TOKYO, epoch_unit="milliseconds") == MOMENT


@pytest.mark.parametrize("value", [10**20, float("inf"), Decimal("NaN"), Decimal("-Infinity")])
def test_epoch_milliseconds_out_of_range_name_the_unit_and_type(value: object) -> None:
    with pytest.raises(ValueError, match=f"epoch milliseconds of type {type(value).__name__} are not finite or out "
                                         "of range"):
        as_utc_datetime(value, TOKYO, epoch_unit="milliseconds")


def test_epoch_numbers_round_down_in_their_unit() -> None:
    moment = MOMENT + timedelta(microseconds=999_999)
    seconds = (MOMENT - EPOCH) // timedelta(seconds=1)
    assert epoch_number(moment, "seconds") == seconds
    assert epoch_number(moment, "milliseconds") == seconds * 1000 + 999
    assert epoch_number(EPOCH - timedelta(microseconds=1), "seconds") == -1
    assert epoch_number(EPOCH - timedelta(microseconds=1), "milliseconds") == -1


def test_epoch_columns_of_a_row_become_datetimes_and_errors_name_the_column() -> None:
    millis = (MOMENT - EPOCH) // timedelta(milliseconds=1)
    row = (7, None, "OK", millis, None, "extra")
    assert read_epoch_columns(row, {3: "started_at", 4: "ended_at"}, "milliseconds") == (7, None, "OK", MOMENT,
                                                                                        None, "extra")
    assert read_epoch_columns(row[:2], {3: "started_at"}, "seconds") == row[:2]
    with pytest.raises(ValueError, match="^column ended_at: epoch seconds of type int are not finite or out of range"):
        read_epoch_columns((1, None, "OK", 0, 10**20), {3: "started_at", 4: "ended_at"}, "seconds")


@pytest.mark.parametrize(
    "storage, sample, fragment",
    [
        ("auto", 1_795_834_800_250, "column c holds 13-digit numbers, too large for epoch seconds (auto reads"),
        ("epoch_seconds", Decimal("1795834800250.5"), "13-digit numbers, too large for epoch seconds (epoch_seconds)"),
        ("epoch_milliseconds", 1_795_834_800, "10-digit numbers, epoch seconds rather than milliseconds"),
        ("epoch_milliseconds", 1_795_834_800.5, "write `timestamps: epoch_seconds`"),
        ("epoch_milliseconds", 1_795_834_800_250_000, "16-digit numbers, beyond epoch milliseconds (microseconds"),
        ("auto", 1_795_834_800_250_000, "convert them to timestamps or epoch seconds in runs.query"),
        ("epoch_seconds", datetime(2026, 11, 28), "but column c holds values of type datetime"),
        ("epoch_milliseconds", "2026-11-28 01:30:04", "holds values of type str: leave timestamps out (auto)"),
    ],
)
def test_stored_values_that_contradict_the_setting_are_refused(storage: str, sample: object, fragment: str) -> None:
    with pytest.raises(ValueError) as caught:
        check_stored_timestamps(storage, sample, "column c")  # type: ignore[arg-type]
    assert fragment in str(caught.value)
    assert str(sample) not in str(caught.value)


@pytest.mark.parametrize(
    "storage, sample",
    [
        ("auto", None), ("auto", 1_795_834_800), ("auto", 1_795_834_800.25), ("auto", "2026-11-28 01:30:04"),
        ("auto", datetime(2026, 11, 28)), ("epoch_seconds", None), ("epoch_seconds", Decimal("1795834800.250")),
        ("epoch_milliseconds", 1_795_834_800_250), ("epoch_milliseconds", float("nan")),
    ],
)
def test_stored_values_that_fit_the_setting_pass(storage: str, sample: object) -> None:
    check_stored_timestamps(storage, sample, "column c")  # type: ignore[arg-type]


def test_naive_times_follow_the_zone_rules_of_that_day() -> None:
    summer = as_utc_datetime("2026-07-01 02:00:00", NEW_YORK)
    winter = as_utc_datetime("2026-12-01 02:00:00", NEW_YORK)
    assert summer is not None and summer.hour == 6  # EDT, UTC-4
    assert winter is not None and winter.hour == 7  # EST, UTC-5


@pytest.mark.parametrize(
    "value, fragment",
    [
        ("4111111111111111", "text of length 16 is not an ISO-8601 timestamp"),
        ("yesterday", "text of length 9"),
        (True, "bool"),
        (b"2026-11-27", "bytes"),
        (float("nan"), "float"),
        (float("inf"), "float"),
        (Decimal("NaN"), "Decimal"),
        (10**20, "int"),
        (object(), "object"),
    ],
)
def test_timestamp_errors_name_the_type_not_the_value(value: object, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment) as caught:
        as_utc_datetime(value, TOKYO)
    assert str(value) not in str(caught.value)


@pytest.mark.parametrize(
    "value, expected",
    [
        (3, 3.0),
        (2.5, 2.5),
        (Decimal("1234.56"), 1234.56),
        (True, 1.0),
        (False, 0.0),
        ("42", 42.0),
        (" -1.5e3 ", -1500.0),
        ("1", 1.0),  # PostgreSQL booleans arrive as '1' through psqlODBC
        (None, None),
    ],
)
def test_numbers(value: object, expected: float | None) -> None:
    assert as_float(value) == expected


@pytest.mark.parametrize(
    "value, fragment",
    [
        ("secret", "text of length 6"),
        ("4111111111111111x", "text of length 17"),
        (b"12", "bytes"),
        ([1], "list"),
        (datetime(2026, 1, 1), "datetime"),
        (10**400, "int is too large"),
    ],
)
def test_non_numbers_are_refused_without_echoing_them(value: object, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment) as caught:
        as_float(value)
    assert str(value) not in str(caught.value)


@pytest.mark.parametrize(
    "value, expected",
    [
        ("OK", "OK"),
        ("OK   ", "OK"),  # CHAR(5) comes back blank-padded from PostgreSQL
        (" RUN", " RUN"),
        ("認可済", "認可済"),
        (2, "2"),
        (Decimal(2), "2"),
        (Decimal("2.00"), "2"),
        (Decimal("2.50"), "2.5"),
        (Decimal("1E+2"), "100"),
        (2.0, "2"),
        (0.1, "0.1"),
        (True, "1"),
        (b"NG", "NG"),
        ("認可済".encode(), "認可済"),
        (None, None),
    ],
)
def test_codes(value: object, expected: str | None) -> None:
    assert as_text(value) == expected


@pytest.mark.parametrize("value", [b"\xff\xfe", Decimal("NaN"), float("inf"), datetime(2026, 1, 1), object()])
def test_codes_refuse_what_is_not_a_code(value: object) -> None:
    with pytest.raises(ValueError, match=type(value).__name__):
        as_text(value)


@given(st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)))
def test_iso_text_and_epoch_agree(moment: datetime) -> None:
    assert as_utc_datetime(moment.isoformat(sep=" "), TOKYO) == moment
    assert as_utc_datetime(Decimal(str(moment.timestamp())), TOKYO) == moment


@given(st.integers(min_value=-(10**12), max_value=10**12))
def test_integers_survive_as_code_and_number(number: int) -> None:
    assert as_text(number) == as_text(Decimal(number)) == str(number)
    assert as_float(str(number)) == float(number)
