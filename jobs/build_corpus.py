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

import logging
import math
import shutil
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from crawl.inputs import resolve_inputs
from jobs.config import CleaningConfig, CorpusBuildConfig
from jobs.corpus_output import DATA_DIR, StagedOutput, render_stats_markdown, write_corpus_reports
from jobs.corpus_pipeline import CorpusPipeline
from jobs.corpus_schema import CORPUS_COLUMNS, spark_schema
from jobs.dedup import clean_corpus
from jobs.spark import CounterParam, ListParam, job_main, ship_code

log = logging.getLogger("mathforge.build_corpus")

TARGET_SHARD_CHARS = 250_000_000  # ~250 MB of text per shard before compression
REPORT_DOMAINS = 20  # top domains in stats.json (and report.html)
REPORT_SAMPLES = 5  # sample documents in stats.json (and report.html), first SNIPPET_CHARS of their text


def _file_summary(path: str, counters: Counter, seconds: float) -> dict[str, Any]:
    errors = {k.split(":", 1)[1]: v for k, v in counters.items() if k.startswith("error:")}
    return {
        "path": path,
        "seconds": round(seconds, 3),
        "records": counters.get("records", 0),
        "html_responses": counters.get("html_responses", 0),
        "kept": counters.get("kept", 0),
        "errors": errors,
    }


def build_corpus(spark: SparkSession, config: CorpusBuildConfig) -> dict[str, Any]:
    """Run the job; returns the stats dict (also written as stats.json next to the shards)."""
    started = time.time()
    inputs = resolve_inputs(config.input)
    staged = StagedOutput(config.output, overwrite=config.overwrite)
    sc = spark.sparkContext
    ship_code(spark)
    counters_acc = sc.accumulator({}, CounterParam())
    files_acc = sc.accumulator([], ListParam())
    pipeline = CorpusPipeline(config)
    log.info("building corpus from %d input files into %s", len(inputs), staged.final)

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
    with staged as staging:
        extracted = staging / "extracted-pages"  # Spark ignores paths starting with _ or .
        spark.createDataFrame(rows, spark_schema()).write.parquet(str(extracted))
        summary = finish_corpus(spark, spark.read.parquet(str(extracted)), staging, config)
        shutil.rmtree(extracted)
        counters = dict(sorted(counters_acc.value.items()))
        files = sorted(files_acc.value, key=lambda f: f["path"])
        stats = {
            "run_id": staged.run_id,
            "seconds": round(time.time() - started, 2),
            **summary,
            "counters": counters,
            "inputs": {"total": len(inputs), "failed": [f for f in files if f["errors"]]},
            "per_file": files,
        }
        scorer = pipeline.analyser.math_scorer
        write_corpus_reports(
            staging,
            staged,
            config,
            {"master": sc.master, "version": spark.version},
            stats,
            inputs=inputs,
            lid_model=pipeline.analyser.langid.model_path,
            math_scorer={"name": scorer.name, "version": scorer.version},
            schema=[{"name": n, "type": t, "description": d} for n, t, d in CORPUS_COLUMNS],
        )
    log.info(
        "corpus committed at %s: %d documents kept of %d HTML pages",
        staged.final,
        stats["kept"],
        counters.get("html_responses", 0),
    )
    return stats


def finish_corpus(
    spark: SparkSession, df: DataFrame, staging: Path, cleaning: CleaningConfig
) -> dict[str, Any]:
    """Dedup and decontaminate `df`, write the shards (sorted by id) and summarise what was written."""
    df, cleaning_report = clean_corpus(spark, df, cleaning, staging)
    total_chars = df.agg(F.sum("n_chars")).collect()[0][0] or 0
    shards = max(1, math.ceil(total_chars / TARGET_SHARD_CHARS))
    data_dir = staging / DATA_DIR
    df.repartitionByRange(shards, "id").sortWithinPartitions("id").write.parquet(str(data_dir))
    written = spark.read.parquet(str(data_dir))
    by_lang = {r["lang"]: r["count"] for r in written.groupBy("lang").count().collect()}
    bucket = F.least(F.floor(F.col("math_score") * 10), F.lit(9)).cast("int")
    hist = {
        r["b"]: r["count"] for r in written.groupBy(bucket.alias("b")).count().collect() if r["b"] is not None
    }
    return {
        "kept": sum(by_lang.values()),
        "kept_chars": int(total_chars),
        "shards": shards,
        "cleaning": cleaning_report,
        "by_lang": dict(sorted(by_lang.items())),
        "math_score_histogram": [(b / 10, hist.get(b, 0)) for b in range(10)],
        **report_extras(written),
    }


def report_extras(df: DataFrame) -> dict[str, Any]:
    """What report.html shows beyond the counts: the top domains with their math share, aggregated in Spark,
    and a few sample documents (a fixed pseudo-random pick: the smallest hashes of their ids), text clipped
    in Spark; only top-N rows reach the driver."""
    from jobs.corpus_report import SNIPPET_CHARS

    if "is_math" in df.columns:  # a table handed to `corpus dedup` may lack it
        math_by, is_math = "is_math", F.coalesce(F.col("is_math"), F.lit(False))
    else:
        math_by, is_math = "math_score >= 0.5", F.col("math_score") >= 0.5
    domains = (
        df.groupBy("domain")
        .agg(F.count(F.lit(1)).alias("documents"), F.sum(is_math.cast("long")).alias("math"))
        .orderBy(F.desc("documents"), F.asc("domain"))
        .limit(REPORT_DOMAINS)
        .collect()
    )
    samples = (
        df.select(
            "id",
            "url",
            "domain",
            "lang",
            "math_score",
            F.substring("text", 1, SNIPPET_CHARS + 1).alias("text"),
        )
        .orderBy(F.xxhash64("id"), "id")
        .limit(REPORT_SAMPLES)
        .collect()
    )
    return {
        "top_domains": [
            {"domain": r["domain"], "documents": r["documents"], "math": int(r["math"] or 0)} for r in domains
        ],
        "top_domains_math_by": math_by,
        "samples": [r.asDict() for r in samples],
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
