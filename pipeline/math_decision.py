"""The rules of the two-stage math decision: which pages pay for math extraction, and which are math.

Stage one costs little on every page: the raw-HTML prefilter (`crawl.prefilter`) and a score of the cheap
fast text. Only pages that pass the prefilter, or whose stage-one score is already high, pay for stage two:
math-aware extraction and a final score of that text. The prefilter never decides alone: a prefilter miss
can still be recalled by the stage-one score, and a prefilter hit is judged on its extracted text. Strong
markup (MathML, TeX scripts, formula images, TeX commands in the HTML) lowers the bar the final score must
clear, because a page that carries real formulas and whose text holds some of them is a math page even when
the prose around them is short.

Only the rules live here, as pure functions of scores and prefilter signals; the route that runs the
extractors and applies them to one page is `pipeline.route`. The rules combine a `crawl` result (the
prefilter's signals) with a `classifiers` result (the scores), so they sit in `pipeline`, above both, and
neither lower package needs the other. Every stage's outcome is kept on the
`MathDecision`, so `mathforge inspect` can show why a page was kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from crawl.prefilter import STRONG_SIGNALS, PrefilterResult


@dataclass(frozen=True)
class MathDecisionConfig:
    """Thresholds of the two-stage decision (scores are the scorer's, in [0, 1])."""

    stage_one_threshold: float = field(
        default=0.4,
        metadata={"help": "stage-one (fast text) score that sends a prefilter miss to math extraction"},
    )
    math_threshold: float = field(
        default=0.5, metadata={"help": "final score at or above which a page is math"}
    )
    markup_math_threshold: float = field(
        default=0.3,
        metadata={"help": "final-score threshold for pages whose HTML carries strong math markup"},
    )
    stage_one_chars: int = field(
        default=20_000, metadata={"help": "stage one scores this prefix of the fast text (it only routes)"}
    )


@dataclass(frozen=True)
class MathDecision:
    """What each stage decided about a page, and the text its scores were computed on."""

    prefilter: PrefilterResult
    stage_one_score: float
    extracted: bool  # whether the math-aware extraction ran
    final_score: float  # score of the math-aware text, or the stage-one score when it did not run
    is_math: bool
    text: str  # math-aware text when extracted, else the fast text (scored only, never published)
    extractor: str = ""  # which main-content extraction gave `text` (crawl.main_content), "" when none ran
    extractor_reason: str = ""  # why that one: "default", "formulas", "coverage", "no_main_content"

    def stages(self) -> dict[str, object]:
        """The decision without the text, JSON-ready (for `inspect` and logs)."""
        return {
            "prefilter_hit": self.prefilter.hit,
            "prefilter_signals": list(self.prefilter.signals),
            "stage_one_score": round(self.stage_one_score, 6),
            "math_extracted": self.extracted,
            "extractor": self.extractor,
            "extractor_reason": self.extractor_reason,
            "final_score": round(self.final_score, 6),
            "is_math": self.is_math,
        }


def needs_math_extraction(
    prefilter: PrefilterResult, stage_one_score: float, config: MathDecisionConfig
) -> bool:
    """Stage two runs for prefilter hits and for pages the stage-one score already finds mathematical."""
    return prefilter.hit or stage_one_score >= config.stage_one_threshold


def is_math_page(prefilter: PrefilterResult, final_score: float, config: MathDecisionConfig) -> bool:
    """Final verdict: the text score decides, with a lower bar when the HTML carries strong math markup."""
    strong = any(signal in STRONG_SIGNALS for signal in prefilter.signals)
    return final_score >= (config.markup_math_threshold if strong else config.math_threshold)


SCORE_DIGITS = 6
"""Scores are rounded to this many digits where they are stored (the `math_score` column), and the keep rule
reads the stored value, so a page's row and its verdict never disagree at a threshold."""


def passes_math_bar(is_math: bool, math_score: float, min_math_score: float | None) -> bool:
    """The corpus keep rule on a page's math: the verdict by default, a plain score floor when one is set
    (`--min-math-score`; 0 keeps every page)."""
    return is_math if min_math_score is None else math_score >= min_math_score


def keeps_math(decision: MathDecision, min_math_score: float | None) -> bool:
    """Whether the math keep rule keeps a routed page: only text from math extraction (main content) is ever
    published, and it must pass the bar. The route asks this before language ID (which only pages it keeps
    need), the `MathBar` filter asks it of every page."""
    score = round(decision.final_score, SCORE_DIGITS)
    return decision.extracted and passes_math_bar(decision.is_math, score, min_math_score)
