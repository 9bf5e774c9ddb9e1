"""One page's route, from the HTTP body to scored main text, written once for every caller.

    decode → prefilter → fast text → stage-one score → math extraction → final score → language

`route_page` is the only place that composes `crawl/` (reading the page) and `classifiers/` (judging it);
the corpus job (`jobs.corpus_pipeline`), the classifier seeds (`jobs.classifier_seeds`), `mathforge inspect`
and the throughput benchmark all run it, so the rule "which pages get math extraction" exists once. No Spark.

Math extraction is main-content extraction, and it runs for every page that the corpus's keep rule could
keep: the pages the two-stage decision sends to it (`needs_math_extraction`), and the pages whose stage-one
score already clears the keep rule (`passes_math_bar`: with `--min-math-score 0`, every page). The fast text
is whole-page text, navigation and footers included: it is only scored, never published, and a page whose
text is the fast text never passes the keep rule (`pipeline.filters.MathBar`). In the default mode (the
two-stage verdict) a page the decision does not send to extraction can never be math, so non-math pages cost
what they always did.

Language ID runs on the pages the math keep rule keeps (`keeps_math`), the only pages whose language any rule
or row reads: on the rest (almost all of a crawl in the default mode) it was a sixth of the route's time.
Such a page's analysis says its language was not identified (`lang_identified`, null in `inspect`).

Each stage starts only while the page is within its time budget (`crawl.deadline`), and the budget is checked
again as it ends; math extraction also checks it inside its own loops. Every stage costs at most linear time
in the page (bench/hostile_pages.py; tests/pipeline/test_route_fuzz.py), and scoring and language ID read a
bounded prefix of the text, so a page overruns its budget by at most one library call.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from classifiers.langid import UNKNOWN, Language, LanguageIdentifier
from classifiers.math_score import MathScorer
from crawl.charset import decode_html
from crawl.deadline import NO_DEADLINE, Deadline
from crawl.math_extract import extract_fast_text, extract_math_text
from crawl.prefilter import math_prefilter
from pipeline.math_decision import (
    SCORE_DIGITS,
    MathDecision,
    MathDecisionConfig,
    is_math_page,
    keeps_math,
    needs_math_extraction,
    passes_math_bar,
)

DEFAULT_DECISION = MathDecisionConfig()
NO_LANGUAGE = Language(UNKNOWN, 0.0)


@dataclass(frozen=True)
class PageAnalysis:
    """Everything the route decides about one page; `mathforge inspect` prints it as JSON (`to_dict`)."""

    url: str | None
    charset: str
    charset_source: str
    decision: MathDecision
    lang: str
    lang_score: float
    lang_identified: bool = True  # False: language ID did not run (the math keep rule drops the page)

    @property
    def text(self) -> str:
        """Main text (math-aware) when extracted; else the scored fast text, which no keep rule publishes."""
        return self.decision.text

    @property
    def math_extracted(self) -> bool:
        return self.decision.extracted

    @property
    def math_score(self) -> float:
        return round(self.decision.final_score, SCORE_DIGITS)

    @property
    def is_math(self) -> bool:
        return self.decision.is_math

    @property
    def n_chars(self) -> int:
        return len(self.decision.text)

    def to_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "charset": self.charset,
            "charset_source": self.charset_source,
            "lang": self.lang if self.lang_identified else None,
            "lang_score": self.lang_score if self.lang_identified else None,
            "math_score": self.math_score,
            "is_math": self.is_math,
            "stages": self.decision.stages(),
            "n_chars": self.n_chars,
            "text": self.text,
        }


class Stages:
    """Starts each named stage of the route: checks the page's deadline before the stage and again after it
    (a page over budget stops as soon as the stage that overran returns, not one stage later), and adds the
    stage's time to `timings` when given (the throughput benchmark's stage profile)."""

    def __init__(self, deadline: Deadline, timings: Counter[str] | None = None):
        self.deadline, self.timings = deadline, timings
        self.name, self.started = "", 0.0

    def __call__(self, name: str) -> Stages:
        self.deadline.check()
        if self.timings is not None:
            self.name, self.started = name, time.perf_counter()
        return self

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        if self.timings is not None:
            self.timings[self.name] += time.perf_counter() - self.started
        if exc[0] is None:
            self.deadline.check()


def _score(scorer: MathScorer, text: str) -> float:
    return float(scorer.score(text)) if text else 0.0


def route_page(
    body: bytes,
    content_type: str | None = None,
    url: str | None = None,
    *,
    scorer: MathScorer,
    langid: LanguageIdentifier | None = None,
    decision: MathDecisionConfig = DEFAULT_DECISION,
    min_math_score: float | None = None,
    deadline: Deadline = NO_DEADLINE,
    timings: Counter[str] | None = None,
) -> PageAnalysis:
    """Route one HTTP body (undecoded, as served with `content_type`) through every stage.

    `min_math_score` is the keep rule the page will face (None: the two-stage verdict; a number: a score
    floor); language ID runs on the pages that rule keeps (`langid` None: on none). Raises
    `crawl.deadline.PageTimeout` once `deadline` passes.
    """
    stage = Stages(deadline, timings)
    with stage("decode"):
        decoded = decode_html(body, content_type)
    with stage("prefilter"):
        prefilter = math_prefilter(body)
    with stage("fast_text"):
        fast_text = extract_fast_text(decoded.text)
    with stage("score"):
        stage_one = _score(scorer, fast_text[: decision.stage_one_chars])
    could_keep = passes_math_bar(is_math_page(prefilter, stage_one, decision), stage_one, min_math_score)
    extracted = needs_math_extraction(prefilter, stage_one, decision) or could_keep
    text, final = fast_text, stage_one  # scored only: the keep rule refuses pages that were not extracted
    extractor = reason = ""
    if extracted:
        with stage("math_extract"):
            main = extract_math_text(decoded.text, url, deadline)
            text, extractor, reason = main.text, main.extractor, main.reason
        with stage("score"):
            final = _score(scorer, text)
    verdict = is_math_page(prefilter, final, decision)
    math = MathDecision(prefilter, stage_one, extracted, final, verdict, text, extractor, reason)
    identify = langid is not None and keeps_math(math, min_math_score)
    language = NO_LANGUAGE
    if identify:
        with stage("langid"):
            language = langid.predict(text)
    return PageAnalysis(
        url=url,
        charset=decoded.charset,
        charset_source=decoded.source,
        decision=math,
        lang=language.lang,
        lang_score=round(language.score, SCORE_DIGITS),
        lang_identified=identify,
    )
