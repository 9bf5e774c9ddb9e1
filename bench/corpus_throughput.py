"""Throughput of the corpus job: pages/s per core, and where the time goes.

Two measurements on the same crawl, in one run:
1. stage profile, one process on one core: WARC reading, then the job's own page route
   (`pipeline.route.route_page`: charset decoding, raw-HTML prefilter, fast text pass, math scoring, math-aware
   extraction where the route sends a page to it, language ID), then Parquet writing, each stage timed
   separately (shares of the total);
2. the Spark job end to end in local[1] (one core), from the job's own wall time, and in local[2].
Both run the job's default mode (the two-stage math verdict), the mode whose cost the reference figures in
DESIGN.md describe; `--min-math-score 0` publishes every page's main text, so it extracts every page.

The crawl is ../shared/tools/make_bench_crawl.py's (real pages, 2% math; the one the reference figures in
DESIGN.md were measured on) when ../shared is present, else the generated sample crawl.

    .venv/bin/python bench/corpus_throughput.py [--files 2 --per-file 500] [--out bench_out/corpus]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from classifiers.langid import LanguageIdentifier  # noqa: E402
from classifiers.math_score import RuleMathScorer  # noqa: E402
from crawl.inputs import resolve_inputs  # noqa: E402
from crawl.warc import read_html_responses  # noqa: E402
from pipeline.filters import PageFilterConfig, drop_reason, page_filters  # noqa: E402
from pipeline.route import route_page  # noqa: E402

BENCH_TOOL = REPO.parent / "shared" / "tools" / "make_bench_crawl.py"


def make_crawl(dest: Path, files: int, per_file: int) -> tuple[Path, str]:
    if BENCH_TOOL.is_file():
        subprocess.run(
            [
                sys.executable,
                str(BENCH_TOOL),
                "--out",
                str(dest),
                "--files",
                str(files),
                "--per-file",
                str(per_file),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        return dest, f"make_bench_crawl.py ({files} x {per_file} real pages, 2% math)"
    from samplecrawl.writer import write_sample_crawl

    write_sample_crawl(dest, n_files=files, records_per_file=per_file)
    return dest, f"generated sample crawl ({files} x {per_file})"


def stage_profile(paths: list[str]) -> dict:
    """Time each stage of the job's per-page route on one core (`route_page` times its own stages)."""
    lid, scorer, filters = LanguageIdentifier(), RuleMathScorer(), page_filters(PageFilterConfig())
    lid.predict("warm up")
    t: Counter = Counter()
    rows: list[dict] = []
    counters: Counter = Counter()
    extracted = 0
    for path in paths:
        iterator = read_html_responses(path, counters)
        while True:
            t0 = time.perf_counter()
            response = next(iterator, None)
            t["read"] += time.perf_counter() - t0
            if response is None:
                break
            page = route_page(
                response.body, response.content_type, response.url, scorer=scorer, langid=lid, timings=t
            )
            extracted += page.math_extracted
            if drop_reason(filters, page) is None:  # the pages the job would write
                rows.append(
                    {"url": page.url, "lang": page.lang, "math_score": page.math_score, "text": page.text}
                )
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        pq.write_table(pa.Table.from_pylist(rows), f"{tmp}/part.parquet", compression="zstd")
    t["write"] = time.perf_counter() - t0
    total = sum(t.values())
    pages = counters["html_responses"]
    return {
        "pages": pages,
        "records": counters["records"],
        "math_extracted_pages": extracted,
        "seconds": round(total, 2),
        "pages_per_s_per_core": round(pages / total, 1),
        "stage_seconds": {k: round(v, 3) for k, v in t.items()},
        "stage_share": {k: round(v / total, 3) for k, v in t.items()},
        "stage_pages_per_s": {k: round(pages / v, 1) for k, v in t.items() if v > 0},
    }


def spark_run(paths_spec: str, cores: int, out: Path) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "mathforge.cli",
        "corpus",
        "build",
        "--input",
        paths_spec,
        "--output",
        str(out),
        "--master",
        f"local[{cores}]",
        "--overwrite",
    ]
    started = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    stats = json.loads((out / "stats.json").read_text())
    pages = stats["counters"].get("html_responses", 0)
    return {
        "cores": cores,
        "pages": pages,
        "job_seconds": stats["seconds"],
        "process_seconds": round(wall, 2),
        "pages_per_s_per_core": round(pages / stats["seconds"] / cores, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=2)
    parser.add_argument("--per-file", type=int, default=500)
    parser.add_argument("--out", default=str(REPO / "bench_out" / "corpus"))
    parser.add_argument("--skip-spark", action="store_true")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    crawl, description = make_crawl(out / "crawl", args.files, args.per_file)
    paths = resolve_inputs(str(crawl))
    print(f"crawl: {description}; {len(paths)} files", flush=True)

    profile = stage_profile(paths)
    print(
        f"\nstage profile, 1 process / 1 core: {profile['pages']} HTML pages in {profile['seconds']} s "
        f"= {profile['pages_per_s_per_core']} pages/s per core; math-aware extraction ran on "
        f"{profile['math_extracted_pages']} of them"
    )
    print("| stage | seconds | share | pages/s |\n| --- | ---: | ---: | ---: |")
    for stage, secs in profile["stage_seconds"].items():
        print(
            f"| {stage} | {secs:.2f} | {profile['stage_share'][stage]:.1%} | {profile['stage_pages_per_s'].get(stage, 0):,.0f} |"
        )

    result = {"crawl": description, "stage_profile": profile}
    if not args.skip_spark:
        result["spark"] = [spark_run(str(crawl), cores, out / f"corpus_local{cores}") for cores in (1, 2)]
        print("\nSpark job, end to end (job wall time, JVM start excluded):")
        print(
            "| master | pages | job s | process s | pages/s per core |\n| --- | ---: | ---: | ---: | ---: |"
        )
        for r in result["spark"]:
            print(
                f"| local[{r['cores']}] | {r['pages']} | {r['job_seconds']} | {r['process_seconds']} | "
                f"{r['pages_per_s_per_core']} |"
            )
    (out / "corpus_throughput.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten: {out / 'corpus_throughput.json'}")


if __name__ == "__main__":
    main()
