"""A generated web with planted math domains, for testing the recall loop (`mathforge corpus iterate`).

The point of DeepSeekMath's loop is to find math that the seed classifier cannot see: pages whose math is
plain text, without any TeX or MathML markup. This generator plants exactly that:

* plain-text math domains: a math path (`/questions/`, ...) holding real grade-school word problems with
  their worked solutions (GSM8K test items from ../shared/data, plain text, no markup) and, on most of these
  domains, a minority of pages whose formulas carry MathJax/MathML markup; a non-math path (`/blog/`, ...)
  beside it. The markup minority is what round 1's classifier (trained on markup seeds) collects; it lifts
  the domain above the domain-share bar, so the plain-text pages under the same path become seeds.
  One domain has too few markup pages to be noticed in round 1: only a classifier that has learnt plain-text
  math from the other domains finds it;
* markup math domains (lecture notes and worked solutions in MathJax/MathML: the seed distribution);
* non-math domains (news, recipes, a shop, a help forum);
* real pages from ../shared/data (math pages in real encodings, and general pages) with their own labels.

Written: gzipped WARC files (response records), `warc.paths`, `labels.jsonl` (url → is_math), `seeds.jsonl`
(markup-math texts as math-aware extraction writes them, standing in for OpenWebMath), `planted_web.json`
(which domain is which). Same arguments, same bytes.

    python -m samplecrawl.planted_web --out DIR --shared ../shared/data
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import io
import json
import random
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from samplecrawl.pages import (
    MATH_GENRES,
    Page,
    Section,
    Site,
    Tex,
    build_math_page,
    build_text_page,
    render_html,
    slugify,
)
from samplecrawl.text import fill

CRAWL_ID = "CC-MAIN-2026-01-planted"
MARKUP_ENCODINGS = ("mathjax_dollar", "mathjax_paren", "mathml_annotated", "script_math_tex")
_START = dt.datetime(2026, 2, 2, tzinfo=dt.UTC)


@dataclass(frozen=True)
class PlainMathDomain:
    """A domain whose math lives under `math_prefix`: `plain` plain-text pages plus `markup` marked-up ones."""

    domain: str
    name: str
    math_prefix: str
    other_prefix: str
    other_genre: str
    plain: int
    markup: int
    other: int


PLAIN_MATH_DOMAINS = (
    PlainMathDomain(
        "askmath-community.org", "AskMath Community", "/questions/", "/blog/", "blog", 28, 10, 10
    ),
    PlainMathDomain("homework-corner.net", "Homework Corner", "/problems/", "/shop/", "product", 28, 10, 10),
    PlainMathDomain("puzzle-tutor.com", "Puzzle Tutor", "/lessons/", "/news/", "news", 28, 2, 12),
)
MARKUP_MATH_DOMAINS = (
    ("math.lakeside-college.edu", "Lakeside College Mathematics", "/notes/", "math_lecture", 14),
    ("stepwise-solutions.com", "Stepwise Solutions", "/solutions/", "math_solution", 14),
)
NONMATH_DOMAINS = (
    ("www.harbor-times.com", "Harbor Times", "/news/", "news", 30),
    ("kitchen-stories.net", "Kitchen Stories", "/recipes/", "recipe", 30),
    ("gearshop-online.com", "Gearshop Online", "/product/", "product", 30),
    ("forum.pc-helpers.org", "PC Helpers Forum", "/thread/", "forum", 30),
)
_THEME = {"news": "portal", "recipe": "blog", "blog": "blog", "product": "shop", "forum": "forum",
          "math_qa": "qa", "math_lecture": "edu", "math_solution": "blog"}  # fmt: skip
_CALC_RE = re.compile(r"<<[^>]*>>")


@dataclass
class PlantedPage:
    url: str
    body: bytes
    is_math: bool
    kind: str  # plain_math | markup_math | other | real


def _site(domain: str, name: str, genre: str) -> Site:
    return Site(domain, "en", name, _THEME[genre], "nginx")


def _gsm8k_page(item: dict, rng: random.Random) -> Page:
    """A Q&A page from one GSM8K item: the question, then the worked solution in plain text."""
    question = item["question"].strip()
    steps = [_CALC_RE.sub("", line).strip() for line in item["answer"].splitlines() if line.strip()]
    if steps and steps[-1].startswith("####"):
        steps[-1] = f"So the answer is {steps[-1].lstrip('#').strip()}."
    title = " ".join(question.split()[:9]).rstrip(",.;:") + " ..."
    author = fill("{name}", "en", rng)
    sections = [
        Section("question", heading=title, byline=author, blocks=[[question]]),
        Section(
            "answer", heading="Worked solution", byline=fill("{name}", "en", rng), blocks=[[s] for s in steps]
        ),
    ]
    return Page("en", "math_qa", title, sections, author)


def _render(page: Page, site: Site, encoding: str | None, rng: random.Random) -> bytes:
    return render_html(
        page, site, encoding=encoding, charset_meta="utf-8", date="2026-02-02", rng=rng
    ).encode()


def extracted_text(page: Page) -> str:
    """A math page's text as math-aware extraction writes it (`$..$` inline, `$$..$$` display)."""
    lines = [page.title]
    for section in page.sections:
        lines += [section.heading, section.byline]
        for block in section.blocks:
            lines.append(
                "".join(
                    (f"$${p.tex}$$" if p.display else f"${p.tex}$") if isinstance(p, Tex) else p
                    for p in block
                )
            )
    return "\n".join(line for line in lines if line)


def _real_pages(shared: Path, n_general: int) -> list[PlantedPage]:
    """Real math pages (all of html_math) and the first `n_general` real general pages, labelled."""
    out: list[PlantedPage] = []
    picks = [
        (json.loads(line), "html_math") for line in (shared / "html_math" / "math_pages_index.jsonl").open()
    ]
    general = [json.loads(line) for line in (shared / "html_general" / "pages_index.jsonl").open()]
    general = [g for g in general if not g.get("synthetic")]
    by_source: dict[str, list[dict]] = {}
    for g in general:
        by_source.setdefault(g["source"], []).append(g)
    per_source = max(1, n_general // max(1, len(by_source)))
    picks += [(g, "html_general") for source in sorted(by_source) for g in by_source[source][:per_source]]
    used: set[str] = set()
    for entry, _ in picks:
        path = shared / entry["file"]
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as fh:
                body = fh.read()
        else:
            body = path.read_bytes()
        url = entry.get("url")
        if not url or url in used:
            source = slugify(entry.get("source") or entry["file"].split("/")[1]) or "real"
            url = f"https://{source}.real-pages.test/{slugify(entry['file'])}"
        used.add(url)
        out.append(PlantedPage(url, body, bool(entry["is_math"]), "real"))
    return out


def _response(writer: WARCWriter, page: PlantedPage, when: dt.datetime, rng: random.Random):
    http = StatusAndHeaders(
        "200 OK",
        [("Content-Type", "text/html"), ("Content-Length", str(len(page.body)))],
        protocol="HTTP/1.1",
    )
    return writer.create_warc_record(
        page.url,
        "response",
        payload=io.BytesIO(page.body),
        length=len(page.body),
        http_headers=http,
        warc_headers_dict={
            "WARC-Date": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "WARC-Record-ID": f"<urn:uuid:{uuid.UUID(int=rng.getrandbits(128), version=4)}>",
        },
    )


def plant_pages(shared: Path, seed: int = 0, n_general: int = 60) -> tuple[list[PlantedPage], dict]:
    """Every page of the planted web (shuffled) and the description of its domains."""
    rng = random.Random(seed)
    gsm8k = [json.loads(line) for line in (shared / "math_benchmarks" / "gsm8k_test.jsonl").open()]
    rng.shuffle(gsm8k)
    pages: list[PlantedPage] = []
    used: set[str] = set()

    def url(domain: str, prefix: str, title: str) -> str:
        slug = slugify(title)[:40] or "page"
        candidate = f"https://{domain}{prefix}{rng.randint(1000, 99999)}/{slug}"
        while candidate in used:
            candidate = f"https://{domain}{prefix}{rng.randint(1000, 99999)}/{slug}"
        used.add(candidate)
        return candidate

    for d in PLAIN_MATH_DOMAINS:
        qa_site, other_site = _site(d.domain, d.name, "math_qa"), _site(d.domain, d.name, d.other_genre)
        for _ in range(d.plain):
            page = _gsm8k_page(gsm8k.pop(), rng)
            pages.append(PlantedPage(url(d.domain, d.math_prefix, page.title), _render(page, qa_site, None, rng),
                                     True, "plain_math"))  # fmt: skip
        for _ in range(d.markup):
            page = build_math_page("en", "math_qa", rng)
            body = _render(page, qa_site, rng.choice(MARKUP_ENCODINGS), rng)
            pages.append(PlantedPage(url(d.domain, d.math_prefix, page.title), body, True, "markup_math"))
        for _ in range(d.other):
            page = build_text_page("en", d.other_genre, rng)
            body = _render(page, other_site, None, rng)
            pages.append(PlantedPage(url(d.domain, d.other_prefix, page.title), body, False, "other"))
    for domain, name, prefix, genre, n in MARKUP_MATH_DOMAINS:
        site = _site(domain, name, genre)
        for _ in range(n):
            page = build_math_page("en", genre, rng)
            body = _render(page, site, rng.choice(MARKUP_ENCODINGS), rng)
            pages.append(PlantedPage(url(domain, prefix, page.title), body, True, "markup_math"))
    for domain, name, prefix, genre, n in NONMATH_DOMAINS:
        site = _site(domain, name, genre)
        for _ in range(n):
            page = build_text_page("en", genre, rng)
            pages.append(
                PlantedPage(url(domain, prefix, page.title), _render(page, site, None, rng), False, "other")
            )
    pages += _real_pages(shared, n_general)
    rng.shuffle(pages)
    domains = {
        "plain_math": [d.domain for d in PLAIN_MATH_DOMAINS],
        "plain_math_prefixes": [d.domain + d.math_prefix for d in PLAIN_MATH_DOMAINS],
        "markup_math": [d[0] for d in MARKUP_MATH_DOMAINS],
        "non_math": [d[0] for d in NONMATH_DOMAINS],
    }
    return pages, domains


def seed_texts(n: int, seed: int = 0) -> list[str]:
    """Markup-math seed texts (lecture notes, solutions, Q&A with TeX), as extraction writes them."""
    rng = random.Random(seed + 1)
    return [extracted_text(build_math_page("en", MATH_GENRES[i % len(MATH_GENRES)], rng)) for i in range(n)]


def write_planted_web(
    out_dir: Path, shared: Path, *, n_files: int = 2, seed: int = 0, n_seeds: int = 60, n_general: int = 60
) -> Path:
    """Write the planted web into `out_dir`; returns its `warc.paths` file."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pages, domains = plant_pages(Path(shared), seed, n_general)
    rng = random.Random(seed + 2)
    names = []
    for f in range(n_files):
        name = f"{CRAWL_ID}-{f:05d}.warc.gz"
        names.append(name)
        with (out_dir / name).open("wb") as fh:
            writer = WARCWriter(fh, gzip=True)
            for i, page in enumerate(pages[f::n_files]):
                writer.write_record(_response(writer, page, _START + dt.timedelta(minutes=i), rng))
    (out_dir / "warc.paths").write_text("".join(n + "\n" for n in names), encoding="utf-8")
    with (out_dir / "labels.jsonl").open("w", encoding="utf-8") as fh:
        for page in pages:
            fh.write(json.dumps({"url": page.url, "is_math": page.is_math, "kind": page.kind}) + "\n")
    with (out_dir / "seeds.jsonl").open("w", encoding="utf-8") as fh:
        for text in seed_texts(n_seeds, seed):
            fh.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
    summary = {"crawl": CRAWL_ID, "seed": seed, "pages": len(pages), "math_pages": sum(p.is_math for p in pages),
               "domains": domains}  # fmt: skip
    (out_dir / "planted_web.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    return out_dir / "warc.paths"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m samplecrawl.planted_web", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--out", required=True, help="output folder (created)")
    parser.add_argument("--shared", default="../shared/data", help="the real test data (GSM8K, real pages)")
    parser.add_argument("--files", type=int, default=2, help="number of WARC files")
    parser.add_argument("--seed", type=int, default=0, help="RNG seed")
    args = parser.parse_args(argv)
    print(write_planted_web(Path(args.out), Path(args.shared), n_files=args.files, seed=args.seed))


if __name__ == "__main__":
    main()
