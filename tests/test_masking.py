"""Card numbers and long digit runs hidden in text shown to people."""
from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batch_exporter.masking import clean_line, mask_digits, strip_invisible


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
])
def test_masks_card_numbers_and_long_runs(text: str, masked: str) -> None:
    assert mask_digits(text) == masked


@pytest.mark.parametrize("text", [
    "exec_id=12 2026-11-27 02:00:13.123 ERROR",  # dates and times beside a number stay readable
    "11 digits 12345678901",
    "chunk 2/5 sent (13 requests); done 26/66 approved=24",
    "2026/11/27 02:22:32.011 [ERROR] rc=-110",
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


def test_a_huge_line_never_shows_part_of_a_number_at_the_cut() -> None:
    # almost all invisible: the first 4 KiB hold the start of a card number only
    line = "\x00" * 4090 + "4111111111111111 tail"
    cleaned = clean_line(line)
    assert "411111" not in cleaned and cleaned.startswith("******")


_SEPARATORS = st.sampled_from([" ", "-", " - ", "  "])
_TEXT = st.text(alphabet=st.characters(blacklist_categories=["Nd"]), max_size=30)


@st.composite
def written_card(draw: st.DrawFn) -> tuple[str, str]:
    """(digits, as written): 13-19 digits, in groups of 3 or more when separated."""
    digits = draw(st.text(alphabet="0123456789", min_size=13, max_size=19))
    if not draw(st.booleans()):
        return digits, digits
    groups, rest = [], digits
    while len(rest) > 6:
        size = draw(st.integers(3, min(6, len(rest) - 3)))
        groups.append(rest[:size])
        rest = rest[size:]
    groups.append(rest)
    return digits, draw(_SEPARATORS).join(groups)


@given(written_card(), _TEXT, _TEXT)
def test_no_more_than_the_last_four_digits_survive(card: tuple[str, str], before: str, after: str) -> None:
    digits, written = card
    for shown in (mask_digits(before + written + after), clean_line(before + written + after, width=80)):
        assert re.sub(r"\D", "", shown) in (digits[-4:], digits[-4:][: len(re.sub(r"\D", "", shown))])


@given(st.text(max_size=60).filter(lambda t: sum(ch.isdigit() for ch in t) < 12))
def test_text_with_few_digits_is_unchanged(text: str) -> None:
    assert mask_digits(text) == text
