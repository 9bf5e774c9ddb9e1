"""Throughput of the corpus job: pages/s per core, where the time goes, and what it is measured against.

Measurements on one crawl, in one run:
1. stage profile, one process on one core: WARC reading, then the job's own page route
   (`pipeline.route.route_page`: charset decoding, raw-HTML prefilter, fast text pass, math scoring, math-aware
   extraction where the route sends a page to it, language ID where the math rule keeps a page), then Parquet
   writing, each stage timed separately (shares of the total). With `--baseline REV` the same profile runs on
   that revision's code too (extracted with `git archive`), the two alternating `--rounds` times, each in a
   fresh process, so machine load hits both alike; the table gives each one's best round and the ratio. Both
   profiles also report the math verdicts against the crawl's labels (precision, recall) and the kept pages,
   so a speed-up that loses pages shows here;
2. side by side on the same records, one core: datatrove's WarcReader → Trafilatura → LanguageFilter (the
   FineWeb recipe's first steps; lid.176 from the local file, no model downloaded), run from a virtual
   environment of its own (`--datatrove-venv`, made from the package registry on first use with the pins in
   `DATATROVE_PINS`), and FastWARC iterating the records alone (the floor for reading);
3. the Spark job end to end in local[1] and local[2] over the whole crawl, from the job's own wall time, and
   its efficiency: pages/s per core against the stage profile's per-file rate (what Spark's fixed costs take).
Every measurement runs the job's default mode (the two-stage math verdict).

The crawl is ../shared/tools/make_bench_crawl.py's (real pages, 2% math, a manifest of which are math; the one
the reference figures in DESIGN.md were measured on) when ../shared is present, else the generated sample crawl.

    .venv/bin/python bench/corpus_throughput.py --files 2 --per-file 1000 --skip-spark --baseline a269445
    .venv/bin/python bench/corpus_throughput.py --files 4 --per-file 2500 --profile-records 2000  # Spark on 10k
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH_TOOL = REPO.parent / "shared" / "tools" / "make_bench_crawl.py"
ROUTE_PACKAGES = ("crawl", "classifiers", "pipeline", "jobs", "typedconfig", "samplecrawl")


def make_crawl(dest: Path, files: int, per_file: int, seed: int | None) -> tuple[Path, str]:
    if (dest / "manifest.jsonl").is_file() or any(dest.glob("*.warc.gz")):
        return dest, f"existing crawl in {dest}"
    if BENCH_TOOL.is_file():
        extra = ["--seed", str(seed)] if seed is not None else []
        cmd = [sys.executable, str(BENCH_TOOL), "--out", str(dest), "--files", str(files)]
        subprocess.run([*cmd, "--per-file", str(per_file), *extra], check=True, stdout=subprocess.DEVNULL)
        return (
            dest,
            f"make_bench_crawl.py ({files} x {per_file} real pages, 2% math, seed {seed or 'default'})",
        )
    sys.path.insert(0, str(REPO))
    from samplecrawl.writer import write_sample_crawl

    write_sample_crawl(dest, n_files=files, records_per_file=per_file)
    return dest, f"generated sample crawl ({files} x {per_file})"


def math_labels(crawl: Path) -> dict[str, bool]:
    """url -> is math, from make_bench_crawl.py's manifest (empty for the generated sample crawl)."""
    manifest = crawl / "manifest.jsonl"
    if not manifest.is_file():
        return {}
    labels = {}
    for line in manifest.read_text().splitlines():
        entry = json.loads(line)
        labels[entry["url"]] = bool(entry.get("is_math", entry.get("math")))
    return labels


# ---------------------------------------------------------------- 1. the stage profile of one code tree


def stage_profile(paths: list[str], max_records: int) -> dict:
    """Time each stage of the job's per-page route on one core (`route_page` times its own stages). Imports
    whichever tree is first on sys.path, so the same function profiles a baseline revision."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from classifiers.langid import LanguageIdentifier
    from classifiers.math_score import RuleMathScorer
    from crawl.warc import read_html_responses
    from pipeline.filters import PageFilterConfig, drop_reason, page_filters
    from pipeline.route import route_page

    lid, scorer, filters = LanguageIdentifier(), RuleMathScorer(), page_filters(PageFilterConfig())
    lid.predict("warm up")
    route_page(b"<html><body><p>warm up: $x^2$</p></body></html>", None, scorer=scorer, langid=lid)
    t: Counter = Counter()
    rows: list[dict] = []
    verdicts: dict[str, bool] = {}
    counters: Counter = Counter()
    extracted = 0
    for path in paths:
        iterator = read_html_responses(path, counters)
        while counters["html_responses"] < max_records:
            t0 = time.perf_counter()
            response = next(iterator, None)
            t["read"] += time.perf_counter() - t0
            if response is None:
                break
            page = route_page(
                response.body, response.content_type, response.url, scorer=scorer, langid=lid, timings=t
            )
            extracted += page.math_extracted
            kept = drop_reason(filters, page) is None  # the pages the job would write
            verdicts[response.url] = kept
            if kept:
                row = {"url": page.url, "lang": page.lang, "math_score": page.math_score, "text": page.text}
                rows.append(row)
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
        "seconds": round(total, 3),
        "pages_per_s_per_core": round(pages / total, 1),
        "stage_seconds": {k: round(v, 3) for k, v in t.items()},
        "kept": {r["url"]: r["text"] for r in rows},
        "verdicts": verdicts,
    }


def profile_tree(tree: Path, paths: list[str], max_records: int, out: Path) -> dict:
    """One stage profile of `tree`'s code in a fresh process (one core: no BLAS or OpenMP threads)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(tree)}
    cmd = [sys.executable, __file__, "--profile-tree", str(tree), "--profile-out", str(out)]
    cmd += ["--profile-records", str(max_records), "--profile-paths", *paths]
    subprocess.run(cmd, check=True, env=env, cwd=tree)
    return json.loads(out.read_text())


def baseline_tree(rev: str, dest: Path) -> Path:
    """The route's packages at `rev`, extracted with git archive (no worktree left behind)."""
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", rev, *ROUTE_PACKAGES], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def verdict_quality(profile: dict, labels: dict[str, bool]) -> dict:
    """Precision and recall of the kept pages against the crawl's math labels (URLs carry a record suffix)."""
    if not labels:
        return {}
    tp = fp = fn = 0
    for url, kept in profile["verdicts"].items():
        truth = labels.get(url, False)
        tp, fp, fn = tp + (kept and truth), fp + (kept and not truth), fn + (truth and not kept)
    return {
        "precision": round(tp / max(tp + fp, 1), 4),
        "recall": round(tp / max(tp + fn, 1), 4),
        "kept": tp + fp,
        "math_pages": tp + fn,
    }


def best_of(runs: list[dict]) -> dict:
    return min(runs, key=lambda r: r["seconds"])


def print_profile(name: str, profile: dict) -> None:
    pages, total = profile["pages"], profile["seconds"]
    print(
        f"\n{name}: {pages} HTML pages in {total:.2f} s = {profile['pages_per_s_per_core']} pages/s per core; "
        f"math-aware extraction ran on {profile['math_extracted_pages']} of them"
    )
    print("| stage | seconds | share | pages/s |\n| --- | ---: | ---: | ---: |")
    for stage, secs in profile["stage_seconds"].items():
        rate = f"{pages / secs:,.0f}" if secs > 0 else "-"
        print(f"| {stage} | {secs:.2f} | {secs / total:.1%} | {rate} |")


# ---------------------------------------------------------------- 2. side by side: datatrove and FastWARC


# datatrove runs in an environment of its own: its readers pull in libraries (cchardet, python-magic) that
# trafilatura and others pick up when present, which would change the route measured beside it.
DATATROVE_PINS = (
    "datatrove==0.10.1",
    "fasteners==0.20",
    "faust-cchardet==3.2.0",
    "python-magic==0.4.27",
    "trafilatura==2.3.1",
    "lxml==6.1.3",
    "lxml-html-clean==0.4.6",
    "warcio==1.8.1",
    "fasttext-numpy2-wheel==0.9.2",
    "numpy==2.4.6",
)


def datatrove_python(venv: Path) -> Path | None:
    """The Python of a virtual environment holding datatrove's pinned versions, made on first use."""
    python = venv / "bin" / "python"
    stamp = venv / "pins.txt"
    if python.is_file() and stamp.is_file() and stamp.read_text() == "\n".join(DATATROVE_PINS):
        return python
    print(f"making {venv} for datatrove ({', '.join(DATATROVE_PINS[:1])} and its readers)", flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *DATATROVE_PINS], check=True)
    except subprocess.CalledProcessError as exc:
        print(f"datatrove could not be installed ({exc}): side by side skipped")
        return None
    stamp.write_text("\n".join(DATATROVE_PINS))
    return python


def datatrove_pipeline(crawl: str, max_records: int, lid_model: str) -> dict:
    """datatrove's WarcReader → Trafilatura → LanguageFilter over the same records (run in its venv)."""
    from datatrove.pipeline.extractors import Trafilatura
    from datatrove.pipeline.filters import LanguageFilter
    from datatrove.pipeline.readers import WarcReader
    from datatrove.utils.lid import FT176LID

    class LocalFT176(FT176LID):  # lid.176 from the file the job uses: nothing is downloaded
        @property
        def model(self):
            if self._model is None:
                from fasttext.FastText import _FastText

                self._model = _FastText(lid_model)
            return self._model

    language = LanguageFilter(languages=None)
    language.model = LocalFT176(None)
    reader = WarcReader(crawl, glob_pattern="*.warc.gz", limit=max_records, shuffle_files=False)
    read = Counter()

    def counted(docs):
        for doc in docs:
            read["records"] += 1
            yield doc

    started = time.perf_counter()
    docs = counted(reader(None, rank=0, world_size=1))
    for step in (Trafilatura(favour_precision=True, timeout=10.0), language):
        docs = step(docs, rank=0, world_size=1)
    kept = sum(1 for _ in docs)
    seconds = time.perf_counter() - started
    records = read["records"]
    return {"records": records, "kept": kept, "seconds": round(seconds, 2), "pages_per_s": records / seconds}


def datatrove_run(crawl: Path, max_records: int, venv: Path, out: Path) -> dict | None:
    python = datatrove_python(venv)
    if python is None:
        return None
    sys.path.insert(0, str(REPO))
    from classifiers.langid import default_model_path

    cmd = [str(python), __file__, "--datatrove-run", str(crawl), "--profile-records", str(max_records)]
    cmd += ["--lid-model", str(default_model_path()), "--profile-out", str(out)]
    subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())


def fastwarc_run(paths: list[str], max_records: int) -> dict | None:
    """FastWARC iterating the same response records (and their bodies) alone: the floor for reading."""
    try:
        from fastwarc.warc import ArchiveIterator, WarcRecordType
    except ImportError:
        return None
    records = 0
    started = time.perf_counter()
    for path in paths:
        for record in ArchiveIterator(path, record_types=WarcRecordType.response):
            record.reader.read()
            records += 1
            if records >= max_records:
                break
        if records >= max_records:
            break
    seconds = time.perf_counter() - started
    return {"records": records, "seconds": round(seconds, 2), "pages_per_s": records / seconds}


# ---------------------------------------------------------------- 3. the Spark job end to end


def spark_run(paths_spec: str, cores: int, out: Path) -> dict:
    cmd = [sys.executable, "-m", "mathforge.cli", "corpus", "build", "--input", paths_spec]
    cmd += ["--output", str(out), "--master", f"local[{cores}]", "--overwrite"]
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
    parser.add_argument("--per-file", type=int, default=1000)
    parser.add_argument(
        "--seed", type=int, default=None, help="make_bench_crawl.py's seed (its default: none)"
    )
    parser.add_argument("--crawl", default=None, help="an existing crawl directory instead of a new one")
    parser.add_argument("--profile-records", type=int, default=2000, help="HTML pages the profiles read")
    parser.add_argument("--baseline", default=None, help="a git revision to profile side by side")
    parser.add_argument("--rounds", type=int, default=2, help="alternating profile runs per tree")
    parser.add_argument("--skip-datatrove", action="store_true")
    parser.add_argument(
        "--datatrove-venv", default=None, help="datatrove's own environment (default: OUT/datatrove-venv)"
    )
    parser.add_argument("--out", default=str(REPO / "bench_out" / "corpus"))
    parser.add_argument("--skip-spark", action="store_true")
    # internal: one profile in this process, of the tree on PYTHONPATH
    parser.add_argument("--profile-tree", help=argparse.SUPPRESS)
    parser.add_argument("--profile-out", help=argparse.SUPPRESS)
    parser.add_argument("--profile-paths", nargs="*", help=argparse.SUPPRESS)
    parser.add_argument("--datatrove-run", help=argparse.SUPPRESS)
    parser.add_argument("--lid-model", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.datatrove_run:
        result = datatrove_pipeline(args.datatrove_run, args.profile_records, args.lid_model)
        Path(args.profile_out).write_text(json.dumps(result))
        return
    if args.profile_tree:
        sys.path.insert(0, args.profile_tree)
        profile = stage_profile(args.profile_paths, args.profile_records)
        loaded = Path(sys.modules["pipeline.route"].__file__ or "").resolve()
        if not loaded.is_relative_to(Path(args.profile_tree).resolve()):
            raise SystemExit(f"profiled {loaded}, not the code in {args.profile_tree}")
        Path(args.profile_out).write_text(json.dumps(profile))
        return

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    crawl, description = make_crawl(Path(args.crawl or out / "crawl"), args.files, args.per_file, args.seed)
    paths = sorted(str(p) for p in crawl.glob("*.warc.gz"))
    labels = math_labels(crawl)
    print(f"crawl: {description}; {len(paths)} files; profiles read {args.profile_records} pages", flush=True)

    trees = {"current": REPO}
    if args.baseline:
        trees[f"baseline {args.baseline}"] = baseline_tree(args.baseline, out / "baseline_tree")
    runs: dict[str, list[dict]] = {name: [] for name in trees}
    for round_ in range(args.rounds):
        for name, tree in trees.items() if round_ % 2 == 0 else reversed(trees.items()):
            runs[name].append(profile_tree(tree, paths, args.profile_records, out / "profile.json"))
            print(f"  round {round_ + 1} {name}: {runs[name][-1]['seconds']:.2f} s", flush=True)
    result: dict = {"crawl": description, "profiles": {}}
    for name in trees:
        best = best_of(runs[name])
        print_profile(f"stage profile, {name}, 1 process / 1 core (best of {args.rounds})", best)
        quality = verdict_quality(best, labels)
        if quality:
            print(f"math verdicts against the crawl's labels: {quality}")
        summary = {k: v for k, v in best.items() if k not in ("kept", "verdicts")}
        result["profiles"][name] = {**summary, "verdicts_vs_labels": quality}
    current = best_of(runs["current"])
    pages, seconds = current["pages"], current["stage_seconds"]
    result["stage_profile"] = {  # the working tree's best round, under the key earlier versions wrote
        **{k: v for k, v in current.items() if k not in ("kept", "verdicts")},
        "stage_share": {k: round(v / current["seconds"], 3) for k, v in seconds.items()},
        "stage_pages_per_s": {k: round(pages / v, 1) for k, v in seconds.items() if v > 0},
    }
    if args.baseline:
        base = best_of(runs[f"baseline {args.baseline}"])
        same = sorted(current["kept"]) == sorted(base["kept"])
        same_text = same and all(current["kept"][u] == base["kept"][u] for u in current["kept"])
        ratio = base["seconds"] / current["seconds"]
        print(
            f"\ncurrent vs {args.baseline}: {ratio:.2f}x the pages per core; kept pages identical: {same}; "
            f"their texts identical: {same_text}"
        )
        result["speedup_vs_baseline"] = {"ratio": round(ratio, 3), "same_pages": same, "same_text": same_text}

    side: dict = {}
    venv = Path(args.datatrove_venv or out / "datatrove-venv")
    if not args.skip_datatrove and (dt := datatrove_run(crawl, args.profile_records, venv, out / "dt.json")):
        side["datatrove"] = dt
    if fw := fastwarc_run(paths, args.profile_records):
        side["fastwarc_iterate"] = fw
    if side:
        rate = current["pages_per_s_per_core"]
        print(
            "\nside by side, one core, the same records:\n| pipeline | pages/s | mathforge x |\n| --- | ---: | ---: |"
        )
        print(f"| mathforge route (stage profile) | {rate:.1f} | 1.00 |")
        for name, r in side.items():
            print(f"| {name} | {r['pages_per_s']:.1f} | {rate / r['pages_per_s']:.2f} |")
        result["side_by_side"] = side

    if not args.skip_spark:
        result["spark"] = [spark_run(str(crawl), cores, out / f"corpus_local{cores}") for cores in (1, 2)]
        per_file = current["pages_per_s_per_core"]
        print("\nSpark job, end to end over the whole crawl (job wall time, JVM start excluded):")
        print("| master | pages | job s | process s | pages/s per core | of the per-file rate |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        for r in result["spark"]:
            r["efficiency"] = round(r["pages_per_s_per_core"] / per_file, 3)
            print(
                f"| local[{r['cores']}] | {r['pages']} | {r['job_seconds']} | {r['process_seconds']} | "
                f"{r['pages_per_s_per_core']} | {r['efficiency']:.0%} |"
            )
    (out / "corpus_throughput.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten: {out / 'corpus_throughput.json'}")


if __name__ == "__main__":
    main()
