"""Math extraction benchmark: formula recall, math-page decisions, main-text quality, two-stage throughput.

Four measurements, in one run, on ../shared/data:
1. gold formula recall on every html_math/ page with gold (display + inline gold files, whitespace removed):
   math-aware extraction vs plain trafilatura (crawl.extract) vs resiliparse, per page and overall, with the
   extractor the selection chose (crawl.main_content); 1b. gold main-content lines kept on forum threads;
2. prefilter pass/miss rates and the two-stage decision's precision/recall (math pages of html_math/,
   non-math pages of html_general/), with the rule scorer;
3. main-text quality on trafilatura-eval's must / must-not snippets: math-aware vs plain trafilatura;
4. throughput on make_bench_crawl.py's crawl (~2% math), one process (= one core), WARCs read with warcio:
   trafilatura on every page vs the two-stage path (prefilter + fast text + score on every page, math-aware
   extraction on candidates only). The two paths alternate file by file so machine load hits both alike;
   pages/s come from process CPU time (robust to other processes on a shared machine), wall time is shown too.

    .venv/bin/python bench/math_extraction.py [--files 2 --per-file 1000] [--out bench_out/math] [--skip-throughput]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from resiliparse.extract.html2text import extract_plain_text  # noqa: E402
from warcio.archiveiterator import ArchiveIterator  # noqa: E402

from classifiers.math_score import RuleMathScorer  # noqa: E402
from classifiers.metrics import precision_recall  # noqa: E402
from crawl.charset import decode_html  # noqa: E402
from crawl.extract import extract_main_text  # noqa: E402
from crawl.math_eval import (  # noqa: E402
    formula_hits,
    gold_pages,
    gold_text_pages,
    labelled_pages,
    line_recall,
    read_page,
    snippet_pages,
    snippet_score,
)
from crawl.math_extract import extract_fast_text, extract_math_text  # noqa: E402
from pipeline.route import route_page  # noqa: E402

DATA = REPO.parent / "shared" / "data"
BENCH_TOOL = REPO.parent / "shared" / "tools" / "make_bench_crawl.py"


def gold_recall(data: Path) -> dict:
    rows = []
    for page in gold_pages(data):
        html = read_page(page.path)
        ours = extract_math_text(html, page.url)
        rows.append(
            {
                "page": page.name,
                "formulas": len(page.formulas),
                "math_aware": formula_hits(ours.text, page.formulas),
                "extractor": f"{ours.extractor} ({ours.reason})",
                "trafilatura": formula_hits(extract_main_text(html, page.url), page.formulas),
                "resiliparse": formula_hits(extract_plain_text(html, main_content=True), page.formulas),
            }
        )
    total = sum(r["formulas"] for r in rows)
    overall = {k: sum(r[k] for r in rows) / total for k in ("math_aware", "trafilatura", "resiliparse")}
    below = [r["page"] for r in rows if r["math_aware"] < max(r["trafilatura"], r["resiliparse"])]
    print("\n## 1. Gold formula recall (every html_math/ page with gold; whitespace removed)\n")
    print("| page | formulas | math-aware | chosen text | trafilatura | resiliparse |")
    print("|---|---:|---:|---|---:|---:|")
    for r in rows:
        print(
            f"| {r['page']} | {r['formulas']} | {r['math_aware']} | {r['extractor']} | {r['trafilatura']} | "
            f"{r['resiliparse']} |"
        )
    print(
        f"| **overall** | {total} | **{overall['math_aware']:.3f}** | | {overall['trafilatura']:.3f} | "
        f"{overall['resiliparse']:.3f} |"
    )
    print(f"- pages below the better plain extractor: {below or 'none'}")
    return {"pages": rows, "formulas": total, "recall": overall, "below_better_baseline": below}


def thread_recall(data: Path) -> dict:
    """Gold main-content lines kept on magic-html's forum threads and articles (posts kept or lost)."""
    sums: dict[str, dict[str, float]] = {}
    chosen: dict[str, int] = {}
    for page in gold_text_pages(data):
        html = read_page(page.path)
        ours = extract_math_text(html, page.url)
        chosen[ours.extractor] = chosen.get(ours.extractor, 0) + 1
        acc = sums.setdefault(
            page.kind, {"pages": 0, "math_aware": 0.0, "trafilatura": 0.0, "resiliparse": 0.0}
        )
        acc["pages"] += 1
        acc["math_aware"] += line_recall(ours.text, page.lines)
        acc["trafilatura"] += line_recall(extract_main_text(html, page.url), page.lines)
        acc["resiliparse"] += line_recall(extract_plain_text(html, main_content=True), page.lines)
    print("\n## 1b. Gold main-content lines kept (html_general/magic-html, lines of 25+ characters)\n")
    print("| pages | n | math-aware | trafilatura | resiliparse |\n|---|---:|---:|---:|---:|")
    report = {}
    for kind, acc in sums.items():
        n = acc.pop("pages")
        report[kind] = {"pages": n, **{k: v / n for k, v in acc.items()}}
        r = report[kind]
        print(
            f"| {kind} | {n} | **{r['math_aware']:.3f}** | {r['trafilatura']:.3f} | {r['resiliparse']:.3f} |"
        )
    print(f"- text chosen: {chosen}")
    return {**report, "chosen": chosen}


def decisions(data: Path) -> dict:
    scorer = RuleMathScorer()
    rows = []
    for page in labelled_pages(data):
        body = read_page(data / page.file).encode("utf-8")
        decision = route_page(body, "text/html; charset=utf-8", page.url, scorer=scorer).decision
        rows.append(
            {
                "file": page.file,
                "is_math": page.is_math,
                "gold_set": page.gold_set,
                "prefilter_hit": decision.prefilter.hit,
                "math_extracted": decision.extracted,
                "decided_math": decision.is_math,
            }
        )
    return _decision_report(rows)


def _rates(subset: list[dict]) -> dict:
    precision, recall = precision_recall([r["is_math"] for r in subset], [r["decided_math"] for r in subset])
    return {"precision": precision, "recall": recall, "math_pages": sum(r["is_math"] for r in subset)}


def _decision_report(rows: list[dict]) -> dict:
    math = [r for r in rows if r["is_math"]]
    other = [r for r in rows if not r["is_math"]]
    report = {
        "prefilter_pass_nonmath": sum(r["prefilter_hit"] for r in other) / len(other),
        "prefilter_miss_math": sum(not r["prefilter_hit"] for r in math) / len(math),
        "extracted_share": sum(r["math_extracted"] for r in rows) / len(rows),
        "all_math_pages": _rates(rows),
        "non_gold_math_pages": _rates([r for r in rows if not r["gold_set"]]),
        "misses": [r["file"] for r in math if not r["decided_math"]],
        "false_positives": [r["file"] for r in other if r["decided_math"]],
    }
    print("\n## 2. Prefilter and two-stage decision (rule scorer)\n")
    print(f"- pages: {len(math)} math (html_math/), {len(other)} non-math (html_general/)")
    print(
        f"- prefilter passes {report['prefilter_pass_nonmath']:.1%} of non-math pages, misses {report['prefilter_miss_math']:.1%} of math pages"
    )
    print(f"- math-aware extraction ran on {report['extracted_share']:.1%} of these pages")
    for key in ("all_math_pages", "non_gold_math_pages"):
        print(
            f"- {key}: precision {report[key]['precision']:.3f}, recall {report[key]['recall']:.3f} ({report[key]['math_pages']} math pages)"
        )
    print(f"- missed math pages: {report['misses']}")
    print(f"- false positives: {report['false_positives']}")
    return report


def snippet_quality(data: Path) -> dict:
    totals = {"math_aware": [0, 0], "trafilatura": [0, 0], "resiliparse_fast": [0, 0]}
    n_must = n_not = 0
    for page in snippet_pages(data):
        html = read_page(page.path)
        n_must += len(page.must)
        n_not += len(page.must_not)
        for key, text in (
            ("math_aware", extract_math_text(html, page.url).text),
            ("trafilatura", extract_main_text(html, page.url)),
            ("resiliparse_fast", extract_fast_text(html)),
        ):
            found, absent = snippet_score(text, page.must, page.must_not)
            totals[key][0] += found
            totals[key][1] += absent
    print("\n## 3. Main-text quality on trafilatura-eval snippets (non-math pages)\n")
    print(f"| extractor | must found (of {n_must}) | must-not absent (of {n_not}) |\n|---|---:|---:|")
    for key, (found, absent) in totals.items():
        print(f"| {key} | {found} | {absent} |")
    return {
        "must": n_must,
        "must_not": n_not,
        **{k: {"found": v[0], "absent": v[1]} for k, v in totals.items()},
    }


def _records(path: Path):
    with path.open("rb") as fh:
        for record in ArchiveIterator(fh):
            if record.rec_type != "response":
                continue
            body = record.content_stream().read()
            ctype = record.http_headers.get_header("Content-Type") if record.http_headers else None
            yield record.rec_headers.get_header("WARC-Target-URI"), body, ctype


def _baseline_pass(path: Path) -> tuple[int, float, float]:
    cpu, wall, n = time.process_time(), time.perf_counter(), 0
    for url, body, ctype in _records(path):
        extract_main_text(decode_html(body, ctype).text, url)
        n += 1
    return n, time.process_time() - cpu, time.perf_counter() - wall


def _two_stage_pass(path: Path, scorer: RuleMathScorer, decided: dict[str, bool], extracted: list[int]):
    cpu, wall, n = time.process_time(), time.perf_counter(), 0
    for url, body, ctype in _records(path):
        decision = route_page(body, ctype, url, scorer=scorer).decision
        decided[url] = decision.is_math
        extracted[0] += decision.extracted
        n += 1
    return n, time.process_time() - cpu, time.perf_counter() - wall


def throughput(crawl: Path) -> dict:
    warcs = sorted(crawl.glob("*.warc.gz"))
    manifest = [json.loads(line) for line in (crawl / "manifest.jsonl").read_text().splitlines()]
    truth = {m["url"]: m["is_math"] for m in manifest}
    scorer = RuleMathScorer()
    decided: dict[str, bool] = {}
    extracted = [0]
    base = [0, 0.0, 0.0]
    two = [0, 0.0, 0.0]
    for warc in warcs:  # alternate so that load on the shared machine hits both paths alike
        for acc, result in (
            (base, _baseline_pass(warc)),
            (two, _two_stage_pass(warc, scorer, decided, extracted)),
        ):
            for i in range(3):
                acc[i] += result[i]
    urls = list(truth)
    precision, recall = precision_recall([truth[u] for u in urls], [decided.get(u, False) for u in urls])
    report = {
        "records": base[0],
        "math_records": sum(truth.values()),
        "trafilatura_pages_per_cpu_s": base[0] / base[1],
        "two_stage_pages_per_cpu_s": two[0] / two[1],
        "speedup_cpu": (two[0] / two[1]) / (base[0] / base[1]),
        "trafilatura_pages_per_wall_s": base[0] / base[2],
        "two_stage_pages_per_wall_s": two[0] / two[2],
        "speedup_wall": (two[0] / two[2]) / (base[0] / base[2]),
        "extracted_share": extracted[0] / max(two[0], 1),
        "math_precision": precision,
        "math_recall": recall,
    }
    print("\n## 4. Throughput, one core (make_bench_crawl.py crawl, ~2% math)\n")
    print(
        f"- {report['records']} records ({report['math_records']} math) in {len(warcs)} WARC files, read with warcio"
    )
    print("| path | pages/s (CPU time) | pages/s (wall) |\n|---|---:|---:|")
    print(
        f"| trafilatura on every page | {report['trafilatura_pages_per_cpu_s']:.1f} | {report['trafilatura_pages_per_wall_s']:.1f} |"
    )
    print(
        f"| two-stage | {report['two_stage_pages_per_cpu_s']:.1f} | {report['two_stage_pages_per_wall_s']:.1f} |"
    )
    print(f"- speedup: **{report['speedup_cpu']:.2f}x** (CPU time), {report['speedup_wall']:.2f}x (wall)")
    print(f"- math-aware extraction ran on {report['extracted_share']:.1%} of records")
    print(f"- math decision on the crawl: precision {precision:.3f}, recall {recall:.3f}")
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=2)
    ap.add_argument("--per-file", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=REPO / "bench_out" / "math")
    ap.add_argument(
        "--crawl", type=Path, default=None, help="an existing make_bench_crawl.py output to reuse"
    )
    ap.add_argument("--skip-throughput", action="store_true")
    args = ap.parse_args()
    if not DATA.is_dir():
        sys.exit(f"shared test data not found at {DATA}")
    results = {
        "gold_recall": gold_recall(DATA),
        "thread_recall": thread_recall(DATA),
        "decisions": decisions(DATA),
        "snippets": snippet_quality(DATA),
    }
    if not args.skip_throughput:
        with tempfile.TemporaryDirectory(prefix="mathforge-bench-crawl-") as tmp:
            crawl = args.crawl
            if crawl is None:
                crawl = Path(tmp)
                subprocess.run(
                    [sys.executable, str(BENCH_TOOL), "--out", str(crawl), "--files", str(args.files),
                     "--per-file", str(args.per_file)],
                    check=True,
                    stdout=subprocess.DEVNULL,
                )  # fmt: skip
            results["throughput"] = throughput(crawl)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nresults: {args.out / 'results.json'}")


if __name__ == "__main__":
    main()
