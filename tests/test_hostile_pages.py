"""Hostile pages cost what their size costs, never crash, and stop at the page's deadline (issue 11).

How their cost grows with size is measured by bench/hostile_pages.py (timings belong in benchmarks); here,
what they produce and that a page's deadline stops every stage.
"""

from __future__ import annotations

import time

import lxml.html
import pytest
from lxml import etree

from bench.hostile_pages import (
    deep_mathml,
    katex_formulas,
    long_line,
    math_scripts,
)
from classifiers.math_score import RuleMathScorer
from crawl.deadline import NO_DEADLINE, Deadline, PageTimeout
from crawl.math_extract import extract_math_text
from crawl.math_markup import latexify_html, latexify_tree, parse_html
from crawl.mathml_tex import MAX_DEPTH, mathml_to_tex
from pipeline.route import route_page


def _visible_text(html: str) -> str:
    return " ".join(lxml.html.document_fromstring(html).body.text_content().split())


def test_many_tex_scripts_all_become_formulas_in_order():
    out = latexify_html(math_scripts(20_000))
    assert _visible_text(out) == " ".join("x$a_{" + str(i) + "}+b$" for i in range(20_000))


def test_formulas_sharing_a_wrapper_keep_their_own_text():
    """Two formulas in one wrapper-classed container: rewriting the first must not make the container look
    like the second formula's own wrapper (which would replace it, first formula included)."""
    out = latexify_html(katex_formulas(3))
    assert _visible_text(out) == "$x+0$ and $x+1$ and $x+2$"


def test_a_megabyte_line_of_unclosed_openings_is_left_as_written():
    """(Its cost, and the linear growth of every hostile kind, is measured by bench/hostile_pages.py: timing
    belongs in benchmarks, not in unit tests.)"""
    html = long_line(1024)
    assert len(html) > 1_000_000
    root = parse_html(html)
    latexify_tree(root)
    assert root.find(".//p").text == lxml.html.document_fromstring(html).find(".//p").text


def _nested_mrows(depth: int) -> etree._Element:
    """A <math> with `depth` nested <mrow> around `x = 1`, built directly: the HTML parser stops at 256."""
    math = etree.Element("math")
    inner = math
    for _ in range(depth):
        inner = etree.SubElement(inner, "mrow")
    for tag, text in (("mi", "x"), ("mo", "="), ("mn", "1")):
        etree.SubElement(inner, tag).text = text
    return math


@pytest.mark.parametrize(
    ("depth", "tex"),
    [(MAX_DEPTH - 2, "x=1"), (MAX_DEPTH + 1, "x = 1"), (20_000, "x = 1")],  # below the cap: its text
)
def test_deep_mathml_converts_without_recursion_errors(depth, tex):
    assert mathml_to_tex(_nested_mrows(depth)) == tex


def test_structure_above_the_depth_cap_is_kept():
    math = _nested_mrows(MAX_DEPTH + 5)
    frac = etree.Element("mfrac")
    etree.SubElement(frac, "mn").text = "1"
    frac.append(math[0])  # the deep chain becomes the denominator
    math.append(frac)
    assert mathml_to_tex(math) == "\\frac{1}{x = 1}"


def test_deep_mathml_pages_keep_their_formulas():
    out = extract_math_text(deep_mathml(3, depth=250)).text
    assert out.count("$x = 1$") + out.count("$x=1$") == 3


def test_deadline_none_and_zero_never_expire():
    assert Deadline.after(0) is NO_DEADLINE and Deadline.after(-1) is NO_DEADLINE
    NO_DEADLINE.check()
    Deadline.after(3600).check()


def test_a_passed_deadline_stops_every_stage_of_a_page():
    passed = Deadline(time.monotonic() - 1)
    html = math_scripts(100)
    with pytest.raises(PageTimeout):
        passed.check()
    with pytest.raises(PageTimeout):
        latexify_tree(parse_html(html), passed)
    with pytest.raises(PageTimeout):  # not swallowed by the extraction's own error handling
        extract_math_text(html, None, passed)
    with pytest.raises(PageTimeout):  # the whole page route (the job: tests/corpus/test_page_budget.py)
        route_page(html.encode(), scorer=RuleMathScorer(), deadline=passed)
    assert latexify_tree(parse_html(html)).counts == {"script": 100}  # and without one, it runs
