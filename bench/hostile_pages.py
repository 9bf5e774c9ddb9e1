"""Hostile pages: what one page can cost the corpus job, as the page grows.

One page that costs quadratic time (or blows the stack) stalls the Spark task that meets it. Each kind below
is generated at growing sizes and timed on one core:

- math_scripts: N `<script type="math/tex">` side by side in one paragraph (issue 11: 100k took 28 s);
- katex_formulas: N MathML formulas in KaTeX wrappers, all in one `class="latex"` container;
- deep_mathml: N formulas, each nested 200 `<mrow>` deep (20k nesting raised RecursionError; the HTML
  parser keeps at most 256 levels, so depth beyond that does not reach us);
- long_line: one line of N kB of prose full of `$` amounts and `\\(` openings that never close;
- long_script: one line of N kB of script repeating an unclosed MathJax `inlineMath: [` config (64 kB took
  30 s: every occurrence was read to the end of the script);
- huge_table: a table of N rows of 10 cells, each cell an inline formula;
- katex_config: a KaTeX auto-render config of N kB whose delimiter object never closes (issue 21: every
  `left:` key was read to the end of the script, 16 s for ~220 kB);
- many_delimiters: N distinct delimiter pairs configured, all used in one paragraph;
- dollar_run: one text node of N kB of `$` (issue 21: ~3 us a byte and hundreds of MB);
- tex_openings: N kB of unclosed `\\(` and `\\[` (issue 21: the rule scorer read 2,000 characters from each);
- begin_flood: N kB of unclosed `\\begin{align}` and `$$` in an article;
- mathml_text: MathML tokens of N kB of letters (issue 21: the MathML join reread its output per letter);
- math_words: N kB of "math katex latex mathematics" (the prefilter classified each occurrence in Python);
- deep_nesting: N blocks nested 250 elements deep, each with formulas at the bottom.

For each size it prints the page's bytes, the seconds of the math rewrite (parse + latexify) and of the
whole per-page path (`route_page` as a Spark task runs it, with the keep rule `--min-math-score 0` that
sends every page through math extraction: the worst case), the whole path's microseconds per kB: flat when
the cost is linear (the ratio column compares each size with the smallest), and its slowest stage. With
--memory, also the peak of Python's allocations while routing the page (tracemalloc; lxml's C memory is
not traced), in MB and per byte of page. With --route-budget B, also each page routed under a B-second
deadline, as the job routes it: its seconds (at most B plus one library call) and whether it timed out.
With --job, the largest page of each kind goes into one WARC between ordinary pages and the corpus job runs
over it (Spark local[1], `--page-time-budget`): it finishes, and the pages over budget are counted.

    .venv/bin/python bench/hostile_pages.py [--scales 1,2,4,8] [--kinds math_scripts,...] [--memory] [--route-budget 2] [--job] [--budget 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from crawl.deadline import Deadline, PageTimeout  # noqa: E402
from crawl.math_markup import latexify_tree, parse_html  # noqa: E402
from jobs.corpus_pipeline import PageAnalyser  # noqa: E402
from pipeline.route import route_page  # noqa: E402

MATHML_DEPTH = 200


def _page(body: str) -> str:
    return f"<html><head><title>hostile</title></head><body>{body}</body></html>"


def math_scripts(n: int) -> str:
    """n TeX scripts side by side: every replacement used to rewrite the paragraph's growing text."""
    return _page(
        "<p>" + " ".join(f'x<script type="math/tex">a_{{{i}}}+b</script>' for i in range(n)) + "</p>"
    )


def katex_formulas(n: int) -> str:
    """n KaTeX-wrapped MathML formulas in one wrapper-classed container: every formula used to count all the
    others to decide whether the container renders it alone."""
    formula = (
        '<span class="katex"><math><semantics><mrow><mi>x</mi><mo>+</mo><mn>{i}</mn></mrow>'
        '<annotation encoding="application/x-tex">x+{i}</annotation></semantics></math></span>'
    )
    return _page('<div class="latex">' + " and ".join(formula.format(i=i) for i in range(n)) + "</div>")


def deep_mathml(n: int, depth: int = MATHML_DEPTH) -> str:
    """n formulas without TeX source, each nested `depth` levels: the converter must neither recurse that
    deep nor lose the page."""
    formula = "<math>" + "<mrow>" * depth + "<mi>x</mi><mo>=</mo><mn>1</mn>" + "</mrow>" * depth + "</math>"
    return _page("".join(f"<p>Formula {i}: {formula}</p>" for i in range(n)))


def long_line(kb: int) -> str:
    """One line of `kb` kilobytes: `$` amounts and `\\(` that never close, so every opening looks ahead."""
    chunk = "it costs $5 or \\( maybe more, see [1] and \\[ note "
    return _page("<p>" + chunk * (kb * 1024 // len(chunk)) + "</p>")


def long_script(kb: int) -> str:
    """A one-line script of `kb` kilobytes whose delimiter config never closes, before a formula."""
    chunk = "MathJax={tex:{inlineMath: [['$','$'], "
    script = "<script>" + chunk * (kb * 1024 // len(chunk)) + "</script>"
    return f"<html><head>{script}</head><body><p>Let $x$ be real.</p></body></html>"


def huge_table(rows: int) -> str:
    """rows x 10 cells, each an inline formula."""
    cells = "".join(f"<td>\\(x_{{{j}}}^2\\)</td>" for j in range(10))
    return _page("<table>" + f"<tr>{cells}</tr>" * rows + "</table>")


def katex_config(kb: int) -> str:
    """A KaTeX auto-render config of `kb` kilobytes whose delimiter object never closes: every `left:` key
    in it used to be read to the end of the script (16 s for ~220 kB)."""
    chunk = 'left: "\\\\(", right: "\\\\)", display: false, '
    script = "<script>renderMathInElement(document.body, {delimiters: [{" + chunk * (kb * 1024 // len(chunk))
    return f"<html><head>{script}</script></head><body><p>Let \\(x\\) be real.</p></body></html>"


def many_delimiters(n: int) -> str:
    """A MathJax config of n distinct delimiter pairs over one paragraph that uses them all: every text
    position used to be tried against every configured opening (pairs x text)."""
    pairs = ",".join(f"['@{i}@','#{i}#']" for i in range(n))
    script = f"<script>MathJax={{tex:{{inlineMath:[{pairs}]}}}}</script>"
    body = " ".join(f"item {i}: @{i}@x^{i}#{i}# holds, and so does $y$." for i in range(n))
    return f"<html><head>{script}</head><body><p>{body}</p></body></html>"


def math_words(kb: int) -> str:
    """`kb` kilobytes of the words the prefilter classifies one by one ("math", "katex", "latex")."""
    chunk = "math katex latex mathematics "
    return _page("<p>" + chunk * (kb * 1024 // len(chunk)) + "</p>")


def dollar_run(kb: int) -> str:
    """One text node of `kb` kilobytes of `$` signs (used to cost ~3 us a byte and hundreds of MB)."""
    script = "<script>MathJax={tex:{inlineMath:[['$','$']]}}</script>"
    return f"<html><head>{script}</head><body><p>{'$' * (kb * 1024)}</p></body></html>"


def tex_openings(kb: int) -> str:
    """`kb` kilobytes of `\\(` and `\\[` openings that never close: the rule scorer's span regex used to read
    2,000 characters ahead from each one."""
    chunk = "\\( a \\[ b "
    return _page("<p>The cost: " + chunk * (kb * 1024 // len(chunk)) + "</p>")


def begin_flood(kb: int) -> str:
    """`kb` kilobytes of `\\begin{align}` and `$$` openings that never close, one line, in main content."""
    chunk = "\\begin{align} x &= $$ y \\\\ "
    return _page("<article><p>Proof. " + chunk * (kb * 1024 // len(chunk)) + "</p></article>")


def mathml_text(kb: int) -> str:
    """MathML without TeX source whose tokens hold `kb` kilobytes of letters: the converter's join used to
    rescan the run of letters it had written for every character it added."""
    letters = "abcdefghij" * (kb * 1024 // 20)
    return _page(f"<p>Let <math><mn>{letters}</mn><mi>x</mi></math> and <math>{letters}</math>.</p>")


def deep_nesting(n: int) -> str:
    """n blocks, each nested 250 elements deep with a formula at the bottom: every per-element pass and
    every ancestor walk must stay linear however the page nests."""
    depth = 250
    block = '<div class="math">' * depth + "x \\(a_1\\) and $$b$$ <math><mi>y</mi></math>" + "</div>" * depth
    return _page(block * n)


# kind -> (generator, size at scale 1)
KINDS: dict[str, tuple[Callable[[int], str], int]] = {
    "math_scripts": (math_scripts, 12_500),
    "katex_formulas": (katex_formulas, 1_000),
    "deep_mathml": (deep_mathml, 25),
    "long_line": (long_line, 128),
    "long_script": (long_script, 128),
    "huge_table": (huge_table, 1_000),
    "katex_config": (katex_config, 64),
    "many_delimiters": (many_delimiters, 1_000),
    "dollar_run": (dollar_run, 128),
    "tex_openings": (tex_openings, 128),
    "begin_flood": (begin_flood, 128),
    "mathml_text": (mathml_text, 16),
    "math_words": (math_words, 128),
    "deep_nesting": (deep_nesting, 20),
}


def ordinary_page(i: int) -> str:
    """A short page of prose with a formula: what the job should keep, whatever sits next to it."""
    return _page(
        f"<article><h1>Note {i}</h1><p>The roots of \\(x^2 - {i + 3}x + {3 * i}= 0\\) follow from the "
        "quadratic formula $$x = \\frac{-b \\pm \\sqrt{b^2-4ac}}{2a},$$ which every student of algebra "
        "learns early; the discriminant decides whether they are real.</p></article>"
    )


def _seconds(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def time_page(analyser: PageAnalyser, html: str) -> tuple[float, float, str]:
    """(math rewrite seconds, whole per-page path seconds, its slowest stage) for one page."""
    rewrite = _seconds(lambda: latexify_tree(parse_html(html)))  # type: ignore[arg-type]
    stages: Counter[str] = Counter()
    whole = _seconds(
        lambda: route_page(
            html.encode("utf-8"),
            "text/html; charset=utf-8",
            scorer=analyser.math_scorer,
            langid=analyser.langid,
            decision=analyser.decision,
            min_math_score=analyser.min_math_score,
            timings=stages,
        )
    )
    return rewrite, whole, max(stages, key=stages.__getitem__) if stages else ""


def peak_memory(analyser: PageAnalyser, html: str) -> int:
    """Peak bytes Python allocated while routing one page (tracemalloc: slower, so timed separately)."""
    body = html.encode("utf-8")
    tracemalloc.start()
    try:
        analyser.analyse_html(body, "text/html; charset=utf-8")
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def budgeted_seconds(analyser: PageAnalyser, html: str, budget: float) -> tuple[float, bool]:
    """(seconds, timed out) of one page routed under a `budget`-second deadline, as the job routes it."""
    started = time.perf_counter()
    try:
        analyser.analyse_html(html.encode("utf-8"), "text/html; charset=utf-8", None, Deadline.after(budget))
    except PageTimeout:
        return time.perf_counter() - started, True
    return time.perf_counter() - started, False


def run_scaling(
    kinds: list[str], scales: list[int], memory: bool = False, budget: float | None = None
) -> None:
    analyser = PageAnalyser(min_math_score=0.0)  # every page takes the whole route, math extraction included
    analyser.load_models()
    print(
        f"{'kind':<15} {'size':>8} {'kB':>7} {'rewrite s':>10} {'page s':>8} {'us/kB':>7} {'ratio':>6} "
        f"{'slowest':>12}"
        + (f" {'peak MB':>8} {'x page':>7}" if memory else "")
        + (f" {'budgeted s':>10} {'outcome':>8}" if budget else "")
    )
    for kind in kinds:
        make, base = KINDS[kind]
        first = None
        for scale in scales:
            html = make(base * scale)
            kb = len(html.encode("utf-8")) / 1024
            rewrite, whole, slowest = time_page(analyser, html)
            per_kb = whole / kb * 1e6
            first = first or per_kb
            line = (
                f"{kind:<15} {base * scale:>8} {kb:>7.0f} {rewrite:>10.3f} {whole:>8.3f} "
                f"{per_kb:>7.0f} {per_kb / first:>6.2f} {slowest:>12}"
            )
            if memory:
                peak = peak_memory(analyser, html)
                line += f" {peak / 2**20:>8.1f} {peak / (kb * 1024):>7.1f}"
            if budget:
                seconds, timed_out = budgeted_seconds(analyser, html, budget)
                line += f" {seconds:>10.3f} {'timeout' if timed_out else 'done':>8}"
            print(line, flush=True)


def run_job(kinds: list[str], scale: int, budget: float) -> None:
    """The corpus job over one WARC: the largest page of each kind between ordinary pages."""
    from jobs.build_corpus import build_corpus
    from jobs.config import CorpusBuildConfig
    from jobs.spark import run_job as run_spark_job
    from tests.corpus.warcs import write_html_warc

    pages: list[tuple[str, str]] = []
    for i, kind in enumerate(kinds):
        make, base = KINDS[kind]
        pages += [
            (f"https://ok.example/{i}", ordinary_page(i)),
            (f"https://hostile.example/{kind}", make(base * scale)),
        ]
    pages.append(("https://ok.example/last", ordinary_page(len(kinds))))
    with tempfile.TemporaryDirectory(prefix="hostile-") as tmp:
        warc = write_html_warc(Path(tmp) / "hostile.warc.gz", pages)
        config = CorpusBuildConfig(
            input=str(warc),
            output=str(Path(tmp) / "corpus"),
            master="local[1]",
            min_math_score=0.0,
            page_time_budget=budget,
            max_body_bytes=64 << 20,
        )
        started = time.perf_counter()
        stats = run_spark_job(build_corpus, config, "hostile-pages")
        print(f"\njob over {len(pages)} pages ({warc.stat().st_size / 2**20:.1f} MiB gzipped WARC), "
              f"budget {budget} s: {time.perf_counter() - started:.1f} s")  # fmt: skip
        for name, count in sorted(stats["counters"].items()):
            print(f"  {name}: {count}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scales", default="1,2,4,8", help="size multipliers (default: 1,2,4,8)")
    parser.add_argument("--kinds", default=",".join(KINDS), help="page kinds (default: all)")
    parser.add_argument("--memory", action="store_true", help="also the peak Python memory of each page")
    parser.add_argument(
        "--route-budget",
        type=float,
        default=None,
        help="also route each page under this --page-time-budget: its seconds and whether it timed out",
    )
    parser.add_argument("--job", action="store_true", help="also run the corpus job over the largest pages")
    parser.add_argument("--budget", type=float, default=2.0, help="--page-time-budget for --job (default: 2)")
    args = parser.parse_args(argv)
    kinds = [k for k in args.kinds.split(",") if k]
    scales = [int(s) for s in args.scales.split(",") if s]
    run_scaling(kinds, scales, args.memory, args.route_budget)
    if args.job:
        run_job(kinds, max(scales), args.budget)


if __name__ == "__main__":
    main()
