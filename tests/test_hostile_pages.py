"""Hostile pages cost what their size costs, never crash, and stop at the page's deadline (issue 11).

How their cost grows with size is measured by bench/hostile_pages.py (timings belong in benchmarks); here,
what they produce and that a page's deadline stops every stage.
"""

from __future__ import annotations

import time
import tracemalloc

import lxml.html
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from bench.hostile_pages import (
    deep_mathml,
    katex_formulas,
    long_line,
    math_scripts,
)
from classifiers.math_score import _TEX_SPAN_RE, MAX_SCORED_CHARS, RuleMathScorer
from crawl.deadline import NO_DEADLINE, Deadline, PageTimeout
from crawl.math_extract import extract_math_text
from crawl.math_markup import (
    DEFAULT_DELIMITERS,
    MAX_PAGE_DELIMITERS,
    Delimiters,
    DelimiterScanner,
    latexify_html,
    latexify_tree,
    page_delimiters,
    parse_html,
)
from crawl.mathml_tex import MAX_DEPTH, _join, mathml_to_tex
from crawl.prefilter import math_prefilter
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


# --- Issue 21: every scan of crawled text linear (or capped), its work counted at two sizes -------------------


@pytest.mark.parametrize(
    ("unit", "delims"),
    [
        ("$", Delimiters(inline=(("$", "$"),))),  # a text node of `$` signs
        ("\\( a \\[ b ", DEFAULT_DELIMITERS),  # openings that never close
        ("$ x ", Delimiters(inline=(("$", "$"),), display=(("$$", "$$"),))),  # `$` that opens nothing
    ],
)
def test_delimiter_scanning_work_per_character_is_flat(unit, delims):
    """Openings tried and characters searched for closings grow with the text, not with its square: the
    same per character at 1x and 4x (a run of `$` is crossed in one step)."""
    work = []
    for n in (10_000, 40_000):
        text = unit * n
        scanner = DelimiterScanner(delims)
        assert scanner.rewrite(text) == (text, 0)
        work.append(((scanner.openings + 1) / len(text), scanner.searched / len(text)))
    (openings_1, searched_1), (openings_4, searched_4) = work
    assert openings_4 <= openings_1 * 1.01 and searched_4 <= searched_1 * 1.01 + 1e-9
    assert searched_4 <= 3  # each needle reads the text about once


def test_a_run_of_dollars_tries_only_its_last_openings():
    scanner = DelimiterScanner(Delimiters(inline=(("$", "$"),)))
    assert list(scanner.formulas("$" * 100_000 + "x$ end")) == [(99_999, 100_002, "x", False)]
    assert scanner.openings <= 3


def test_a_katex_config_that_never_closes_yields_nothing_and_reads_each_key_once():
    """An unclosed object of many `left:` keys used to be read to the end of the script from every key."""
    unclosed = "renderMathInElement(document.body, {delimiters: [{" + 'left: "@(", right: ")@", ' * 20_000
    closed = '{left: "%%", right: "%%", display: true}]});'
    delims = page_delimiters([unclosed + closed])
    assert ("@(", ")@") not in delims.inline + delims.display
    assert ("%%", "%%") in delims.display
    assert page_delimiters([unclosed]) == DEFAULT_DELIMITERS


def test_a_katex_object_is_read_as_a_whole():
    script = "renderMathInElement(el, {delimiters: [{display: true, right: '\\\\]', left: '\\\\['}, {left: '$', right: '$'}]})"
    delims = page_delimiters([script])
    assert ("\\[", "\\]") in delims.display and ("$", "$") in delims.inline


def test_a_page_adds_a_bounded_number_of_delimiters():
    """Every text position is tried against every opening: thousands of configured pairs must not multiply
    the page's cost."""
    pairs = ",".join(f"['@{i}@','#{i}#']" for i in range(5_000))
    delims = page_delimiters([f"MathJax={{tex:{{inlineMath:[{pairs}],displayMath:[{pairs}]}}}}"])
    assert len(delims.inline) == len(DEFAULT_DELIMITERS.inline) + MAX_PAGE_DELIMITERS
    assert len(delims.display) == len(DEFAULT_DELIMITERS.display) + MAX_PAGE_DELIMITERS
    assert delims.inline[1] == ("@0@", "#0#")  # the page's first pairs, in its order


def test_delimiter_discovery_stops_at_the_deadline():
    passed = Deadline(time.monotonic() - 1)
    with pytest.raises(PageTimeout):
        page_delimiters(["renderMathInElement(el, {delimiters: [{left: '$', right: '$'}]})"], passed)


def _reference_join(parts: list[str]) -> str:
    """The join as it was written first: read the output back for every piece (quadratic on long runs)."""
    out = ""
    for part in parts:
        if not part:
            continue
        i = len(out)
        while i > 0 and out[i - 1].isalpha() and out[i - 1].isascii():
            i -= 1
        if out and part[0].isalpha() and i < len(out) and i > 0 and out[i - 1] == "\\":
            out += " "
        out += part
    return out


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(st.lists(st.text(alphabet="\\ab1{} α", max_size=4), max_size=12))
def test_mathml_join_spaces_commands_as_before(parts):
    assert _join(parts) == _reference_join(parts)


def test_mathml_tokens_of_many_letters_convert_whole():
    letters = "abcdefghij" * 5_000
    math = lxml.html.fragment_fromstring(f"<math><mn>{letters}</mn><mi>\u03b1</mi><mn>x</mn></math>")
    assert mathml_to_tex(math) == letters + "\\alpha x"


def test_scorer_spans_stop_at_the_next_opening():
    """A `\\(` body never holds another `\\(`: the scan from each opening ends at the next one, so a flood of
    unclosed openings costs its length (it used to read 2,000 characters ahead from each)."""
    assert _TEX_SPAN_RE.findall("\\( a " * 3 + "\\( b \\)") == ["\\( b \\)"]
    assert _TEX_SPAN_RE.findall("\\[ a \\\\ b \\] and \\[ c \\[ d \\]") == ["\\[ a \\\\ b \\]", "\\[ d \\]"]
    assert _TEX_SPAN_RE.findall("\\(\\frac{a}{b}\\) $$x$$ $y$") == ["\\(\\frac{a}{b}\\)", "$$x$$", "$y$"]


def test_the_rule_scorer_reads_a_bounded_prefix():
    scorer = RuleMathScorer()
    prose = "The quick brown fox jumps over the lazy dog. " * (MAX_SCORED_CHARS // 45 + 1)
    assert scorer.score(prose + "\\frac{a}{b} \\sum_i x_i " * 10_000) == scorer.score(prose)


def test_the_prefilter_classifies_every_occurrence_past_its_window_budget():
    """Past the first occurrences of "math", the rest of the page is searched whole: a `<math>` after
    thousands of words still fires, and the "mathematics" words are all counted."""
    words = b"<p>" + b"math mathematics " * 5_000 + b"</p>"
    assert math_prefilter(b"<html><body>" + words + b"<math><mi>x</mi></math></body></html>").signals[0] == (
        "mathml"
    )
    found = math_prefilter(b"<html><body>" + words + b"</body></html>")
    assert not found.hit and found.vocabulary == 5_000


def test_scanning_a_megabyte_of_dollars_allocates_no_per_character_state():
    """The scanner used to hold every offset of every delimiter (hundreds of MB for a page of `$`)."""
    text = "$" * (1 << 20)
    scanner = DelimiterScanner(Delimiters(inline=(("$", "$"),)))
    tracemalloc.start()
    try:
        assert scanner.rewrite(text) == (text, 0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < len(text) // 16
