"""Resume at file granularity and quarantine (`jobs/corpus_work.py`): a build killed (SIGKILL) after two of
four files were committed reads only the other two when run again and ends with the rows of a clean build; a
file that kills the process reading it every time is quarantined after `--max-file-attempts`, the build
finishes with the other files' rows, and a refresh skips it until `--retry-quarantined` reads it again.

The crawl is the generated sample crawl (four distinct files); dedup is off so that "the same rows" is an
exact comparison of row sets. Crashes are real: the reading process or the driver SIGKILLs itself at the
point `MATHFORGE_CRASH_ON_FILE` / `MATHFORGE_CRASH_AT=files:K` names.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from jobs.build_corpus import build_corpus
from jobs.config import CorpusBuildConfig, CorpusRefreshConfig
from jobs.corpus_work import (
    CRASH_ON_FILE_ENV,
    FileAttempts,
    WorkArea,
    process_input,
    run_isolated,
    work_root,
)
from jobs.refresh_corpus import refresh_corpus
from samplecrawl.writer import write_sample_crawl

SETTINGS = {
    "langs": "all",
    "min_math_score": 0.0,
    "decontaminate": False,
    "exact_dedup": False,
    "near_dedup": False,
}
MATHFORGE = str(Path(sys.executable).parent / "mathforge")


def _rows(corpus: Path) -> dict[str, dict]:
    return {r["id"]: r for r in ds.dataset(corpus / "data", format="parquet").to_table().to_pylist()}


def _name(path: str) -> str:
    return Path(path).name


# ---------------------------------------------------------------- one file, no Spark


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _raise() -> None:
    raise ValueError("boom")


def _hang() -> None:
    time.sleep(60)  # the fault under test: a reader that never ends; the time limit kills it


def test_an_isolated_reader_reports_how_it_ended():
    assert run_isolated(lambda: None, None) is None
    assert "SIGKILL" in run_isolated(_die, None)
    assert run_isolated(_raise, None) == "raised ValueError: boom"
    assert "time limit of 0.5 s" in run_isolated(_hang, 0.5)


def _reader(flag: Path):
    """A file reader that kills its process while `flag` exists, else yields one row."""

    def read(location: str, counters: Counter):
        if flag.exists():
            _die()
        counters["records"] += 1
        from jobs.corpus_schema import COLUMN_NAMES

        yield tuple(location if name == "id" else None for name in COLUMN_NAMES)

    return read


def _summary(path: str, counters: Counter, seconds: float) -> dict:
    return {"path": path, "errors": {}, "records": counters["records"]}


def test_attempts_count_across_tasks_and_a_file_is_quarantined_at_the_limit(tmp_path):
    area = WorkArea.open(tmp_path / "corpus", {"base": None})
    flag = tmp_path / "crash"
    flag.touch()
    # a worker lost while reading (no outcome recorded) counts as an attempt
    area.slot("a.warc.gz").start_attempt()
    record = process_input(area, "a.warc.gz", _reader(flag), _summary, FileAttempts(max_attempts=3))
    assert record["status"] == "quarantined" and record["attempts"] == 3
    assert "worker reading it was lost" in record["reason"] and "died of SIGKILL" in record["reason"]
    assert record["reason"].startswith("3 attempts failed") and "(x2)" in record["reason"]
    # the next run quarantines it without reading it; with fresh attempts and no crash it commits
    again = process_input(area, "a.warc.gz", _reader(flag), _summary, FileAttempts(max_attempts=3))
    assert again["status"] == "quarantined" and again["attempts"] == 3
    flag.unlink()
    area.slot("a.warc.gz").forget_failures()
    done = process_input(area, "a.warc.gz", _reader(flag), _summary, FileAttempts(max_attempts=3))
    assert done["status"] == "read" and done["rows"] == 1 and done["counters"] == {"records": 1}
    assert process_input(area, "a.warc.gz", _reader(flag), _summary, FileAttempts())["status"] == "resumed"
    rows = ds.dataset(area.slot("a.warc.gz").path / done["rows_file"]).to_table().column("id").to_pylist()
    assert rows == ["a.warc.gz"]


# ---------------------------------------------------------------- the Spark job


@pytest.fixture(scope="module")
def crawl(tmp_path_factory) -> tuple[Path, list[str]]:
    """Four sample WARC files and the paths file naming them (sorted: the order local[1] reads them)."""
    paths = write_sample_crawl(tmp_path_factory.mktemp("crawl"), n_files=4, records_per_file=10, seed=13)
    names = sorted(paths.read_text().split())
    return paths, [str(paths.parent / n) for n in names]


def _config(paths: Path, out: Path, **extra) -> CorpusBuildConfig:
    return CorpusBuildConfig(input=str(paths), output=str(out), **SETTINGS, **extra)


@pytest.fixture(scope="module")
def clean(spark, crawl, tmp_path_factory) -> tuple[dict[str, dict], dict]:
    """An uninterrupted build over the four files: its rows and stats."""
    out = tmp_path_factory.mktemp("clean") / "corpus"
    stats = build_corpus(spark, _config(crawl[0], out))
    assert stats["inputs"]["resumed"] == 0 and stats["inputs"]["read"] == 4
    return _rows(out), stats


@pytest.mark.spark
@pytest.mark.slow
def test_a_build_killed_after_two_files_reads_only_the_other_two_when_run_again(
    spark, crawl, clean, tmp_path, caplog
):
    paths, files = crawl
    out = tmp_path / "corpus"
    argv = [
        MATHFORGE, "corpus", "build", "--input", str(paths), "--output", str(out), "--master", "local[1]",
        "--langs", "all", "--min-math-score", "0", "--decontaminate", "false", "--exact-dedup", "false",
        "--near-dedup", "false",
    ]  # fmt: skip
    env = {**os.environ, "MATHFORGE_CRASH_AT": "files:2"}
    killed = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert not os.path.lexists(out)  # nothing was committed as a version
    (area,) = work_root(out).iterdir()
    markers = [json.loads(p.read_text()) for p in area.glob("files/*/done.json")]
    committed = {_name(m["summary"]["path"]) for m in markers}
    assert committed == {_name(f) for f in files[:2]}  # local[1] reads them in order

    with caplog.at_level(logging.INFO, logger="mathforge.build_corpus"):
        stats = build_corpus(spark, _config(paths, out))
    assert "skipped 2 of 4 files already committed" in caplog.text
    assert (stats["inputs"]["read"], stats["inputs"]["resumed"]) == (2, 2)
    assert {_name(f["path"]): f["resumed"] for f in stats["per_file"]} == {
        _name(f): _name(f) in committed for f in files
    }
    clean_rows, clean_stats = clean
    assert _rows(out) == clean_rows  # the same rows as the uninterrupted build
    assert stats["counters"] == clean_stats["counters"]  # every file counted once, resumed or read
    assert "resumed: 2 files" in (out / "STATS.md").read_text()
    assert not work_root(out).exists()  # committed: the work area is gone


@pytest.fixture(scope="module")
def quarantined(spark, crawl, tmp_path_factory) -> tuple[Path, dict]:
    """A build over the first three files whose second file kills its reader every time (two attempts)."""
    paths, files = crawl
    out = tmp_path_factory.mktemp("quarantine") / "corpus"
    os.environ[CRASH_ON_FILE_ENV] = _name(files[1])
    try:
        stats = build_corpus(spark, _config(paths, out, limit=3, max_file_attempts=2))
    finally:
        del os.environ[CRASH_ON_FILE_ENV]
    return out, stats


@pytest.mark.spark
def test_a_file_that_kills_its_reader_is_quarantined_and_the_build_finishes(crawl, clean, quarantined):
    _, files = crawl
    out, stats = quarantined
    (entry,) = stats["inputs"]["quarantined"]
    assert entry["path"] == files[1] and entry["attempts"] == 2 and "died of SIGKILL" in entry["reason"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["inputs_quarantined"] == [entry]
    assert sorted(manifest["inputs"]) == [files[0], files[2]]  # not "seen": a refresh may retry it
    expected = {i: r for i, r in clean[0].items() if r["warc_path"] in (files[0], files[2])}
    assert _rows(out) == expected and expected
    assert f"`{files[1]}` after 2 attempts" in (out / "STATS.md").read_text()
    assert "Quarantined inputs" in (out / "report.html").read_text()


@pytest.mark.spark
def test_a_refresh_skips_quarantined_files_until_asked_to_retry_them(spark, crawl, clean, quarantined):
    paths, files = crawl
    out, _ = quarantined
    refresh = CorpusRefreshConfig(corpus=str(out), input=str(paths))
    stats = refresh_corpus(spark, refresh)  # reads the fourth file, not the quarantined second one
    assert [_name(f["path"]) for f in stats["per_file"]] == [_name(files[3])]
    manifest = json.loads((out / "manifest.json").read_text())
    assert [q["path"] for q in manifest["inputs_quarantined"]] == [files[1]]  # still listed
    assert refresh_corpus(spark, refresh)["refresh"].startswith("nothing new: 3 of 4 inputs")

    refresh.retry_quarantined = True
    stats = refresh_corpus(spark, refresh)  # the fault is gone: the file is read and its rows appear
    assert [_name(f["path"]) for f in stats["per_file"]] == [_name(files[1])]
    assert stats["inputs"]["quarantined"] == []
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["inputs_quarantined"] == [] and sorted(manifest["inputs"]) == files
    assert _rows(out) == clean[0]
    assert not work_root(out).exists()
