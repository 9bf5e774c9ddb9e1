"""Build realistic HTML pages for the sample crawl: page content first, then a site theme around it.

Content (`Page`) and presentation (`render_html`) are separate so that a near-duplicate can reuse a page's
content with a few words changed inside another site's boilerplate, and so that a math page can be
rendered in any math encoding. Every page is a full document with navigation, cookie banner, sidebar and
footer around the article, because main-text extraction is only tested if there is something to strip.
"""

from __future__ import annotations

import html
import random
import re
import unicodedata
from dataclasses import dataclass, field, replace

from classifiers.text_norm import words
from samplecrawl.math_render import head_scripts, render_formula
from samplecrawl.math_text import PHRASES, PROBLEMS
from samplecrawl.text import GENRES, UI, fill

TEXT_GENRES = ("news", "recipe", "product", "forum", "blog")
MATH_GENRES = ("math_solution", "math_lecture", "math_qa")
THEMES = ("portal", "blog", "forum", "shop", "edu", "qa")
GENRE_THEME = {
    "news": "portal",
    "blog": "blog",
    "recipe": "blog",
    "forum": "forum",
    "product": "shop",
    "math_solution": "blog",
    "math_lecture": "edu",
    "math_qa": "qa",
}
_INLINE = re.compile(r"\[\[(\w+)\]\]")


@dataclass(frozen=True)
class Tex:
    """A formula inside page content; rendered per the page's math encoding."""

    tex: str
    display: bool = False


Part = str | Tex


@dataclass
class Section:
    """A unit of the main content: the article, a question, an answer, a titled part of lecture notes."""

    role: str  # article | question | answer | part | review
    heading: str = ""
    byline: str = ""
    blocks: list[list[Part]] = field(default_factory=list)  # paragraphs; a display formula is its own block


@dataclass
class Page:
    lang: str
    genre: str
    title: str
    sections: list[Section]
    author: str

    @property
    def is_math(self) -> bool:
        return self.genre in MATH_GENRES

    def formulas(self) -> list[str]:
        """Unique TeX of the page's formulas in reading order (the gold list for math extraction)."""
        seen: dict[str, None] = {}
        for section in self.sections:
            for block in section.blocks:
                for part in block:
                    if isinstance(part, Tex):
                        seen.setdefault(part.tex, None)
        return list(seen)


@dataclass(frozen=True)
class Site:
    domain: str
    lang: str
    name: str
    theme: str
    server: str


def _pick(rng: random.Random, pool: list[str], k: int) -> list[str]:
    """k items of `pool` in their original order (keeps sentences in a sensible sequence)."""
    idx = sorted(rng.sample(range(len(pool)), min(k, len(pool))))
    return [pool[i] for i in idx]


def _paragraphs(sentences: list[str], rng: random.Random) -> list[list[Part]]:
    blocks: list[list[Part]] = []
    i = 0
    while i < len(sentences):
        size = rng.randint(1, 3)
        blocks.append([" ".join(sentences[i : i + size])])
        i += size
    return blocks


def build_text_page(lang: str, genre: str, rng: random.Random) -> Page:
    """A non-math page (news, recipe, product, forum thread, blog post) filled from the text pools."""
    pool = GENRES[lang][genre]
    author = fill("{name}", lang, rng)
    title = fill(rng.choice(pool["titles"]), lang, rng)
    sentences = [fill(s, lang, rng) for s in _pick(rng, pool["sentences"], rng.randint(5, 7))]
    if genre == "forum":
        question = Section("question", heading=title, byline=author, blocks=[[sentences[0]]])
        answers = [Section("answer", byline=fill("{name}", lang, rng), blocks=[[s]]) for s in sentences[1:]]
        return Page(lang, genre, title, [question, *answers], author)
    sections = [Section("article", heading=title, byline=author, blocks=_paragraphs(sentences, rng))]
    if genre == "product":
        review = fill(rng.choice(GENRES[lang]["product"]["sentences"]), lang, rng)
        sections.append(
            Section(
                "review", heading=UI[lang]["reviews"], byline=fill("{name}", lang, rng), blocks=[[review]]
            )
        )
    return Page(lang, genre, title, sections, author)


def _with_formulas(template: str, formulas: dict[str, str]) -> list[Part]:
    """Split a phrase with `[[name]]` markers into text and inline formulas."""
    parts: list[Part] = []
    pos = 0
    for match in _INLINE.finditer(template):
        if match.start() > pos:
            parts.append(template[pos : match.start()])
        parts.append(Tex(formulas[match.group(1)]))
        pos = match.end()
    if pos < len(template):
        parts.append(template[pos:])
    return parts


def _steps(lines: list[str], formulas: dict[str, str]) -> list[list[Part]]:
    return [
        [Tex(formulas[line[2:]], display=True)] if line.startswith("@@") else _with_formulas(line, formulas)
        for line in lines
    ]


def build_math_page(lang: str, genre: str, rng: random.Random) -> Page:
    """A math page (worked solution, lecture notes or forum Q&A) on a random problem with random numbers."""
    problem = rng.choice(sorted(PROBLEMS))
    formulas = PROBLEMS[problem](rng)
    text = PHRASES[lang][problem]
    frame = PHRASES[lang]["frame"]
    author = fill("{name}", lang, rng)
    statement = _with_formulas(rng.choice(text["statement"]), formulas)
    steps = _steps(text["steps"], formulas)
    remarks = [[r] for r in _pick(rng, frame["remarks"], 2)]
    topic = text["topic"]
    n = rng.randint(2, 12)
    if genre == "math_qa":
        title = rng.choice(frame["qa_title"]).format(topic=topic, n=n)
        question = Section(
            "question",
            heading=title,
            byline=author,
            blocks=[[rng.choice(frame["qa_intro"])], statement, [rng.choice(frame["qa_tried"])]],
        )
        sections = [
            question,
            Section("answer", heading=frame["accepted"], byline=fill("{name}", lang, rng), blocks=steps),
        ]
        if rng.random() < 0.6:
            alt = _with_formulas(text["alt"], formulas)
            sections.append(Section("answer", byline=fill("{name}", lang, rng), blocks=[alt, *remarks[:1]]))
    elif genre == "math_lecture":
        title = rng.choice(frame["lecture_title"]).format(topic=topic, n=n)
        exercise = _with_formulas(rng.choice(text["statement"]), PROBLEMS[problem](rng))
        sections = [
            Section("part", heading=frame["theorem"], blocks=_steps(text["theory"], formulas)),
            Section("part", heading=f"{frame['example']} {n}.1", blocks=[statement, *steps]),
            Section("part", heading=frame["exercise"], blocks=[exercise, *remarks]),
        ]
    else:
        title = rng.choice(frame["solution_title"]).format(topic=topic, n=n)
        sections = [
            Section(
                "article",
                heading=title,
                byline=author,
                blocks=[[frame["problem"] + ": ", *statement], *steps, *remarks],
            ),
        ]
    return Page(lang, genre, title, sections, author)


def build_page(lang: str, genre: str, rng: random.Random) -> Page:
    return build_math_page(lang, genre, rng) if genre in MATH_GENRES else build_text_page(lang, genre, rng)


def perturb(page: Page, rng: random.Random, words_per_change: int = 60) -> tuple[Page, int]:
    """A near-duplicate of `page`: a few words replaced by other words of the same page.

    Roughly one change per `words_per_change` words (at least one), so the shingle Jaccard with the original
    stays high. Chinese has no spaces, so there single characters are swapped instead.
    """
    text_parts = [
        (si, bi, pi)
        for si, section in enumerate(page.sections)
        for bi, block in enumerate(section.blocks)
        for pi, part in enumerate(block)
        if isinstance(part, str) and part.strip()
    ]
    unit = (lambda s: list(s)) if page.lang == "zh" else (lambda s: s.split(" "))
    joiner = "" if page.lang == "zh" else " "
    vocab = [
        w
        for si, bi, pi in text_parts
        for w in unit(page.sections[si].blocks[bi][pi])
        if len(w.strip()) > 1 or page.lang == "zh"
    ]
    n_words = len(vocab) if page.lang != "zh" else len(vocab) // 2
    changes = max(1, n_words // words_per_change)
    sections = [replace(s, blocks=[list(b) for b in s.blocks]) for s in page.sections]
    for _ in range(changes):
        si, bi, pi = rng.choice(text_parts)
        units = unit(sections[si].blocks[bi][pi])
        k = rng.randrange(len(units))
        units[k] = rng.choice([w for w in vocab if w != units[k]] or ["…"])
        sections[si].blocks[bi][pi] = joiner.join(units)
    return replace(page, sections=sections), changes


def page_text(page: Page) -> str:
    """The visible content of a page as plain text (formulas as their TeX), without any site boilerplate."""
    parts = [page.title]
    for section in page.sections:
        parts += [section.heading, section.byline]
        parts += [p.tex if isinstance(p, Tex) else p for block in section.blocks for p in block]
    return "\n".join(p for p in parts if p)


def content_shingles(page: Page, n: int = 5) -> set[tuple[str, ...]]:
    """The word n-grams of a page's content (words as in `classifiers.text_norm`)."""
    tokens = words(page_text(page))
    return {tuple(tokens[i : i + n]) for i in range(max(1, len(tokens) - n + 1))}


def set_jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


# ---------------------------------------------------------------- rendering


def _esc(text: str) -> str:
    return html.escape(text, quote=False)


def _render_block(block: list[Part], encoding: str | None) -> str:
    if len(block) == 1 and isinstance(block[0], Tex) and block[0].display:
        return (
            f'<div class="equation">{render_formula(block[0].tex, encoding or "mathjax_paren", True)}</div>'
        )
    inner = "".join(
        render_formula(p.tex, encoding or "mathjax_paren", p.display) if isinstance(p, Tex) else _esc(p)
        for p in block
    )
    return f"<p>{inner}</p>"


def _section_html(
    section: Section, encoding: str | None, ui: dict[str, str], date: str, rng: random.Random
) -> str:
    body = "\n".join(_render_block(b, encoding) for b in section.blocks)
    if section.role == "article":
        meta = f'<p class="byline">{_esc(ui["posted"])} <time>{date}</time> {_esc(ui["by"])} <a rel="author" href="#">{_esc(section.byline)}</a></p>'
        return f'<article class="post">\n<h1 class="entry-title">{_esc(section.heading)}</h1>\n{meta}\n<div class="entry-content">\n{body}\n</div>\n</article>'
    if section.role in ("question", "answer"):
        votes = rng.randint(0, 40)
        head = f"<h1>{_esc(section.heading)}</h1>\n" if section.role == "question" else ""
        label = (
            f'<div class="answer-label">{_esc(section.heading)}</div>\n'
            if section.role == "answer" and section.heading
            else ""
        )
        return (
            f'<div class="{section.role}" id="{section.role}-{rng.randint(10000, 99999)}">\n{head}{label}'
            f'<div class="votecell"><span class="vote-count">{votes}</span> {_esc(ui["votes"])}</div>\n'
            f'<div class="post-text">\n{body}\n</div>\n'
            f'<div class="user-info">{_esc(ui["asked"] if section.role == "question" else ui["answers"])} '
            f'<a href="#" class="user">{_esc(section.byline)}</a></div>\n</div>'
        )
    if section.role == "review":
        stars = "★" * rng.randint(3, 5)
        return f'<section class="reviews"><h2>{_esc(section.heading)}</h2><div class="review"><span class="stars">{stars}</span> <b>{_esc(section.byline)}</b>\n{body}</div></section>'
    return f'<section class="lecture-part">\n<h2>{_esc(section.heading)}</h2>\n{body}\n</section>'


def _nav(ui: dict[str, str], site: Site) -> str:
    items = [ui["home"], ui["news"], ui["about"], ui["contact"]]
    links = "".join(
        f'<li><a href="https://{site.domain}/{i}/">{_esc(t)}</a></li>' for i, t in enumerate(items)
    )
    return f'<nav class="main-nav" aria-label="{_esc(ui["menu"])}"><ul>{links}</ul></nav>'


def _sidebar(page: Page, ui: dict[str, str], rng: random.Random) -> str:
    lang = page.lang if page.lang in GENRES else "en"
    genre = page.genre if page.genre in GENRES[lang] else "news"
    titles = [fill(t, lang, rng) for t in _pick(rng, GENRES[lang][genre]["titles"], 3)]
    links = "".join(f'<li><a href="#r{rng.randint(100, 999)}">{_esc(t)}</a></li>' for t in titles)
    heading = ui["related"] if rng.random() < 0.5 else ui["popular"]
    return f'<aside class="sidebar widget-area"><h3 class="widget-title">{_esc(heading)}</h3><ul>{links}</ul></aside>'


def _cookie_banner(ui: dict[str, str]) -> str:
    return (
        f'<div id="cookie-consent" class="cookie-banner" role="dialog"><p>{_esc(ui["cookie"])}</p>'
        f'<button class="accept">{_esc(ui["accept"])}</button> <a href="#cookies">{_esc(ui["settings"])}</a></div>'
    )


def _footer(ui: dict[str, str], site: Site, year: int) -> str:
    links = " | ".join(f'<a href="/{k}">{_esc(ui[k])}</a>' for k in ("privacy", "terms", "contact"))
    return (
        f'<footer class="site-footer"><p>{links}</p>'
        f'<p class="newsletter"><a href="/newsletter">{_esc(ui["subscribe"])}</a></p>'
        f"<p>© {year} {_esc(site.name)}. {_esc(ui['rights'])}</p></footer>"
    )


def render_html(
    page: Page,
    site: Site,
    *,
    encoding: str | None,
    charset_meta: str | None,
    date: str,
    rng: random.Random,
) -> str:
    """A full HTML document for `page` in `site`'s theme; `charset_meta` adds a <meta> charset declaration."""
    ui = UI[page.lang]
    main = "\n".join(_section_html(s, encoding, ui, date, rng) for s in page.sections)
    meta = ""
    if charset_meta:
        meta = (
            f'<meta charset="{charset_meta}">'
            if rng.random() < 0.5
            else f'<meta http-equiv="Content-Type" content="text/html; charset={charset_meta}">'
        )
    head = (
        f'<head>\n{meta}\n<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_esc(page.title)} | {_esc(site.name)}</title>\n"
        f'<link rel="stylesheet" href="https://{site.domain}/static/{site.theme}.css">\n'
        f"{head_scripts(encoding) if encoding else ''}\n"
        f'<script async src="https://www.googletagmanager.com/gtag/js?id=G-{rng.randint(10**9, 10**10 - 1)}"></script>\n</head>'
    )
    header = f'<header class="site-header"><a class="logo" href="/">{_esc(site.name)}</a>{_nav(ui, site)}' + (
        f'<form class="search" action="/search"><input name="q" placeholder="{_esc(ui["search"])}"></form>'
        f'<a class="login" href="/login">{_esc(ui["login"])}</a></header>'
    )
    year = int(date[:4])
    cookie = _cookie_banner(ui) if site.theme in ("portal", "shop", "blog", "qa") else ""
    if site.theme == "edu":
        body = (
            f'<body class="course-page">\n<div id="header"><a href="/">{_esc(site.name)}</a></div>\n'
            f'{_nav(ui, site)}\n<div id="content">\n<h1>{_esc(page.title)}</h1>\n{main}\n</div>\n'
            f'<div id="footer"><p>© {year} {_esc(site.name)}</p></div>\n</body>'
        )
    elif site.theme in ("forum", "qa"):
        crumbs = f'<div class="breadcrumbs"><a href="/">{_esc(ui["home"])}</a> › <span>{_esc(page.title)}</span></div>'
        body = (
            f'<body class="{site.theme}">\n{header}\n{cookie}\n<div id="wrapper">\n{crumbs}\n'
            f'<div id="mainbar" class="thread">\n{main}\n</div>\n{_sidebar(page, ui, rng)}\n</div>\n'
            f"{_footer(ui, site, year)}\n</body>"
        )
    else:
        body = (
            f'<body class="{site.theme}">\n{header}\n{cookie}\n<div class="container">\n<main id="main" class="content">\n'
            f'{main}\n<div class="share">{_esc(ui["share"])}: <a href="#">Facebook</a> <a href="#">X</a></div>\n'
            f"</main>\n{_sidebar(page, ui, rng)}\n</div>\n{_footer(ui, site, year)}\n</body>"
        )
    html_lang = {"zh": "zh-CN"}.get(page.lang, page.lang)
    return f'<!DOCTYPE html>\n<html lang="{html_lang}">\n{head}\n{body}\n</html>\n'


def slugify(text: str) -> str:
    """ASCII slug for URLs; empty for scripts without Latin letters."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")[:60]
