"""Spark dedup and decontamination: quality against exact Jaccard, determinism, survivors, incremental index."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from pyspark.sql import functions as F

from bench.near_dup_data import make_near_dup_corpus
from classifiers.minhash import MinHasher, band_hash_matrix
from classifiers.text_norm import text_digest
from jobs.build_corpus import build_corpus
from jobs.config import CleaningConfig, CorpusBuildConfig
from jobs.dedup import (
    SCRATCH_DIR,
    Scratch,
    clean_corpus,
    connected_components,
    drop_indexed_exact,
    exact_dedup,
    index_meta,
    lsh_bands,
    minhash_config,
    near_dedup,
    near_duplicate_edges,
    signatures,
)

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


def test_near_duplicate_pairs_match_exact_jaccard(spark, planted, tmp_path):
    cfg = CleaningConfig(threshold=0.8)
    df = _frame(spark, planted.docs)
    bands, rows = lsh_bands(cfg)
    sigs = signatures(spark, df, minhash_config(cfg), bands, rows)
    band_rows = sigs.select("id", F.explode("bands").alias("hash"))
    edges, info = near_duplicate_edges(spark, sigs, band_rows, cfg, Scratch(spark, tmp_path))
    predicted = {tuple(sorted((int(r["a"][1:]), int(r["b"][1:])))) for r in edges.collect()}
    truth = planted.true_pairs(0.8)
    assert len(truth) > 50 and info["candidate_pairs"] >= len(predicted)
    precision = len(predicted & truth) / len(predicted)
    recall = len(predicted & truth) / len(truth)
    assert precision >= 0.95 and recall >= 0.95, (precision, recall)


def test_same_ids_kept_whatever_the_partitioning(spark, planted, tmp_path):
    docs = planted.docs[:500] + planted.docs[:20]  # plus exact copies under other ids
    ids = [f"d{i:05d}" for i in range(len(docs))]
    docs, ids = [*docs, docs[3]], [*ids, "d00003"]  # and one record read twice: one id, two rows
    scores = [((i * 37) % 100) / 100 for i in range(len(docs))]
    kept_sets = []
    for partitions in (1, 3, 8):
        df = _frame(spark, docs, scores=scores, ids=ids).repartition(partitions)
        out = tmp_path / f"partitions-{partitions}"
        kept, report = clean_corpus(spark, df, CleaningConfig(decontaminate=False), out, "s1")
        kept_sets.append(_ids(kept))
        assert kept.count() == len(kept_sets[-1])  # one row per id
        assert report["steps"]["exact"]["removed"] == 20 and report["ids"]["repeated_id"] == 1
        assert not (out / SCRATCH_DIR).exists()  # the intermediate tables are gone, the rows still readable
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
    kept, _ = clean_corpus(spark, df, CleaningConfig(decontaminate=False), tmp_path, "s1")
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


def test_connected_components_follow_chains(spark, tmp_path):
    edges = spark.createDataFrame([("a", "b"), ("b", "c"), ("c", "d"), ("x", "y")], "a string, b string")
    components = {
        r["id"]: r["component"] for r in connected_components(edges, Scratch(spark, tmp_path)).collect()
    }
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
    kept, report = clean_corpus(spark, _frame(spark, docs), cfg, out, "s1")
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
    # the exact copies go by their indexed normalised text, the near copies by their indexed signatures
    assert stats["cleaning"]["steps"]["exact"]["removed"] == 5
    assert stats["cleaning"]["steps"]["near"]["removed"] == 10
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
    clean_corpus(spark, df, CleaningConfig(decontaminate=False), tmp_path / "first", "s1")
    with pytest.raises(ValueError, match="identical MinHash settings"):
        clean_corpus(
            spark,
            df,
            CleaningConfig(decontaminate=False, num_perm=64, index=str(tmp_path / "first" / "dedup_index")),
            tmp_path / "second",
            "s2",
        )


# ---------------------------------------------------------------- the corners: index, large buckets, URLs

BOILERPLATE = "cookie notice accept all cookies privacy policy terms of use site map contact us"


def _page(topic: int, variant: int = 0, words: int = 80) -> str:
    """A page on shared boilerplate: `topic` decides the body, `variant` edits its last two words."""
    body = [f"w{topic}x{i}" for i in range(words)]
    if variant:
        body[-2:] = [f"edit{variant}a", f"edit{variant}b"]
    return BOILERPLATE + " " + " ".join(body)


def test_large_bucket_finds_every_duplicate_family_and_counts_the_unchecked(spark, tmp_path):
    texts = {f"0-unrelated-{i}": _page(10 + i) for i in range(3)}  # smallest ids: a star's centre
    texts |= {f"a-{i}": _page(1, i) for i in range(3)} | {f"b-{i}": _page(2, i) for i in range(2)}
    texts["z-lone"] = _page(20)  # arrives when the representatives are full
    df = spark.createDataFrame(sorted(texts.items()), "id string, text string")
    cfg = CleaningConfig(max_pairs_bucket=5)
    sigs = signatures(spark, df, minhash_config(cfg), *lsh_bands(cfg))
    one_bucket = sigs.select("id", F.lit(7).cast("long").alias("hash"))  # every page shares one band
    scratch = Scratch(spark, tmp_path)
    edges, info = near_duplicate_edges(spark, sigs, one_bucket, cfg, scratch)
    components = {r["id"]: r["component"] for r in connected_components(edges, scratch).collect()}
    assert components == {"a-0": "a-0", "a-1": "a-0", "a-2": "a-0", "b-0": "b-0", "b-1": "b-0"}
    assert info["large_buckets"] == 1 and info["large_bucket_unchecked"] == 1
    assert info["candidate_pairs"] == 0  # no bucket small enough for all its pairs


def test_index_holds_exactly_the_documents_the_corpus_keeps(spark, shared_data, tmp_path):
    bench = shared_data / "math_benchmarks" / "gsm8k_test.jsonl"
    question = json.loads(bench.read_text().splitlines()[3])["question"]
    quoted = "Worked example from class. " + question + " We solve it step by step below."
    docs = {
        "contaminated": quoted,
        "kept-1": _page(1),
        "near-copy": _page(1, 1),
        "kept-2": _page(2),
        "exact-copy": _page(2).upper(),
    }
    df = _frame(spark, list(docs.values()), ids=list(docs))
    cfg = CleaningConfig(benchmarks=str(bench))
    kept, report = clean_corpus(spark, df, cfg, tmp_path, "s1")
    assert _ids(kept) == {"kept-1", "kept-2"}  # near-copy loses to kept-1: fetched later
    assert report["steps"]["decontamination"]["removed"] == 1
    index = tmp_path / "dedup_index"
    for table in ("exact", "signatures", "bands"):
        ids = set(ds.dataset(index / table, format="parquet").to_table().column("id").to_pylist())
        assert ids == {"kept-1", "kept-2"}, table

    # a later crawl against that index alone (no corpus beside it: signature estimates), default URL policy
    later = {
        "requoted": (
            quoted + " Thanks",
            "https://other.example/q",
        ),  # near the removed page: no snapshot has it
        "recrawl-same": (_page(2, 1), "https://example.org/kept-2"),  # the page barely changed
        "recrawl-new": (_page(5), "https://example.org/kept-1"),  # the page became another page
    }
    df = _frame(spark, [t for t, _ in later.values()], ids=list(later), urls=[u for _, u in later.values()])
    cfg = CleaningConfig(decontaminate=False, index=str(index))
    kept, _ = clean_corpus(spark, df, cfg, tmp_path / "later", "s2")
    assert _ids(kept) == {"requoted", "recrawl-new"}
    removed = ds.dataset(tmp_path / "later" / "removed", format="parquet").to_table().to_pylist()
    assert [(r["id"], r["step"], r["kept_id"]) for r in removed] == [("recrawl-same", "near", "kept-2")]


def test_a_new_document_meets_at_most_max_pairs_bucket_indexed_documents_per_bucket(spark, tmp_path):
    cfg = CleaningConfig(decontaminate=False, max_pairs_bucket=2, index=str(tmp_path / "index"))
    mh, (bands, rows) = minhash_config(cfg), lsh_bands(cfg)
    hasher = MinHasher(mh)
    text = _page(1)
    new_band = int(band_hash_matrix(hasher.signature(text), bands, rows)[0, 0])
    # three indexed documents in the new page's first band bucket; the third by id is a copy of it
    indexed = {
        "i-0": hasher.signature(_page(8)),
        "i-1": hasher.signature(_page(9)),
        "i-2": hasher.signature(text),
    }
    for table, columns in (
        ("bands", {"hash": [new_band] * 3, "id": list(indexed)}),
        ("signatures", {"id": list(indexed), "sig": [s.astype("<u4").tobytes() for s in indexed.values()]}),
    ):
        (tmp_path / "index" / table / "snapshot=s1").mkdir(parents=True)
        pq.write_table(pa.table(columns), tmp_path / "index" / table / "snapshot=s1" / "part-0.parquet")
    (tmp_path / "index" / "index.json").write_text(json.dumps(index_meta(mh, bands, rows, cfg.threshold)))
    df = _frame(spark, [text], ids=["new"])
    kept, _, info, _ = near_dedup(spark, df, cfg, Scratch(spark, tmp_path / "scratch-2"))
    assert _ids(kept) == {"new"} and info["index_bucket_unchecked"] == 1  # i-2 is past the cap of 2
    scratch = Scratch(spark, tmp_path / "scratch-3")
    kept, removed, info, _ = near_dedup(spark, df, dataclasses.replace(cfg, max_pairs_bucket=3), scratch)
    assert _ids(kept) == set() and info["index_bucket_unchecked"] == 0
    assert [(r["id"], r["kept_id"]) for r in removed.collect()] == [("new", "i-2")]


def _digested(spark, rows: list[tuple[str, str | None, str]]):
    """(id, url, text) rows with the columns exact dedup reads."""
    return spark.createDataFrame(
        [(i, u, t, 0.5, T0, text_digest(t)) for i, u, t in rows],
        "id string, url string, text string, math_score double, fetch_time timestamp, content_digest string",
    )


def test_rows_without_a_url_never_dedup_by_url(spark):
    rows = [("n1", None, "first page"), ("n2", None, "second page"), ("e1", "", "third page")]
    rows += [("e2", "  ", "fourth page"), ("u1", "https://x/p", "fifth page"), ("u2", "https://x/p", "sixth")]
    kept, removed = exact_dedup(_digested(spark, rows))
    assert _ids(kept) == {"n1", "n2", "e1", "e2", "u1"}
    assert [(r["id"], r["reason"], r["kept_id"]) for r in removed.collect()] == [("u2", "same URL", "u1")]
    kept, removed = exact_dedup(_digested(spark, rows), url_dedup="off")
    assert _ids(kept) == {r[0] for r in rows} and removed.count() == 0


def test_url_policy_against_an_index(spark):
    indexed = spark.createDataFrame(
        [("old", text_digest("the page as published"), "https://x/p"), ("old-blank", text_digest("x"), "")],
        "id string, content_digest string, url string",
    )
    rows = [
        ("same-text", "https://x/p", "The page as   PUBLISHED"),  # a recrawl that did not change
        ("changed", "https://x/p", "the page rewritten with new answers"),  # a recrawl that changed
        ("blank", "", "an unrelated page without a URL"),
    ]
    df = _digested(spark, rows)
    removed_by = {}
    for policy in ("first", "changed", "off"):
        kept, removed = drop_indexed_exact(df, indexed, policy)
        removed_by[policy] = {r["id"]: (r["reason"], r["kept_id"]) for r in removed.collect()}
        assert _ids(kept) == {r[0] for r in rows} - set(removed_by[policy])
    same_text = ("same normalised text as an indexed document", "old")
    assert removed_by["first"] == {
        "same-text": same_text,
        "changed": ("same URL as an indexed document", "old"),
    }
    assert removed_by["changed"] == removed_by["off"] == {"same-text": same_text}


def test_url_dedup_policy_is_checked_when_configured():
    with pytest.raises(ValueError, match="--url-dedup must be one of first, changed, off"):
        CleaningConfig(url_dedup="latest")
