"""What `corpus iterate` and `classifier train` send to the Spark driver, at one or more data sizes.

Per size: writes the generated sample crawl (`samplecrawl.writer`, distinct pages at any size) with `--records`
records per file, then runs three Spark applications in this process, each with its event log on: the loop's
pool pass, `corpus iterate` (`--rounds`, on that pool) and `classifier train`. It prints the bytes the tasks of
each returned to the driver ("Result Size", `jobs/event_log.py`). Run it at sizes 4x apart to see what grows
with the data: with the training caps reached (`--max-per-class`) and the report's lists at their cap
(`--report-limit`), nothing should.

    .venv/bin/python bench/driver_results.py --files 2 --records 30,120 --out /tmp/driver-results [--stages]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from jobs.event_log import application_logs, event_log_conf, read_app_cost  # noqa: E402


def _session(log_dir: Path, app: str):
    from jobs.spark import get_spark, parse_conf

    log_dir.mkdir(parents=True, exist_ok=True)
    conf = parse_conf(event_log_conf(log_dir)) | {"spark.sql.shuffle.partitions": "4"}
    return get_spark("local[2]", app, conf)


def _cost(log_dir: Path, per_stage: bool) -> dict:
    cost = read_app_cost(application_logs(log_dir)[-1])
    out = {"result_bytes": cost.result_bytes, "tasks": cost.tasks, "jobs": cost.jobs}
    phases = cost.by_phase()
    if len(phases) > 1:
        out["by_phase"] = {name: figures["result_bytes"] for name, figures in phases.items()}
    if per_stage:
        out["stages"] = [(s.phase, s.name, s.tasks, s.result_bytes) for s in cost.stages]
    return out


def measure(
    out: Path, files: int, records: int, rounds: int, max_per_class: int, report_limit: int, per_stage: bool
) -> dict:
    """One size: the pool pass, the loop and the classifier job, each its own Spark application."""
    import pyarrow.dataset as ds

    from jobs import iterate_corpus as iterate_job
    from jobs.config import ClassifierTrainConfig, IterateConfig
    from jobs.train_math_classifier import train_classifier
    from samplecrawl.planted_web import seed_texts
    from samplecrawl.writer import write_sample_crawl

    out.mkdir(parents=True, exist_ok=True)
    paths = write_sample_crawl(out / "crawl", n_files=files, records_per_file=records, seed=7)
    seeds = out / "seeds.jsonl"
    seeds.write_text("".join(json.dumps({"text": t}) + "\n" for t in seed_texts(30)), encoding="utf-8")
    loop = IterateConfig(
        input=str(paths),
        seeds=str(seeds),
        output=str(out / "loop"),
        rounds=rounds,
        epoch=10,
        bucket=20000,
        near_dedup=False,
        max_per_class=max_per_class,
        report_limit=report_limit,
    )
    train = ClassifierTrainConfig(
        input=str(paths), output=str(out / "model" / "math.bin"), epoch=5, bucket=20000,
        max_per_class=max_per_class,
    )  # fmt: skip
    parts = {
        "pool": lambda spark: iterate_job.build_pool(spark, loop, Path(loop.output).resolve()),
        "iterate": lambda spark: iterate_job.iterate_corpus(spark, loop),
        "train": lambda spark: train_classifier(spark, train),
    }
    result: dict = {"records_per_file": records, "files": files}
    for name, run in parts.items():
        spark = _session(out / "events" / name, f"driver-results-{name}")
        try:
            value = run(spark)
        finally:
            spark.stop()
        result[name] = _cost(out / "events" / name, per_stage)
        if name == "iterate":
            result["rounds_run"], result["collected"] = value["rounds_run"], value["documents"]
            first = json.loads((out / "loop" / "rounds" / "1" / "report.json").read_text(encoding="utf-8"))
            # the training sample is at its cap (given seeds past it, as many negatives)
            result[name]["capped"] = first["negatives"] == max_per_class <= first["seeds"]["given"]
        if name == "train":
            counts = value["counts"]
            result[name]["capped"] = counts["positives_given"] == max_per_class == counts["negatives"]
    result["pool_documents"] = ds.dataset(out / "loop" / "pool" / "data", format="parquet").count_rows()
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="work folder (crawls, loops, event logs)")
    parser.add_argument("--files", type=int, default=4, help="WARC files (tasks per input pass)")
    parser.add_argument("--records", default="50,200", help="records per WARC file, comma-separated sizes")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of the loop")
    parser.add_argument("--max-per-class", type=int, default=20, help="training texts per class at most")
    parser.add_argument(
        "--report-limit", type=int, default=1000, help="entries per list of a round's report (bounded output)"
    )
    parser.add_argument("--stages", action="store_true", help="also list every stage")
    args = parser.parse_args(argv)
    results = [
        measure(
            args.out / f"r{n}",
            args.files,
            int(n),
            args.rounds,
            args.max_per_class,
            args.report_limit,
            args.stages,
        )
        for n in args.records.split(",")
    ]
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
