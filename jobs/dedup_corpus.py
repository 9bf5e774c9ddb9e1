"""Spark job: dedup and decontaminate an existing corpus directory into a new one.

    spark-submit jobs/dedup_corpus.py --input corpora/a --output corpora/a-dedup [--threshold 0.8] [--index DIR]
    mathforge corpus dedup --input corpora/a --output corpora/a-dedup

Same steps, survivor rule and outputs (`removed/`, `dedup_index/`, manifest, stats) as `corpus build`.
The input may be any Parquet table with the contract's required columns (DESIGN.md): the columns dedup
needs beyond them (`content_digest`, `n_chars`) are computed with the build's own rules when absent.
"""

from __future__ import annotations

if __name__ == "__main__" and __package__ in (None, ""):  # run as a script by spark-submit
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import json
import logging
import time
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from classifiers.text_norm import text_digest
from jobs.build_corpus import write_snapshot
from jobs.config import CorpusDedupConfig
from jobs.corpus_output import DATA_DIR, SNAPSHOT, StagedOutput, render_stats_markdown, write_corpus_reports
from jobs.corpus_schema import REQUIRED_COLUMNS
from jobs.corpus_summary import summarise_version
from jobs.spark import job_main, ship_code

log = logging.getLogger("mathforge.dedup_corpus")


def with_dedup_columns(df: DataFrame, source: str) -> DataFrame:
    """The table with what dedup reads beyond the contract, computed as the build computes it when absent;
    a table that lacks a required column is refused with the column's name."""
    missing = [name for name in REQUIRED_COLUMNS if name not in df.columns]
    if missing:
        raise ValueError(
            f"{source} lacks the required corpus column(s) {', '.join(missing)} "
            f"(required: {', '.join(REQUIRED_COLUMNS)})"
        )
    text = F.coalesce(F.col("text"), F.lit(""))
    if "content_digest" not in df.columns:
        digest = F.udf(text_digest, T.StringType(), useArrow=False)  # a plain UDF: no pandas needed
        df = df.withColumn("content_digest", digest(text))
    if "n_chars" not in df.columns:
        df = df.withColumn("n_chars", F.char_length(text))  # code points, as len() counts in the build
    return df


def dedup_corpus(spark: SparkSession, config: CorpusDedupConfig) -> dict[str, Any]:
    started = time.time()
    source = Path(config.input)
    data = source / DATA_DIR
    if not data.is_dir():
        raise FileNotFoundError(f"{config.input} is not a corpus directory (no {DATA_DIR}/ folder)")
    table = with_dedup_columns(spark.read.parquet(str(data)), str(data))
    if SNAPSHOT in table.columns:  # the source's partition column; the output is one new snapshot
        table = table.drop(SNAPSHOT)
    staged = StagedOutput(config.output, overwrite=config.overwrite)
    ship_code(spark)
    with staged:
        staging = staged.staging
        added = write_snapshot(spark, table, staging, config, staged.run_id)
        stats = {
            "run_id": staged.run_id,
            "seconds": round(time.time() - started, 2),
            **summarise_version(spark, staging, staged.run_id),
            **added,
            "counters": {},
            "inputs": {"total": 1, "failed": []},
            "source": str(source),
        }
        source_manifest = source / "manifest.json"
        derived = json.loads(source_manifest.read_text()) if source_manifest.is_file() else str(source)
        spark_info = {"master": spark.sparkContext.master, "version": spark.version}
        write_corpus_reports(staging, staged, config, spark_info, stats, derived_from=derived)
    log.info("deduplicated corpus committed at %s: %d documents", staged.final, stats["kept"])
    return stats


def main(argv: list[str] | None = None) -> None:
    job_main(
        argv,
        prog="dedup_corpus.py",
        doc=__doc__,
        config_cls=CorpusDedupConfig,
        job=dedup_corpus,
        render=render_stats_markdown,
    )


if __name__ == "__main__":
    main()
