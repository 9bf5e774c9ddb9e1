"""The math-educational quality prompt (FineMath's recipe) and the strict reading of its answers.

An annotation is only worth training on if the question and the reading of the answer never change under it:
each prompt is a versioned constant (`PROMPTS`), its version string is stored with every annotated row, and a
new wording is a new version (old rows keep theirs; a rerun skips only rows annotated with the same version).

The prompt is FineMath's additive 0-5 rubric ("how useful is this page for learning mathematics"), asking for a
short justification and a last line `Score: N`. `parse_quality_answer` accepts exactly that: the last non-empty
line must be `Score: N` with N an integer 0-5 (markdown emphasis around it tolerated), and no other line may
state a score. Anything else is unparseable, with the reason; a score is never guessed from prose. A reasoning
model's `<think>...</think>` preamble, when a server returns it inside the content, is not read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

QUALITY_PROMPT_V1 = """Below is an extract from a web page. Evaluate whether the page has a high educational value for \
learning mathematics, using the additive 5-point scoring system described below. Points are accumulated \
based on the satisfaction of each criterion:

- Add 1 point if the extract contains some mathematical content, even if it is superficial, mixed with \
unrelated material (advertisements, navigation, off-topic text), or only mentions mathematical terms.
- Add another point if the extract addresses mathematical concepts or problems in a way that could help \
someone learning mathematics, even if it is incomplete, disorganised or lacks explanations.
- Award a third point if the extract presents mathematical ideas, methods or solved problems coherently, \
with steps a learner can follow, at any level from elementary arithmetic to research mathematics.
- Grant a fourth point if the extract is clearly useful for learning mathematics: it explains concepts or \
worked solutions step by step, with correct reasoning and little irrelevant content, like a good textbook \
section, tutorial or well-answered question.
- Bestow a fifth point if the extract is outstanding for teaching mathematics: clear, correct and \
well-structured explanations and worked examples that build understanding, with no irrelevant content.

An extract with no mathematical content scores 0.

The extract:
<extract>
{text}
</extract>

After examining the extract:
- Briefly justify your total score, in up to 100 words.
- End your answer with a last line of the form "Score: N", where N is the total number of points, an \
integer from 0 to 5. Write nothing after that line."""

PROMPTS: Mapping[str, str] = {"finemath-additive-v1": QUALITY_PROMPT_V1}
DEFAULT_PROMPT_VERSION = "finemath-additive-v1"
MAX_SCORE = 5

_THINK_END = "</think>"
_EMPHASIS = r"[*_`]*"
_SCORE_LINE_RE = re.compile(
    rf"^\s*{_EMPHASIS}\s*score\s*{_EMPHASIS}\s*:\s*{_EMPHASIS}\s*(\d+)\s*{_EMPHASIS}\s*$", re.IGNORECASE
)
_ANY_SCORE_RE = re.compile(r"\bscore\s*[*_`]*\s*:\s*[*_`]*\s*\d", re.IGNORECASE)


def prompt_for(version: str) -> str:
    """The prompt template of `version` (a clear error for an unknown one)."""
    if version not in PROMPTS:
        raise ValueError(f"unknown quality prompt version {version!r}; known: {sorted(PROMPTS)}")
    return PROMPTS[version]


def truncate_text(text: str, max_chars: int) -> str:
    """The first `max_chars` characters: what the annotator sees, and what the quality model trains on."""
    if max_chars < 1:
        raise ValueError(f"max_chars must be positive, got {max_chars}")
    return (text or "")[:max_chars]


def quality_messages(text: str, version: str = DEFAULT_PROMPT_VERSION) -> list[dict[str, str]]:
    """One user turn asking for the score of `text` (already truncated); the server applies its chat template."""
    return [{"role": "user", "content": prompt_for(version).replace("{text}", text)}]


@dataclass(frozen=True)
class ParsedAnswer:
    """A score 0-5 and the justification before it, or `problem` saying why the answer was not readable."""

    score: int | None
    reason: str | None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.score is not None


def parse_quality_answer(raw: str | None) -> ParsedAnswer:
    """Read an answer strictly (see the module docstring): a score only from a last line `Score: N`."""
    text = raw or ""
    if _THINK_END in text:
        text = text.rsplit(_THINK_END, 1)[1]
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return ParsedAnswer(None, None, "empty answer")
    match = _SCORE_LINE_RE.match(lines[-1])
    if match is None:
        return ParsedAnswer(None, None, "the last line is not 'Score: N'")
    if any(_ANY_SCORE_RE.search(line) for line in lines[:-1]):
        return ParsedAnswer(None, None, "more than one line states a score")
    score = int(match.group(1))
    if not 0 <= score <= MAX_SCORE:
        return ParsedAnswer(None, None, f"score {score} is outside 0-{MAX_SCORE}")
    return ParsedAnswer(score, "\n".join(lines[:-1]).strip())
