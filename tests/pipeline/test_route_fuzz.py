"""Property-based fuzzing of the page route: any HTML a crawl can serve ends with a result or a counted timeout.

hypothesis builds pages from HTML, TeX and MathML fragments, nests them, and floods them (unclosed `\\(`,
`$$`, `\\[`, `\\begin{`, KaTeX and MathJax configs whose lists never close, runs of `$`, tags nested as deep
as the parser keeps). Each page runs through `route_page` with a time budget, as the corpus job runs it, and
must come back with an analysis or raise `PageTimeout` (which the job counts), within its budget plus a
generous slack (a guard against unchecked superlinear work, not a benchmark: bench/hostile_pages.py measures
the cost per byte), and with its Python memory peak bounded by a multiple of the page's size.
The examples are derandomised, so CI sees the same pages on every run.
"""

from __future__ import annotations

import time
import tracemalloc

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bench.hostile_pages import dollar_run, katex_config, mathml_text, ordinary_page
from crawl.deadline import Deadline, PageTimeout
from jobs.corpus_pipeline import PageAnalyser
from pipeline.route import PageAnalysis, route_page

BUDGET_S = 2.0
# A loaded two-core CI machine can stall any process for seconds; a quadratic stage on these pages would
# take minutes. The slack sits between the two.
SLACK_S = 20.0
# Python's own allocations while routing a page (lxml's and the extractors' C memory is not traced).
MEMORY_PER_BYTE = 40
MEMORY_FLOOR = 4 << 20

TEX_PIECES = [
    "\\(", "\\)", "\\[", "\\]", "$", "$$", "\\\\", "\\begin{align}", "\\end{align}", "\\begin{", "\\end{",
    "\\frac{a}{b}", "x^2", "a_{i}", "{", "}", "\\alpha", " = ", "&", "\\text{ok}", "\\", "5", " ",
]  # fmt: skip
TEXT_PIECES = ["The theorem holds", "proof", "price $5 and $10", "&amp;", "&lt;", "<", ">", "\n", "é", "数学"]
MATHML_PIECES = [
    "<math>", "</math>", "<mrow>", "</mrow>", "<mi>x</mi>", "<mn>2</mn>", "<mo>+</mo>", "<msup>", "</msup>",
    "<mfrac>", "</mfrac>", "<mtable><mtr><mtd>", "</mtd></mtr></mtable>", "<semantics>",
    '<annotation encoding="application/x-tex">', "</annotation>", "</semantics>", "<mtext>", "</mtext>",
    '<math alttext="\\(', '">',
]  # fmt: skip
HTML_PIECES = [
    "<p>", "</p>", "<div>", "</div>", "<span>", "</span>", '<span class="katex">', '<div class="math">',
    '<script type="math/tex">', '<script type="math/tex; mode=display">', "</script>", "<script>",
    "<table><tr><td>", "</td></tr></table>", "<pre>", "</pre>", "<code>", "</code>", "<article>",
    "</article>", '<img class="latex" alt="\\frac{1}{2}" src="x.png">',
    '<img src="https://latex.codecogs.com/png.latex?x^2">', '<span data-tex="x+1">', "<br>", "<!--", "-->",
]  # fmt: skip
CONFIG_PIECES = [
    'renderMathInElement(document.body, {delimiters: [{left: "$$", right: "$$", display: true}, ',
    '{left: "\\\\(", right: "\\\\)", display: false, ',
    'left: "$", right: "$", ',
    "MathJax = {tex: {inlineMath: [['$', '$'], ",
    "['\\\\(', '\\\\)'], ",
    "displayMath: [['@@', '@@'], ",
    'katex.render("x^2", document.getElementById("f")); ',
    'katex.render("',
]

piece = st.sampled_from(TEX_PIECES + TEXT_PIECES + MATHML_PIECES + HTML_PIECES)


@st.composite
def fragments(draw: st.DrawFn, depth: int = 0) -> str:
    """One fragment: plain pieces, a flood of one piece, a deep nest, or a config script."""
    kind = draw(st.sampled_from(["pieces", "flood", "nest", "config"] if depth < 2 else ["pieces", "flood"]))
    if kind == "pieces":
        return "".join(draw(st.lists(piece, max_size=30)))
    if kind == "flood":
        unit = draw(st.lists(piece, min_size=1, max_size=3))
        return "".join(unit) * draw(st.integers(1, 1500))
    if kind == "nest":
        tag = draw(st.sampled_from(["div", "span", "mrow", "p", "b", "math"]))
        inner = draw(fragments(depth + 1))
        levels = draw(st.integers(1, 300))
        return f"<{tag}>" * levels + inner + f"</{tag}>" * draw(st.integers(0, levels))
    body = "".join(draw(st.lists(st.sampled_from(CONFIG_PIECES), min_size=1, max_size=4)))
    repeat = draw(st.integers(1, 800))
    closed = draw(st.booleans())
    return "<script>" + body * repeat + ("]}]});" if closed else "") + "</script>"


@st.composite
def pages(draw: st.DrawFn) -> bytes:
    head = "".join(draw(st.lists(fragments(), max_size=2)))
    body = "".join(draw(st.lists(fragments(), min_size=1, max_size=4)))
    return f"<html><head>{head}</head><body>{body}</body></html>".encode()


@pytest.fixture(scope="module")
def analyser() -> PageAnalyser:
    """The job's models (lid.176, the rule scorer), with the keep rule that sends every page to extraction."""
    pages = PageAnalyser(min_math_score=0.0)
    pages.load_models()
    # the libraries' one-off set-up (trafilatura's, lxml's) on a first page is no cost of the pages after it
    pages.analyse_html(ordinary_page(0).encode())
    return pages


@settings(
    max_examples=20,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
@given(page=pages())
# pages of the size at which the route used to fail these bounds (minutes of quadratic work, 76x the page in
# memory), routed on every run next to the generated ones
@example(page=katex_config(1024).encode())
@example(page=dollar_run(512).encode())
@example(page=mathml_text(64).encode())
def test_every_page_ends_in_budget_with_bounded_memory(analyser: PageAnalyser, page: bytes) -> None:
    tracemalloc.start()
    started = time.monotonic()
    try:
        result = route_page(
            page,
            "text/html; charset=utf-8",
            "https://fuzz.example/page",
            scorer=analyser.math_scorer,
            langid=analyser.langid,
            min_math_score=0.0,
            deadline=Deadline.after(BUDGET_S),
        )
    except PageTimeout:
        result = None  # the job counts it as error:page_timeout and goes on
    finally:
        elapsed = time.monotonic() - started
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert result is None or isinstance(result, PageAnalysis)
    if result is not None:
        assert 0.0 <= result.math_score <= 1.0
        assert result.decision.extracted  # min_math_score 0: every page took the whole route
    assert elapsed < BUDGET_S + SLACK_S, f"{len(page)} bytes took {elapsed:.1f} s"
    assert peak < MEMORY_FLOOR + MEMORY_PER_BYTE * len(page), f"{len(page)} bytes peaked at {peak} bytes"
