"""How a log's text encoding lies on bytes: newline, code unit, byte order mark, safe literals.

Two families are supported:

- ASCII-compatible codecs (utf-8, cp932/shift_jis, euc-kr, gbk, big5, latin-1, cp1252, ...): a
  newline is the byte 0x0A and that byte never occurs inside a multibyte character, so lines are
  found and counted on the raw bytes.
- UTF-16 and UTF-32: a newline is one code unit (b'\\n\\x00' in UTF-16-LE) that counts only at an
  offset that is a multiple of the unit size.

Stateful 7-bit codecs (utf-7, iso-2022-*, hz) and codecs where a newline is not 0x0A (EBCDIC) are
rejected: their lines cannot be found without decoding from the start of the file.
"""

from __future__ import annotations

import codecs
import functools
from dataclasses import dataclass

# Multibyte codecs whose decoder, with errors='replace', decodes a block of lines exactly as it
# decodes each line alone (checked by tests/test_tailing_scanner.py with random bytes). EUC-JP and
# GB18030 are not in the list: their error handling can swallow a newline, so they are decoded line
# by line where a whole block would otherwise be decoded.
_BLOCK_SAFE_MULTIBYTE = frozenset(
    {
        "utf-8",
        "cp932",
        "shift_jis",
        "shift_jis_2004",
        "shift_jisx0213",
        "big5",
        "big5hkscs",
        "cp950",
        "cp949",
        "euc_kr",
        "johab",
        "gbk",
        "gb2312",
    }
)
_STATEFUL = frozenset({"utf-7", "hz"})
_UNICODE_WIDE = {"utf-16": 2, "utf-16-le": 2, "utf-16-be": 2, "utf-32": 4, "utf-32-le": 4, "utf-32-be": 4}
_BOMS = {
    "utf-16-le": codecs.BOM_UTF16_LE,
    "utf-16-be": codecs.BOM_UTF16_BE,
    "utf-32-le": codecs.BOM_UTF32_LE,
    "utf-32-be": codecs.BOM_UTF32_BE,
    "utf-8": codecs.BOM_UTF8,
}


@dataclass(frozen=True)
class LineEncoding:
    """One concrete byte layout: the codec used to decode lines and how newlines look."""

    codec: str  # a codec name accepted by bytes.decode, byte order explicit for UTF-16/32
    unit: int  # 1 for ASCII-compatible codecs, 2 or 4 for UTF-16/32
    newline: bytes
    bom: bytes  # skipped when a file starts with it
    block_safe: bool  # decoding a block of lines equals decoding each line alone

    @property
    def wide(self) -> bool:
        return self.unit > 1

    def decode(self, data: bytes | bytearray) -> str:
        """Decode bytes of whole lines; undecodable bytes become U+FFFD, never an error."""
        if self.block_safe:
            return str(data, self.codec, "replace")
        return "\n".join(str(line, self.codec, "replace") for line in bytes(data).split(b"\n"))

    def find_newline(self, buf: bytes | bytearray, start: int, end: int) -> int:
        """Index of the first newline in buf[start:end], `start` being unit-aligned; -1 if none."""
        if self.unit == 1:
            return buf.find(b"\n", start, end)
        pos = start
        while True:
            found = buf.find(self.newline, pos, end)
            if found < 0 or (found - start) % self.unit == 0:
                return found
            pos = found + 1

    def rfind_newline(self, buf: bytes | bytearray, start: int, end: int) -> int:
        """Index of the last newline in buf[start:end], `start` being unit-aligned; -1 if none."""
        if self.unit == 1:
            return buf.rfind(b"\n", start, end)
        while True:
            found = buf.rfind(self.newline, start, end)
            if found < 0 or (found - start) % self.unit == 0:
                return found
            end = found + self.unit - 1

    def literal_bytes(self, literal: str) -> bytes | None:
        """The bytes a decoded line must contain wherever it contains `literal`, or None when the
        codec does not guarantee that (for example a character with two byte encodings)."""
        if not literal or "\ufffd" in literal or "\n" in literal or "\r" in literal:
            return None
        if self.codec == "utf-8":
            try:
                return literal.encode("utf-8")
            except UnicodeEncodeError:  # lone surrogates
                return None
        if self.wide:
            return None  # wide encodings search literals in decoded text instead
        unique = _uniquely_encoded(self.codec)
        if any(ch not in unique for ch in literal):
            return None
        return literal.encode(self.codec)


@dataclass(frozen=True)
class EncodingSpec:
    """A configured encoding; `for_head` picks the concrete layout from a file's first bytes."""

    name: str
    default: LineEncoding
    alternate: LineEncoding | None = None  # UTF-16/32 with a byte order mark: the other byte order

    def for_head(self, head: bytes) -> LineEncoding:
        if self.alternate is not None and self.alternate.bom and head.startswith(self.alternate.bom):
            return self.alternate
        return self.default


def resolve(name: str) -> EncodingSpec:
    """Check a configured encoding name and describe it; ValueError says why one is refused."""
    try:
        info = codecs.lookup(name)
    except LookupError:
        raise ValueError(f"unknown encoding {name!r}") from None
    codec = info.name
    if not getattr(info, "_is_text_encoding", True):
        raise ValueError(f"encoding {name!r} is not a text encoding")
    if codec in _UNICODE_WIDE:
        return _wide_spec(name, codec)
    if codec == "utf-8-sig":
        codec = "utf-8"
    if codec.endswith(("_escape", "-escape")):
        # ASCII escapes such as \u00e9 or \x34 decode to other characters: a literal, or a superset
        # of the pattern, read in the raw bytes would find other lines than the decoded text holds
        raise ValueError(f"encoding {name!r} is not supported: its backslash escapes make an ASCII byte "
                         "stand for another character (use utf-8, cp932, shift_jis, utf-16, ...)")
    if codec in _STATEFUL or codec.startswith("iso2022") or "\n".encode(codec) != b"\n":
        raise ValueError(
            f"encoding {name!r} is not supported: lines cannot be found without decoding "
            "the whole file (use utf-8, cp932, shift_jis, utf-16, ...)"
        )
    try:
        b"plain \xff\n".decode(codec, "replace")
    except UnicodeError:  # idna: it decodes host names, and refuses to replace what it cannot read
        raise ValueError(f"encoding {name!r} is not supported: it cannot replace an undecodable byte, so one "
                         "bad byte would stop the count (use utf-8, cp932, shift_jis, utf-16, ...)") from None
    block_safe = codec in _BLOCK_SAFE_MULTIBYTE or _single_byte(codec)
    layout = LineEncoding(
        codec=codec, unit=1, newline=b"\n", bom=_BOMS.get(codec, b""), block_safe=block_safe
    )
    return EncodingSpec(name=name, default=layout)


def _wide_spec(name: str, codec: str) -> EncodingSpec:
    unit = _UNICODE_WIDE[codec]
    base = codec[:6]  # 'utf-16' or 'utf-32'

    def layout(order: str) -> LineEncoding:
        concrete = f"{base}-{order}"
        return LineEncoding(
            codec=concrete, unit=unit, newline="\n".encode(concrete), bom=_BOMS[concrete], block_safe=True
        )

    if codec.endswith("-be"):
        return EncodingSpec(name=name, default=layout("be"))
    if codec.endswith("-le"):
        return EncodingSpec(name=name, default=layout("le"))
    # Plain 'utf-16'/'utf-32': the byte order mark decides; without one, little-endian (what Windows writes).
    return EncodingSpec(name=name, default=layout("le"), alternate=layout("be"))


@functools.cache
def _single_byte(codec: str) -> bool:
    for byte in range(256):
        try:
            bytes([byte]).decode(codec)
        except UnicodeDecodeError as exc:
            if "incomplete" in exc.reason or "truncated" in exc.reason:
                return False
    return True


@functools.cache
def _uniquely_encoded(codec: str) -> frozenset[str]:
    """Characters that exactly one byte sequence of `codec` decodes to.

    Enumerates every 1- and 2-byte sequence. For codecs with longer sequences (EUC-JP's 3-byte
    JIS X 0212, GB18030's 4-byte forms) only ASCII characters are kept: those longer forms encode
    non-ASCII characters only.
    """
    seen: dict[str, int] = {}
    leads: list[int] = []
    longer = False
    for byte in range(256):
        try:
            text = bytes([byte]).decode(codec)
        except UnicodeDecodeError:
            leads.append(byte)
            continue
        if len(text) == 1:
            seen[text] = seen.get(text, 0) + 1
    for lead in leads:
        for trail in range(256):
            try:
                text = bytes([lead, trail]).decode(codec)
            except UnicodeDecodeError as exc:
                if exc.start == 0 and ("incomplete" in exc.reason or "truncated" in exc.reason):
                    longer = True
                continue
            if len(text) == 1:
                seen[text] = seen.get(text, 0) + 1
    unique = {ch for ch, count in seen.items() if count == 1 and ch != "\ufffd" and _round_trips(ch, codec)}
    if longer:
        unique = {ch for ch in unique if ch.isascii()}
    return frozenset(unique)


def _round_trips(ch: str, codec: str) -> bool:
    try:
        encoded = ch.encode(codec)
    except UnicodeEncodeError:
        return False
    return len(encoded) <= 2 and encoded.decode(codec, "replace") == ch
