"""The rule scorer's counts are those of their plain definitions (one `findall` per pattern, words split by
`\\w+`), on every shared page and on the texts that break cheap shortcuts."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import pytest

from classifiers import math_score as ms
from classifiers.math_score import RuleMathScorer
from crawl.charset import decode_html
from crawl.math_extract import extract_fast_text, extract_math_text


def plain_markup(text: str) -> float:
    if not text:
        return 0.0
    hits = (
        len(ms._TEX_SPAN_RE.findall(text))
        + len(ms._TEX_COMMAND_RE.findall(text))
        + 3 * len(ms._TEX_ENV_RE.findall(text))
        + len(ms._MATHML_RE.findall(text))
    )
    per_k = 1000.0 * hits / max(len(text), 1)
    return max(ms._saturate(per_k, 2.0), ms._saturate(hits, 3.0))


def plain_vocabulary(text: str) -> float:
    words = re.findall(r"\w+", text.lower())
    if len(words) < 30:
        return 0.0
    share = sum(1 for w in words if w in ms._MATH_WORD_SET) / len(words)
    return ms._saturate(max(share - 0.005, 0.0), 0.02)


def plain_symbols(text: str) -> float:
    if not text:
        return 0.0
    hits = (
        len(ms._MATH_SYMBOL_RE.findall(text))
        + len(ms._POWER_RE.findall(text))
        + len(ms._NUMERIC_EQUALITY_RE.findall(text))
        + 2 * len(ms._EQUATION_LINE_RE.findall(text))
    )
    if hits < 3:
        return 0.0
    return ms._saturate(1000.0 * hits / len(text), 4.0)


def plain_score(text: str) -> float:
    text = text[: ms.MAX_SCORED_CHARS]
    miss = 1.0
    for evidence in (plain_markup(text), plain_vocabulary(text), plain_symbols(text)):
        miss *= 1.0 - evidence
    return 1.0 - miss


def assert_same(text: str) -> None:
    assert ms.markup_evidence(text) == plain_markup(text), text[:200]
    assert ms.vocabulary_evidence(text) == plain_vocabulary(text), text[:200]
    assert ms.equation_lines(text) == len(ms._EQUATION_LINE_RE.findall(text)), text[:200]
    assert ms.symbol_evidence(text) == plain_symbols(text), text[:200]


@pytest.fixture(scope="module")
def page_texts(shared_data: Path) -> list[str]:
    """Fast text and the first 20k characters of the HTML of every shared page (markup, code and scripts); the
    math-aware text of the math pages (those carry the `$...$` the TeX patterns read)."""
    texts = []
    for path in sorted(shared_data.glob("html_*/**/*")):
        if not path.name.endswith((".html", ".htm", ".html.gz", ".htm.gz")):
            continue
        body = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        html = decode_html(body).text
        texts += [extract_fast_text(html), html[:20_000]]
        if "html_math" in path.parts:
            texts.append(extract_math_text(html).text)
    return texts


def test_scores_are_the_plain_definitions_on_every_shared_page(page_texts):
    assert len(page_texts) > 1000
    assert sum(RuleMathScorer().score(t) >= 0.5 for t in page_texts) > 30  # math is among them
    scorer = RuleMathScorer()
    for text in page_texts:
        assert_same(text)
        assert scorer.score(text) == plain_score(text)
    for text in page_texts[::4]:
        assert_same(text.upper())  # words in capitals


@pytest.mark.parametrize(
    "text",
    [
        # lower() turns the Kelvin sign into k and İ into two characters (i and a combining dot, no \w)
        "The \u212aernel of the Theorem and İNTEGRAL eigenvalues " * 20,
        "word " * 29 + "theorem",  # 30 words exactly
        # astral characters, a lone surrogate, words that are vocabulary but for one character
        "theorem's lemma_x lemma2 théorème intégral θeorem 𝑥 𠀀 😀 \ud800 " * 10,
        "x = 5\n" * 200,  # more relation lines than are searched one by one
        "a 5\n= b\n\n7 q\n=\nxyz\nc 2 =\nd 1\n",  # the space before or after the sign is a newline
        "first 3\n≥ 2 second\n" + "filler\n" * 5 + "a 1 → b\n",
        'a = 1; b = 2\nurl = http://x/5\n"q" = 5\n4.7 yr = 2470320 min',
        "= 5\n\n\n=\n5 =\n",
        "$x$ \\frac{a}{b} <math><mi>x</mi></math> x² ∑ 3^2 = 9\n" * 5,
        "",
        "\n",
    ],
)
def test_scores_are_the_plain_definitions_on_texts_that_break_shortcuts(text: str):
    assert_same(text)
    assert RuleMathScorer().score(text) == plain_score(text)
