"""Code kept as code: fenced blocks with exact lines and the markup's language, on every extractor's path."""

from __future__ import annotations

from pathlib import Path

import pytest

from crawl.code_eval import PATHS, code_pages, extractor_texts, fenced_lines, recall
from crawl.code_markup import (
    NO_CODE,
    CodeMarks,
    CodeSpan,
    fence_block,
    has_code_markup,
    inline_code,
    mark_code,
    normalise_language,
)
from crawl.deadline import Deadline, PageTimeout
from crawl.main_content import TRAFILATURA, choose_main_text
from crawl.math_eval import formula_hits, gold_pages, read_page
from crawl.math_extract import extract_math_text
from crawl.math_markup import parse_html

PROSE = "<p>" + "An ordinary paragraph of prose that explains the code shown on this page. " * 4 + "</p>"


def doc(body: str) -> str:
    return f"<html><head><title>t</title></head><body><article>{PROSE}{body}{PROSE}</article></body></html>"


PY = ["def f(x):", "    if x:", "\treturn x  # $x$ and \\(y\\)", "", "        return 1"]
PY_BLOCK = "\n".join(PY)


def spans(line: str) -> str:
    """A line as highlighters write it: every word in its own span."""
    return " ".join(f'<span class="n">{w}</span>' if w.strip() else w for w in line.split(" "))


PY_SPANS = "\n".join(spans(line) for line in PY)
PY_NBSP_LINES = [
    line.replace("\t", "&nbsp;&nbsp;&nbsp;&nbsp;").replace("    ", "&nbsp;&nbsp;&nbsp;&nbsp;") for line in PY
]
PY_TAB = [line.replace("\t", "    ") for line in PY]  # where the markup writes a tab's indentation as spaces
GUTTER = "".join(f"<span>{i}</span>\n" for i in range(1, len(PY) + 1))

# (highlighter, block HTML, language, lines)
HIGHLIGHTERS = [
    ("plain pre", f"<pre>{PY_BLOCK}</pre>", "", PY),
    ("pre code br", "<pre><code>" + "<br>".join(PY) + "</code></pre>", "", PY),
    (
        "pygments sphinx",
        f'<div class="highlight-python3 notranslate"><div class="highlight"><pre>{PY_SPANS}</pre></div></div>',
        "python",
        PY,
    ),
    (
        "pygments table",
        f'<table class="highlighttable"><tr><td class="linenos"><div class="linenodiv"><pre>{GUTTER}</pre></div></td>'
        f'<td class="code"><div class="highlight"><pre>{PY_SPANS}</pre></div></td></tr></table>',
        "",
        PY,
    ),
    (
        "pygments inline numbers",
        '<div class="highlight-py"><div class="highlight"><pre>'
        + "\n".join(f'<span class="linenos">{i}</span>{spans(line)}' for i, line in enumerate(PY, 1))
        + "</pre></div></div>",
        "python",
        PY,
    ),
    (
        "github",
        f'<div class="highlight highlight-source-python notranslate"><pre>{PY_SPANS}</pre></div>',
        "python",
        PY,
    ),
    ("highlight.js", f'<pre><code class="hljs language-js">{PY_SPANS}</code></pre>', "javascript", PY),
    (
        "highlight.js line numbers",
        '<pre><code class="hljs language-python"><table class="hljs-ln"><tbody>\n'
        + "".join(
            f'<tr><td class="hljs-ln-line hljs-ln-numbers" data-line-number="{i}"><div class="hljs-ln-n" '
            f'data-line-number="{i}"></div></td>\n<td class="hljs-ln-line hljs-ln-code">{spans(line)}</td></tr>\n'
            for i, line in enumerate(PY, 1)
        )
        + "</tbody></table></code></pre>",
        "python",
        PY,
    ),
    (
        "prism",
        f'<pre class="language-py line-numbers"><code class="language-py">{PY_SPANS}'
        '<span aria-hidden="true" class="line-numbers-rows"><span></span><span></span></span></code></pre>',
        "python",
        PY,
    ),
    ("prettify", f'<pre class="prettyprint lang-rb">{PY_SPANS}</pre>', "ruby", PY),
    ("code lang-", f'<pre><code class="lang-sh">{PY_BLOCK}</code></pre>', "bash", PY),
    ("syntaxhighlighter brush", f'<pre class="brush: python; gutter: true">{PY_BLOCK}</pre>', "python", PY),
    (
        "syntaxhighlighter v3",
        '<div class="syntaxhighlighter python"><div class="toolbar"><a href="#">?</a></div><table><tbody><tr>'
        '<td class="gutter">'
        + "".join(f'<div class="line number{i}">{i}</div>' for i in range(1, len(PY) + 1))
        + '</td><td class="code"><div class="container">\n'
        + "".join(
            f'<div class="line number{i}"><code class="python spaces">{line[: len(line) - len(line.lstrip())]}</code>'
            f'<code class="python plain">{line.lstrip() or "&nbsp;"}</code></div>\n'
            for i, line in enumerate(PY_NBSP_LINES, 1)
        )
        + "</div></td></tr></tbody></table></div>",
        "python",
        PY_TAB,
    ),
    (
        "rouge jekyll",
        '<div class="language-python highlighter-rouge"><div class="highlight"><pre class="highlight"><code>'
        f"{PY_SPANS}\n</code></pre></div></div>",
        "python",
        PY,
    ),
    (
        "rouge figure",
        f'<figure class="highlight"><pre><code class="language-ruby" data-lang="ruby">{PY_SPANS}</code></pre></figure>',
        "ruby",
        PY,
    ),
    (
        "rouge line numbers",
        '<figure class="highlight"><pre><code class="language-python" data-lang="python"><table class="rouge-table">'
        f'<tbody><tr><td class="gutter gl"><pre class="lineno">{GUTTER}</pre></td>'
        f'<td class="code"><pre>{PY_SPANS}</pre></td></tr></tbody></table></code></pre></figure>',
        "python",
        PY,
    ),
    (
        "mediawiki",
        f'<div class="mw-highlight mw-highlight-lang-python mw-content-ltr" dir="ltr"><pre><span></span>{PY_SPANS}</pre></div>',
        "python",
        PY,
    ),
    (
        "stack exchange",
        f'<pre class="lang-py s-code-block"><code class="hljs language-python">{PY_SPANS}</code></pre>',
        "python",
        PY,
    ),
    (
        "stack exchange default",
        f'<pre class="default s-code-block"><code class="hljs language-python">{PY_SPANS}</code></pre>',
        "python",
        PY,
    ),
    (
        "pandoc",
        '<div class="sourceCode" id="cb1"><pre class="sourceCode python"><code class="sourceCode python">'
        + "\n".join(
            f'<span id="cb1-{i}"><a href="#cb1-{i}" aria-hidden="true" tabindex="-1"></a>{spans(line)}</span>'
            for i, line in enumerate(PY, 1)
        )
        + "</code></pre></div>",
        "python",
        PY,
    ),
    (
        "geshi",
        '<div class="wp_syntax"><table><tr><td class="line_numbers"><pre>1\n2\n3\n4\n5\n</pre></td>'
        f'<td class="code"><pre class="python" style="font-family:monospace;">{PY_SPANS}</pre></td></tr></table></div>',
        "python",
        PY,
    ),
    (
        "hugo chroma",
        '<div class="highlight"><div class="chroma"><table class="lntable"><tr><td class="lntd">'
        f'<pre tabindex="0" class="chroma"><code>{"".join(f"<span class=lnt>{i}</span>" for i in range(1, 6))}'
        '</code></pre></td><td class="lntd"><pre tabindex="0" class="chroma"><code class="language-go" data-lang="go">'
        + "".join(f'<span class="line"><span class="cl">{line}\n</span></span>' for line in PY)
        + "</code></pre></td></tr></table></div></div>",
        "go",
        PY,
    ),
    (
        "hexo",
        '<figure class="highlight python"><table><tr><td class="gutter"><pre>'
        + "<br>".join(f'<span class="line">{i}</span>' for i in range(1, 6))
        + '</pre></td><td class="code"><pre>'
        + "<br>".join(f'<span class="line">{spans(line)}</span>' for line in PY)
        + "</pre></td></tr></table></figure>",
        "python",
        PY,
    ),
    (
        "enlighter",
        f'<pre class="EnlighterJSRAW" data-enlighter-language="python">{PY_BLOCK}</pre>',
        "python",
        PY,
    ),
    ("xmp", f"<xmp>{PY_BLOCK}</xmp>", "", PY),
    ("listing", f"<listing>{PY_BLOCK}</listing>", "", PY),
    (
        "copy button and loader script",
        f'<pre class="copy-ready language-bash"><button class="clipboard">Copy</button><code>{PY_BLOCK}</code>'
        "<script>if (window.hljs) { hljs.highlightAll(); }</script></pre>",
        "bash",
        PY,
    ),
]


def fenced_blocks(text: str) -> list[tuple[str, list[str]]]:
    """(language, lines) of each fenced block in `text`."""
    blocks, lines, fence, language = [], [], "", ""
    for line in text.split("\n"):
        if fence:
            if line == fence:
                blocks.append((language, lines))
                fence = ""
            else:
                lines.append(line)
        elif line.startswith("```"):
            fence = "`" * (len(line) - len(line.lstrip("`")))
            language, lines = line[len(fence) :], []
    return blocks


@pytest.mark.parametrize(
    ("name", "block", "language", "lines"), HIGHLIGHTERS, ids=[h[0] for h in HIGHLIGHTERS]
)
def test_each_highlighter_gives_one_fenced_block_on_every_path(
    name: str, block: str, language: str, lines: list[str]
):
    html = doc(f"<h2>Example</h2>{block}<p>The function above returns its argument.</p>")
    texts, _ = extractor_texts(html, None)
    for path in PATHS:
        assert fenced_blocks(texts[path]) == [(language, lines)], (path, texts[path])
        assert "mfcodemark" not in texts[path]
        assert "returns its argument" in texts[path]
    assert extract_math_text(html).text == texts["selected"]


def test_block_text_and_prose_stay_on_lines_of_their_own():
    html = doc(f"<p>Before<pre>{PY_BLOCK}</pre>after.</p>")
    for path, text in extractor_texts(html, None)[0].items():
        lines = text.split("\n")
        opening = lines.index("```")
        assert lines[opening + 1 : opening + 1 + len(PY)] == PY, path
        assert lines[opening + 1 + len(PY)] == "```", path


def test_inline_code_stays_inline_and_its_dollars_stay_code():
    html = doc(
        "<p>Run <code>make  all</code> then <a href='#'><code>echo $HOME</code></a>, set <code>a`b</code> "
        "and <code>\\(x\\)</code>; the rule $x^2$ holds.</p>"
    )
    text = extract_math_text(html).text
    line = next(line for line in text.split("\n") if line.startswith("Run "))
    assert line == "Run `make all` then `echo $HOME`, set ``a`b`` and `\\(x\\)`; the rule $x^2$ holds."
    main = extract_math_text(html)
    assert main.formulas == 1  # $x^2$ only: neither $HOME nor \(x\) in code is a formula


def test_math_inside_code_is_not_rewritten_or_counted():
    block = "<pre><code>$ echo $PATH\n$$ not a formula $$\n\\[ raw \\]\n<script type='math/tex'>q</script></code></pre>"
    main = extract_math_text(doc(f"<p>A formula \\(a_1\\) in prose.</p>{block}"))
    assert fenced_blocks(main.text) == [("", ["$ echo $PATH", "$$ not a formula $$", "\\[ raw \\]"])]
    assert "$a_1$" in main.text
    assert main.formulas == 1


def test_formulas_in_code_do_not_decide_the_extractor():
    """resiliparse keeping an extra code block full of `$..$` is no formula trafilatura lost."""
    marks = CodeMarks("mk", [CodeSpan("$a$ $b$ $c$", "", block=True)])
    prose = "Some prose with $x$ in it, long enough to be the main text of the page. " * 3
    with_code = prose + "\nmk0o\n$a$ $b$ $c$\nmk0c\n"
    chosen = choose_main_text(prose, with_code, marks)
    assert chosen.extractor == TRAFILATURA and chosen.formulas == 3
    without = choose_main_text(prose, with_code, NO_CODE)  # counted as formulas, they would flip it
    assert without.extractor != TRAFILATURA


def test_restore_handles_what_extractors_do_to_the_marks():
    marks = CodeMarks("mk", [CodeSpan("a\n  b", "python", block=True), CodeSpan("$x$", "", block=False)])
    assert marks.restore("intro mk0o a b mk0c outro") == "intro\n```python\na\n  b\n```\noutro"  # one line
    assert marks.restore("intro\nmk0o\na\nb\nmk0c\noutro") == "intro\n```python\na\n  b\n```\noutro"
    assert marks.restore("use mk1o`$x$`mk1c now") == "use `$x$` now"
    assert marks.restore("lost close mk0o a b") == "lost close  a b"  # marks dropped, the text kept
    assert marks.restore("stray mk1c end mk7o") == "stray  end "
    stripped = marks.without_code("p mk0o a b mk0c q mk1o`$x$`mk1c r")
    assert stripped.split() == ["p", "q", "r"]


def test_fences_and_spans_outlast_backticks_in_the_code():
    assert fence_block("x = ```y```", "md") == "````md\nx = ```y```\n````"
    assert fence_block("plain") == "```\nplain\n```"
    assert inline_code("a`b") == "``a`b``"
    assert inline_code("`x`") == "`` `x` ``"


@pytest.mark.parametrize(
    ("name", "language"),
    [
        ("py", "python"),
        ("Python3", "python"),
        ("js", "javascript"),
        ("sh", "bash"),
        ("C++", "cpp"),
        ("yml", "yaml"),
        ("text", ""),
        ("none", ""),
        ("plaintext", ""),
        ("ruby;", "ruby"),
        ("c#", "csharp"),
        ("go", "go"),
    ],
)
def test_language_names_are_normalised(name: str, language: str):
    assert normalise_language(name) == language


def test_code_gate_and_pages_without_code():
    assert has_code_markup("<PRE>x</PRE>") and has_code_markup("<p><code>x</code>")
    assert not has_code_markup("<p>no code here, just a <span>span</span> and a precise word</p>")
    # GitHub's table of lines, in the one spelling the rewrite looks for (`_candidates`)
    assert has_code_markup('<table class="js-file-line-container"><tr><td>x</td></tr></table>')
    root = parse_html(doc("<p>Nothing to see.</p>"))
    assert mark_code(root).spans == []


def test_a_page_that_holds_the_marker_gets_another():
    html = doc(f"<p>The token mfcodemark0o is prose here.</p><pre>{PY_BLOCK}</pre>")
    text = extract_math_text(html).text
    assert "The token mfcodemark0o is prose here." in text
    assert fenced_blocks(text) == [("", PY)]


def test_code_on_a_page_without_main_content_is_fenced_too():
    """A tiny page goes through the whole-page fallback (the `--min-math-score 0` route extracts every page)."""
    main = extract_math_text(f"<html><body><div><pre>{PY_BLOCK}</pre></div></body></html>")
    assert fenced_blocks(main.text) == [("", PY)]


def test_hostile_code_is_bounded_and_exact():
    huge = "\n".join(f'    <span class="k">x</span>{i} = "$y$"' for i in range(20_000))
    deep = "<pre>" + ("<span>" * 200 + "z = 1" + "</span>" * 200 + "\n") * 200 + "</pre>"
    unclosed = "<pre><code><span>line\n" * 300
    text = extract_math_text(doc(f"<pre>{huge}</pre>{deep}<p>between</p>{unclosed}")).text
    blocks = fenced_blocks(text)
    assert blocks[0][1][0] == '    x0 = "$y$"' and len(blocks[0][1]) == 20_000
    assert blocks[1][1] == ["z = 1"] * 200
    assert set(blocks[2][1]) == {"line"}  # unclosed blocks nest (as deep as the parser goes): one block


def test_code_rewrite_honours_the_deadline():
    passed = Deadline(0.0)  # expired long ago
    with pytest.raises(PageTimeout):
        extract_math_text(doc(f"<pre>{PY_BLOCK}</pre>"), None, passed)
    with pytest.raises(PageTimeout):
        mark_code(parse_html(doc(f"<pre>{PY_BLOCK}</pre>")), passed)


@pytest.fixture(scope="module")
def real_code_pages(shared_data: Path):
    pages = code_pages(shared_data)
    assert len(pages) >= 15, [p.name for p in pages]
    return [(page, read_page(page.path)) for page in pages]


def test_real_pages_keep_their_code_lines_fenced_on_every_path(real_code_pages):
    """Exact-line recall of the gold code blocks of the shared pages, inside fences: 0 before (no fences),
    0.997-0.999 now on each path (the misses are blocks an extractor left out of the main content)."""
    found = dict.fromkeys(PATHS, 0)
    total = 0
    for page, html in real_code_pages:
        texts, _ = extractor_texts(html, page.url)
        for path in PATHS:
            hits, lines = recall(page.blocks, fenced_lines(texts[path]))
            found[path] += hits
        total += lines
    assert total >= 1500
    for path in PATHS:
        assert found[path] / total >= 0.99, (path, found[path], total)


def test_real_highlighters_get_their_language(real_code_pages):
    languages = {}
    for page, html in real_code_pages:
        if page.name in (
            "readability/mercurial",
            "readability/002",
            "readability/v8-blog",
            "trafilatura-eval/schneems.com.rubocop.html.gz",
            "trafilatura-eval/fouryears.eu.interning.html.gz",
        ):
            text = extract_math_text(html, page.url).text
            languages[page.name] = {language for language, _ in fenced_blocks(text)}
    assert languages == {
        "readability/mercurial": {"python"},  # Sphinx's highlight-python wrapper, whatever the shell inside
        "readability/002": {"javascript"},  # GeSHi's pre.javascript in a table cell
        "readability/v8-blog": {"c", "cpp", "lisp", "javascript", "bash", ""},  # Prism; <br> lines
        "trafilatura-eval/schneems.com.rubocop.html.gz": {"ruby", "yaml", ""},  # Rouge
        "trafilatura-eval/fouryears.eu.interning.html.gz": {"python"},  # Enlighter's data attribute
    }


def test_formula_recall_of_math_pages_with_code_is_unchanged(shared_data: Path):
    with_code = 0
    for page in gold_pages(shared_data):
        html = read_page(page.path)
        if not has_code_markup(html):
            continue
        with_code += 1
        texts, _ = extractor_texts(html, page.url, code=False)
        before = formula_hits(texts["selected"], page.formulas)
        assert formula_hits(extract_math_text(html, page.url).text, page.formulas) == before, page.name
    assert with_code >= 2


def test_a_code_figure_is_kept_with_its_caption():
    """trafilatura drops `<figure>`s with what they hold: a figure that only holds code becomes the code."""
    html = doc(
        f'<figure class="highlight"><figcaption><span>app.py</span></figcaption><pre>{PY_BLOCK}</pre></figure>'
    )
    for path, text in extractor_texts(html, None)[0].items():
        assert fenced_blocks(text) == [("", PY)], path
        assert "app.py" in text, path
