"""Near-duplicate detection: our MinHash + banding against datasketch's MinHashLSH, same data, same run.

On a planted corpus (bench/near_dup_data.py: >= 20,000 documents, planted clusters with exact Jaccard
known, the rest unrelated) this measures, single process (one core):

- throughput, documents per second per core, of signatures + banding + candidate pairs for
  ours (default `xxh32-words` hash and the datasketch-equal `sha1` hash) and for datasketch
  (`MinHash.update_batch` on the same shingles, `MinHashLSH` insert + query);
- pair quality against exact Jaccard >= threshold: precision and recall of the candidate pairs
  (band collisions), of candidates kept when the signature estimate reaches the threshold, and of
  candidates kept when their exact shingle Jaccard does (cheap: only candidate pairs are checked).

Times are CPU seconds of this process (`time.process_time`), so other work on a shared machine does not
distort them; speed is also reported as the ratio to datasketch measured in the same run.

`--spark-cost` (alone with `--cost-only`) runs `clean_corpus` with near dedup only on the same corpus in
local[N] with Spark's event log on, and reports what it cost: bytes shuffled (written), bytes tasks returned
to the driver, tasks, and the stages that shuffled most. `clean_corpus(spark, df, cfg, out, snapshot)` is the
same call in every version, so a copy of this file in a checkout of an earlier commit measures that commit
(the shuffle figures in the README were taken so, before and after candidate verification stopped joining
shingle sets onto both sides of every pair).

    .venv/bin/python bench/dedup_bench.py [--docs 20000 --threshold 0.8 --num-perm 128 --out FILE.json]
    .venv/bin/python bench/dedup_bench.py --cost-only --docs 10000
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.near_dup_data import NearDupCorpus, make_near_dup_corpus  # noqa: E402
from classifiers.minhash import (  # noqa: E402
    MinHashConfig,
    MinHasher,
    band_hash_matrix,
    candidate_pairs,
    estimate_jaccard,
    jaccard,
    lsh_params,
    shingle_set,
    shingles,
)
from typedconfig import add_dataclass_args, dataclass_from_args  # noqa: E402


@dataclass
class BenchConfig:
    docs: int = field(default=20000, metadata={"help": "documents in the planted corpus"})
    seed: int = field(default=0, metadata={"help": "corpus seed"})
    threshold: float = field(default=0.8, metadata={"help": "Jaccard threshold of a duplicate pair"})
    num_perm: int = field(default=128, metadata={"help": "MinHash permutations"})
    recall_margin: float = field(
        default=0.1, metadata={"help": "recall-tuned banding: lsh_params(threshold - margin)"}
    )
    spark_cores: int = field(
        default=2, metadata={"help": "also run the Spark job's near dedup in local[N] (0: skip)"}
    )
    spark_cost: bool = field(
        default=True, metadata={"help": "also measure clean_corpus's shuffle and driver-bound bytes"}
    )
    cost_only: bool = field(default=False, metadata={"help": "only the --spark-cost measurement"})
    out: str = field(default="", metadata={"help": "write the results as JSON here"})


Pair = tuple[int, int]


def pr(pred: set[Pair], truth: set[Pair]) -> dict[str, float]:
    tp = len(pred & truth)
    precision = tp / len(pred) if pred else 1.0
    recall = tp / len(truth) if truth else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(f1, 4),
        "pairs": len(pred),
    }


class ExactJaccard:
    """Exact shingle Jaccard of document pairs, shingle sets computed on first use."""

    def __init__(self, corpus: NearDupCorpus) -> None:
        self.corpus = corpus
        self.sets: dict[int, set[bytes]] = {}

    def __call__(self, pair: Pair) -> float:
        for i in pair:
            if i not in self.sets:
                self.sets[i] = shingle_set(self.corpus.docs[i], self.corpus.ngram)
        return jaccard(self.sets[pair[0]], self.sets[pair[1]])


def ours(corpus: NearDupCorpus, cfg: BenchConfig, hash_func: str, bands_rows: tuple[int, int]) -> dict:
    hasher = MinHasher(MinHashConfig(num_perm=cfg.num_perm, hash_func=hash_func, ngram=corpus.ngram))
    start = time.process_time()
    sigs = hasher.signatures(corpus.docs)
    pairs = candidate_pairs(band_hash_matrix(sigs, *bands_rows))
    seconds = time.process_time() - start
    return {"seconds": seconds, "signatures": sigs, "candidates": pairs}


def datasketch_lsh(corpus: NearDupCorpus, cfg: BenchConfig) -> dict:
    from datasketch import MinHash, MinHashLSH

    start = time.process_time()
    lsh = MinHashLSH(threshold=cfg.threshold, num_perm=cfg.num_perm)
    sketches = []
    with lsh.insertion_session() as session:
        for i, doc in enumerate(corpus.docs):
            m = MinHash(num_perm=cfg.num_perm)
            m.update_batch(shingles(doc, corpus.ngram))
            sketches.append(m)
            session.insert(i, m)
    pairs = {(min(i, j), max(i, j)) for i, m in enumerate(sketches) for j in lsh.query(m) if j != i}
    seconds = time.process_time() - start
    sigs = np.stack([m.hashvalues for m in sketches])
    return {"seconds": seconds, "signatures": sigs, "candidates": pairs, "bands_rows": (lsh.b, lsh.r)}


def spark_near_dedup(corpus: NearDupCorpus, cfg: BenchConfig) -> dict:
    """The corpus job's distributed path: signatures, band buckets, exact-Jaccard check, connected components.

    Wall time in local[N] (session start excluded) per core, so it compares with the single-core rows.
    """
    from pyspark.sql import functions as F

    from jobs.config import CleaningConfig
    from jobs.dedup import (
        Scratch,
        connected_components,
        lsh_bands,
        minhash_config,
        near_duplicate_edges,
        signatures,
    )
    from jobs.spark import get_spark

    spark = get_spark(
        f"local[{cfg.spark_cores}]", "dedup-bench", {"spark.sql.shuffle.partitions": str(4 * cfg.spark_cores)}
    )
    try:
        clean = CleaningConfig(
            threshold=cfg.threshold,
            num_perm=cfg.num_perm,
            recall_margin=cfg.recall_margin,
            ngram=corpus.ngram,
        )
        rows = [(f"{i:08d}", doc) for i, doc in enumerate(corpus.docs)]
        df = spark.createDataFrame(rows, "id string, text string").repartition(4 * cfg.spark_cores).cache()
        df.count()
        with tempfile.TemporaryDirectory(prefix="dedup-bench-") as tmp:
            scratch = Scratch(spark, Path(tmp))
            start = time.perf_counter()
            bands, band_rows_n = lsh_bands(clean)
            sigs = scratch.table(signatures(spark, df, minhash_config(clean), bands, band_rows_n), "sigs")
            band_rows = sigs.select("id", F.explode("bands").alias("hash"))
            edges, found = near_duplicate_edges(spark, sigs, band_rows, clean, scratch)
            n_candidates = found["candidate_pairs"]
            components = connected_components(edges, scratch).collect()
            pairs = {(int(r["a"]), int(r["b"])) for r in edges.collect()}
            seconds = time.perf_counter() - start
    finally:
        spark.stop()
    return {
        "seconds": seconds,
        "pairs": {(min(p), max(p)) for p in pairs},
        "candidates": n_candidates,
        "documents_in_clusters": len(components),
        "bands_rows": (bands, band_rows_n),
    }


def spark_cost(corpus: NearDupCorpus, cfg: BenchConfig) -> dict:
    """`clean_corpus` with near dedup only (its scratch and output writes included) in local[N], Spark's
    event log on: bytes shuffled, bytes returned to the driver, tasks; the stages that shuffled most."""
    from datetime import UTC, datetime

    from classifiers.text_norm import text_digest
    from jobs.config import CleaningConfig
    from jobs.dedup import clean_corpus
    from jobs.event_log import application_logs, event_log_conf, read_app_cost
    from jobs.spark import get_spark, job_phase, parse_conf

    cores = max(1, cfg.spark_cores)
    with tempfile.TemporaryDirectory(prefix="dedup-bench-cost-") as tmp:
        logs = Path(tmp) / "events"
        logs.mkdir()
        conf = parse_conf(event_log_conf(logs)) | {"spark.sql.shuffle.partitions": str(4 * cores)}
        spark = get_spark(f"local[{cores}]", "dedup-bench-cost", conf)
        try:
            t0 = datetime(2024, 1, 1, tzinfo=UTC)
            rows = [
                (f"{i:08d}", f"https://bench.example/{i}", doc, 0.5, t0, text_digest(doc), len(doc), "en")
                for i, doc in enumerate(corpus.docs)
            ]
            schema = (
                "id string, url string, text string, math_score double, fetch_time timestamp, "
                "content_digest string, n_chars int, lang string"
            )
            with job_phase(spark, "bench: input"):  # the job reads its input from Parquet
                spark.createDataFrame(rows, schema).repartition(4 * cores).write.parquet(f"{tmp}/input")
            df = spark.read.parquet(f"{tmp}/input")
            clean = CleaningConfig(
                exact_dedup=False,
                decontaminate=False,
                threshold=cfg.threshold,
                num_perm=cfg.num_perm,
                recall_margin=cfg.recall_margin,
                ngram=corpus.ngram,
            )
            start = time.perf_counter()
            _, report = clean_corpus(spark, df, clean, Path(tmp) / "out", "bench")
            seconds = time.perf_counter() - start
        finally:
            spark.stop()
        cost = read_app_cost(application_logs(logs)[-1])
    near = report["steps"]["near"]
    stages = [s for s in cost.stages if not s.phase.startswith("bench:")]  # clean_corpus's own

    def top(metric: str) -> list[dict]:
        ranked = sorted(stages, key=lambda s: getattr(s, metric), reverse=True)[:5]
        return [
            {"stage": s.stage_id, "phase": s.phase, "tasks": s.tasks, metric: getattr(s, metric)}
            for s in ranked
        ]

    return {
        "wall_seconds": round(seconds, 1),
        "removed": near["removed"],
        "candidate_pairs": near["candidate_pairs"],
        "verified_pairs": near["verified_pairs"],
        "shuffle_write_bytes": sum(s.shuffle_write_bytes for s in stages),
        "shuffle_read_bytes": sum(s.shuffle_read_bytes for s in stages),
        "result_bytes": sum(s.result_bytes for s in stages),
        "tasks": sum(s.tasks for s in stages),
        "max_stage_tasks": max(s.tasks for s in stages),
        "phases": cost.by_phase(),
        "top_shuffle_stages": top("shuffle_write_bytes"),
        "top_result_stages": top("result_bytes"),
    }


def run(cfg: BenchConfig) -> dict:
    t0 = time.process_time()
    corpus = make_near_dup_corpus(cfg.docs, cfg.seed)
    gen_seconds = time.process_time() - t0
    if cfg.cost_only:
        return {"config": asdict(cfg), "spark_cost": spark_cost(corpus, cfg)}
    exact = ExactJaccard(corpus)
    params = lsh_params(cfg.threshold, cfg.num_perm)
    tuned = lsh_params(cfg.threshold - cfg.recall_margin, cfg.num_perm)
    runs = {
        "datasketch MinHashLSH (sha1)": datasketch_lsh(corpus, cfg),
        f"ours xxh32-words {params}": ours(corpus, cfg, "xxh32-words", params),
        f"ours sha1 {params}": ours(corpus, cfg, "sha1", params),
        f"ours xxh32-words recall-tuned {tuned}": ours(corpus, cfg, "xxh32-words", tuned),
    }
    # Ground truth: planted pairs at or above the threshold, plus any pair some method found whose exact
    # Jaccard reaches it (so an unplanted true duplicate counts for recall, not against precision).
    truth = corpus.true_pairs(cfg.threshold)
    planted = {(p.a, p.b) for p in corpus.pairs}
    found = set().union(*(r["candidates"] for r in runs.values()))
    truth |= {p for p in found - planted if exact(p) >= cfg.threshold}
    baseline = runs["datasketch MinHashLSH (sha1)"]["seconds"]
    results = {}
    for name, r in runs.items():
        sigs, cands = r["signatures"], r["candidates"]
        t = time.process_time()
        verified_exact = {p for p in cands if exact(p) >= cfg.threshold}
        verify_seconds = time.process_time() - t
        verified_est = {p for p in cands if estimate_jaccard(sigs[p[0]], sigs[p[1]]) >= cfg.threshold}
        results[name] = {
            "docs_per_s_per_core": round(cfg.docs / r["seconds"], 1),
            "speed_vs_datasketch": round(baseline / r["seconds"], 2),
            "exact_verify_seconds": round(verify_seconds, 2),
            "candidates": pr(cands, truth),
            "verified_by_signature_estimate": pr(verified_est, truth),
            "verified_by_exact_jaccard": pr(verified_exact, truth),
        }
    if cfg.spark_cores:
        sp = spark_near_dedup(corpus, cfg)
        docs_per_s_per_core = cfg.docs / sp["seconds"] / cfg.spark_cores
        results[
            f"mathforge Spark local[{cfg.spark_cores}] recall-tuned {sp['bands_rows']} + exact check + components"
        ] = {
            "docs_per_s_per_core": round(docs_per_s_per_core, 1),
            "speed_vs_datasketch": round(docs_per_s_per_core / (cfg.docs / baseline), 2),
            "wall_seconds": round(sp["seconds"], 1),
            "candidates": sp["candidates"],
            "documents_in_clusters": sp["documents_in_clusters"],
            "verified_by_exact_jaccard": pr(sp["pairs"], truth),
        }
    jaccards = np.array([p.jaccard for p in corpus.pairs])
    cost = {"spark_cost": spark_cost(corpus, cfg)} if cfg.spark_cost else {}
    return {
        "config": asdict(cfg),
        "corpus": {
            "docs": cfg.docs,
            "planted_clusters": len(corpus.clusters),
            "planted_pairs": len(corpus.pairs),
            "true_pairs": len(truth),
            "planted_jaccard_quantiles_0_25_50_75_100": np.quantile(jaccards, [0, 0.25, 0.5, 0.75, 1])
            .round(3)
            .tolist(),
            "generation_seconds": round(gen_seconds, 1),
        },
        "lsh_params": {"threshold": params, "recall_tuned": tuned},
        "results": results,
        **cost,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_dataclass_args(parser, BenchConfig)
    cfg = dataclass_from_args(BenchConfig, parser.parse_args(argv))
    report = run(cfg)
    print(json.dumps(report, indent=2))
    if cfg.out:
        Path(cfg.out).parent.mkdir(parents=True, exist_ok=True)
        Path(cfg.out).write_text(json.dumps(report, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
