"""Measuring extraction against gold data: formula recall, must/must-not snippets, labelled page sets.

Shared by the tests and `bench/math_extraction.py`, so that the figures a test asserts and the figures a
benchmark reports are computed the same way (precision and recall of a decision: `classifiers.metrics`). The loaders
read the layout of the shared test data (`html_math/`, `html_general/` with their index files, see its
MANIFEST.md).
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

_WS_RE = re.compile(r"\s+")
# Folders of real math pages with gold formula lists (same layout: index.jsonl + expected_* files).
GOLD_DIRS = ("html_math/mineru-webkit_ccmath", "html_math/defuddle")
GOLD_TEXT_DIR = "html_general/magic-html"
MIN_GOLD_LINE = 25  # shorter gold lines (names, dates, "Reply") say little about which blocks were kept


def squash(text: str) -> str:
    """Text without any whitespace: gold formulas are compared this way."""
    return _WS_RE.sub("", text)


def formula_hits(text: str, formulas: list[str]) -> int:
    """How many gold formulas occur in `text`, whitespace removed on both sides."""
    haystack = squash(text)
    return sum(1 for f in formulas if squash(f) in haystack)


def snippet_score(text: str, must: list[str], must_not: list[str]) -> tuple[int, int]:
    """(must-snippets found, must-not snippets absent): higher is better for both."""
    return sum(1 for s in must if s in text), sum(1 for s in must_not if s not in text)


def read_page(path: Path) -> str:
    """A stored page as text (UTF-8 with replacement; the shared pages are UTF-8 or declare ASCII-safe charsets)."""
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        data = gzip.decompress(data)
    return data.decode("utf-8", "replace")


@dataclass(frozen=True)
class GoldPage:
    name: str
    path: Path
    url: str | None
    formulas: list[str]


def gold_pages(data_root: Path) -> list[GoldPage]:
    """The math pages with gold formula lists (display and inline files, one formula per line)."""
    pages = []
    for gold_dir in GOLD_DIRS:
        folder = data_root / gold_dir
        for line in (folder / "index.jsonl").read_text(encoding="utf-8").splitlines():
            entry = json.loads(line)
            formulas: list[str] = []
            for key in ("expected_display", "expected_inline"):
                if entry.get(key):
                    text = (folder / entry[key]).read_text(encoding="utf-8")
                    formulas += [f for f in text.split("\n") if f.strip()]
            if formulas:
                name = entry["file"].removesuffix(".gz").removesuffix(".html")
                pages.append(GoldPage(name, folder / entry["file"], entry.get("url"), formulas))
    return pages


@dataclass(frozen=True)
class GoldTextPage:
    name: str
    kind: str  # "forum" or "article"
    path: Path
    url: str | None
    lines: list[str]  # gold main-content lines of at least MIN_GOLD_LINE characters


def gold_text_pages(data_root: Path) -> list[GoldTextPage]:
    """magic-html's article and forum pages with their gold main content, split into lines."""
    folder = data_root / GOLD_TEXT_DIR
    gold = json.loads(gzip.decompress((folder / "gold.json.gz").read_bytes()))
    pages = []
    for name, entry in sorted(gold.items()):
        lines = [line for line in entry["gold_content"].split("\n") if len(line.strip()) >= MIN_GOLD_LINE]
        if lines:
            pages.append(GoldTextPage(name, entry["category"], folder / name, entry.get("url"), lines))
    return pages


def line_recall(text: str, lines: list[str]) -> float:
    """Share of the gold lines that occur in `text`, whitespace removed on both sides."""
    haystack = squash(text)
    return sum(1 for line in lines if squash(line) in haystack) / len(lines) if lines else 1.0


@dataclass(frozen=True)
class LabelledPage:
    file: str  # path relative to the data root
    url: str | None
    is_math: bool
    gold_set: bool  # one of the pages with gold formulas


def labelled_pages(data_root: Path) -> Iterator[LabelledPage]:
    """Math-labelled pages of html_math/ and the non-math pages of html_general/ (as their indexes say)."""
    for line in (data_root / "html_math/math_pages_index.jsonl").read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        if entry["is_math"]:
            gold_set = entry["file"].startswith(GOLD_DIRS)
            yield LabelledPage(entry["file"], entry.get("url"), True, gold_set)
    for line in (data_root / "html_general/pages_index.jsonl").read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        if not entry["is_math"]:
            yield LabelledPage(entry["file"], entry.get("url"), False, False)


@dataclass(frozen=True)
class SnippetPage:
    path: Path
    url: str
    must: list[str]
    must_not: list[str]


def snippet_pages(data_root: Path) -> list[SnippetPage]:
    """trafilatura-eval pages with the snippets their extraction must and must not contain."""
    folder = data_root / "html_general/trafilatura-eval"
    gold = json.loads((folder / "evaldata_subset.json").read_text(encoding="utf-8"))
    return [
        SnippetPage(folder / entry["file"], url, list(entry.get("with", [])), list(entry.get("without", [])))
        for url, entry in gold.items()
    ]
