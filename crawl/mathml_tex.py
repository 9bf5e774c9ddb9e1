"""MathML → LaTeX, for formulas that carry no TeX source (no x-tex annotation, no alttext).

Presentation MathML is what MathJax v3 assistive markup, MathML-first sites (cnx.org, AMP pages, raw
`<math>` in articles) and some converters leave behind. The conversion aims at TeX that a reader (or a
model) recognises, not at a pixel-exact round trip: token characters map to their usual commands
(`α` → `\\alpha`, `≤` → `\\le`), layout elements to their TeX constructs (`mfrac` → `\\frac`, `msup` →
`^{}`, `munderover` on a large operator → `\\sum_{}^{}`, `mtable` → `array`), unknown elements pass their
children through so nothing is lost silently.

Works on lxml trees from the HTML parser, where MathML arrives without namespace (tags may carry a
`m:`-style prefix, which is ignored).

Cost is bounded: the conversion recurses one level per MathML level, so below `MAX_DEPTH` levels a subtree
is written as its plain text content instead (a hostile page nests thousands of `<mrow>`; real formulas stay
far shallower), and every level's work is linear in its output.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from lxml import etree

_GREEK = {
    "α": r"\alpha", "β": r"\beta", "γ": r"\gamma", "δ": r"\delta", "ϵ": r"\epsilon", "ε": r"\varepsilon",
    "ζ": r"\zeta", "η": r"\eta", "θ": r"\theta", "ϑ": r"\vartheta", "ι": r"\iota", "κ": r"\kappa",
    "λ": r"\lambda", "μ": r"\mu", "ν": r"\nu", "ξ": r"\xi", "ο": "o", "π": r"\pi", "ϖ": r"\varpi",
    "ρ": r"\rho", "ϱ": r"\varrho", "σ": r"\sigma", "ς": r"\varsigma", "τ": r"\tau", "υ": r"\upsilon",
    "ϕ": r"\phi", "φ": r"\varphi", "χ": r"\chi", "ψ": r"\psi", "ω": r"\omega",
    "Γ": r"\Gamma", "Δ": r"\Delta", "Θ": r"\Theta", "Λ": r"\Lambda", "Ξ": r"\Xi", "Π": r"\Pi",
    "Σ": r"\Sigma", "Υ": r"\Upsilon", "Φ": r"\Phi", "Ψ": r"\Psi", "Ω": r"\Omega",
    # capitals that look Latin are written as Latin letters in TeX
    "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M", "Ν": "N", "Ο": "O",
    "Ρ": "P", "Τ": "T", "Χ": "X",
}  # fmt: skip

_SYMBOLS = {
    "−": "-", "∓": r"\mp", "±": r"\pm", "×": r"\times", "÷": r"\div", "⋅": r"\cdot", "·": r"\cdot",
    "∗": "*", "∘": r"\circ", "∙": r"\bullet", "≤": r"\le", "⩽": r"\le", "≥": r"\ge", "⩾": r"\ge",
    "≠": r"\ne", "≈": r"\approx", "≡": r"\equiv", "∼": r"\sim", "≃": r"\simeq", "≅": r"\cong",
    "∝": r"\propto", "≪": r"\ll", "≫": r"\gg", "≺": r"\prec", "≻": r"\succ", "∈": r"\in", "∉": r"\notin",
    "∋": r"\ni", "⊂": r"\subset", "⊆": r"\subseteq", "⊃": r"\supset", "⊇": r"\supseteq", "∪": r"\cup",
    "∩": r"\cap", "∖": r"\setminus", "∅": r"\emptyset", "∀": r"\forall", "∃": r"\exists", "¬": r"\neg",
    "∧": r"\wedge", "∨": r"\vee", "⊕": r"\oplus", "⊗": r"\otimes", "→": r"\to", "←": r"\leftarrow",
    "↔": r"\leftrightarrow", "⇒": r"\Rightarrow", "⇐": r"\Leftarrow", "⇔": r"\Leftrightarrow",
    "⟹": r"\implies", "⟺": r"\iff", "↦": r"\mapsto", "↑": r"\uparrow", "↓": r"\downarrow",
    "∞": r"\infty", "∂": r"\partial", "∇": r"\nabla", "∑": r"\sum", "∏": r"\prod", "∐": r"\coprod",
    "∫": r"\int", "∬": r"\iint", "∭": r"\iiint", "∮": r"\oint", "⋃": r"\bigcup", "⋂": r"\bigcap",
    "√": r"\surd", "…": r"\ldots", "⋯": r"\cdots", "⋮": r"\vdots", "⋱": r"\ddots", "′": "'", "″": "''",
    "‴": "'''", "∥": r"\parallel", "⊥": r"\perp", "∠": r"\angle", "△": r"\triangle", "°": r"^\circ",
    "ℝ": r"\mathbb{R}", "ℕ": r"\mathbb{N}", "ℤ": r"\mathbb{Z}", "ℚ": r"\mathbb{Q}", "ℂ": r"\mathbb{C}",
    "ℓ": r"\ell", "ℏ": r"\hbar", "ℵ": r"\aleph", "⟨": r"\langle", "⟩": r"\rangle", "〈": r"\langle",
    "〉": r"\rangle", "⌊": r"\lfloor", "⌋": r"\rfloor", "⌈": r"\lceil", "⌉": r"\rceil", "‖": r"\|",
    "{": r"\{", "}": r"\}", "%": r"\%", "#": r"\#", "&": r"\&", "$": r"\$", "_": r"\_", "∣": r"\mid",
    "\u2061": "", "\u2062": "", "\u2063": "", "\u2064": "", "\u00a0": " ", "\u200b": "",
}  # fmt: skip

_CHAR_TEX = {**_GREEK, **_SYMBOLS}

# Accents written with <mover>/<munder>: the operator character → TeX accent command.
_OVER_ACCENTS = {
    "˙": r"\dot", "\u0307": r"\dot", "¨": r"\ddot", "\u0308": r"\ddot", "^": r"\hat", "ˆ": r"\hat",
    "\u0302": r"\hat", "¯": r"\bar", "‾": r"\overline", "\u0305": r"\bar", "→": r"\vec", "⃗": r"\vec",
    "~": r"\tilde", "˜": r"\tilde", "\u0303": r"\tilde", "⏞": r"\overbrace", "︷": r"\overbrace",
    "←": r"\overleftarrow", "ˇ": r"\check", "˘": r"\breve",
}  # fmt: skip
_UNDER_ACCENTS = {
    "_": r"\underline",
    "̲": r"\underline",
    "¯": r"\underline",
    "⏟": r"\underbrace",
    "︸": r"\underbrace",
}

# Operators whose limits go below/above (munderover) rather than on a wrapped base.
_LIMIT_OPERATORS = {"∑", "∏", "∐", "∫", "∬", "∭", "∮", "⋃", "⋂", "⨁", "⨂", "⋀", "⋁"}
_FUNCTION_NAMES = {
    "sin", "cos", "tan", "cot", "sec", "csc", "sinh", "cosh", "tanh", "coth", "arcsin", "arccos", "arctan",
    "log", "ln", "lg", "exp", "lim", "liminf", "limsup", "det", "dim", "ker", "max", "min", "sup", "inf",
    "gcd", "deg", "arg", "hom", "Pr",
}  # fmt: skip

_VARIANTS = {
    "bold": r"\mathbf", "double-struck": r"\mathbb", "script": r"\mathcal", "bold-script": r"\mathcal",
    "fraktur": r"\mathfrak", "bold-fraktur": r"\mathfrak", "sans-serif": r"\mathsf", "monospace": r"\mathtt",
    "italic": r"\mathit", "bold-italic": r"\boldsymbol",
}  # fmt: skip

_FENCE_TEX = {"{": r"\{", "}": r"\}", "‖": r"\|", "⟨": r"\langle", "⟩": r"\rangle", "〈": r"\langle",
              "〉": r"\rangle", "⌊": r"\lfloor", "⌋": r"\rfloor", "⌈": r"\lceil", "⌉": r"\rceil", "": "."}  # fmt: skip
_OPENERS = {"(", "[", "{", "|", "‖", "⟨", "〈", "⌊", "⌈"}
_CLOSERS = {")", "]", "}", "|", "‖", "⟩", "〉", "⌋", "⌉"}

# Levels converted structurally; deeper subtrees become their text. Each level costs a few Python frames,
# so this keeps the conversion far from the interpreter's recursion limit wherever it is called from.
MAX_DEPTH = 64

_TEXT_ESCAPES = str.maketrans({"\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "%": r"\%", "$": r"\$",
                               "#": r"\#", "&": r"\&", "_": r"\_"})  # fmt: skip


def local_name(el: etree._Element) -> str:
    """Tag without namespace or `m:` prefix, lower-cased; '' for comments and processing instructions."""
    tag = el.tag
    if not isinstance(tag, str):
        return ""
    return tag.rsplit("}", 1)[-1].rsplit(":", 1)[-1].lower()


def _children(el: etree._Element) -> list[etree._Element]:
    return [c for c in el if isinstance(c.tag, str)]


def _token_text(el: etree._Element) -> str:
    return " ".join((el.text or "").split())


def _chars_to_tex(text: str) -> str:
    return _join(_CHAR_TEX.get(ch, ch) for ch in text)


def _join(parts: Iterable[str]) -> str:
    """Concatenate TeX pieces, adding a space only where a command name would run into a letter.

    Whether the output so far ends with a command name (a backslash and ASCII letters) is carried from piece
    to piece, never found by reading the output back: a formula of many single letters would otherwise
    reread its growing run of letters once per letter (quadratic)."""
    out: list[str] = []
    in_command = False  # the output ends with a backslash and one or more ASCII letters
    backslash = False  # the output ends with a backslash
    for part in parts:
        if not part:
            continue
        if in_command and part[0].isalpha():
            out.append(" ")
            in_command = backslash = False
        letters = len(part) - len(part.rstrip(_ASCII_LETTERS))
        if letters == len(part):  # all letters: the run before goes on, a command if a backslash opened it
            in_command = backslash
        else:
            in_command = letters > 0 and part[-letters - 1] == "\\"
        backslash = letters == 0 and part[-1] == "\\"
        out.append(part)
    return "".join(out)


_ASCII_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _group(tex: str) -> str:
    return "{" + tex + "}"


def _mi(el: etree._Element) -> str:
    text = _token_text(el)
    variant = el.get("mathvariant", "")
    if not text:
        return ""
    if len(text) > 1:
        if text in _FUNCTION_NAMES:
            return "\\" + text
        if all(ch.isalpha() and ch.isascii() for ch in text):
            return (
                r"\mathrm" + _group(text) if variant not in _VARIANTS else _VARIANTS[variant] + _group(text)
            )
        return _chars_to_tex(text)
    tex = _chars_to_tex(text)
    if variant in _VARIANTS:
        return _VARIANTS[variant] + _group(tex)
    if variant == "normal" and text.isascii() and text.isalpha():
        return r"\mathrm" + _group(tex)
    return tex


def _mo(el: etree._Element) -> str:
    text = _token_text(el)
    if text in _FUNCTION_NAMES:
        return "\\" + text
    return _chars_to_tex(text)


def _mtext(el: etree._Element) -> str:
    text = " ".join((el.text or "").split())
    if not text:
        return r"\ " if el.text else ""
    return r"\text" + _group(text.translate(_TEXT_ESCAPES))


def _convert_children(el: etree._Element, depth: int) -> str:
    return _join(_convert(c, depth + 1) for c in _children(el))


def _arg(children: list[etree._Element], i: int, depth: int) -> str:
    """The i-th child converted (children sit at `depth`), '' when it is missing."""
    return _convert(children[i], depth) if i < len(children) else ""


def _is_large_operator(el: etree._Element) -> bool:
    """Whether el is (an mrow/mstyle wrapping only) a big operator or a function name; a loop, not recursion,
    since wrappers nest as deep as a page likes."""
    while local_name(el) in ("mrow", "mstyle") and len(kids := _children(el)) == 1:
        el = kids[0]
    name = local_name(el)
    if name == "mo":
        text = _token_text(el)
        return text in _LIMIT_OPERATORS or text in _FUNCTION_NAMES
    if name == "mi":
        return _token_text(el) in _FUNCTION_NAMES
    return False


def _base(el: etree._Element, depth: int) -> str:
    """A script base: operators keep their limits semantics, everything else is braced."""
    tex = _convert(el, depth)
    return tex if _is_large_operator(el) else _group(tex)


def _scripts(el: etree._Element, depth: int) -> str:
    kids = _children(el)
    name = local_name(el)
    if not kids:
        return ""
    depth += 1
    base = _base(kids[0], depth)
    if name == "msup":
        return base + "^" + _group(_arg(kids, 1, depth))
    if name == "msub":
        return base + "_" + _group(_arg(kids, 1, depth))
    return base + "_" + _group(_arg(kids, 1, depth)) + "^" + _group(_arg(kids, 2, depth))


def _under_over(el: etree._Element, depth: int) -> str:
    kids = _children(el)
    name = local_name(el)
    if not kids:
        return ""
    base_el = kids[0]
    under = over = None
    if name == "munder":
        under = kids[1] if len(kids) > 1 else None
    elif name == "mover":
        over = kids[1] if len(kids) > 1 else None
    else:
        under = kids[1] if len(kids) > 1 else None
        over = kids[2] if len(kids) > 2 else None
    depth += 1
    if _is_large_operator(base_el):
        tex = _convert(base_el, depth)
        if under is not None:
            tex += "_" + _group(_convert(under, depth))
        if over is not None:
            tex += "^" + _group(_convert(over, depth))
        return tex
    tex = _convert(base_el, depth)
    if over is not None:
        accent = _OVER_ACCENTS.get(_token_text(over)) if local_name(over) == "mo" else None
        tex = accent + _group(tex) if accent else r"\overset" + _group(_convert(over, depth)) + _group(tex)
    if under is not None:
        accent = _UNDER_ACCENTS.get(_token_text(under)) if local_name(under) == "mo" else None
        tex = accent + _group(tex) if accent else r"\underset" + _group(_convert(under, depth)) + _group(tex)
    return tex


def _frac(el: etree._Element, depth: int) -> str:
    kids = _children(el)
    num, den = _arg(kids, 0, depth + 1), _arg(kids, 1, depth + 1)
    thickness = (el.get("linethickness") or "").strip()
    if thickness in ("0", "0px", "0pt", "0em"):
        return r"\genfrac{}{}{0pt}{}" + _group(num) + _group(den)
    return r"\frac" + _group(num) + _group(den)


def _fence(char: str) -> str:
    return _FENCE_TEX.get(char, char)


def _mfenced(el: etree._Element, depth: int) -> str:
    opening = el.get("open", "(")
    closing = el.get("close", ")")
    separators = "".join((el.get("separators") if el.get("separators") is not None else ",").split())
    parts: list[str] = []
    for i, child in enumerate(_children(el)):
        if i and separators:
            parts.append(separators[min(i - 1, len(separators) - 1)])
        parts.append(_convert(child, depth + 1))
    return r"\left" + _fence(opening) + _join(parts) + r"\right" + _fence(closing)


def _mrow(el: etree._Element, depth: int) -> str:
    kids = _children(el)
    # MathJax and most converters write \left( ... \right) as an mrow framed by two fence operators.
    if len(kids) >= 2 and local_name(kids[0]) == "mo" and local_name(kids[-1]) == "mo":
        first, last = _token_text(kids[0]), _token_text(kids[-1])
        fenced = kids[0].get("fence") == "true" or kids[0].get("stretchy") != "false"
        if (
            fenced
            and (first in _OPENERS or first == "")
            and (last in _CLOSERS or last == "")
            and (first or last)
        ):
            inner = _join(_convert(c, depth + 1) for c in kids[1:-1])
            return r"\left" + _fence(first) + inner + r"\right" + _fence(last)
    return _join(_convert(c, depth + 1) for c in kids)


def _mtable(el: etree._Element, depth: int) -> str:
    rows: list[list[str]] = []
    for row in _children(el):
        name = local_name(row)
        if name not in ("mtr", "mlabeledtr"):
            rows.append([_convert(row, depth + 1)])
            continue
        cells = _children(row)
        if name == "mlabeledtr":
            cells = cells[1:]
        rows.append([_convert(c, depth + 2) for c in cells])
    if not rows:
        return ""
    ncols = max(len(r) for r in rows) or 1
    aligns = (el.get("columnalign") or "").split()
    spec = "".join(
        {"left": "l", "right": "r"}.get(aligns[min(i, len(aligns) - 1)] if aligns else "", "c")
        for i in range(ncols)
    )
    body = r"\\ ".join(" & ".join(r) for r in rows)
    return r"\begin{array}" + _group(spec) + body + r"\end{array}"


def _mmultiscripts(el: etree._Element, depth: int) -> str:
    kids = _children(el)
    if not kids:
        return ""
    post: list[etree._Element] = []
    pre: list[etree._Element] = []
    target = post
    for child in kids[1:]:
        if local_name(child) == "mprescripts":
            target = pre
            continue
        target.append(child)

    def pairs(items: list[etree._Element]) -> str:
        out = ""
        for i in range(0, len(items), 2):
            sub = _convert(items[i], depth + 1) if local_name(items[i]) != "none" else ""
            sup = (
                _convert(items[i + 1], depth + 1)
                if i + 1 < len(items) and local_name(items[i + 1]) != "none"
                else ""
            )
            out += ("_" + _group(sub) if sub else "") + ("^" + _group(sup) if sup else "")
        return out

    prefix = "{}" + pairs(pre) if pre else ""
    return prefix + _base(kids[0], depth + 1) + pairs(post)


def _menclose(el: etree._Element, depth: int) -> str:
    inner = _convert_children(el, depth)
    notation = el.get("notation", "longdiv")
    if "box" in notation or "roundedbox" in notation:
        return r"\boxed" + _group(inner)
    if "radical" in notation:
        return r"\sqrt" + _group(inner)
    if "strike" in notation:
        return r"\cancel" + _group(inner)
    return inner


def _semantics(el: etree._Element, depth: int) -> str:
    kids = [c for c in _children(el) if local_name(c) not in ("annotation", "annotation-xml")]
    return _convert(kids[0], depth + 1) if kids else ""


Converter = Callable[[etree._Element, int], str]


def _token_with_children(fn: Callable[[etree._Element], str]) -> Converter:
    """Tokens cannot have element children; if the parser nested siblings in one, convert them after it."""

    def convert(el: etree._Element, depth: int) -> str:
        return _join([fn(el), *(_convert(c, depth + 1) for c in _children(el))])

    return convert


_CONVERTERS: dict[str, Converter] = {
    "mi": _token_with_children(_mi),
    "mn": _token_with_children(lambda el: _chars_to_tex(_token_text(el))),
    "mo": _token_with_children(_mo),
    "mtext": _token_with_children(_mtext),
    "ms": _token_with_children(lambda el: _mtext(el)),
    "mspace": _token_with_children(lambda el: r"\ "),
    "none": _token_with_children(lambda el: ""),
    "mprescripts": _token_with_children(lambda el: ""),
    "mglyph": _token_with_children(lambda el: _chars_to_tex(el.get("alt", ""))),
    "msup": _scripts,
    "msub": _scripts,
    "msubsup": _scripts,
    "munder": _under_over,
    "mover": _under_over,
    "munderover": _under_over,
    "mfrac": _frac,
    "msqrt": lambda el, depth: r"\sqrt" + _group(_convert_children(el, depth)),
    "mroot": lambda el, depth: (
        r"\sqrt[" + _arg(_children(el), 1, depth + 1) + "]" + _group(_arg(_children(el), 0, depth + 1))
    ),
    "mfenced": _mfenced,
    "mrow": _mrow,
    "mtable": _mtable,
    "mtr": lambda el, depth: " & ".join(_convert(c, depth + 1) for c in _children(el)),
    "mmultiscripts": _mmultiscripts,
    "menclose": _menclose,
    "semantics": _semantics,
    "annotation": lambda el, depth: "",
    "annotation-xml": lambda el, depth: "",
    "mphantom": lambda el, depth: r"\phantom" + _group(_convert_children(el, depth)),
    "maction": lambda el, depth: _arg(_children(el), 0, depth + 1),
}


def _text_content(el: etree._Element) -> str:
    """A subtree too deep to convert, as its characters (annotations left out, as the converters do)."""
    texts = (
        e.text or ""
        for e in el.iter()
        if isinstance(e.tag, str) and local_name(e) not in ("annotation", "annotation-xml")
    )
    return _chars_to_tex(" ".join(" ".join(texts).split()))


def _convert(el: etree._Element, depth: int) -> str:
    """TeX of el, which sits `depth` levels below the element conversion started from."""
    name = local_name(el)
    if not name:
        return ""
    if depth >= MAX_DEPTH:
        return _text_content(el)
    fn = _CONVERTERS.get(name)
    if fn is not None:
        return fn(el, depth)
    # math, mstyle, mpadded, merror, mtd, and anything unknown: pass the children through.
    return _join([_chars_to_tex(_token_text(el)), _convert_children(el, depth)])


def mathml_to_tex(math: etree._Element) -> str:
    """LaTeX for a <math> element (or any MathML subtree); '' when it holds nothing convertible.
    Levels below `MAX_DEPTH` contribute their text only, so no nesting can exhaust the stack."""
    return " ".join(_convert(math, 0).split())
