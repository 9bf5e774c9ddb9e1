"""The page route (`pipeline.route.route_page`): which pages get math extraction, in each keep mode, and
that a page's kept text is always main content (issue 11, item 2)."""

from __future__ import annotations

import gzip
import time
from collections import Counter
from pathlib import Path

import pytest

from classifiers.langid import Language, LanguageIdentifier
from classifiers.math_score import RuleMathScorer
from crawl.deadline import Deadline, PageTimeout
from crawl.math_eval import snippet_pages
from pipeline.filters import PageFilterConfig, drop_reason, page_filters
from pipeline.math_decision import needs_math_extraction
from pipeline.route import DEFAULT_DECISION, route_page

SCORER = RuleMathScorer()
LID = LanguageIdentifier()
UTF8 = "text/html; charset=utf-8"
NAV_PAGE = (
    "<html><head><title>Tide tables | Harbour Weekly</title></head><body>"
    '<a class="skip-link" href="#main">Skip to content</a>'
    '<header><nav class="main-nav"><ul><li><a href="/">Home</a></li><li><a href="/news">News</a></li>'
    '<li><a href="/about">About us</a></li><li><a href="/contact">Contact</a></li></ul></nav></header>'
    '<div class="cookie-banner"><p>We use cookies to improve your experience.</p><button>Accept all</button></div>'
    '<main id="main"><article><h1>Why the tides come twice a day</h1>'
    + "".join(
        f"<p>{sentence}</p>"
        for sentence in (
            "The harbour master publishes the tide tables every Monday, and the fishermen read them closely.",
            "Twice a day the water rises along the old stone quay and twice a day it falls back again.",
            "The moon pulls the sea towards it, and on the far side of the earth the water lags behind.",
            "So there are two bulges of water, and the coast turns through both of them every day.",
            "Spring tides come at full and new moon, when the sun and the moon pull in the same line.",
        )
    )
    + "</article></main>"
    '<aside class="sidebar"><h3>Most read</h3><ul><li><a href="/a">Ferry timetable changes</a></li></ul></aside>'
    '<footer><p><a href="/privacy">Privacy policy</a> | <a href="/terms">Terms of use</a></p>'
    "<p>© 2024 Harbour Weekly. All rights reserved.</p></footer></body></html>"
)
BOILERPLATE = (
    "Skip to content",
    "About us",
    "We use cookies",
    "Ferry timetable",
    "Privacy policy",
    "All rights reserved",
)


def keep_every_page() -> list:
    return page_filters(PageFilterConfig(min_math_score=0.0))


def test_the_fast_text_of_a_non_math_page_is_never_kept():
    """Default mode: the page is not sent to math extraction and its fast text holds the navigation; with
    `min_math_score 0` it is kept, and its kept text is the article alone."""
    default = route_page(NAV_PAGE.encode(), UTF8, "https://harbour.example/tides", scorer=SCORER)
    assert not default.math_extracted and all(line in default.text for line in BOILERPLATE)

    page = route_page(
        NAV_PAGE.encode(), UTF8, "https://harbour.example/tides", scorer=SCORER, min_math_score=0.0
    )
    assert drop_reason(keep_every_page(), page) is None
    assert page.math_extracted and "the old stone quay" in page.text
    assert not [line for line in BOILERPLATE if line in page.text], page.text


def test_a_page_whose_stage_one_score_clears_the_floor_is_extracted():
    """A floor under the stage-one threshold: pages the decision would not extract but the floor could keep
    are extracted too (before, they were kept with their fast text)."""
    config = DEFAULT_DECISION
    prose = (
        "<p>We walked along the coast for three days and ate grilled sardines in small fishing villages.</p>"
    )
    arithmetic = "<p>Total: 2 + 2 = 4, then 4 × 5 = 20.</p>"
    html = f"<html><body><article>{prose * 16}{arithmetic}</article></body></html>"
    default = route_page(html.encode(), UTF8, scorer=SCORER)
    score = default.decision.stage_one_score
    assert 0 < score < config.stage_one_threshold and not default.math_extracted
    floored = route_page(html.encode(), UTF8, scorer=SCORER, min_math_score=score)
    assert floored.math_extracted
    assert not route_page(html.encode(), UTF8, scorer=SCORER, min_math_score=score + 0.01).math_extracted


@pytest.fixture(scope="module")
def real_pages(shared_data: Path) -> list:
    """Real non-math pages whose snippet gold says what must not be in their main text."""
    return [(page, gzip.decompress(page.path.read_bytes())) for page in snippet_pages(shared_data)[:30]]


def test_default_mode_extracts_only_what_the_decision_sends(real_pages):
    """The keep-every-page fix costs nothing in the default mode: extraction runs exactly where the two-stage
    decision sends a page, as before."""
    extracted = 0
    for page, body in real_pages:
        routed = route_page(body, None, page.url, scorer=SCORER)
        decision = routed.decision
        assert routed.math_extracted == needs_math_extraction(
            decision.prefilter, decision.stage_one_score, DEFAULT_DECISION
        )
        extracted += routed.math_extracted
    assert extracted <= len(real_pages) // 10  # these are not math pages


def test_keep_every_page_keeps_main_content_of_real_pages(real_pages):
    """With `min_math_score 0` every page is kept with its main text: the boilerplate snippets the gold
    forbids, found in the fast text of these pages, mostly go (main-content extraction is not perfect)."""
    in_fast = in_kept = 0
    filters = keep_every_page()
    for page, body in real_pages:
        fast = route_page(body, None, page.url, scorer=SCORER)  # default mode: not extracted
        kept = route_page(body, None, page.url, scorer=SCORER, min_math_score=0.0)
        assert not fast.math_extracted and kept.math_extracted
        assert drop_reason(filters, kept) is None
        in_fast += sum(snippet in fast.text for snippet in page.must_not)
        in_kept += sum(snippet in kept.text for snippet in page.must_not)
    assert in_fast > 50
    assert in_kept <= in_fast / 3, (in_kept, in_fast)


class CountingIdentifier(LanguageIdentifier):
    """The real lid.176 identifier, counting the texts it is asked about."""

    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []

    def predict(self, text: str) -> Language:
        self.texts.append(text)
        return super().predict(text)


def test_language_is_identified_on_the_pages_the_math_rule_keeps_only(real_pages):
    """Language ID is run for the pages the math keep rule keeps, whose language a row or a rule reads; a
    page it drops is counted as not math, and its analysis says no language was identified."""
    lid = CountingIdentifier()
    math_page = (
        "<html><body><article><p>By the theorem, the integral of $x^2$ from $0$ to $1$ equals $\\frac{1}{3}$"
        " and the derivative of $x^3$ is $3x^2$; every polynomial equation here has integer coefficients.</p>"
        "</article></body></html>"
    )
    math = route_page(math_page.encode(), UTF8, scorer=SCORER, langid=lid)
    assert math.is_math and math.lang_identified and math.lang == "en" and lid.texts == [math.text]
    filters = page_filters(PageFilterConfig(langs="de"))
    assert drop_reason(filters, math) == "drop:lang"
    for page, body in real_pages[:10]:
        routed = route_page(body, None, page.url, scorer=SCORER, langid=lid)
        assert not routed.lang_identified and routed.to_dict()["lang"] is None
        assert drop_reason(filters, routed) == "drop:not_math"
        kept = route_page(body, None, page.url, scorer=SCORER, langid=lid, min_math_score=0.0)
        assert kept.lang_identified and kept.lang != "unknown" and lid.texts[-1] == kept.text
    assert len(lid.texts) == 11  # the math page and the ten pages kept with --min-math-score 0


def test_stages_are_timed_and_stop_at_a_passed_deadline():
    timings: Counter = Counter()
    page = route_page(NAV_PAGE.encode(), UTF8, scorer=SCORER, langid=LID, min_math_score=0.0, timings=timings)
    assert page.math_extracted
    assert set(timings) == {"decode", "prefilter", "fast_text", "score", "math_extract", "langid"}
    with pytest.raises(PageTimeout):
        route_page(NAV_PAGE.encode(), UTF8, scorer=SCORER, deadline=Deadline(time.monotonic() - 1))
