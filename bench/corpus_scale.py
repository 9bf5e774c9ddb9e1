"""The corpus jobs at two sizes: which costs grow with the data, and which must not.

Each job runs as its own process with Spark's event log on (`jobs/event_log.py` reads it), at 1× and at N×
the input (default 8×): WARC files of the benchmark crawl (real pages, `../shared/tools/make_bench_crawl.py`)
or the generated sample crawl. Per job and size it reports wall time, Spark jobs and tasks, the widest
stage, the bytes tasks returned to the driver, shuffle bytes, the Python driver's peak RSS, and per phase
(`jobs.spark.job_phase`) the same; then the N×/1× ratio of each, which is what the capacity plan in
docs/capacity.md extrapolates from. The driver-bound figures should stay flat; tasks, shuffle and executor
time should grow about N×.

    .venv/bin/python bench/corpus_scale.py [--files 2 --per-file 500 --scale 8] [--jobs build,refresh]
        [--master local[2]] [--out bench_out/scale]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.corpus_throughput import make_crawl  # noqa: E402
from jobs.event_log import application_logs, event_log_conf, read_app_cost  # noqa: E402
from samplecrawl.writer import write_sample_crawl  # noqa: E402

# Runs a mathforge command in this process and prints the Python driver's peak RSS (bytes) last.
RUNNER = (
    "import json, resource, sys\n"
    "from mathforge.cli import main\n"
    "try:\n"
    "    main(sys.argv[1:])\n"
    "finally:\n"
    "    print(json.dumps({'driver_rss': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))\n"
)
METRICS = ("wall_s", "jobs", "tasks", "max_stage_tasks", "result_bytes", "shuffle_bytes", "driver_rss")
SIZES = ("inputs", "pages", "documents")


def run_job(argv: list[str], events: Path, log: Path) -> dict[str, Any]:
    """One mathforge Spark command with its event log in `events`; its cost."""
    events.mkdir(parents=True, exist_ok=True)
    conf = [flag for kv in event_log_conf(events) for flag in ("--conf", kv)]
    started = time.perf_counter()
    with log.open("w") as fh:
        proc = subprocess.run(
            [sys.executable, "-c", RUNNER, *argv, *conf],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=fh,
            text=True,
        )
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}); see {log}")
    rss = json.loads(proc.stdout.strip().splitlines()[-1])["driver_rss"]
    app = read_app_cost(application_logs(events)[-1])
    return {
        "wall_s": round(wall, 1),
        "jobs": app.jobs,
        "tasks": app.tasks,
        "max_stage_tasks": app.max_stage_tasks,
        "result_bytes": app.result_bytes,
        "shuffle_bytes": app.total("shuffle_write_bytes"),
        "executor_s": round(app.total("run_ms") / 1000, 1),
        "driver_rss": rss,
        "phases": app.by_phase(),
    }


def job_commands(name: str, crawl: Path, later: Path, work: Path) -> list[str]:
    """The command line of job `name` on `crawl` (`later`: the files a refresh adds)."""
    corpus = work / "corpus"
    if name == "build":
        return ["corpus", "build", "--input", str(crawl), "--output", str(corpus), "--overwrite"]
    if name == "refresh":
        return ["corpus", "refresh", "--input", str(later), "--corpus", str(corpus)]
    if name == "dedup":
        return ["corpus", "dedup", "--input", str(corpus), "--output", str(work / "deduped")]
    if name == "train":
        return ["classifier", "train", "--input", str(crawl), "--output", str(work / "classifier.bin")]
    raise ValueError(f"unknown job {name!r}")


def crawl_files(kind: str, dest: Path, files: int, per_file: int, seed: int) -> Path:
    """`files` WARC files: the generated sample crawl (any size), or the benchmark crawl of real pages (its
    tool holds a fixed pool of pages: larger requests get fewer files than asked, see the stats' inputs)."""
    if kind == "bench":
        return make_crawl(dest, files, per_file)[0]
    write_sample_crawl(dest, n_files=files, records_per_file=per_file, seed=seed)
    return dest


def measure(args: argparse.Namespace, scale: int, out: Path) -> dict[str, dict[str, Any]]:
    work = out / f"x{scale}"
    shutil.rmtree(work, ignore_errors=True)
    crawl = crawl_files(args.crawl, work / "crawl", args.files * scale, args.per_file, seed=0)
    later = crawl_files(args.crawl, work / "later", max(1, args.files * scale // 4), args.per_file, seed=1)
    results: dict[str, dict[str, Any]] = {}
    for name in args.jobs.split(","):
        argv = [*job_commands(name, crawl, later, work), "--master", args.master]
        print(f"[x{scale}] {name}: {' '.join(argv[:2])} ...", flush=True)
        results[name] = run_job(argv, work / "events" / name, work / f"{name}.log")
        stats = work / ("deduped" if name == "dedup" else "corpus") / "stats.json"
        if stats.is_file():
            figures = json.loads(stats.read_text())
            results[name]["inputs"] = figures.get("inputs", {}).get("total", 0)
            results[name]["pages"] = figures.get("counters", {}).get("html_responses", 0)
            results[name]["documents"] = figures.get("kept", 0)
        print(f"[x{scale}] {name}: {json.dumps({k: results[name][k] for k in METRICS})}", flush=True)
    return results


def growth_table(scale: int, small: dict, large: dict) -> str:
    lines = [
        f"| job | metric | 1× | {scale}× | ratio |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for job in small:
        for metric in (*SIZES, *METRICS, "executor_s"):
            a, b = small[job].get(metric, 0), large[job].get(metric, 0)
            ratio = f"{b / a:.2f}" if a else "n/a"
            lines.append(f"| {job} | {metric} | {a:,} | {b:,} | {ratio} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=2, help="WARC files at 1× (default 2)")
    parser.add_argument("--per-file", type=int, default=500, help="records per WARC file (default 500)")
    parser.add_argument("--scale", type=int, default=8, help="the larger size, × the first (default 8)")
    parser.add_argument(
        "--jobs", default="build,refresh,dedup", help="comma-separated: build,refresh,dedup,train"
    )
    parser.add_argument(
        "--crawl", choices=("sample", "bench"), default="sample", help="input pages (default sample)"
    )
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--out", default="bench_out/scale")
    args = parser.parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    print(f"driver of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss} KiB", flush=True)
    small, large = measure(args, 1, out), measure(args, args.scale, out)
    report = {"args": vars(args), "x1": small, f"x{args.scale}": large}
    (out / "scale.json").write_text(json.dumps(report, indent=1))
    table = growth_table(args.scale, small, large)
    (out / "scale.md").write_text(table + "\n")
    print(table)
    print(f"written: {out / 'scale.json'}, {out / 'scale.md'}")


if __name__ == "__main__":
    main()
