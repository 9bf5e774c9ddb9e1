"""Decode an HTML body the way a careful browser would: HTTP header, then `<meta charset>`, then detection.

A declared charset is trusted only if the bytes decode under it without errors: sites lie (a page served as
utf-8 that is really windows-1251), and a strict decode catches most lies cheaply.

Only web encodings are ever used: the labels of the WHATWG Encoding Standard (what browsers accept), each
mapped to the Python codec that decodes like the browser does (gb2312 and gbk decode as gb18030, latin-1 and
us-ascii as windows-1252, the "utf-16" label as UTF-16LE, and so on). Any other label is refused, even one
Python knows: `<meta charset="utf-7">` would turn `+ADw-script+AD4-` into `<script>`, which no browser
shows, and rot13, base64, hex, unicode-escape, punycode, idna, utf-32 or EBCDIC (cp037) are not web
encodings either. WHATWG's "replacement" labels (iso-2022-kr, hz-gb-2312, ...) and x-user-defined are refused
too. A refused or unknown label is ignored (detection among web encodings, then UTF-8 with replacement decide)
and reported in `DecodedHtml.refused`, so the reader can count it (`charset:refused`).
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

from charset_normalizer import from_bytes

# WHATWG Encoding Standard (encodings.json): encoding → its labels, with the Python codec that decodes it.
_WHATWG: dict[str, tuple[str, ...]] = {
    "utf-8": ("unicode-1-1-utf-8", "unicode11utf8", "unicode20utf8", "utf-8", "utf8", "x-unicode20utf8"),
    "cp866": ("866", "cp866", "csibm866", "ibm866"),
    "iso8859_2": (
        "csisolatin2", "iso-8859-2", "iso-ir-101", "iso8859-2", "iso88592", "iso_8859-2", "iso_8859-2:1987",
        "l2", "latin2",
    ),
    "iso8859_3": (
        "csisolatin3", "iso-8859-3", "iso-ir-109", "iso8859-3", "iso88593", "iso_8859-3", "iso_8859-3:1988",
        "l3", "latin3",
    ),
    "iso8859_4": (
        "csisolatin4", "iso-8859-4", "iso-ir-110", "iso8859-4", "iso88594", "iso_8859-4", "iso_8859-4:1988",
        "l4", "latin4",
    ),
    "iso8859_5": (
        "csisolatincyrillic", "cyrillic", "iso-8859-5", "iso-ir-144", "iso8859-5", "iso88595", "iso_8859-5",
        "iso_8859-5:1988",
    ),
    "iso8859_6": (
        "arabic", "asmo-708", "csiso88596e", "csiso88596i", "csisolatinarabic", "ecma-114", "iso-8859-6",
        "iso-8859-6-e", "iso-8859-6-i", "iso-ir-127", "iso8859-6", "iso88596", "iso_8859-6", "iso_8859-6:1987",
    ),
    "iso8859_7": (
        "csisolatingreek", "ecma-118", "elot_928", "greek", "greek8", "iso-8859-7", "iso-ir-126", "iso8859-7",
        "iso88597", "iso_8859-7", "iso_8859-7:1987", "sun_eu_greek",
    ),
    "iso8859_8": (
        "csiso88598e", "csisolatinhebrew", "hebrew", "iso-8859-8", "iso-8859-8-e", "iso-ir-138", "iso8859-8",
        "iso88598", "iso_8859-8", "iso_8859-8:1988", "visual",
        "csiso88598i", "iso-8859-8-i", "logical",  # ISO-8859-8-I: the same bytes, logical order
    ),
    "iso8859_10": ("csisolatin6", "iso-8859-10", "iso-ir-157", "iso8859-10", "iso885910", "l6", "latin6"),
    "iso8859_13": ("iso-8859-13", "iso8859-13", "iso885913"),
    "iso8859_14": ("iso-8859-14", "iso8859-14", "iso885914"),
    "iso8859_15": ("csisolatin9", "iso-8859-15", "iso8859-15", "iso885915", "iso_8859-15", "l9"),
    "iso8859_16": ("iso-8859-16",),
    "koi8_r": ("cskoi8r", "koi", "koi8", "koi8-r", "koi8_r"),
    "koi8_u": ("koi8-ru", "koi8-u"),
    "mac_roman": ("csmacintosh", "mac", "macintosh", "x-mac-roman"),
    "cp874": ("dos-874", "iso-8859-11", "iso8859-11", "iso885911", "tis-620", "windows-874"),
    "cp1250": ("cp1250", "windows-1250", "x-cp1250"),
    "cp1251": ("cp1251", "windows-1251", "x-cp1251"),
    "cp1252": (
        "ansi_x3.4-1968", "ascii", "cp1252", "cp819", "csisolatin1", "ibm819", "iso-8859-1", "iso-ir-100",
        "iso8859-1", "iso88591", "iso_8859-1", "iso_8859-1:1987", "l1", "latin1", "us-ascii", "windows-1252",
        "x-cp1252",
    ),
    "cp1253": ("cp1253", "windows-1253", "x-cp1253"),
    "cp1254": (
        "cp1254", "csisolatin5", "iso-8859-9", "iso-ir-148", "iso8859-9", "iso88599", "iso_8859-9",
        "iso_8859-9:1989", "l5", "latin5", "windows-1254", "x-cp1254",
    ),
    "cp1255": ("cp1255", "windows-1255", "x-cp1255"),
    "cp1256": ("cp1256", "windows-1256", "x-cp1256"),
    "cp1257": ("cp1257", "windows-1257", "x-cp1257"),
    "cp1258": ("cp1258", "windows-1258", "x-cp1258"),
    "mac_cyrillic": ("x-mac-cyrillic", "x-mac-ukrainian"),
    "gb18030": (  # GBK and gb18030: browsers decode both with the gb18030 decoder
        "chinese", "csgb2312", "csiso58gb231280", "gb2312", "gb_2312", "gb_2312-80", "gbk", "iso-ir-58",
        "x-gbk", "gb18030",
    ),
    "big5hkscs": ("big5", "big5-hkscs", "cn-big5", "csbig5", "x-x-big5"),
    "euc_jp": ("cseucpkdfmtjapanese", "euc-jp", "x-euc-jp"),
    "iso2022_jp": ("csiso2022jp", "iso-2022-jp"),
    "cp932": ("csshiftjis", "ms932", "ms_kanji", "shift-jis", "shift_jis", "sjis", "windows-31j", "x-sjis"),
    "cp949": (
        "cseuckr", "csksc56011987", "euc-kr", "iso-ir-149", "korean", "ks_c_5601-1987", "ks_c_5601-1989",
        "ksc5601", "ksc_5601", "windows-949",
    ),
    "utf-16-be": ("unicodefffe", "utf-16be"),
    "utf-16-le": ("csunicode", "iso-10646-ucs-2", "ucs-2", "unicode", "unicodefeff", "utf-16", "utf-16le"),
}  # fmt: skip
# Not web encodings, though WHATWG names them: the "replacement" labels (a browser shows one U+FFFD for the
# whole page; ISO-2022-KR / HZ are XSS vectors like UTF-7) and x-user-defined (bytes as private-use code points).
REFUSED_WHATWG_LABELS = frozenset(
    (
        "csiso2022kr",
        "hz-gb-2312",
        "iso-2022-cn",
        "iso-2022-cn-ext",
        "iso-2022-kr",
        "replacement",
        "x-user-defined",
    )
)
# Common misspellings of web labels that pages use (not in WHATWG, but unambiguous): accepted as their label.
_SPELLINGS = {"latin-1": "latin1", "utf-16-le": "utf-16le", "utf-16-be": "utf-16be"}

WEB_LABELS: dict[str, str] = {
    label: codecs.lookup(codec).name for codec, labels in _WHATWG.items() for label in labels
}
WEB_CODECS = frozenset(WEB_LABELS.values())
# A Python codec name that detection may answer → the codec browsers use for that encoding.
_CODEC_SUPERSETS = {
    "shift_jis": "cp932",
    "euc_kr": "cp949",
    "big5": "big5hkscs",
    "gb2312": "gb18030",
    "gbk": "gb18030",
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
_DETECT_RANK: dict[str, int] = {}
for _rank, _name in enumerate(_DETECTABLE):
    _DETECT_RANK.setdefault(codecs.lookup(_name).name, _rank)


@dataclass(frozen=True)
class DecodedHtml:
    text: str
    charset: str  # the Python codec name used
    source: str  # "bom" | "http-header" | "meta" | "detected" | "fallback"
    refused: tuple[str, ...] = ()  # declared labels that are not web encodings (ignored)


def _clean_label(label: str | bytes) -> str:
    if isinstance(label, bytes):
        label = label.decode("ascii", "ignore")
    return label.strip().strip("\"'").strip().lower()


def normalize_charset(label: str | bytes | None) -> str | None:
    """The Python codec for a web encoding label (WHATWG), or None for any other label, known to Python or not."""
    if not label:
        return None
    label = _clean_label(label)
    return WEB_LABELS.get(_SPELLINGS.get(label, label))


def web_codec(name: str | None) -> str | None:
    """A Python codec name (what a detector answers) as the web codec that decodes it, or None if not a web one."""
    if not name:
        return None
    try:
        codec = codecs.lookup(name).name
    except LookupError:
        return None
    codec = codecs.lookup(_CODEC_SUPERSETS.get(codec, codec)).name
    return codec if codec in WEB_CODECS else None


def _header_label(content_type: str | None) -> str | None:
    if not content_type:
        return None
    match = _HEADER_CHARSET.search(content_type.encode("latin-1", "ignore"))
    return _clean_label(match.group(1)) if match else None


def _meta_label(body: bytes) -> str | None:
    match = _META_CHARSET.search(body[:_META_SCAN_BYTES])
    return _clean_label(match.group(1)) if match else None


def charset_from_content_type(content_type: str | None) -> str | None:
    return normalize_charset(_header_label(content_type))


def charset_from_meta(body: bytes) -> str | None:
    return normalize_charset(_meta_label(body))


def refused_charsets(body: bytes, content_type: str | None = None) -> tuple[str, ...]:
    """The labels the HTTP header and the meta tag declare that are not web encodings (and so are ignored)."""
    labels = (_header_label(content_type), _meta_label(body))
    return tuple(label for label in labels if label and normalize_charset(label) is None)


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
    matches = [m for m in from_bytes(body[:65536], cp_isolation=list(_DETECTABLE)) if web_codec(m.encoding)]
    if not matches:
        return None

    def order(match) -> tuple[float, float, int]:
        rank = _DETECT_RANK.get(codecs.lookup(match.encoding).name, len(_DETECT_RANK))
        return (match.chaos, -match.coherence, rank)

    return web_codec(min(matches, key=order).encoding)


def decode_html(body: bytes, content_type: str | None = None) -> DecodedHtml:
    """Decode `body`; never raises. The order is BOM, HTTP header, meta tag, detection, utf-8 with
    replacement; declarations that name no web encoding are skipped and listed in `refused`. Each declared
    label is read once, and a codec that failed on the body is not tried on it again (a page whose header
    and meta tag both say gbk, and that is really utf-8, is decoded twice, not four times)."""
    header, meta = _header_label(content_type), _meta_label(body)
    refused = tuple(label for label in (header, meta) if label and normalize_charset(label) is None)
    failed: set[str] = set()

    def strict(codec: str) -> str | None:
        text = None if codec in failed else _strict(body, codec)
        if text is None:
            failed.add(codec)
        return text

    bom = _bom(body)
    if bom and (text := strict(bom)) is not None:
        return DecodedHtml(text, bom, "bom", refused)
    for source, codec in (("http-header", normalize_charset(header)), ("meta", normalize_charset(meta))):
        # utf-16 declared in a meta tag is always a lie (the tag itself was readable as ASCII).
        if codec and not (source == "meta" and codec.startswith("utf-16")):
            text = strict(codec)
            if text is not None:
                return DecodedHtml(text, codec, source, refused)
    if (text := strict("utf-8")) is not None:
        return DecodedHtml(text, "utf-8", "detected", refused)
    if codec := detect_charset(body):
        text = strict(codec)
        if text is not None:
            return DecodedHtml(text, codec, "detected", refused)
        return DecodedHtml(body.decode(codec, errors="replace"), codec, "detected", refused)
    return DecodedHtml(body.decode("utf-8", errors="replace"), "utf-8", "fallback", refused)
