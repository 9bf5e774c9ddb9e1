"""Score a whole corpus with a quality model, in Spark: `with_quality_scores` adds a 0-5 column to any
DataFrame with a `text` column, and `mathforge classifier score-quality` writes id, url, domain, math_score and
quality_score of a corpus as Parquet.

The executors get the model's path and version and load it once per Python worker (`cached_quality_scorer`);
texts are scored `BATCH_ROWS` at a time, so fastText's batch predict sees a thousand pages per call. On a
cluster the model file must be readable at the same path on every executor.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from classifiers.quality import cached_quality_scorer, quality_scorer_for
from jobs.annotate_quality import read_corpus
from jobs.config import QualityScoreConfig
from jobs.spark import job_phase, ship_code

SCORE_COLUMN = "quality_score"
BATCH_ROWS = 1024  # texts per fastText batch predict


def with_quality_scores(
    df: DataFrame, model_path: str, version: str, column: str = SCORE_COLUMN
) -> DataFrame:
    """`df` with `column` (float, 0-5) holding the quality model's score of each row's `text`; the model at
    `model_path` must still be `version` when the executors load it."""
    schema = T.StructType([*df.schema.fields, T.StructField(column, T.FloatType(), nullable=False)])
    text_at = df.columns.index("text")

    def score(rows: Iterator[tuple]) -> Iterator[tuple]:
        scorer = cached_quality_scorer(model_path, version)
        for batch in _chunks(rows, BATCH_ROWS):
            values = scorer.score_batch([row[text_at] or "" for row in batch])
            yield from ((*row, value) for row, value in zip(batch, values, strict=True))

    return df.sparkSession.createDataFrame(df.rdd.mapPartitions(score), schema)


def _chunks(rows: Iterator[tuple], size: int) -> Iterator[list[tuple]]:
    batch: list[tuple] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def score_quality(spark: SparkSession, config: QualityScoreConfig) -> dict[str, Any]:
    """Write the corpus's quality scores to `config.output`; returns counts and the model's version."""
    scorer = quality_scorer_for(config.model)
    ship_code(spark)
    rows = read_corpus(spark, config.corpus).select("id", "url", "domain", "math_score", "text")
    with job_phase(spark, "score quality"):
        scored = with_quality_scores(rows, config.model, scorer.version).drop("text")
        scored.write.mode("error").parquet(config.output)
    written = spark.read.parquet(config.output)
    return {
        "output": str(Path(config.output)),
        "rows": written.count(),
        "model": config.model,
        "model_version": scorer.version,
        f"at_least_{config.threshold}": written.where(
            written[SCORE_COLUMN] >= config.threshold - 0.5
        ).count(),
    }
