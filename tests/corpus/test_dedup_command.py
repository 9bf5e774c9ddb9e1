"""`mathforge corpus dedup` as a user runs it: planted near duplicates of real solutions, a table that holds
only the contract's columns, and the bytes its tasks send the driver at two sizes (Spark's event log). Its
own file so that the suite's workers split the dedup tests between them."""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from bench.near_dup_data import make_near_dup_corpus
from classifiers.text_norm import text_digest
from jobs.config import CorpusDedupConfig
from jobs.corpus_schema import arrow_schema
from jobs.dedup_corpus import dedup_corpus

from .event_log import conf_flags, last_app_cost

pytestmark = pytest.mark.spark

T0 = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def planted():
    return make_near_dup_corpus(1200, seed=11, dup_share=0.35, words_range=(60, 250))


# ---------------------------------------------------------------- `mathforge corpus dedup`, as a user runs it

MATHFORGE = str(Path(sys.executable).parent / "mathforge")
FORUM = ("MathHelpBoards > Algebra", "Reply | Quote | 3 likes")  # site templates around the text
BLOG = ("Problem of the week", "Leave a comment")
MIRROR = ("Contest archive mirror", "Back to the index")


def _shingles(text: str, n: int = 5) -> set[tuple[str, ...]]:
    """Word 5-grams after case folding, written out here as the test's own yardstick."""
    words = re.findall(r"\w+", text.casefold())
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def _jaccard(a: str, b: str) -> float:
    sa, sb = _shingles(a), _shingles(b)
    return len(sa & sb) / len(sa | sb)


def _reword(text: str, changes: dict[int, str]) -> str:
    """The same text with a few words replaced (word index -> new word)."""
    words = text.split(" ")
    for i, word in changes.items():
        words[i] = word
    return " ".join(words)


def _framed(template: tuple[str, str], body: str) -> str:
    return f"{template[0]}\n{body}\n{template[1]}"


@pytest.fixture(scope="module")
def solutions(shared_data) -> list[str]:
    """Real worked solutions from MATH500, the long ones (>= 280 words), one line of prose each."""
    rows = [json.loads(line) for line in (shared_data / "math_benchmarks" / "math500_test.jsonl").open()]
    texts = [" ".join(f"{r['problem']} {r['solution']}".split()) for r in rows]
    return [t for t in texts if len(t.split(" ")) >= 280]


@pytest.mark.slow
def test_corpus_dedup_command_removes_planted_near_duplicates_only(solutions, tmp_path):
    a, b, c, d, f = solutions[:5]
    a_words, d_words = a.split(" "), d.split(" ")
    docs = {
        # cluster A: one solution on three sites, reworded in a few places; the forum copy scores highest
        "a-original": (a, 0.70, 0),
        "a-forum": (_framed(FORUM, _reword(a, {40: "therefore", 90: "clearly", 150: "hence"})), 0.95, 48),
        "a-mirror": (_framed(MIRROR, _reword(a, {60: "thus", 120: "obviously"})), 0.70, 24),
        # cluster B: equal scores, so the earliest fetch survives
        "b-late": (_framed(BLOG, b), 0.60, 120),
        "b-early": (_framed(FORUM, _reword(b, {20: "we", 70: "get", 110: "so"})), 0.60, 2),
        # exact copies (same text, other URL): the smallest id survives
        "c-1": (c, 0.50, 10),
        "c-2": (c, 0.50, 10),
        # not duplicates: another solution, half of A's text with a different second half, and another
        # solution on the forum's template (shared boilerplate, different content)
        "d": (d, 0.40, 5),
        "e-half-of-a": (" ".join(a_words[: len(a_words) // 2] + d_words[len(d_words) // 2 :]), 0.90, 6),
        "f-forum-template": (_framed(FORUM, f), 0.30, 7),
    }
    survivors = {"a-forum", "b-early", "c-1", "d", "e-half-of-a", "f-forum-template"}
    duplicate_of = {"a-original": "a-forum", "a-mirror": "a-forum", "b-late": "b-early", "c-2": "c-1"}
    # the planted structure, measured: near copies clearly above the 0.8 threshold, the rest far below it;
    # the forum and mirror copies of A are 0.78 apart and meet only through the original (a chain)
    for x, y in [("a-original", "a-forum"), ("a-original", "a-mirror"), ("b-late", "b-early")]:
        assert _jaccard(docs[x][0], docs[y][0]) >= 0.85, (x, y)
    assert _jaccard(docs["a-forum"][0], docs["a-mirror"][0]) < 0.8
    for x, y in itertools.combinations(sorted(survivors), 2):
        assert _jaccard(docs[x][0], docs[y][0]) < 0.6, (x, y)

    raw = tmp_path / "raw"
    (raw / "data").mkdir(parents=True)
    rows = [
        {
            "id": doc_id,
            "url": f"https://{doc_id}.example/page",
            "domain": f"{doc_id}.example",
            "crawl": "CC-MAIN-2024-22",
            "warc_path": "/crawl/x.warc.gz",
            "warc_record_id": f"<urn:uuid:{doc_id}>",
            "fetch_time": T0 + timedelta(hours=hours),
            "lang": "en",
            "lang_score": 0.95,
            "math_score": score,
            "text": text,
            "is_math": True,
            "extractor": "trafilatura",
            "n_chars": len(text),
            "content_digest": text_digest(text),
            "charset": "utf-8",
            "charset_source": "http-header",
        }
        for doc_id, (text, score, hours) in docs.items()
    ]
    pq.write_table(pa.Table.from_pylist(rows, schema=arrow_schema()), raw / "data" / "part-00000.parquet")

    out = tmp_path / "clean"
    result = subprocess.run(
        [MATHFORGE, "corpus", "dedup", "--input", str(raw), "--output", str(out), "--threshold", "0.8",
         "--master", "local[1]"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    kept = ds.dataset(out / "data", format="parquet").to_table().to_pylist()
    assert {r["id"] for r in kept} == survivors
    assert {r["id"]: r["text"] for r in kept} == {i: docs[i][0] for i in survivors}  # rows untouched
    removed = ds.dataset(out / "removed", format="parquet").to_table().to_pylist()
    assert {r["id"]: r["kept_id"] for r in removed} == duplicate_of
    assert {r["id"]: r["step"] for r in removed} == {
        "a-original": "near", "a-mirror": "near", "b-late": "near", "c-2": "exact"
    }  # fmt: skip
    stats = json.loads((out / "stats.json").read_text())
    assert stats["kept"] == len(survivors) and stats["cleaning"]["input_documents"] == len(docs)
    assert "removed by near | 3 |" in result.stdout and "removed by exact | 1 |" in result.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["derived_from"] == str(raw)  # no manifest at the source: its path


# ---------------------------------------------------------------- `corpus dedup` on any table with the contract


CONTRACT = pa.schema(  # DESIGN.md's required columns, nothing else
    [
        ("id", pa.string()),
        ("url", pa.string()),
        ("domain", pa.string()),
        ("crawl", pa.string()),
        ("warc_path", pa.string()),
        ("warc_record_id", pa.string()),
        ("fetch_time", pa.timestamp("us", tz="UTC")),
        ("lang", pa.string()),
        ("lang_score", pa.float64()),
        ("math_score", pa.float64()),
        ("text", pa.string()),
    ]
)


def _contract_table(directory: Path, texts: dict[str, str], drop: tuple[str, ...] = ()) -> Path:
    rows = [
        {
            "id": doc_id,
            "url": f"https://{doc_id}.example/p",
            "domain": f"{doc_id}.example",
            "crawl": "CC-MAIN-2024-22",
            "warc_path": "/crawl/x.warc.gz",
            "warc_record_id": f"<urn:uuid:{doc_id}>",
            "fetch_time": T0 + timedelta(hours=i),
            "lang": "en",
            "lang_score": 0.9,
            "math_score": 0.5,
            "text": text,
        }
        for i, (doc_id, text) in enumerate(texts.items())
    ]
    schema = pa.schema([f for f in CONTRACT if f.name not in drop])
    (directory / "data").mkdir(parents=True)
    pq.write_table(
        pa.Table.from_pylist([{k: r[k] for k in schema.names} for r in rows], schema=schema),
        directory / "data" / "part-00000.parquet",
    )
    return directory


def test_corpus_dedup_computes_what_a_contract_only_table_lacks(spark, tmp_path):
    texts = {
        "a": "Let $x^2 = 4$; then x = 2 or x = −2, the two square roots of 4 (数学).",
        "a-copy": "let $X^2 = 4$ then X = 2 or x = −2 the two square roots of 4 数学",  # same once normalised
        "b": "An unrelated page about the integral of sin x from 0 to pi, which equals 2.",
    }
    source = _contract_table(tmp_path / "raw", texts)
    stats = dedup_corpus(spark, CorpusDedupConfig(input=str(source), output=str(tmp_path / "clean")))
    kept = ds.dataset(tmp_path / "clean" / "data", format="parquet").to_table().to_pylist()
    assert sorted(r["id"] for r in kept) == ["a", "b"]  # same score: the earlier fetch survives
    for row in kept:  # the build's own rules: code points, and the digest of the normalised text
        assert row["n_chars"] == len(texts[row["id"]]) and row["content_digest"] == text_digest(row["text"])
    removed = ds.dataset(tmp_path / "clean" / "removed", format="parquet").to_table().to_pylist()
    assert [(r["id"], r["step"], r["kept_id"]) for r in removed] == [("a-copy", "exact", "a")]
    assert stats["kept_chars"] == len(texts["a"]) + len(texts["b"])


def test_corpus_dedup_names_the_required_columns_a_table_lacks(spark, tmp_path):
    source = _contract_table(tmp_path / "raw", {"a": "some text"}, drop=("fetch_time", "lang"))
    with pytest.raises(ValueError, match=r"lacks the required corpus column\(s\) fetch_time, lang \("):
        dedup_corpus(spark, CorpusDedupConfig(input=str(source), output=str(tmp_path / "clean")))
    assert not list(tmp_path.glob("clean*"))


def _dedup_cost(planted, n: int, root: Path):
    """`corpus dedup` of the first `n` planted documents with Spark's event log on: its stats and cost."""
    source = _contract_table(root / "raw", {f"d{i:05d}": planted.docs[i] for i in range(n)})
    logs = root / "events"
    result = subprocess.run(
        [MATHFORGE, "corpus", "dedup", "--input", str(source), "--output", str(root / "clean"),
         "--master", "local[2]", "--conf", "spark.sql.shuffle.partitions=4", *conf_flags(logs)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((root / "clean" / "stats.json").read_text()), last_app_cost(logs)


def test_bytes_returned_to_the_driver_do_not_grow_with_the_corpus(planted, tmp_path):
    """Event logs of `corpus dedup` on 300 and 1,200 documents: dedup's tasks send the driver the same bytes
    (a count, a write's commit message, metrics), not rows; a collect or a broadcast join of a table that
    grows with the corpus (signatures, shingle sets, removed ids) would grow them about fourfold."""
    (small, small_cost), (large, large_cost) = (
        _dedup_cost(planted, n, tmp_path / str(n)) for n in (300, 1200)
    )
    assert large["cleaning"]["input_documents"] == 4 * small["cleaning"]["input_documents"]
    assert (
        large["cleaning"]["steps"]["near"]["removed"] >= 3 * small["cleaning"]["steps"]["near"]["removed"] > 0
    )
    figures = []
    for cost in (small_cost, large_cost):
        stages = [s for s in cost.stages if s.phase.startswith("dedup:")]
        assert stages and not any(s.failed_tasks for s in stages)
        total = sum(s.result_bytes for s in stages)
        per_task = max(s.result_bytes / s.tasks for s in stages)  # a collect shows in its stage's tasks
        figures.append((total, per_task, sum(s.tasks for s in stages)))
    (small_total, small_task, _), (large_total, large_task, _) = figures
    assert large_total <= small_total * 1.15, figures  # tasks: partitions follow settings, not the data
    assert large_task <= small_task * 1.15 + 1024, figures
