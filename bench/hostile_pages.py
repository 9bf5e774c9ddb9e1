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
- huge_table: a table of N rows of 10 cells, each cell an inline formula.

For each size it prints the page's bytes, the seconds of the math rewrite (parse + latexify) and of the
whole per-page path (`PageAnalyser.analyse_html`, what a Spark task runs per page), and the whole path's
microseconds per kB: flat when the cost is linear (the ratio column compares each size with the smallest).
With --job, the largest page of each kind goes into one WARC between ordinary pages and the corpus job runs
over it (Spark local[1], `--page-time-budget`): it finishes, and the pages over budget are counted.

    .venv/bin/python bench/hostile_pages.py [--scales 1,2,4,8] [--kinds math_scripts,...] [--job] [--budget 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from crawl.math_markup import latexify_tree, parse_html  # noqa: E402
from jobs.corpus_pipeline import PageAnalyser  # noqa: E402

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


# kind -> (generator, size at scale 1)
KINDS: dict[str, tuple[Callable[[int], str], int]] = {
    "math_scripts": (math_scripts, 12_500),
    "katex_formulas": (katex_formulas, 1_000),
    "deep_mathml": (deep_mathml, 25),
    "long_line": (long_line, 128),
    "long_script": (long_script, 128),
    "huge_table": (huge_table, 1_000),
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


def time_page(analyser: PageAnalyser, html: str) -> tuple[float, float]:
    """(math rewrite seconds, whole per-page path seconds) for one page."""
    rewrite = _seconds(lambda: latexify_tree(parse_html(html)))  # type: ignore[arg-type]
    whole = _seconds(lambda: analyser.analyse_html(html.encode("utf-8"), "text/html; charset=utf-8"))
    return rewrite, whole


def run_scaling(kinds: list[str], scales: list[int]) -> None:
    analyser = PageAnalyser()
    analyser.load_models()
    print(f"{'kind':<15} {'size':>8} {'kB':>7} {'rewrite s':>10} {'page s':>8} {'us/kB':>7} {'ratio':>6}")
    for kind in kinds:
        make, base = KINDS[kind]
        first = None
        for scale in scales:
            html = make(base * scale)
            kb = len(html.encode("utf-8")) / 1024
            rewrite, whole = time_page(analyser, html)
            per_kb = whole / kb * 1e6
            first = first or per_kb
            print(
                f"{kind:<15} {base * scale:>8} {kb:>7.0f} {rewrite:>10.3f} {whole:>8.3f} "
                f"{per_kb:>7.0f} {per_kb / first:>6.2f}",
                flush=True,
            )


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
    parser.add_argument("--job", action="store_true", help="also run the corpus job over the largest pages")
    parser.add_argument("--budget", type=float, default=2.0, help="--page-time-budget for --job (default: 2)")
    args = parser.parse_args(argv)
    kinds = [k for k in args.kinds.split(",") if k]
    scales = [int(s) for s in args.scales.split(",") if s]
    run_scaling(kinds, scales)
    if args.job:
        run_job(kinds, max(scales), args.budget)


if __name__ == "__main__":
    main()
