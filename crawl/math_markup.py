"""Turn every math encoding of a web page into LaTeX text in place, before main-text extraction.

Text extractors see formulas as markup to throw away: `<script type="math/tex">` and `<math>` are removed
with the scripts and widgets, MathJax/KaTeX renderings come out as glyph soup, images with TeX in `alt`
vanish. This module rewrites the HTML tree so that each formula becomes plain text that every extractor
keeps: inline math as `$...$`, display math as `$$...$$`. Encodings handled, in the order they are
processed (the order matters: rendered copies are dropped where the source is present):

1. TeX delimiters in text: MathJax/KaTeX defaults (`\\(..\\)`, `\\[..\\]`, `$$..$$`) plus whatever the
   page configures itself (`tex2jax`/`tex` `inlineMath`/`displayMath`, KaTeX auto-render `delimiters`),
   skipping `script`, `style`, `pre`, `code`, `textarea` and `tex2jax_ignore` as MathJax does;
2. `<script type="math/tex">` (`; mode=display`) and `math/mml`, dropping the MathJax v2 rendering and
   preview that precede them;
3. MathML `<math>` (TeX annotation, else `alttext`, else a conversion of the tree), replacing the whole
   wrapper that renders it (KaTeX `.katex`, MathJax v3 `mjx-container`, Wikipedia `mwe-math-element`
   with its fallback image), and MathJax v2 renderings that only kept `data-mathml`;
4. images whose `alt` or `src` carries TeX (latex.php incl. wp.com, codecogs, mimetex/mathtex, Google
   chart `cht=tx`, Wikimedia math renders, QuickLaTeX, `class="latex"`/`"tex"`);
5. source containers such as `.math-container`, `.math`, `.tex`, `.arithmatex` holding raw TeX;
6. `katex.render("...", element)` calls in page scripts.

Nothing here raises on broken HTML: a document that cannot be parsed is returned unchanged. Nothing costs
more than linear time in the page either, whatever its shape (hundreds of thousands of formulas side by
side, megabyte lines, deep nesting: bench/hostile_pages.py), and a `Deadline` passed in is checked once per
element, raising `PageTimeout` when the page's time is up.
"""

from __future__ import annotations

import html as html_lib
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

import lxml.html
from lxml import etree

from crawl.deadline import NO_DEADLINE, Deadline
from crawl.mathml_tex import local_name, mathml_to_tex

log = logging.getLogger(__name__)

INLINE = ("$", "$")
DISPLAY = ("$$", "$$")

# Cheap gate: a page without any of these cannot contain an encoding we rewrite.
_ANY_MATH_RE = re.compile(
    r"<(?:\w+:)?math\b|math/(?:tex|mml)|katex|mathjax|mjx-|\\\(|\\\[|\$|latex|codecogs|mimetex|mathtex|"
    r"math-container|class=[\"'][^\"']*\b(?:math|tex|arithmatex)\b|\[i?tex\]",
    re.IGNORECASE,
)
_XML_DECL_RE = re.compile(r"^\s*<\?xml[^>]*\?>", re.IGNORECASE)
# lxml refuses to set text holding these, so they never enter the tree: C0 controls but tab, LF and CR
# (single bytes in UTF-8), and the noncharacters U+FFFE and U+FFFF.
_CONTROL_BYTES = bytes(range(0x09)) + b"\x0b\x0c" + bytes(range(0x0E, 0x20))
_NONCHARACTERS = (b"\xef\xbf\xbe", b"\xef\xbf\xbf")

_SKIP_TAGS = frozenset(
    {"script", "style", "textarea", "pre", "code", "noscript", "math", "svg", "title", "head"}
)
_SKIP_CLASSES = re.compile(r"\b(?:tex2jax_ignore|mathjax_ignore|katex-html|katex-mathml)\b")

# Wrappers that exist only to render one formula; replacing the formula replaces them whole.
_WRAPPER_CLASS_RE = re.compile(
    r"(?:^|\s)(?:katex|katex-mathml|katex-display|MathJax\w*|MJX\w*|mjx-\w+|mwe-math-[\w-]+|math-container|"
    r"math-tex|mathml|latex|tex)(?:\s|$)"
)
_RENDERED_CLASS_RE = re.compile(
    r"(?:^|\s)(?:MathJax|MathJax_Display|MathJax_SVG|MathJax_SVG_Display|MathJax_CHTML|MathJax_PHTML|"
    r"MathJax_MathML|MathJax_Preview|mjx-chtml|MJXc-display)(?:\s|$)"
)
_TEX_ATTRIBUTES = ("data-formula", "data-tex", "data-latex")
_TEX_ANNOTATIONS = frozenset({"application/x-tex", "tex", "text/x-tex", "application/x-latex", "text/latex"})

# Image sources that render TeX, and where the TeX sits in the URL.
_TEX_IMG_SRC_RE = re.compile(
    r"latex\.php|codecogs\.com|mimetex|mathtex|chart\.apis\.google\.com/chart|chart\.googleapis\.com/chart|"
    r"/math/render/|quicklatex\.com|latex\.artofproblemsolving\.com|/latex\?|/tex\?|\.latex\?",
    re.IGNORECASE,
)
_TEX_IMG_CLASS_RE = re.compile(
    r"\b(?:latex|tex|wp-latex|mwe-math-fallback-image[\w-]*|math|equation)\b", re.IGNORECASE
)
_CODECOGS_PREFIX_RE = re.compile(
    r"^(?:\s*\\(?:dpi\{\d+\}|bg_\w+|bg\{\w+\}|fn_\w+|inline|large|small|huge|LARGE|Large|tiny)\s*)+"
)
_IMG_FILENAME_RE = re.compile(r"^[\w.-]+\.(?:png|gif|svg|jpe?g)$", re.IGNORECASE)

_SOURCE_CLASS_RE = re.compile(
    r"(?:^|\s)(?:math-container|math|tex|latex|math-tex|arithmatex|mathjax|katex-src)(?:\s|$)"
)
_TEXISH_RE = re.compile(r"\\[A-Za-z]+|[\^_]\{?\w|\\[{}|,;!]")
_BLOCK_TAGS = frozenset(
    {"div", "p", "section", "article", "blockquote", "li", "td", "th", "dd", "figure", "center"}
)

_JS_STRING = r"""(?:"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')"""
# A delimiter is a few characters: a longer literal is no delimiter, and the cap bounds every read.
_MAX_DELIMITER = 32
_DELIM_STRING = r"""(?:"(?:[^"\\\n]|\\.){1,MAX}"|'(?:[^'\\\n]|\\.){1,MAX}')""".replace(
    "MAX", str(_MAX_DELIMITER)
)
_JS_PAIR_RE = re.compile(r"\[\s*(" + _DELIM_STRING + r")\s*,\s*(" + _DELIM_STRING + r")\s*\]")
_KATEX_LEFT_RE = re.compile(r"\bleft\s*:\s*(" + _DELIM_STRING + ")")
_KATEX_RIGHT_RE = re.compile(r"\bright\s*:\s*(" + _DELIM_STRING + ")")
_KATEX_DISPLAY_RE = re.compile(r"\bdisplay\s*:\s*true")
_BRACE_RE = re.compile(r"[{}]")
_KATEX_RENDER_RE = re.compile(
    r"katex\.render\(\s*("
    + _JS_STRING
    + r")\s*,\s*(?:document\.getElementById\(\s*[\"']([\w:-]+)[\"']\s*\)|([\w$]+))"
)


@dataclass(frozen=True)
class Delimiters:
    """TeX delimiter pairs in force on a page: (left, right) strings."""

    inline: tuple[tuple[str, str], ...] = (("\\(", "\\)"),)
    display: tuple[tuple[str, str], ...] = (("$$", "$$"), ("\\[", "\\]"))


DEFAULT_DELIMITERS = Delimiters()


@dataclass
class LatexifyReport:
    """What was rewritten, by encoding (for `inspect`, benchmarks and tests)."""

    counts: dict[str, int] = field(default_factory=dict)

    def add(self, kind: str, n: int = 1) -> None:
        if n:
            self.counts[kind] = self.counts.get(kind, 0) + n

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def _js_unquote(literal: str) -> str:
    """Value of a JS string literal (only the escapes that occur in delimiter configs)."""
    body = literal[1:-1]
    return re.sub(
        r"\\(u[0-9a-fA-F]{4}|.)",
        lambda m: chr(int(m.group(1)[1:], 16)) if len(m.group(1)) == 5 else m.group(1),
        body,
    )


_MAX_CONFIG_BLOCK = 10_000  # characters of a delimiter config list; real ones take a few dozen


def _bracket_block(text: str, start: int) -> str:
    """The balanced [...] starting at text[start] (if unbalanced, up to `_MAX_CONFIG_BLOCK` characters)."""
    depth = 0
    i = start
    end = min(len(text), start + _MAX_CONFIG_BLOCK)
    quote = ""
    while i < end:
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth == 0:
                return text[start : i + 1]
        i += 1
    return text[start:end]


def _config_pairs(script: str, key: str, deadline: Deadline = NO_DEADLINE) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    scanned = 0  # a key inside the block just read is read already: each character is scanned once
    for m in re.finditer(r"\b" + key + r"\s*[:=]\s*\[", script):
        if m.start() < scanned:
            continue
        deadline.check()
        block = _bracket_block(script, m.end() - 1)
        scanned = m.end() - 1 + len(block)
        pairs.extend((_js_unquote(a), _js_unquote(b)) for a, b in _JS_PAIR_RE.findall(block))
    return pairs


_MAX_DELIMITER_OBJECT = 400  # characters of one KaTeX `{left: .., right: .., display: ..}` object


def _katex_pairs(script: str, deadline: Deadline = NO_DEADLINE) -> list[tuple[tuple[str, str], bool]]:
    """KaTeX auto-render `delimiters: [{left: "..", right: "..", display: ..}, ...]` entries as
    ((left, right), display).

    Each `left:` key is read with the object around it, which must close within `_MAX_DELIMITER_OBJECT`
    characters either side: a config that never closes costs that bounded window per key, never a read to
    the end of the script from every key (which made such a script quadratic)."""
    found: list[tuple[tuple[str, str], bool]] = []
    done = 0  # the end of the last object read: its other keys belong to it
    for m in _KATEX_LEFT_RE.finditer(script):
        if m.start() < done:
            continue
        deadline.check()
        opening = script.rfind("{", max(0, m.start() - _MAX_DELIMITER_OBJECT), m.start())
        if opening < 0 or script.find("}", opening, m.start()) >= 0:
            continue
        brace = _BRACE_RE.search(script, m.end(), m.end() + _MAX_DELIMITER_OBJECT)
        if brace is None or brace.group() != "}":
            continue
        obj = script[opening : brace.end()]
        done = brace.end()
        right = _KATEX_RIGHT_RE.search(obj)
        if right is not None:
            pair = (_js_unquote(m.group(1)), _js_unquote(right.group(1)))
            found.append((pair, bool(_KATEX_DISPLAY_RE.search(obj))))
    return found


MAX_PAGE_DELIMITERS = 16
"""Delimiter pairs a page may add, per kind (real configs add a handful): every text position is tried
against each opening, so their number must not grow with the page."""


def page_delimiters(scripts: list[str], deadline: Deadline = NO_DEADLINE) -> Delimiters:
    """Delimiters configured by the page (MathJax v2/v3 inlineMath/displayMath, KaTeX auto-render), added
    to the defaults: at most `MAX_PAGE_DELIMITERS` of each kind, in the page's order."""
    inline = dict.fromkeys(DEFAULT_DELIMITERS.inline)
    display = dict.fromkeys(DEFAULT_DELIMITERS.display)
    limits = {id(inline): len(inline) + MAX_PAGE_DELIMITERS, id(display): len(display) + MAX_PAGE_DELIMITERS}

    def add(into: dict[tuple[str, str], None], pair: tuple[str, str]) -> None:
        if pair[0] and pair[1] and len(into) < limits[id(into)]:
            into[pair] = None

    for script in scripts:
        deadline.check()
        if "inlineMath" in script or "displayMath" in script:
            for pair in _config_pairs(script, "inlineMath", deadline):
                add(inline, pair)
            for pair in _config_pairs(script, "displayMath", deadline):
                add(display, pair)
        if "delimiters" in script and "left" in script:
            for pair, is_display in _katex_pairs(script, deadline):
                add(display if is_display else inline, pair)
    return Delimiters(inline=tuple(inline), display=tuple(display))


_MAX_DOLLAR_BODY = 4000  # characters between `$`-style delimiters (no `$` inside)
_MAX_BODY = 8000  # characters between other delimiters, e.g. \\[ ... \\]


@dataclass(frozen=True)
class _Pair:
    left: str
    right: str
    display: bool

    @property
    def dollar(self) -> bool:
        return self.left.startswith("$")


class _NextOccurrence:
    """ "Where does `needle` next occur at or after `start`?" for one text, in O(1) memory.

    The scanner asks with starts that only grow, so each needle remembers its last answer: a question whose
    start is not past that answer costs nothing, and the finds that do run search disjoint stretches of the
    text, so all of them together read it about once per needle. (Holding every offset of every needle
    instead cost hundreds of MB on a megabyte of `$` signs.) `searched` counts the characters the finds read.
    """

    def __init__(self, text: str):
        self.text = text
        self._last: dict[str, tuple[int, int]] = {}  # needle -> (start asked, answer)
        self.searched = 0

    def next(self, needle: str, start: int) -> int:
        """First offset >= start where `needle` occurs, or -1."""
        last = self._last.get(needle)
        if last is not None and last[0] <= start and (last[1] < 0 or last[1] >= start):
            return last[1]
        at = self.text.find(needle, start)
        self.searched += (len(self.text) if at < 0 else at + len(needle)) - start
        self._last[needle] = (start, at)
        return at


_DOLLAR_RUN_RE = re.compile(r"\$+")
_CHECK_EVERY = 1024  # openings tried between deadline checks inside one text node


class DelimiterScanner:
    """Finds delimited TeX in a text node in one left-to-right pass.

    Matches are those of one regex alternation over all pairs (longest opening first, leftmost match wins,
    shortest body): `$`-style openings not escaped by a backslash, followed by a non-space, and a body of
    1-4000 characters without `$`; other pairs take a body of 1-8000 characters. A regex does this with a
    bounded but large scan from every opening; here each closing delimiter is found by a search that never
    reads the same stretch twice, and a run of `$` signs is crossed in one step (only its last few can open a
    formula, since a `$` body cannot start with `$`), so a megabyte line full of unclosed `\\(` or of `$`
    costs what its length costs.
    """

    def __init__(self, delims: Delimiters):
        pairs = [_Pair(left, right, True) for left, right in delims.display]
        pairs += [_Pair(left, right, False) for left, right in delims.inline]
        self.pairs = sorted(pairs, key=lambda p: -len(p.left))
        self.literals = frozenset(p.left for p in self.pairs)
        self._first_chars = tuple(sorted({left[0] for left in self.literals}))
        self._opening = re.compile("|".join(re.escape(left) for left in sorted(self.literals, key=len)[::-1]))
        # the most leading `$` of any opening: deeper inside a run of `$`, no opening can match
        self._max_dollars = max((len(p.left) - len(p.left.lstrip("$")) for p in self.pairs), default=0)
        self.openings = self.searched = 0  # the work done: openings tried, characters searched for closings

    def may_match(self, text: str | None) -> bool:
        """Cheap gate: whether any opening delimiter occurs at all."""
        return bool(text) and any(lit in text for lit in self.literals)  # type: ignore[operator]

    def may_open(self, text: str) -> bool:
        """`may_match`, faster on the many texts without any opening's first character (`in` is a plain
        character search; a regex search is only run on the texts that hold one)."""
        for first in self._first_chars:
            if first in text:
                return self._opening.search(text) is not None
        return False

    def _close(self, text: str, found: _NextOccurrence, at: int, pair: _Pair) -> int:
        """Offset of the closing delimiter for `pair` opened at `at`, or -1."""
        if not text.startswith(pair.left, at):
            return -1
        body = at + len(pair.left)
        if pair.dollar:
            if (at and text[at - 1] == "\\") or body >= len(text) or text[body].isspace():
                return -1
            next_dollar = found.next("$", body)
            limit = min(body + _MAX_DOLLAR_BODY, len(text) if next_dollar < 0 else next_dollar)
        else:
            limit = body + _MAX_BODY
        close = found.next(pair.right, body + 1)
        return close if 0 <= close <= limit else -1

    def formulas(self, text: str, deadline: Deadline = NO_DEADLINE) -> Iterator[tuple[int, int, str, bool]]:
        """(start, end, tex, display) of each delimited formula, left to right, not overlapping."""
        found = _NextOccurrence(text)
        pos = 0
        while (opening := self._opening.search(text, pos)) is not None:
            at = opening.start()
            if text[at] == "$" and self._max_dollars:
                run_end = _DOLLAR_RUN_RE.match(text, at).end()  # type: ignore[union-attr]
                if run_end - at > self._max_dollars:
                    pos = run_end - self._max_dollars
                    continue
            pos = at + 1
            self.openings += 1
            if self.openings % _CHECK_EVERY == 0:
                deadline.check()
            for pair in self.pairs:
                close = self._close(text, found, at, pair)
                if close >= 0:
                    yield at, close + len(pair.right), text[at + len(pair.left) : close], pair.display
                    pos = close + len(pair.right)
                    break
        self.searched += found.searched

    def rewrite(self, text: str, deadline: Deadline = NO_DEADLINE) -> tuple[str, int]:
        """The text with each formula that has content wrapped as `$..$`/`$$..$$`; and how many."""
        pieces: list[str] = []
        done = count = 0
        for start, end, tex, display in self.formulas(text, deadline):
            if has_content(tex):
                pieces += (text[done:start], wrap_tex(tex, display))
                done = end
                count += 1
        return ("".join(pieces) + text[done:], count) if count else (text, 0)


def wrap_tex(tex: str, display: bool) -> str:
    """`$tex$` or `$$tex$$`, with the TeX on one line of single spaces."""
    tex = " ".join(tex.split())
    left, right = DISPLAY if display else INLINE
    return f"{left}{tex}{right}"


_EMPTY_TEX_RE = re.compile(r"^(?:\s|\\(?:begingroup|endgroup|relax|quad|qquad)(?![A-Za-z])|\\[,;! ]|[{}])*$")


def has_content(tex: str) -> bool:
    """False for formulas that typeset nothing (Stack Exchange's `\\begingroup` markers, bare spacing)."""
    return not _EMPTY_TEX_RE.match(tex)


def _classes(el: etree._Element) -> str:
    return el.get("class") or ""


def _is_hidden(el: etree._Element) -> bool:
    style = (el.get("style") or "").replace(" ", "").lower()
    return "display:none" in style


_PLACEHOLDER = "mathforge-text"  # a tag no page uses: the stand-in for a replaced element
_INLINE_PARENTS = frozenset({"p", "span", "a", "li", "td", "th", "em", "strong", "b", "i", "font"})


class _Rewrite:
    """One latexify run over a tree: its report, its deadline, and tree edits that cost O(1) each.

    Replacing an element by text means appending to a neighbour's text, and with thousands of formulas side
    by side that neighbour's text is rewritten once per formula (quadratic). Instead an element is swapped
    for a placeholder holding its text, and `merge_placeholders` splices all placeholders into the
    surrounding text once per pass. Elements taken out are remembered, so later visits skip them without
    walking up to the root.
    """

    def __init__(self, root: etree._Element, deadline: Deadline):
        self.root = root
        self.deadline = deadline
        self.report = LatexifyReport()
        self._gone: set[etree._Element] = set()
        self.survey = _Survey()  # what the passes act on (`_survey`)

    def is_gone(self, el: etree._Element) -> bool:
        """True once el, or an ancestor, was replaced."""
        return el in self._gone

    def _swap(self, el: etree._Element, new: etree._Element) -> None:
        parent = el.getparent()
        if parent is None:
            return
        new.tail = el.tail
        self._gone.update(el.iter())  # each element is taken out at most once: linear over a run
        parent.replace(el, new)

    def replace_with_text(self, el: etree._Element, text: str) -> None:
        """Put `text` where `el` was (keeping el's tail) and take el out."""
        holder = etree.Element(_PLACEHOLDER)
        holder.text = text
        self._swap(el, holder)

    def replace_with_formula(self, el: etree._Element, tex: str, display: bool) -> None:
        """Replace el by the formula; display math in a block container becomes its own paragraph."""
        parent = el.getparent()
        if parent is None:
            return
        if display and local_name(parent) not in _INLINE_PARENTS:
            para = etree.Element("p")
            para.text = wrap_tex(tex, True)
            self._swap(el, para)
            return
        pad = " " if display else ""
        self.replace_with_text(el, pad + wrap_tex(tex, display) + pad)

    def remove_keep_tail(self, el: etree._Element) -> None:
        self.replace_with_text(el, "")

    def merge_placeholders(self) -> None:
        """Splice every placeholder's text into its parent's text or its previous sibling's tail."""
        parents = dict.fromkeys(holder.getparent() for holder in self.root.iter(_PLACEHOLDER))
        for parent in parents:
            self.deadline.check()
            _merge_children(parent)


def _merge_children(parent: etree._Element) -> None:
    """One pass over parent's children: each run of placeholders joins the text before it."""
    pieces = [parent.text or ""]
    anchor: etree._Element | None = None  # whose tail the pieces become (None: the parent's text)
    merged = False
    for child in list(parent):
        if child.tag == _PLACEHOLDER:
            pieces += (child.text or "", child.tail or "")
            parent.remove(child)  # lxml removes the tail with the element: it is in `pieces` already
            merged = True
            continue
        if merged:
            _set_text(parent, anchor, "".join(pieces))
        anchor, pieces, merged = child, [child.tail or ""], False
    if merged:
        _set_text(parent, anchor, "".join(pieces))


def _set_text(parent: etree._Element, anchor: etree._Element | None, text: str) -> None:
    if anchor is None:
        parent.text = text or None
    else:
        anchor.tail = text or None


def _text_nodes_rewrite(page: _Rewrite, scanner: DelimiterScanner) -> None:
    """Rewrite delimited TeX in every visible text node, as MathJax's tex2jax would find it.

    Only the texts that hold an opening delimiter are visited (`_Survey.texts`), and whether each sits in a
    skipped element (`_SKIP_TAGS`, `_SKIP_CLASSES`) is decided once per element on the way up, so the cost
    follows the candidate text, not the page's element count."""
    skipped: dict[etree._Element, bool] = {}
    for owner, is_tail in page.survey.texts:
        page.deadline.check()
        el = owner.getparent() if is_tail else owner  # the element the text is displayed in
        if el is None or _skipped(el, page.root, skipped):
            continue
        text = owner.tail if is_tail else owner.text
        text, n = scanner.rewrite(text, page.deadline)  # type: ignore[arg-type]
        if is_tail:
            owner.tail = text
        else:
            owner.text = text
        page.report.add("delimiters", n)


def _skips_own_text(el: etree._Element) -> bool:
    name = local_name(el)
    return not name or name in _SKIP_TAGS or bool(_SKIP_CLASSES.search(_classes(el)))


def _skipped(el: etree._Element, root: etree._Element, memo: dict[etree._Element, bool]) -> bool:
    """Whether el or an ancestor up to `root` hides its text from the delimiter scan; each element is
    judged once (`memo`), so all questions together cost one walk of the tree at most."""
    path: list[etree._Element] = []
    node: etree._Element | None = el
    while node is not None and node not in memo:
        path.append(node)
        node = None if node is root else node.getparent()
    skip = memo[node] if node is not None else False
    for node in reversed(path):
        skip = skip or _skips_own_text(node)
        memo[node] = skip
    return memo[el]


_TEX_ATTRIBUTE_SET = frozenset(_TEX_ATTRIBUTES)
_SURVEYED_ATTRIBUTES = frozenset({*_TEX_ATTRIBUTES, "data-mathml", "class"})
_CHECK_ELEMENTS = 1024  # elements surveyed between deadline checks


@dataclass
class _Survey:
    """The elements each pass may act on, found in one walk over the tree before any pass runs.

    One Python loop over the elements costs about what each pass's own loop did, so five passes shared it.
    The passes only take elements out (`_Rewrite.is_gone` says which) or add elements that none of them
    looks for (placeholders, `<p>`, `<span>`), so each pass, skipping the elements taken out before it,
    acts on exactly the elements a walk of the tree as it then stands would find, in the same order."""

    # (holder, is_tail) of each text or tail holding an opening delimiter, outside scripts and styles
    texts: list[tuple[etree._Element, bool]] = field(default_factory=list)
    tex_attributes: list[etree._Element] = field(default_factory=list)  # a `_TEX_ATTRIBUTES` attribute set
    maths: list[etree._Element] = field(default_factory=list)  # <math>, whatever its prefix or case
    data_mathml: list[etree._Element] = field(default_factory=list)
    source_classes: list[etree._Element] = field(default_factory=list)  # a `_SOURCE_CLASS_RE` class


def _survey(root: etree._Element, scanner: DelimiterScanner, deadline: Deadline = NO_DEADLINE) -> _Survey:
    found = _Survey()
    may_open = scanner.may_open
    for i, el in enumerate(root.iter()):
        if not i % _CHECK_ELEMENTS:
            deadline.check()
        tail = el.tail
        if tail and may_open(tail) and el is not root:
            found.texts.append((el, True))
        tag = el.tag
        if not isinstance(tag, str):  # comments and processing instructions: only their tails are text
            continue
        text = el.text
        if text and tag not in _SKIP_TAGS and may_open(text):  # scripts hold much text, none of it shown
            found.texts.append((el, False))
        if tag[-4:].lower() == "math" and local_name(el) == "math":
            found.maths.append(el)
        keys = el.keys()
        if not keys or _SURVEYED_ATTRIBUTES.isdisjoint(keys):
            continue
        if not _TEX_ATTRIBUTE_SET.isdisjoint(keys):
            found.tex_attributes.append(el)
        if el.get("data-mathml"):
            found.data_mathml.append(el)
        classes = el.get("class")
        if classes and _SOURCE_CLASS_RE.search(classes):
            found.source_classes.append(el)
    return found


def _is_rendered_copy(el: etree._Element) -> bool:
    return bool(_RENDERED_CLASS_RE.search(_classes(el))) or local_name(el).startswith("mjx-")


def _math_scripts(page: _Rewrite) -> None:
    for script in list(page.root.iter("script")):
        page.deadline.check()
        kind = (script.get("type") or "").lower()
        if not kind.startswith(("math/", "text/tex", "text/mml")):
            continue
        # the MathJax v2 rendering and preview sit just before their source script
        prev = script.getprevious()
        while prev is not None and _is_rendered_copy(prev):
            before = prev.getprevious()
            page.remove_keep_tail(prev)
            prev = before
        source = script.text or ""
        if kind.startswith(("math/tex", "text/tex")):
            tex = source.strip()
        elif kind.startswith(("math/mml", "text/mml")):
            tex = _mathml_source_to_tex(source)
        else:  # asciimath and friends are not TeX; keep them out rather than mislabel them
            page.remove_keep_tail(script)
            continue
        if has_content(tex):
            page.replace_with_formula(script, tex, "mode=display" in kind.replace(" ", ""))
            page.report.add("script", 1)
        else:
            page.remove_keep_tail(script)


def _mathml_source_to_tex(source: str) -> str:
    if "&lt;" in source and "<" not in source:  # entity-escaped inside a raw-text script
        source = html_lib.unescape(source)
    try:
        frag = lxml.html.fragment_fromstring(source, create_parent="div")
    except (etree.ParserError, ValueError):
        return ""
    math = next((e for e in frag.iter() if local_name(e) == "math"), None)
    return math_tex(math) if math is not None else ""


def math_tex(math: etree._Element) -> str:
    """TeX for a <math> element: TeX annotation, else alttext, else converted MathML."""
    for el in math.iter():
        is_tex = (
            local_name(el) == "annotation" and (el.get("encoding") or "").strip().lower() in _TEX_ANNOTATIONS
        )
        if is_tex and (el.text or "").strip():
            return el.text.strip()
    code, language = (math.get("data-code") or "").strip(), (math.get("data-math-language") or "").lower()
    if code and language in ("tex", "latex"):
        return code
    if code and language == "mathml":
        return _mathml_source_to_tex(code)
    alt = (math.get("alttext") or "").strip()
    if alt:
        return _strip_delimiters(alt)[0]
    return mathml_to_tex(math)


def _math_counts(root: etree._Element, maths: list[etree._Element]) -> dict[etree._Element, int]:
    """How many of `maths` (the page's <math> elements) each element up to `root` holds, itself
    included, counted up to 2 (the question is only ever "exactly one?"); elements holding none are left
    out. Each element is counted at most twice: a walk up from a formula stops at the first element that
    already holds two, whose ancestors all do too, so deep nesting costs what the tree's size costs."""
    counts: dict[etree._Element, int] = {}
    for math in maths:
        node: etree._Element | None = math
        while node is not None and counts.get(node, 0) < 2:
            counts[node] = counts.get(node, 0) + 1
            node = None if node is root else node.getparent()
    return counts


def _formula_target(
    math: etree._Element, math_counts: dict[etree._Element, int]
) -> tuple[etree._Element, bool]:
    """The outermost wrapper that renders only this formula, and whether any layer says 'display'.

    `math_counts` are the page's counts before any formula was replaced: a wrapper of two formulas stays
    one after the first is rewritten, so the second never takes its sibling's text with it."""
    target = math
    display = math.get("display") == "block" or math.get("mode") == "display"
    parent = target.getparent()
    while parent is not None and math_counts.get(parent) == 1:  # first: many formulas share an ancestor
        classes = _classes(parent)
        is_wrapper = (
            bool(_WRAPPER_CLASS_RE.search(classes))
            or local_name(parent).startswith("mjx-")
            or _is_hidden(parent)
        )
        if not is_wrapper:
            break
        target = parent
        display = display or "display" in classes.lower() or parent.get("display") in ("true", "block")
        parent = target.getparent()
    return target, display


def _mathml(page: _Rewrite) -> None:
    maths = [math for math in page.survey.maths if not page.is_gone(math)]
    math_counts = _math_counts(page.root, maths) if maths else {}
    for math in maths:
        page.deadline.check()
        if math.getparent() is None or page.is_gone(math):
            continue
        tex = math_tex(math)
        target, display = _formula_target(math, math_counts)
        if has_content(tex):
            page.replace_with_formula(target, tex, display)
            page.report.add("mathml", 1)
        else:
            page.remove_keep_tail(target)
    # MathJax v2 renderings without their source script may still carry the MathML in an attribute
    for el in page.survey.data_mathml:
        page.deadline.check()
        if page.is_gone(el):
            continue
        tex = _mathml_source_to_tex(el.get("data-mathml") or "")
        if tex:
            page.replace_with_formula(el, tex, "display" in _classes(el).lower())
            page.report.add("mathml", 1)


def _attribute_sources(page: _Rewrite) -> None:
    """Elements that keep their TeX in an attribute (amp-mathml `data-formula`, editors' `data-tex`)."""
    for el in page.survey.tex_attributes:
        page.deadline.check()
        if local_name(el) == "img" or page.is_gone(el):
            continue
        source = next((el.get(a) for a in _TEX_ATTRIBUTES if el.get(a)), None)
        if source is None:
            continue
        tex, display = _strip_delimiters(source)
        if not has_content(tex):
            continue
        if display is None:
            display = el.get("display") in ("block", "true") or "display" in _classes(el).lower()
        page.replace_with_formula(el, tex, display and el.get("inline") is None)
        page.report.add("attribute", 1)


def _strip_delimiters(tex: str) -> tuple[str, bool | None]:
    """Remove one pair of outer TeX delimiters; the flag says display (True), inline (False) or unknown."""
    tex = tex.strip()
    for left, right, display in (
        ("$$", "$$", True),
        ("\\[", "\\]", True),
        ("\\(", "\\)", False),
        ("$", "$", False),
    ):
        if len(tex) > len(left) + len(right) and tex.startswith(left) and tex.endswith(right):
            return tex[len(left) : -len(right)].strip(), display
    return tex, None


def _tex_from_src(src: str) -> str:
    """TeX encoded in a formula-image URL."""
    parts = urlsplit(src)
    query = parts.query
    params = parse_qs(query, keep_blank_values=True)
    for key in ("latex", "chl", "tex", "formula", "eq"):
        if params.get(key):
            return params[key][0].strip()
    if query:
        # codecogs / mimetex: the whole query string is the (URL-encoded) TeX
        tex = unquote(query.replace("&space;", " ").replace("&plus;", "+"))
        tex = tex.replace("&space;", " ").replace("&plus;", "+")
        return _CODECOGS_PREFIX_RE.sub("", tex).strip()
    return ""


def _image_tex(img: etree._Element) -> tuple[str, bool] | None:
    src = img.get("src") or img.get("data-src") or ""
    classes = _classes(img)
    by_src = bool(_TEX_IMG_SRC_RE.search(src))
    by_class = bool(_TEX_IMG_CLASS_RE.search(classes))
    if not (by_src or by_class):
        return None
    alt = (img.get("alt") or img.get("title") or "").strip()
    tex = ""
    display: bool | None = None
    if alt and not _IMG_FILENAME_RE.match(alt):
        tex, display = _strip_delimiters(alt)
        if by_class and not by_src and not _TEXISH_RE.search(tex):
            return None  # a decorative image that merely has a "math" class
    elif by_src:
        tex, display = _strip_delimiters(_tex_from_src(src))
    if not tex:
        return None
    if display is None:
        display = "display" in classes.lower() or tex.startswith("\\displaystyle")
    return tex, display


def _images(page: _Rewrite) -> None:
    for img in list(page.root.iter("img")):
        page.deadline.check()
        found = _image_tex(img)
        if found is None:
            continue
        tex, display = found
        page.replace_with_formula(img, tex, display)
        page.report.add("image", 1)


def _source_containers(page: _Rewrite) -> None:
    """Elements the page marks as math whose only content is raw TeX (no delimiters)."""
    for el in page.survey.source_classes:
        page.deadline.check()
        if page.is_gone(el):
            continue
        if any(isinstance(c.tag, str) and local_name(c) != "br" for c in el):
            continue
        text = el.text_content().strip()
        if not text or text.startswith(("$", "\\(", "\\[")) or not _TEXISH_RE.search(text):
            continue
        display = local_name(el) in _BLOCK_TAGS or "display" in _classes(el).lower()
        for child in list(el):
            el.remove(child)
        el.text = wrap_tex(text, display)
        page.report.add("container", 1)


def _katex_render_calls(page: _Rewrite, scripts: list[etree._Element]) -> None:
    ids: dict[str, etree._Element] | None = None  # built on the first page script that renders with KaTeX
    for script in scripts:
        source = script.text or ""  # read once: lxml builds a new string on every access
        if script.getparent() is None or "katex.render" not in source:
            continue
        if ids is None:
            ids = {e.get("id"): e for e in page.root.iter() if isinstance(e.tag, str) and e.get("id")}
        for m in _KATEX_RENDER_RE.finditer(source):
            page.deadline.check()
            tex = _js_unquote(m.group(1)).strip()
            target = ids.get(m.group(2) or m.group(3) or "")
            if not tex:
                continue
            display = "displayMode:true" in source[m.end() : m.end() + 80].replace(" ", "")
            if target is not None and target.getparent() is not None:
                for child in list(target):
                    target.remove(child)
                target.text = wrap_tex(tex, display)
            else:
                span = etree.Element("span")
                span.text = wrap_tex(tex, display)
                script.addnext(span)
            page.report.add("katex_render", 1)


# The page goes in as UTF-8 bytes, not as a str: lxml hands a str to libxml2 as Latin-1, UTF-16 or UCS-4
# (by its widest character), which libxml2 then converts to UTF-8 itself (measured on the bench crawl's
# candidates: 2.9 ms a page against 3.5, the control characters taken out of the bytes included).
_PARSER = etree.HTMLParser(
    remove_comments=True, remove_pis=True, collect_ids=False, default_doctype=False, encoding="utf-8"
)
# Every element an `HtmlElement`, chosen in C: lxml.html's own lookup is a Python call per element proxy
# (hundreds of thousands per page across latexify and trafilatura), and only picks form-control classes
# (`InputElement` & co.) that no extractor here uses. trafilatura still gets the `HtmlElement` it expects.
_PARSER.set_element_class_lookup(
    etree.ElementDefaultClassLookup(
        element=lxml.html.HtmlElement,
        comment=lxml.html.HtmlComment,
        pi=lxml.html.HtmlProcessingInstruction,
        entity=lxml.html.HtmlEntity,
    )
)


def parse_html(html: str) -> lxml.html.HtmlElement | None:
    """lxml tree of a document, or None for input lxml cannot make a document of. A lone surrogate (no
    decoder of ours makes one) is dropped; the parse of a str used to end the document there."""
    try:
        data = _XML_DECL_RE.sub("", html, count=1).encode("utf-8", "ignore").translate(None, _CONTROL_BYTES)
        if b"\xef\xbf" in data:
            for noncharacter in _NONCHARACTERS:
                data = data.replace(noncharacter, b"")
        return lxml.html.document_fromstring(data, parser=_PARSER)
    except (etree.ParserError, ValueError, TypeError):
        return None


def has_math_markup(html: str) -> bool:
    """Whether the page could contain any encoding latexify rewrites (cheap regex gate)."""
    return bool(_ANY_MATH_RE.search(html))


def latexify_tree(root: etree._Element, deadline: Deadline = NO_DEADLINE) -> LatexifyReport:
    """Rewrite all math in the tree in place as $..$ / $$..$$ text; returns what was done.

    Linear in the page's size; raises `PageTimeout` once `deadline` passes (the tree is then half done)."""
    page = _Rewrite(root, deadline)
    scripts = list(root.iter("script"))
    delims = page_delimiters(
        [s.text or "" for s in scripts if s.text and local_name(s) == "script"], deadline
    )
    scanner = DelimiterScanner(delims)
    page.survey = _survey(root, scanner, deadline)
    _text_nodes_rewrite(page, scanner)
    for step in (_math_scripts, _attribute_sources, _mathml, _images, _source_containers):
        step(page)
        page.merge_placeholders()  # each pass sees the text the previous one left, as plain text
    _katex_render_calls(page, scripts)
    return page.report


def latexify_html(html: str) -> str:
    """The page with every formula as LaTeX text in place; the input itself when there is nothing to do."""
    if not html or not has_math_markup(html):
        return html
    root = parse_html(html)
    if root is None:
        return html
    try:
        if latexify_tree(root).total == 0:
            return html
        return lxml.html.tostring(root, encoding="unicode")
    except (ValueError, etree.LxmlError) as exc:  # a page we cannot rewrite is passed on as it came
        log.warning("latexify skipped a page: %s", exc)
        return html
