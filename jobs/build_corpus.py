"""Spark job: WARC files → corpus Parquet shards + manifest + stats, one task per WARC file.

    spark-submit jobs/build_corpus.py --input warc.paths.gz --output /data/corpus [--langs en,zh] ...
    mathforge corpus build --input DIR --output DIR            # same job, Spark local[*] by default

Each input file is a committed unit (`jobs.corpus_work`): its task writes the file's rows and a commit
marker into `<output>.work/<run key>/`, so a rerun of a killed build reads only the files it had not
committed ("skipped N of M files already committed") and ends with the rows of an uninterrupted run; a file
that kills its reader or overruns `--file-time-limit` `--max-file-attempts` times is quarantined (listed in
the manifest and the stats with the reason) and the build finishes without it.

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
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from crawl.inputs import input_key
from crawl.redact import redact_record, redact_url
from jobs.config import CleaningConfig, CorpusBuildConfig, FileAttemptsConfig, SparkSettings, WarcInputs
from jobs.corpus_output import (
    DATA_DIR,
    REMOVED_DIR,
    StagedOutput,
    link_snapshots,
    package_versions,
    render_stats_markdown,
    snapshot_dir,
    write_corpus_reports,
)
from jobs.corpus_pipeline import CorpusPipeline
from jobs.corpus_schema import COLUMN_NAMES, CORPUS_COLUMNS, spark_schema
from jobs.corpus_summary import summarise_version
from jobs.corpus_work import UNFINISHED_INPUT, FaultPlan, FileAttempts, WorkArea, process_input
from jobs.corpus_writers import crash_point
from jobs.dedup import clean_corpus
from jobs.spark import job_main, ship_code

log = logging.getLogger("mathforge.build_corpus")

TARGET_SHARD_CHARS = 250_000_000  # ~250 MB of text per shard before compression


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


# Settings that decide which rows come out of a file are the rest of CorpusBuildConfig: these do not.
NOT_ROW_SETTINGS = frozenset(
    {f.name for cls in (WarcInputs, SparkSettings, CleaningConfig, FileAttemptsConfig) for f in fields(cls)}
    | {"output", "overwrite", "app_name"}
)


def extraction_settings(pipeline: CorpusPipeline, base: Path | None) -> dict[str, Any]:
    """What a file's rows depend on (the work area's key, `jobs.corpus_work`): every setting not known to
    leave rows alone, the math scorer's version, the quality model's identity, the packages' versions, the
    schema, and the version the run builds on (a work area made against another one is never resumed)."""
    config = dataclasses.asdict(pipeline.config)
    scorer = pipeline.analyser.math_scorer
    return redact_record(
        {
            "settings": {k: v for k, v in sorted(config.items()) if k not in NOT_ROW_SETTINGS},
            "math_scorer": {"name": scorer.name, "version": scorer.version},
            "quality_model": quality_identity(pipeline),
            "packages": package_versions(),
            "schema": list(COLUMN_NAMES),
            "base": base.name if base is not None else None,
        }
    )


def quality_identity(pipeline: CorpusPipeline) -> dict[str, str] | None:
    """The quality model's identity (name, version, path, sha256), None without one."""
    quality = pipeline.analyser.quality
    return quality.identity() if quality is not None else None


def build_corpus(spark: SparkSession, config: CorpusBuildConfig) -> dict[str, Any]:
    """Run the job; returns the stats dict (also written as stats.json next to the shards)."""
    inputs = config.warc_locations()
    pipeline = CorpusPipeline(config)  # loads and checks the models before anything is written
    staged = StagedOutput(config.output, overwrite=config.overwrite)
    with staged:
        stats = write_version(spark, pipeline, inputs, staged)
    WorkArea.remove(staged.final)  # committed: there is nothing left to resume
    return stats


def extract_pages(
    spark: SparkSession, pipeline: CorpusPipeline, inputs: list[str], area: WorkArea
) -> tuple[DataFrame, dict[str, int], list[dict[str, Any]], list[dict[str, Any]]]:
    """Commit every input of `inputs` into the work area `area` (`jobs.corpus_work`), one task per WARC
    file not committed by an earlier run; returns the rows of all committed files, their counters and
    per-file summaries (each with `resumed`: committed by an earlier run), and the quarantined files."""
    sc = spark.sparkContext
    ship_code(spark)
    config = pipeline.config
    attempts = FileAttempts(config.max_file_attempts, config.file_time_limit)
    fault = FaultPlan.from_env()
    records: dict[str, dict[str, Any]] = {}
    pending = []
    for path in inputs:
        slot = area.slot(path)
        if config.retry_quarantined:
            slot.forget_failures()
        done = slot.committed()
        if done is None:
            pending.append(path)
        else:
            records[path] = {**done, "status": "resumed"}
    if records:
        log.info(
            "resuming from %s: skipped %d of %d files already committed, reading %d",
            area.root,
            len(records),
            len(inputs),
            len(pending),
        )

    def run_partition(paths: Iterable[str]) -> Iterator[tuple[str, dict[str, Any]]]:
        pipeline.analyser.load_models()  # a broken model fails the task, not the file
        for path in paths:
            yield path, process_input(area, path, pipeline.process_file, _file_summary, attempts, fault)

    if pending:
        sc.setJobDescription(f"read {len(pending)} WARC files into {area.root}")
        records.update(sc.parallelize(pending, len(pending)).mapPartitions(run_partition).collect())
        sc.setJobDescription(None)
    quarantined = sorted(
        (
            {k: r[k] for k in ("path", "reason", "attempts")}
            for r in records.values()
            if r["status"] == "quarantined"
        ),
        key=lambda q: q["path"],
    )
    committed = {path: r for path, r in records.items() if r["status"] != "quarantined"}
    counters: Counter = Counter()
    for record in committed.values():
        counters.update(record["counters"])
    files = sorted(
        ({**r["summary"], "resumed": r["status"] == "resumed"} for r in committed.values()),
        key=lambda f: f["path"],
    )
    parts = [str(area.slot(p).path / r["rows_file"]) for p, r in sorted(committed.items()) if r["rows"]]
    rows = (
        spark.read.schema(spark_schema()).parquet(*parts)
        if parts
        else spark.createDataFrame([], spark_schema())
    )
    return rows, dict(sorted(counters.items())), files, quarantined


def write_version(
    spark: SparkSession,
    pipeline: CorpusPipeline,
    inputs: list[str],
    staged: StagedOutput,
    history: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The next version of the corpus at `staged`, in its staging folder: the pages of `inputs`, routed by
    `pipeline` and cleaned (against its `config.index`), as a new snapshot beside the snapshots of
    `staged.base` (a refresh), with a manifest extending `history` (the base's) and reports over it all.
    Each input is committed on its own in the corpus's work area first, so a rerun of a killed run reads
    only the files it had not committed (`jobs.corpus_work`); the caller removes it after the commit."""
    started = time.time()
    staging, snapshot = staged.staging, staged.run_id
    log.info("building snapshot %s from %d input files into %s", snapshot, len(inputs), staged.final)
    config = pipeline.config
    area = WorkArea.open(staged.final, extraction_settings(pipeline, staged.base))
    try:
        extracted, counters, files, quarantined = extract_pages(spark, pipeline, inputs, area)
    except BaseException:
        area.discard_if_unused()  # kept when anything was committed or attempted: the rerun resumes there
        raise
    crash_point("extracted")
    added = write_snapshot(spark, extracted, staging, config, snapshot)
    base = staged.base if history is not None else None
    if base is not None:
        for table in (DATA_DIR, REMOVED_DIR):
            link_snapshots(base / table, staging / table)
    # the earlier snapshots' figures come from the base's stored summary: only the new rows are scanned
    summary = summarise_version(spark, staging, snapshot, base)
    seconds = round(time.time() - started, 2)
    resumed = sum(f["resumed"] for f in files)
    stats = {
        "run_id": snapshot,
        "seconds": seconds,
        **summary,
        **added,
        "counters": counters,
        "inputs": {
            "total": len(inputs),
            "read": len(files) - resumed,
            "resumed": resumed,  # committed by an earlier, interrupted run of the same settings
            "failed": [f for f in files if f["errors"]],
            "quarantined": quarantined,
        },
        "per_file": files,
        "cleaned_up": staged.cleaned,
    }
    run = {
        "run_id": snapshot,
        "kind": "refresh" if history else "build",
        "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "input": redact_record(config.input or f"--crawl {config.crawl} under {config.crawl_base}"),
        "inputs": len(inputs),
        "resumed": resumed,
        "quarantined": len(quarantined),
        "documents": added["added"],
        "seconds": seconds,
    }
    history = history or {}
    # the manifest lists inputs redacted (`crawl.redact`); `input_key` of both forms is one, for refreshes
    shown = [redact_url(f) for f in inputs]
    unfinished = {f["path"] for f in files if UNFINISHED_INPUT.intersection(f["errors"])}
    left = {redact_url(f) for f in history.get("inputs_unfinished", [])} - set(shown)
    held = {q["path"] for q in quarantined}
    read_now = {input_key(f) for f in inputs}
    still = [q for q in history.get("inputs_quarantined", []) if input_key(q["path"]) not in read_now]
    scorer = pipeline.analyser.math_scorer
    quality = quality_identity(pipeline)
    run["quality_model"] = quality["version"] if quality else None  # a refresh may bring another model
    earlier = history.get("quality_model")
    if earlier and (quality or {}).get("sha256") != earlier.get("sha256"):
        log.warning(
            "the corpus's earlier snapshots were scored by quality model %s, this one by %s: quality_score "
            "values of the two are not comparable (manifest runs[].quality_model says which is which)",
            earlier.get("version"),
            quality["version"] if quality else "none",
        )
    write_corpus_reports(
        staging,
        staged,
        redact_record(dataclasses.asdict(config) if not history else history["config"]),
        {"master": spark.sparkContext.master, "version": spark.version},
        stats,
        inputs=[
            *map(redact_url, history.get("inputs", [])),
            *(f for f in shown if f not in unfinished and f not in held),
        ],
        inputs_unfinished=sorted(unfinished | left),
        inputs_quarantined=sorted([*still, *quarantined], key=lambda q: q["path"]),
        runs=[*history.get("runs", []), run],
        lid_model=pipeline.analyser.langid.model_path,
        math_scorer={"name": scorer.name, "version": scorer.version},
        quality_model=quality,
        schema=[{"name": n, "type": t, "description": d} for n, t, d in CORPUS_COLUMNS],
    )
    log.info(
        "corpus version %s written: %d documents added (%d in all) from %d HTML pages; %d of %d input files "
        "read now, %d resumed, %d quarantined",
        snapshot,
        added["added"],
        stats["kept"],
        counters.get("html_responses", 0),
        stats["inputs"]["read"],
        len(inputs),
        resumed,
        len(quarantined),
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
