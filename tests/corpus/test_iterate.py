"""`corpus iterate` (DeepSeekMath's loop) in Spark local mode on the planted web: real GSM8K word problems in
plain text on planted math domains, markup math, non-math sites and real pages from ../shared/data.

Round 1's classifier, trained on markup seeds, misses the plain-text math; domain discovery turns the
markup minority of the planted domains into seeds, and later rounds recall the plain text — including a
domain that round 1 could not notice at all.
"""

from __future__ import annotations

import itertools
import json
import shutil

import pyarrow.dataset as ds
import pytest

import jobs.iterate_corpus as iterate_job
from classifiers.domain_discovery import (
    CAPPED,
    FEW_PAGES,
    LOW_QUALITY,
    LOW_SCORE,
    LOW_SHARE,
    ScoredPage,
    collect,
    domain_shares,
    guarded_accept,
    label_metrics,
    prefix_seeds,
    propose_prefixes,
)
from jobs.config import IterateConfig
from jobs.corpus_schema import COLUMN_NAMES
from jobs.corpus_writers import CorpusLock, CorpusLockedError, is_complete
from jobs.iterate_corpus import iterate_corpus
from samplecrawl.planted_web import write_planted_web

pytestmark = [pytest.mark.spark, pytest.mark.slow]


def _config(web, out, **overrides) -> IterateConfig:
    settings = dict(
        input=str(web / "warc.paths"),
        seeds=str(web / "seeds.jsonl"),
        labels=str(web / "labels.jsonl"),
        output=str(out),
        rounds=5,
        epoch=40,  # DeepSeekMath's 3 epochs assume ~1M seeds; this web has 60
        bucket=20000,
        near_dedup=False,  # the planted pages have no near duplicates; keeps the pool pass short
    )
    return IterateConfig(**{**settings, **overrides})


@pytest.fixture(scope="module")
def web(shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("planted")
    write_planted_web(out, shared_data, n_general=30)
    return out


@pytest.fixture(scope="module")
def loop(spark, web, tmp_path_factory):
    out = tmp_path_factory.mktemp("loop") / "run"
    stats = iterate_corpus(spark, _config(web, out))
    return out, stats


def _rows(out):
    return sorted(ds.dataset(out / "data", format="parquet").to_table().to_pylist(), key=lambda r: r["id"])


def test_recall_grows_domains_are_discovered_and_the_loop_converges(loop, web):
    _, stats = loop
    rounds = stats["rounds"]
    figures = [(r["round"], r["labels"]["recall"], r["labels"]["precision"], r["overlap"]) for r in rounds]
    print("round, recall, precision, overlap:", figures)
    recalls = [r["labels"]["recall"] for r in rounds]
    assert len(rounds) >= 3
    assert recalls[-1] > recalls[0] + 0.3, figures  # plain-text math is recalled only after discovery
    # recall grows; once converged a round may drop a page or two (training holds a fifth of the seeds out)
    assert all(b >= a - 0.02 for a, b in itertools.pairwise(recalls)), figures
    assert rounds[-1]["labels"]["precision"] >= 0.9, figures
    assert rounds[-1]["overlap"] >= 0.95, figures  # converging: the last round adds almost nothing
    planted = json.loads((web / "planted_web.json").read_text())["domains"]
    discovered = set(stats["math_domains"])
    assert set(planted["plain_math"]) | set(planted["markup_math"]) <= discovered
    assert not discovered & set(planted["non_math"])
    # the plain-text domain without a markup minority is found only by a later round's classifier
    first_seen = {d: r["round"] for r in reversed(rounds) for d in r["new_domains"]}
    assert first_seen["puzzle-tutor.com"] > 1 and first_seen["askmath-community.org"] == 1
    assert set(planted["plain_math_prefixes"]) <= set(stats["accepted_prefixes"])


def test_rounds_and_final_corpus_are_kept(loop):
    out, stats = loop
    last = stats["rounds_run"]
    for n in range(1, last + 1):
        folder = out / "rounds" / str(n)
        for name in ("model.bin", "model.json", "proposals.json", "proposals.md", "report.json", "report.md",
                     "score_histogram.png"):  # fmt: skip
            assert (folder / name).is_file(), (n, name)
        for name in (
            "seeds.parquet",
            "collection.parquet",
            "scores",
            "proposals.parquet",
            "accepted.parquet",
        ):
            assert (folder / name / "_SUCCESS").is_file(), (n, name)  # Parquet folders written by many tasks
    rows = _rows(out)
    assert len(rows) == stats["documents"] > 0
    assert list(rows[0])[: len(COLUMN_NAMES)] == list(COLUMN_NAMES)
    assert {r["first_round"] for r in rows} <= set(range(1, last + 1))
    final = json.loads((out / "rounds" / str(last) / "report.json").read_text())
    assert all(r["math_score"] >= 0.5 and r["is_math"] for r in rows)
    assert final["collected_pages"] == len(rows)
    first = {r["id"]: (r["first_round"], r["first_score"]) for r in rows}
    round1 = json.loads((out / "rounds" / "1" / "report.json").read_text())
    assert sum(1 for fr, _ in first.values() if fr == 1) <= round1["collected_pages"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["math_scorer"]["name"] == "fasttext"
    # the final corpus is a version swapped in with one rename: DIR/data links to a complete, marked version
    data = out / "data"
    assert data.is_symlink() and data.resolve().parent == out / "data.versions"
    assert is_complete(data.resolve()) and not list(out.glob("data.staging-*"))


def test_a_second_loop_on_a_locked_directory_is_refused_and_writes_nothing(tmp_path):
    """`corpus iterate` holds `<DIR>.lock` (the corpus writers' lock) for the whole run: a second loop on
    the same directory is refused before it reads or writes anything (Spark is never touched)."""
    out = tmp_path / "run"
    held = CorpusLock(out)
    held.acquire("the-other-loop")
    try:
        config = IterateConfig(input="unused.warc.gz", seeds="unused.jsonl", output=str(out))
        with pytest.raises(CorpusLockedError, match=r"being written by another run .*the-other-loop"):
            iterate_corpus(None, config)  # type: ignore[arg-type]
    finally:
        held.release()
    assert not out.exists()


def _table(path, columns=None):
    return ds.dataset(path, format="parquet").to_table(columns=columns).to_pylist()


def test_spark_decisions_equal_the_plain_definitions(loop, web):
    """Round 1's collection, shares, proposals and label figures, and round 2's new seeds, as Spark computed
    them, against `classifiers.domain_discovery` run in memory over the same scores."""
    out, _ = loop
    labels = {r["id"]: r["label"] for r in _table(out / "pool" / "labels.parquet")}
    scores = {r["id"]: r["score"] for r in _table(out / "rounds" / "1" / "scores")}
    pool = _table(out / "pool" / "data", ["id", "url", "domain", "n_chars"])
    pages = [ScoredPage(p["id"], p["url"], p["domain"], p["n_chars"], round(scores[p["id"]], 6), labels[p["id"]])
             for p in pool]  # fmt: skip
    config = _config(web, out)
    report = json.loads((out / "rounds" / "1" / "report.json").read_text())

    collected = collect(pages, config.min_score)
    assert [r["id"] for r in _table(out / "rounds" / "1" / "collection.parquet")] == [p.id for p in collected]
    ids = {p.id for p in collected}
    shares = domain_shares(pages, ids)
    candidates = [
        {"domain": s.domain, "pages": s.pages, "collected": s.collected, "share": round(s.share, 4)}
        for s in shares.values()
        if s.share > config.domain_share
    ]
    assert report["candidate_domains"] == candidates
    proposals = propose_prefixes(pages, ids, shares, config.domain_share, config.prefix_depth)
    reference = report["seed_reference"]["score"]
    assert reference is not None and report["seeds"]["heldout"] == 12
    cap = int(config.max_seed_growth * report["seeds"]["given"])
    proposals = guarded_accept(proposals, config.accept_share, config.min_prefix_pages, reference,
                               config.score_tolerance, max_new_seeds=cap)  # fmt: skip
    assert report["proposals"] == [p.to_dict() for p in proposals] and len(proposals) > 3
    assert report["accepted_prefixes"] == sorted(p.key for p in proposals if p.accepted)
    assert report["labels"] == label_metrics(pages, ids)
    assert report["pool_pages"] == len(pages) == sum(c for _, c in report["score_histogram"])

    seeds = _table(out / "rounds" / "2" / "seeds.parquet")
    new = [r["id"] for r in seeds if r["source"] == "prefix:new"]
    assert new == [p.id for p in prefix_seeds(pages, report["accepted_prefixes"], ids)] and new
    assert [r["source"] for r in seeds[: report["seeds"]["given"]]] == ["given"] * report["seeds"]["given"]


def test_a_labels_file_error_names_its_line():
    assert iterate_job.parse_label("l.jsonl", 3, '{"url": "https://a.org/x", "is_math": 1}') == (
        "https://a.org/x",
        True,
    )
    assert iterate_job.parse_label("l.jsonl", 4, "  ") is None
    with pytest.raises(ValueError, match=r"l\.jsonl:5: expected a JSON object with url and is_math"):
        iterate_job.parse_label("l.jsonl", 5, '{"url": "https://a.org/y"}')


class _Killed(RuntimeError):
    pass


def test_a_run_killed_in_round_2_resumes_to_the_same_corpus(spark, web, loop, tmp_path, monkeypatch):
    out_full, _ = loop
    out = tmp_path / "run"
    out.mkdir()
    shutil.copytree(out_full / "pool", out / "pool")  # the pool pass resumes like a round: committed once

    def fail(round_number, stage):
        if round_number == 2 and stage == "scored":
            raise _Killed

    monkeypatch.setattr(iterate_job, "fail_point", fail)
    with pytest.raises(_Killed):
        iterate_corpus(spark, _config(web, out))
    assert (out / "rounds" / "1" / "report.json").is_file() and not (out / "rounds" / "2").exists()
    assert list((out / "rounds").glob(".staging-2-*"))  # the half-written round is only a staging folder
    monkeypatch.setattr(iterate_job, "fail_point", lambda n, stage: None)
    iterate_corpus(spark, _config(web, out))
    assert not list((out / "rounds").glob(".staging-*"))
    assert _rows(out) == _rows(out_full)
    with pytest.raises(ValueError, match="other settings"):
        iterate_corpus(spark, _config(web, out, min_score=0.6))


def _copy_pool(loop_out, out):
    out.mkdir(parents=True)
    shutil.copytree(loop_out / "pool", out / "pool")


def _proposals(out, n=1):
    return {p["key"]: p for p in json.loads((out / "rounds" / str(n) / "proposals.json").read_text())}


def test_guards_stop_a_non_math_prefix_and_cap_the_seeds_a_round_adds(spark, web, loop, tmp_path):
    """A lower score floor (0.3) collects strays on non-math prefixes (a math domain's /blog/, an article
    collection): the old rule (collected share and count) would accept them; their collected pages score far
    below the held-out seeds, so they are rejected with that reason. A cap of half the given seeds defers the prefixes past it; a seed set under
    --min-seeds is warned about."""
    out = tmp_path / "run"
    _copy_pool(loop[0], out)
    # a tolerance wide enough for the math prefixes' collected pages at this floor (medians 0.43-0.51 against
    # a reference of 0.70 in round 1), not for the strays (0.30-0.31)
    config = _config(
        web, out, rounds=1, min_score=0.3, score_tolerance=0.35, max_seed_growth=0.5, min_seeds=100
    )
    stats = iterate_corpus(spark, config)
    report = json.loads((out / "rounds" / "1" / "report.json").read_text())
    proposals = _proposals(out)
    labels = {r["id"]: r["label"] for r in _table(out / "pool" / "labels.parquet")}
    pool = _table(out / "pool" / "data", ["id", "url", "domain"])

    def math_share(key):
        pages = [p for p in pool if p["url"].split("://", 1)[1].startswith(key)]
        return sum(bool(labels[p["id"]]) for p in pages) / len(pages)

    old_rule = [k for k, p in proposals.items()
                if p["collected"] >= config.min_prefix_pages and p["share"] >= config.accept_share]  # fmt: skip
    non_math = [k for k in old_rule if math_share(k) < 0.5]
    assert non_math, proposals  # the old rule alone would have opened a non-math prefix
    assert all(proposals[k]["decision"] == LOW_SCORE and not proposals[k]["accepted"] for k in non_math)
    assert not set(stats["accepted_prefixes"]) & set(non_math)
    # the cap: the new prefixes' uncollected pages (the seeds they add) fit in 0.5 x 60 given seeds
    accepted = [p for p in proposals.values() if p["accepted"]]
    assert accepted and sum(p["pages"] - p["collected"] for p in accepted) <= 30
    capped = [p for p in proposals.values() if p["decision"] == CAPPED]
    assert capped and min(p["median_score"] for p in accepted) >= max(p["median_score"] for p in capped)
    assert (
        any("only 60 seeds given" in w for w in report["warnings"])
        and report["warnings"] == stats["rounds"][0]["warnings"]
    )
    text = (out / "rounds" / "1" / "proposals.md").read_text()
    assert f"| {LOW_SCORE} |" in text and f"| {CAPPED} |" in text and "Reference: the held-out seeds'" in text
    assert "**warning**: only 60 seeds given" in (out / "rounds" / "1" / "report.md").read_text()


def test_rank_by_quality_on_a_pool_with_quality_scores(spark, web, loop, tmp_path):
    """A pool whose quality_score column (written here: 4 for labelled math, 1 otherwise, 3 and 2.5 with the
    id's last hex digit ≥ 8) orders the collection under a token budget, and `--min-prefix-quality` 3.6 rejects
    the prefixes whose pages fall under it on average; asking for either on a pool without the column is a
    clear error."""

    out = tmp_path / "run"
    _copy_pool(loop[0], out)
    with pytest.raises(ValueError, match="need quality scores, and the pool has none"):
        iterate_corpus(spark, _config(web, out, rounds=1, rank_by="quality"))
    from pyspark.sql import functions as F

    pool = spark.read.parquet(str(out / "pool" / "data"))
    labels = spark.read.parquet(str(out / "pool" / "labels.parquet"))
    high = F.substring("id", -1, 1) >= "8"
    quality = F.when(F.col("label"), F.when(high, 3.0).otherwise(4.0)).when(high, 2.5).otherwise(1.0)
    with_quality = pool.join(labels, "id").withColumn("quality_score", quality.cast("float")).drop("label")
    with_quality.write.parquet(str(out / "pool" / "scored"))
    shutil.rmtree(out / "pool" / "data")
    (out / "pool" / "scored").rename(out / "pool" / "data")
    table = ds.dataset(out / "pool" / "data", format="parquet").to_table()
    (out / "iterate.json").unlink()  # the refused run recorded its settings: this one has others
    config = _config(web, out, rounds=1, rank_by="quality", token_budget=40_000, min_prefix_quality=3.6)
    iterate_corpus(spark, config)
    collection = _table(out / "rounds" / "1" / "collection.parquet")
    scores = {r["id"]: r["score"] for r in _table(out / "rounds" / "1" / "scores")}
    by_id = {r["id"]: r for r in table.to_pylist()}
    eligible = [r for r in table.to_pylist() if round(scores[r["id"]], 6) >= config.min_score]
    expected = collect([ScoredPage(r["id"], "", "", r["n_chars"], r["quality_score"]) for r in eligible], 0.0,
                       config.token_budget)  # fmt: skip
    assert [r["id"] for r in collection] == [p.id for p in expected] and expected
    assert [r["rank"] for r in collection] == sorted((r["rank"] for r in collection), reverse=True)
    assert all(by_id[r["id"]]["quality_score"] == r["quality_score"] for r in collection)
    ranked_by_math = collect([ScoredPage(r["id"], "", "", r["n_chars"], round(scores[r["id"]], 6)) for r in eligible],
                             0.0, config.token_budget)  # fmt: skip
    assert [p.id for p in ranked_by_math] != [p.id for p in expected]  # the order is the quality score's
    proposals = _proposals(out)
    assert all(p["mean_quality"] is not None for p in proposals.values())
    earlier_guards = {FEW_PAGES, LOW_SHARE, LOW_SCORE}
    poor = [p for p in proposals.values() if p["mean_quality"] < 3.6 and p["decision"] not in earlier_guards]
    print("prefixes under the quality bar:", [(p["key"], p["mean_quality"], p["decision"]) for p in poor])
    assert poor and all(p["decision"] == LOW_QUALITY for p in poor)
    assert all(p["mean_quality"] >= 3.6 for p in proposals.values() if p["accepted"])
