"""Two text passes over a page: a cheap one for every page, and a math-aware one for the candidates.

`extract_fast_text` is resiliparse's `extract_plain_text`: a C++ DOM walk, 10-20x faster than trafilatura
on real pages (DESIGN.md: 700-1,000 vs 78 docs/s on one core). It runs on the whole page, without
main-content detection, which halves its cost again (measured ~1.1 vs ~1.9 ms on the bench crawl's
~230 KB pages) and loses nothing that matters here: the text is only *scored* (stage one routes pages to
the expensive path), never published; navigation adds words, not math. Image alt text is kept, which is
where formula images carry their TeX.

`extract_math_text` is the publishing path: the page's code blocks are first marked as code
(`crawl.code_markup`: fenced in the text whichever extractor's text is kept, and out of reach of the formula
rewrite), then its formulas are rewritten in place as
`$...$` / `$$...$$` (`crawl.math_markup`), formula text left loose in layout containers is given a
paragraph of its own (trafilatura discards loose text in `<div>`/`<center>` blocks and would drop the
display formulas with it), then the main text is selected (`crawl.main_content`: trafilatura's, or
resiliparse's main-content text where trafilatura lost formulas or most of the page). Both plain-text
outputs neither escape nor strip `$`, `\\`, `_` or `^`, and tables and lists are kept, so the LaTeX survives.
A `Deadline` is checked between these steps and inside the rewrite (`crawl.deadline`).
"""

from __future__ import annotations

import logging

from lxml import etree
from resiliparse.extract.html2text import extract_plain_text

from crawl.code_markup import NO_CODE, has_code_markup, mark_code
from crawl.deadline import NO_DEADLINE, Deadline
from crawl.main_content import MainText, select_main_text
from crawl.math_markup import latexify_tree, parse_html
from crawl.mathml_tex import local_name

log = logging.getLogger(__name__)

_CHECK_ELEMENTS = 1024  # elements walked between deadline checks


# Containers in which trafilatura does not pick up loose text nodes.
_LOOSE_TEXT_PARENTS = frozenset(
    {
        "div",
        "center",
        "section",
        "article",
        "main",
        "body",
        "blockquote",
        "figure",
        "dd",
        "dt",
        "form",
        "span",
    }
)


def extract_fast_text(html: str) -> str:
    """Cheap whole-page text for stage-one scoring of every page ('' when the page has none)."""
    try:
        return extract_plain_text(html, main_content=False, alt_texts=True, preserve_formatting=True).strip()
    except Exception as exc:  # resiliparse is robust, but a crawl holds every kind of garbage
        log.debug("resiliparse failed: %s", exc)
        return ""


def _has_formula(text: str | None) -> bool:
    return bool(text) and "$" in text  # type: ignore[operator]


def _paragraph(text: str) -> etree._Element:
    para = etree.Element("p")
    para.text = text.strip()
    return para


def promote_loose_formulas(root: etree._Element, deadline: Deadline = NO_DEADLINE) -> int:
    """Give formula-bearing text that sits loose in a layout container its own <p>; returns how many.

    One walk over the elements gathers the texts that hold a `$`; only those are looked at again."""
    promoted = 0
    for owner, is_tail in _formula_texts(root, deadline):
        deadline.check()
        if is_tail:  # the tail of a child of a layout container
            el = owner.getparent()
            if el is None or local_name(el) not in _LOOSE_TEXT_PARENTS or not _has_formula(owner.tail):
                continue
            owner.addnext(_paragraph(owner.tail or ""))
            owner.tail = None
        else:  # a layout container's own text, before its first child
            if local_name(owner) not in _LOOSE_TEXT_PARENTS or not len(owner) or not _has_formula(owner.text):
                continue
            owner.insert(0, _paragraph(owner.text or ""))
            owner.text = None
        promoted += 1
    return promoted


def _formula_texts(root: etree._Element, deadline: Deadline) -> list[tuple[etree._Element, bool]]:
    """(holder, is_tail) for every text and tail under `root` (not root's own tail) that holds a `$`."""
    found: list[tuple[etree._Element, bool]] = []
    for i, el in enumerate(root.iter()):
        if not i % _CHECK_ELEMENTS:
            deadline.check()
        tail = el.tail
        if tail and "$" in tail and el is not root:
            found.append((el, True))
        text = el.text
        if text and "$" in text and isinstance(el.tag, str):
            found.append((el, False))
    return found


NO_TEXT = MainText("", "none", "no_text", 0)


def extract_math_text(html: str, url: str | None = None, deadline: Deadline = NO_DEADLINE) -> MainText:
    """Main text with every formula as LaTeX ($...$ inline, $$...$$ display) and code as code (fenced
    blocks, `inline` spans: `crawl.code_markup`), and which extractor chose it (`crawl.main_content`);
    empty text for pages without any. Raises `PageTimeout` once `deadline` passes."""
    root = parse_html(html)
    if root is None:
        return NO_TEXT
    deadline.check()
    code = mark_code(root, deadline, html) if has_code_markup(html) else NO_CODE  # first: no LaTeX in code
    try:
        latexify_tree(root, deadline)
        promote_loose_formulas(root, deadline)
    except (ValueError, etree.LxmlError) as exc:  # keep whatever was rewritten; extraction still runs
        log.warning("math markup rewrite failed on %s: %s", url, exc)
    deadline.check()
    return select_main_text(root, url, deadline, code)
