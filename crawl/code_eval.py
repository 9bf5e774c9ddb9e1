"""Measuring code extraction against gold code blocks: exact-line recall of the code of real pages.

Shared by the tests and `bench/code_extraction.py`, so that the figures a test asserts and the figures the
benchmark reports are computed the same way. Gold code blocks, on the shared pages that have any
(`<pre>`/`<xmp>`/`<listing>` holding text):
- readability pages: the blocks of the gold article (`expected.html.gz`);
- magic-html pages: the page's blocks whose lines are in the gold main content (at least half of them);
- the other pages (trafilatura-eval, html_math): every block of the page.
A block's gold lines are its non-empty lines as displayed (`<br>` and paragraphs line breaks, no-break spaces as
spaces, trailing spaces dropped, indentation kept), read independently of `crawl.code_markup`; scripts,
buttons and SVG diagrams inside blocks are no code.
"""

from __future__ import annotations

import copy
import gzip
import json
import re
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import lxml.html
from lxml import etree

from crawl.code_markup import NO_CODE, CodeMarks, has_code_markup, mark_code
from crawl.deadline import NO_DEADLINE
from crawl.extract import trafilatura_text, whole_page_text
from crawl.main_content import resiliparse_text, select_main_text
from crawl.math_eval import read_page, squash
from crawl.math_extract import promote_loose_formulas
from crawl.math_markup import latexify_tree, parse_html

_BLOCK_TAGS = ("pre", "xmp", "listing")
_NOT_CODE = ("script", "style", "button", "noscript", "textarea", "template")
_FENCE_RE = re.compile(r"^(`{3,})(.*)$")


@dataclass(frozen=True)
class CodePage:
    name: str
    path: Path
    url: str | None
    blocks: list[list[str]]  # gold lines of each code block


def gold_block_lines(pre: etree._Element) -> list[str]:
    """A block's non-empty lines as a reader sees them (independent of `crawl.code_markup`)."""
    pre = copy.deepcopy(pre)  # a copy: its <br>s become newlines
    for el in list(pre.iter(*_NOT_CODE)):
        if el is not pre:
            el.drop_tree()  # its tail stays
    for br in pre.iter("br"):
        br.tail = "\n" + (br.tail or "")
    for block in pre.iter("p", "div", "li", "tr"):  # readability's gold turns <br><br> into paragraphs
        if block is not pre:
            block.text, block.tail = "\n" + (block.text or ""), "\n" + (block.tail or "")
    text = "".join(pre.itertext()).replace("\r\n", "\n").replace("\r", "\n").replace("\xa0", " ")
    return [line.rstrip() for line in text.split("\n") if line.strip()]


def page_blocks(html: str) -> list[list[str]]:
    root = lxml.html.document_fromstring(html)
    blocks = []
    for pre in root.iter(*_BLOCK_TAGS):
        if (
            any(a.tag in _BLOCK_TAGS for a in pre.iterancestors())
            or next(pre.iter("{*}svg", "svg"), None) is not None
        ):
            continue
        lines = gold_block_lines(pre)
        if lines:
            blocks.append(lines)
    return blocks


def code_pages(data: Path) -> list[CodePage]:
    """The shared pages with code blocks, with their gold blocks (see the module docstring)."""
    pages = []
    readability = data / "html_general/readability"
    for folder in sorted(readability.iterdir()):
        source, expected = folder / "source.html.gz", folder / "expected.html.gz"
        if source.exists() and expected.exists():
            blocks = page_blocks(read_page(expected))
            if blocks:
                pages.append(CodePage(f"readability/{folder.name}", source, None, blocks))
    magic = data / "html_general/magic-html"
    gold = json.loads(gzip.decompress((magic / "gold.json.gz").read_bytes()))
    for name, entry in sorted(gold.items()):
        html = read_page(magic / name)
        if not has_code_markup(html):
            continue
        content = squash(entry["gold_content"])
        blocks = [b for b in page_blocks(html) if sum(squash(x) in content for x in b) * 2 >= len(b)]
        if blocks:
            pages.append(CodePage(f"magic-html/{name}", magic / name, entry.get("url"), blocks))
    for index in ("html_general/pages_index.jsonl", "html_math/math_pages_index.jsonl"):
        for line in (data / index).read_text(encoding="utf-8").splitlines():
            entry = json.loads(line)
            if entry["file"].startswith(("html_general/readability/", "html_general/magic-html/")):
                continue
            html = read_page(data / entry["file"])
            blocks = page_blocks(html) if has_code_markup(html) else []
            if blocks:
                name = entry["file"].split("/", 1)[1]
                pages.append(CodePage(name, data / entry["file"], entry.get("url"), blocks))
    return pages


def fenced_lines(text: str) -> list[str]:
    """The lines inside the fenced blocks of `text`."""
    lines, fence = [], ""
    for line in text.split("\n"):
        m = _FENCE_RE.match(line)
        if fence:
            if m and m.group(1) == fence and not m.group(2).strip():
                fence = ""
            else:
                lines.append(line.rstrip())
        elif m:
            fence = m.group(1)
    return lines


def fence_languages(text: str) -> tuple[int, int]:
    """(fenced blocks, fenced blocks that name a language) in `text`."""
    blocks = named = 0
    fence = ""
    for line in text.split("\n"):
        m = _FENCE_RE.match(line)
        if fence:
            if m and m.group(1) == fence and not m.group(2).strip():
                fence = ""
        elif m:
            fence, blocks, named = m.group(1), blocks + 1, named + bool(m.group(2).strip())
    return blocks, named


def recall(gold: list[list[str]], lines: list[str]) -> tuple[int, int]:
    """(gold lines found in `lines`, gold lines), each output line matching at most one gold line."""
    pool = Counter(lines)
    found = total = 0
    for block in gold:
        for line in block:
            total += 1
            if pool[line] > 0:
                pool[line] -= 1
                found += 1
    return found, total


def prepared(html: str, code: bool = True) -> tuple[etree._Element, CodeMarks, float]:
    """The tree as `crawl.math_extract.extract_math_text` prepares it for main-text selection (with or
    without the code rewrite: `code`), its code marks, and the code rewrite's CPU seconds."""
    root = parse_html(html)
    if root is None:
        raise ValueError("not a document")
    started = time.process_time()
    marks = mark_code(root, NO_DEADLINE, html) if code and has_code_markup(html) else NO_CODE
    seconds = time.process_time() - started
    latexify_tree(root)
    promote_loose_formulas(root)
    return root, marks, seconds


PATHS = ("trafilatura", "resiliparse", "whole_page", "selected")


def extractor_texts(html: str, url: str | None, code: bool = True) -> tuple[dict[str, str], float]:
    """Each path's text of one page (`PATHS`: each extractor's, and the selection `extract_math_text`
    publishes), code restored; and the code rewrite's CPU seconds. A fresh tree per path: trafilatura
    changes the tree it reads."""
    texts = {}
    root, marks, seconds = prepared(html, code)
    texts["trafilatura"] = marks.restore(trafilatura_text(root, url) or "")
    root, marks, _ = prepared(html, code)
    texts["resiliparse"] = marks.restore(resiliparse_text(root))
    root, marks, _ = prepared(html, code)
    texts["whole_page"] = marks.restore(whole_page_text(root))
    root, marks, _ = prepared(html, code)
    texts["selected"] = select_main_text(root, url, NO_DEADLINE, marks).text
    return texts, seconds
