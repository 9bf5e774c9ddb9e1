"""Math-aware extraction keeps the formulas of real pages, and does not hurt ordinary pages."""

from __future__ import annotations

from pathlib import Path

import pytest

from crawl.extract import extract_main_text
from crawl.math_eval import formula_hits, gold_pages, read_page, snippet_pages, snippet_score
from crawl.math_extract import extract_fast_text, extract_math_text, promote_loose_formulas
from crawl.math_markup import parse_html

PROSE = (
    "<p>"
    + "An ordinary paragraph of explanatory prose that surrounds the formulas of this page. " * 4
    + "</p>"
)


def doc(body: str) -> str:
    return f"<html><head><title>t</title></head><body><article>{PROSE}{body}{PROSE}</article></body></html>"


@pytest.mark.parametrize(
    ("body", "formulas"),
    [
        ("<table><tr><td>$$x^2+1$$</td><td>\\(\\alpha\\)</td></tr></table>", ["$$x^2+1$$", "$\\alpha$"]),
        ("<ul><li>\\(a_1\\)</li><li>\\[\\sum_i x_i\\]</li></ul>", ["$a_1$", "$$\\sum_i x_i$$"]),
        ("<p>\\[E=mc^2\\]</p>", ["$$E=mc^2$$"]),
        ("<div>\\[y=\\frac{1}{x}\\]</div>", ["$$y=\\frac{1}{x}$$"]),
        ("<center><script type='math/tex; mode=display'>q^*</script></center>", ["$$q^*$$"]),
        ("<div>text tail <math><mi>z</mi></math> more text</div>", ["$z$"]),
    ],
)
def test_formulas_survive_tables_lists_and_short_blocks(body: str, formulas: list[str]):
    text = extract_math_text(doc(body))
    for formula in formulas:
        assert formula in text
    assert "ordinary paragraph" in text


def test_latex_is_not_escaped():
    text = extract_math_text(doc("<p>Let \\(f_n(x) = x^{n} * 2\\) and #1 [see] _here_.</p>"))
    assert "$f_n(x) = x^{n} * 2$" in text
    assert "\\_" not in text and "\\*" not in text


def test_loose_formula_text_gets_its_own_paragraph():
    root = parse_html("<html><body><div>before $$x$$<span>s</span>tail $y$</div></body></html>")
    assert promote_loose_formulas(root) == 2
    paragraphs = [p.text for p in root.iter("p")]
    assert paragraphs == ["before $$x$$", "tail $y$"]


@pytest.mark.parametrize("html", ["", "   ", "<html></html>", "\x00\x01", "<p>unclosed <math><mi>x"])
def test_degenerate_input_gives_a_string(html: str):
    assert isinstance(extract_math_text(html), str)
    assert isinstance(extract_fast_text(html), str)


def test_fast_text_keeps_formula_image_alt_text():
    html = doc('<p>Here <img src="https://latex.codecogs.com/gif.latex?a^2" alt="a^2+b^2=c^2"> holds.</p>')
    assert "a^2+b^2=c^2" in extract_fast_text(html)


@pytest.fixture(scope="module")
def gold(shared_data: Path):
    pages = gold_pages(shared_data)
    assert pages, "no gold pages found"
    return [(p, read_page(p.path)) for p in pages]


def test_gold_formula_recall_at_least_0_9(gold):
    found = total = 0
    per_page = {}
    for page, html in gold:
        hits = formula_hits(extract_math_text(html, page.url), page.formulas)
        per_page[page.name] = (hits, len(page.formulas))
        found += hits
        total += len(page.formulas)
    assert total >= 250
    assert found / total >= 0.9, per_page


def test_gold_recall_beats_plain_trafilatura_on_every_page(gold):
    for page, html in gold:
        ours = formula_hits(extract_math_text(html, page.url), page.formulas)
        plain = formula_hits(extract_main_text(html, page.url), page.formulas)
        assert ours >= plain, page.name


def test_main_text_quality_no_worse_than_plain_trafilatura(shared_data: Path):
    ours_must = ours_not = plain_must = plain_not = 0
    for page in snippet_pages(shared_data):
        html = read_page(page.path)
        a, b = snippet_score(extract_math_text(html, page.url), page.must, page.must_not)
        c, d = snippet_score(extract_main_text(html, page.url), page.must, page.must_not)
        ours_must, ours_not, plain_must, plain_not = (
            ours_must + a,
            ours_not + b,
            plain_must + c,
            plain_not + d,
        )
    assert plain_must > 100  # the comparison is over real content, not two empty extractions
    assert ours_must >= plain_must
    assert ours_not >= plain_not
