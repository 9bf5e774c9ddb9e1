"""Render TeX formulas the way real math sites put them into HTML, for the sample crawl.

Math extraction has to cope with every encoding below, so the sample crawl uses all of them: MathJax source
delimiters, `<script type="math/tex">`, MathML (with and without a TeX annotation), KaTeX's rendered HTML
and formula images whose `alt` holds the TeX. MathML and KaTeX need a layout tree, so a small parser turns
the TeX subset the sample problems use (fractions, roots, scripts, a few symbols) into one.
"""

from __future__ import annotations

import html
import re
import urllib.parse
from dataclasses import dataclass, field

ENCODINGS = (
    "mathjax_paren",  # \( .. \) and \[ .. \] with a MathJax 3 config
    "mathjax_dollar",  # $ .. $ and $$ .. $$ with a MathJax 2 tex2jax config
    "script_math_tex",  # <script type="math/tex"> and "math/tex; mode=display"
    "mathml_annotated",  # MathML with <annotation encoding="application/x-tex">
    "mathml_plain",  # presentation MathML only
    "katex",  # KaTeX HTML output (MathML + annotation hidden, visual spans shown)
    "img_codecogs",  # <img src="https://latex.codecogs.com/..." alt="TeX">
    "img_latex_php",  # WordPress <img src=".../latex.php?latex=..." alt="TeX">
)

# TeX command -> (MathML element, text).
_SYMBOLS = {
    "pm": ("mo", "±"),
    "cdot": ("mo", "⋅"),
    "times": ("mo", "×"),
    "neq": ("mo", "≠"),
    "le": ("mo", "≤"),
    "ge": ("mo", "≥"),
    "approx": ("mo", "≈"),
    "to": ("mo", "→"),
    "int": ("mo", "∫"),
    "sum": ("mo", "∑"),
    "infty": ("mi", "∞"),
    "pi": ("mi", "π"),
    "alpha": ("mi", "α"),
    "Delta": ("mi", "Δ"),
    "Omega": ("mi", "Ω"),
    "{": ("mo", "{"),
    "}": ("mo", "}"),
    "ldots": ("mo", "…"),
}
_SPACES = {",": "0.1667em", ";": "0.2778em", "quad": "1em", "qquad": "2em", " ": "0.25em"}
_LARGE_OPS = {"∫", "∑"}
_TOKEN = re.compile(r"\\[A-Za-z]+|\\.|\d+(?:\.\d+)?|[A-Za-z]|\S")


@dataclass
class Node:
    """A layout node: kind is mi/mn/mo/mspace/mrow/mfrac/msqrt/msup/msub/msubsup."""

    kind: str
    text: str = ""
    children: list[Node] = field(default_factory=list)
    normal: bool = False  # upright identifier (\mathrm)


class TexError(ValueError):
    """The TeX uses something outside the subset this renderer knows."""


def parse_tex(tex: str) -> Node:
    """Parse the TeX subset of the sample problems into a layout tree."""
    tokens = _TOKEN.findall(tex)
    node, pos = _parse_row(tokens, 0, closing=None)
    if pos != len(tokens):
        raise TexError(f"unbalanced braces in {tex!r}")
    return node


def _parse_row(tokens: list[str], pos: int, closing: str | None) -> tuple[Node, int]:
    items: list[Node] = []
    while pos < len(tokens):
        tok = tokens[pos]
        if tok == closing:
            return Node("mrow", children=items), pos + 1
        if tok in ("^", "_"):
            if not items:
                raise TexError("script without a base")
            script, pos = _parse_atom(tokens, pos + 1)
            items.append(_attach(items.pop(), tok, script))
            continue
        atom, pos = _parse_atom(tokens, pos)
        items.append(atom)
    if closing is not None:
        raise TexError(f"missing {closing!r}")
    return Node("mrow", children=items), pos


def _attach(base: Node, op: str, script: Node) -> Node:
    if op == "^" and base.kind == "msub":
        return Node("msubsup", children=[*base.children, script])
    if op == "_" and base.kind == "msup":
        return Node("msubsup", children=[base.children[0], script, base.children[1]])
    return Node("msup" if op == "^" else "msub", children=[base, script])


def _parse_atom(tokens: list[str], pos: int) -> tuple[Node, int]:
    if pos >= len(tokens):
        raise TexError("formula ends where an argument was expected")
    tok = tokens[pos]
    pos += 1
    if tok == "{":
        return _parse_row(tokens, pos, closing="}")
    if tok[0].isdigit():
        return Node("mn", tok), pos
    if tok.isalpha():
        return Node("mi", tok), pos
    if tok == "'":
        return Node("mo", "′"), pos
    if not tok.startswith("\\"):
        return Node("mo", "−" if tok == "-" else tok), pos
    name = tok[1:]
    if name in ("frac", "dfrac"):
        num, pos = _parse_atom(tokens, pos)
        den, pos = _parse_atom(tokens, pos)
        return Node("mfrac", children=[num, den]), pos
    if name == "sqrt":
        body, pos = _parse_atom(tokens, pos)
        return Node("msqrt", children=[body]), pos
    if name == "mathrm":
        body, pos = _parse_atom(tokens, pos)
        text = "".join(child.text for child in body.children) if body.kind == "mrow" else body.text
        return Node("mi", text, normal=True), pos
    if name in _SPACES:
        return Node("mspace", _SPACES[name]), pos
    if name in _SYMBOLS:
        kind, text = _SYMBOLS[name]
        return Node(kind, text), pos
    raise TexError(f"unsupported TeX command {tok!r}")


def to_mathml(node: Node) -> str:
    """Presentation MathML for a layout tree (without the outer <math>)."""
    if node.kind == "mspace":
        return f'<mspace width="{node.text}"></mspace>'
    if node.kind in ("mi", "mn", "mo"):
        attrs = ' mathvariant="normal"' if node.normal else ""
        if node.kind == "mo" and node.text in _LARGE_OPS:
            attrs = ' largeop="true" movablelimits="false"'
        return f"<{node.kind}{attrs}>{html.escape(node.text, quote=False)}</{node.kind}>"
    inner = "".join(to_mathml(child) for child in node.children)
    return f"<{node.kind}>{inner}</{node.kind}>"


def _katex_class(node: Node) -> str:
    if node.kind == "mo":
        if node.text in _LARGE_OPS:
            return "mop op-symbol large-op"
        if node.text in "=≠≤≥≈→<>":
            return "mrel"
        if node.text in "+−±⋅×":
            return "mbin"
        if node.text in "([{|":
            return "mopen"
        if node.text in ")]}":
            return "mclose"
        return "mpunct"
    return "mord mathnormal" if node.kind == "mi" and not node.normal and len(node.text) == 1 else "mord"


def to_katex_html(node: Node) -> str:
    """The visual span soup KaTeX emits (simplified): denominators come before numerators, as in KaTeX."""
    if node.kind == "mspace":
        return f'<span class="mspace" style="margin-right:{node.text};"></span>'
    if node.kind in ("mi", "mn", "mo"):
        return f'<span class="{_katex_class(node)}">{html.escape(node.text, quote=False)}</span>'
    parts = [to_katex_html(child) for child in node.children]
    if node.kind == "mrow":
        return "".join(parts)
    if node.kind == "mfrac":
        num, den = parts
        return (
            '<span class="mord"><span class="mopen nulldelimiter"></span><span class="mfrac"><span class="vlist-t vlist-t2">'
            '<span class="vlist-r"><span class="vlist" style="height:1.3214em;">'
            f'<span style="top:-2.314em;"><span class="pstrut" style="height:3em;"></span><span class="mord">{den}</span></span>'
            '<span style="top:-3.23em;"><span class="pstrut" style="height:3em;"></span>'
            '<span class="frac-line" style="border-bottom-width:0.04em;"></span></span>'
            f'<span style="top:-3.677em;"><span class="pstrut" style="height:3em;"></span><span class="mord">{num}</span></span>'
            '</span><span class="vlist-s">\u200b</span></span></span></span>'
            '<span class="mclose nulldelimiter"></span></span>'
        )
    if node.kind == "msqrt":
        return (
            f'<span class="mord sqrt"><span class="vlist-t"><span class="vlist-r"><span class="vlist">'
            f'<span class="svg-align"><span class="pstrut" style="height:3em;"></span><span class="mord">{parts[0]}</span></span>'
            '<span class="hide-tail"><svg width="400em" height="1.08em" viewBox="0 0 400000 1080" '
            'preserveAspectRatio="xMinYMin slice"><path d="M95,702 c-2.7,0,-7.17,-2.7,-13.5,-8z"></path></svg></span>'
            "</span></span></span></span>"
        )
    scripts = "".join(
        f'<span style="top:-3.063em;margin-right:0.05em;"><span class="pstrut" style="height:2.7em;"></span>'
        f'<span class="sizing reset-size6 size3 mtight">{part}</span></span>'
        for part in parts[1:]
    )
    return (
        f'<span class="mord">{parts[0]}<span class="msupsub"><span class="vlist-t"><span class="vlist-r">'
        f'<span class="vlist" style="height:0.8141em;">{scripts}</span></span></span></span></span>'
    )


def _math_element(tex: str, display: bool, annotated: bool) -> str:
    body = to_mathml(parse_tex(tex))
    attrs = ' display="block"' if display else ""
    if annotated:
        escaped = html.escape(tex, quote=False)
        body = f'<semantics><mrow>{body}</mrow><annotation encoding="application/x-tex">{escaped}</annotation></semantics>'
    return f'<math xmlns="http://www.w3.org/1998/Math/MathML"{attrs}>{body}</math>'


def render_formula(tex: str, encoding: str, display: bool) -> str:
    """HTML for one formula in one of `ENCODINGS`; display formulas are block-level."""
    text = html.escape(tex, quote=False)
    attr = html.escape(tex, quote=True)
    if encoding == "mathjax_paren":
        return f"\\[{text}\\]" if display else f"\\({text}\\)"
    if encoding == "mathjax_dollar":
        return f"$${text}$$" if display else f"${text}$"
    if encoding == "script_math_tex":
        kind = "math/tex; mode=display" if display else "math/tex"
        return f'<span class="MathJax_Preview"></span><script type="{kind}">{tex}</script>'
    if encoding in ("mathml_annotated", "mathml_plain"):
        return _math_element(tex, display, annotated=encoding == "mathml_annotated")
    if encoding == "katex":
        tree = parse_tex(tex)
        inner = (
            f'<span class="katex"><span class="katex-mathml">{_math_element(tex, display, annotated=True)}</span>'
            f'<span class="katex-html" aria-hidden="true"><span class="base">'
            f'<span class="strut" style="height:1em;vertical-align:-0.25em;"></span>{to_katex_html(tree)}</span></span></span>'
        )
        return f'<span class="katex-display">{inner}</span>' if display else inner
    if encoding == "img_codecogs":
        prefix = "\\dpi{110} " if display else ""
        src = "https://latex.codecogs.com/png.latex?" + urllib.parse.quote(prefix + tex)
        return f'<img src="{html.escape(src)}" alt="{attr}" title="{attr}" class="latex" />'
    if encoding == "img_latex_php":
        query = urllib.parse.urlencode(
            {"latex": tex, "bg": "ffffff", "fg": "000000", "s": "1" if display else "0"}
        )
        src = f"https://s0.wp.com/latex.php?{query}"
        return f'<img src="{html.escape(src)}" alt="{attr}" title="{attr}" class="latex" />'
    raise ValueError(f"unknown math encoding {encoding!r}")


def head_scripts(encoding: str) -> str:
    """The page-level loader/config a site using `encoding` puts into <head>."""
    if encoding == "mathjax_paren":
        return (
            "<script>window.MathJax = {tex: {inlineMath: [['\\\\(', '\\\\)']], displayMath: [['\\\\[', '\\\\]']]}};</script>\n"
            '<script id="MathJax-script" async src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"></script>'
        )
    if encoding == "mathjax_dollar":
        return (
            '<script type="text/x-mathjax-config">MathJax.Hub.Config({tex2jax: {inlineMath: [["$","$"], ["\\\\(","\\\\)"]], '
            'displayMath: [["$$","$$"]], processEscapes: true}});</script>\n'
            '<script src="https://cdnjs.cloudflare.com/ajax/libs/mathjax/2.7.9/MathJax.js?config=TeX-AMS_HTML"></script>'
        )
    if encoding == "script_math_tex":
        return '<script src="https://cdnjs.cloudflare.com/ajax/libs/mathjax/2.7.9/MathJax.js?config=TeX-AMS-MML_HTMLorMML"></script>'
    if encoding == "katex":
        return '<link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/katex@0.16.11/dist/katex.min.css">'
    return ""
