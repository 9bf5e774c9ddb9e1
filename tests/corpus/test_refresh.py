"""`corpus refresh`: a build on part of a crawl plus a refresh with the rest equals one build over all of it;
a refresh killed (SIGKILL) at any point and run again ends with the same rows; a concurrent one is refused.

The crawl is the generated sample crawl laid out as a Common Crawl mirror (`crawl-data/<id>/warc.paths.gz`
with keys relative to the mirror's root), so the builds also exercise `--crawl`, `--crawl-base` and `--limit`.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from jobs.build_corpus import build_corpus
from jobs.config import CorpusBuildConfig, CorpusRefreshConfig
from jobs.corpus_summary import (
    DOMAINS_DIR,
    REPORT_DOMAINS,
    REPORT_SAMPLES,
    SUMMARY_FILE,
    read_summary,
    summarise_corpus,
    summarise_version,
)
from jobs.corpus_writers import CorpusLockedError
from jobs.refresh_corpus import refresh_corpus
from samplecrawl.writer import write_sample_crawl

pytestmark = pytest.mark.spark

CRAWL = "CC-MAIN-2099-01"
SETTINGS = {"langs": "all", "min_math_score": 0.0, "decontaminate": False, "master": "local[1]"}
MATHFORGE = str(Path(sys.executable).parent / "mathforge")


@pytest.fixture(scope="module")
def mirror(tmp_path_factory) -> Path:
    """Four sample WARC files under `<mirror>/crawl-data/CC-MAIN-2099-01/`, listed by its warc.paths.gz."""
    root = tmp_path_factory.mktemp("mirror")
    paths_file = write_sample_crawl(root / "sample", n_files=4, records_per_file=25, seed=11)
    keys = []
    for name in paths_file.read_text().split():
        key = f"crawl-data/{CRAWL}/segments/0/warc/{name}"
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(paths_file.parent / name, root / key)
        keys.append(key)
    with gzip.open(root / "crawl-data" / CRAWL / "warc.paths.gz", "wt") as fh:
        fh.write("\n".join(keys) + "\n")
    return root


def _rows(corpus: Path) -> dict[str, dict]:
    return {r["id"]: r for r in ds.dataset(corpus / "data", format="parquet").to_table().to_pylist()}


def _removed(corpus: Path) -> dict[str, dict]:
    return {r["id"]: r for r in ds.dataset(corpus / "removed", format="parquet").to_table().to_pylist()}


def _build(spark, mirror: Path, out: Path, limit: int | None = None) -> dict:
    cfg = CorpusBuildConfig(crawl=CRAWL, crawl_base=str(mirror), limit=limit, output=str(out), **SETTINGS)
    return build_corpus(spark, cfg)


def _refresh_config(mirror: Path, corpus: Path) -> CorpusRefreshConfig:
    return CorpusRefreshConfig(corpus=str(corpus), crawl=CRAWL, crawl_base=str(mirror), master="local[1]")


@pytest.fixture(scope="module")
def corpora(spark, mirror, tmp_path_factory) -> dict[str, Path]:
    """`full`: one build over the four files; `part`: a build over the first two (kept untouched, copied by
    the tests that refresh it); `refreshed`: `part` copied, then refreshed with the whole crawl."""
    root = tmp_path_factory.mktemp("corpora")
    _build(spark, mirror, root / "full")
    _build(spark, mirror, root / "part", limit=2)
    refreshed = _copy_corpus(root / "part", root / "refreshed")
    stats = refresh_corpus(spark, _refresh_config(mirror, refreshed))
    return {"full": root / "full", "part": root / "part", "refreshed": refreshed, "stats": stats}


def _copy_corpus(corpus: Path, dest: Path) -> Path:
    """A corpus is its link and its versions folder; copy both (the link is relative)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(corpus.with_name(f"{corpus.name}.versions"), dest.with_name(f"{dest.name}.versions"))
    os.symlink(f"{dest.name}.versions/{Path(os.readlink(corpus)).name}", dest)
    return dest


def test_part_then_refresh_equals_one_build_over_everything(corpora):
    full, refreshed, stats = corpora["full"], corpora["refreshed"], corpora["stats"]
    assert stats["inputs"]["total"] == 2  # the two files the first build read were not read again
    full_rows, inc_rows = _rows(full), _rows(refreshed)
    assert len(inc_rows) == len(full_rows) > 0
    # The same documents, up to which of two duplicates survives: an indexed (published) document always
    # does. Every document only one side kept was removed by the other as a duplicate of one it kept.
    for kept, other, other_rows in ((full_rows, refreshed, inc_rows), (inc_rows, full, full_rows)):
        removed = _removed(other)
        for doc_id in kept.keys() - other_rows.keys():
            assert removed[doc_id]["step"] in ("exact", "near") and removed[doc_id]["kept_id"] in other_rows
    for doc_id in full_rows.keys() & inc_rows.keys():  # and a document both kept is the same row
        assert full_rows[doc_id] == inc_rows[doc_id]
    assert stats["kept"] == len(inc_rows) and stats["added"] == len(inc_rows) - len(_rows(corpora["part"]))


def test_refresh_adds_a_snapshot_and_records_the_run(corpora):
    refreshed, part = corpora["refreshed"], corpora["part"]
    snapshots = sorted(p.name for p in (refreshed / "data").iterdir())
    first = sorted(p.name for p in (part / "data").iterdir())
    assert len(snapshots) == 2 and first[0] in snapshots  # the first build's snapshot is kept as it was
    manifest = json.loads((refreshed / "manifest.json").read_text())
    assert [run["kind"] for run in manifest["runs"]] == ["build", "refresh"]
    assert len(manifest["inputs"]) == 4 and len({Path(p).name for p in manifest["inputs"]}) == 4
    assert manifest["config"]["limit"] == 2  # the build's own settings, which the refresh reused
    # the index covers both snapshots: exact keys and signatures of every kept document
    index = ds.dataset(refreshed / "dedup_index" / "exact", format="parquet").to_table().column("id")
    assert set(index.to_pylist()) == set(_rows(refreshed))
    assert "Refresh history" in (refreshed / "report.html").read_text()


def test_a_second_refresh_with_nothing_new_changes_nothing(spark, mirror, corpora, tmp_path):
    corpus = _copy_corpus(corpora["refreshed"], tmp_path / "again")
    before = os.readlink(corpus)
    stats = refresh_corpus(spark, _refresh_config(mirror, corpus))
    assert stats["refresh"].startswith("nothing new: all 4 inputs")
    assert os.readlink(corpus) == before
    assert not list(tmp_path.glob("again.staging-*"))


def _refresh_process(mirror: Path, corpus: Path, crash_at: str) -> subprocess.CompletedProcess:
    argv = [
        MATHFORGE, "corpus", "refresh", "--corpus", str(corpus), "--crawl", CRAWL,
        "--crawl-base", str(mirror), "--master", "local[1]",
    ]  # fmt: skip
    env = {**os.environ, "MATHFORGE_CRASH_AT": crash_at}
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_a_refresh_killed_at_any_point_and_run_again_gives_the_same_rows(spark, mirror, corpora, tmp_path):
    reference = _rows(corpora["refreshed"])
    part_rows = _rows(corpora["part"])
    corpus = _copy_corpus(corpora["part"], tmp_path / "killed")
    for point in ("extracted", "versioned"):  # before the link swap: the corpus is still the old version
        result = _refresh_process(mirror, corpus, point)
        assert result.returncode == -9, result.stderr[-2000:]
        assert _rows(corpus) == part_rows
    # the second killed run removed the first one's staging folder (its process is dead), and left a
    # complete version it never linked: newer than the current one, so kept until a newer one is current
    orphans = [p for p in (tmp_path / "killed.versions").iterdir() if p != corpus.resolve()]
    assert len(orphans) == 1 and not list(tmp_path.glob("killed.staging-*"))
    stats = refresh_corpus(spark, _refresh_config(mirror, corpus))
    assert stats["cleaned_up"] == []
    assert not orphans[0].exists()  # the new version is current: retention let the unlinked one go
    assert len(list((tmp_path / "killed.versions").iterdir())) == 2  # the current and the previous one
    assert not any(".staging-" in p.name or ".link-" in p.name for p in tmp_path.iterdir())
    assert _rows(corpus) == reference

    swapped = _copy_corpus(corpora["part"], tmp_path / "swapped")  # killed after the swap: already done
    result = _refresh_process(mirror, swapped, "swapped")
    assert result.returncode == -9, result.stderr[-2000:]
    assert _rows(swapped) == reference
    assert refresh_corpus(spark, _refresh_config(mirror, swapped))["refresh"].startswith("nothing new")
    assert len(list((tmp_path / "swapped.versions").iterdir())) == 2  # the current and the previous one


def test_a_concurrent_refresh_is_refused(spark, mirror, corpora, tmp_path):
    corpus = _copy_corpus(corpora["part"], tmp_path / "busy")
    holder = subprocess.Popen(  # another process holding the corpus's lock, as a running refresh does
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from jobs.corpus_writers import CorpusLock; "
            f"CorpusLock(Path({str(corpus)!r})).acquire('other-run'); print('held', flush=True); "
            "sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(CorpusLockedError, match=rf"busy is being written by another run .*{holder.pid}"):
            refresh_corpus(spark, _refresh_config(mirror, corpus))
        assert _rows(corpus) == _rows(corpora["part"])
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    # the lock is the kernel's: once its holder has exited, the refresh goes ahead; --limit counts new files
    config = _refresh_config(mirror, corpus)
    config.limit = 1
    assert refresh_corpus(spark, config)["inputs"]["total"] == 1
    assert len(json.loads((corpus / "manifest.json").read_text())["inputs"]) == 3


def _summary(stats: dict) -> dict:
    """The figures of stats.json that describe the whole corpus (what `summarise_corpus` returns)."""
    return {k: stats[k] for k in SUMMARY_KEYS}


SUMMARY_KEYS = (
    "kept", "kept_chars", "snapshots", "by_lang", "math_score_histogram", "top_domains", "top_domains_math_by",
    "samples", "quality_histogram", "quality_unscored", "quality_samples",
)  # fmt: skip


def test_the_refresh_merged_summary_equals_a_full_scan_of_the_corpus(spark, corpora):
    refreshed, stats = corpora["refreshed"], corpora["stats"]
    full = summarise_corpus(spark, refreshed / "data")
    assert set(full) == set(SUMMARY_KEYS)
    assert _summary(stats) == full  # exact: every figure is a sum over snapshots, nothing approximated
    on_disk = json.loads((refreshed / "stats.json").read_text())
    assert _summary(on_disk) == json.loads(json.dumps(full))
    earlier = json.loads((corpora["part"] / "stats.json").read_text())["snapshots"]
    assert len(earlier) == 1 and stats["snapshots"] == sorted([*earlier, stats["snapshot"]])
    assert stats["summary_scanned"] == [stats["snapshot"]]  # the new rows only
    assert full["top_domains"] and len(full["samples"]) == min(REPORT_SAMPLES, full["kept"])


def test_a_refresh_takes_the_earlier_snapshots_figures_from_the_stored_summary(
    spark, mirror, corpora, tmp_path
):
    """Were the earlier snapshot scanned again, the figures planted in its stored summary would be lost."""
    corpus = _copy_corpus(corpora["part"], tmp_path / "planted")
    summary_file = corpus / SUMMARY_FILE
    state = json.loads(summary_file.read_text())
    state["kept"] += 1000
    state["by_lang"]["planted"] = 1000
    summary_file.write_text(json.dumps(state))
    planted = pa.table(
        {
            "domain": ["planted.example"],
            "documents": pa.array([10**6], pa.int64()),
            "math": pa.array([7], pa.int64()),
        }
    )
    pq.write_table(planted, corpus / DOMAINS_DIR / "part-planted.parquet")
    stats = refresh_corpus(spark, _refresh_config(mirror, corpus))
    reference = _summary(corpora["stats"])
    assert stats["summary_scanned"] == [stats["snapshot"]]
    assert stats["kept"] == reference["kept"] + 1000 and stats["by_lang"]["planted"] == 1000
    assert stats["top_domains"][0] == {"domain": "planted.example", "documents": 10**6, "math": 7}
    assert stats["top_domains"][1:] == reference["top_domains"][: REPORT_DOMAINS - 1]
    for key in ("kept_chars", "math_score_histogram", "samples", "top_domains_math_by"):
        assert stats[key] == reference[key], key
    assert len(_rows(corpus)) == reference["kept"]  # the rows themselves are those of the plain refresh


def test_a_corpus_without_a_stored_summary_is_scanned_whole_once_then_merged(spark, corpora, tmp_path):
    corpus = _copy_corpus(corpora["refreshed"], tmp_path / "legacy")
    current = corpus.resolve()
    previous = next(p for p in current.parent.iterdir() if p != current)
    for version in (previous, current):  # as written before summaries were stored
        (version / SUMMARY_FILE).unlink()
        shutil.rmtree(version / DOMAINS_DIR)
    new = corpora["stats"]["snapshot"]
    summary = summarise_version(spark, current, new, base=previous)
    assert summary.pop("summary_scanned") == sorted(summary["snapshots"]) and len(summary["snapshots"]) == 2
    assert summary == summarise_corpus(spark, corpus / "data")
    assert read_summary(current) is not None  # stored: the next refresh merges with it
