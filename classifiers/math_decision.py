"""The two-stage math decision for one page: prefilter and fast text for every page, math-aware text for some.

Stage one costs little on every page: the raw-HTML prefilter (`crawl.prefilter`) and a score of the fast
text (`crawl.math_extract.extract_fast_text`). Only pages that pass the prefilter, or whose stage-one
score is already high, pay for stage two: math-aware extraction (`extract_math_text`) and a final score
of that text. The prefilter never decides alone: a prefilter miss can still be recalled by the stage-one
score, and a prefilter hit is judged on its extracted text. Strong markup (MathML, TeX scripts, formula
images, TeX commands in the HTML) lowers the bar the final score must clear, because a page that carries
real formulas and whose text holds some of them is a math page even when the prose around them is short.

Every stage's outcome is kept on the `MathDecision`, so `mathforge inspect` can show why a page was kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from classifiers.math_score import MathScorer, RuleMathScorer
from crawl.math_extract import extract_fast_text, extract_math_text
from crawl.prefilter import STRONG_SIGNALS, PrefilterResult, math_prefilter


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
    """What each stage decided about a page, and the text to keep for it."""

    prefilter: PrefilterResult
    stage_one_score: float
    extracted: bool  # whether the math-aware extraction ran
    final_score: float  # score of the math-aware text, or the stage-one score when it did not run
    is_math: bool
    text: str  # math-aware text when extracted, else the fast text

    def stages(self) -> dict[str, object]:
        """The decision without the text, JSON-ready (for `inspect` and logs)."""
        return {
            "prefilter_hit": self.prefilter.hit,
            "prefilter_signals": list(self.prefilter.signals),
            "stage_one_score": round(self.stage_one_score, 6),
            "math_extracted": self.extracted,
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


def decide_math_page(
    html: str,
    url: str | None = None,
    scorer: MathScorer | None = None,
    config: MathDecisionConfig | None = None,
    raw: bytes | None = None,
) -> MathDecision:
    """Run both stages on one page; `raw` (the undecoded body) makes the prefilter cheaper when given."""
    scorer = scorer or RuleMathScorer()
    config = config or MathDecisionConfig()
    prefilter = math_prefilter(raw if raw is not None else html)
    fast_text = extract_fast_text(html)
    stage_one = float(scorer.score(fast_text[: config.stage_one_chars])) if fast_text else 0.0
    if not needs_math_extraction(prefilter, stage_one, config):
        return MathDecision(
            prefilter, stage_one, False, stage_one, is_math_page(prefilter, stage_one, config), fast_text
        )
    math_text = extract_math_text(html, url)
    final = float(scorer.score(math_text)) if math_text else 0.0
    return MathDecision(prefilter, stage_one, True, final, is_math_page(prefilter, final, config), math_text)
