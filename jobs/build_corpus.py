"""Spark job: WARC files → corpus Parquet shards + manifest + stats, one task per WARC file.

    spark-submit jobs/build_corpus.py --input warc.paths.gz --output /data/corpus [--langs en,zh] ...
    mathforge corpus build --input DIR --output DIR            # same job, Spark local[*] by default

Under spark-submit our packages reach the executors as a zip added by the driver (`ship_code`); their
dependencies (warcio, trafilatura, fasttext, the lid.176 model) must be installed on the executors.
"""

from __future__ import annotations

if __name__ == "__main__" and __package__ in (None, ""):  # run as a script by spark-submit
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dataclasses
import logging
import math
import shutil
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from crawl.redact import redact_record, redact_url
from jobs.config import CleaningConfig, CorpusBuildConfig
from jobs.corpus_output import (
    DATA_DIR,
    REMOVED_DIR,
    StagedOutput,
    link_snapshots,
    render_stats_markdown,
    snapshot_dir,
    write_corpus_reports,
)
from jobs.corpus_pipeline import CorpusPipeline
from jobs.corpus_schema import CORPUS_COLUMNS, spark_schema
from jobs.corpus_summary import summarise_version
from jobs.corpus_writers import crash_point
from jobs.dedup import clean_corpus
from jobs.spark import CounterParam, ListParam, job_main, ship_code

log = logging.getLogger("mathforge.build_corpus")

TARGET_SHARD_CHARS = 250_000_000  # ~250 MB of text per shard before compression
# Per-file errors after which the file was not read to its end: the manifest lists it as unfinished, not as
# seen, so the next refresh reads it again (what it did give is then removed as exact duplicates).
UNFINISHED_INPUT = frozenset({"input_missing", "input_unreadable", "input_broken_off"})


def _file_summary(path: str, counters: Counter, seconds: float) -> dict[str, Any]:
    errors = {k.split(":", 1)[1]: v for k, v in counters.items() if k.startswith("error:")}
    return {
        "path": redact_url(path),  # summaries reach stats.json, STATS.md and report.html: no credentials
        "seconds": round(seconds, 3),
        "records": counters.get("records", 0),
        "html_responses": counters.get("html_responses", 0),
        "kept": counters.get("kept", 0),
        "errors": errors,
    }


def build_corpus(spark: SparkSession, config: CorpusBuildConfig) -> dict[str, Any]:
    """Run the job; returns the stats dict (also written as stats.json next to the shards)."""
    inputs = config.warc_locations()
    pipeline = CorpusPipeline(config)  # loads and checks the models before anything is written
    staged = StagedOutput(config.output, overwrite=config.overwrite)
    with staged:
        return write_version(spark, pipeline, inputs, staged)


def extract_pages(
    spark: SparkSession, pipeline: CorpusPipeline, inputs: list[str], out: Path
) -> tuple[DataFrame, dict[str, int], list[dict[str, Any]]]:
    """Run the page route over `inputs`, one task per WARC file, into Parquet at `out`; returns the rows
    (read back), the counters and one summary per input file."""
    sc = spark.sparkContext
    ship_code(spark)
    counters_acc = sc.accumulator({}, CounterParam())
    files_acc = sc.accumulator([], ListParam())

    def run_partition(paths: Iterable[str]) -> Iterator[tuple]:
        for path in paths:
            counters: Counter = Counter()
            t0 = time.monotonic()
            try:
                yield from pipeline.process_file(path, counters)
            finally:
                counters_acc.add(dict(counters))
                files_acc.add([_file_summary(path, counters, time.monotonic() - t0)])

    rows = sc.parallelize(inputs, max(1, len(inputs))).mapPartitions(run_partition)
    spark.createDataFrame(rows, spark_schema()).write.parquet(str(out))
    files = sorted(files_acc.value, key=lambda f: f["path"])
    return spark.read.parquet(str(out)), dict(sorted(counters_acc.value.items())), files


def write_version(
    spark: SparkSession,
    pipeline: CorpusPipeline,
    inputs: list[str],
    staged: StagedOutput,
    history: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The next version of the corpus at `staged`, in its staging folder: the pages of `inputs`, routed by
    `pipeline` and cleaned (against its `config.index`), as a new snapshot beside the snapshots of
    `staged.base` (a refresh), with a manifest extending `history` (the base's) and reports over it all."""
    started = time.time()
    staging, snapshot = staged.staging, staged.run_id
    log.info("building snapshot %s from %d input files into %s", snapshot, len(inputs), staged.final)
    extracted_dir = staging / "extracted-pages"  # Spark ignores paths starting with _ or .
    config = pipeline.config
    extracted, counters, files = extract_pages(spark, pipeline, inputs, extracted_dir)
    crash_point("extracted")
    added = write_snapshot(spark, extracted, staging, config, snapshot)
    shutil.rmtree(extracted_dir)
    base = staged.base if history is not None else None
    if base is not None:
        for table in (DATA_DIR, REMOVED_DIR):
            link_snapshots(base / table, staging / table)
    # the earlier snapshots' figures come from the base's stored summary: only the new rows are scanned
    summary = summarise_version(spark, staging, snapshot, base)
    seconds = round(time.time() - started, 2)
    stats = {
        "run_id": snapshot,
        "seconds": seconds,
        **summary,
        **added,
        "counters": counters,
        "inputs": {"total": len(inputs), "failed": [f for f in files if f["errors"]]},
        "per_file": files,
        "cleaned_up": staged.cleaned,
    }
    run = {
        "run_id": snapshot,
        "kind": "refresh" if history else "build",
        "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "input": redact_record(config.input or f"--crawl {config.crawl} under {config.crawl_base}"),
        "inputs": len(inputs),
        "documents": added["added"],
        "seconds": seconds,
    }
    history = history or {}
    # the manifest lists inputs redacted (`crawl.redact`); `input_key` of both forms is one, for refreshes
    shown = [redact_url(f) for f in inputs]
    unfinished = {f["path"] for f in files if UNFINISHED_INPUT.intersection(f["errors"])}
    left = {redact_url(f) for f in history.get("inputs_unfinished", [])} - set(shown)
    scorer = pipeline.analyser.math_scorer
    write_corpus_reports(
        staging,
        staged,
        redact_record(dataclasses.asdict(config) if not history else history["config"]),
        {"master": spark.sparkContext.master, "version": spark.version},
        stats,
        inputs=[*map(redact_url, history.get("inputs", [])), *(f for f in shown if f not in unfinished)],
        inputs_unfinished=sorted(unfinished | left),
        runs=[*history.get("runs", []), run],
        lid_model=pipeline.analyser.langid.model_path,
        math_scorer={"name": scorer.name, "version": scorer.version},
        schema=[{"name": n, "type": t, "description": d} for n, t, d in CORPUS_COLUMNS],
    )
    log.info(
        "corpus version %s written: %d documents added (%d in all) from %d HTML pages",
        snapshot,
        added["added"],
        stats["kept"],
        counters.get("html_responses", 0),
    )
    return stats


def write_snapshot(
    spark: SparkSession, df: DataFrame, staging: Path, cleaning: CleaningConfig, snapshot: str
) -> dict[str, Any]:
    """Dedup and decontaminate `df`, write it as `data/snapshot=<snapshot>/` (shards sorted by id)."""
    df, cleaning_report = clean_corpus(spark, df, cleaning, staging, snapshot)
    total_chars = df.agg(F.sum("n_chars")).collect()[0][0] or 0
    shards = max(1, math.ceil(total_chars / TARGET_SHARD_CHARS))
    out = snapshot_dir(staging / DATA_DIR, snapshot)
    df.repartitionByRange(shards, "id").sortWithinPartitions("id").write.parquet(str(out))
    return {
        "snapshot": snapshot,
        "added": spark.read.parquet(str(out)).count(),
        "added_chars": int(total_chars),
        "shards": shards,
        "cleaning": cleaning_report,
    }


def main(argv: list[str] | None = None) -> None:
    job_main(
        argv,
        prog="build_corpus.py",
        doc=__doc__,
        config_cls=CorpusBuildConfig,
        job=build_corpus,
        render=render_stats_markdown,
    )


if __name__ == "__main__":
    main()
