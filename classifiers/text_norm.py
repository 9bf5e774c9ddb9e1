"""Text normalisation shared by exact dedup, MinHash shingling and benchmark decontamination.

Two copies of a page rarely differ only in bytes: they differ in case, whitespace, curly versus straight
quotes, full-width digits, punctuation and math delimiters (`$x^2$` on one site, `\\(x^2\\)` on another).
All three hygiene steps must agree on what a "word" is, or a document deduplicated under one definition
slips through the other, so the definition lives here, once:

1. Unicode NFKC (full-width and compatibility characters fold to their plain forms: `ｘ²` -> `x2`),
2. case folding (`str.casefold`, a stronger lowercase: `Straße` -> `strasse`),
3. every character that is not a letter, digit or combining mark (Unicode categories L*, N*, M*) becomes a
   space: punctuation, symbols (`+ = ^ $ \\`), quotes and control characters separate words but are not
   words themselves, so TeX and its rendered text normalise alike up to the symbols,
4. Han ideographs and kana are words of one character each (those scripts do not write spaces),
5. runs of whitespace collapse to one space.

Scripts without spaces other than CJK (Thai, Khmer, ...) keep whole runs as one word; acceptable for a
mostly-Latin/Cyrillic/CJK math corpus, and documented rather than guessed at.
"""

from __future__ import annotations

import hashlib
import unicodedata

_CJK_RANGES = (
    (0x3040, 0x30FF),  # hiragana, katakana
    (0x3400, 0x4DBF),  # CJK extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0x20000, 0x2FA1F),  # CJK extensions B-F, compatibility supplement
)


def _is_cjk(code: int) -> bool:
    return any(lo <= code <= hi for lo, hi in _CJK_RANGES)


class _CharMap(dict[int, str]):
    """`str.translate` table computed per code point on first sight (a full Unicode table costs ~1 s)."""

    def __missing__(self, code: int) -> str:
        ch = chr(code)
        if _is_cjk(code):
            out = f" {ch} "
        elif unicodedata.category(ch)[0] in "LNM":
            out = ch
        else:
            out = " "
        self[code] = out
        return out


_CHAR_MAP = _CharMap()
# Byte table: ASCII letters lower-cased, digits kept, every other byte a space.
_ASCII_TABLE = bytes(
    c + 32 if 65 <= c <= 90 else c if 48 <= c <= 57 or 97 <= c <= 122 else 32 for c in range(256)
)


def _normalize_unicode(text: str) -> str:
    folded = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(folded.translate(_CHAR_MAP).split())


def normalized_utf8(text: str) -> bytes:
    """UTF-8 of `normalize_text(text)`; ASCII text takes a byte-table shortcut (about 4x faster)."""
    if text.isascii():
        # On ASCII, NFKC is the identity and casefold is lower(); letters and digits are the word characters.
        return b" ".join(text.encode("ascii").translate(_ASCII_TABLE).split())
    return _normalize_unicode(text).encode("utf-8")


def normalize_text(text: str) -> str:
    """The normalised form of `text` (see the module docstring): lower-case words separated by one space."""
    if text.isascii():
        return normalized_utf8(text).decode("ascii")
    return _normalize_unicode(text)


def words(text: str) -> list[str]:
    """The words of `text` after normalisation."""
    return normalize_text(text).split()


def text_digest(text: str) -> str:
    """Hex digest of the normalised text: equal for texts that differ only in case, spacing, punctuation.

    BLAKE2b with a 128-bit digest: stable across processes and machines (unlike `hash()`), and collisions
    are out of reach at any corpus size.
    """
    return hashlib.blake2b(normalized_utf8(text), digest_size=16).hexdigest()
