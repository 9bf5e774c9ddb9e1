"""Keep a page's code as code: fenced blocks with their exact lines, inline code in backticks.

Text extractors treat code as one more paragraph: trafilatura drops the blank lines of a `<pre>` and the
indentation after a `<br>`, its whole-page fallback joins every line into one, and nothing in any of their
outputs says where code starts and ends. This module rewrites the parsed tree before extraction (and before
the formulas are rewritten, so that `$` and `\\(` in code never become LaTeX):

- every code block (`<pre>`, `<xmp>`, `<listing>`, and the highlighter markups built around them: Pygments,
  Rouge/Jekyll, highlight.js, Prism, SyntaxHighlighter, GeSHi, MediaWiki, Hugo, Hexo, pandoc, Stack
  Exchange, GitHub; gutters of line numbers dropped) becomes one `<pre>` holding its text between two
  marker tokens, so extractors still weigh the code as text;
- an inline `<code>` keeps its element and becomes `` `code` `` (markers around it too when it holds `$`
  or `\\`, so its formula-like text is never counted as a formula).

After extraction `CodeMarks.restore` swaps each marked span, however the extractor rendered it, for the
exact code: "```lang\\n...\\n```" on lines of its own (a fence longer than any backtick run inside; the
language from the markup's class names, normalised), or the inline span. `CodeMarks.without_code` drops
the spans instead, for counting formulas outside code. An extractor that dropped a block drops it from the
text, the markers included.

Linear in the page; a `Deadline` is checked once per element. A page without `<pre>`/`<code>`-like tags
skips all of it (`has_code_markup`, a regex over the HTML).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import islice

from lxml import etree

from crawl.deadline import NO_DEADLINE, Deadline
from crawl.mathml_tex import local_name

log = logging.getLogger(__name__)

# Two searches, not one alternation: a case-insensitive pattern without a common literal prefix makes the regex
# engine try every position of the page (3 ms on a 230 KB page, against 0.2 ms for these).
_GATE_RE = re.compile(r"<(?:pre|code|xmp|listing|plaintext)\b", re.IGNORECASE)
_GITHUB_TABLE = "js-file-line-container"  # only this spelling is looked for in the tree (`_candidates`)

_BLOCK_TAGS = ("pre", "xmp", "listing", "plaintext")
_CANDIDATE_TAGS = (*_BLOCK_TAGS, "code")
# Never code text: widgets and chrome inside code boxes (copy buttons, loader scripts, rendered diagrams).
_DROP_TAGS = frozenset(
    {"script", "style", "button", "noscript", "svg", "textarea", "template", "input", "select", "head"}
)
# Elements that start and end a line of code (SyntaxHighlighter and GeSHi lines, highlight.js table rows).
_LINE_TAGS = frozenset(
    {
        "div",
        "p",
        "li",
        "tr",
        "table",
        "tbody",
        "thead",
        "tfoot",
        "ul",
        "ol",
        "dl",
        "dt",
        "dd",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "blockquote",
        "section",
        "article",
        "figure",
        "pre",
        "xmp",
        "listing",
        "plaintext",
    }
)
# Line elements that stand for one line of code each, empty or not (highlight.js rows, GeSHi list items).
_ROW_TAGS = frozenset({"tr", "li"})
# Line-number gutters and toolbars of the common highlighters (Pygments, Rouge, SyntaxHighlighter, GeSHi,
# highlight.js line numbers, Prism, Hugo/Chroma, Crayon, GitHub, CodeMirror).
_GUTTER_CLASS_RE = re.compile(
    r"(?:^|\s)(?:gutter|gl|linenos|lineno|linenodiv|line-numbers-rows|line_numbers|line-number|lineNumbers?|"
    r"hljs-ln-numbers|hljs-ln-n|rouge-gutter|blob-num|crayon-nums|lnt|ln|toolbar|CodeMirror-gutters|"
    r"CodeMirror-gutter-wrapper|CodeMirror-linenumber)(?:\s|$)"
)
# Tables that lay out one code block (a gutter column and a code column, or one row per line).
_CODE_TABLE_CLASS_RE = re.compile(
    r"(?:^|\s)(?:highlighttable|rouge-table|hljs-ln|lntable|crayon-table|js-file-line-container)(?:\s|$)"
)
_CODE_CELL_CLASS_RE = re.compile(
    r"(?:^|\s)(?:code|rouge-code|hljs-ln-code|blob-code[\w-]*|crayon-code|lntd)(?:\s|$)"
)
_SYNTAXHIGHLIGHTER_RE = re.compile(r"(?:^|\s)syntaxhighlighter(?:\s|$)")
_ANCESTOR_LEVELS = 6  # how far up a code element may sit inside its highlighter's table
_LANGUAGE_LEVELS = 3  # how far up the wrappers that name the language may be
_MAX_FIGURE_CHILDREN = 3  # a code figure holds the code and a caption or two
_MAX_INNER_LANGUAGE = 4  # inner <pre>/<code> elements read for the language (a gutter's come first)
_MAX_CODE_TABLE_CELLS = 3  # cells per row of a code table: gutter, code, and one spare

_PREFIXED_LANGUAGE_RE = re.compile(
    r"(?:^|\s)(?:language|lang|highlight-source|highlight|mw-highlight-lang|source)-([\w#+.-]+)"
    r"|(?:^|\s)lang:([\w#+.-]+)"
    r"|\bbrush\s*:\s*([\w#+.-]+)"
)
_HIGHLIGHTER_CLASS_RE = re.compile(
    r"highlight|hljs|sourceCode|syntaxhighlighter|prettyprint|brush|wp_syntax|chroma|shiki|prism|rouge",
    re.IGNORECASE,
)
_LANGUAGE_ATTRIBUTES = ("data-lang", "data-language", "data-enlighter-language", "data-code-language")

# Aliases to one name per language; the names that say "no language" map to "".
_LANGUAGE_ALIASES = {
    "py": "python",
    "py3": "python",
    "python3": "python",
    "python2": "python",
    "ipython": "python",
    "ipython3": "python",
    "pycon": "python",
    "js": "javascript",
    "node": "javascript",
    "nodejs": "javascript",
    "ecmascript": "javascript",
    "ts": "typescript",
    "sh": "bash",
    "shell": "bash",
    "zsh": "bash",
    "ksh": "bash",
    "shell-session": "console",
    "shellsession": "console",
    "terminal": "console",
    "c++": "cpp",
    "cxx": "cpp",
    "cc": "cpp",
    "hpp": "cpp",
    "h": "c",
    "cs": "csharp",
    "c#": "csharp",
    "rb": "ruby",
    "yml": "yaml",
    "md": "markdown",
    "kt": "kotlin",
    "rs": "rust",
    "golang": "go",
    "ps": "powershell",
    "ps1": "powershell",
    "posh": "powershell",
    "bat": "batch",
    "cmd": "batch",
    "tex": "latex",
    "objc": "objectivec",
    "objective-c": "objectivec",
    "obj-c": "objectivec",
    "vb": "vbnet",
    "html5": "html",
    "xhtml": "html",
    "postgres": "sql",
    "postgresql": "sql",
    "pgsql": "sql",
    "psql": "sql",
    "mysql": "sql",
    "make": "makefile",
    "docker": "dockerfile",
    "hs": "haskell",
    "pl": "perl",
    "f90": "fortran",
    "el": "elisp",
    "emacs-lisp": "elisp",
    "jl": "julia",
    "m": "matlab",
    "text": "",
    "txt": "",
    "plain": "",
    "plaintext": "",
    "none": "",
    "nohighlight": "",
    "no-highlight": "",
    "default": "",
    "auto": "",
    "code": "",
    "nocode": "",
    "output": "",
    "source": "",
    "undefined": "",
    "null": "",
    "unknown": "",
    "nohl": "",
}
# Bare class names that name a language (GeSHi's `pre.python`, pandoc's `sourceCode python`, Hexo's
# `figure.highlight python`, SyntaxHighlighter's `syntaxhighlighter python`).
_KNOWN_LANGUAGES = frozenset(
    {
        "python",
        "javascript",
        "typescript",
        "java",
        "c",
        "cpp",
        "csharp",
        "ruby",
        "php",
        "perl",
        "go",
        "rust",
        "bash",
        "console",
        "powershell",
        "batch",
        "sql",
        "html",
        "xml",
        "css",
        "scss",
        "less",
        "json",
        "yaml",
        "toml",
        "ini",
        "kotlin",
        "swift",
        "scala",
        "haskell",
        "lua",
        "r",
        "matlab",
        "octave",
        "julia",
        "latex",
        "makefile",
        "dockerfile",
        "diff",
        "objectivec",
        "vbnet",
        "fortran",
        "lisp",
        "scheme",
        "clojure",
        "elixir",
        "erlang",
        "ocaml",
        "fsharp",
        "dart",
        "groovy",
        "nginx",
        "apache",
        "markdown",
        "jsx",
        "tsx",
        "coffeescript",
        "asm",
        "nasm",
        "verilog",
        "vhdl",
        "prolog",
        "elisp",
        "graphql",
        "protobuf",
        "cmake",
        "sas",
        "stata",
        "mathematica",
        "maxima",
        "sage",
        "gap",
        "coq",
        "lean",
        "isabelle",
        "agda",
        "idris",
    }
    | set(_LANGUAGE_ALIASES)
)
_LANGUAGE_CHARS_RE = re.compile(r"[^a-z0-9_+#.-]")
_MAX_LANGUAGE = 30

_WS_RE = re.compile(r"[ \t\r\n\f\v]+")
_BACKTICKS_RE = re.compile(r"`+")
_MARKER_BASE = "mfcodemark"


def has_code_markup(html: str) -> bool:
    """Whether the page may hold code the rewrite handles (cheap regex gate on the HTML)."""
    return bool(_GATE_RE.search(html)) or _GITHUB_TABLE in html


def normalise_language(name: str) -> str:
    """One lower-case name per language ('py' -> 'python', 'sh' -> 'bash'); '' for 'text', 'none' & co."""
    name = _LANGUAGE_CHARS_RE.sub("", name.strip().strip(";,").lower())[:_MAX_LANGUAGE]
    return _LANGUAGE_ALIASES.get(name, name)


def longest_backtick_run(text: str) -> int:
    return max((len(m.group(0)) for m in _BACKTICKS_RE.finditer(text)), default=0)


def fence_block(code: str, language: str = "") -> str:
    """A Markdown fenced block whose fence is longer than any backtick run in the code."""
    fence = "`" * max(3, longest_backtick_run(code) + 1)
    return f"{fence}{language}\n{code}\n{fence}"


def inline_code(code: str) -> str:
    """A Markdown code span: more backticks than any run inside, padded where the code touches one."""
    ticks = "`" * (longest_backtick_run(code) + 1)
    pad = " " if code.startswith("`") or code.endswith("`") else ""
    return f"{ticks}{pad}{code}{pad}{ticks}"


@dataclass(frozen=True)
class CodeSpan:
    """One marked piece of code: a block (fenced) or an inline span."""

    code: str
    language: str
    block: bool

    def render(self) -> str:
        return fence_block(self.code, self.language) if self.block else inline_code(self.code)


@dataclass
class CodeMarks:
    """The code spans marked in a tree, and the marker that brackets them in extracted text."""

    marker: str = _MARKER_BASE
    spans: list[CodeSpan] = field(default_factory=list)
    inline_plain: int = 0  # inline code rewritten without markers (nothing formula-like in it)

    @property
    def blocks(self) -> int:
        return sum(1 for s in self.spans if s.block)

    def open_token(self, index: int) -> str:
        return f"{self.marker}{index}o"

    def close_token(self, index: int) -> str:
        return f"{self.marker}{index}c"

    def restore(self, text: str) -> str:
        """`text` with every marked span, as the extractor rendered it, replaced by its exact code."""
        return self._rewrite(text, lambda span: span.render())

    def without_code(self, text: str) -> str:
        """`text` with the marked code left out (for counting formulas outside code)."""
        return self._rewrite(text, lambda span: "\n" if span.block else " ")

    def _rewrite(self, text: str, render: Callable[[CodeSpan], str]) -> str:
        if not self.spans or self.marker not in text:
            return text
        out: list[str] = []
        pos = 0
        pending: int | None = None
        after_block = False

        def flush(piece: str) -> None:
            nonlocal after_block
            if after_block and piece:
                piece = piece.lstrip(" \t")
                if piece and not piece.startswith("\n"):
                    piece = "\n" + piece
                after_block = not piece
            if piece:
                out.append(piece)

        for m in re.finditer(re.escape(self.marker) + r"(\d+)([oc])", text):
            index = int(m.group(1))
            if m.group(2) == "o":
                flush(text[pos : m.start()])  # an open without its close keeps the extractor's text
                pending, pos = index, m.end()
                continue
            if pending != index or index >= len(self.spans):
                flush(text[pos : m.start()])
                pos, pending = m.end(), None
                continue
            span = self.spans[index]
            if span.block:
                if out and not out[-1].endswith("\n"):
                    out[-1] = out[-1].rstrip(" \t") + "\n"
                out.append(render(span))
                after_block = True
            else:
                out.append(render(span))
            pos, pending = m.end(), None
        flush(text[pos:])
        return "".join(out)


NO_CODE = CodeMarks()


def _classes(el: etree._Element) -> str:
    return el.get("class") or ""


def _is_gutter(el: etree._Element) -> bool:
    return bool(_GUTTER_CLASS_RE.search(_classes(el)))


def code_text(el: etree._Element, deadline: Deadline = NO_DEADLINE, seen: set | None = None) -> str:
    """The text of a code element as it displays: `<br>` and line elements as line breaks, gutters, buttons
    and scripts left out, spans flattened, no-break spaces as spaces, trailing spaces and the blank lines
    around the code trimmed, indentation and tabs kept. Elements visited are added to `seen`."""
    pieces: list[str] = []
    at_line_start = True
    break_pending = False
    edge = True  # just past a line element's start or end: layout whitespace there is not code

    def emit(text: str | None) -> None:
        nonlocal at_line_start, break_pending, edge
        if not text:
            return
        if edge and "\n" in text and not text.strip(" \t\r\n"):
            return
        if break_pending and not at_line_start:
            pieces.append("\n")
        break_pending = False
        pieces.append(text)
        at_line_start = text.endswith("\n")
        edge = False

    def line_break() -> None:
        nonlocal break_pending, edge
        break_pending, edge = True, True

    def empty_line() -> None:
        nonlocal at_line_start, break_pending, edge
        if break_pending and not at_line_start:
            pieces.append("\n")
        pieces.append("\n")
        at_line_start, break_pending, edge = True, False, True

    stack: list[tuple[etree._Element, int]] = [(el, -1)]
    while stack:
        node, started = stack.pop()
        if started >= 0:  # closing
            name = local_name(node)
            if name in _LINE_TAGS:
                if name in _ROW_TAGS and len(pieces) == started:
                    empty_line()
                line_break()
            if node is not el:
                emit(node.tail)
            continue
        deadline.check()
        if seen is not None:
            seen.add(node)
        name = local_name(node) if isinstance(node.tag, str) else ""
        if not name or name in _DROP_TAGS or (node is not el and _is_gutter(node)):
            if node is not el:
                emit(node.tail)
            continue
        if name == "br":
            emit("\n")
            emit(node.tail)
            continue
        if name in _LINE_TAGS:
            line_break()
        emit(node.text)
        stack.append((node, len(pieces)))
        stack.extend((child, -1) for child in reversed(node))
    return _tidy("".join(pieces))


def _tidy(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\xa0", " ")
    lines = [line.rstrip() for line in text.split("\n")]
    start, end = 0, len(lines)
    while start < end and not lines[start]:
        start += 1
    while end > start and not lines[end - 1]:
        end -= 1
    return "\n".join(lines[start:end])


def _class_language(classes: str, bare: bool) -> str:
    for m in _PREFIXED_LANGUAGE_RE.finditer(classes):
        language = normalise_language(m.group(1) or m.group(2) or m.group(3) or "")
        if language:
            return language
    if bare:
        for name in classes.split():
            if name.lower() in _KNOWN_LANGUAGES:
                language = normalise_language(name)
                if language:
                    return language
    return ""


def _element_language(el: etree._Element, own: bool) -> str:
    for attribute in _LANGUAGE_ATTRIBUTES:
        value = el.get(attribute)
        if value:
            language = normalise_language(value)
            if language:
                return language
    classes = _classes(el)
    return _class_language(classes, own or bool(_HIGHLIGHTER_CLASS_RE.search(classes))) if classes else ""


def code_language(block: etree._Element) -> str:
    """The language the markup names for a code block ('' when none): the block's own attributes and
    classes, then its first inner `<pre>`/`<code>`, then the wrappers around it."""
    candidates: list[tuple[etree._Element, bool]] = [(block, True)]
    for inner in block.iter("pre", "code"):
        if inner is not block:
            candidates.append((inner, True))
            if len(candidates) > _MAX_INNER_LANGUAGE:
                break
    parent = block.getparent()
    for _ in range(_LANGUAGE_LEVELS):
        if parent is None:
            break
        candidates.append((parent, False))
        parent = parent.getparent()
    for el, own in candidates:
        language = _element_language(el, own)
        if language:
            return language
    return ""


def _is_code_table(table: etree._Element, via_code_cell: bool, deadline: Deadline) -> bool:
    """A table that lays out one code block: marked by its class, or entered through a code cell and
    shaped like a highlighter's (at most a gutter, the code and a spare cell per row; the other cells
    gutters or line numbers)."""
    if _CODE_TABLE_CLASS_RE.search(_classes(table)):
        return True
    if not via_code_cell:
        return False
    for row in table.iter("tr"):
        deadline.check()
        cells = [c for c in row if isinstance(c.tag, str) and local_name(c) in ("td", "th")]
        if len(cells) > _MAX_CODE_TABLE_CELLS:
            return False
        for cell in cells:
            if _CODE_CELL_CLASS_RE.search(_classes(cell)) or _is_gutter(cell):
                continue
            numbers = _WS_RE.sub("", cell.text_content().replace("\xa0", ""))
            if numbers and not numbers.isdigit():
                return False
    return True


def _block_root(el: etree._Element, tables: dict, deadline: Deadline) -> etree._Element:
    """The element a code element's block replaces: its highlighter's table or SyntaxHighlighter box, if
    it sits in one; else itself."""
    via_code_cell = False
    node = el.getparent()
    for _ in range(_ANCESTOR_LEVELS):
        if node is None or not isinstance(node.tag, str):
            break
        name = local_name(node)
        if name == "td" and _CODE_CELL_CLASS_RE.search(_classes(node)):
            via_code_cell = True
        elif name == "table":
            key = (node, via_code_cell)
            if key not in tables:
                tables[key] = _is_code_table(node, via_code_cell, deadline)
            if tables[key]:
                return node
        elif name == "div" and _SYNTAXHIGHLIGHTER_RE.search(_classes(node)):
            return node
        elif name in ("body", "html"):
            break
        node = node.getparent()
    return el


def _figure_around(block: etree._Element) -> etree._Element | None:
    """The `<figure>` that holds nothing but this code block (and a caption), if one does: trafilatura
    drops figures with their content, so the block replaces the whole figure."""
    node = block
    for _ in range(_LANGUAGE_LEVELS):
        parent = node.getparent()
        if parent is None or local_name(parent) not in ("figure", "div", "pre", "code"):
            return None
        if (parent.text or "").strip() or (node.tail or "").strip():
            return None
        children = _first_children(parent, _MAX_FIGURE_CHILDREN + 1)  # never a read of all the siblings
        others = [c for c in children if c is not node and isinstance(c.tag, str)]
        if local_name(parent) == "figure":
            return (
                parent
                if len(children) <= _MAX_FIGURE_CHILDREN
                and all(local_name(c) == "figcaption" for c in others)
                else None
            )
        if others:
            return None
        node = parent
    return None


def _first_children(el: etree._Element, n: int) -> list[etree._Element]:
    """At most `n` children of `el` (`len(el)` counts them all: a cost per block on a page of many)."""
    return list(islice(el.iterchildren(), n))


def _is_block_code(code: etree._Element, text: str) -> bool:
    """A `<code>` outside `<pre>` that displays as a block: several lines, and either explicit line breaks
    or block children, or the whole content of its parent."""
    if "\n" not in text:
        return False
    if any(isinstance(c.tag, str) and local_name(c) in ("br", *_LINE_TAGS) for c in code.iter()):
        return True
    parent = code.getparent()
    return (
        parent is not None
        and len(_first_children(parent, 2)) == 1
        and not (parent.text or "").strip()
        and not (code.tail or "").strip()
    )


def _choose_marker(page: str) -> str:
    marker = _MARKER_BASE
    while marker in page:
        marker += "x"
    return marker


def _candidates(root: etree._Element, page: str) -> Iterator[etree._Element]:
    yield from root.iter(*_CANDIDATE_TAGS)
    if _GITHUB_TABLE in page:  # GitHub file views: a table of lines, no <pre>
        for table in root.iter("table"):
            if _CODE_TABLE_CLASS_RE.search(_classes(table)):
                yield table


def mark_code(root: etree._Element, deadline: Deadline = NO_DEADLINE, page: str = "") -> CodeMarks:
    """Rewrite every code block and inline code of the tree in place (see the module docstring); returns
    the marks that `CodeMarks.restore` needs. `page` is the HTML, read to pick a marker it does not hold.
    Raises only `PageTimeout`; a block lxml refuses is left as it was."""
    marks = CodeMarks(_choose_marker(page))
    candidates = list(_candidates(root, page))  # held, so lxml keeps each element's proxy (`seen` works)
    seen: set[etree._Element] = set()
    tables: dict = {}
    for el in candidates:
        deadline.check()
        if el in seen:
            continue
        try:
            _mark_one(el, marks, seen, tables, deadline)
        except (ValueError, etree.LxmlError) as exc:
            log.debug("code block left as it was: %s", exc)
    return marks


def _mark_one(el: etree._Element, marks: CodeMarks, seen: set, tables: dict, deadline: Deadline) -> None:
    block_root = _block_root(el, tables, deadline)
    if block_root in seen:
        return
    text = code_text(block_root, deadline, seen)
    parent = block_root.getparent()
    if not text.strip() or parent is None:
        return
    is_code = local_name(el) == "code" and block_root is el
    if is_code and not _is_block_code(el, text):
        code = _WS_RE.sub(" ", text).strip()
        for child in list(el):
            el.remove(child)
        if "$" in code or "\\" in code:
            index = len(marks.spans)
            marks.spans.append(CodeSpan(code, "", block=False))
            el.text = f"{marks.open_token(index)}{inline_code(code)}{marks.close_token(index)}"
        else:
            el.text = inline_code(code)
            marks.inline_plain += 1
        return
    index = len(marks.spans)
    language = code_language(block_root)
    figure = _figure_around(block_root)
    if figure is not None and figure.getparent() is not None:
        caption = " ".join(
            _WS_RE.sub(" ", c.text_content()).strip() for c in figure if local_name(c) == "figcaption"
        ).strip()
        block_root, parent = figure, figure.getparent()
        if caption:
            para = etree.Element("p")
            para.text = caption
            figure.addprevious(para)
    new = etree.Element("pre")
    new.text = f"{marks.open_token(index)}\n{text}\n{marks.close_token(index)}"
    new.tail = block_root.tail
    marks.spans.append(CodeSpan(text, language, block=True))
    parent.replace(block_root, new)
