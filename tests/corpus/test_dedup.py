"""Spark dedup and decontamination: quality against exact Jaccard, determinism, survivors, incremental index."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pyarrow.dataset as ds
import pytest
from pyspark.sql import functions as F

from bench.near_dup_data import make_near_dup_corpus
from classifiers.text_norm import text_digest
from jobs.build_corpus import build_corpus
from jobs.config import CleaningConfig, CorpusBuildConfig, CorpusDedupConfig
from jobs.dedup import (
    clean_corpus,
    connected_components,
    exact_dedup,
    lsh_bands,
    minhash_config,
    near_duplicate_edges,
    signatures,
)
from jobs.dedup_corpus import dedup_corpus

from .warcs import article_html, write_html_warc

pytestmark = pytest.mark.spark

T0 = datetime(2024, 1, 1, tzinfo=UTC)
COLUMNS = "id string, url string, text string, math_score float, fetch_time timestamp, content_digest string, n_chars int, lang string"


def _frame(spark, docs: list[str], *, scores=None, times=None, ids=None, urls=None):
    rows = []
    for i, text in enumerate(docs):
        doc_id = ids[i] if ids else f"d{i:05d}"
        rows.append(
            (
                doc_id,
                urls[i] if urls else f"https://example.org/{doc_id}",
                text,
                float(scores[i]) if scores else 0.5,
                times[i] if times else T0 + timedelta(minutes=i),
                text_digest(text),
                len(text),
                "en",
            )
        )
    return spark.createDataFrame(rows, COLUMNS)


def _ids(df) -> set[str]:
    return {r["id"] for r in df.select("id").collect()}


@pytest.fixture(scope="module")
def planted():
    return make_near_dup_corpus(1200, seed=11, dup_share=0.35, words_range=(60, 250))


def test_near_duplicate_pairs_match_exact_jaccard(spark, planted):
    cfg = CleaningConfig(threshold=0.8)
    df = _frame(spark, planted.docs)
    bands, rows = lsh_bands(cfg)
    sigs = signatures(spark, df, minhash_config(cfg), bands, rows)
    band_rows = sigs.select("id", F.explode("bands").alias("hash"))
    edges, candidates = near_duplicate_edges(spark, sigs, band_rows, cfg)
    predicted = {tuple(sorted((int(r["a"][1:]), int(r["b"][1:])))) for r in edges.collect()}
    truth = planted.true_pairs(0.8)
    assert len(truth) > 50 and candidates >= len(predicted)
    precision = len(predicted & truth) / len(predicted)
    recall = len(predicted & truth) / len(truth)
    assert precision >= 0.95 and recall >= 0.95, (precision, recall)


def test_same_ids_kept_whatever_the_partitioning(spark, planted, tmp_path):
    docs = planted.docs[:500] + planted.docs[:20]  # plus exact copies under other ids
    scores = [((i * 37) % 100) / 100 for i in range(len(docs))]
    kept_sets = []
    for partitions in (1, 3, 8):
        df = _frame(spark, docs, scores=scores).repartition(partitions)
        out = tmp_path / f"partitions-{partitions}"
        kept, report = clean_corpus(spark, df, CleaningConfig(decontaminate=False), out)
        kept_sets.append(_ids(kept))
        assert report["steps"]["exact"]["removed"] == 20
    assert kept_sets[0] == kept_sets[1] == kept_sets[2]


def test_survivor_is_highest_math_score_then_earliest_then_smallest_id(spark, planted, tmp_path):
    base = planted.docs[0]
    variant = base + " coda"
    docs = [variant, base, variant + " more", base.upper()]
    df = _frame(
        spark,
        docs,
        ids=["c", "b", "a", "z"],
        scores=[0.9, 0.2, 0.9, 0.1],
        times=[T0 + timedelta(days=2), T0, T0 + timedelta(days=1), T0],
    )
    kept, _ = clean_corpus(spark, df, CleaningConfig(decontaminate=False), tmp_path)
    # "z" is an exact copy of "b" (case only) and loses to it; then a, b, c are one near-dup cluster:
    # a and c tie on score 0.9, a was fetched earlier.
    assert _ids(kept) == {"a"}


def test_exact_dedup_by_normalised_text_and_url(spark):
    docs = ["The Quick brown fox.", "the quick   BROWN fox", "Another page entirely", "Third page"]
    df = _frame(spark, docs, urls=["u1", "u2", "u3", "u3"], scores=[0.1, 0.9, 0.5, 0.6])
    kept, removed = exact_dedup(df)
    assert _ids(kept) == {"d00001", "d00003"}
    reasons = {r["id"]: (r["reason"], r["kept_id"]) for r in removed.collect()}
    assert reasons == {"d00000": ("same normalised text", "d00001"), "d00002": ("same URL", "d00003")}


def test_connected_components_follow_chains(spark):
    edges = spark.createDataFrame([("a", "b"), ("b", "c"), ("c", "d"), ("x", "y")], "a string, b string")
    components = {r["id"]: r["component"] for r in connected_components(edges).collect()}
    assert components == {"a": "a", "b": "a", "c": "a", "d": "a", "x": "x", "y": "x"}


def test_decontamination_with_real_benchmarks(spark, shared_data, tmp_path):
    bench = shared_data / "math_benchmarks"
    gsm = json.loads((bench / "gsm8k_test.jsonl").read_text().splitlines()[5])["question"]
    math500 = json.loads((bench / "math500_test.jsonl").read_text().splitlines()[7])["problem"]
    docs = [
        "Homework help thread.\n" + "  ".join(gsm.upper().split()) + "\nAnyone know the answer?",
        "Today we look at a classic: " + math500 + " Here is how I would start.",
        "Word problems about buying apples and sharing them among friends teach division and ratios.",
        "Completing the square turns any quadratic into vertex form; then the roots follow directly.",
    ]
    cfg = CleaningConfig(
        exact_dedup=False,
        near_dedup=False,
        benchmarks=f"{bench / 'gsm8k_test.jsonl'},{bench / 'math500_test.jsonl'}",
    )
    out = tmp_path
    kept, report = clean_corpus(spark, _frame(spark, docs), cfg, out)
    assert _ids(kept) == {"d00002", "d00003"}
    assert report["steps"]["decontamination"]["removed"] == 2
    removed = {r["id"]: r for r in ds.dataset(out / "removed", format="parquet").to_table().to_pylist()}
    assert removed["d00000"]["kept_id"].startswith("gsm8k_test:")
    assert (
        removed["d00001"]["kept_id"].startswith("math500_test:")
        and "math500_test" in removed["d00001"]["reason"]
    )


def test_incremental_build_removes_what_the_index_already_holds(spark, planted, tmp_path):
    # crawl A: 30 unrelated documents; crawl B: near copies of 10 of them, exact copies of 5, 15 new ones
    fresh = [planted.docs[i] for i in range(len(planted.docs)) if not any(i in c for c in planted.clusters)]
    a_docs, b_new = fresh[:30], fresh[30:45]
    b_near = [" ".join(d.split()[:-2]) + " plus two" for d in a_docs[:10]]
    b_exact = a_docs[10:15]
    warc_a = write_html_warc(
        tmp_path / "a.warc.gz", [(f"https://a.example/{i}", article_html(t)) for i, t in enumerate(a_docs)]
    )
    warc_b = write_html_warc(
        tmp_path / "b.warc.gz",
        [(f"https://b.example/{i}", article_html(t)) for i, t in enumerate(b_near + b_exact + b_new)],
    )
    base = {"min_math_score": 0.0, "decontaminate": False}
    build_corpus(spark, CorpusBuildConfig(input=str(warc_a), output=str(tmp_path / "A"), **base))
    stats = build_corpus(
        spark,
        CorpusBuildConfig(
            input=str(warc_b), output=str(tmp_path / "B"), index=str(tmp_path / "A" / "dedup_index"), **base
        ),
    )
    kept_urls = {
        r["url"] for r in ds.dataset(tmp_path / "B" / "data", format="parquet").to_table().to_pylist()
    }
    assert kept_urls == {f"https://b.example/{i}" for i in range(15, 30)}
    assert stats["cleaning"]["steps"]["near"]["removed"] == 15
    # B's index holds A's documents and B's new ones: a third crawl is checked against both
    index_ids = set(
        ds.dataset(tmp_path / "B" / "dedup_index" / "signatures", format="parquet")
        .to_table()
        .column("id")
        .to_pylist()
    )
    assert len(index_ids) == 45


def test_incompatible_index_is_refused(spark, planted, tmp_path):
    df = _frame(spark, planted.docs[:50])
    clean_corpus(spark, df, CleaningConfig(decontaminate=False), tmp_path / "first")
    with pytest.raises(ValueError, match="identical MinHash settings"):
        clean_corpus(
            spark,
            df,
            CleaningConfig(decontaminate=False, num_perm=64, index=str(tmp_path / "first" / "dedup_index")),
            tmp_path / "second",
        )


def test_corpus_dedup_command_on_an_existing_corpus(spark, planted, tmp_path):
    warc = write_html_warc(
        tmp_path / "c.warc.gz",
        [(f"https://c.example/{i}", article_html(t)) for i, t in enumerate(planted.docs[:40])],
    )
    raw = tmp_path / "raw"
    build_corpus(
        spark,
        CorpusBuildConfig(
            input=str(warc),
            output=str(raw),
            min_math_score=0.0,
            exact_dedup=False,
            near_dedup=False,
            decontaminate=False,
        ),
    )
    stats = dedup_corpus(
        spark, CorpusDedupConfig(input=str(raw), output=str(tmp_path / "clean"), threshold=0.8)
    )
    cluster_members = {i for c in planted.clusters for i in c if i < 40}
    assert stats["cleaning"]["input_documents"] == 40
    assert (
        stats["kept"]
        == 40 - stats["cleaning"]["steps"]["near"]["removed"] - stats["cleaning"]["steps"]["exact"]["removed"]
    )
    assert stats["kept"] >= 40 - len(cluster_members)
    manifest = json.loads((tmp_path / "clean" / "manifest.json").read_text())
    assert manifest["derived_from"]["output"] == str(raw.resolve())
