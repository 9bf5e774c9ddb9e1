"""The per-file logic of the corpus job, free of Spark so it can be tested and profiled alone.

record → the page's route (`pipeline.route`: decoded HTML → main text → math score → language) → keep rules
(`pipeline.filters`) → quality score and `--min-quality` (with `--quality-model`) → row.
`PageAnalyser.analyse_html` is what `mathforge inspect` shows for one page; `CorpusPipeline.process_file` is
what each Spark task runs on one WARC file.

The quality model (FineMath's 0-5 math-educational value, `classifiers.quality`) scores only the pages every
other keep rule kept, so a crawl pays for it on the few pages it keeps, never on the rest; without a model the
column is null and nothing is scored.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from classifiers.langid import LanguageIdentifier
from classifiers.math_score import MathScorer, RuleMathScorer
from classifiers.quality import QualityScorer, cached_quality_scorer, quality_scorer_for
from classifiers.text_norm import text_digest
from crawl.deadline import NO_DEADLINE, Deadline, PageTimeout
from crawl.redact import redact_logs, redact_url
from crawl.warc import HtmlResponse, read_html_responses
from jobs.config import CorpusBuildConfig
from jobs.corpus_schema import row_from
from pipeline.filters import drop_reason, page_filters
from pipeline.math_decision import MathDecisionConfig
from pipeline.route import DEFAULT_DECISION, PageAnalysis, route_page

log = redact_logs(logging.getLogger(__name__))  # log lines name input locations: no credentials

PROGRESS_EVERY_S = 30.0
# A page that takes every stage of the route (MathJax markup, math extraction, main text, language ID).
WARM_UP_PAGE = (
    b"<html><head><script type='text/x-mathjax-config'>MathJax.Hub.Config({tex2jax: "
    b"{inlineMath: [['$','$']]}});</script></head><body><article><h1>Warm-up</h1>"
    b"<p>Let $x^2 + y^2 = z^2$ be an equation; then the theorem follows.</p>"
    b"<p>\\[ \\int_0^1 f(x)\\,dx \\]</p></article></body></html>"
)


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


def file_sha256(path: str | os.PathLike[str]) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


class QualityModel:
    """The quality model of a build: its identity, checked once on the driver, and its scorer, loaded once per
    Python worker (`classifiers.quality.cached_quality_scorer`). Pickles as its identity, never as the model.

    The identity (name, version, path, sha256 of the file) goes into the manifest and into the work area's
    key (`jobs.build_corpus.extraction_settings`): rows scored by another model are never resumed."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = str(path)
        scorer = quality_scorer_for(self.path)  # checks the file and its sidecar: a clear error up front
        self.name, self.version = scorer.name, scorer.version
        self.sha256 = file_sha256(self.path)
        recorded = getattr(scorer, "metadata", {}).get("sha256")
        if recorded and recorded != self.sha256:
            raise ValueError(
                f"quality model {self.path} is not the file its sidecar describes (sha256 {self.sha256[:12]}, "
                f"sidecar {recorded[:12]}): it was replaced after training; retrain or restore the pair"
            )
        self._scorer: QualityScorer | None = scorer

    def __getstate__(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("path", "name", "version", "sha256")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._scorer = None

    @property
    def scorer(self) -> QualityScorer:
        if self._scorer is None:
            self._scorer = cached_quality_scorer(self.path, self.version)
        return self._scorer

    def identity(self) -> dict[str, str]:
        """What the manifest records as `quality_model` (the path without credentials)."""
        return {
            "name": self.name,
            "version": self.version,
            "path": redact_url(self.path),
            "sha256": self.sha256,
        }

    def score(self, text: str) -> float:
        """The page's 0-5 score, rounded as the column stores it."""
        return round(min(max(float(self.scorer.score(text)), 0.0), 5.0), 4)


class PageAnalyser:
    """The models and rules of the page route (`pipeline.route.route_page`), and the quality model that
    scores kept pages when there is one; the models load lazily."""

    def __init__(
        self,
        lid_model: str | None = None,
        math_scorer: MathScorer | None = None,
        decision: MathDecisionConfig = DEFAULT_DECISION,
        min_math_score: float | None = None,
        quality: QualityModel | None = None,
    ):
        self.langid = LanguageIdentifier(lid_model)
        self.math_scorer: MathScorer = math_scorer or RuleMathScorer()
        self.decision = decision
        self.min_math_score = min_math_score  # the keep rule pages will face: it decides who is extracted
        self.quality = quality

    def load_models(self) -> None:
        """Load models and warm every stage up front: a broken model fails the task instead of every page
        one by one, and the first page of a task is not charged the libraries' one-time set-up (imports,
        compiled patterns, parser state) against its time budget."""
        _ = self.langid.model
        self.math_scorer.score("warm up")
        if self.quality is not None:
            self.quality.score("warm up")
        self.analyse_html(WARM_UP_PAGE, "text/html; charset=utf-8", "https://warm-up.invalid/")

    def analyse_html(
        self,
        body: bytes,
        content_type: str | None = None,
        url: str | None = None,
        deadline: Deadline = NO_DEADLINE,
    ) -> PageAnalysis:
        """Everything the job decides about one page; raises `PageTimeout` once `deadline` passes."""
        return route_page(
            body,
            content_type,
            url,
            scorer=self.math_scorer,
            langid=self.langid,
            decision=self.decision,
            min_math_score=self.min_math_score,
            deadline=deadline,
        )

    def explain(self, body: bytes, content_type: str | None = None, url: str | None = None) -> dict[str, Any]:
        """What `mathforge inspect` prints: the route's analysis, and the quality score when a model is given
        (scored whatever the keep rules say, so a person sees it for any page)."""
        page = self.analyse_html(body, content_type, url)
        shown = page.to_dict()
        if self.quality is not None:
            shown["quality_score"] = self.quality.score(page.text)
            shown["quality_model"] = self.quality.identity()
        return shown


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
        config.check_quality_settings()
        quality = QualityModel(config.quality_model) if config.quality_model else None
        self.analyser = PageAnalyser(
            config.lid_model,
            math_scorer_for(config.math_model),
            min_math_score=config.min_math_score,
            quality=quality,
        )
        self.filters = page_filters(config)

    def quality_of(self, page: PageAnalysis) -> tuple[float | None, str | None]:
        """(quality score, drop reason) of a page every other keep rule kept: (None, None) without a quality
        model; "drop:quality" when the score is under `--min-quality`."""
        quality = self.analyser.quality
        if quality is None:
            return None, None
        score = quality.score(page.text)
        floor = self.config.min_quality
        return score, ("drop:quality" if floor is not None and score < floor else None)

    def row_for(
        self, response: HtmlResponse, page: PageAnalysis, quality_score: float | None = None
    ) -> tuple:
        """One output row, built by column name (`jobs.corpus_schema`)."""
        return row_from(
            {
                "id": document_id(response.record_id, response.url, response.payload_digest),
                "url": response.url,
                "domain": domain_of(response.url),
                "crawl": response.crawl,
                "warc_path": redact_url(response.warc_path),  # the input, without its credentials
                "warc_record_id": response.record_id,
                "fetch_time": response.fetch_time,
                "lang": page.lang,
                "lang_score": page.lang_score,
                "math_score": page.math_score,
                "text": page.text,
                "is_math": page.is_math,
                "extractor": page.decision.extractor,
                "n_chars": page.n_chars,
                "content_digest": text_digest(page.text),
                "charset": page.charset,
                "charset_source": page.charset_source,
                "quality_score": quality_score,
            }
        )

    def process_file(self, location: str, counters: Counter) -> Iterator[tuple]:
        """Rows for the kept pages of one WARC file. A page that raises or overruns its time budget is counted
        and skipped, never fatal."""
        self.analyser.load_models()
        started = last_log = time.monotonic()
        seen = 0
        responses = read_html_responses(
            location,
            counters,
            max_body_bytes=self.config.max_body_bytes,
            max_inflated_bytes=self.config.max_inflated_bytes,
        )
        for response in responses:
            seen += 1
            deadline = Deadline.after(self.config.page_time_budget)
            try:
                page = self.analyser.analyse_html(
                    response.body, response.content_type, response.url, deadline
                )
                reason = drop_reason(self.filters, page)
                quality_score = None
                if reason is None:  # the quality model reads kept pages only
                    quality_score, reason = self.quality_of(page)
            except PageTimeout:
                counters["error:page_timeout"] += 1
                log.warning(
                    "page over its %.1f s budget in %s (%s): skipped",
                    self.config.page_time_budget,
                    location,
                    response.record_id,
                )
                continue
            except Exception as exc:
                counters["error:page_failed"] += 1
                log.warning("page failed in %s (%s): %r", location, response.record_id, exc)
                continue
            if reason:
                counters[reason] += 1
                continue
            counters["kept"] += 1
            counters[f"kept_text:{page.decision.extractor}"] += 1  # which extraction kept pages' text is from
            yield self.row_for(response, page, quality_score)
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
