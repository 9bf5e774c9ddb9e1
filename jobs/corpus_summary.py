"""What stats.json, STATS.md and report.html say of a whole corpus, at a cost proportional to what is new.

A version stores its summary in a mergeable form next to its reports:

    summary.json        counts, kept characters, snapshots, documents by language, the math-score histogram,
                        the sample candidates with their sort keys, and how "math" was counted per domain
    summary_domains/    every domain's (documents, math) over the whole corpus, Parquet written by Spark

A build (and `corpus dedup`) scans its own rows. A refresh scans only its new snapshot and merges that with
the previous version's stored summary: a refresh never changes a published snapshot (an indexed document
always survives, `jobs.dedup.drop_indexed_exact`; `removed/` only ever holds rows of the new snapshot's
candidates), so every figure is a sum over snapshots and the merge is exact, not an approximation:

- counts, characters, languages and histogram buckets add up;
- domain counts are kept whole (not a heavy-hitter sketch, whose top-k would be approximate): the merge is a
  Spark union and group-by of the previous table and the new snapshot's counts, so its cost grows with the
  number of distinct domains, never with the number of documents, and it never passes through the driver;
  the top `REPORT_DOMAINS` are read off the merged table, with the same order and ties as a full scan;
- samples are the `REPORT_SAMPLES` documents with the smallest `xxhash64(id)` (ties by id): the smallest of
  a union are the smallest of the parts' smallest, so each snapshot offers only its own few candidates;
- the quality histogram (`quality_score` in buckets of 0.5, and the documents without a score) adds up, and
  the samples per quality bucket (`QUALITY_SAMPLES` per whole point, 0-1 .. 4-5) are drawn the same way as
  the samples, per bucket: a refresh neither keeps the old ones blindly nor redraws them, it merges, so after
  any number of refreshes each bucket shows exactly what one scan of the whole corpus would. The per-bucket
  draw is a row_number window limited to `QUALITY_SAMPLES`, which Spark cuts to that many rows per bucket in
  each task before the shuffle (its WindowGroupLimit): what moves grows with tasks, not documents.
  A summary stored before the quality figures existed counts all its documents as unscored (they are: the
  column came later).

A corpus written before summaries were stored (no summary.json in the previous version) is scanned whole
once, by the refresh that finds it so; that refresh stores the summary and the next ones merge.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from jobs.corpus_output import DATA_DIR, SNAPSHOT, snapshot_dir
from jobs.corpus_writers import write_json

REPORT_DOMAINS = 20  # top domains in stats.json (and report.html)
REPORT_SAMPLES = 5  # sample documents in stats.json (and report.html), first SNIPPET_CHARS of their text
SUMMARY_FILE = "summary.json"
DOMAINS_DIR = "summary_domains"
SUMMARY_FORMAT = 1
DOMAINS_PER_SHARD = 2_000_000  # rows of summary_domains/ per Parquet file
QUALITY_COLUMN = "quality_score"  # absent from snapshots written before it existed (jobs.corpus_schema)
QUALITY_BUCKETS = 10  # histogram buckets of 0.5 over the 0-5 scale, the last one closed: [4.5, 5]
QUALITY_SAMPLE_BUCKETS = 5  # sample groups of one point: [0, 1) .. [4, 5]
QUALITY_SAMPLES = 3  # documents per sample group, the first QUALITY_SNIPPET_CHARS of their text
QUALITY_SNIPPET_CHARS = 200


def summarise_corpus(spark: SparkSession, data: Path) -> dict[str, Any]:
    """What the stats and report.html say of the whole corpus, by a full scan of every snapshot under `data`:
    the reference the merged summary equals, and what `corpus dedup` reports of a table it is handed."""
    state, domains = scan_rows(spark.read.parquet(str(data)))
    return public_summary(state, domains)


def summarise_version(
    spark: SparkSession, version: Path, snapshot: str, base: Path | None = None
) -> dict[str, Any]:
    """The summary of the version being written at `version` (its `data/` holds every snapshot), stored there
    as summary.json and summary_domains/; returns the figures stats.json carries, with `summary_scanned`, the
    snapshots whose rows were read. With `base` (a refresh: the previous version, whose snapshots `version`
    links) only `snapshot` is read, and the rest comes from `base`'s stored summary when it has one."""
    data = version / DATA_DIR
    previous = read_summary(base) if base is not None else None
    if previous is None:  # a build, or the first refresh of a corpus from before stored summaries
        rows = spark.read.parquet(str(data))
    else:
        rows = spark.read.option("basePath", str(data)).parquet(str(snapshot_dir(data, snapshot)))
    scanned = sorted({_snapshot_of(path) for path in rows.inputFiles()})
    state, domains = scan_rows(rows)
    if previous is not None:
        assert base is not None
        state = merge_states(previous, state)
        domains = merge_domains(spark.read.parquet(str(base / DOMAINS_DIR)), domains)
    write_domains(domains, version / DOMAINS_DIR)
    write_json(version / SUMMARY_FILE, state)
    domains = spark.read.parquet(str(version / DOMAINS_DIR))  # the top-k from what was stored
    return {**public_summary(state, domains), "summary_scanned": scanned}


def _snapshot_of(path: str) -> str:
    """The snapshot a data file belongs to, from its `snapshot=<run id>` folder."""
    parts = [p for p in path.split("/") if p.startswith(f"{SNAPSHOT}=")]
    return parts[-1].split("=", 1)[1] if parts else ""


def read_summary(version: Path) -> dict[str, Any] | None:
    """The stored summary of `version`, or None where it has none (written before summaries were stored)."""
    path = version / SUMMARY_FILE
    if not path.is_file() or not (version / DOMAINS_DIR).is_dir():
        return None
    state = json.loads(path.read_text(encoding="utf-8"))
    return state if state.get("format") == SUMMARY_FORMAT else None


def scan_rows(df: DataFrame) -> tuple[dict[str, Any], DataFrame]:
    """The mergeable summary of the rows of `df` (aggregated in Spark; only small results reach the driver)
    and their per-domain counts as a DataFrame (domain, documents, math)."""
    from jobs.corpus_report import SNIPPET_CHARS

    by_lang = {r["lang"]: r["count"] for r in df.groupBy("lang").count().collect()}
    bucket = F.least(F.floor(F.col("math_score") * 10), F.lit(9)).cast("int")
    hist = {r["b"]: r["count"] for r in df.groupBy(bucket.alias("b")).count().collect() if r["b"] is not None}
    if "is_math" in df.columns:  # a table handed to `corpus dedup` may lack it
        math_by, is_math = "is_math", F.coalesce(F.col("is_math"), F.lit(False))
    else:
        math_by, is_math = "math_score >= 0.5", F.col("math_score") >= 0.5
    domains = df.groupBy("domain").agg(
        F.count(F.lit(1)).alias("documents"), F.sum(is_math.cast("long")).alias("math")
    )
    samples = (
        df.select(
            "id",
            "url",
            "domain",
            "lang",
            "math_score",
            F.substring("text", 1, SNIPPET_CHARS + 1).alias("text"),
            F.xxhash64("id").alias("order"),
        )
        .orderBy("order", "id")
        .limit(REPORT_SAMPLES)
        .collect()
    )
    snapshots = (
        sorted(r[0] for r in df.select(SNAPSHOT).distinct().collect()) if SNAPSHOT in df.columns else []
    )
    quality_buckets, quality_samples = scan_quality(df)
    kept = sum(by_lang.values())
    state = {
        "format": SUMMARY_FORMAT,
        "kept": kept,
        "kept_chars": int(df.agg(F.sum("n_chars")).collect()[0][0] or 0),
        "snapshots": snapshots,
        "by_lang": dict(sorted(by_lang.items())),
        "math_score_buckets": [hist.get(b, 0) for b in range(10)],
        "top_domains_math_by": math_by,
        "sample_candidates": [r.asDict() for r in samples],
        "quality_buckets": quality_buckets,
        "quality_unscored": kept - sum(quality_buckets),
        "quality_sample_candidates": quality_samples,
    }
    return state, domains


def scan_quality(df: DataFrame) -> tuple[list[int], list[list[dict[str, Any]]]]:
    """Documents per 0.5 bucket of `quality_score`, and per whole point the `QUALITY_SAMPLES` with the
    smallest `xxhash64(id)` (ties by id) with the start of their text; all zeros and empty lists for a table
    without the column or without a score."""
    empty: list[list[dict[str, Any]]] = [[] for _ in range(QUALITY_SAMPLE_BUCKETS)]
    if QUALITY_COLUMN not in df.columns:
        return [0] * QUALITY_BUCKETS, empty
    scored = df.where(F.col(QUALITY_COLUMN).isNotNull())
    half = F.least(F.floor(F.col(QUALITY_COLUMN) * 2), F.lit(QUALITY_BUCKETS - 1)).cast("int")
    counts = {r["b"]: r["count"] for r in scored.groupBy(half.alias("b")).count().collect()}
    if not counts:  # nothing scored (no quality model): no second scan
        return [0] * QUALITY_BUCKETS, empty
    samples = empty
    for row in sorted(quality_samples(scored).collect(), key=lambda r: (r["order"], r["id"])):
        samples[max(0, row["bucket"])].append({k: v for k, v in row.asDict().items() if k != "bucket"})
    return [int(counts.get(b, 0)) for b in range(QUALITY_BUCKETS)], samples


def quality_samples(scored: DataFrame) -> DataFrame:
    """Per whole point of `quality_score` (bucket 0-4), the `QUALITY_SAMPLES` rows with the smallest
    `xxhash64(id)`: a row_number window under a limit, which Spark plans as a per-task WindowGroupLimit
    before the shuffle, so at most that many rows per bucket leave each task."""
    point = F.least(F.floor(F.col(QUALITY_COLUMN)), F.lit(QUALITY_SAMPLE_BUCKETS - 1)).cast("int")
    order = Window.partitionBy("bucket").orderBy("order", "id")
    return (
        scored.select(
            point.alias("bucket"),
            "id",
            "url",
            F.col(QUALITY_COLUMN).alias("quality_score"),
            F.substring("text", 1, QUALITY_SNIPPET_CHARS + 1).alias("text"),
            F.xxhash64("id").alias("order"),
        )
        .withColumn("rank", F.row_number().over(order))
        .where(F.col("rank") <= QUALITY_SAMPLES)
        .drop("rank")
    )


def merge_states(previous: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The summary of two disjoint sets of rows (earlier snapshots, a new one) from the summaries of each."""
    by_lang = dict(previous["by_lang"])
    for lang, n in new["by_lang"].items():
        by_lang[lang] = by_lang.get(lang, 0) + n
    candidates = {c["id"]: c for c in [*previous["sample_candidates"], *new["sample_candidates"]]}
    samples = sorted(candidates.values(), key=lambda c: (c["order"], c["id"]))[:REPORT_SAMPLES]
    old_buckets, old_unscored, old_samples = quality_figures(previous)
    new_buckets, new_unscored, new_samples = quality_figures(new)
    return {
        "format": SUMMARY_FORMAT,
        "kept": previous["kept"] + new["kept"],
        "kept_chars": previous["kept_chars"] + new["kept_chars"],
        "snapshots": sorted({*previous["snapshots"], *new["snapshots"]}),
        "by_lang": dict(sorted(by_lang.items())),
        "math_score_buckets": [
            a + b for a, b in zip(previous["math_score_buckets"], new["math_score_buckets"], strict=True)
        ],
        "top_domains_math_by": new["top_domains_math_by"],
        "sample_candidates": samples,
        "quality_buckets": [a + b for a, b in zip(old_buckets, new_buckets, strict=True)],
        "quality_unscored": old_unscored + new_unscored,
        "quality_sample_candidates": [
            _smallest([*a, *b], QUALITY_SAMPLES) for a, b in zip(old_samples, new_samples, strict=True)
        ],
    }


def _smallest(candidates: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    by_id = {c["id"]: c for c in candidates}
    return sorted(by_id.values(), key=lambda c: (c["order"], c["id"]))[:n]


def quality_figures(state: dict[str, Any]) -> tuple[list[int], int, list[list[dict[str, Any]]]]:
    """(buckets, unscored, samples per bucket) of a stored summary; one stored before the quality figures
    existed had no scored documents: all of them are unscored."""
    if "quality_buckets" not in state:
        return [0] * QUALITY_BUCKETS, state["kept"], [[] for _ in range(QUALITY_SAMPLE_BUCKETS)]
    return state["quality_buckets"], state["quality_unscored"], state["quality_sample_candidates"]


def merge_domains(previous: DataFrame, new: DataFrame) -> DataFrame:
    """Per-domain counts of both tables, summed (in Spark: the driver never holds the domains)."""
    both = previous.select("domain", "documents", "math").unionByName(new)
    return both.groupBy("domain").agg(F.sum("documents").alias("documents"), F.sum("math").alias("math"))


def write_domains(domains: DataFrame, out: Path) -> None:
    """summary_domains/: shards of at most DOMAINS_PER_SHARD domains, sorted by domain."""
    shards = max(1, math.ceil(domains.count() / DOMAINS_PER_SHARD))
    domains.repartitionByRange(shards, "domain").sortWithinPartitions("domain").write.parquet(str(out))


def public_summary(state: dict[str, Any], domains: DataFrame) -> dict[str, Any]:
    """The figures stats.json and report.html show, from a mergeable summary and its domain counts."""
    top = domains.orderBy(F.desc("documents"), F.asc("domain")).limit(REPORT_DOMAINS).collect()
    return {
        "kept": state["kept"],
        "kept_chars": state["kept_chars"],
        "snapshots": state["snapshots"],
        "by_lang": state["by_lang"],
        "math_score_histogram": [(b / 10, n) for b, n in enumerate(state["math_score_buckets"])],
        "top_domains": [
            {"domain": r["domain"], "documents": int(r["documents"]), "math": int(r["math"] or 0)}
            for r in top
        ],
        "top_domains_math_by": state["top_domains_math_by"],
        "samples": [_public(c) for c in state["sample_candidates"]],
        **public_quality(state),
    }


def public_quality(state: dict[str, Any]) -> dict[str, Any]:
    """The quality figures of stats.json: `quality_histogram` [(low end, documents)] in buckets of 0.5,
    `quality_unscored`, and `quality_samples`, one entry per whole point with its documents (url, id,
    quality_score, the first QUALITY_SNIPPET_CHARS (+1) of the text)."""
    buckets, unscored, samples = quality_figures(state)
    return {
        "quality_histogram": [(b / 2, n) for b, n in enumerate(buckets)],
        "quality_unscored": unscored,
        "quality_samples": [
            {"low": float(b), "high": float(b + 1), "samples": [_public(c) for c in group]}
            for b, group in enumerate(samples)
        ],
    }


def _public(candidate: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in candidate.items() if k != "order"}
