"""Math scoring of extracted text: the `MathScorer` protocol and the transparent rule-based default.

The corpus job only needs "how mathematical is this text, in [0, 1]". A trained fastText model
(`classifiers.math_classifier.FastTextMathScorer`) answers that best, but a model is not always at hand
(first run, demo, tests), so `RuleMathScorer` gives a documented, deterministic answer from two kinds of
evidence that survive math-aware extraction:

* markup: LaTeX delimiters (`$...$`, `$$...$$`, `\\(...\\)`, `\\[...\\]`), LaTeX commands (`\\frac`,
  `\\sum`, Greek letters, ...) and environments (`\\begin{align}`), and stray MathML tags;
* vocabulary: the density of mathematical words ("theorem", "integral", "derivative", ...) per word.

Each kind is squashed into [0, 1] with a saturating curve and the two are combined as a noisy-OR
(`1 - (1 - a)(1 - b)`), so either strong markup or dense vocabulary alone is enough for a high score,
and a page with neither stays near 0.

Scoring runs on every page of a crawl (stage one), so each count is taken without a regex step per character
where an exact cheaper way exists: words are counted on an ASCII skeleton of the text (`_word_skeleton`),
equation lines are searched only around the lines that hold a relation sign, and a pattern is not run on a
text that lacks its first character. The counts, and so the scores, are those of the plain definitions
(tests/classifiers/test_math_score.py holds them together on real pages).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class MathScorer(Protocol):
    """Anything that rates how mathematical a text is; the corpus job depends only on this."""

    name: str
    version: str

    def score(self, text: str) -> float:
        """Probability-like score in [0, 1]."""
        ...

    def score_batch(self, texts: Sequence[str]) -> list[float]:
        """Scores for many texts, in order."""
        ...


# LaTeX commands that (almost) only occur in mathematics. Formatting commands shared with prose
# LaTeX (\textbf, \emph, \section) are left out on purpose.
_TEX_COMMANDS = (
    "frac|dfrac|tfrac|sqrt|sum|prod|int|iint|oint|lim|limsup|liminf|infty|partial|nabla|cdot|cdots|ldots|"
    "times|div|pm|mp|leq?|geq?|neq|approx|equiv|sim|simeq|cong|propto|subset|subseteq|supset|supseteq|in|"
    "notin|cup|cap|setminus|emptyset|forall|exists|mathbb|mathbf|mathcal|mathrm|mathfrak|operatorname|"
    "binom|choose|vec|hat|bar|tilde|overline|underline|left|right|begin|end|log|ln|exp|sin|cos|tan|sec|csc|"
    "cot|arcsin|arccos|arctan|sinh|cosh|tanh|det|dim|ker|max|min|sup|inf|deg|gcd|mod|pmod|bmod|to|mapsto|"
    "rightarrow|Rightarrow|leftrightarrow|Leftrightarrow|iff|implies|wedge|vee|neg|oplus|otimes|circ|"
    "alpha|beta|gamma|Gamma|delta|Delta|epsilon|varepsilon|zeta|eta|theta|Theta|vartheta|iota|kappa|lambda|"
    "Lambda|mu|nu|xi|Xi|pi|Pi|rho|varrho|sigma|Sigma|tau|upsilon|phi|Phi|varphi|chi|psi|Psi|omega|Omega|"
    "quad|qquad|displaystyle|text|tag|label|ell|hbar|Re|Im|perp|parallel|angle|triangle|langle|rangle"
)
_TEX_COMMAND_RE = re.compile(r"\\(?:" + _TEX_COMMANDS + r")(?![A-Za-z])")
# Delimited math: $$..$$, $..$ (no newline, short, not a price like "$5 and $10" thanks to the
# no-space-after-opening rule), \(..\), \[..\].
# Every branch starts with `$` or `\\`, so the regex engine jumps between those characters. No body holds its
# own opening delimiter (a `$` body no `$`, a `\\(` body no `\\(`): the scan from each opening stops at the next
# one, so a flood of unclosed openings costs its length, not 2,000 characters per opening.
_TEX_SPAN_RE = re.compile(
    r"\$\$[^$]{1,2000}?\$\$|\$(?=[^\s$])[^$\n]{1,300}?(?<=[^\s\\])\$(?!\d)"
    r"|\\\((?:[^\\]|\\(?![()])){1,2000}?\\\)|\\\[(?:[^\\]|\\(?![\[\]])){1,2000}?\\\]"
)
_TEX_ENV_RE = re.compile(
    r"\\begin\{(?:equation|align|gather|multline|eqnarray|array|matrix|[pbvBV]matrix|cases)\*?\}"
)
_MATHML_RE = re.compile(r"<(?:math|mrow|mi|mo|mn|msup|msub|mfrac)\b", re.IGNORECASE)
# Plain-text math, each pattern starting with a literal or a character class so the regex engine can
# skip ahead instead of trying every position: unicode operators, powers (`x^2`), numeric equalities.
_MATH_SYMBOL_RE = re.compile(r"[×÷±∓√∛∑∏∫∮∞≤≥≠≈≅≡∝∂∇∈∉⊂⊆∪∩∀∃⇒⇔↦²³⁴ⁿ₀₁₂₃]")
_POWER_RE = re.compile(r"\^[({]?[0-9A-Za-z]")
_NUMERIC_EQUALITY_RE = re.compile(r"=\s?-?\d")
# A short line that states a relation with a number in it ("4.7 yr = 2470320 min"): worked examples.
# Spaced relations only, and no braces, semicolons, quotes, URLs or comments: code (`x=5;`,
# `export proxy=http://...`, `if (a == b) {`) stays out.
_EQUATION_LINE_RE = re.compile(
    r"^(?![^\n]*(?:://|[\"'`#_]))(?=[^\n]*\d)[^\n;{}<>=]{1,60}?\s(?:=|≈|≅|→|≤|≥)\s[^\n;{}<>=]{1,60}$",
    re.MULTILINE,
)

# English math vocabulary, matched as whole lower-case words. Words common in ordinary or programming
# prose ("set", "function", "real", "let", "sum", "graph") are left out: they made forum pages look mathy.
_MATH_VOCABULARY = (
    "theorem theorems lemma lemmas corollary proof proofs proposition conjecture axiom axioms equation "
    "equations inequality inequalities integral integrals integrate integration derivative derivatives "
    "differentiable differential polynomial polynomials matrix matrices eigenvalue eigenvalues eigenvector "
    "eigenvectors vectors scalar scalars algebra algebraic geometry geometric topology topological manifold "
    "manifolds homomorphism isomorphism isomorphic subgroup subspace nonlinear coefficient coefficients "
    "logarithm logarithms exponential trigonometric trigonometry sine cosine convergence converges "
    "convergent diverges divergent sequence sequences integer integers rational irrational modulo "
    "arithmetic calculus probabilities variance theorem's formula formulas formulae quotient denominator "
    "numerator fraction fractions exponent exponents radius diameter circumference triangle triangles "
    "hypotenuse perpendicular congruent asymptote asymptotic antiderivative determinant invertible bijective "
    "injective surjective subset subsets countable uncountable cardinality iff qed lim mathematics "
    "mathematical multiply multiplied divided"
)
_MATH_WORD_SET = frozenset(_MATH_VOCABULARY.split())
_MATH_WORD_BYTES = frozenset(word.encode() for word in _MATH_WORD_SET)
# Bytes of an ASCII skeleton: `\w` ones kept, the others a space, so that `split()` gives the `\w+` runs.
_SPACE_NON_WORD = bytes(b if re.match(rb"\w", bytes([b])) else 0x20 for b in range(256))
_RELATIONS = "=≈≅→≤≥"  # the relation signs of _EQUATION_LINE_RE
_RELATION_RE = re.compile("[" + _RELATIONS + "]")
_MAX_RELATION_LINES = 64  # past this many lines with a relation sign, the regex reads the whole text


def _saturate(x: float, half: float) -> float:
    """Map x >= 0 to [0, 1): 0 -> 0, `half` -> 0.5, grows ever slower towards 1."""
    if x <= 0:
        return 0.0
    return 1.0 - math.exp(-x * math.log(2) / half)


def markup_evidence(text: str) -> float:
    """How much LaTeX/MathML markup the text carries, per 1,000 characters, squashed into [0, 1)."""
    if not text:
        return 0.0
    hits = 0
    if "$" in text or "\\" in text:  # every TeX pattern starts with one of them
        hits += len(_TEX_SPAN_RE.findall(text))
        if "\\" in text:
            hits += len(_TEX_COMMAND_RE.findall(text)) + 3 * len(_TEX_ENV_RE.findall(text))
    if "<" in text:
        hits += len(_MATHML_RE.findall(text))
    # Density per 1k characters, but a long page with many formulas must not be diluted to nothing:
    # count absolute hits too (a few formulas in a long article are already strong evidence).
    per_k = 1000.0 * hits / max(len(text), 1)
    return max(_saturate(per_k, 2.0), _saturate(hits, 3.0))


def _bmp_skeleton() -> np.ndarray:
    """Skeleton byte per code point of the Basic Multilingual Plane: ASCII as itself, any other character `_`
    where the regex `\\w` matches it and a space where not (the regex engine's own answer, so that the
    skeleton splits words exactly where `\\w+` does). Built once at import, from one 64k-character string."""
    plane = np.arange(0x10000, dtype="<u4").tobytes().decode("utf-32-le", "surrogatepass")
    marks = np.frombuffer(re.sub(r"\W", " ", re.sub(r"\w", "_", plane)).encode("ascii"), np.uint8).copy()
    marks[:0x80] = np.arange(0x80)
    return marks


_BMP_SKELETON = _bmp_skeleton()


def _word_skeleton(text: str) -> bytes:
    """`text` as one ASCII byte per character with the same `\\w+` runs: ASCII characters as they are, any
    other word character `_` (no vocabulary word holds one), any other character a space."""
    if text.isascii():
        return text.encode("ascii")
    points = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), "<u4")
    if points.max() <= 0xFFFF:
        return _BMP_SKELETON[points].tobytes()
    skeleton = _BMP_SKELETON[np.minimum(points, 0xFFFF)]
    astral = points > 0xFFFF
    found, where = np.unique(points[astral], return_inverse=True)
    marks = np.array([0x5F if re.match(r"\w", chr(p)) else 0x20 for p in found.tolist()], np.uint8)
    skeleton[astral] = marks[where]
    return skeleton.tobytes()


def vocabulary_evidence(text: str) -> float:
    """Share of words that are math vocabulary, squashed into [0, 1) (English only)."""
    words = _word_skeleton(text.lower()).translate(_SPACE_NON_WORD).split()  # the `\w+` runs of text.lower()
    if len(words) < 30:
        return 0.0
    share = sum(map(_MATH_WORD_BYTES.__contains__, words)) / len(words)
    # Ordinary prose has well under 0.5% of these words; math prose 3% and more.
    return _saturate(max(share - 0.005, 0.0), 0.02)


def _line_start(text: str, pos: int) -> int:
    return text.rfind("\n", 0, pos) + 1


def _line_end(text: str, pos: int) -> int:
    end = text.find("\n", pos)
    return len(text) if end == -1 else end


def equation_lines(text: str) -> int:
    """`len(_EQUATION_LINE_RE.findall(text))`, with the regex run only on the lines that can start a match.

    A match starts on a line that holds a relation sign or on the line before it (the space before the sign
    may be the newline), and ends on the sign's line or the line after it (so may the space after it); so the
    lines from one before to one after each relation line, joined by empty lines (where no match can start
    or continue), hold the same matches, in the same order."""
    if not any(sign in text for sign in _RELATIONS):
        return 0
    spans: list[list[int]] = []
    pos = 0
    for _ in range(_MAX_RELATION_LINES):
        relation = _RELATION_RE.search(text, pos)
        if relation is None:
            break
        line = _line_start(text, relation.start())
        start = _line_start(text, line - 1) if line else 0
        end = pos = _line_end(text, relation.start())
        pos += 1  # the next relation line
        end = _line_end(text, end + 1) if end < len(text) else end  # and the line after it
        if spans and start <= spans[-1][1] + 1:
            spans[-1][1] = max(spans[-1][1], end)
        else:
            spans.append([start, end])
    else:
        if _RELATION_RE.search(text, pos):  # a page of relation lines: one scan of it all
            return len(_EQUATION_LINE_RE.findall(text))
    return len(_EQUATION_LINE_RE.findall("\n\n".join(text[start:end] for start, end in spans)))


def symbol_evidence(text: str) -> float:
    """Math written without markup (× ≤ √ ², `x^2`, `a = 3.5`, equation lines), per 1,000 characters."""
    if not text:
        return 0.0
    hits = (
        (0 if text.isascii() else len(_MATH_SYMBOL_RE.findall(text)))  # every symbol is beyond ASCII
        + len(_POWER_RE.findall(text))
        + len(_NUMERIC_EQUALITY_RE.findall(text))
        + 2 * equation_lines(text)
    )
    if hits < 3:
        return 0.0
    return _saturate(1000.0 * hits / len(text), 4.0)


MAX_SCORED_CHARS = 100_000
"""The rule scorer reads this prefix of a text (the fastText scorer reads 20,000 characters): a few dozen
pages of evidence decide as well as a whole book, and a bounded read keeps a page's scoring inside its time
and memory budget whatever the crawl serves."""


class RuleMathScorer:
    """Transparent default scorer: noisy-OR of markup evidence and vocabulary evidence."""

    name = "rule"
    version = "1"

    def score(self, text: str) -> float:
        """Score one text in [0, 1] (its first `MAX_SCORED_CHARS` characters)."""
        text = text[:MAX_SCORED_CHARS]
        miss = 1.0
        for evidence in (markup_evidence(text), vocabulary_evidence(text), symbol_evidence(text)):
            miss *= 1.0 - evidence
        return 1.0 - miss

    def score_batch(self, texts: Iterable[str]) -> list[float]:
        """Score many texts, in order."""
        return [self.score(t or "") for t in texts]
