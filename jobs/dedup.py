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
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Iterable, Iterator
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

log = logging.getLogger(__name__)

REMOVED_SCHEMA = "id string, url string, step string, reason string, kept_id string"
INDEX_META = "index.json"
EXACT_TABLE = "exact"  # (id, content_digest, url) of indexed documents
MAX_CC_ITERATIONS = 64


def survivor_order() -> tuple:
    """Highest math score, then earliest fetch (missing last), then smallest id: total and data-only."""
    return F.col("math_score").desc_nulls_last(), F.col("fetch_time").asc_nulls_last(), F.col("id").asc()


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


def exact_dedup(df: DataFrame, url_dedup: str = "changed") -> tuple[DataFrame, DataFrame]:
    """One document per normalised-text digest, then (unless `url_dedup` is "off") one per non-empty URL."""
    kept, by_text = _split_by_rank(
        _survivors(df, "content_digest"), "content_digest", "exact", "same normalised text"
    )
    if url_dedup == "off":
        return kept, by_text
    with_url, by_url = _split_by_rank(_survivors(kept.where(has_url()), "url"), "url", "exact", "same URL")
    return with_url.unionByName(kept.where(~has_url())), by_text.unionByName(by_url)


# ---------------------------------------------------------------- MinHash in the executors


def _signature_rows(rows: Iterable, config: MinHashConfig, bands: int, band_rows: int) -> Iterator[tuple]:
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


def verified_edges(
    spark: SparkSession, pairs: DataFrame, side_a: DataFrame, side_b: DataFrame, column: str, threshold: float
) -> DataFrame:
    """Candidate pairs (a, b) whose similarity reaches `threshold`: the exact Jaccard of their shingle sets
    when `column` is "shingles", the signature estimate when it is "sig" (all an index keeps)."""
    similarity = shingle_similarity if column == "shingles" else signature_similarity
    joined = pairs.join(side_a.select(F.col("id").alias("a"), F.col(column).alias("x_a")), "a").join(
        side_b.select(F.col("id").alias("b"), F.col(column).alias("x_b")), "b"
    )
    rdd = joined.rdd.mapPartitions(
        lambda it: ((r["a"], r["b"], sim) for r in it if (sim := similarity(r["x_a"], r["x_b"])) >= threshold)
    )
    return spark.createDataFrame(rdd, "a string, b string, similarity double")


def connected_components(edges: DataFrame) -> DataFrame:
    """(id, component) for every node of an undirected edge list (a, b); component = smallest id in it.

    Min-label propagation: each round, every node takes the smallest label among itself and its neighbours;
    it stops when no label changes. Rounds ~ the graph's diameter, which LSH buckets keep small.
    """
    both = edges.select("a", "b").unionByName(edges.select(F.col("b").alias("a"), F.col("a").alias("b")))
    both = both.distinct().localCheckpoint()
    labels = both.select(F.col("a").alias("id")).distinct().withColumn("label", F.col("id")).localCheckpoint()
    for iteration in range(1, MAX_CC_ITERATIONS + 1):
        spread = both.join(labels, both["a"] == labels["id"]).select(F.col("b").alias("id"), "label")
        updated = (
            spread.unionByName(labels).groupBy("id").agg(F.min("label").alias("label")).localCheckpoint()
        )
        changed = (
            updated.join(labels.withColumnRenamed("label", "old"), "id")
            .where(F.col("label") != F.col("old"))
            .count()
        )
        labels = updated
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
        part = df.join(first, key).select(
            "id", "url", F.lit("exact").alias("step"), F.lit(reason).alias("reason"), "kept_id"
        )
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
    spark: SparkSession, sigs: DataFrame, band_rows: DataFrame, cfg: CleaningConfig
) -> tuple[DataFrame, dict[str, int]]:
    """Verified near-duplicate pairs (a < b, similarity) among documents, and what finding them took.

    A bucket of at most `max_pairs_bucket` documents checks all its pairs. A larger one (boilerplate shared by
    many pages) streams its documents in id order through `bucket_links`: each is checked against at most
    `max_pairs_bucket` representatives, so every duplicate family in the bucket is found in at most
    n * max_pairs_bucket checks; documents left over once the representatives are full are counted
    (`large_bucket_unchecked`), and still meet their duplicates through their other bands.
    """
    cap = cfg.max_pairs_bucket
    buckets = band_rows.groupBy("hash").agg(F.count(F.lit(1)).alias("n")).where("n > 1").localCheckpoint()
    small = band_rows.join(buckets.where(f"n <= {cap}").select("hash"), "hash")
    small_ids = small.groupBy("hash").agg(F.collect_list("id").alias("ids"))
    cand = (
        spark.createDataFrame(small_ids.rdd.flatMap(lambda r: _all_pairs(r["ids"])), "a string, b string")
        .distinct()
        .localCheckpoint()
    )
    edges = verified_edges(spark, cand, sigs, sigs, "shingles", cfg.threshold)
    large = (
        band_rows.join(buckets.where(f"n > {cap}").select("hash"), "hash")
        .join(sigs.select("id", "sig", "shingles"), "id")
        .repartition("hash")
        .sortWithinPartitions("hash", "id")
    )
    threshold, floor = cfg.threshold, max(cfg.threshold - cfg.recall_margin, 0.0)
    linked = spark.createDataFrame(
        large.rdd.mapPartitions(lambda it: _large_bucket_links(it, threshold, floor, cap)),
        "a string, b string, similarity double",
    ).localCheckpoint()
    edges = (
        edges.unionByName(linked.where(F.col("b").isNotNull()))
        .groupBy("a", "b")
        .agg(F.max("similarity").alias("similarity"))
        .localCheckpoint()
    )
    info = {
        "candidate_pairs": cand.count(),
        "large_buckets": buckets.where(f"n > {cap}").count(),
        "large_bucket_unchecked": linked.where(F.col("b").isNull()).select("a").distinct().count(),
    }
    return edges, info


def near_dedup(
    spark: SparkSession, df: DataFrame, cfg: CleaningConfig
) -> tuple[DataFrame, DataFrame, dict[str, Any], DataFrame]:
    """Remove near duplicates (within the corpus and against `cfg.index`); returns the kept rows, the removed
    table, the step's report and the signatures (id, sig, bands, shingles) of the documents checked, which
    `write_index` restricts to the rows kept once decontamination has had its say."""
    mh = minhash_config(cfg)
    bands, rows = lsh_bands(cfg)
    meta = index_meta(mh, bands, rows, cfg.threshold)
    sigs = signatures(spark, df, mh, bands, rows).localCheckpoint()
    band_rows = sigs.select("id", F.explode("bands").alias("hash"))
    removed_parts: list[DataFrame] = []
    info: dict[str, Any] = {"bands": bands, "rows": rows, "threshold": cfg.threshold}

    old_bands = old_sigs = None
    if cfg.index:
        old_bands, old_sigs = read_index(spark, cfg.index, meta)
        # indexed documents are mutually distinct, each a representative of its family: as in a large
        # bucket of a build, a new document is checked against at most max_pairs_bucket of them per bucket
        cap = cfg.max_pairs_bucket
        hit = old_bands.join(band_rows.select("hash").distinct(), "hash", "left_semi")  # buckets met only
        ranked = hit.withColumn("_n", F.row_number().over(Window.partitionBy("hash").orderBy("id")))
        ranked = ranked.where(f"_n <= {cap + 1}").localCheckpoint()
        cand = band_rows.join(
            ranked.where(f"_n <= {cap}").select("hash", F.col("id").alias("b")), "hash"
        ).select(F.col("id").alias("a"), "b")
        over_cap = ranked.where(f"_n = {cap + 1}").select("hash")
        info["index_bucket_unchecked"] = band_rows.join(over_cap, "hash").select("id").distinct().count()
        cand = cand.distinct().localCheckpoint()
        old_texts = indexed_texts(spark, cfg.index, cand.select(F.col("b").alias("id")).distinct())
        if old_texts is not None:  # the exact Jaccard, as a build over both corpora would decide it
            old_shingles = signatures(spark, old_texts, mh, bands, rows)
            hits = verified_edges(spark, cand, sigs, old_shingles, "shingles", cfg.threshold)
        else:
            hits = verified_edges(spark, cand, sigs, old_sigs, "sig", cfg.threshold)
        first = hits.groupBy("a").agg(F.min("b").alias("kept_id"))
        removed_index = df.join(first, df["id"] == first["a"]).select(
            "id",
            "url",
            F.lit("near").alias("step"),
            F.lit("near duplicate of an indexed document").alias("reason"),
            "kept_id",
        )
        removed_parts.append(removed_index)
        df = df.join(first, df["id"] == first["a"], "left_anti")
        sigs = sigs.join(first, sigs["id"] == first["a"], "left_anti")
        band_rows = band_rows.join(first, band_rows["id"] == first["a"], "left_anti")

    edges, found = near_duplicate_edges(spark, sigs, band_rows, cfg)
    info.update(found)
    components = connected_components(edges)
    ranked = _survivors(df.join(components, "id"), "component")
    keeper = ranked.where("_rank = 1").select("component", F.col("id").alias("kept_id"))
    removed_near = (
        ranked.where("_rank > 1")
        .join(keeper, "component")
        .select(
            "id",
            "url",
            F.lit("near").alias("step"),
            F.lit(f"near duplicate (MinHash Jaccard >= {cfg.threshold})").alias("reason"),
            "kept_id",
        )
    )
    removed_parts.append(removed_near)
    kept = df.join(removed_near.select("id"), "id", "left_anti")
    info["verified_pairs"] = edges.count()

    removed = removed_parts[0]
    for part in removed_parts[1:]:
        removed = removed.unionByName(part)
    return kept, removed, info, sigs


def write_index(
    index_out: Path,
    snapshot: str,
    kept: DataFrame,
    sigs: DataFrame | None,
    cfg: CleaningConfig,
) -> None:
    """Snapshot `snapshot` of the dedup index at `index_out`: exact keys of exactly the rows the corpus keeps
    (after decontamination: a document no snapshot holds must not make a later one a duplicate), with their
    band hashes and signatures when near dedup ran (`sigs`, restricted here to `kept`)."""
    kept.select("id", "content_digest", "url").repartition(1).write.parquet(
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
    spark: SparkSession, df: DataFrame, benchmark_paths: list[str], ngram: int
) -> tuple[DataFrame, DataFrame, dict[str, Any]]:
    """Drop documents that quote a benchmark question; the removed table says which question and how."""
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
    removed = removed.localCheckpoint()
    kept = df.join(removed.select("id"), "id", "left_anti")
    return (
        kept,
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
    signatures with near dedup). With
    `cfg.index`, documents that index holds are removed first and its snapshots are linked into this one's."""
    report: dict[str, Any] = {"input_documents": df.count(), "steps": {}}
    removed_all = spark.createDataFrame([], REMOVED_SCHEMA)
    index_out = out_dir / INDEX_DIR
    sigs = None
    if cfg.exact_dedup:
        removed_indexed = None
        indexed = read_exact_index(spark, cfg.index) if cfg.index else None
        if indexed is not None:
            df, removed_indexed = drop_indexed_exact(df, indexed, cfg.url_dedup)
            df = df.localCheckpoint()
        df, removed = exact_dedup(df, cfg.url_dedup)
        if removed_indexed is not None:
            removed = removed_indexed.unionByName(removed)
        df = df.localCheckpoint()
        removed_all = removed_all.unionByName(removed)
        report["steps"]["exact"] = {"removed": removed.count()}
    if cfg.near_dedup:
        df, removed, info, sigs = near_dedup(spark, df, cfg)
        df = df.localCheckpoint()
        removed_all = removed_all.unionByName(removed)
        report["steps"]["near"] = {"removed": removed.count(), **info}
    benchmarks = [p for p in (cfg.benchmarks or "").split(",") if p.strip()]
    if cfg.decontaminate and benchmarks:
        df, removed, info = decontaminate(spark, df, benchmarks, cfg.decontam_ngram)
        removed_all = removed_all.unionByName(removed)
        report["steps"]["decontamination"] = {"removed": removed.count(), **info}
    elif cfg.decontaminate:
        report["steps"]["decontamination"] = {"removed": 0, "skipped": "no --benchmarks given"}
    removed_all.coalesce(1).write.parquet(str(snapshot_dir(out_dir / REMOVED_DIR, snapshot)))
    write_index(index_out, snapshot, df, sigs, cfg)
    if cfg.index:
        report["index_snapshots"] = inherit_index(Path(cfg.index), index_out)
    report["output_documents"] = df.count()
    return df, report


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
