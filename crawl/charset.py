"""Decode an HTML body the way a careful browser would: HTTP header, then `<meta charset>`, then detection.

A declared charset is trusted only if the bytes decode under it without errors: sites lie (a page served as
utf-8 that is really windows-1251), and a strict decode catches most lies cheaply. Labels map to the
superset codecs browsers use (WHATWG Encoding): gb2312 and gbk decode as gb18030, latin-1 as windows-1252,
and so on, so a "gb2312" page with a few GBK-only characters still decodes.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

from charset_normalizer import from_bytes

# WHATWG label → the codec browsers actually use for it.
_SUPERSETS = {
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "gb_2312-80": "gb18030",
    "iso-8859-1": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "us-ascii": "cp1252",
    "ascii": "cp1252",
    "iso-8859-9": "cp1254",
    "tis-620": "cp874",
    "iso-8859-11": "cp874",
    "ks_c_5601-1987": "cp949",
    "euc-kr": "cp949",
    "shift_jis": "cp932",
    "sjis": "cp932",
    "x-sjis": "cp932",
    "windows-31j": "cp932",
    "big5": "big5hkscs",
    "utf8": "utf-8",
    "unicode": "utf-16",
}

_HEADER_CHARSET = re.compile(rb"""charset\s*=\s*["']?\s*([A-Za-z0-9_.:\-]+)""", re.IGNORECASE)
_META_CHARSET = re.compile(
    rb"""<meta[^>]+?charset\s*=\s*["']?\s*([A-Za-z0-9_.:\-]+)""",
    re.IGNORECASE,
)
_META_SCAN_BYTES = 8192

# What detection may answer, most common on the web first (the order breaks ties): encodings browsers decode
# (WHATWG) and pages really use. DOS and Mac code pages (cp775, cp850, cp852, mac_roman, ...) are left out:
# no browser renders them, yet on a few sentences of French or Italian they score as well as windows-1252
# and would turn "déjà" into "dťjŕ".
_DETECTABLE = (
    "cp1252",
    "cp1251",
    "cp1250",
    "gb18030",
    "big5",
    "shift_jis",
    "euc_jp",
    "euc_kr",
    "iso2022_jp",
    "cp1253",
    "cp1254",
    "cp1255",
    "cp1256",
    "cp1257",
    "cp1258",
    "cp874",
    "koi8_r",
    "koi8_u",
    "cp866",
    "iso8859_2",
    "iso8859_5",
    "iso8859_7",
    "iso8859_8",
    "iso8859_15",
)
_DETECT_RANK = {codecs.lookup(name).name: rank for rank, name in enumerate(_DETECTABLE)}


@dataclass(frozen=True)
class DecodedHtml:
    text: str
    charset: str  # the Python codec name used
    source: str  # "bom" | "http-header" | "meta" | "detected" | "fallback"


def normalize_charset(label: str | bytes | None) -> str | None:
    """Map a declared label to a Python codec name, or None if unknown."""
    if not label:
        return None
    if isinstance(label, bytes):
        label = label.decode("ascii", "ignore")
    label = label.strip().strip("\"'").lower()
    label = _SUPERSETS.get(label, label)
    try:
        return codecs.lookup(label).name
    except LookupError:
        return None


def charset_from_content_type(content_type: str | None) -> str | None:
    if not content_type:
        return None
    match = _HEADER_CHARSET.search(content_type.encode("latin-1", "ignore"))
    return normalize_charset(match.group(1)) if match else None


def charset_from_meta(body: bytes) -> str | None:
    match = _META_CHARSET.search(body[:_META_SCAN_BYTES])
    return normalize_charset(match.group(1)) if match else None


def _strict(body: bytes, codec: str) -> str | None:
    try:
        return body.decode(codec)
    except (UnicodeDecodeError, LookupError):
        return None


def _bom(body: bytes) -> str | None:
    if body.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if body.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    return None


def detect_charset(body: bytes) -> str | None:
    """The most plausible web encoding of undeclared, non-UTF-8 bytes (least chaos, then most coherent)."""
    matches = list(from_bytes(body[:65536], cp_isolation=list(_DETECTABLE)))
    if not matches:
        return None

    def order(match) -> tuple[float, float, int]:
        codec = normalize_charset(match.encoding) or match.encoding
        return (match.chaos, -match.coherence, _DETECT_RANK.get(codec, len(_DETECT_RANK)))

    return normalize_charset(min(matches, key=order).encoding)


def decode_html(body: bytes, content_type: str | None = None) -> DecodedHtml:
    """Decode `body`; never raises. The order is BOM, HTTP header, meta tag, detection, utf-8 with replacement."""
    bom = _bom(body)
    if bom and (text := _strict(body, bom)) is not None:
        return DecodedHtml(text, bom, "bom")
    for source, codec in (
        ("http-header", charset_from_content_type(content_type)),
        ("meta", charset_from_meta(body)),
    ):
        # utf-16 declared in a meta tag is always a lie (the tag itself was readable as ASCII).
        if codec and not (source == "meta" and codec.startswith("utf-16")):
            text = _strict(body, codec)
            if text is not None:
                return DecodedHtml(text, codec, source)
    if (text := _strict(body, "utf-8")) is not None:
        return DecodedHtml(text, "utf-8", "detected")
    if codec := detect_charset(body):
        text = _strict(body, codec)
        if text is not None:
            return DecodedHtml(text, codec, "detected")
        return DecodedHtml(body.decode(codec, errors="replace"), codec, "detected")
    return DecodedHtml(body.decode("utf-8", errors="replace"), "utf-8", "fallback")
