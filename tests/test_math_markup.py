"""latexify: every math encoding becomes $..$ / $$..$$ text in place; MathML converts to TeX."""

from __future__ import annotations

import random
import re

import lxml.html
import pytest

from crawl.math_markup import (
    DEFAULT_DELIMITERS,
    Delimiters,
    DelimiterScanner,
    has_content,
    latexify_html,
    latexify_tree,
    math_tex,
    page_delimiters,
    parse_html,
    wrap_tex,
)
from crawl.mathml_tex import mathml_to_tex


def text_of(html: str) -> str:
    """Visible text of the latexified page (scripts and styles are not text)."""
    root = lxml.html.document_fromstring(latexify_html(html))
    for el in root.iter("script", "style"):
        el.drop_tree()
    return " ".join(root.text_content().split())


def page(body: str, head: str = "") -> str:
    return f"<html><head>{head}</head><body>{body}</body></html>"


def test_default_mathjax_delimiters_become_dollars():
    out = text_of(page(r"<p>Inline \(a^2+b^2\) and display \[c^2\] and $$d_1$$.</p>"))
    assert "$a^2+b^2$" in out
    assert "$$c^2$$" in out
    assert "$$d_1$$" in out
    assert "\\(" not in out and "\\[" not in out


def test_page_configured_delimiters_are_honoured():
    head = """<script type="text/x-mathjax-config">MathJax.Hub.Config({tex2jax: {
        inlineMath: [['[itex]','[/itex]'], ['##','##']], displayMath: [['[tex]','[/tex]']]}});</script>"""
    out = text_of(page("<p>Let [itex]x_1[/itex] and ##y## with [tex]\\int f[/tex].</p>", head))
    assert "$x_1$" in out and "$y$" in out and "$$\\int f$$" in out
    assert "[itex]" not in out and "[tex]" not in out


MATHJAX_V3_DOLLARS = (
    "<script>window.MathJax = {tex: {inlineMath: [['$', '$'], ['\\\\(', '\\\\)']], "
    "processEscapes: true}};</script>"
)
MATHJAX_V2_DOLLARS = (
    '<script type="text/x-mathjax-config">MathJax.Hub.Config({tex2jax: '
    "{inlineMath: [['$','$'], ['\\\\(','\\\\)']], processEscapes: true}});</script>"
)


def paragraph_after_latexify(html: str) -> tuple[str, dict[str, int]]:
    """The first paragraph's text (whitespace as written) and what was rewritten."""
    root = parse_html(html)
    report = latexify_tree(root)
    return root.find(".//p").text_content(), report.counts


def test_dollar_inline_only_when_configured_and_escapes_respected():
    head = MATHJAX_V3_DOLLARS
    delims = page_delimiters([lxml.html.fromstring(head).text_content()])
    assert ("$", "$") in delims.inline
    assert ("\\(", "\\)") in delims.inline
    out = text_of(page(r"<p>Price \$5 and formula $x$.</p>", head))
    assert out == r"Price \$5 and formula $x$."  # an escaped dollar is not a delimiter


@pytest.mark.parametrize("head", [MATHJAX_V3_DOLLARS, MATHJAX_V2_DOLLARS], ids=["mathjax3", "mathjax2"])
@pytest.mark.parametrize(
    ("body", "expected", "formulas"),
    [
        # \$ is a literal dollar (processEscapes): it neither opens nor closes a formula
        (r"It costs \$3 or \$4, while $a+b$ is math.", r"It costs \$3 or \$4, while $a+b$ is math.", 1),
        (r"Escaped \$x\$ and then $y$.", r"Escaped \$x\$ and then $y$.", 1),
        (r"From \$10 to \$20.", r"From \$10 to \$20.", 0),
        # a real formula right after an escaped dollar still counts
        (r"Pay \$2 for $n^2$ and $m$.", r"Pay \$2 for $n^2$ and $m$.", 2),
    ],
    ids=["prices-around-formula", "escaped-pair", "prices-only", "formula-after-price"],
)
def test_escaped_dollar_never_starts_or_ends_a_formula(head: str, body: str, expected: str, formulas: int):
    text, counts = paragraph_after_latexify(page(f"<p>{body}</p>", head))
    assert text == expected
    assert counts.get("delimiters", 0) == formulas


@pytest.mark.parametrize("head", [MATHJAX_V3_DOLLARS, MATHJAX_V2_DOLLARS], ids=["mathjax3", "mathjax2"])
def test_page_configured_dollar_delimiters_are_rewritten(head: str):
    body = "<p>Let $a_1 +\n      b_2$ be the sum and $c$ a constant, with \\(d\\) too.</p>"
    text, counts = paragraph_after_latexify(page(body, head))
    # each formula becomes one normalised $..$ (the line break inside the first one is gone)
    assert text == "Let $a_1 + b_2$ be the sum and $c$ a constant, with $d$ too."
    assert counts == {"delimiters": 3}


def test_dollars_are_text_on_pages_that_do_not_configure_them():
    body = "<p>Let $a_1 +\n      b_2$ be the sum, for $5 and $10, with \\(d\\) too.</p>"
    text, counts = paragraph_after_latexify(page(body))
    assert text == "Let $a_1 +\n      b_2$ be the sum, for $5 and $10, with $d$ too."
    assert counts == {"delimiters": 1}  # only the default \\(..\\)


def test_katex_auto_render_delimiters():
    script = 'renderMathInElement(document.body, {delimiters: [{left: "@@", right: "@@", display: true}, {left: "%(", right: ")%", display: false}]});'
    delims = page_delimiters([script])
    assert ("@@", "@@") in delims.display
    assert ("%(", ")%") in delims.inline


def test_no_rewriting_inside_code_pre_and_ignored_classes():
    out = latexify_html(
        page(r"<pre>\(keep\)</pre><code>\[keep\]</code><p class='tex2jax_ignore'>\(keep\)</p><p>\(x\)</p>")
    )
    root = lxml.html.document_fromstring(out)
    assert root.findtext(".//pre") == r"\(keep\)"
    assert root.findtext(".//code") == r"\[keep\]"
    assert "$x$" in root.text_content()
    assert root.find(".//p").text == r"\(keep\)"


def test_script_math_tex_inline_and_display_and_rendered_copies_dropped():
    body = (
        '<p>See <span class="MathJax_Preview">x</span><span class="MathJax" id="MathJax-Element-1-Frame">'
        '<nobr>garbled glyphs</nobr></span><script type="math/tex" id="MathJax-Element-1">x^2</script> here.</p>'
        '<div class="MathJax_Display">rendered</div><script type="math/tex; mode=display">\\sum_i i</script>'
    )
    out = text_of(page(body))
    assert "$x^2$" in out
    assert "$$\\sum_i i$$" in out
    assert "garbled" not in out and "rendered" not in out


def test_stack_exchange_begingroup_markers_are_dropped():
    out = text_of(page('<p>A<script type="math/tex">\\begingroup</script>B</p>'))
    assert "$" not in out
    assert not has_content("\\begingroup") and not has_content(" \\, ") and has_content("x")


def test_mathml_prefers_tex_annotation_then_alttext_then_conversion():
    annotated = (
        "<math><semantics><mrow><mi>x</mi></mrow>"
        '<annotation encoding="application/x-tex">\\hat{x}</annotation></semantics></math>'
    )
    alt = '<math alttext="\\alpha+1"><mi>α</mi><mo>+</mo><mn>1</mn></math>'
    bare = "<math><mfrac><mn>1</mn><mi>n</mi></mfrac></math>"
    out = text_of(page(f"<p>A {annotated} B {alt} C {bare}</p>"))
    assert "$\\hat{x}$" in out
    assert "$\\alpha+1$" in out
    assert "$\\frac{1}{n}$" in out


def test_wikipedia_wrapper_and_fallback_image_replaced_once():
    body = (
        '<p>Variance <span class="mwe-math-element"><span class="mwe-math-mathml-inline mwe-math-mathml-a11y" '
        'style="display: none;"><math alttext="{\\displaystyle \\sigma ^{2}}"><semantics><mrow><msup><mi>σ</mi>'
        '<mn>2</mn></msup></mrow><annotation encoding="application/x-tex">{\\displaystyle \\sigma ^{2}}'
        '</annotation></semantics></math></span><img src="https://wikimedia.org/api/rest_v1/media/math/render/svg/abc" '
        'class="mwe-math-fallback-image-inline" alt="{\\displaystyle \\sigma ^{2}}"></span> is defined.</p>'
    )
    out = text_of(page(body))
    assert out.count("\\sigma ^{2}") == 1
    assert "${\\displaystyle \\sigma ^{2}}$ is defined" in out


def test_katex_keeps_annotation_and_drops_rendered_html():
    body = (
        '<p>So <span class="katex-display"><span class="katex"><span class="katex-mathml"><math><semantics>'
        '<mrow><mi>E</mi></mrow><annotation encoding="application/x-tex">E=mc^2</annotation></semantics></math>'
        '</span><span class="katex-html" aria-hidden="true">E=mc2 glyphs</span></span></span></p>'
    )
    out = text_of(page(body))
    assert "$$E=mc^2$$" in out
    assert "glyphs" not in out


def test_mathjax_v3_container_uses_assistive_mathml():
    body = (
        '<p>Here <mjx-container class="MathJax" jax="CHTML" display="true"><mjx-math>junk</mjx-math>'
        "<mjx-assistive-mml><math display='block'><msqrt><mi>x</mi></msqrt></math></mjx-assistive-mml>"
        "</mjx-container></p>"
    )
    out = text_of(page(body))
    assert "$$\\sqrt{x}$$" in out
    assert "junk" not in out


@pytest.mark.parametrize(
    ("img", "expected"),
    [
        (
            '<img src="https://latex.codecogs.com/gif.latex?x&amp;space;=&amp;space;\\frac{1}{2}" alt="x = \\frac{1}{2}">',
            "$x = \\frac{1}{2}$",
        ),
        ('<img src="https://latex.codecogs.com/png.latex?\\dpi{120}&amp;space;a^2" alt="">', "$a^2$"),
        ('<img src="https://s0.wp.com/latex.php?latex=%5Cpi+r%5E2&amp;bg=ffffff" alt="">', "$\\pi r^2$"),
        (
            '<img class="latex" src="/x.png" alt="\\displaystyle \\int_0^1 f">',
            "$$\\displaystyle \\int_0^1 f$$",
        ),
        ('<img src="/cgi-bin/mimetex.cgi?y_1" alt="y_1">', "$y_1$"),
    ],
)
def test_formula_images(img: str, expected: str):
    assert expected in text_of(page(f"<p>Formula {img} done.</p>"))


def test_ordinary_images_are_left_alone():
    html = page(
        '<p>A cat <img src="/cat.jpg" alt="a cat" class="photo"> and <img class="math" src="/deco.png" alt="logo"></p>'
    )
    assert latexify_html(html) == html


def test_source_containers_with_raw_tex():
    body = '<div class="math">\\frac{a}{b}</div><p>Inline <span class="math-container">x^2</span>.</p><p class="math">1 yr = 12 mo</p>'
    out = text_of(page(body))
    assert "$$\\frac{a}{b}$$" in out
    assert "$x^2$" in out
    assert "1 yr = 12 mo" in out and "$1 yr" not in out  # no TeX syntax: left as prose


def test_amp_mathml_and_data_formula_attribute():
    out = text_of(
        page('<amp-mathml layout="container" data-formula="\\[x = {-b \\over 2a}\\]"></amp-mathml>')
    )
    assert "$$x = {-b \\over 2a}$$" in out


def test_katex_render_call_fills_its_target():
    body = '<p><span id="k">...</span></p><script>katex.render("f(a) = a^2", document.getElementById("k"));</script>'
    out = text_of(page(body))
    assert "$f(a) = a^2$" in out


def test_math_mml_script_with_escaped_source():
    body = '<p>Period <script type="math/mml">&lt;math&gt;&lt;mi&gt;T&lt;/mi&gt;&lt;/math&gt;</script>.</p>'
    assert "Period $T$" in text_of(page(body))


@pytest.mark.parametrize(
    ("mathml", "tex"),
    [
        ("<math><msup><mi>x</mi><mn>2</mn></msup></math>", "{x}^{2}"),
        ("<math><msub><mi>a</mi><mi>k</mi></msub></math>", "{a}_{k}"),
        ("<math><mroot><mi>x</mi><mn>3</mn></mroot></math>", "\\sqrt[3]{x}"),
        (
            "<math><munderover><mo>∑</mo><mrow><mi>k</mi><mo>=</mo><mn>1</mn></mrow><mi>n</mi></munderover><mi>k</mi></math>",
            "\\sum_{k=1}^{n}k",
        ),
        ("<math><mover><mi>x</mi><mo>˙</mo></mover></math>", "\\dot{x}"),
        (
            "<math><mrow><mo>(</mo><mi>a</mi><mo>+</mo><mi>b</mi><mo>)</mo></mrow></math>",
            "\\left(a+b\\right)",
        ),
        ("<math><mi>α</mi><mo>≤</mo><mi>β</mi><mo>−</mo><mn>1</mn></math>", "\\alpha\\le\\beta-1"),
        ("<math><mi>sin</mi><mi>x</mi></math>", "\\sin x"),
        ("<math><mtext>if n is odd</mtext></math>", "\\text{if n is odd}"),
        ("<math><mi mathvariant='bold'>V</mi></math>", "\\mathbf{V}"),
        (
            "<math><mtable><mtr><mtd><mi>a</mi></mtd><mtd><mi>b</mi></mtd></mtr><mtr><mtd><mi>c</mi></mtd><mtd><mi>d</mi></mtd></mtr></mtable></math>",
            "\\begin{array}{cc}a & b\\\\ c & d\\end{array}",
        ),
        ("<math><mfenced open='[' close=']'><mi>x</mi><mi>y</mi></mfenced></math>", "\\left[x,y\\right]"),
    ],
)
def test_mathml_conversion(mathml: str, tex: str):
    root = lxml.html.fragment_fromstring(mathml)
    assert mathml_to_tex(root) == tex


def test_math_tex_reads_data_code_of_editors():
    root = lxml.html.fragment_fromstring("<math data-code='2 \\pi r' data-math-language='tex'></math>")
    assert math_tex(root) == "2 \\pi r"


@pytest.mark.parametrize(
    "html",
    [
        "",
        "   ",
        "<p>no math here at all</p>",
        "<html><body><p>Price: $5 and $10.</p></body></html>",
        "\x00\x01 garbage <<<>>> \\( unclosed",
        '<?xml version="1.0" encoding="utf-8"?><html><body><math><mi>x</mi>',
        "<div><span>" * 500,
    ],
)
def test_never_crashes_and_nothing_to_do_means_unchanged(html: str):
    out = latexify_html(html)
    assert isinstance(out, str)
    if "math" not in html and "\\(" not in html:
        assert out == html


def test_broken_mathml_still_converts():
    out = text_of(
        '<?xml version="1.0" encoding="utf-8"?><html><body><p>a <math><mi>x</mi><mo>=</mo><mn>1</mn>'
    )
    assert "$x=1$" in out


def test_latexify_tree_reports_what_it_did():
    root = parse_html(page('<p>\\(a\\)<script type="math/tex">b</script><math><mi>c</mi></math></p>'))
    report = latexify_tree(root)
    assert report.counts == {"delimiters": 1, "script": 1, "mathml": 1}
    assert report.total == 3


def _regex_rewrite(text: str, delims: Delimiters) -> tuple[str, int]:
    """The reference: one regex alternation over all pairs (what MathJax's tex2jax finds), quadratic-prone
    on long lines but plainly right; the scanner must match it exactly."""
    pairs = [(left, right, True) for left, right in delims.display]
    pairs += [(left, right, False) for left, right in delims.inline]
    pairs.sort(key=lambda p: -len(p[0]))
    alternatives = []
    for left, right, _ in pairs:
        guard = r"(?<!\\)" if left.startswith("$") else ""
        body = r"(?=\S)([^$]{1,4000}?)" if left.startswith("$") else r"([\s\S]{1,8000}?)"
        alternatives.append(guard + re.escape(left) + body + re.escape(right))
    count = 0

    def repl(m: re.Match[str]) -> str:
        nonlocal count
        tex = m.group(m.lastindex)
        if not has_content(tex):
            return m.group(0)
        count += 1
        return wrap_tex(tex, pairs[m.lastindex - 1][2])

    return re.compile("|".join(alternatives)).sub(repl, text), count


DELIMITER_SETS = [
    DEFAULT_DELIMITERS,
    Delimiters(inline=(("\\(", "\\)"), ("$", "$")), display=(("$$", "$$"), ("\\[", "\\]"))),
    Delimiters(inline=(("[i]", "[/i]"), ("##", "##")), display=(("$$", "$$"), ("[d]", "[/d]"))),
]


def test_delimiter_scanner_finds_what_the_regex_alternation_finds():
    rng = random.Random(11)
    atoms = ["$", "$$", "\\(", "\\)", "\\[", "\\]", "\\", "x", "\\quad", "{", "[i]", "[/i]", "##", " ", "\n", "\u00a0"]  # fmt: skip
    for _ in range(3000):
        text = "".join(rng.choice(atoms) for _ in range(rng.randint(0, 30)))
        for delims in DELIMITER_SETS:
            assert DelimiterScanner(delims).rewrite(text) == _regex_rewrite(text, delims), (text, delims)


@pytest.mark.parametrize("length", [3999, 4000, 4001, 7999, 8000, 8001])
def test_delimiter_scanner_honours_the_body_length_caps(length):
    for text in (f"a ${'x' * length}$ b", f"\\({'y' * length}\\)", f"$${'z' * length}$$"):
        for delims in DELIMITER_SETS[:2]:
            assert DelimiterScanner(delims).rewrite(text) == _regex_rewrite(text, delims)


def test_parse_html_yields_html_elements_without_the_characters_lxml_refuses():
    root = parse_html(
        '<?xml version="1.0" encoding="latin-1"?><html><body><form><input name="q"></form>'
        "<p>a\x01b\ufffe\uffffc é 中文</p><p>cut\ud800here</p><p>after</p></body></html>"
    )
    # trafilatura accepts only lxml.html trees; every element, form controls included, is an HtmlElement
    assert all(isinstance(el, lxml.html.HtmlElement) for el in root.iter())
    texts = [p.text for p in root.iter("p")]
    assert texts == ["abc é 中文", "cuthere", "after"]  # a lone surrogate no longer ends the document


def test_prefixed_and_upper_case_mathml_is_found():
    out = text_of(page("<p>see <m:math><m:mi>x</m:mi></m:math> and <MATH><mi>y</mi></MATH> here</p>"))
    assert "$x$" in out and "$y$" in out


def test_a_wrapper_of_two_formulas_keeps_both():
    body = (
        '<p><span class="katex"><math><mi>A</mi></math><math><mi>B</mi></math></span>'
        '<span class="katex"><math><mi>C</mi></math></span> end</p>'
    )
    out = text_of(page(body))
    assert "$A$" in out and "$B$" in out and "$C$" in out and "end" in out


def test_elements_taken_out_by_an_earlier_pass_are_not_rewritten_again():
    # the preview (with a data-tex) goes with its MathJax v2 script; a <math> inside a data-tex element goes
    # with the element: each formula is written once
    body = (
        '<p><span class="MathJax_Preview" data-tex="zzz">p</span>'
        '<script type="math/tex">x^2</script></p>'
        '<p><span data-tex="y+1"><math><mi>qqq</mi></math></span></p>'
    )
    out = text_of(page(body))
    assert "$x^2$" in out and "$y+1$" in out
    assert "zzz" not in out and "qqq" not in out


def test_delimiters_rewritten_in_tails_unless_an_ancestor_is_skipped():
    body = r"<div class='tex2jax_ignore'><p><b>b</b> tail \(keep\)</p></div><p><code>c</code> tail \(x\)</p>"
    out = text_of(page(body))
    assert r"tail \(keep\)" in out and "tail $x$" in out
