"""Final-answer extraction for rewards and evaluation: the one place that decides which part of a model output
(or of a benchmark row) is "the answer", before math-verify decides whether two answers are equal.

Extraction is deliberately plain string work (no sympy, no torch): it runs in the trainer process for every
rollout, and its output is what gets logged next to each verdict. Normalisation is kept trivial (delimiters,
trailing period, thousands separators in plain numbers); real equivalence (fractions, units, intervals, ...)
is left to math-verify in `training.rewards.verify`.

Two ways to find the answer of a model output (lm-eval's "strict-match" and "flexible-extract"):

- strict (`extract_strict`, what RL rewards use): only where the template puts it, the final `\\boxed{}` (after
  the end of the reasoning when the template opened `<think>`), and only when that box is closed. Nothing else
  counts, so a policy cannot earn reward with "82 > > > ..." or a box cut off by the length limit.
- lenient (`extract_answer`, an eval option): the last complete box, else a GSM8K "####" line, else
  "the answer is X", else the last number; for models that never learned the format.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from typing import Any

__all__ = [
    "ANSWER_MATCHES",
    "extract_answer",
    "extract_boxed",
    "extract_strict",
    "extractor",
    "gold_answer",
    "normalize_answer",
]

ANSWER_MATCHES = ("strict", "lenient")

_BOX_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_GSM8K_RE = re.compile(r"^[ \t]*####[ \t]*(.+?)[ \t]*$", re.MULTILINE)
_ANSWER_IS_RE = re.compile(
    r"(?:\bthe\s+(?:final\s+)?answer\s+is\s*:?|\b(?:final\s+)?answer\s*:)[ \t]*(?P<rest>[^\n]*)",
    re.IGNORECASE,
)
# Thousands-separated numbers first so that "1,234" is one number; decimals, exponents ("4.5e33"), fractions.
_NUMBER_RE = re.compile(
    r"-?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+\b)?(?:\s*/\s*\d+(?:\.\d+)?)?"
)
_THOUSANDS_RE = re.compile(r"^-?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
_DELIMITERS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))
# Fields that hold a final answer in the benchmark files we know of, most explicit first.
_ANSWER_FIELDS = ("answer", "final_answer", "expected_answer", "gold", "target")
_SOLUTION_FIELDS = ("solution", "output", "response")


def _braced(text: str, start: int) -> tuple[str, int] | None:
    """The content of the brace group opening at text[start] == "{" and the index after it; None if unbalanced."""
    depth = 0
    i = start
    while i < len(text):
        c = text[i]
        if c == "\\":  # \{ and \} are literal braces, not grouping
            i += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i], i + 1
        i += 1
    return None


def _box_content(text: str, pos: int) -> str | None:
    """The argument of the \\boxed / \\fbox command at text[pos:], or None when it is missing or unbalanced."""
    i = pos + (len("\\boxed") if text.startswith("\\boxed", pos) else len("\\fbox"))
    while i < len(text) and text[i] in " \t":
        i += 1
    if i < len(text) and text[i] == "{":
        group = _braced(text, i)
        return None if group is None else group[0]
    m = re.match(r"[^\s$}]+", text[i:])  # the brace-less form: "\boxed 5$" → "5"
    return m.group(0) if m else None


def extract_boxed(text: str) -> str | None:
    """The content of the last complete \\boxed{...} / \\fbox{...} (nested braces kept), or None.

    A truncated last box (unbalanced braces, as in a generation cut at max length) is skipped in favour of the
    previous complete one.
    """
    for m in reversed(list(_BOX_RE.finditer(text))):
        content = _box_content(text, m.start())
        if content is not None and content.strip():
            return content.strip()
    return None


def extract_strict(text: str | None, after: str | None = None) -> str | None:
    """The answer in the final `\\boxed{...}` / `\\fbox{...}` of `text`, normalised, or None.

    None when there is no box, when the final box is not closed (a completion cut off inside it: an earlier
    closed box does not stand in for it) or empty, and, when `after` is given (the template's end of
    reasoning, e.g. "</think>"), when the text has no `after` or no box behind its first occurrence.
    """
    if not text:
        return None
    if after is not None:
        _, found, text = text.partition(after)
        if not found:
            return None
    boxes = list(_BOX_RE.finditer(text))
    if not boxes:
        return None
    content = _box_content(text, boxes[-1].start())
    if content is None:
        return None
    return normalize_answer(content) or None


def extractor(match: str, after: str | None = None) -> Callable[[str | None], str | None]:
    """The answer extraction named by `match` ("strict" or "lenient"; `after` is strict's end of reasoning)."""
    if match == "strict":
        return functools.partial(extract_strict, after=after)
    if match == "lenient":
        return extract_answer
    raise ValueError(f"answer match must be one of {ANSWER_MATCHES}, got {match!r}")


def _strip_delimiters(s: str) -> str:
    changed = True
    while changed:
        changed = False
        s = s.strip()
        for left, right in _DELIMITERS:
            if len(s) >= len(left) + len(right) and s.startswith(left) and s.endswith(right):
                s = s[len(left) : len(s) - len(right)]
                changed = True
                break
    return s


def normalize_answer(answer: str) -> str:
    """Trivial clean-up only: outer whitespace and math delimiters, a trailing period, thousands commas in a
    plain number ("1,234" → "1234"), "\\!" thin spaces. Everything else is math-verify's job."""
    s = _strip_delimiters(answer)
    s = s.replace("\\!", "").strip()
    while s.endswith(".") and not s.endswith("..."):
        s = _strip_delimiters(s[:-1])
    s = s.rstrip(",;:").strip()
    s = _strip_delimiters(s)
    if _THOUSANDS_RE.match(s):
        s = s.replace(",", "")
    return s


def _answer_is_span(rest: str) -> str:
    """The answer part of the text that follows "the answer is" / "Answer:" on the same line."""
    rest = rest.strip()
    for left, right in _DELIMITERS:
        if rest.startswith(left):
            end = rest.find(right, len(left))
            if end > len(left):
                return rest[len(left) : end]
    boxed = extract_boxed(rest)
    if boxed is not None:
        return boxed
    # A sentence end: a period followed by a space, or the end of the line.
    m = re.search(r"\.(?:\s|$)", rest)
    return rest[: m.start()] if m else rest


def extract_answer(text: str | None) -> str | None:
    """The final answer of a model output or solution, or None when it has none.

    Order: the last \\boxed{...} / \\fbox{...} (balanced braces, also "\\boxed 5"), else the last GSM8K
    "#### n" line, else the last "the answer is X" / "Answer: X", else the last number in the text (thousands
    commas, negatives, decimals, fractions such as 3/4).
    """
    if not text:
        return None
    boxed = extract_boxed(text)
    if boxed is not None:
        return normalize_answer(boxed) or None
    hashes = _GSM8K_RE.findall(text)
    if hashes:
        found = normalize_answer(hashes[-1])
        if found:
            return found
    for m in reversed(list(_ANSWER_IS_RE.finditer(text))):
        found = normalize_answer(_answer_is_span(m.group("rest")))
        if found:
            return found
    numbers = _NUMBER_RE.findall(text)
    if numbers:
        return normalize_answer(re.sub(r"\s+", "", numbers[-1]))
    return None


def _format_scalar(value: Any) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # amc23 stores 27.0
    return str(value)


def gold_answer(record: Mapping[str, Any]) -> str:
    """The reference answer of one benchmark row, whatever the benchmark's format.

    An explicit answer field wins (a GSM8K answer keeps only what follows "####"; a boxed answer its box;
    a number is formatted without a spurious ".0"); else the last box of the solution field, else its "####"
    line. Raises ValueError when the row has no usable answer.
    """
    for key in _ANSWER_FIELDS:
        value = record.get(key)
        if value is None or isinstance(value, (list, dict)):
            continue
        if not isinstance(value, str):
            return _format_scalar(value)
        if "####" in value:
            hashes = _GSM8K_RE.findall(value)
            found = normalize_answer(hashes[-1] if hashes else value.rsplit("####", 1)[1])
        else:
            found = normalize_answer(extract_boxed(value) or value)
        if found:
            return found
    for key in _SOLUTION_FIELDS:
        value = record.get(key)
        if not isinstance(value, str) or not value.strip():
            continue
        boxed = extract_boxed(value)
        if boxed is not None and normalize_answer(boxed):
            return normalize_answer(boxed)
        hashes = _GSM8K_RE.findall(value)
        if hashes and normalize_answer(hashes[-1]):
            return normalize_answer(hashes[-1])
    raise ValueError(
        f"no gold answer: none of the fields {_ANSWER_FIELDS} is set and no {_SOLUTION_FIELDS} field has a "
        f"\\boxed{{}} or '####' answer (row fields: {sorted(record)})"
    )
