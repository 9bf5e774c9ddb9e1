"""Code extraction benchmark: exact-line recall of the code blocks of real pages, before and after marking code.

Gold code blocks: `crawl.code_eval` (the shared pages with `<pre>`-like blocks, gold from the readability
articles, magic-html's gold text, or the whole page).

For each page and each path (trafilatura's text, resiliparse's main-content text, the whole-page fallback,
and the selection `extract_math_text` publishes), two recalls of the gold lines (a multiset: each output line
matches one gold line):
- fenced: found as a line inside a fenced block ("```lang" ... "```") of the output, exactly;
- any: found as a line anywhere in the output, exactly (indentation included).
"before" runs the publishing path without `crawl.code_markup` (as it was), "after" with it. Also: the share
of fenced blocks that name a language, and the CPU time of the code rewrite per page.

With --hostile, also the cost of hostile code pages as they grow (CPU seconds of the code rewrite alone and
of the whole `extract_math_text`, and microseconds per kB: flat when linear): one Pygments block of N lines,
N blocks side by side (bare, and each in a `<figure>`), N inline code spans holding `$`, N lines each nested 200 spans deep, N `<pre><code>`
openings never closed, and a block of N backtick runs of growing length (its fence).

    .venv/bin/python bench/code_extraction.py [--data ../shared/data] [--per-page] [--json OUT] [--hostile]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from crawl.code_eval import code_pages, extractor_texts, fence_languages, fenced_lines, prepared, recall  # noqa: E402
from crawl.math_eval import read_page  # noqa: E402
from crawl.math_extract import extract_math_text  # noqa: E402

DATA = REPO.parent / "shared" / "data"


def run(data: Path, per_page: bool) -> dict:
    pages = code_pages(data)
    totals: dict[str, Counter] = {}
    rows = []
    rewrite_seconds = 0.0
    for page in pages:
        html = read_page(page.path)
        row: dict = {"page": page.name, "blocks": len(page.blocks), "lines": sum(map(len, page.blocks))}
        for when in ("before", "after"):
            texts, seconds = extractor_texts(html, page.url, code=when == "after")
            if when == "after":
                rewrite_seconds += seconds
            for path, text in texts.items():
                acc = totals.setdefault(f"{when}/{path}", Counter())
                fenced, total = recall(page.blocks, fenced_lines(text))
                anywhere, _ = recall(page.blocks, [line.rstrip() for line in text.split("\n")])
                blocks, named = fence_languages(text)
                acc.update(fenced=fenced, any=anywhere, total=total, blocks=blocks, named=named)
                row[f"{when}/{path}"] = (fenced, anywhere, total)
        rows.append(row)
        if per_page:
            print(json.dumps(row), flush=True)
    summary = {
        key: {
            "fenced_recall": round(acc["fenced"] / acc["total"], 4),
            "any_line_recall": round(acc["any"] / acc["total"], 4),
            "fenced_blocks": acc["blocks"],
            "with_language": acc["named"],
        }
        for key, acc in totals.items()
    }
    return {
        "pages": len(pages),
        "gold_blocks": sum(len(p.blocks) for p in pages),
        "gold_lines": sum(sum(map(len, p.blocks)) for p in pages),
        "code_rewrite_ms_per_page": round(1000 * rewrite_seconds / max(1, len(pages)), 2),
        "recall": summary,
        "rows": rows,
    }


def _hostile_page(kind: str, n: int) -> str:
    if kind == "huge_block":
        line = '<span class="k">def</span> <span class="nf">f</span>(x):  <span class="c"># $x$</span>\n'
        body = '<div class="highlight"><pre>' + line * n + "</pre></div>"
    elif kind == "many_blocks":
        body = '<pre class="language-py"><code>a = 1\n    b = $x$</code></pre>' * n
    elif kind == "many_figures":
        body = (
            "<div>"
            + '<figure class="highlight"><pre><code>a = 1\n  b = 2</code></pre></figure>' * n
            + "</div>"
        )
    elif kind == "many_inline":
        body = "<p>" + "run <code>echo $HOME</code> now " * n + "</p>"
    elif kind == "deep_spans":
        body = "<pre>" + ("<span>" * 200 + "x = 1" + "</span>" * 200 + "\n") * n + "</pre>"
    elif kind == "unclosed":
        body = "<pre><code><span>line $a$\n" * n
    elif kind == "backtick_runs":
        body = "<pre>" + "".join("`" * (i % 50 + 1) + "\n" for i in range(n)) + "</pre>"
    else:
        raise ValueError(kind)
    return f"<html><body><article><p>{'Prose around the code. ' * 20}</p>{body}</article></body></html>"


HOSTILE_KINDS = (
    "huge_block",
    "many_blocks",
    "many_figures",
    "many_inline",
    "deep_spans",
    "unclosed",
    "backtick_runs",
)


def hostile(sizes: tuple[int, ...] = (1_000, 4_000, 16_000)) -> None:
    print(f"{'kind':<14}{'n':>8}{'kB':>8}{'rewrite s':>11}{'extract s':>11}{'us/kB':>9}")
    for kind in HOSTILE_KINDS:
        for n in sizes:
            html = _hostile_page(kind, n)
            _, _, rewrite = prepared(html)
            started = time.process_time()
            extract_math_text(html)
            seconds = time.process_time() - started
            kb = len(html) / 1000
            print(
                f"{kind:<14}{n:>8}{kb:>8.0f}{rewrite:>11.3f}{seconds:>11.3f}{1e6 * seconds / kb:>9.0f}",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--per-page", action="store_true", help="print each page's figures as it goes")
    parser.add_argument("--json", type=Path, help="write the full result here")
    parser.add_argument("--hostile", action="store_true", help="also time hostile code pages as they grow")
    args = parser.parse_args()
    result = run(args.data, args.per_page)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    print(
        f"{result['pages']} pages, {result['gold_blocks']} gold code blocks, {result['gold_lines']} gold lines"
    )
    print(f"code rewrite: {result['code_rewrite_ms_per_page']} ms CPU per page")
    print(f"{'path':<24}{'fenced recall':>15}{'any-line recall':>17}{'fenced blocks':>15}{'with lang':>11}")
    for key, row in sorted(result["recall"].items()):
        print(
            f"{key:<24}{row['fenced_recall']:>15.3f}{row['any_line_recall']:>17.3f}"
            f"{row['fenced_blocks']:>15}{row['with_language']:>11}"
        )
    if args.hostile:
        hostile()


if __name__ == "__main__":
    main()
