"""Math-aware extraction, a past revision against the working tree in one run: same pages, same outputs, CPU time.

Speed figures on a shared machine only mean something side by side, so both extractions run in this one
process: the baseline is `crawl.math_extract` and the modules it calls at a git revision (default a269445, the
code before issue 26), written from git into a temporary package whose imports of those modules are pointed
at each other. Pages:
- `candidates`: the pages `pipeline.route.route_page` sends to math extraction on a make_bench_crawl.py
  crawl (~27 per 1,000 records; the route's own rule decides, with the rule scorer);
- `html_math`: every page of ../shared/data/html_math.
Each page is extracted by both, in alternating order, `--repeat` times; the figures are process CPU time
(robust to other processes on a shared machine). Any page whose text, extractor, reason or formula count
differs is listed: the speed work promises none.

    .venv/bin/python bench/extraction_speed.py [--crawl /tmp/bc] [--rev a269445] [--repeat 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


from classifiers.math_score import RuleMathScorer  # noqa: E402
from crawl.charset import decode_html  # noqa: E402
from crawl.math_eval import read_page  # noqa: E402
from crawl.math_extract import extract_math_text  # noqa: E402
from crawl.warc import read_html_responses  # noqa: E402
from pipeline.route import route_page  # noqa: E402

DATA = REPO.parent / "shared" / "data"
BENCH_TOOL = REPO.parent / "shared" / "tools" / "make_bench_crawl.py"
# The extraction and every module of it that the speed work may change; others (crawl.deadline) are shared.
MODULES = ("math_extract", "math_markup", "main_content", "code_markup", "mathml_tex", "extract")
BASELINE_PACKAGE = "mathforge_extraction_baseline"

Page = tuple[str, str]  # (url, decoded html)
Extract = Callable[[str, str], object]


def baseline_extract(rev: str, into: Path) -> Extract:
    """`extract_math_text` as it was at `rev`, importable beside the working tree's."""
    package = into / BASELINE_PACKAGE
    package.mkdir()
    (package / "__init__.py").write_text("")
    imports = re.compile(r"^from crawl\.(" + "|".join(MODULES) + r") import", re.M)
    for name in MODULES:
        source = subprocess.run(
            ["git", "show", f"{rev}:crawl/{name}.py"], cwd=REPO, check=True, capture_output=True, text=True
        ).stdout
        (package / f"{name}.py").write_text(imports.sub(rf"from {BASELINE_PACKAGE}.\1 import", source))
    sys.path.insert(0, str(into))
    return importlib.import_module(f"{BASELINE_PACKAGE}.math_extract").extract_math_text


def candidate_pages(crawl: Path) -> tuple[list[Page], int]:
    """The pages the route sends to math extraction, and how many records were routed."""
    scorer = RuleMathScorer()
    pages: list[Page] = []
    records = 0
    for warc in sorted(crawl.glob("*.warc.gz")):
        for response in read_html_responses(str(warc), Counter()):
            records += 1
            body, ctype, url = response.body, response.content_type, response.url
            if route_page(body, ctype, url, scorer=scorer).math_extracted:
                pages.append((url, decode_html(body, ctype).text))
    return pages, records


def shared_math_pages(data: Path) -> list[Page]:
    paths = sorted(p for p in (data / "html_math").rglob("*") if p.name.endswith((".html", ".html.gz")))
    return [(f"https://shared.example/{p.name}", read_page(p)) for p in paths]


def _fields(result: object) -> tuple:
    return (result.text, result.extractor, result.reason, result.formulas)  # type: ignore[attr-defined]


def compare(pages: list[Page], old: Extract, new: Extract, repeat: int) -> dict:
    """CPU seconds of each over `repeat` rounds (the order alternating by page and round), and the pages
    whose outputs differ."""
    cpu = {"old": 0.0, "new": 0.0}
    differ: list[str] = []
    for round_ in range(repeat):
        for i, (url, html) in enumerate(pages):
            order = ("old", "new") if (i + round_) % 2 else ("new", "old")
            out = {}
            for which in order:
                fn = old if which == "old" else new
                started = time.process_time()
                out[which] = _fields(fn(html, url))
                cpu[which] += time.process_time() - started
            if round_ == 0 and out["old"] != out["new"]:
                differ.append(url)
    n = len(pages) * repeat
    return {
        "pages": len(pages),
        "old_ms_per_page": 1000 * cpu["old"] / n,
        "new_ms_per_page": 1000 * cpu["new"] / n,
        "speedup": cpu["old"] / cpu["new"],
        "differing_pages": differ,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--crawl", type=Path, help="a make_bench_crawl.py output (default: make one, 2 x 1000)")
    ap.add_argument("--rev", default="a269445", help="the baseline revision")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="mathforge-extraction-speed-") as tmp:
        old = baseline_extract(args.rev, Path(tmp))
        crawl = args.crawl
        if crawl is None:
            crawl = Path(tmp) / "crawl"
            print("making a benchmark crawl (2 x 1000 records) ...", flush=True)
            subprocess.run(
                [sys.executable, str(BENCH_TOOL), "--out", str(crawl), "--files", "2", "--per-file", "1000"],
                check=True,
                stdout=subprocess.DEVNULL,
            )
        print(f"routing {crawl} to find the math-extraction candidates ...", flush=True)
        candidates, records = candidate_pages(crawl)
        sets = {"candidates": candidates, "html_math": shared_math_pages(DATA)}
        results: dict = {"rev": args.rev, "repeat": args.repeat, "crawl_records": records}
        print(f"\n## Math-aware extraction: {args.rev} vs working tree, one process, CPU time\n")
        print("| pages | n | before ms/page | after ms/page | speedup | pages with other output |")
        print("|---|---:|---:|---:|---:|---:|")
        for name, pages in sets.items():
            r = results[name] = compare(pages, old, extract_math_text, args.repeat)
            print(
                f"| {name} | {r['pages']} | {r['old_ms_per_page']:.1f} | {r['new_ms_per_page']:.1f} | "
                f"**{r['speedup']:.2f}x** | {len(r['differing_pages'])} |"
            )
        print(f"\n- candidates: {len(candidates)} of {records} records")
        for name in sets:
            for url in results[name]["differing_pages"]:
                print(f"- other output ({name}): {url}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
