"""Card numbers and long digit runs hidden in text shown to people."""
from __future__ import annotations

import re
from datetime import datetime

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from batch_exporter.masking import clean_line, luhn_valid, mask_cards, mask_digits, mask_path, strip_invisible


@pytest.mark.parametrize(("text", "masked"), [
    ("card=4111111111111111 ok", "card=************1111 ok"),
    ("4111 1111 1111 1111", "**** **** **** 1111"),
    ("4111-1111-1111-1111", "****-****-****-1111"),
    ("4111 - 1111 - 1111 - 1111", "**** - **** - **** - 1111"),
    ("amex 3782-822463-10005", "amex ****-******-*0005"),
    ("full width ４１１１１１１１１１１１１１１１", "full width ************１１１１"),
    ("ts 1732662000123", "ts *********0123"),  # any run of 12+ digits, not only card numbers
    ("12 4111111111111111 2026", "12 **************** 2026"),  # a trailing group hides the whole card
    ("exactly 12 digits 123456789012", "exactly 12 digits ********9012"),
    ("dots 4111.1111.1111.1111", "dots ****.****.****.1111"),
    ("4111/1111/1111/1111; 4111_1111_1111_1111", "****/****/****/1111; ****_****_****_1111"),
    ("form pan=4111+1111+1111+1111&x=1", "form pan=****+****+****+1111&x=1"),
    ("url pan=4111%201111%201111%201111", "url pan=****%20****%20****%201111"),
    ("nbsp 4111\u00a01111\u00a01111\u00a01111", "nbsp ****\u00a0****\u00a0****\u00a01111"),
    ("en dash 3782\u2013822463\u201310005", "en dash ****\u2013******\u2013*0005"),
    ("minus 4111\u22121111\u22121111\u22121111", "minus ****\u2212****\u2212****\u22121111"),
    ("thin 4111\u20091111\u202f1111\u30001111", "thin ****\u2009****\u202f****\u30001111"),
    ("ime 4111\u30fc1111\u30fb1111\uff0e1111", "ime ****\u30fc****\u30fb****\uff0e1111"),
    ("zero width 4111\u200b1111\u00ad1111\u20601111", "zero width ****\u200b****\u00ad****\u20601111"),
    ("line break 4111\n1111\n1111\n1111", "line break ****\n****\n****\n1111"),
    ("mixed 4111. 1111 /1111\u2014 1111", "mixed ****. **** /****\u2014 1111"),
])
def test_masks_card_numbers_and_long_runs(text: str, masked: str) -> None:
    assert mask_digits(text) == masked


@pytest.mark.parametrize("text", [
    "exec_id=12 2026-11-27 02:00:13.123 ERROR",  # dates and times beside a number stay readable
    "11 digits 12345678901",
    "chunk 2/5 sent (13 requests); done 26/66 approved=24",
    "2026/11/27 02:22:32.011 [ERROR] rc=-110",
    "2026-11-27 02:00:01.123 host 10.1.2.3 port 5432",
    "from 192.168.100.200:5432 at 2026.11.27 02:00:01.123456+09:00",  # an address of 12 digits
    "build 1.123.456.7890 file_2026_11_27.log 12.5%20 done",
])
def test_leaves_short_numbers_readable(text: str) -> None:
    assert mask_digits(text) == text


def test_keep_last_is_bounded() -> None:
    assert mask_digits("4111111111111111", keep_last=0) == "*" * 16
    with pytest.raises(ValueError, match="between 0 and 4"):
        mask_digits("4111111111111111", keep_last=6)


def test_invisible_characters_cannot_split_a_number() -> None:
    hidden = "4\x001\u200b1\x1b1" + "1" * 12
    assert strip_invisible(hidden) == "4111111111111111"
    assert clean_line(f"pan {hidden}") == "pan ************1111"
    assert clean_line("a\tb\u2028c\x1b[31m") == "a b c[31m"


def test_clean_line_cuts_width_after_masking() -> None:
    line = "x" * 190 + " 4111111111111111"
    cleaned = clean_line(line, width=200)
    assert len(cleaned) == 200 and cleaned.endswith("…") and "411111111" not in cleaned
    assert clean_line("short", width=200) == "short"


@pytest.mark.parametrize("card", ["4111111111111111", "4111.1111.1111.1111", "4111%201111%201111%201111"])
def test_a_huge_line_never_shows_part_of_a_number_at_the_cut(card: str) -> None:
    # almost all invisible: the first 4 KiB hold the start of a card number only
    line = "\x00" * 4088 + card + " tail"
    cleaned = clean_line(line)
    assert _shown_digits(cleaned) == "" and cleaned.startswith("****")


# Every kind of separator masking.py knows, a few of each family.
_SEPARATOR_CHARS = (
    " -./_+\t\n\u00a0\u2009\u202f\u3000\u2010\u2011\u2012\u2013\u2014\u2015\u2212\uff0d\u30fc"
    "\u00b7\u30fb\uff0e\uff0f\uff3f\uff0b\u200b\u00ad\u2060\ufeff\x00"
)
_SEPARATOR = st.one_of(st.sampled_from(_SEPARATOR_CHARS), st.sampled_from(["%20", "%2D", "%2e", "%2F", "%5F"]))
_JOINER = st.lists(_SEPARATOR, min_size=1, max_size=3).map("".join)
_TEXT = st.text(alphabet=st.characters(blacklist_categories=["Nd"]), max_size=30)
_ESCAPES = re.compile(r"%[0-9A-Fa-f]{2}")
_ADDRESS = re.compile(r"(?:25[0-5]|2[0-4]\d|1\d\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d)){3}")


@st.composite
def written_card(draw: st.DrawFn) -> tuple[str, str]:
    """(digits, as written): 12-19 digits, in groups of 3 or more joined by any mix of 1-3 separators."""
    digits = draw(st.text(alphabet="0123456789", min_size=12, max_size=19))
    if not draw(st.booleans()):
        return digits, digits
    groups, rest = [], digits
    while len(rest) > 6:
        size = draw(st.integers(3, min(6, len(rest) - 3)))
        groups.append(rest[:size])
        rest = rest[size:]
    written = groups[0] if groups else rest
    for group in [*groups[1:], rest] if groups else []:
        written += draw(_JOINER) + group
    return digits, written


def _shown_digits(text: str) -> str:
    return re.sub(r"\D", "", _ESCAPES.sub("", text))


@given(written_card(), _TEXT, _TEXT)
def test_no_more_than_the_last_four_digits_survive(card: tuple[str, str], before: str, after: str) -> None:
    digits, written = card
    assume(not _ADDRESS.fullmatch(written))  # 12 digits written as an IPv4 address stay readable
    for shown in (mask_digits(before + written + after), clean_line(before + written + after, width=80)):
        visible = _shown_digits(shown)
        assert visible in (digits[-4:], digits[-4:][: len(visible)])


@given(st.datetimes(), st.ip_addresses(v=4), st.integers(0, 99999))
def test_dates_times_and_addresses_stay_readable(moment: datetime, address: object, small: int) -> None:
    for text in (f"{moment:%Y-%m-%d %H:%M:%S}.{moment.microsecond // 1000:03d} host {address} rc={small}",
                 f"[{moment:%Y/%m/%d %H:%M:%S.%f}] from {address}:{small} took {small / 7:.3f}s",
                 f"{moment:%Y-%m-%dT%H:%M:%S.%f}+09:00 {address}"):
        assert mask_digits(text) == text


@given(st.text(max_size=60).filter(lambda t: sum(ch.isdigit() for ch in t) < 12))
def test_text_with_few_digits_is_unchanged(text: str) -> None:
    assert mask_digits(text) == text


# --- card numbers with any separator (issue 11, item 6) ------------------------------------------

_CARD_SEPARATORS = [",", ":", "|", "=", "*", "#", "\\", ";", "'", "~", "^", " ", "-", ".", "/", "_", "\u00a0",
                    "%2C", "%3A", "%7C", "%3D", "%2A", "%23", "%5C", "%20", "%2c", "%7c"]
_NO_DIGITS = st.text(alphabet=st.characters(blacklist_categories=["Nd"], blacklist_characters="%"), max_size=20)


def _luhn_complete(body: str) -> str:
    """`body` with the check digit that makes it Luhn-valid appended (independent of masking.py)."""
    total = 0
    for i, ch in enumerate(reversed(body)):
        value = int(ch) * (2 if i % 2 == 0 else 1)
        total += value // 10 + value % 10
    return body + str((10 - total % 10) % 10)


@st.composite
def luhn_card(draw: st.DrawFn) -> tuple[str, str]:
    """(digits, as written): a Luhn-valid 13-19 digit number in random groups, one separator repeated."""
    length = draw(st.integers(13, 19))
    body = draw(st.sampled_from("123456789")) + draw(st.text(alphabet="0123456789", min_size=length - 2,
                                                             max_size=length - 2))
    digits = _luhn_complete(body)
    cuts = sorted(draw(st.sets(st.integers(1, length - 1), max_size=length - 1)))
    groups = [digits[a:b] for a, b in zip([0, *cuts], [*cuts, length], strict=True)]
    separator = draw(st.sampled_from(_CARD_SEPARATORS))
    if draw(st.booleans()) and separator not in (" ", "\u00a0"):
        separator = f" {separator} "
    return digits, separator.join(groups)


@pytest.mark.parametrize(("text", "masked"), [
    ("4,111,111,111,111,111", "*,***,***,***,**1,111"),
    ("4111:1111:1111:1111", "****:****:****:1111"),
    ("pan=4111|1111|1111|1111|", "pan=****|****|****|1111|"),
    ("4111=1111=1111=1111 4111#1111#1111#1111", "****=****=****=1111 ****#****#****#1111"),
    ("4111\\1111\\1111\\1111", "****\\****\\****\\1111"),
    ("q=4111%2C1111%2C1111%2C1111&x=%2C", "q=****%2C****%2C****%2C1111&x=%2C"),
    ("id|12|4111|1111|1111|1111|x", "id|12|****|****|****|1111|x"),  # the card inside a longer chain
])
def test_masks_card_numbers_whatever_the_separator(text: str, masked: str) -> None:
    assert mask_digits(text) == masked
    assert mask_cards(text) == masked


@given(luhn_card(), _NO_DIGITS, _NO_DIGITS)
def test_a_luhn_valid_number_never_shows_more_than_its_last_four(card: tuple[str, str], before: str,
                                                                 after: str) -> None:
    digits, written = card
    for shown in (mask_digits(before + written + after), mask_cards(before + written + after),
                  mask_path(f"/logs/{written}/app.log"), clean_line(before + written + after, width=400)):
        assert _shown_digits(shown) == digits[-4:]


@given(st.lists(st.text(alphabet="0123456789", min_size=4, max_size=4), min_size=4, max_size=4),
       st.sampled_from(_CARD_SEPARATORS))
def test_card_masking_leaves_luhn_invalid_numbers_alone(groups: list[str], separator: str) -> None:
    assume(not luhn_valid("".join(groups)))  # the only window of whole groups of 13-19 digits
    text = f"ref {separator.join(groups)} ok"
    assert mask_cards(text) == text


# up to 11 digits: 12 or more are masked whatever they are (see masking.py)
_AMOUNT = st.builds(lambda n, cents, sep: f"{n:,}".replace(",", sep) + f".{cents:02d}",
                    st.integers(0, 99_999_999_999), st.integers(0, 99), st.sampled_from([",", "'", " ", "_"]))


@given(st.datetimes(), _AMOUNT, st.integers(0, 10**6))
def test_timestamps_and_amounts_stay_readable(moment: datetime, amount: str, count: int) -> None:
    epoch = int((moment - datetime(1970, 1, 1)).total_seconds()) % 10**10
    for text in (f"{moment:%Y-%m-%dT%H:%M:%S.%f}Z amount={amount} JPY count={count}",
                 f"{moment:%Y/%m/%d %H:%M:%S} | {amount} | {count} | {moment:%H:%M:%S}",
                 f"{moment:%d.%m.%Y %H:%M} total {amount}; epoch {epoch}"):
        assert mask_digits(text) == text
        assert mask_cards(text) == text
