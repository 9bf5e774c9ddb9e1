"""Cheap math prefilter on raw HTML: decides which pages deserve the expensive math-aware extraction.

It runs on every page of a crawl, so it must cost a small fraction of the fast text pass (resiliparse,
~1-2 ms on a 200 KB page). No parsing and no per-word regex; the page is read by a few vectorised (NumPy)
passes over its bytes, and Python only looks at the few places they point to:

* every case-insensitive occurrence of "math" and "atex" is classified by what surrounds it: MathML
  (`<math`, `amp-mathml`), TeX scripts (`math/tex`, `math/mml`), MathJax, KaTeX, formula images
  (latex.php, codecogs, mathtex, Wikimedia `/math/render/`), TeX source containers (`class="math"`,
  `math-container`, `arithmatex`), and the word "mathematics";
* TeX commands that are almost never anything but mathematics (`\\frac`, `\\sum`, ...), tried only at the
  backslashes followed by two letters that can start one;
* vocabulary: counts of "theorem" and "equation" in the body, plus the "mathemat..." occurrences found above.

A hit is a recommendation, not a verdict: pages it misses are still recalled by the stage-one score of
the classifier, and pages it passes are judged on their extracted text (`pipeline.math_decision`).

How the passes stay exact: the page is copied once with bit 0x20 set in every byte (`_folded`), which
turns an ASCII upper-case letter into its lower-case one and no other byte into a letter, so comparing
letters there is comparing letters of `data.lower()` (the `<` of `<body` is checked in the raw page). Every
word searched for holds "at" or "eo", so one vectorised search for those two-letter keys finds every
candidate, and each candidate is checked letter by letter. Pages with hundreds of occurrences of an anchor
are lower-cased whole for the rest of it, as before. The verdict is the one `reference_prefilter` (the plain
version: lower-case the page, then search it) gives, on every page; tests/test_prefilter.py pins the two
together. Pages under 32 KiB take the plain version, which is faster there.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# (signal, its patterns), searched around each occurrence of an anchor: a window around it for the first
# occurrences, the rest of the page past them. Each pattern starts with a literal, so that a search of a
# whole page jumps between the places where that literal occurs.
_Contexts = tuple[tuple[str, tuple[bytes, ...]], ...]
_MATH_CONTEXT_PATTERNS: _Contexts = (
    ("mathml", (rb"<math[\s>]", rb"<\w+:math[\s>]", rb"amp-mathml")),
    ("tex_script", (rb"math/(?:tex|mml)",)),
    ("renderer", (rb"mathjax",)),
    ("tex_image", (rb"mathtex\.cgi", rb"/math/render/")),
    ("tex_source", (rb"math-container", rb"class=[\"']math[\s\"']")),
)
_ATEX_CONTEXT_PATTERNS: _Contexts = (
    ("renderer", (rb"katex", rb"quicklatex")),
    ("tex_image", (rb"latex\.php", rb"latex\.codecogs", rb"\.latex\?", rb"/latex\?")),
    ("tex_source", (rb"arithmatex", rb"data-latex")),
)


@dataclass(frozen=True)
class _Context:
    """One signal: `window` finds any of its patterns in a window; `parts` are searched one by one in the
    rest of a page (an alternation of literals costs a regex step per byte, each literal alone a jump)."""

    name: str
    window: re.Pattern[bytes]
    parts: tuple[re.Pattern[bytes], ...]

    def search(self, data: bytes, start: int) -> bool:
        return any(part.search(data, start) for part in self.parts)


def _contexts(patterns: _Contexts) -> tuple[_Context, ...]:
    return tuple(
        _Context(name, re.compile(b"|".join(parts)), tuple(re.compile(part) for part in parts))
        for name, parts in patterns
    )


_MATH_CONTEXTS = _contexts(_MATH_CONTEXT_PATTERNS)
_ATEX_CONTEXTS = _contexts(_ATEX_CONTEXT_PATTERNS)
# Strong signals are math encodings in the page itself; weak ones (a renderer loaded site-wide, a class
# name, a few words) also occur on ordinary pages and only count when two of them agree.
STRONG_SIGNALS = ("mathml", "tex_script", "tex_image", "tex_commands")
_WEAK = ("renderer", "tex_source", "vocabulary")
_WINDOW = 16

_TEX_NAMES = (
    "frac|dfrac|sqrt|sum|prod|int|iint|oint|lim|infty|partial|nabla|mathbb|mathbf|mathcal|mathrm|"
    "alpha|beta|gamma|delta|epsilon|varepsilon|theta|lambda|sigma|omega|cdot|cdots|ldots|times|leq|geq|neq|"
    "approx|equiv|forall|exists|subseteq|rightarrow|left[(\\[|.]|right[)\\]|.]|begin\\{(?:equation|align|"
    "array|matrix|pmatrix|bmatrix|cases|gather)|binom|pm|mp"
)
_TEX_COMMAND_RE = re.compile(rb"\\(?:" + _TEX_NAMES.encode() + rb")(?![A-Za-z])")
# bytes a match of _TEX_COMMAND_RE can read from its backslash (at most 15), with room to spare
_TEX_READ = 32
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
# Backslashes followed by two letters that can start a TeX command are each tried with the regex; when this
# many tries find too few commands, the page is searched whole by the regex instead (a page of `\fr` costs a
# scan, not a Python step each).
_MAX_TEX_TRIES = 64
# Below this many bytes the plain version is faster: a vectorised pass costs microseconds whatever its size.
_VECTORISED_FROM = 32 << 10


def _max_candidates(n: int) -> int:
    """Candidate positions (of "at"/"eo", of backslashes) a page may have before it is read the plain way:
    real pages have a few thousand at most, and the arrays that hold them cost 8 bytes and more each, so a
    page made of them must not hold them all (the plain way costs the page's size in memory, once)."""
    return 4096 + n // 32


def _verdict(fired: set[str], tex_commands: int, vocabulary: int) -> PrefilterResult:
    if tex_commands >= _MIN_TEX_COMMANDS:
        fired.add("tex_commands")
    if vocabulary >= _MIN_VOCABULARY:
        fired.add("vocabulary")
    strong = [name for name in STRONG_SIGNALS if name in fired]
    weak = [name for name in _WEAK if name in fired]
    hit = bool(strong) or len(weak) >= 2
    return PrefilterResult(
        hit=hit, signals=tuple(strong + weak), tex_commands=tex_commands, vocabulary=vocabulary
    )


def _count_tex_commands(lowered: bytes) -> int:
    """TeX commands in the lower-cased page, counted up to `_MIN_TEX_COMMANDS` (one regex scan)."""
    count = 0
    if b"\\" in lowered:
        for _ in _TEX_COMMAND_RE.finditer(lowered):
            count += 1
            if count >= _MIN_TEX_COMMANDS:
                break
    return count


def _classify_rest(
    lowered: bytes, pos: int, anchor: bytes, contexts: tuple[_Context, ...], fired: set[str]
) -> int:
    """Past the first `_MAX_WINDOWS` occurrences (the next at `pos`), each context still unseen is searched
    for in the rest of the page, one literal-led pattern at a time, which finds the same matches, since every
    context pattern contains the anchor: a page made of "math" costs a few scans, not a Python step per
    occurrence. Returns the "mathemat..." words in that rest."""
    rest = max(pos - _WINDOW, 0)
    for context in contexts:
        if context.name not in fired and context.search(lowered, rest):
            fired.add(context.name)
    return lowered.count(b"mathemat", pos) if anchor == b"math" else 0


def reference_prefilter(html: str | bytes) -> PrefilterResult:
    """The prefilter written plainly: lower-case the page, then find each anchor, command and word in it.
    `math_prefilter` gives the same result faster; this one is the definition the tests hold it to."""
    data = (html.encode("utf-8", "replace") if isinstance(html, str) else html).lower()
    fired: set[str] = set()
    vocabulary = 0
    for anchor, contexts in ((b"math", _MATH_CONTEXTS), (b"atex", _ATEX_CONTEXTS)):
        pos = data.find(anchor)
        for _ in range(_MAX_WINDOWS):
            if pos == -1:
                break
            window = data[max(pos - _WINDOW, 0) : pos + _WINDOW]
            for context in contexts:
                if context.name not in fired and context.window.search(window):
                    fired.add(context.name)
            vocabulary += data.startswith(b"mathemat", pos)
            pos = data.find(anchor, pos + len(anchor))
        if pos != -1:
            vocabulary += _classify_rest(data, pos, anchor, contexts, fired)
    body = max(data.find(b"<body"), 0)  # words in <head> are titles and scripts, not the page's prose
    vocabulary += sum(data.count(word, body) for word in _VOCABULARY)
    return _verdict(fired, _count_tex_commands(data), vocabulary)


# --- the fast version -------------------------------------------------------------------------------------

_BUFFERS = threading.local()  # one reusable folded copy per thread: a fresh 200 KB array costs page faults


_PAD = 8  # zero bytes after the page in the folded buffer: words read past its end match no letters


def _folded(raw: np.ndarray) -> tuple[bytearray, np.ndarray]:
    """`raw | 0x20` in this thread's buffer (as a bytearray for `find`, and as an array), followed by `_PAD`
    zero bytes; the rest of the buffer is not the page's, and it is all overwritten by the next call."""
    n = len(raw)
    buf: bytearray | None = getattr(_BUFFERS, "buf", None)
    if buf is None or len(buf) < n + _PAD:
        buf = _BUFFERS.buf = bytearray(n + _PAD + 0xFFFF & ~0xFFFF)  # whole 64 KiB blocks
    folded = np.frombuffer(buf, np.uint8, count=n)
    np.bitwise_or(raw, 0x20, out=folded)
    buf[n : n + _PAD] = bytes(_PAD)
    return buf, folded


def _pair_starts(folded: np.ndarray, keys: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray] | None:
    """The positions (unsorted) where the folded page holds any of the two-letter `keys` (little-endian
    16-bit words), and the key found at each: the page read as 16-bit words from its first byte and from its
    second finds every position, one vectorised comparison per key. None when there are more than
    `_max_candidates`."""
    n = len(folded)
    positions, found = [], []
    for offset in (0, 1):
        words = folded[offset : offset + (n - offset) // 2 * 2].view("<u2")
        hit = words == keys[0]
        for key in keys[1:]:
            hit |= words == key
        if np.count_nonzero(hit) > _max_candidates(n):
            return None
        where = np.flatnonzero(hit)
        positions.append(where * 2 + offset)
        found.append(words[where])
    return np.concatenate(positions), np.concatenate(found)


def _words_at_every_byte(buf: bytearray, n: int, size: int) -> np.ndarray:
    """The first `n` bytes of `buf` read as little-endian words of `size` bytes starting at every byte (a
    strided view, no copy): element i holds bytes i .. i + size - 1."""
    return np.ndarray((max(n - size + 1, 0),), dtype=f"<u{size}", buffer=buf, strides=(1,))


def _occurrences(quads: np.ndarray, pairs: np.ndarray, needle: bytes, at: int) -> np.ndarray:
    """Positions of `needle` (lower-case letters, 4 to 8 of them) in the lower-cased page, given the
    positions of its two letters at `at` and the folded page with its padding as 4-byte words at every byte
    (`quads`; a needle that would run past the page's end meets the padding there, and does not match)."""
    starts = pairs - at
    if at:
        starts = starts[starts >= 0]
    for offset in sorted({0, len(needle) - 4}):
        key = int.from_bytes(needle[offset : offset + 4], "little")
        starts = starts[quads[starts + offset] == key]
    return starts


def _tex_starts() -> np.ndarray:
    """Table over two folded bytes (as a little-endian uint16): can they follow the backslash of a command?"""
    table = np.zeros(1 << 16, dtype=bool)
    for name in re.findall(r"[a-z]{2,}", _TEX_NAMES):
        table[int.from_bytes(name[:2].encode(), "little")] = True
    return table


_TEX_STARTS = _tex_starts()
_AT, _EO = (int.from_bytes(pair, "little") for pair in (b"at", b"eo"))  # every needle holds one of them


def _tex_commands(data: bytes, raw: np.ndarray, pairs: np.ndarray, lowered: Callable[[], bytes]) -> int:
    """`_count_tex_commands` of the lower-cased page, running the regex only where a command can start: every
    match starts at a backslash and holds no other, so the count is that of the backslashes it matches at."""
    is_slash = raw[: max(len(raw) - 2, 0)] == 0x5C
    if np.count_nonzero(is_slash) > _max_candidates(len(raw)):
        return _count_tex_commands(lowered())
    slashes = np.flatnonzero(is_slash)
    if not len(slashes):
        return 0
    slashes = slashes[_TEX_STARTS[pairs[slashes + 1]]]
    count = 0
    for pos in slashes[:_MAX_TEX_TRIES].tolist():
        if _TEX_COMMAND_RE.match(data[pos : pos + _TEX_READ].lower()):
            count += 1
            if count >= _MIN_TEX_COMMANDS:
                return count
    return count if len(slashes) <= _MAX_TEX_TRIES else _count_tex_commands(lowered())


def _classify(
    data: bytes,
    positions: np.ndarray,
    anchor: bytes,
    contexts: tuple[_Context, ...],
    fired: set[str],
    lowered: Callable[[], bytes],
) -> int:
    """Classify each occurrence of `anchor` (at `positions`) by its window, in page order; returns how many
    were the word 'mathemat...'. The first `_MAX_WINDOWS` are classified one by one (ordinary pages have a few
    dozen), the rest by `_classify_rest`."""
    words = 0
    positions = np.sort(positions)
    for pos in positions[:_MAX_WINDOWS].tolist():
        start = max(pos - _WINDOW, 0)
        window = data[start : pos + _WINDOW].lower()
        for context in contexts:
            if context.name not in fired and context.window.search(window):
                fired.add(context.name)
        words += window.startswith(b"mathemat", pos - start)
    if len(positions) > _MAX_WINDOWS:
        words += _classify_rest(lowered(), int(positions[_MAX_WINDOWS]), anchor, contexts, fired)
    return words


def math_prefilter(html: str | bytes) -> PrefilterResult:
    """Math markup and vocabulary signals on raw HTML (bytes preferred: no encoding step needed)."""
    data = html.encode("utf-8", "replace") if isinstance(html, str) else bytes(html)
    return (vectorised_prefilter if len(data) >= _VECTORISED_FROM else reference_prefilter)(data)


def vectorised_prefilter(data: bytes) -> PrefilterResult:
    """`reference_prefilter(data)`, by vectorised passes (see the module docstring)."""
    if len(data) < 2:
        return reference_prefilter(data)
    cache: list[bytes] = []

    def lowered() -> bytes:  # the whole lower-cased page, only on pages with hundreds of occurrences
        if not cache:
            cache.append(data.lower())
        return cache[0]

    raw = np.frombuffer(data, np.uint8)
    buf, folded = _folded(raw)
    pairs = _pair_starts(folded, (_AT, _EO))
    if pairs is None:
        return reference_prefilter(data)
    at, eo = pairs[0][pairs[1] == _AT], pairs[0][pairs[1] == _EO]
    quads = _words_at_every_byte(buf, len(data) + _PAD, 4)
    fired: set[str] = set()
    vocabulary = _classify(data, _occurrences(quads, at, b"math", 1), b"math", _MATH_CONTEXTS, fired, lowered)
    _classify(data, _occurrences(quads, at, b"atex", 0), b"atex", _ATEX_CONTEXTS, fired, lowered)
    tex_commands = _tex_commands(data, raw, _words_at_every_byte(buf, len(data), 2), lowered)
    words = np.concatenate((_occurrences(quads, eo, b"theorem", 2), _occurrences(quads, at, b"equation", 3)))
    if len(words):
        body = buf.find(b"<body", 0, len(data))
        while body != -1 and data[body] != 0x3C:  # `<` folded is also 0x1C folded
            body = buf.find(b"<body", body + 1, len(data))
        # words in <head> are titles and scripts, not the page's prose
        vocabulary += int(np.count_nonzero(words >= max(body, 0)))
    return _verdict(fired, tex_commands, vocabulary)
