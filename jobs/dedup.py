"""Corpus hygiene on Spark: exact dedup, MinHash-LSH near dedup with connected components, decontamination.

Every step is DataFrame in → DataFrame out, distributed, with no single-machine collect of the corpus:

1. exact: one row per normalised-text digest, then one per URL (`url_dedup`; rows without a URL never
   match by URL);
2. near: MinHash signatures and LSH band hashes per document (numpy, in the executors), with bands chosen
   for `threshold - recall_margin` so that few true pairs are missed; documents sharing a band hash become
   candidate pairs (all pairs of a bucket of at most `max_pairs_bucket`; in a larger one each document
   against at most that many representatives, `classifiers.minhash.bucket_links`); a pair is kept when the
   exact Jaccard of the two shingle sets reaches `threshold` (the signature estimate is a coin flip near
   the threshold, the exact check is not); connected components by iterated min-label propagation over the
   kept pairs; one survivor per component. With a dedup index of an earlier corpus, documents matching an
   indexed one are removed first: by exact key, then by band hash and the exact Jaccard against the
   indexed candidates' text, read from the index's own corpus (only the candidates; an index copied without
   its corpus falls back to the signature estimate). An indexed document always survives, so a refresh
   never changes published snapshots;
3. decontamination: documents quoting a benchmark question (n-gram match) are removed and reported.

The index (`dedup_index/`) is written last, from the rows the snapshot keeps: a document removed by any step
is in no snapshot, so it must not make a later document a duplicate.

Survivor rule, the same whatever the partitioning: highest `math_score`, then earliest `fetch_time`
(missing last), then smallest `id`. Removed documents are listed with the step, the reason and the id they
duplicate in the corpus's `removed/` table.

Losing an executor mid-run (a spot instance, dynamic allocation) costs recomputation, never the run: the
intermediate tables (each step's removed rows, signatures, candidate pairs, edges, each round of connected
components) are written as Parquet under a scratch folder in the staging folder (`Scratch`, on the output
filesystem, shared storage on a cluster) and read back, instead of `localCheckpoint`, whose blocks die with
their executor. The rows kept depend only on the input and the written `removed/` table, so the scratch
folder is gone when `clean_corpus` returns. Ranking and removal joins carry only the columns they read (id,
URL, key, score, fetch time), never the text, and every table is written by as many tasks as its size needs.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from classifiers.decontaminate import ContaminationIndex, DecontaminationConfig
from classifiers.minhash import (
    MinHashConfig,
    MinHasher,
    band_hash_matrix,
    bucket_links,
    lsh_params,
    sorted_jaccard,
)
from jobs.config import CleaningConfig
from jobs.corpus_output import INDEX_DIR, REMOVED_DIR, link_snapshots, snapshot_dir
from jobs.executor_faults import executor_loss_point
from jobs.spark import job_phase

log = logging.getLogger(__name__)

REMOVED_SCHEMA = "id string, url string, step string, reason string, kept_id string"
INDEX_META = "index.json"
EXACT_TABLE = "exact"  # (id, content_digest, url) of indexed documents
MAX_CC_ITERATIONS = 64
SCRATCH_DIR = "dedup-scratch"  # in the staging folder; removed before `clean_corpus` returns
ROWS_PER_FILE = 2_000_000  # removed rows and exact keys (~100 bytes each): files of ~100-200 MB
SET_BYTES_PER_PART = 64 << 20  # shingle-set bytes one verification task holds in memory, about


class Scratch:
    """Intermediate tables of one cleaning run, written as Parquet under `root` and read back.

    Not `localCheckpoint`: its blocks live in the executors that computed them, so losing one fails every
    later stage that reads them. A table on the output filesystem (shared storage on a cluster) outlives any
    executor, and reading it back cuts the lineage as a checkpoint does (connected components' rounds stay
    bounded). Names are unique within one scratch folder; `close` removes the folder."""

    def __init__(self, spark: SparkSession, root: Path) -> None:
        self.spark, self.root = spark, Path(root)

    def table(self, df: DataFrame, name: str) -> DataFrame:
        path = self.root / name
        if path.exists():
            raise ValueError(f"scratch table {name} written twice in {self.root}")
        df.write.parquet(str(path))
        return self.spark.read.parquet(str(path))

    def remove(self, name: str) -> None:
        shutil.rmtree(self.root / name, ignore_errors=True)

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Scratch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


BROADCAST_THRESHOLD = "spark.sql.autoBroadcastJoinThreshold"


@contextmanager
def no_auto_broadcast(spark: SparkSession) -> Iterator[None]:
    """Joins inside shuffle both sides, unless the user set `spark.sql.autoBroadcastJoinThreshold`.

    Every table dedup joins grows with the corpus, and a broadcast one passes through the driver (collected,
    then sent out): below Spark's 10 MB threshold the bytes tasks return to the driver would grow with the
    data. Shuffled joins keep them one small result per task at any size."""
    if spark.conf.get(BROADCAST_THRESHOLD, None) is not None:
        yield
        return
    spark.conf.set(BROADCAST_THRESHOLD, "-1")
    try:
        yield
    finally:
        spark.conf.unset(BROADCAST_THRESHOLD)


def files_for(rows: int, rows_per_file: int = ROWS_PER_FILE) -> int:
    """Tasks (and files) for writing `rows` rows: as many as the size needs, at least one."""
    return max(1, math.ceil(rows / rows_per_file))


def survivor_order() -> tuple:
    """Highest math score, then earliest fetch (missing last), then smallest id: total and data-only."""
    return F.col("math_score").desc_nulls_last(), F.col("fetch_time").asc_nulls_last(), F.col("id").asc()


RANK_COLUMNS = ("id", "url", "math_score", "fetch_time")  # what ranking and the removed table read


def _survivors(df: DataFrame, key: str) -> DataFrame:
    """Rank rows within each `key` group by the survivor order (rank 1 survives)."""
    return df.withColumn("_rank", F.row_number().over(Window.partitionBy(key).orderBy(*survivor_order())))


def _split_by_rank(ranked: DataFrame, key: str, step: str, reason: str) -> tuple[DataFrame, DataFrame]:
    keeper = ranked.where("_rank = 1").select(F.col(key).alias("_key"), F.col("id").alias("kept_id"))
    removed = (
        ranked.where("_rank > 1")
        .join(keeper, ranked[key] == keeper["_key"])
        .select("id", "url", F.lit(step).alias("step"), F.lit(reason).alias("reason"), "kept_id")
    )
    return ranked.where("_rank = 1").drop("_rank"), removed


def has_url() -> Column:
    """True for a row whose URL can identify a page: a missing or blank URL never deduplicates by URL (rows
    without one would otherwise all collapse into one)."""
    return F.coalesce(F.trim(F.col("url")) != "", F.lit(False))


def without(df: DataFrame, removed: DataFrame) -> DataFrame:
    """`df` less the rows whose id `removed` lists (ids are unique: `unique_ids`)."""
    return df.join(removed.select("id"), "id", "left_anti")


def exact_dedup(df: DataFrame, url_dedup: str = "changed") -> tuple[DataFrame, DataFrame]:
    """One document per normalised-text digest, then (unless `url_dedup` is "off") one per non-empty URL.
    The ranking shuffles only the keys and the survivor columns, not the text."""
    keys = df.select(*RANK_COLUMNS, "content_digest")
    kept, removed = _split_by_rank(
        _survivors(keys, "content_digest"), "content_digest", "exact", "same normalised text"
    )
    if url_dedup != "off":
        _, by_url = _split_by_rank(_survivors(kept.where(has_url()), "url"), "url", "exact", "same URL")
        removed = removed.unionByName(by_url)
    return without(df, removed), removed


def unique_ids(df: DataFrame) -> tuple[DataFrame, dict[str, int]]:
    """One row per id, and the counts: `rows`, `without_id` (dropped: no step could name them in `removed/`)
    and `repeated_id` (one WARC record read twice, e.g. from a damaged copy of its file: the survivor stays,
    ties broken by digest, URL and WARC file), the last two logged and reported. Every later step relies on
    it: a row is removed by removing its id."""
    per_id = df.groupBy("id").agg(F.count(F.lit(1)).alias("n"))
    counts = per_id.agg(
        F.sum("n").alias("rows"),
        F.sum(F.when(F.col("id").isNull(), F.col("n"))).alias("without_id"),
        F.sum(F.when(F.col("id").isNotNull() & (F.col("n") > 1), F.col("n") - 1)).alias("repeated_id"),
    ).first()
    found = {name: int(counts[name] or 0) for name in ("rows", "without_id", "repeated_id")}
    if found["without_id"]:
        log.warning("%d rows without an id dropped before dedup", found["without_id"])
        df = df.where(F.col("id").isNotNull())
    if found["repeated_id"]:
        log.warning("%d rows repeat the id of another row: one row per id kept", found["repeated_id"])
        repeated = per_id.where("n > 1").select("id")
        # the same record in two WARC files (a re-crawl, a damaged copy): the first file by name keeps it, so
        # the row a corpus holds does not depend on which task finished first
        ties = [c for c in ("content_digest", "url", "warc_path") if c in df.columns]
        order = (*survivor_order(), *(F.col(c).asc_nulls_last() for c in ties))
        first = F.row_number().over(Window.partitionBy("id").orderBy(*order))
        chosen = df.join(repeated, "id", "left_semi").withColumn("_rank", first).where("_rank = 1")
        df = df.join(repeated, "id", "left_anti").unionByName(chosen.drop("_rank"))
    return df, found


# ---------------------------------------------------------------- MinHash in the executors


def _signature_rows(rows: Iterable, config: MinHashConfig, bands: int, band_rows: int) -> Iterator[tuple]:
    executor_loss_point("signatures")  # the executor-loss test's fault: near dedup starts from scratch tables
    hasher = MinHasher(config)
    batch: list[tuple[str, np.ndarray]] = []

    def flush() -> Iterator[tuple]:
        sigs = np.stack([hasher.signature_of_hashes(h) for _, h in batch])
        hashes = band_hash_matrix(sigs, bands, band_rows)
        for (doc_id, shingles), sig, bh in zip(batch, sigs, hashes, strict=True):
            yield doc_id, sig.astype("<u4").tobytes(), bh.tolist(), shingles.astype("<u4").tobytes()
        batch.clear()

    for row in rows:
        shingles = np.unique(hasher.shingle_hashes(row["text"]))
        if len(shingles):  # empty texts have no shingles and would all collide
            batch.append((row["id"], shingles))
        if len(batch) >= 512:
            yield from flush()
    if batch:
        yield from flush()


def signatures(spark: SparkSession, df: DataFrame, config: MinHashConfig, bands: int, rows: int) -> DataFrame:
    """Per non-empty document: id, sig (little-endian uint32[num_perm]), bands (array<long>) and
    shingles (its sorted distinct shingle hashes, little-endian uint32) for the exact Jaccard check."""
    schema = T.StructType(
        [
            T.StructField("id", T.StringType()),
            T.StructField("sig", T.BinaryType()),
            T.StructField("bands", T.ArrayType(T.LongType())),
            T.StructField("shingles", T.BinaryType()),
        ]
    )
    rdd = df.select("id", "text").rdd.mapPartitions(lambda it: _signature_rows(it, config, bands, rows))
    return spark.createDataFrame(rdd, schema)


def signature_similarity(sig_a: bytes, sig_b: bytes) -> float:
    """Jaccard estimated from two signatures."""
    a = np.frombuffer(sig_a, dtype="<u4")
    b = np.frombuffer(sig_b, dtype="<u4")
    return float(np.count_nonzero(a == b)) / len(a)


def shingle_similarity(shingles_a: bytes, shingles_b: bytes) -> float:
    """Exact Jaccard of two sorted distinct shingle-hash sets."""
    return sorted_jaccard(np.frombuffer(shingles_a, dtype="<u4"), np.frombuffer(shingles_b, dtype="<u4"))


def _all_pairs(ids: list[str]) -> Iterator[tuple[str, str]]:
    ids = sorted(set(ids))
    for i, a in enumerate(ids):
        for b in ids[i + 1 :]:
            yield a, b


def _large_bucket_links(rows: Iterable, threshold: float, floor: float, cap: int) -> Iterator[tuple]:
    """`bucket_links` over a partition sorted by (hash, id): one bucket at a time, only its representatives
    in memory."""
    for _, group in itertools.groupby(rows, key=lambda r: r["hash"]):
        members = (
            (r["id"], np.frombuffer(r["sig"], dtype="<u4"), np.frombuffer(r["shingles"], dtype="<u4"))
            for r in group
        )
        yield from bucket_links(members, threshold, cap, floor)


def _verify_parts(
    rows: Iterable, similarity: Any, threshold: float, one_table: bool
) -> Iterator[tuple[str, str, float]]:
    """Rows of one or more parts sorted by (part, side): the part's sets (side 0: a's, 1: b's; with
    `one_table` all on side 0), then its pairs (side 2). Only one part's sets are held at a time."""
    for _, group in itertools.groupby(rows, key=lambda r: r["part"]):
        sets: tuple[dict[str, bytes], dict[str, bytes]] = ({}, {})
        of_b = sets[0] if one_table else sets[1]
        for r in group:
            if r["side"] < 2:
                sets[r["side"]][r["id"]] = r["x"]
                continue
            x_a, x_b = sets[0].get(r["id"]), of_b.get(r["b"])
            if x_a is not None and x_b is not None and (sim := similarity(x_a, x_b)) >= threshold:
                yield r["id"], r["b"], sim


def verification_parts(spark: SparkSession, sigs: DataFrame, column: str = "shingles") -> int:
    """Parts for `verified_edges`: enough that one part's sets fit a task's memory (`SET_BYTES_PER_PART`
    of the corpus's `column` bytes each), at least one per core."""
    total = sigs.agg(F.sum(F.length(column))).first()[0] or 0
    return max(spark.sparkContext.defaultParallelism, math.ceil(total / SET_BYTES_PER_PART))


def verified_edges(
    spark: SparkSession,
    pairs: DataFrame,
    side_a: DataFrame,
    side_b: DataFrame | None,
    column: str,
    threshold: float,
    parts: int,
) -> DataFrame:
    """Candidate pairs (a, b) whose similarity reaches `threshold`: the exact Jaccard of their shingle sets
    when `column` is "shingles", the signature estimate when it is "sig" (all an index keeps). The sets of
    `a` come from `side_a`, those of `b` from `side_b` (None: `side_a` too).

    A set is never joined onto a pair: each pair goes to the part of its `a` (a hash of `a`, `parts` of
    them), and each part receives, once, the set of every document its pairs name. So a document's set
    travels at most once per part, however many pairs name it (a join per side would carry it once per
    pair), and a task holds only its part's sets while the part's pairs stream past.
    """
    similarity = shingle_similarity if column == "shingles" else signature_similarity
    keyed = pairs.select(F.pmod(F.xxhash64("a"), F.lit(parts)).cast("int").alias("part"), "a", "b")

    def sets_of(side: DataFrame, ends: tuple[str, ...], tag: int) -> DataFrame:
        needed = None
        for end in ends:
            part = keyed.select("part", F.col(end).alias("id"))
            needed = part if needed is None else needed.unionByName(part)
        assert needed is not None
        return (
            needed.distinct()
            .join(side.select("id", F.col(column).alias("x")), "id")
            .select("part", F.lit(tag).alias("side"), "id", F.lit(None).cast("string").alias("b"), "x")
        )

    one_table = side_b is None  # then one dict per part serves both ends: each set shipped once per part
    if side_b is None:
        sets = sets_of(side_a, ("a", "b"), 0)
    else:
        sets = sets_of(side_a, ("a",), 0).unionByName(sets_of(side_b, ("b",), 1))
    pair_rows = keyed.select(
        "part", F.lit(2).alias("side"), F.col("a").alias("id"), "b", F.lit(None).cast("binary").alias("x")
    )
    ordered = sets.unionByName(pair_rows).repartition(parts, "part").sortWithinPartitions("part", "side")
    rdd = ordered.rdd.mapPartitions(lambda it: _verify_parts(it, similarity, threshold, one_table))
    return spark.createDataFrame(rdd, "a string, b string, similarity double")


def connected_components(edges: DataFrame, scratch: Scratch) -> DataFrame:
    """(id, component) for every node of an undirected edge list (a, b); component = smallest id in it.

    Min-label propagation: each round, every node takes the smallest label among itself and its neighbours;
    it stops when no label changes. Rounds ~ the graph's diameter, which LSH buckets keep small. Each
    round's labels are a scratch table (the lineage stays one round long), the round before removed.
    """
    both = edges.select("a", "b").unionByName(edges.select(F.col("b").alias("a"), F.col("a").alias("b")))
    both = scratch.table(both.distinct(), "cc-edges")
    labels = scratch.table(
        both.select(F.col("a").alias("id")).distinct().withColumn("label", F.col("id")), "cc-labels-0"
    )
    for iteration in range(1, MAX_CC_ITERATIONS + 1):
        spread = both.join(labels, both["a"] == labels["id"]).select(F.col("b").alias("id"), "label")
        updated = scratch.table(
            spread.unionByName(labels).groupBy("id").agg(F.min("label").alias("label")),
            f"cc-labels-{iteration}",
        )
        changed = (
            updated.join(labels.withColumnRenamed("label", "old"), "id")
            .where(F.col("label") != F.col("old"))
            .count()
        )
        scratch.remove(f"cc-labels-{iteration - 1}")
        labels = updated
        log.info("connected components: round %d, %d labels changed", iteration, changed)
        if changed == 0:
            log.info("connected components converged after %d rounds", iteration)
            break
    else:
        log.warning(
            "connected components not converged after %d rounds; clusters may be split", MAX_CC_ITERATIONS
        )
    return labels.withColumnRenamed("label", "component")


def index_meta(config: MinHashConfig, bands: int, rows: int, threshold: float) -> dict[str, Any]:
    """What `index.json` records: the settings a signature is only comparable under."""
    return {"minhash": asdict(config), "bands": bands, "rows": rows, "threshold": threshold, "format": 1}


def read_index(spark: SparkSession, index_dir: str, expected: dict[str, Any]) -> tuple[DataFrame, DataFrame]:
    """(bands: hash, id) and (signatures: id, sig) of an earlier corpus; refuses an incompatible index."""
    root = Path(index_dir)
    meta_path = root / INDEX_META
    if not meta_path.is_file():
        raise FileNotFoundError(f"no dedup index at {index_dir} (expected {meta_path})")
    meta = json.loads(meta_path.read_text())
    if meta["minhash"] != expected["minhash"] or (meta["bands"], meta["rows"]) != (
        expected["bands"],
        expected["rows"],
    ):
        raise ValueError(
            f"dedup index {index_dir} was built with {meta}, this run uses {expected}: "
            "signatures are only comparable with identical MinHash settings"
        )
    bands = spark.read.parquet(str(root / "bands")).select("hash", "id")
    return bands, spark.read.parquet(str(root / "signatures")).select("id", "sig")


def read_exact_index(spark: SparkSession, index_dir: str) -> DataFrame | None:
    """(id, content_digest, url) of the documents an index covers; None for an index from before it kept them."""
    root = Path(index_dir) / EXACT_TABLE
    if not root.is_dir():
        log.warning(
            "dedup index %s keeps no exact keys (made by an older version): exact dedup against it skipped",
            index_dir,
        )
        return None
    return spark.read.parquet(str(root)).select("id", "content_digest", "url")


def drop_indexed_exact(
    df: DataFrame, indexed: DataFrame, url_dedup: str = "changed"
) -> tuple[DataFrame, DataFrame]:
    """Remove documents whose normalised text an indexed (already published) document has, and with
    `url_dedup` "first" those whose (non-empty) URL one has; the indexed one always survives, so a refresh
    never changes what earlier snapshots hold. With "changed" a recrawl of an indexed URL goes on to near
    dedup like any page: kept when its content is new."""
    keys = [("content_digest", "same normalised text as an indexed document", indexed)]
    if url_dedup == "first":
        keys.append(("url", "same URL as an indexed document", indexed.where(has_url())))
    removed = None
    for key, reason, index_rows in keys:
        first = index_rows.groupBy(key).agg(F.min("id").alias("kept_id"))
        part = _removed(df.select("id", "url", key).join(first, key), "exact", reason)
        removed = part if removed is None else removed.unionByName(part)
        df = df.join(first.select(key), key, "left_anti")
    assert removed is not None
    return df, removed


def indexed_texts(spark: SparkSession, index_dir: str, ids: DataFrame) -> DataFrame | None:
    """(id, text) of the indexed documents in `ids`, read from the corpus the index belongs to (its parent
    folder) when that corpus is there; None when the index travels alone."""
    data = Path(index_dir).parent / "data"
    if not data.is_dir():
        return None
    return spark.read.parquet(str(data)).select("id", "text").join(ids, "id", "left_semi")


def lsh_bands(cfg: CleaningConfig) -> tuple[int, int]:
    """Bands tuned for `threshold - recall_margin`: more candidates (recall), which the exact check filters."""
    return lsh_params(max(cfg.threshold - cfg.recall_margin, 0.05), cfg.num_perm)


def minhash_config(cfg: CleaningConfig) -> MinHashConfig:
    return MinHashConfig(num_perm=cfg.num_perm, seed=cfg.minhash_seed, ngram=cfg.ngram)


def near_duplicate_edges(
    spark: SparkSession,
    sigs: DataFrame,
    band_rows: DataFrame,
    cfg: CleaningConfig,
    scratch: Scratch,
    parts: int | None = None,
) -> tuple[DataFrame, dict[str, int]]:
    """Verified near-duplicate pairs (a < b, similarity) among documents, and what finding them took.

    A bucket of at most `max_pairs_bucket` documents checks all its pairs. A larger one (boilerplate shared by
    many pages) streams its documents in id order through `bucket_links`: each is checked against at most
    `max_pairs_bucket` representatives, so every duplicate family in the bucket is found in at most
    n * max_pairs_bucket checks; documents left over once the representatives are full are counted
    (`large_bucket_unchecked`), and still meet their duplicates through their other bands.
    """
    cap = cfg.max_pairs_bucket
    parts = parts or verification_parts(spark, sigs)
    buckets = band_rows.groupBy("hash").agg(F.count(F.lit(1)).alias("n")).where("n > 1")  # cheap to redo
    small = band_rows.join(buckets.where(f"n <= {cap}").select("hash"), "hash")
    small_ids = small.groupBy("hash").agg(F.collect_list("id").alias("ids"))
    cand = scratch.table(
        spark.createDataFrame(
            small_ids.rdd.flatMap(lambda r: _all_pairs(r["ids"])), "a string, b string"
        ).distinct(),
        "candidates",
    )
    edges = verified_edges(spark, cand, sigs, None, "shingles", cfg.threshold, parts)
    large_buckets = buckets.where(f"n > {cap}").count()
    link_schema = "a string, b string, similarity double"
    linked = spark.createDataFrame([], link_schema)
    if large_buckets:  # else no need to shuffle every signature and set to find none
        large = (
            band_rows.join(buckets.where(f"n > {cap}").select("hash"), "hash")
            .join(sigs.select("id", "sig", "shingles"), "id")
            .repartition("hash")
            .sortWithinPartitions("hash", "id")
        )
        threshold, floor = cfg.threshold, max(cfg.threshold - cfg.recall_margin, 0.0)
        links = large.rdd.mapPartitions(lambda it: _large_bucket_links(it, threshold, floor, cap))
        linked = scratch.table(spark.createDataFrame(links, link_schema), "large-bucket-links")
    edges = scratch.table(
        edges.unionByName(linked.where(F.col("b").isNotNull()))
        .groupBy("a", "b")
        .agg(F.max("similarity").alias("similarity")),
        "edges",
    )
    info = {
        "candidate_pairs": cand.count(),
        "large_buckets": large_buckets,
        "large_bucket_unchecked": linked.where(F.col("b").isNull()).select("a").distinct().count(),
    }
    return edges, info


def _removed(df: DataFrame, step: str, reason: str) -> DataFrame:
    return df.select("id", "url", F.lit(step).alias("step"), F.lit(reason).alias("reason"), "kept_id")


def near_dedup(
    spark: SparkSession, df: DataFrame, cfg: CleaningConfig, scratch: Scratch
) -> tuple[DataFrame, DataFrame, dict[str, Any], DataFrame]:
    """Remove near duplicates (within the corpus and against `cfg.index`); returns the kept rows, the removed
    table, the step's report and the signatures (id, sig, bands, shingles) of the documents checked, which
    `write_index` restricts to the rows kept once decontamination has had its say. The removed table and
    the signatures are `scratch` tables: read them before it is closed."""
    mh = minhash_config(cfg)
    bands, rows = lsh_bands(cfg)
    meta = index_meta(mh, bands, rows, cfg.threshold)
    sigs = scratch.table(signatures(spark, df, mh, bands, rows), "signatures")
    parts = verification_parts(spark, sigs)
    band_rows = sigs.select("id", F.explode("bands").alias("hash"))
    keys = df.select(*RANK_COLUMNS)  # ranking and the removed table need no text
    removed_parts: list[DataFrame] = []
    info: dict[str, Any] = {"bands": bands, "rows": rows, "threshold": cfg.threshold}

    if cfg.index:
        old_bands, old_sigs = read_index(spark, cfg.index, meta)
        # indexed documents are mutually distinct, each a representative of its family: as in a large
        # bucket of a build, a new document is checked against at most max_pairs_bucket of them per bucket
        cap = cfg.max_pairs_bucket
        hit = old_bands.join(band_rows.select("hash").distinct(), "hash", "left_semi")  # buckets met only
        ranked = hit.withColumn("_n", F.row_number().over(Window.partitionBy("hash").orderBy("id")))
        ranked = scratch.table(ranked.where(f"_n <= {cap + 1}"), "index-buckets")
        cand = band_rows.join(
            ranked.where(f"_n <= {cap}").select("hash", F.col("id").alias("b")), "hash"
        ).select(F.col("id").alias("a"), "b")
        over_cap = ranked.where(f"_n = {cap + 1}").select("hash")
        info["index_bucket_unchecked"] = band_rows.join(over_cap, "hash").select("id").distinct().count()
        cand = scratch.table(cand.distinct(), "index-candidates")
        old_texts = indexed_texts(spark, cfg.index, cand.select(F.col("b").alias("id")).distinct())
        if old_texts is not None:  # the exact Jaccard, as a build over both corpora would decide it
            old_shingles = signatures(spark, old_texts, mh, bands, rows)
            hits = verified_edges(spark, cand, sigs, old_shingles, "shingles", cfg.threshold, parts)
        else:
            hits = verified_edges(spark, cand, sigs, old_sigs, "sig", cfg.threshold, parts)
        first = scratch.table(hits.groupBy("a").agg(F.min("b").alias("kept_id")), "index-hits")
        by_index = keys.join(first, keys["id"] == first["a"])
        removed_parts.append(_removed(by_index, "near", "near duplicate of an indexed document"))
        keys = keys.join(first, keys["id"] == first["a"], "left_anti")
        sigs = sigs.join(first, sigs["id"] == first["a"], "left_anti")
        band_rows = band_rows.join(first, band_rows["id"] == first["a"], "left_anti")

    edges, found = near_duplicate_edges(spark, sigs, band_rows, cfg, scratch, parts)
    info.update(found)
    components = connected_components(edges, scratch)
    ranked = _survivors(keys.join(components, "id"), "component")
    keeper = ranked.where("_rank = 1").select("component", F.col("id").alias("kept_id"))
    by_near = ranked.where("_rank > 1").join(keeper, "component")
    removed_parts.append(_removed(by_near, "near", f"near duplicate (MinHash Jaccard >= {cfg.threshold})"))
    removed = removed_parts[0]
    for part in removed_parts[1:]:
        removed = removed.unionByName(part)
    removed = scratch.table(removed, "near-removed")
    info["verified_pairs"] = edges.count()
    return without(df, removed), removed, info, sigs


def write_index(
    index_out: Path,
    snapshot: str,
    kept: DataFrame,
    sigs: DataFrame | None,
    cfg: CleaningConfig,
    documents: int,
) -> None:
    """Snapshot `snapshot` of the dedup index at `index_out`: exact keys of exactly the rows the corpus keeps
    (`documents` of them, after decontamination: a document no snapshot holds must not make a later one a
    duplicate), with their band hashes and signatures when near dedup ran (`sigs`, restricted here to
    `kept`)."""
    kept.select("id", "content_digest", "url").repartition(files_for(documents)).write.parquet(
        str(snapshot_dir(index_out / EXACT_TABLE, snapshot))
    )
    if sigs is None:
        return
    kept_sigs = sigs.join(kept.select("id"), "id", "left_semi")
    kept_sigs.select(F.explode("bands").alias("hash"), "id").write.parquet(
        str(snapshot_dir(index_out / "bands", snapshot))
    )
    kept_sigs.select("id", "sig").write.parquet(str(snapshot_dir(index_out / "signatures", snapshot)))
    bands, rows = lsh_bands(cfg)
    meta = index_meta(minhash_config(cfg), bands, rows, cfg.threshold)
    (index_out / INDEX_META).write_text(json.dumps(meta, indent=2) + "\n")


def decontaminate(
    spark: SparkSession, df: DataFrame, benchmark_paths: list[str], ngram: int, scratch: Scratch
) -> tuple[DataFrame, DataFrame, dict[str, Any]]:
    """Drop documents that quote a benchmark question; the removed table (a `scratch` table) says which
    question and how."""
    index = ContaminationIndex.from_files(benchmark_paths, DecontaminationConfig(ngram=ngram))
    shared = spark.sparkContext.broadcast(index)

    def matches(rows: Iterable) -> Iterator[tuple]:
        idx = shared.value
        for row in rows:
            found = idx.find_contamination(row["text"])
            if found:
                first = found[0]
                yield (
                    row["id"],
                    row["url"],
                    "decontamination",
                    "; ".join(m.reason for m in found[:5]),
                    f"{first.benchmark}:{first.item_id}",
                )

    removed = spark.createDataFrame(df.select("id", "url", "text").rdd.mapPartitions(matches), REMOVED_SCHEMA)
    removed = scratch.table(removed, "decontamination-removed")
    return (
        without(df, removed),
        removed,
        {
            "benchmark_items": index.stats.get("indexed_items", 0),
            "benchmarks": sorted(k.split(":", 1)[1] for k in index.stats if k.startswith("items:")),
        },
    )


def clean_corpus(
    spark: SparkSession, df: DataFrame, cfg: CleaningConfig, out_dir: Path, snapshot: str
) -> tuple[DataFrame, dict[str, Any]]:
    """Run the enabled steps in order, as snapshot `snapshot` of the corpus at `out_dir`: writes its part of
    `removed/` and, from the rows finally kept, of `dedup_index/` (exact keys always; band hashes and
    signatures with near dedup). With `cfg.index`, documents that index holds are removed first and its
    snapshots are linked into this one's.

    The intermediate tables live in `out_dir/dedup-scratch/` (`Scratch`), removed before returning: the rows
    returned are `df`'s (one per id) less those `removed/` lists, so they need nothing else."""
    with Scratch(spark, out_dir / SCRATCH_DIR) as scratch, no_auto_broadcast(spark):
        return _clean(spark, df, cfg, out_dir, snapshot, scratch)


def _clean(
    spark: SparkSession, df: DataFrame, cfg: CleaningConfig, out_dir: Path, snapshot: str, scratch: Scratch
) -> tuple[DataFrame, dict[str, Any]]:
    with job_phase(spark, "dedup: ids"):
        base, ids = unique_ids(df)
    report: dict[str, Any] = {"input_documents": ids.pop("rows"), "steps": {}}
    if any(ids.values()):
        report["ids"] = ids
    removed_tables: list[DataFrame] = []
    current, sigs = base, None
    if cfg.exact_dedup:
        with job_phase(spark, "dedup: exact"):
            keyed, parts = base, []
            indexed = read_exact_index(spark, cfg.index) if cfg.index else None
            if indexed is not None:
                keyed, by_index = drop_indexed_exact(base, indexed, cfg.url_dedup)
                parts.append(by_index)
            parts.append(exact_dedup(keyed, cfg.url_dedup)[1])
            removed = parts[0] if len(parts) == 1 else parts[0].unionByName(parts[1])
            removed = scratch.table(removed, "exact-removed")
            report["steps"]["exact"] = {"removed": removed.count()}
        removed_tables.append(removed)
        current = without(base, removed)
    if cfg.near_dedup:
        with job_phase(spark, "dedup: near"):
            current, removed, info, sigs = near_dedup(spark, current, cfg, scratch)
            report["steps"]["near"] = {"removed": removed.count(), **info}
        removed_tables.append(removed)
    benchmarks = [p for p in (cfg.benchmarks or "").split(",") if p.strip()]
    if cfg.decontaminate and benchmarks:
        with job_phase(spark, "dedup: decontamination"):
            current, removed, info = decontaminate(spark, current, benchmarks, cfg.decontam_ngram, scratch)
            report["steps"]["decontamination"] = {"removed": removed.count(), **info}
        removed_tables.append(removed)
    elif cfg.decontaminate:
        report["steps"]["decontamination"] = {"removed": 0, "skipped": "no --benchmarks given"}
    with job_phase(spark, "dedup: write"):
        removed_all = spark.createDataFrame([], REMOVED_SCHEMA)
        for table in removed_tables:
            removed_all = removed_all.unionByName(table)
        n_removed = sum(step["removed"] for step in report["steps"].values())
        removed_dir = str(snapshot_dir(out_dir / REMOVED_DIR, snapshot))
        removed_all.repartition(files_for(n_removed)).write.parquet(removed_dir)
        kept = without(base, spark.read.parquet(removed_dir))
        documents = kept.count()
        write_index(out_dir / INDEX_DIR, snapshot, kept, sigs, cfg, documents)
    if cfg.index:
        report["index_snapshots"] = inherit_index(Path(cfg.index), out_dir / INDEX_DIR)
    report["output_documents"] = documents
    return kept, report


def inherit_index(old: Path, new: Path) -> list[str]:
    """Link an earlier index's snapshots into this corpus's index, so it covers both corpora."""
    names = sorted(
        {
            name
            for table in (EXACT_TABLE, "bands", "signatures")
            for name in link_snapshots(old / table, new / table)
        }
    )
    if (old / INDEX_META).is_file() and not (new / INDEX_META).exists():
        (new / INDEX_META).write_text((old / INDEX_META).read_text())
    return names
