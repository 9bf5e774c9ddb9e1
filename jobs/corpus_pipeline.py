"""The per-page and per-file logic of the corpus job, free of Spark so it can be tested and profiled alone.

record → decoded HTML → main text → language → math score → row. `analyse_html` is what `mathforge inspect`
shows for one page; `CorpusPipeline.process_file` is what each Spark task runs on one WARC file.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

from classifiers.langid import LanguageIdentifier
from classifiers.math_decision import MathDecisionConfig, decide_math_page
from classifiers.math_score import MathScorer, RuleMathScorer
from classifiers.text_norm import text_digest
from crawl.charset import decode_html
from crawl.warc import HtmlResponse, read_html_responses
from jobs.config import CorpusBuildConfig

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 30.0


@dataclass(frozen=True)
class PageAnalysis:
    """Everything the job decides about one page; `mathforge inspect` prints it as JSON."""

    url: str | None
    charset: str
    charset_source: str
    lang: str
    lang_score: float
    math_score: float
    is_math: bool
    stages: dict[str, Any]  # the two-stage math decision: prefilter, stage-one score, extraction, final score
    n_chars: int
    text: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def document_id(record_id: str, url: str, payload_digest: str) -> str:
    """Stable id: from the WARC record id when present, else from URL + payload digest (never from order)."""
    key = record_id.strip() or f"{url}\n{payload_digest}"
    return hashlib.sha1(key.encode("utf-8")).hexdigest()[:20]


def domain_of(url: str) -> str:
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return ""
    return host.lower().rstrip(".")


class PageAnalyser:
    """Two-stage math decision, then language ID on the kept text; holds the (lazily loaded) models."""

    def __init__(
        self,
        lid_model: str | None = None,
        math_scorer: MathScorer | None = None,
        decision: MathDecisionConfig | None = None,
    ):
        self.langid = LanguageIdentifier(lid_model)
        self.math_scorer: MathScorer = math_scorer or RuleMathScorer()
        self.decision = decision or MathDecisionConfig()

    def load_models(self) -> None:
        """Load models up front so a broken model fails the task instead of every page one by one."""
        _ = self.langid.model
        self.math_scorer.score("warm up")

    def analyse_html(
        self, body: bytes, content_type: str | None = None, url: str | None = None
    ) -> PageAnalysis:
        decoded = decode_html(body, content_type)
        decision = decide_math_page(decoded.text, url, self.math_scorer, self.decision, raw=body)
        language = self.langid.predict(decision.text)
        return PageAnalysis(
            url=url,
            charset=decoded.charset,
            charset_source=decoded.source,
            lang=language.lang,
            lang_score=round(language.score, 6),
            math_score=round(decision.final_score, 6),
            is_math=decision.is_math,
            stages=decision.stages(),
            n_chars=len(decision.text),
            text=decision.text,
        )


def math_scorer_for(model_path: str | None) -> MathScorer:
    """The trained fastText scorer when a model is given, else the transparent rule scorer."""
    if model_path:
        from classifiers.math_classifier import FastTextMathScorer

        return FastTextMathScorer(model_path)
    return RuleMathScorer()


class CorpusPipeline:
    """What one Spark task runs: a WARC file in, corpus rows out, counters updated along the way."""

    def __init__(self, config: CorpusBuildConfig):
        self.config = config
        self.langs = config.lang_set()
        self.analyser = PageAnalyser(config.lid_model, math_scorer_for(config.math_model))

    def keep_reason(self, page: PageAnalysis) -> str | None:
        """None to keep the page, else the drop reason counted in the stats."""
        if page.n_chars < max(1, self.config.min_chars):
            return "drop:empty_text" if page.n_chars == 0 else "drop:too_short"
        if self.langs is not None and page.lang not in self.langs:
            return "drop:lang"
        if page.lang_score < self.config.min_lang_score:
            return "drop:lang_score"
        if self.config.min_math_score is None:
            if not page.is_math:
                return "drop:not_math"
        elif page.math_score < self.config.min_math_score:
            return "drop:math_score"
        return None

    def row_for(self, response: HtmlResponse, page: PageAnalysis) -> tuple:
        """One output row, in `jobs.corpus_schema.COLUMN_NAMES` order."""
        return (
            document_id(response.record_id, response.url, response.payload_digest),
            response.url,
            domain_of(response.url),
            response.crawl,
            response.warc_path,
            response.record_id,
            response.fetch_time,
            page.lang,
            page.lang_score,
            page.math_score,
            page.text,
            page.is_math,
            page.stages["math_extracted"],
            page.n_chars,
            text_digest(page.text),
            page.charset,
            page.charset_source,
        )

    def process_file(self, location: str, counters: Counter) -> Iterator[tuple]:
        """Rows for the kept pages of one WARC file. A page that raises is counted and skipped, never fatal."""
        self.analyser.load_models()
        started = last_log = time.monotonic()
        seen = 0
        for response in read_html_responses(location, counters, max_body_bytes=self.config.max_body_bytes):
            seen += 1
            try:
                page = self.analyser.analyse_html(response.body, response.content_type, response.url)
            except Exception as exc:
                counters["error:page_failed"] += 1
                log.warning("page failed in %s (%s): %r", location, response.record_id, exc)
                continue
            reason = self.keep_reason(page)
            if reason:
                counters[reason] += 1
                continue
            counters["kept"] += 1
            yield self.row_for(response, page)
            now = time.monotonic()
            if now - last_log > PROGRESS_EVERY_S:
                log.info(
                    "%s: %d pages, %d kept, %.1f pages/s",
                    location,
                    seen,
                    counters["kept"],
                    seen / (now - started),
                )
                last_log = now
        elapsed = time.monotonic() - started
        log.info("done %s: %d html pages in %.1f s", location, seen, elapsed)
