"""The raw-HTML prefilter and the two-stage math decision built on it (its rules, and the page route that
applies them)."""

from __future__ import annotations

import gzip
import random
import tracemalloc
from pathlib import Path

import pytest

from classifiers.math_score import RuleMathScorer
from classifiers.metrics import precision_recall
from crawl.math_eval import labelled_pages, read_page
from crawl.prefilter import PrefilterResult, math_prefilter, reference_prefilter, vectorised_prefilter
from pipeline.math_decision import (
    MathDecision,
    MathDecisionConfig,
    is_math_page,
    needs_math_extraction,
)
from pipeline.route import route_page


def decide(html: str, url: str | None = None, scorer: RuleMathScorer | None = None) -> MathDecision:
    """The two-stage decision the page route makes on one page (in the default keep mode)."""
    body = html.encode("utf-8")
    return route_page(body, "text/html; charset=utf-8", url, scorer=scorer or RuleMathScorer()).decision


@pytest.mark.parametrize(
    ("html", "signal"),
    [
        ('<p>x <math xmlns="http://www.w3.org/1998/Math/MathML"><mi>x</mi></math></p>', "mathml"),
        ('<p><m:math xmlns:m="x"><m:mi>x</m:mi></m:math></p>', "mathml"),
        ('<amp-mathml data-formula="x"></amp-mathml>', "mathml"),
        ('<script type="math/tex; mode=display">x</script>', "tex_script"),
        ('<img src="https://latex.codecogs.com/gif.latex?x^2">', "tex_image"),
        ('<img src="https://s0.wp.com/latex.php?latex=x">', "tex_image"),
        (r"<p>\(\frac{a}{b} + \sqrt{c} = \sum_i x_i\)</p>", "tex_commands"),
    ],
)
def test_strong_markup_alone_is_a_hit(html: str, signal: str):
    result = math_prefilter(html)
    assert result.hit
    assert signal in result.signals
    assert math_prefilter(html.encode()) == result  # bytes and text agree


def test_weak_signals_need_company():
    only_renderer = '<html><script src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-chtml.js"></script><p>Hi</p></html>'
    assert not math_prefilter(only_renderer).hit
    words = " ".join(["theorem", "equation"] * 5)
    assert math_prefilter(only_renderer.replace("Hi", words)).hit
    assert math_prefilter(only_renderer.replace("Hi", words)).signals == ("renderer", "vocabulary")


@pytest.mark.parametrize(
    "html",
    [
        "<p>The weather is nice; the mathematics club meets on Tuesday.</p>",
        '<script>var re = /\\(\\[/; x.replace(/\\s+/g, "")</script><p>Prices: $5 and $10</p>',
        '<div class="mathematics-dept">Contact</div>',
        "",
    ],
)
def test_ordinary_pages_miss(html: str):
    assert not math_prefilter(html).hit


def test_mixed_case_markup_is_found():
    assert "renderer" in math_prefilter("<SCRIPT SRC='/MathJax/MathJax.js'></SCRIPT>").signals


@pytest.fixture(scope="module")
def labelled(shared_data: Path):
    return [(page, read_page(shared_data / page.file)) for page in labelled_pages(shared_data)]


def test_the_fast_prefilter_is_the_plain_one_on_every_shared_page(shared_data: Path):
    """The vectorised search finds what lower-casing the page and searching it finds, on every shared page,
    in capitals, and with its case or a few bytes changed."""
    pages = [
        gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        for path in sorted(shared_data.glob("html_*/**/*"))
        if path.name.endswith((".html", ".htm", ".html.gz", ".htm.gz"))
    ]
    assert len(pages) > 500
    hits = 0
    rng = random.Random(26)
    for page in pages:
        changed = bytearray(page)
        for _ in range(20):
            if changed:
                changed[rng.randrange(len(changed))] = rng.choice(b"\x1c\\<>:MmAaTtHhEeXxQq{[ ")
        for variant in (page, page.upper(), page.swapcase(), bytes(changed)):
            result = vectorised_prefilter(variant)
            assert result == reference_prefilter(variant)
        hits += result.hit
    assert hits > 30


@pytest.mark.parametrize(
    "html",
    [
        b"",
        b"<",
        b"\\pm",
        b"x \\pm",
        b"math",
        b"MATHEMATICS",
        b"<math>x</math>",
        b"math " * 300 + b"<m:math>x</m:math>",  # past the windows: the rest of the page is searched whole
        b"math " * 300 + b"<" + b"a" * 40 + b":math>",  # a match longer than a window
        b"<" + b"a" * 40 + b":math> math",
        b"mathemathemat " * 200 + b"mathematics",  # overlapping words, counted as str.count counts them
        b"katex " * 300 + b"latex.php /latex? .LATEX? data-latex",
        b"\\fra " * 100 + b"\\frac \\SUM \\Int",  # many backslashes that start no command
        b"\\FRAC{a} \\Left( \\beginx \\begin{CASES} \\pmx \\mp",
        b"\x1cbody theorem <BODY> theorem equation EQUATION theorems",  # 0x1c folds to what < folds to
        b"theorem equation <body> \xc1\xd4\xe1 theorem",
        "<p>théorème ∑ \\frac{α}{β} math/tex</p>",
        b"at" * 70_000 + b"<math>",  # more candidates than are held: read the plain way
        b"\\fra" * 20_000 + b"\\frac \\sum \\int",
    ],
)
def test_the_fast_prefilter_is_the_plain_one_on_pages_that_break_shortcuts(html: bytes | str):
    data = html.encode() if isinstance(html, str) else html
    assert vectorised_prefilter(data) == math_prefilter(html) == reference_prefilter(html)


def test_a_page_does_not_see_the_one_before_it():
    """The folded copy lives in a buffer reused from page to page; a word cut by the page's end must not be
    completed by what the previous page left there."""
    before = b"<body>" + b"x" * 40_000 + b"theorem equation mathematics"
    for end in range(len(before) - 28, len(before)):
        vectorised_prefilter(before)
        assert vectorised_prefilter(before[:end]) == reference_prefilter(before[:end])


@pytest.mark.parametrize("page", [b"at" * 500_000, b"\\fr" * 300_000, b"math " * 200_000, b"<p>" * 300_000])
def test_the_prefilter_holds_at_most_twice_the_page_in_memory(page: bytes):
    """Pages made of what the prefilter looks for are read the plain way, not held as arrays of positions."""
    vectorised_prefilter(page)  # the thread's buffer grows on the first page of this size
    tracemalloc.start()
    try:
        vectorised_prefilter(page)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 * len(page) + (1 << 16)


def test_prefilter_rates_on_real_pages(labelled):
    math = [math_prefilter(html).hit for page, html in labelled if page.is_math]
    other = [math_prefilter(html).hit for page, html in labelled if not page.is_math]
    assert len(math) >= 25 and len(other) >= 300
    assert sum(other) / len(other) <= 0.03  # the expensive extractor stays off the bulk of non-math pages
    assert 1 - sum(math) / len(math) <= 0.10  # and the few it misses go to the stage-one score


def test_decision_recall_and_precision_at_least_0_9(labelled):
    scorer = RuleMathScorer()
    truth, predicted, extracted = [], [], 0
    for page, html in labelled:
        decision = decide(html, page.url, scorer)
        truth.append(page.is_math)
        predicted.append(decision.is_math)
        extracted += decision.extracted
    precision, recall = precision_recall(truth, predicted)
    assert recall >= 0.9, recall
    assert precision >= 0.9, precision
    assert extracted <= 2 * sum(truth)  # stage two ran on candidates, not on the bulk of pages


def test_prefilter_miss_is_recalled_by_the_stage_one_score():
    miss = PrefilterResult(hit=False, signals=())
    config = MathDecisionConfig()
    assert not needs_math_extraction(miss, 0.1, config)
    assert needs_math_extraction(miss, config.stage_one_threshold, config)
    html = "<html><body><article>" + "<p>Solve x² + 3x = 10: so x = 2 or x = −5, since 2² + 6 = 10.</p>" * 6
    html += "<p>The quadratic formula gives the roots; the discriminant b² − 4ac decides how many.</p></article></body></html>"
    decision = decide(html)
    assert not decision.prefilter.hit
    assert decision.stage_one_score >= config.stage_one_threshold
    assert decision.extracted and decision.is_math


def test_strong_markup_lowers_the_bar_but_does_not_decide_alone():
    config = MathDecisionConfig()
    strong = PrefilterResult(hit=True, signals=("tex_script",))
    weak = PrefilterResult(hit=True, signals=("renderer", "vocabulary"))
    score = (config.markup_math_threshold + config.math_threshold) / 2
    assert is_math_page(strong, score, config)
    assert not is_math_page(weak, score, config)
    assert not is_math_page(strong, 0.0, config)


def test_decision_stages_are_reported():
    html = '<html><body><p>Energy <script type="math/tex">E=mc^2</script> and <script type="math/tex">p=mv</script>.</p></body></html>'
    stages = decide(html).stages()
    assert stages["prefilter_hit"] is True
    assert "tex_script" in stages["prefilter_signals"]
    assert stages["math_extracted"] is True and stages["extractor"] in {"trafilatura", "resiliparse"}
    assert set(stages) == {
        "prefilter_hit",
        "prefilter_signals",
        "stage_one_score",
        "math_extracted",
        "extractor",
        "extractor_reason",
        "final_score",
        "is_math",
    }
