"""Generate a small, deterministic Common Crawl look-alike for the demo and for tests.

`make demo` runs offline on a fresh machine, so it cannot download WARC files; this module writes them:
gzipped WARC files named like Common Crawl's, a `warc.paths` file, and `sample_manifest.json` saying for
every capture what a perfect pipeline would conclude (language, math or not, math encoding, duplicate of
which record, broken how). The crawl deliberately contains what real crawls throw at a reader: several
charsets declared in different places (or not at all), exact and near duplicates, redirects, 404s, binary
payloads, empty bodies, a charset lie, mangled HTML, a revisit record and a truncated final record.

    python -m samplecrawl.writer --out DIR [--files N --records N --seed S --math-share F]
"""

from __future__ import annotations

import argparse
import datetime as dt
import email.utils
import io
import json
import os
import random
import re
import struct
import uuid
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from samplecrawl.math_render import ENCODINGS
from samplecrawl.math_text import MATH_LANGS
from samplecrawl.pages import (
    MATH_GENRES,
    Page,
    Site,
    build_page,
    content_shingles,
    perturb,
    render_html,
    set_jaccard,
    slugify,
)
from samplecrawl.text import GENRES, UI
from typedconfig import add_dataclass_args, dataclass_from_args

CRAWL_ID = "CC-MAIN-2026-00-sample"
MANIFEST_NAME = "sample_manifest.json"
PATHS_NAME = "warc.paths"
BROKEN_KINDS = (
    "http_404",
    "http_301",
    "non_html_png",
    "non_html_pdf",
    "empty_body",
    "charset_lie",
    "broken_html",
    "revisit",
    "truncated",
)
USER_AGENT = "CCBot/2.0 (https://commoncrawl.org/faq/)"
_START = dt.datetime(2026, 1, 5, 0, 0, 0, tzinfo=dt.UTC)
_SPAN = dt.timedelta(days=3)

# domain, language, site name, genres served. Invented names, several pages per domain.
SITES: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("www.riverside-gazette.com", "en", "Riverside Gazette", ("news",)),
    ("dailyledger.co.uk", "en", "The Daily Ledger", ("news",)),
    ("kitchenjournal.net", "en", "Kitchen Journal", ("recipe", "blog")),
    ("shop.trailgear-store.com", "en", "Trailgear Store", ("product",)),
    ("forums.techhelpdesk.org", "en", "TechHelpDesk Forums", ("forum",)),
    ("wanderingnotes.blog", "en", "Wandering Notes", ("blog",)),
    ("mathhelpboards.net", "en", "Math Help Boards", ("math_qa",)),
    ("math.northfield.edu", "en", "Northfield College, Department of Mathematics", ("math_lecture",)),
    ("stepbystep-math.com", "en", "Step by Step Math", ("math_solution",)),
    ("www.nordkurier-online.de", "de", "Nordkurier Online", ("news",)),
    ("kochfreunde.de", "de", "Kochfreunde", ("recipe", "blog")),
    ("outdoor-versand.de", "de", "Outdoor Versand", ("product",)),
    ("pcforum-hilfe.de", "de", "PC-Forum Hilfe", ("forum",)),
    ("matheboard-forum.de", "de", "Matheboard Forum", ("math_qa",)),
    ("mathematik.uni-auental.de", "de", "Universität Auental, Institut für Mathematik", ("math_lecture",)),
    ("mathe-loesungen.de", "de", "Mathe-Lösungen", ("math_solution",)),
    ("www.lecho-regional.fr", "fr", "L'Écho régional", ("news",)),
    ("cuisine-facile.fr", "fr", "Cuisine facile", ("recipe", "blog")),
    ("boutique-randonnee.fr", "fr", "Boutique Randonnée", ("product",)),
    ("forum-entraide-pc.fr", "fr", "Forum Entraide PC", ("forum",)),
    ("forum-maths-entraide.fr", "fr", "Forum Maths Entraide", ("math_qa",)),
    ("math.univ-valmont.fr", "fr", "Université de Valmont, Département de mathématiques", ("math_lecture",)),
    ("corriges-maths.fr", "fr", "Corrigés Maths", ("math_solution",)),
    ("www.diariodelsur.es", "es", "Diario del Sur", ("news",)),
    ("recetasdecasa.es", "es", "Recetas de Casa", ("recipe", "blog")),
    ("tiendamontana.es", "es", "Tienda Montaña", ("product",)),
    ("foroayudapc.com", "es", "Foro Ayuda PC", ("forum",)),
    ("foromatematicas.es", "es", "Foro de Matemáticas", ("math_qa",)),
    ("matematicas.univ-sierra.es", "es", "Universidad de la Sierra, Matemáticas", ("math_lecture",)),
    ("ejercicios-resueltos-mates.es", "es", "Ejercicios Resueltos", ("math_solution",)),
    ("gorodskie-vesti.ru", "ru", "Городские вести", ("news",)),
    ("vkusno-doma.ru", "ru", "Вкусно дома", ("recipe", "blog")),
    ("tehnomarket24.ru", "ru", "Техномаркет 24", ("product",)),
    ("forum-pc-pomosch.ru", "ru", "Форум компьютерной помощи", ("forum",)),
    ("matematika-forum.ru", "ru", "Математический форум", ("math_qa",)),
    ("mathnotes.vostok-university.ru", "ru", "Восточный университет, кафедра математики", ("math_lecture",)),
    ("reshenie-zadach.ru", "ru", "Решение задач", ("math_solution",)),
    ("news.chengshi-ribao.cn", "zh", "城市日报", ("news",)),
    ("meishi-jia.cn", "zh", "美食家", ("recipe", "blog")),
    ("shop.xinpin-mall.cn", "zh", "新品商城", ("product",)),
    ("bbs.diannao-bangzhu.cn", "zh", "电脑帮助论坛", ("forum",)),
    ("shuxue-wenda.cn", "zh", "数学问答", ("math_qa",)),
    ("math.huadong-daxue.edu.cn", "zh", "华东大学数学系", ("math_lecture",)),
    ("jieti-bang.cn", "zh", "解题帮", ("math_solution",)),
    ("jornal-do-norte.pt", "pt", "Jornal do Norte", ("news",)),
    ("receitas-da-avo.pt", "pt", "Receitas da Avó", ("recipe", "product")),
    ("gazzetta-locale.it", "it", "Gazzetta Locale", ("news",)),
    ("ricette-di-casa.it", "it", "Ricette di Casa", ("recipe", "product")),
)
_THEME_OF = {"news": "portal", "recipe": "blog", "blog": "blog", "product": "shop", "forum": "forum",
             "math_qa": "qa", "math_lecture": "edu", "math_solution": "blog"}  # fmt: skip
_SERVERS = ("nginx", "Apache/2.4.58 (Ubuntu)", "cloudflare", "Microsoft-IIS/10.0", "openresty", "LiteSpeed")
_TEXT_LANG_WEIGHTS = {"en": 3, "de": 2, "fr": 2, "es": 2, "ru": 2, "zh": 2, "pt": 1, "it": 1}
_LEGACY_CHARSETS = {"ru": ("windows-1251",), "zh": ("gb18030", "gb2312"), "de": ("iso-8859-1",),
                    "fr": ("iso-8859-1",), "es": ("iso-8859-1",), "pt": ("iso-8859-1",), "it": ("iso-8859-1",)}  # fmt: skip
_LEGACY_SHARE = {"ru": 0.4, "zh": 0.5}
_MAX_UNLABELLED_JACCARD = 0.5  # word 5-gram Jaccard allowed between pages that are not labelled duplicates
_MAX_REDRAWS = 30


@dataclass
class SampleCrawlConfig:
    """Command-line settings of the sample-crawl generator."""

    out: str = field(metadata={"help": "output folder (created)"})
    files: int = field(default=4, metadata={"help": "number of WARC files"})
    records: int = field(default=60, metadata={"help": "captures (request + response) per WARC file"})
    math_share: float = field(default=0.3, metadata={"help": "share of math pages among the original pages"})
    seed: int = field(default=0, metadata={"help": "RNG seed; the same seed gives byte-identical files"})


@dataclass
class Capture:
    """One planned capture: a request plus its response (or revisit) record, with its ground-truth labels."""

    kind: str  # page | exact_dup | near_dup | one of BROKEN_KINDS
    site: Site
    uri: str
    page: Page | None = None
    math_encoding: str | None = None
    charset: str | None = None
    charset_declared: str | None = None
    original: Capture | None = None
    changed_words: int = 0
    date: dt.datetime = _START
    record_id: str = ""
    request_id: str = ""
    # filled when rendered
    status: str = "200 OK"
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    payload_digest: str = ""


def _uuid(rng: random.Random) -> str:
    return f"<urn:uuid:{uuid.UUID(int=rng.getrandbits(128), version=4)}>"


def _sites(rng: random.Random) -> list[Site]:
    return [
        Site(domain, lang, name, _THEME_OF[genres[0]], rng.choice(_SERVERS))
        for domain, lang, name, genres in SITES
    ]


def _genres_of(domain: str) -> tuple[str, ...]:
    return next(genres for d, _, _, genres in SITES if d == domain)


class _UriMaker:
    """Plausible, unique URLs per genre (numeric ids where the title has no Latin letters)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[str] = set()

    def make(self, site: Site, genre: str, title: str) -> str:
        rng = self.rng
        slug = slugify(title) or str(rng.randint(100000, 999999))
        ident = rng.randint(10000, 999999)
        y, m, d = 2025, rng.randint(1, 12), rng.randint(1, 28)
        path = {
            "news": f"/{y}/{m:02d}/{d:02d}/{slug}.html",
            "recipe": f"/recipes/{slug}/",
            "product": f"/p/{slug}-{ident}.html",
            "forum": f"/threads/{slug}.{ident}/" if rng.random() < 0.5 else f"/viewtopic.php?f={m}&t={ident}",
            "blog": f"/{y}/{m:02d}/{slug}/",
            "math_qa": f"/questions/{ident}/{slug}",
            "math_lecture": f"/~{slug[:6] or 'prof'}/teaching/calc{m}/lecture-{d}.html",
            "math_solution": f"/solutions/{slug}-{ident}.html",
        }.get(genre, f"/page/{ident}.html")
        scheme = "https" if rng.random() < 0.85 else "http"
        uri = f"{scheme}://{site.domain}{path}"
        while uri in self.used:
            uri = f"{uri.rstrip('/')}-{rng.randint(2, 99)}"
        self.used.add(uri)
        return uri


def _charset_for(lang: str, rng: random.Random, counter: dict[str, int]) -> tuple[str, str]:
    """(charset, where declared); legacy charsets cycle through header / meta / nowhere so all occur."""
    legacy = _LEGACY_CHARSETS.get(lang)
    if legacy and rng.random() < _LEGACY_SHARE.get(lang, 0.1):
        charset = rng.choice(legacy)
        places = ("header", "meta", "none") if lang in _LEGACY_SHARE else ("header", "meta")
        n = counter.get(charset, 0)
        counter[charset] = n + 1
        return charset, places[n % len(places)]
    r = rng.random()
    declared = "header+meta" if r < 0.6 else "header" if r < 0.85 else "meta" if r < 0.95 else "none"
    return "utf-8", declared


def _counts(total: int, math_share: float) -> dict[str, int]:
    n_dup = max(2, round(total * 0.03))
    n_special = len(BROKEN_KINDS) + 2 * n_dup
    if total < n_special + 2:
        raise ValueError(
            f"a sample crawl needs at least {n_special + 2} captures for its broken records and duplicates, got {total}"
        )
    originals = total - n_special
    n_math = min(originals - 1, max(1 if math_share > 0 else 0, round(originals * math_share)))
    return {"exact": n_dup, "near": n_dup, "originals": originals, "math": n_math}


def plan_crawl(total: int, math_share: float, rng: random.Random) -> list[Capture]:
    """The ordered captures of the whole crawl (dates not yet set): originals, duplicates, broken records."""
    if not 0.0 <= math_share <= 1.0:
        raise ValueError(f"math_share must be in [0, 1], got {math_share}")
    counts = _counts(total, math_share)
    sites = _sites(rng)
    uris = _UriMaker(rng)
    charset_counter: dict[str, int] = {}
    encodings = list(ENCODINGS)
    rng.shuffle(encodings)

    accepted: dict[str, list[set]] = {}

    def distinct_page(lang: str, genre: str) -> Page:
        # Independently generated pages share template sentences; redraw the few that come out too similar
        # to an earlier page, so that the only near-duplicates in the crawl are the labelled ones.
        best: tuple[float, Page, set] | None = None
        for _ in range(_MAX_REDRAWS):
            page = build_page(lang, genre, rng)
            shingles = content_shingles(page)
            closest = max((set_jaccard(shingles, other) for other in accepted.get(lang, [])), default=0.0)
            if best is None or closest < best[0]:
                best = (closest, page, shingles)
            if closest < _MAX_UNLABELLED_JACCARD:
                break
        assert best is not None
        accepted.setdefault(lang, []).append(best[2])
        return best[1]

    def new_page(lang: str, genre: str, kind: str = "page", encoding: str | None = None) -> Capture:
        site = rng.choice([s for s in sites if s.lang == lang and genre in _genres_of(s.domain)])
        page = distinct_page(lang, genre)
        charset, declared = _charset_for(lang, rng, charset_counter)
        return Capture(kind, site, uris.make(site, genre, page.title), page, encoding, charset, declared)

    def text_lang_genre() -> tuple[str, str]:
        lang = rng.choices(list(_TEXT_LANG_WEIGHTS), weights=list(_TEXT_LANG_WEIGHTS.values()))[0]
        return lang, rng.choice(sorted(GENRES[lang]))

    originals: list[Capture] = []
    for i in range(counts["originals"]):
        if i < counts["math"]:
            lang, genre = rng.choice(MATH_LANGS), rng.choice(MATH_GENRES)
            originals.append(new_page(lang, genre, encoding=encodings[i % len(encodings)]))
        else:
            originals.append(new_page(*text_lang_genre()))

    broken: list[Capture] = []
    for kind in ("http_404", "http_301", "non_html_png", "non_html_pdf", "empty_body"):
        site = rng.choice(sites)
        broken.append(Capture(kind, site, uris.make(site, "other", kind), charset="utf-8"))
    lie = new_page("ru", rng.choice(sorted(GENRES["ru"])), kind="charset_lie")
    lie.charset, lie.charset_declared = "windows-1251", "header"
    broken.append(lie)
    broken.append(new_page(*text_lang_genre(), kind="broken_html"))

    sequence = originals + broken
    rng.shuffle(sequence)
    math_orig = [c for c in originals if c.page and c.page.is_math]
    text_orig = [c for c in originals if c.page and not c.page.is_math]
    followers: list[Capture] = []
    for kind in ("exact_dup", "near_dup"):
        n = counts["exact" if kind == "exact_dup" else "near"]
        n_math = min(len(math_orig), (n + 1) // 2) if math_orig else 0
        chosen = rng.sample(math_orig, n_math) + rng.sample(text_orig, n - n_math)
        followers += [_duplicate(kind, orig, sites, uris, rng) for orig in chosen]
    revisited = rng.choice(text_orig)
    followers.append(Capture("revisit", revisited.site, revisited.uri, original=revisited))
    for follower in followers:
        after = next(i for i, c in enumerate(sequence) if c is follower.original)
        sequence.insert(rng.randint(after + 1, len(sequence)), follower)
    sequence.append(new_page(*text_lang_genre(), kind="truncated"))
    return sequence


def _duplicate(kind: str, orig: Capture, sites: list[Site], uris: _UriMaker, rng: random.Random) -> Capture:
    assert orig.page is not None
    if kind == "exact_dup":
        # Same bytes at another URL: tracking parameters, a print view or the host with/without www.
        variant = rng.choice(["utm_source=newsletter&utm_medium=email", "print=1", "host"])
        if variant == "host":
            uri = (
                orig.uri.replace("://www.", "://", 1)
                if "://www." in orig.uri
                else orig.uri.replace("://", "://www.", 1)
            )
        else:
            uri = orig.uri + ("&" if "?" in orig.uri else "?") + variant
        uris.used.add(uri)
        return Capture(
            kind, orig.site, uri, orig.page, orig.math_encoding, orig.charset, orig.charset_declared, orig
        )
    # Near duplicate: reposted on another site of the same language, other boilerplate, a few words changed.
    others = [
        s
        for s in sites
        if s.lang == orig.page.lang and s.domain != orig.site.domain and s.theme != orig.site.theme
    ]
    site = rng.choice(others or [s for s in sites if s.domain != orig.site.domain])
    page, changed = perturb(orig.page, rng)
    capture = Capture(kind, site, uris.make(site, orig.page.genre, orig.page.title), page, orig.math_encoding,
                      "utf-8", "header+meta", orig)  # fmt: skip
    capture.changed_words = changed
    return capture


# ---------------------------------------------------------------- HTTP payloads


def _tiny_png(rng: random.Random) -> bytes:
    """A valid 16x16 grey PNG with random pixels (what an image URL in a crawl returns)."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
        )

    rows = b"".join(b"\x00" + bytes(rng.randrange(256) for _ in range(16)) for _ in range(16))
    header = struct.pack(">IIBBBBB", 16, 16, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def _tiny_pdf(title: str) -> bytes:
    """A one-page PDF with a line of text and a correct cross-reference table."""
    text = re.sub(r"[^A-Za-z0-9 .,-]", "", title)[:60] or "Report"
    stream = f"BT /F1 18 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for i, obj in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + obj + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % off for off in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def _mangle(markup: bytes, rng: random.Random) -> bytes:
    """Badly broken HTML: dropped closing tags, stray invalid bytes, a tag cut off at the end."""
    out = re.sub(
        rb"</(p|div|li|section|article)>", lambda m: b"" if rng.random() < 0.5 else m.group(0), markup
    )
    cut_points = sorted(rng.sample([m.end() for m in re.finditer(rb">", out)], 4))
    pieces, last = [], 0
    for point in cut_points:
        pieces += [out[last:point], rng.choice([b"\x00", b"\xff\xfe", b"\x81\x8d\x9d", b"\xc3("])]
        last = point
    pieces.append(out[last:])
    out = b"".join(pieces)
    return (
        out.replace(b"</body>", b"").replace(b"</html>", b"")
        + b'<div class="comments"><p>Loading...<span class="sp'
    )


def _http_date(when: dt.datetime) -> str:
    return email.utils.format_datetime(when, usegmt=True)


def _render(capture: Capture, rng: random.Random) -> None:
    """Fill status, HTTP headers and body of `capture` (its original must already be rendered)."""
    headers: list[tuple[str, str]] = []
    kind, site = capture.kind, capture.site
    content_type = "text/html"
    if kind in ("exact_dup", "revisit"):
        orig = capture.original
        assert orig is not None
        capture.status = orig.status
        capture.body = orig.body if kind == "exact_dup" else b""
        dropped = ("Date", "Set-Cookie") if kind == "exact_dup" else ("Date", "Set-Cookie", "Content-Length")
        headers = [(k, v) for k, v in orig.headers if k not in dropped]
    elif kind in ("page", "near_dup", "charset_lie", "broken_html", "truncated"):
        page = capture.page
        assert page is not None and capture.charset is not None
        declared = capture.charset_declared or "none"
        meta_charset = capture.charset if "meta" in declared else None
        if kind == "charset_lie":
            meta_charset = None
        markup = render_html(page, site, encoding=capture.math_encoding, charset_meta=meta_charset,
                             date=capture.date.date().isoformat(), rng=rng)  # fmt: skip
        capture.body = markup.encode(capture.charset, errors="xmlcharrefreplace")
        if kind == "broken_html":
            capture.body = _mangle(capture.body, rng)
        header_charset = "utf-8" if kind == "charset_lie" else capture.charset
        if "header" in declared:
            spelled = header_charset.upper() if rng.random() < 0.3 else header_charset
            content_type = f"text/html; charset={spelled}"
    elif kind == "http_404":
        capture.status = "404 Not Found"
        title = {"de": "Seite nicht gefunden", "fr": "Page introuvable", "ru": "Страница не найдена"}.get(
            site.lang, "Page not found"
        )
        markup = f'<!DOCTYPE html><html><head><title>404 – {title}</title></head><body><h1>{title}</h1><p><a href="/">{UI[site.lang]["home"]}</a></p></body></html>'
        capture.body = markup.encode("utf-8")
        content_type = "text/html; charset=utf-8"
    elif kind == "http_301":
        capture.status = "301 Moved Permanently"
        target = (
            capture.uri.replace("http://", "https://", 1)
            if capture.uri.startswith("http://")
            else capture.uri + "/"
        )
        headers.append(("Location", target))
        capture.body = f'<html><head><title>301 Moved Permanently</title></head><body><h1>Moved Permanently</h1><p>The document has moved <a href="{target}">here</a>.</p></body></html>'.encode()
        content_type = "text/html; charset=iso-8859-1"
    elif kind == "non_html_png":
        capture.body, content_type = _tiny_png(rng), "image/png"
    elif kind == "non_html_pdf":
        capture.body, content_type = _tiny_pdf(site.name), "application/pdf"
    elif kind == "empty_body":
        content_type = "text/html; charset=utf-8"
    if kind not in ("exact_dup", "revisit"):
        headers.append(("Content-Type", content_type))
        if rng.random() < 0.3:
            headers.append(
                ("Last-Modified", _http_date(capture.date - dt.timedelta(days=rng.randint(1, 400))))
            )
        headers += [("Server", site.server), ("Vary", "Accept-Encoding")]
        if rng.random() < 0.4:
            headers.append(("X-Crawler-Content-Encoding", "gzip"))
            headers.append(("X-Crawler-Content-Length", str(max(1, len(capture.body) // 3))))
        if rng.random() < 0.3:
            headers.append(("X-Powered-By", rng.choice(["PHP/8.2.12", "Express", "ASP.NET"])))
        headers.append(("Content-Length", str(len(capture.body))))
    if rng.random() < 0.25:
        headers.append(("Set-Cookie", f"session={rng.getrandbits(64):016x}; Path=/; HttpOnly"))
    capture.headers = [("Date", _http_date(capture.date - dt.timedelta(seconds=rng.randint(1, 5)))), *headers]


# ---------------------------------------------------------------- WARC writing


def _request_record(writer: WARCWriter, capture: Capture, warcinfo_id: str, ip: str) -> Any:
    path = capture.uri.split("://", 1)[1]
    host, _, rest = path.partition("/")
    lang = capture.site.lang
    accept_lang = "en-US,en;q=0.5" if lang == "en" else f"{lang},en-US;q=0.7,en;q=0.3"
    http = StatusAndHeaders(
        f"GET /{rest.split('#')[0]} HTTP/1.1",
        [
            ("User-Agent", USER_AGENT),
            ("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
            ("Accept-Language", accept_lang),
            ("Accept-Encoding", "br,gzip"),
            ("Host", host),
            ("Connection", "Keep-Alive"),
        ],
        is_http_request=True,
    )
    return writer.create_warc_record(
        capture.uri,
        "request",
        http_headers=http,
        warc_headers_dict={
            "WARC-Date": _warc_date(capture.date),
            "WARC-Record-ID": capture.request_id,
            "WARC-Warcinfo-ID": warcinfo_id,
            "WARC-IP-Address": ip,
        },
    )


def _warc_date(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _response_record(writer: WARCWriter, capture: Capture, warcinfo_id: str, ip: str) -> Any:
    http = StatusAndHeaders(capture.status, capture.headers, protocol="HTTP/1.1")
    warc_headers = {
        "WARC-Date": _warc_date(capture.date),
        "WARC-Record-ID": capture.record_id,
        "WARC-Warcinfo-ID": warcinfo_id,
        "WARC-Concurrent-To": capture.request_id,
        "WARC-IP-Address": ip,
    }
    if capture.kind == "revisit":
        orig = capture.original
        assert orig is not None
        return writer.create_revisit_record(
            capture.uri, orig.payload_digest, orig.uri, _warc_date(orig.date), http_headers=http,
            warc_headers_dict=warc_headers,
        )  # fmt: skip
    if capture.body:
        media = next(v for k, v in capture.headers if k == "Content-Type").split(";")[0]
        warc_headers["WARC-Identified-Payload-Type"] = media
    return writer.create_warc_record(
        capture.uri,
        "response",
        payload=io.BytesIO(capture.body),
        length=len(capture.body),
        http_headers=http,
        warc_headers_dict=warc_headers,
    )


def _warcinfo_record(writer: WARCWriter, filename: str, record_id: str, when: dt.datetime, seed: int) -> Any:
    fields = (
        f"isPartOf: {CRAWL_ID}\r\npublisher: mathforge sample-crawl generator\r\n"
        f"description: Synthetic crawl for the mathforge demo (seed {seed}); see {MANIFEST_NAME}\r\n"
        "operator: mathforge\r\nsoftware: samplecrawl.writer (warcio)\r\n"
        f"robots: checked\r\nformat: WARC File Format 1.0\r\n"
        "conformsTo: http://bibnum.bnf.fr/WARC/WARC_ISO_28500_version1_latestdraft.pdf\r\n"
    ).encode()
    return writer.create_warc_record(
        "",
        "warcinfo",
        payload=io.BytesIO(fields),
        length=len(fields),
        warc_content_type="application/warc-fields",
        warc_headers_dict={
            "WARC-Date": _warc_date(when),
            "WARC-Record-ID": record_id,
            "WARC-Filename": filename,
        },
    )


def _truncate_point(path: Path, start: int) -> int:
    """A cut inside the last gzip member where its WARC and HTTP headers decode but the body is incomplete."""
    member = path.read_bytes()[start:]
    for cut in range(len(member) // 3, len(member) - 8, 16):
        out = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(member[:cut])
        if out.count(b"\r\n\r\n") >= 2 and len(out) > out.index(b"\r\n\r\n") + 200:
            return start + cut
    return start + len(member) // 2


def _manifest_entry(capture: Capture, filename: str, offset: int) -> dict[str, Any]:
    page = capture.page
    original = capture.original
    is_dup = capture.kind in ("exact_dup", "near_dup")
    return {
        "file": filename,
        "offset": offset,
        "uri": capture.uri,
        "record_id": capture.record_id,
        "request_record_id": capture.request_id,
        "warc_type": "revisit" if capture.kind == "revisit" else "response",
        "warc_date": _warc_date(capture.date),
        "domain": capture.site.domain,
        "http_status": int(capture.status.split()[0]),
        "content_type": next((v for k, v in capture.headers if k == "Content-Type"), None),
        "lang": page.lang if page else (original.page.lang if original and original.page else None),
        "genre": page.genre if page else None,
        "title": page.title if page else None,
        "is_math": bool(page and page.is_math),
        "math_encoding": capture.math_encoding,
        "formulas": page.formulas() if page and page.is_math else [],
        "charset": capture.charset if page else None,
        "charset_declared": capture.charset_declared if page else None,
        "duplicate_of": original.record_id if is_dup and original else None,
        "duplicate_kind": {"exact_dup": "exact", "near_dup": "near"}.get(capture.kind),
        "changed_words": capture.changed_words if capture.kind == "near_dup" else None,
        "near_dup_jaccard": round(set_jaccard(content_shingles(page), content_shingles(original.page)), 4)
        if capture.kind == "near_dup" and page and original and original.page
        else None,
        "broken": capture.kind if capture.kind in BROKEN_KINDS else None,
    }


def write_sample_crawl(
    out_dir: Path, *, n_files: int = 4, records_per_file: int = 60, math_share: float = 0.3, seed: int = 0
) -> Path:
    """Write the sample crawl into `out_dir` and return the path of its `warc.paths` file.

    `warc.paths` lists the WARC file names one per line, relative to its own folder (Common Crawl's are
    relative to the bucket). The same arguments always produce byte-identical files.
    """
    if n_files < 1 or records_per_file < 1:
        raise ValueError("n_files and records_per_file must be positive")
    rng = random.Random(seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    total = n_files * records_per_file
    captures = plan_crawl(total, math_share, rng)
    step = _SPAN / total
    for i, capture in enumerate(captures):
        capture.date = (
            _START + step * i + dt.timedelta(seconds=rng.randint(0, max(0, int(step.total_seconds()) - 1)))
        )
        capture.record_id, capture.request_id = _uuid(rng), _uuid(rng)
    ips = {domain: f"{rng.randint(23, 212)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
           for domain, *_ in SITES}  # fmt: skip
    names: list[str] = []
    entries: list[dict[str, Any]] = []
    for f in range(n_files):
        name = f"{CRAWL_ID}-{f:05d}.warc.gz"
        names.append(name)
        path = out_dir / name
        chunk = captures[f * records_per_file : (f + 1) * records_per_file]
        warcinfo_id = _uuid(rng)
        with path.open("wb") as fh:
            writer = WARCWriter(fh, gzip=True)
            writer.write_record(_warcinfo_record(writer, name, warcinfo_id, chunk[0].date, seed))
            last_offset = 0
            for capture in chunk:
                _render(capture, rng)
                ip = ips[capture.site.domain]
                writer.write_record(_request_record(writer, capture, warcinfo_id, ip))
                last_offset = fh.tell()
                record = _response_record(writer, capture, warcinfo_id, ip)
                writer.write_record(record)
                capture.payload_digest = record.rec_headers.get_header("WARC-Payload-Digest") or ""
                entries.append(_manifest_entry(capture, name, last_offset))
        if chunk[-1].kind == "truncated":
            os.truncate(path, _truncate_point(path, last_offset))
    paths_file = out_dir / PATHS_NAME
    paths_file.write_text("".join(n + "\n" for n in names), encoding="utf-8")
    manifest = {
        "crawl": CRAWL_ID,
        "seed": seed,
        "n_files": n_files,
        "records_per_file": records_per_file,
        "math_share": math_share,
        "files": names,
        "records": entries,
    }
    (out_dir / MANIFEST_NAME).write_text(json.dumps(manifest, ensure_ascii=False, indent=1), encoding="utf-8")
    return paths_file


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m samplecrawl.writer", description=__doc__.split("\n\n")[0]
    )
    add_dataclass_args(parser, SampleCrawlConfig)
    cfg = dataclass_from_args(SampleCrawlConfig, parser.parse_args(argv))
    paths = write_sample_crawl(
        Path(cfg.out),
        n_files=cfg.files,
        records_per_file=cfg.records,
        math_share=cfg.math_share,
        seed=cfg.seed,
    )
    print(paths)


if __name__ == "__main__":
    main()
