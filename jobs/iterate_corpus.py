"""Spark job: DeepSeekMath's loop — train, recall, discover math domains, grow the seeds, repeat.

    spark-submit jobs/iterate_corpus.py --input warc.paths.gz --seeds seeds.jsonl --rounds 4 --output DIR
    mathforge corpus iterate --input DIR --seeds seeds.jsonl --rounds 4 --output DIR   # Spark local[*]

The WARC files are read once: the pool pass is the corpus job keeping every page with main text
(`--min-math-score 0`: extraction, language ID, exact and near dedup) into `DIR/pool`. Each round then only
trains and scores:

1. train fastText (DeepSeekMath's settings) on the round's seeds against pool pages sampled by a stable
   hash (never a seed, never a page the previous round collected); a fifth of the given seeds
   (`--heldout-fraction`) is held out, and their scores under the round's model are the reference
   (`--seed-quantile`) a prefix must score like;
2. score every pool page (Spark, one task per pool split) and collect the best pages at or above
   `--min-score`, up to `--token-budget`, best by the math score or by the quality score (`--rank-by`);
3. compute each domain's collected share, propose the URL-path prefixes under domains above
   `--domain-share`, accept them (`--accept auto`, or the prefixes a person listed in a file). Automatic
   acceptance is guarded: the prefix's collected pages' median score near the held-out seeds'
   (`--score-tolerance`), its mean quality score (`--min-prefix-quality`, with a pool built with
   `--quality-model`), and a cap on the seeds new prefixes add per round (`--max-seed-growth` x the given
   seeds, best prefixes first); every proposal's decision and reason is in `proposals.md`. A seed set too
   small (`--min-seeds`) or unlike the pool (`--min-seedlike-share`, its length) is warned about in
   `report.md`;
4. the uncollected pages under accepted prefixes join the next round's seeds.

The loop stops after `--rounds` rounds, or when a round's collection overlaps the previous one by
`--converge-overlap` (98%). Each round is committed atomically as `DIR/rounds/<n>/` (model, seeds,
scores, collection, proposals, accepted prefixes, report.json/report.md, score histogram); a re-run resumes
at the first uncommitted round. The final corpus (`DIR/data`, manifest, stats, `REPORT.md`) is the last
round's collection in the corpus schema, plus `first_round` and `first_score`: the round that first
collected each page and its score there.

Nothing that grows with the crawl passes through the driver or one task. Scoring, the collection (with a
token budget: a running total over a range partitioning of the ranking), domain shares, prefix proposals,
seeds and label figures are Spark aggregations and sort-merge joins (a broadcast join would collect one
side on the driver), and every per-page table is written by many tasks. The driver receives counts,
fixed-bin histograms, report lists of at most `--report-limit` entries, and the training texts: fastText
trains on one machine, so at most `--max-per-class` texts per class, each cut to the 20,000 characters
training reads, drawn in Spark (`jobs.driver_sample`). The decisions' plain definitions are in
`classifiers/domain_discovery.py`; the tests check that the Spark versions agree with them.
"""

from __future__ import annotations

if __name__ == "__main__" and __package__ in (None, ""):  # run as a script by spark-submit
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dataclasses
import functools
import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyspark.sql import Column, DataFrame, Row, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from classifiers.domain_discovery import (
    ACCEPTED as ACCEPTED_REASON,
)
from classifiers.domain_discovery import (
    CAPPED,
    CHARS_PER_TOKEN,
    EARLIER,
    FEW_PAGES,
    LOW_QUALITY,
    LOW_SCORE,
    LOW_SHARE,
    PrefixProposal,
    label_metrics_from_counts,
    quantile,
    read_accept_file,
    seed_warnings,
    split_heldout,
    split_key,
    under_prefix,
    url_prefix,
)
from classifiers.math_classifier import FastTextMathScorer, TrainingOptions, train_math_classifier
from crawl.redact import redact_record
from jobs.build_corpus import TARGET_SHARD_CHARS, build_corpus
from jobs.classifier_seeds import read_seed_texts, stable_fraction
from jobs.config import IterateConfig
from jobs.corpus_output import DATA_DIR, StagedOutput, new_run_id, package_versions
from jobs.corpus_schema import COLUMN_NAMES, CORPUS_COLUMNS
from jobs.corpus_writers import (
    CorpusLock,
    clean_staging,
    fsync_path,
    fsync_tree,
    make_staging,
    run_over,
    stale_hours_default,
    write_json,
)
from jobs.driver_sample import take_first
from jobs.spark import job_phase, ship_code

log = logging.getLogger("mathforge.iterate_corpus")

POOL_DIR = "pool"
ROUNDS_DIR = "rounds"
STATE_FILE = "iterate.json"
LABELS = "labels.parquet"  # in pool/: (id, label) of every pool page, when --labels is given
# in rounds/<n>/, each a Parquet folder written by many tasks (a single file in loops of older versions)
SEEDS, COLLECTION, SCORES = "seeds.parquet", "collection.parquet", "scores"
DOMAINS, PROPOSALS, ACCEPTED = "domains.parquet", "proposals.parquet", "accepted.parquet"
ROWS_PER_SHARD = 2_000_000  # rows of a per-page table without text (id, url, score...) per written file
HISTOGRAM_BINS = 10  # report.json's score histogram
PLOT_BINS = 20  # score_histogram.png's
SAMPLE_URLS = 3  # per proposed prefix
# Settings that decide what a committed round holds: a re-run with other values would mix two loops.
_FIXED_SETTINGS = (
    "input",
    "seeds",
    "token_budget",
    "min_score",
    "domain_share",
    "accept_share",
    "min_prefix_pages",
    "prefix_depth",
    "labels",
    "negative_ratio",
    "max_per_class",
    "epoch",
    "bucket",
    "seed",
    "heldout_fraction",
    "seed_quantile",
    "score_tolerance",
    "max_seed_growth",
    "min_prefix_quality",
    "quality_model",
    "rank_by",
)
MIN_HELDOUT = 3  # held-out seeds at least, when any are held out
EXTRA_COLUMNS = (
    ("first_round", "int", "the round of `corpus iterate` that first collected the page"),
    ("first_score", "float", "the page's math score in that round"),
)


def merge(df: DataFrame) -> DataFrame:
    """`df` as a side of a sort-merge join. Both sides of the loop's joins grow with the crawl; a broadcast
    join, Spark's pick for a side it estimates small, would collect that side on the driver."""
    return df.hint("merge")


def _table_done(path: Path) -> bool:
    """A table Spark finished writing (its `_SUCCESS`), or a single Parquet file of an older loop."""
    return path.is_file() or (path / "_SUCCESS").is_file()


# ---------------------------------------------------------------- the pool


def parse_label(path: str, number: int, line: str) -> tuple[str, bool] | None:
    """(url, is_math) from line `number` of a JSONL labels file; None for a blank line."""
    if not line.strip():
        return None
    try:
        record = json.loads(line)
        return record["url"], bool(record["is_math"])
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}:{number}: expected a JSON object with url and is_math ({exc!r})") from exc


def write_labels(spark: SparkSession, labels_file: str, pool: Path) -> None:
    """`pool/labels.parquet`: every pool page's id and label from the JSONL file of {url, is_math} (the
    last line naming a URL wins; no label for a page the file does not name), parsed and joined in Spark."""
    path = str(Path(labels_file).resolve())
    if not Path(path).is_file():
        raise FileNotFoundError(f"labels file not found: {labels_file}")
    numbered = spark.sparkContext.textFile(path).zipWithIndex()
    parsed = numbered.map(lambda li: (li[1] + 1, parse_label(path, li[1] + 1, li[0])))
    rows = parsed.filter(lambda nl: nl[1] is not None).map(lambda nl: (nl[1][0], nl[1][1], nl[0]))
    labels = spark.createDataFrame(rows, "url string, label boolean, line long")
    latest = Window.partitionBy("url").orderBy(F.desc("line"))
    labels = labels.withColumn("rank", F.row_number().over(latest)).where("rank = 1").select("url", "label")
    pages = spark.read.parquet(str(pool / DATA_DIR)).select("id", "url")
    joined = pages.join(merge(labels), "url", "left").select("id", "label")
    joined.write.mode("overwrite").parquet(str(pool / LABELS))


def build_pool(spark: SparkSession, config: IterateConfig, out: Path) -> None:
    """The pool pass (once): `corpus build` keeping every page into DIR/pool, plus `labels.parquet`."""
    pool = out / POOL_DIR
    if (pool / "manifest.json").is_file():
        log.info("pool already built at %s", pool)
    else:
        with job_phase(spark, "iterate: pool"):
            build_corpus(spark, config.pool_config(str(pool)))  # staged: committed only when complete
    if config.labels and not _table_done(pool / LABELS):
        with job_phase(spark, "iterate: labels"):
            write_labels(spark, config.labels, pool)


@dataclass(frozen=True)
class Pool:
    """The pool's tables, read once per run (each read of a Parquet folder costs Spark a job)."""

    pages: DataFrame  # the corpus columns of every pool page
    labels: DataFrame | None  # (id, label), when the loop has labels

    @classmethod
    def read(cls, spark: SparkSession, out: Path) -> Pool:
        labels = out / POOL_DIR / LABELS
        return cls(
            spark.read.parquet(str(out / POOL_DIR / DATA_DIR)),
            spark.read.parquet(str(labels)) if labels.exists() else None,
        )

    @property
    def has_quality(self) -> bool:
        return "quality_score" in self.pages.columns

    def check_quality(self, config: IterateConfig) -> None:
        """`--rank-by quality|both` and `--min-prefix-quality` need a pool with quality scores."""
        wanted = [f for f, on in (("--rank-by " + config.rank_by, config.rank_by != "math"),
                                  ("--min-prefix-quality", config.min_prefix_quality is not None)) if on]  # fmt: skip
        if not wanted:
            return
        scored = self.has_quality and self.pages.where(F.col("quality_score").isNotNull()).limit(1).count()
        if not scored:
            raise ValueError(
                f"{' and '.join(wanted)} need quality scores, and the pool has none: build it with "
                "--quality-model (a new --output)"
            )

    def texts(self, max_chars: int | None = None) -> DataFrame:
        """(id, text) of every pool page, the text cut to `max_chars` characters if given."""
        texts = self.pages.select("id", "text")
        if max_chars is not None:
            texts = texts.withColumn("text", F.substring("text", 1, max_chars))
        return texts

    def with_labels(self, pages: DataFrame) -> DataFrame:
        """`pages` with the pool's `label` column (None where there are no labels)."""
        if self.labels is not None:
            return pages.join(merge(self.labels), "id", "left")
        return pages.withColumn("label", F.lit(None).cast("boolean"))


def hash_fraction(column: str, seed: int) -> Column:
    """`stable_fraction(value, seed)` of a string column: the stable hash the loop samples by."""
    return F.udf(lambda value: stable_fraction(value, seed), T.DoubleType(), useArrow=False)(F.col(column))


# ---------------------------------------------------------------- committed rounds


@dataclass(frozen=True)
class Round:
    """A committed round: its folder, its report, and its tables as DataFrames."""

    number: int
    folder: Path
    report: dict[str, Any]

    def collection(self, spark: SparkSession) -> DataFrame:
        return spark.read.parquet(str(self.folder / COLLECTION))

    def seed_pages(self, spark: SparkSession) -> DataFrame:
        """(id, url) of its prefix seeds."""
        return spark.read.parquet(str(self.folder / SEEDS)).where(F.col("id").isNotNull()).select("id", "url")

    def accepted(self, spark: SparkSession) -> DataFrame:
        """(key, domain, prefix, round) of every prefix accepted up to this round."""
        if (self.folder / ACCEPTED).exists():
            return spark.read.parquet(str(self.folder / ACCEPTED))
        # a round of an older loop: the full list is in its report
        keys = [(k, *split_key(k), self.number) for k in self.report["accepted_prefixes"]]
        return spark.createDataFrame(keys, ACCEPTED_SCHEMA)


ACCEPTED_SCHEMA = "key string, domain string, prefix string, round int"


def committed_rounds(out: Path) -> list[int]:
    root = out / ROUNDS_DIR
    if not root.is_dir():
        return []
    return sorted(int(p.name) for p in root.iterdir() if p.name.isdigit() and (p / "report.json").is_file())


def load_round(out: Path, n: int) -> Round:
    folder = out / ROUNDS_DIR / str(n)
    return Round(n, folder, json.loads((folder / "report.json").read_text(encoding="utf-8")))


def fail_point(round_number: int, stage: str) -> None:
    """Called between a round's stages; tests replace it to kill a run in the middle of a round."""


# ---------------------------------------------------------------- one round


def run_round(
    spark: SparkSession,
    config: IterateConfig,
    out: Path,
    pool: Pool,
    n: int,
    previous: Round | None,
    given_seeds: list[str],
) -> None:
    """Run round `n` into a staging folder owned by this run; once complete (report.json written last,
    everything fsynced) rename it to `rounds/<n>`. Earlier attempts' staging folders go only when their run
    is provably over (`jobs.corpus_writers.clean_staging`)."""
    rounds_root = out / ROUNDS_DIR
    rounds_root.mkdir(parents=True, exist_ok=True)
    clean_staging(rounds_root.glob(f".staging-{n}-*"), stale_hours_default())
    run_id = new_run_id()
    staging = make_staging(rounds_root / f".staging-{n}-{run_id}", run_id)
    try:
        collected = _write_round(spark, config, pool, n, previous, given_seeds, staging)
        fail_point(n, "written")
    except BaseException:
        run_over(run_id)  # left for the next attempt, which may now remove it
        raise
    run_over(run_id)
    fsync_tree(staging)
    os.rename(staging, rounds_root / str(n))
    fsync_path(rounds_root, directory=True)
    log.info("round %d committed: %d pages collected", n, collected)


def _write_round(
    spark: SparkSession,
    config: IterateConfig,
    pool: Pool,
    n: int,
    previous: Round | None,
    given_seeds: list[str],
    staging: Path,
) -> int:
    """Round `n`'s files into `staging`, report.json last; returns the number of pages collected."""
    started = time.time()
    prev_ids = previous.collection(spark).select("id") if previous else None
    with job_phase(spark, f"iterate round {n}: seeds"):
        seed_counts = write_seeds(spark, pool, previous, len(given_seeds), staging / SEEDS)
    seed_ids = spark.read.parquet(str(staging / SEEDS)).where(F.col("id").isNotNull()).select("id")
    train_given, heldout = split_heldout(given_seeds, config.heldout_fraction, MIN_HELDOUT, config.seed)
    with job_phase(spark, f"iterate round {n}: training sample"):
        positives, negatives = training_sample(
            spark, config, pool, n, train_given, seed_ids if seed_counts["prefix"] else None, prev_ids
        )
    log.info("round %d: training on %d positives and %d negatives", n, len(positives), len(negatives))
    options = TrainingOptions(
        epoch=config.epoch, bucket=config.bucket, threads=config.threads, seed=config.seed
    )
    trained = train_math_classifier(positives, negatives, staging / "model.bin", options)
    fail_point(n, "trained")
    reference = seed_reference(config, staging / "model.bin", heldout)

    cached: list[DataFrame] = []
    try:
        with job_phase(spark, f"iterate round {n}: score"):
            scored = score_pool(spark, pool, staging / "model.bin", staging / SCORES)
            cached.append(scored)
        fail_point(n, "scored")
        log.info("round %d: pool scored; collecting and proposing prefixes", n)
        pages = pool.with_labels(scored).withColumn("tokens", approx_tokens("n_chars")).persist()
        cached.append(pages)
        with job_phase(spark, f"iterate round {n}: collect"):
            collected = write_collection(spark, config, pages, prev_ids, staging / COLLECTION)
        flagged = pages.withColumn("collected", collected)
        with job_phase(spark, f"iterate round {n}: figures"):
            figures = round_figures(spark.read.parquet(str(staging / COLLECTION)), flagged, previous)
        with job_phase(spark, f"iterate round {n}: seeds against the pool"):
            likeness = pool_likeness(pages, reference["score"])
        with job_phase(spark, f"iterate round {n}: domains"):
            discovery = discover(
                spark, config, n, previous, flagged, staging, reference["score"], len(given_seeds)
            )
    finally:
        for df in cached:
            df.unpersist()

    proposals = discovery.pop("proposals")
    lengths = sorted(len(t) for t in given_seeds)
    warnings = seed_warnings(
        len(given_seeds),
        config.min_seeds,
        len(heldout),
        likeness["seedlike_share"],
        config.min_seedlike_share,
        quantile(lengths, 0.5),
        likeness["pool_median_chars"],
    )
    for warning in warnings:
        log.warning("round %d: %s", n, warning)
    report = {
        "round": n,
        "seconds": round(time.time() - started, 2),
        "model": {"version": trained.metadata["version"], "heldout": trained.metadata["heldout"]},
        "seeds": {"given": len(given_seeds), "heldout": len(heldout), **seed_counts},
        "seed_reference": {**reference, **likeness},
        "warnings": warnings,
        "negatives": len(negatives),
        **figures["report"],
        "proposals": [p.to_dict() for p in proposals],
        **discovery,
    }
    write_json(staging / "proposals.json", report["proposals"])
    (staging / "proposals.md").write_text(
        render_proposals(n, proposals, report["totals"]["proposals"], report["seed_reference"]),
        encoding="utf-8",
    )
    _plot_histogram(figures["plot"], config.min_score, staging / "score_histogram.png", n)
    (staging / "report.md").write_text(render_round_markdown(report), encoding="utf-8")
    write_json(staging / "report.json", report)  # last: its presence marks a complete round
    return report["collected_pages"]


def approx_tokens(n_chars: str) -> Column:
    """`classifiers.domain_discovery.approx_tokens` of a column of character counts: ⌈n/4⌉ (at least 1 for
    any text), 0 for none."""
    return F.expr(f"CASE WHEN {n_chars} > 0 THEN ({n_chars} + 3) div 4 ELSE 0 END").cast("long")


def seed_reference(config: IterateConfig, model: Path, heldout: list[str]) -> dict[str, Any]:
    """The held-out seeds' scores under the round's model (on the driver: they are given seeds, already
    there): their `--seed-quantile` is the reference score a prefix's pages must come near, None when no
    seed was held out."""
    if not heldout:
        return {"score": None, "median": None, "quantile": config.seed_quantile}
    scores = [round(s, 6) for s in FastTextMathScorer(str(model)).score_batch(heldout)]
    return {
        "score": round(quantile(scores, config.seed_quantile), 4),
        "median": round(quantile(scores, 0.5), 4),
        "quantile": config.seed_quantile,
    }


def pool_likeness(pages: DataFrame, reference: float | None) -> dict[str, Any]:
    """One aggregation over the scored pool: the share of pages scoring at least the reference score (how
    much of the pool the classifier finds like the seeds) and the pool's median length."""
    like = F.lit(None) if reference is None else (F.col("score") >= reference).cast("long")
    row = pages.agg(
        F.count("*").alias("pages"),
        F.sum(like).alias("like"),
        F.percentile_approx("n_chars", 0.5).alias("median_chars"),
    ).first()
    share = None if reference is None or not row["pages"] else round((row["like"] or 0) / row["pages"], 4)
    return {"seedlike_share": share, "pool_median_chars": float(row["median_chars"] or 0)}


def rank_column(config: IterateConfig) -> Column:
    """What the collection ranks by: the math score, the quality score (0-5; none ranks last), or the math
    score times the quality score over 5."""
    quality = F.coalesce(F.col("quality_score").cast("double"), F.lit(0.0))
    return {"math": F.col("score"), "quality": quality, "both": F.col("score") * quality / 5.0}[
        config.rank_by
    ]


def write_seeds(
    spark: SparkSession, pool: Pool, previous: Round | None, given: int, path: Path
) -> dict[str, int]:
    """The round's seeds.parquet (id, source, url): a row per given seed (no id), then the prefix seeds by
    id: the earlier rounds' (`prefix`) and the uncollected pages under the previous round's accepted
    prefixes (`prefix:new`). Returns the prefix and new prefix seed counts."""
    empty_id = F.lit(None).cast("string")
    rows = spark.range(given).select(
        empty_id.alias("id"), F.lit("given").alias("source"), empty_id.alias("url")
    )
    if previous is None:
        rows.write.parquet(str(path))
        return {"prefix": 0, "new_prefix": 0}
    old = previous.seed_pages(spark)
    pages = pool.pages.select("id", "url", "domain")
    uncollected = pages.join(merge(previous.collection(spark).select("id")), "id", "left_anti")
    accepted = previous.accepted(spark).select("domain", "prefix")
    under = F.udf(lambda url, prefix: under_prefix(url, prefix), T.BooleanType(), useArrow=False)
    new = (
        uncollected.join(merge(accepted), "domain")
        .where(under(F.col("url"), F.col("prefix")))
        .select("id", "url")
        .distinct()
        .join(merge(old.select("id")), "id", "left_anti")
    )
    rows = rows.unionByName(old.select("id", F.lit("prefix").alias("source"), "url"))
    rows = rows.unionByName(new.select("id", F.lit("prefix:new").alias("source"), "url"))
    rows.orderBy(F.col("id").asc_nulls_first()).write.parquet(str(path))
    counts = dict(spark.read.parquet(str(path)).groupBy("source").count().collect())
    return {
        "prefix": counts.get("prefix", 0) + counts.get("prefix:new", 0),
        "new_prefix": counts.get("prefix:new", 0),
    }


def training_sample(
    spark: SparkSession,
    config: IterateConfig,
    pool: Pool,
    n: int,
    given: list[str],
    seed_ids: DataFrame | None,
    prev_ids: DataFrame | None,
) -> tuple[list[str], list[str]]:
    """Positives: the given seeds, then prefix seed pages (by id) up to `max_per_class` in all, a stable-hash
    sample of them past it. Negatives: `negative_ratio` per positive, the pool pages first in a stable hash
    order outside the seeds and the previous collection. Both samples are drawn on ids; their texts (cut to
    what training reads) come in one pass over the pool, through a broadcast of the chosen ids."""
    room = max(0, config.max_per_class - len(given))
    seed_keys: list[str] = []
    if seed_ids is not None and room:
        hashed_seeds = seed_ids.withColumn("f", hash_fraction("id", config.seed))
        seed_keys = sorted(r.id for r in take_first(hashed_seeds, ("f", "id"), room, []))
    n_positives = len(given[: config.max_per_class]) + len(seed_keys)
    n_neg = min(config.max_per_class, max(1, round(config.negative_ratio * n_positives)))
    candidates = pool.pages.select("id")
    excluded = [df for df in (seed_ids, prev_ids) if df is not None]
    if excluded:
        candidates = candidates.join(
            merge(functools.reduce(DataFrame.unionByName, excluded)), "id", "left_anti"
        )
    candidates = candidates.withColumn("f", hash_fraction("id", config.seed + n)).persist()
    try:
        negative_keys = [r.id for r in take_first(candidates, ("f", "id"), n_neg, [])]
    finally:
        candidates.unpersist()
    chosen = spark.createDataFrame([(i,) for i in seed_keys + negative_keys], "id string")
    texts = pool.texts(TrainingOptions().max_chars).join(F.broadcast(chosen), "id", "left_semi")
    by_id = dict(texts.collect()) if seed_keys or negative_keys else {}
    positives = given[: config.max_per_class] + [by_id[i] for i in seed_keys]
    return positives, [by_id[i] for i in negative_keys]


def score_pool(spark: SparkSession, pool: Pool, model_path: Path, dest: Path) -> DataFrame:
    """Every pool page's P(math) under `model_path` into the Parquet folder `dest` (id, score): one task
    per pool split, each writing its own file. Returns (id, url, domain, n_chars, quality_score, score), the score rounded
    to 6 digits as the round's decisions use it, and the pool's quality_score (None without one), kept by the executors (persisted): the caller unpersists."""
    model = str(model_path)

    def score_partition(rows):
        from classifiers.math_classifier import FastTextMathScorer

        scorer = FastTextMathScorer(model)
        batch: list = []
        for row in rows:
            batch.append(row)
            if len(batch) >= 512:
                scores = scorer.score_batch(r.text for r in batch)
                yield from ((*r[:-1], s) for r, s in zip(batch, scores, strict=True))
                batch = []
        if batch:
            scores = scorer.score_batch(r.text for r in batch)
            yield from ((*r[:-1], s) for r, s in zip(batch, scores, strict=True))

    quality = F.col("quality_score").cast("double") if pool.has_quality else F.lit(None).cast("double")
    pages = pool.pages.select("id", "url", "domain", "n_chars", quality.alias("quality_score"), "text")
    schema = "id string, url string, domain string, n_chars int, quality_score double, score double"
    scored = spark.createDataFrame(pages.rdd.mapPartitions(score_partition), schema).persist()
    scored.select("id", "score").write.parquet(str(dest))
    return scored.withColumn("score", F.round("score", 6))


def write_collection(
    spark: SparkSession, config: IterateConfig, pages: DataFrame, prev_ids: DataFrame | None, path: Path
) -> Column:
    """collection.parquet (id, url, domain, score, tokens, label, new): the pages scoring at least
    `min_score`, best first (ties by id) up to the token budget, written range-partitioned in that order
    (its files, read in name order, list the pages best first). Returns the condition "collected" over
    `pages`: the collection is a prefix of the ranking, so it is a comparison with its last page.
    `--rank-by` orders by the quality score or both instead (`rank_column`); the floor stays the math score."""
    at_least = F.col("score") >= config.min_score
    if "quality_score" not in pages.columns:
        pages = pages.withColumn("quality_score", F.lit(None).cast("double"))
    ranked = pages.where(at_least).withColumn("rank", rank_column(config))
    shards = max(1, math.ceil(ranked.count() / ROWS_PER_SHARD))
    if config.token_budget is not None:
        ranked = within_budget(spark, ranked, config.token_budget, shards, by="rank")
    if prev_ids is not None:
        earlier = prev_ids.select("id", F.lit(True).alias("earlier"))
        ranked = ranked.join(merge(earlier), "id", "left").withColumn("new", F.col("earlier").isNull())
    else:
        ranked = ranked.withColumn("new", F.lit(True))
    order = [F.desc("rank"), F.asc("id")]
    columns = ["id", "url", "domain", "score", "quality_score", "rank", "tokens", "label", "new"]
    ranked.select(*columns).repartitionByRange(shards, *order).sortWithinPartitions(*order).write.parquet(
        str(path)
    )
    if config.token_budget is None:
        return at_least
    last = spark.read.parquet(str(path)).orderBy(F.asc("rank"), F.desc("id")).select("rank", "id").first()
    if last is None:
        return F.lit(False)
    rank, page = rank_column(config), F.col("id")
    return at_least & ((rank > last["rank"]) | ((rank == last["rank"]) & (page <= last.id)))


def within_budget(
    spark: SparkSession, ranked: DataFrame, budget: int, partitions: int, by: str = "score"
) -> DataFrame:
    """The rows of `ranked` best first (column `by` descending, ties by id) while their running token total stays
    within `budget`, as `classifiers.domain_discovery.collect` cuts: a range partitioning in that order, one
    total per partition to the driver, then each partition kept up to the budget from its offset. Tokens are
    never negative, so the running total only grows: the first page that does not fit ends the collection."""
    order = [F.desc(by), F.asc("id")]
    ordered = ranked.repartitionByRange(partitions, *order).sortWithinPartitions(*order)
    rdd = ordered.rdd  # one RDD for both passes: the second reuses the first one's shuffle
    totals = dict(rdd.mapPartitionsWithIndex(lambda i, rows: [(i, sum(r.tokens for r in rows))]).collect())
    offsets, used = [], 0
    for i in range(rdd.getNumPartitions()):
        offsets.append(used)
        used += totals.get(i, 0)

    def keep(i, rows):
        used = offsets[i]
        for row in rows:
            used += row.tokens
            if used > budget:
                return
            yield row

    return spark.createDataFrame(rdd.mapPartitionsWithIndex(keep), ordered.schema)


def round_figures(collection: DataFrame, flagged: DataFrame, previous: Round | None) -> dict[str, Any]:
    """The round's counts, label figures and score histograms from two aggregations (bounded results):
    over the collection, and per (score bin, label, collected) over the pool."""
    totals = collection.agg(
        F.count("*").alias("pages"),
        F.sum("tokens").alias("tokens"),
        F.sum(F.col("new").cast("long")).alias("new"),
    ).first()
    pages, new = totals["pages"], totals["new"] or 0
    score = F.col("score")
    groups = (
        flagged.groupBy(
            F.least(F.lit(HISTOGRAM_BINS - 1), F.floor(score * HISTOGRAM_BINS)).cast("int").alias("bin"),
            F.least(F.lit(PLOT_BINS - 1), F.floor(score * PLOT_BINS)).cast("int").alias("plot_bin"),
            "label",
            "collected",
        )
        .count()
        .collect()
    )
    histogram = [0] * HISTOGRAM_BINS
    by_label: dict[tuple[bool | None, bool], int] = {}
    plot: dict[str, list[int]] = {}
    labelled = any(g["label"] is not None for g in groups)
    for g in groups:
        histogram[g["bin"]] += g["count"]
        key = (g["label"], g["collected"])
        by_label[key] = by_label.get(key, 0) + g["count"]
        if labelled:
            name = {True: "math (label)", False: "not math (label)", None: "unlabelled"}[g["label"]]
        else:
            name = "collected" if g["collected"] else "not collected"
        plot.setdefault(name, [0] * PLOT_BINS)[g["plot_bin"]] += g["count"]
    order = ["math (label)", "not math (label)", "unlabelled"] if labelled else ["collected", "not collected"]
    report = {
        "pool_pages": sum(histogram),
        "collected_pages": pages,
        "collected_tokens": totals["tokens"] or 0,
        "new_pages": new,
        "overlap": None if previous is None else ((pages - new) / pages if pages else 1.0),
        "labels": label_metrics_from_counts(by_label),
        "score_histogram": [[round(b / HISTOGRAM_BINS, 2), c] for b, c in enumerate(histogram)],
    }
    return {"report": report, "plot": {name: plot.get(name, [0] * PLOT_BINS) for name in order}}


def discover(
    spark: SparkSession,
    config: IterateConfig,
    n: int,
    previous: Round | None,
    flagged: DataFrame,
    staging: Path,
    seed_score: float | None,
    given: int,
) -> dict[str, Any]:
    """Domain shares, prefix proposals and acceptance as Spark aggregations: one pass over the pool counts
    pages, collected pages and sample URLs per (domain, URL prefix), and a window over each domain's
    prefixes gives its share. Writes domains.parquet (the math-domain candidates), proposals.parquet (every
    proposal) and accepted.parquet (every prefix accepted so far, with the round that accepted it); returns
    the report's lists, each cut to `--report-limit` entries, with their full lengths (`proposals`: the
    ones with the most collected pages, listed by key)."""
    depth = config.prefix_depth
    prefix_of = F.udf(lambda url: url_prefix(url, depth), T.StringType(), useArrow=False)
    collected = F.col("collected")
    domain = Window.partitionBy("domain")
    prefixes = (
        flagged.withColumn("prefix", prefix_of("url"))
        .groupBy("domain", "prefix")
        .agg(
            F.count("*").alias("pages"),
            F.sum(collected.cast("long")).alias("collected"),
            # collected pages first, each sorted: `propose_prefixes`'s sample URLs
            F.min_by("url", F.struct(~collected, F.col("url")), SAMPLE_URLS).alias("sample_urls"),
            F.round(F.percentile(F.when(collected, F.col("score")), F.lit(0.5)), 4).alias("median_score"),
            F.round(F.avg("quality_score"), 4).alias("mean_quality"),
        )
        .withColumn("domain_pages", F.sum("pages").over(domain))
        .withColumn("domain_collected", F.sum("collected").over(domain))
        .withColumn("domain_share", F.col("domain_collected") / F.col("domain_pages"))
        .where(F.col("domain_share") > config.domain_share)  # under math-domain candidates only
        .withColumn("first", F.row_number().over(domain.orderBy("prefix")) == 1)
        .persist()
    )
    try:
        candidates = prefixes.where("first").select(
            "domain",
            F.col("domain_pages").alias("pages"),
            F.col("domain_collected").alias("collected"),
            F.col("domain_share").alias("share"),
        )
        candidates.sortWithinPartitions("domain").write.parquet(str(staging / DOMAINS))
        proposals = prefixes.where(F.col("collected") > 0).withColumn("key", F.concat("domain", "prefix"))
        if config.accept == "auto":
            proposals = guarded_decisions(spark, config, proposals, previous, seed_score, given)
        else:
            listed = F.col("key").isin(sorted(read_accept_file(config.accept)))
            proposals = proposals.withColumn(
                "decision", F.when(listed, F.lit("accepted: listed")).otherwise(F.lit("not listed"))
            ).withColumn("accepted", listed)
        columns = ["domain", "prefix", "key", "pages", "collected", "domain_share", "sample_urls", "accepted"]
        proposals = proposals.select(*columns, "median_score", "mean_quality", "decision")
        proposals.sortWithinPartitions("key").write.parquet(str(staging / PROPOSALS))
    finally:
        prefixes.unpersist()
    candidates = spark.read.parquet(str(staging / DOMAINS))
    proposals = spark.read.parquet(str(staging / PROPOSALS))
    new = proposals.where("accepted").select("key", "domain", "prefix", F.lit(n).alias("round"))
    if previous is not None:  # a key accepted again keeps its first round
        new = (
            previous.accepted(spark)
            .unionByName(new)
            .groupBy("key")
            .agg(
                F.first("domain").alias("domain"),
                F.first("prefix").alias("prefix"),
                F.min("round").alias("round"),
            )
        )
    new.sortWithinPartitions("key").write.parquet(str(staging / ACCEPTED))

    limit = config.report_limit
    lists, lengths = accepted_lists(spark.read.parquet(str(staging / ACCEPTED)), n, limit)
    listed_candidates, n_candidates = _first_rows(candidates, ["domain"], limit)
    listed, n_proposals = _first_rows(proposals, [F.desc("collected"), F.asc("key")], limit)
    listed.sort(key=lambda r: (r["domain"], r["prefix"]))
    return {
        "candidate_domains": [
            {
                "domain": r["domain"],
                "pages": r["pages"],
                "collected": r["collected"],
                "share": round(r["share"], 4),
            }
            for r in sorted(listed_candidates, key=lambda r: r["domain"])
        ],
        "proposals": [_proposal(r) for r in listed],
        **lists,
        "totals": {  # the lists hold at most `report_limit` entries: their full lengths
            "candidate_domains": n_candidates,
            "proposals": n_proposals,
            **lengths,
        },
    }


def guarded_decisions(
    spark: SparkSession,
    config: IterateConfig,
    proposals: DataFrame,
    previous: Round | None,
    seed_score: float | None,
    given: int,
) -> DataFrame:
    """`classifiers.domain_discovery.guarded_accept` in Spark: each proposal's decision (the first failed
    guard, in its order), then the cap on new seeds over the passing ones (`within_budget`: best median
    score first, the uncollected pages as the cost). Adds `decision` and `accepted`."""
    share = F.col("collected") / F.col("pages")
    decision = F.when(F.col("earlier"), F.lit(EARLIER))
    decision = decision.when(F.col("collected") < config.min_prefix_pages, F.lit(FEW_PAGES))
    decision = decision.when(share < config.accept_share, F.lit(LOW_SHARE))
    if seed_score is not None:
        low = F.coalesce(F.col("median_score"), F.lit(0.0)) < seed_score - config.score_tolerance
        decision = decision.when(low, F.lit(LOW_SCORE))
    if config.min_prefix_quality is not None:
        poor = F.col("mean_quality").isNull() | (F.col("mean_quality") < config.min_prefix_quality)
        decision = decision.when(poor, F.lit(LOW_QUALITY))
    decision = decision.otherwise(F.lit(ACCEPTED_REASON))
    if previous is not None:
        earlier = previous.accepted(spark).select("key", F.lit(True).alias("earlier"))
        proposals = proposals.join(merge(earlier), "key", "left")
        proposals = proposals.withColumn("earlier", F.coalesce(F.col("earlier"), F.lit(False)))
    else:
        proposals = proposals.withColumn("earlier", F.lit(False))
    proposals = proposals.withColumn("decision", decision).drop("earlier")
    if config.max_seed_growth is not None:
        cap = int(config.max_seed_growth * given)
        passing = proposals.where(F.col("decision") == ACCEPTED_REASON).select(
            F.col("key").alias("id"),
            F.coalesce(F.col("median_score"), F.lit(0.0)).alias("score"),
            (F.col("pages") - F.col("collected")).alias("tokens"),
        )
        parts = spark.sparkContext.defaultParallelism  # a range partitioning: no single task sorts them all
        fits = within_budget(spark, passing, cap, parts).select(
            F.col("id").alias("key"), F.lit(True).alias("fits")
        )
        proposals = proposals.join(merge(fits), "key", "left").withColumn(
            "decision",
            F.when((F.col("decision") == ACCEPTED_REASON) & F.col("fits").isNull(), F.lit(CAPPED)).otherwise(
                F.col("decision")
            ),
        )
    return proposals.withColumn("accepted", F.col("decision").isin(ACCEPTED_REASON, EARLIER))


def _first_rows(df: DataFrame, order: list, limit: int) -> tuple[list[Row], int]:
    """The first `limit` rows of `df` in `order` (not sorted), and how many rows it has: one collect when
    they are `limit` at most."""
    rows = df.limit(limit + 1).collect()
    if len(rows) <= limit:
        return rows, len(rows)
    return df.orderBy(*order).limit(limit).collect(), df.count()


def accepted_lists(accepted: DataFrame, n: int, limit: int) -> tuple[dict[str, list[str]], dict[str, int]]:
    """The report's lists of accepted prefixes and math domains, all and new in round `n`, sorted and cut to
    `limit` entries, and their full lengths."""
    rows = accepted.limit(limit + 1).collect()
    if len(rows) <= limit:  # the usual case: the table is small, one collect
        first: dict[str, int] = {}
        for r in rows:
            first[r["domain"]] = min(first.get(r["domain"], r["round"]), r["round"])
        lists = {
            "new_prefixes": sorted(r["key"] for r in rows if r["round"] == n),
            "accepted_prefixes": sorted(r["key"] for r in rows),
            "new_domains": sorted(d for d, r in first.items() if r == n),
            "math_domains": sorted(first),
        }
        return lists, {k: len(v) for k, v in lists.items()}
    domains = accepted.groupBy("domain").agg(F.min("round").alias("round"))
    tables = {
        "new_prefixes": (accepted.where(F.col("round") == n), "key"),
        "accepted_prefixes": (accepted, "key"),
        "new_domains": (domains.where(F.col("round") == n), "domain"),
        "math_domains": (domains, "domain"),
    }
    lists, lengths = {}, {}
    for name, (df, column) in tables.items():
        rows, lengths[name] = _first_rows(df.select(column), [column], limit)
        lists[name] = sorted(r[0] for r in rows)
    return lists, lengths


def _proposal(row) -> PrefixProposal:
    return PrefixProposal(
        domain=row["domain"],
        prefix=row["prefix"],
        pages=row["pages"],
        collected=row["collected"],
        domain_share=round(row["domain_share"], 4),
        sample_urls=tuple(row["sample_urls"]),
        accepted=bool(row["accepted"]),
        median_score=row["median_score"],
        mean_quality=row["mean_quality"],
        decision=row["decision"],
    )


def _plot_histogram(groups: dict[str, list[int]], min_score: float, path: Path, n: int) -> None:
    """Score histogram of the pool (PNG) from per-bin counts: by label when the pool is labelled, else
    collected vs not."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    bins = [i / PLOT_BINS for i in range(PLOT_BINS + 1)]
    centres = [(i + 0.5) / PLOT_BINS for i in range(PLOT_BINS)]
    names = list(groups)
    ax.hist([centres] * len(names), bins=bins, weights=[groups[k] for k in names], stacked=True, label=names)
    ax.axvline(min_score, color="black", linestyle="--", linewidth=1)
    ax.set(xlabel="math score", ylabel="pool pages", title=f"round {n}: scores of the pool", yscale="log")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def render_proposals(
    n: int, proposals: list[PrefixProposal], total: int | None = None, reference: dict | None = None
) -> str:
    lines = [
        f"# Round {n}: proposed math URL prefixes",
        "",
        "Copy the keys you accept into the file given to `--accept` (one per line), then re-run.",
        "",
    ]
    if total is not None and total > len(proposals):
        lines += [
            f"The {len(proposals)} of {total} proposals with the most collected pages; every one is in "
            "`proposals.parquet`.",
            "",
        ]
    if reference is not None:
        lines += [
            f"Reference: the held-out seeds' {reference['quantile']:.2f} quantile score is "
            f"{_num(reference['score'])} (median {_num(reference['median'])}); "
            "`median score` is the median of a prefix's collected pages.",
            "",
        ]
    lines += [
        "| key | pages | collected | share | domain share | median score | quality | accepted | decision | "
        "sample URLs |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | --- |",
    ]
    for p in proposals:
        lines.append(
            f"| `{p.key}` | {p.pages} | {p.collected} | {p.share:.2f} | {p.domain_share:.2f} | "
            f"{_num(p.median_score)} | {_num(p.mean_quality)} | {'yes' if p.accepted else 'no'} | {p.decision} | "
            f"{' '.join(p.sample_urls)} |"
        )
    return "\n".join(lines) + "\n"


def render_round_markdown(report: dict[str, Any]) -> str:
    ov = report["overlap"]
    totals = report.get("totals", {})

    def listed(name: str) -> str:
        values = report[name]
        more = totals.get(name, len(values)) - len(values)
        return (", ".join(values) or "none") + (f" (and {more} more)" if more > 0 else "")

    lines = [
        f"# Round {report['round']}",
        "",
        f"- seeds: {report['seeds']['given']} given + {report['seeds']['prefix']} from accepted prefixes "
        f"({report['seeds']['new_prefix']} new); negatives: {report['negatives']}",
        f"- collected: {report['collected_pages']} of {report['pool_pages']} pool pages, "
        f"~{report['collected_tokens']} tokens; new this round: {report['new_pages']}",
        f"- overlap with the previous round: {'—' if ov is None else f'{ov:.3f}'}",
        f"- new math domains: {listed('new_domains')}",
        f"- new prefixes: {listed('new_prefixes')}",
    ]
    if report["labels"]:
        lab = report["labels"]
        lines.append(
            f"- against labels: recall {lab['recall']:.3f}, precision {lab['precision']:.3f} "
            f"({lab['true_positives']} math pages collected of {lab['math']}, {lab['false_positives']} not math)"
        )
    ref = report.get("seed_reference")
    if ref:
        lines.append(
            f"- held-out seeds: {report['seeds'].get('heldout', 0)}, reference score {_num(ref['score'])}; "
            f"pool share scoring like them: {_num(ref['seedlike_share'])}"
        )
    lines += [f"- **warning**: {w}" for w in report.get("warnings", [])]
    lines += ["", "![scores](score_histogram.png)", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------- the loop


def check_state(out: Path, config: IterateConfig) -> None:
    """Refuse to resume a loop whose settings differ; record them on the first run."""
    state_path = out / STATE_FILE
    settings = redact_record({k: getattr(config, k) for k in _FIXED_SETTINGS})  # no credentials written
    if state_path.is_file():
        recorded = json.loads(state_path.read_text(encoding="utf-8"))["settings"]
        changed = sorted(k for k in settings if recorded.get(k) != settings[k])
        if changed:
            raise ValueError(
                f"{out} holds a loop run with other settings ({', '.join(changed)}); use a new --output"
            )
        return
    out.mkdir(parents=True, exist_ok=True)
    write_json(state_path, {"settings": settings})


def iterate_corpus(spark: SparkSession, config: IterateConfig) -> dict[str, Any]:
    """Run (or resume) the loop; returns the summary also written to DIR/stats.json."""
    started = time.time()
    out = Path(config.output).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    lock = CorpusLock(out)  # `<DIR>.lock`: one loop at a time writes DIR (its rounds and its corpus)
    lock.acquire(new_run_id())
    try:
        return _iterate_locked(spark, config, out, started)
    finally:
        lock.release()


def _iterate_locked(spark: SparkSession, config: IterateConfig, out: Path, started: float) -> dict[str, Any]:
    check_state(out, config)
    ship_code(spark)
    build_pool(spark, config, out)
    pool = Pool.read(spark, out)
    pool.check_quality(config)
    given = read_seed_texts(config.seeds)
    previous: Round | None = None
    rounds: list[Round] = []
    for n in range(1, config.rounds + 1):
        if n not in committed_rounds(out):
            fail_point(n, "start")
            run_round(spark, config, out, pool, n, previous, given)
        previous = load_round(out, n)
        rounds.append(previous)
        ov = previous.report["overlap"]
        if ov is not None and ov >= config.converge_overlap:
            log.info("round %d overlaps the previous one by %.3f: converged", n, ov)
            break
    with job_phase(spark, "iterate: final corpus"):
        return write_final_corpus(spark, config, out, pool, rounds, time.time() - started)


def final_pages(spark: SparkSession, rounds: list[Round]) -> DataFrame:
    """(id, final_score, first_round, first_score) of the last round's collection: its score there, and the
    round that first collected it with its score then (one aggregation over every round's collection)."""
    collected = functools.reduce(
        DataFrame.unionByName,
        [r.collection(spark).select("id", F.lit(r.number).alias("round"), "score") for r in rounds],
    )
    per_page = collected.groupBy("id").agg(
        F.min(F.struct("round", "score")).alias("first"), F.max(F.struct("round", "score")).alias("last")
    )
    return per_page.where(F.col("last.round") == rounds[-1].number).select(
        "id",
        F.col("last.score").alias("final_score"),
        F.col("first.round").alias("first_round"),
        F.col("first.score").alias("first_score"),
    )


def write_final_corpus(
    spark: SparkSession, config: IterateConfig, out: Path, pool: Pool, rounds: list[Round], seconds: float
) -> dict:
    """The last round's collection as a corpus (schema + first_round/first_score) in DIR/data, with
    manifest.json, stats.json and REPORT.md. `DIR/data` is a versioned corpus link (`StagedOutput`): the
    shards (sized like `corpus build`'s, sorted by id, written by many tasks) are fsynced, marked complete
    and swapped in with one rename, the previous data kept."""
    reports = [r.report for r in rounds]
    last = rounds[-1]
    df = (
        pool.pages.join(merge(final_pages(spark, rounds)), "id")
        .withColumn("math_score", F.col("final_score").cast("float"))
        .withColumn("is_math", F.lit(True))
        .withColumn("first_score", F.col("first_score").cast("float"))
        .select(*COLUMN_NAMES, *(name for name, _, _ in EXTRA_COLUMNS))
    )
    # shards sized like `corpus build`'s: ~4 characters a token (what the token budget counts)
    shards = max(1, math.ceil(last.report["collected_tokens"] * CHARS_PER_TOKEN / TARGET_SHARD_CHARS))
    with StagedOutput(out / DATA_DIR, overwrite=True) as staging:  # DIR/data: a link swapped in one rename
        written = staging / ".spark-output"
        df.repartitionByRange(shards, "id").sortWithinPartitions("id").write.parquet(str(written))
        for shard in written.glob("part-*"):
            os.rename(shard, staging / shard.name)
        shutil.rmtree(written)
    documents = last.report["collected_pages"]  # the rows just written: that collection, joined to the pool
    log.info("final corpus: %d documents in %d shards", documents, shards)
    per_round = [
        {
            k: r[k]
            for k in (
                "round",
                "collected_pages",
                "collected_tokens",
                "new_pages",
                "overlap",
                "new_domains",
                "new_prefixes",
                "labels",
                "warnings",
            )
        }
        for r in reports
    ]
    converged = reports[-1]["overlap"] is not None and reports[-1]["overlap"] >= config.converge_overlap
    stats = {
        "rounds": per_round,
        "rounds_run": len(reports),
        "converged": converged,
        "documents": documents,
        "math_domains": reports[-1]["math_domains"],
        "accepted_prefixes": reports[-1]["accepted_prefixes"],
        "seconds": round(seconds, 2),
    }
    manifest = {
        "config": redact_record(dataclasses.asdict(config)),
        "versions": package_versions(),
        "spark": {"master": spark.sparkContext.master, "version": spark.version},
        "pool": str(out / POOL_DIR),
        "math_scorer": {
            "name": "fasttext",
            "version": reports[-1]["model"]["version"],
            "model": str(last.folder / "model.bin"),
        },
        "schema": [{"name": n, "type": t, "description": d} for n, t, d in (*CORPUS_COLUMNS, *EXTRA_COLUMNS)],
        "counts": {"documents": documents, "shards": shards},
    }
    write_json(out / "stats.json", stats)
    (out / "REPORT.md").write_text(render_loop_markdown(stats), encoding="utf-8")
    write_json(out / "manifest.json", manifest)
    return stats


def render_loop_markdown(stats: dict[str, Any]) -> str:
    lines = [
        "# corpus iterate",
        "",
        f"- rounds run: {stats['rounds_run']}; converged: {'yes' if stats['converged'] else 'no'}",
        f"- documents in the final corpus: {stats['documents']}",
        f"- math domains discovered: {', '.join(stats['math_domains']) or 'none'}",
        "",
        "| round | pages | tokens | new | overlap | recall | precision | new domains |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in stats["rounds"]:
        lab = r["labels"] or {}
        ov = "—" if r["overlap"] is None else f"{r['overlap']:.3f}"
        lines.append(
            f"| {r['round']} | {r['collected_pages']} | {r['collected_tokens']} | {r['new_pages']} | {ov} | "
            f"{lab.get('recall', '—')} | {lab.get('precision', '—')} | {', '.join(r['new_domains']) or '—'} |"
        )
    lines += ["", "Per round: `rounds/<n>/report.md`, `proposals.md`, `score_histogram.png`.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    from jobs.spark import job_main

    job_main(
        argv,
        prog="iterate_corpus.py",
        doc=__doc__,
        config_cls=IterateConfig,
        job=iterate_corpus,
        render=render_loop_markdown,
    )


if __name__ == "__main__":
    main()
