"""Cheap math prefilter on raw HTML: decides which pages deserve the expensive math-aware extraction.

It runs on every page of a crawl, so it must cost a small fraction of the fast text pass (resiliparse,
~1-2 ms on a 200 KB page). No parsing and no per-word regex: each full scan of a 200 KB page costs
~0.1 ms, so the whole check is a handful of scans over the lower-cased bytes:

* two anchor scans, for "math" and "atex", classify what surrounds each occurrence: MathML (`<math`,
  `amp-mathml`), TeX scripts (`math/tex`, `math/mml`), MathJax, KaTeX, formula images (latex.php,
  codecogs, mathtex, Wikimedia `/math/render/`), TeX source containers (`class="math"`,
  `math-container`, `arithmatex`), and the word "mathematics";
* one regex for TeX commands that are almost never anything but mathematics (`\\frac`, `\\sum`, ...);
  it starts with a backslash literal, so the regex engine skips straight between backslashes;
* vocabulary: counts of "theorem" and "equation", plus the "mathemat..." occurrences found above.

A hit is a recommendation, not a verdict: pages it misses are still recalled by the stage-one score of
the classifier, and pages it passes are judged on their extracted text (`pipeline.math_decision`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# (signal, byte pattern around an anchor occurrence). Patterns are matched on a small window.
_MATH_CONTEXTS: tuple[tuple[str, re.Pattern[bytes]], ...] = (
    ("mathml", re.compile(rb"<(?:\w+:)?math[\s>]|amp-mathml")),
    ("tex_script", re.compile(rb"math/(?:tex|mml)")),
    ("renderer", re.compile(rb"mathjax")),
    ("tex_image", re.compile(rb"mathtex\.cgi|/math/render/")),
    ("tex_source", re.compile(rb"math-container|class=[\"']math[\s\"']")),
)
_ATEX_CONTEXTS: tuple[tuple[str, re.Pattern[bytes]], ...] = (
    ("renderer", re.compile(rb"katex|quicklatex")),
    ("tex_image", re.compile(rb"latex\.php|latex\.codecogs|[./]latex\?")),
    ("tex_source", re.compile(rb"arithmatex|data-latex")),
)
# Strong signals are math encodings in the page itself; weak ones (a renderer loaded site-wide, a class
# name, a few words) also occur on ordinary pages and only count when two of them agree.
STRONG_SIGNALS = ("mathml", "tex_script", "tex_image", "tex_commands")
_WEAK = ("renderer", "tex_source", "vocabulary")
_WINDOW = 16

_TEX_COMMAND_RE = re.compile(
    rb"\\(?:frac|dfrac|sqrt|sum|prod|int|iint|oint|lim|infty|partial|nabla|mathbb|mathbf|mathcal|mathrm|"
    rb"alpha|beta|gamma|delta|epsilon|varepsilon|theta|lambda|sigma|omega|cdot|cdots|ldots|times|leq|geq|neq|"
    rb"approx|equiv|forall|exists|subseteq|rightarrow|left[(\[|.]|right[)\]|.]|begin\{(?:equation|align|"
    rb"array|matrix|pmatrix|bmatrix|cases|gather)|binom|pm|mp)(?![A-Za-z])"
)
_MIN_TEX_COMMANDS = 3
_VOCABULARY = (b"theorem", b"equation")
_MIN_VOCABULARY = 5


@dataclass(frozen=True)
class PrefilterResult:
    """The prefilter's verdict on one page and the evidence behind it."""

    hit: bool
    signals: tuple[str, ...]  # strong signals that fired, then weak ones
    tex_commands: int = 0
    vocabulary: int = 0

    def as_dict(self) -> dict[str, object]:
        return {
            "hit": self.hit,
            "signals": list(self.signals),
            "tex_commands": self.tex_commands,
            "vocabulary": self.vocabulary,
        }


_MAX_WINDOWS = 256


def _scan_anchor(
    data: bytes, anchor: bytes, contexts: tuple[tuple[str, re.Pattern[bytes]], ...], fired: set[str]
) -> int:
    """Classify every occurrence of `anchor`; returns how many were the word 'mathemat...'.

    The first `_MAX_WINDOWS` occurrences are classified one by one (ordinary pages have a few dozen); past
    them each context still unseen is searched for in the rest of the page in one regex pass, which finds
    the same matches, since every context pattern contains the anchor: a page made of "math" costs a few
    scans of its bytes, not a Python step per occurrence."""
    words = 0
    pos = data.find(anchor)
    for _ in range(_MAX_WINDOWS):
        if pos == -1:
            return words
        window = data[max(pos - _WINDOW, 0) : pos + _WINDOW]
        for name, pattern in contexts:
            if name not in fired and pattern.search(window):
                fired.add(name)
        if data.startswith(b"mathemat", pos):
            words += 1
        pos = data.find(anchor, pos + len(anchor))
    if pos != -1:
        rest = max(pos - _WINDOW, 0)
        for name, pattern in contexts:
            if name not in fired and pattern.search(data, rest):
                fired.add(name)
        words += data.count(b"mathemat", pos) if anchor == b"math" else 0
    return words


def math_prefilter(html: str | bytes) -> PrefilterResult:
    """Math markup and vocabulary signals on raw HTML (bytes preferred: no encoding step needed)."""
    data = (html.encode("utf-8", "replace") if isinstance(html, str) else html).lower()
    fired: set[str] = set()
    vocabulary = _scan_anchor(data, b"math", _MATH_CONTEXTS, fired)
    _scan_anchor(data, b"atex", _ATEX_CONTEXTS, fired)
    tex_commands = 0
    if b"\\" in data:
        for _ in _TEX_COMMAND_RE.finditer(data):
            tex_commands += 1
            if tex_commands >= _MIN_TEX_COMMANDS:
                break
    if tex_commands >= _MIN_TEX_COMMANDS:
        fired.add("tex_commands")
    body = max(data.find(b"<body"), 0)  # words in <head> are titles and scripts, not the page's prose
    vocabulary += sum(data.count(word, body) for word in _VOCABULARY)
    if vocabulary >= _MIN_VOCABULARY:
        fired.add("vocabulary")
    strong = [name for name in STRONG_SIGNALS if name in fired]
    weak = [name for name in _WEAK if name in fired]
    hit = bool(strong) or len(weak) >= 2
    return PrefilterResult(
        hit=hit, signals=tuple(strong + weak), tex_commands=tex_commands, vocabulary=vocabulary
    )
