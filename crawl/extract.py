"""Main-text extraction with trafilatura: the article, without navigation, footers and cookie banners.

When trafilatura finds no main content (very short pages, unusual layouts) we fall back to its whole-page
text so every HTML page still yields text and the language and math scorers get to judge it; whether to keep
such a page is their decision, not the extractor's.
"""

from __future__ import annotations

import logging

import trafilatura
from lxml import etree
from trafilatura.settings import use_config

log = logging.getLogger(__name__)

_CONFIG = use_config()
# No wall-clock timeout inside extraction: it uses signals, which fail outside the main thread (Spark tasks).
_CONFIG.set("DEFAULT", "EXTRACTION_TIMEOUT", "0")


def trafilatura_text(html: str | etree._Element, url: str | None = None) -> str | None:
    """trafilatura's main text (from HTML or a parsed tree); None when it finds no main content. Plain-text
    output: `$`, `\\`, `_` and `^` pass through unescaped."""
    try:
        text = trafilatura.extract(
            html,
            url=url,
            config=_CONFIG,
            include_comments=False,
            include_tables=True,
            include_images=False,
            favor_precision=False,
            deduplicate=False,
        )
    except Exception as exc:  # lxml raises on some pathological documents
        log.debug("trafilatura failed on %s: %s", url, exc)
        return None
    text = (text or "").strip()
    return text or None


# The one script trafilatura reads (`_forum_thread_page`, and `baseline`'s schema.org text), by the exact
# attribute value it selects on.
_READ_SCRIPT_TYPE = "application/ld+json"


def drop_unread_scripts(root: etree._Element) -> int:
    """Delete the `<script>` (JSON-LD ones excepted) and `<style>` elements of a tree about to go to trafilatura,
    keeping their tails as trafilatura does; returns how many. Every path of trafilatura's cascade
    deletes them before it reads the tree (`tree_cleaning`, `basic_cleaning` ahead of baseline, html2txt
    and justext, readability's `summary`), so its text is the same, and each of its half-dozen copies and
    regex-XPath sweeps of the tree is spared them (pages carry hundreds of KB of inline script)."""
    dropped = 0
    for el in list(root.iter("script", "style")):
        parent = el.getparent()
        if parent is None or (el.tag == "script" and el.get("type") == _READ_SCRIPT_TYPE):
            continue
        if el.tail:  # trafilatura's `delete_element`: the tail joins the previous sibling or the parent
            previous = el.getprevious()
            if previous is None:
                parent.text = (parent.text or "") + el.tail
            else:
                previous.tail = (previous.tail or "") + el.tail
        parent.remove(el)
        dropped += 1
    return dropped


def whole_page_text(html: str | etree._Element) -> str:
    """All of the page's text, for pages in which no extractor finds main content."""
    try:
        return (trafilatura.html2txt(html) or "").strip()
    except Exception:
        return ""


def extract_main_text(html: str | etree._Element, url: str | None = None) -> str:
    """The page's main text by trafilatura, paragraphs separated by newlines, or its whole text when
    trafilatura finds no main content; '' only for pages with no text at all."""
    return trafilatura_text(html, url) or whole_page_text(html)
