"""The cheap per-page stages of the route, this tree against a baseline commit, in one process.

Charset decoding (`crawl.charset.decode_html`), the raw-HTML prefilter (`crawl.prefilter.math_prefilter`),
the rule score (`classifiers.math_score.RuleMathScorer`: stage one on the first 20,000 characters of the fast
text of every page, and the final score of the math-aware text of the pages the route extracts) and the
language-ID input (`classifiers.langid.prepare_text`) run on every page of a benchmark crawl, old and new
alternately, and each stage's best-of-N process CPU time is reported with the ratio. Outputs are compared
too: a stage whose old and new results differ on any page is reported (the rewrite promises the same ones).

The baseline modules come from `git show REV:path` into a temporary folder, so nothing old lives in the tree.

    .venv/bin/python bench/route_stages.py --crawl /tmp/bc [--baseline a269445] [--repeats 5]
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from classifiers import langid, math_score  # noqa: E402
from crawl import charset, prefilter  # noqa: E402
from crawl.math_extract import extract_fast_text, extract_math_text  # noqa: E402
from crawl.warc import read_html_responses  # noqa: E402
from pipeline.math_decision import MathDecisionConfig  # noqa: E402

MODULES = {
    "charset": "crawl/charset.py",
    "prefilter": "crawl/prefilter.py",
    "math_score": "classifiers/math_score.py",
    "langid": "classifiers/langid.py",
}


def baseline_modules(rev: str, folder: Path) -> dict[str, ModuleType]:
    """The four modules as they were at `rev`, imported under private names."""
    modules = {}
    for name, path in MODULES.items():
        source = subprocess.run(
            ["git", "-C", str(REPO), "show", f"{rev}:{path}"], check=True, capture_output=True, text=True
        ).stdout
        file = folder / f"baseline_{name}.py"
        file.write_text(source)
        spec = importlib.util.spec_from_file_location(f"baseline_{name}", file)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up
        spec.loader.exec_module(module)
        modules[name] = module
    return modules


def load_pages(crawl: Path, limit: int | None) -> list[tuple[bytes, str]]:
    pages: list[tuple[bytes, str]] = []
    for path in sorted(crawl.glob("*.warc.gz")):
        pages += [(r.body, r.content_type) for r in read_html_responses(str(path), Counter())]
    return pages[:limit]


def best_cpu(fn: Callable[[object], object], inputs: Sequence[object], unpack: bool) -> float:
    started = time.process_time()
    for item in inputs:
        fn(*item) if unpack else fn(item)
    return time.process_time() - started


def compare(
    name: str,
    old: Callable,
    new: Callable,
    inputs: Sequence,
    repeats: int,
    same: Callable[[object, object], bool],
    unpack: bool = False,
) -> dict:
    """Best-of-`repeats` CPU seconds of old and new (alternating), and on how many inputs they differ."""
    differ = sum(not same(old(*x) if unpack else old(x), new(*x) if unpack else new(x)) for x in inputs)
    t_old = t_new = float("inf")
    for _ in range(repeats):
        t_old = min(t_old, best_cpu(old, inputs, unpack))
        t_new = min(t_new, best_cpu(new, inputs, unpack))
    n = max(len(inputs), 1)
    row = {
        "stage": name,
        "inputs": len(inputs),
        "old_ms": 1e3 * t_old / n,
        "new_ms": 1e3 * t_new / n,
        "ratio": t_old / t_new if t_new else float("inf"),
        "differ": differ,
    }
    print(
        f"| {name} | {len(inputs)} | {row['old_ms']:.3f} | {row['new_ms']:.3f} | {row['ratio']:.2f}x "
        f"| {differ} |",
        flush=True,
    )
    return row


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crawl", type=Path, required=True, help="folder of *.warc.gz (make_bench_crawl.py)")
    parser.add_argument("--baseline", default="a269445", help="commit to compare against")
    parser.add_argument("--repeats", type=int, default=5, help="best of this many passes per stage")
    parser.add_argument("--limit", type=int, default=None, help="first N pages only")
    args = parser.parse_args(argv)

    pages = load_pages(args.crawl, args.limit)
    print(f"{len(pages)} pages from {args.crawl}; baseline {args.baseline}", flush=True)
    config = MathDecisionConfig()
    htmls = [charset.decode_html(body, ctype).text for body, ctype in pages]
    fast = [extract_fast_text(html)[: config.stage_one_chars] for html in htmls]
    scorer = math_score.RuleMathScorer()
    extracted = sorted(
        {i for i, (body, _) in enumerate(pages) if prefilter.math_prefilter(body).hit}
        | {i for i, text in enumerate(fast) if scorer.score(text) >= config.stage_one_threshold}
    )
    print(
        f"{len(extracted)} pages go to math-aware extraction (prefilter hit or stage-one score)", flush=True
    )
    final = [extract_math_text(htmls[i]).text for i in extracted]

    with tempfile.TemporaryDirectory() as folder:
        old = baseline_modules(args.baseline, Path(folder))
        old_scorer = old["math_score"].RuleMathScorer()
        print("| stage | inputs | old ms | new ms | old/new | differ |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        compare(
            "decode",
            old["charset"].decode_html,
            charset.decode_html,
            pages,
            args.repeats,
            lambda a, b: (a.text, a.charset, a.source, a.refused) == (b.text, b.charset, b.source, b.refused),
            unpack=True,
        )
        compare(
            "prefilter",
            old["prefilter"].math_prefilter,
            prefilter.math_prefilter,
            [body for body, _ in pages],
            args.repeats,
            lambda a, b: a.as_dict() == b.as_dict(),
        )
        compare("score (stage one)", old_scorer.score, scorer.score, fast, args.repeats, float.__eq__)
        compare("score (final)", old_scorer.score, scorer.score, final, args.repeats, float.__eq__)
        langid_input = [(text, 2000) for text in final + fast]
        compare(
            "langid input",
            old["langid"].prepare_text,
            langid.prepare_text,
            langid_input,
            args.repeats,
            str.__eq__,
            unpack=True,
        )


if __name__ == "__main__":
    main()
