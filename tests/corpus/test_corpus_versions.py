"""Corpus versions survive operator slips, kill -9 and power cuts (`jobs.corpus_output`, `jobs.corpus_writers`), tested on the real
filesystem without Spark: a version here is a folder with a few files, which is all the output layer sees.

Kills are real SIGKILLs (`MATHFORGE_CRASH_AT`) of a child process that commits a version; live and dead
writers are real processes. One end-to-end test runs the command line: `rm` of the link, then a refresh.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from jobs import corpus_writers
from jobs.corpus_output import CorpusRecoveryError, StagedOutput
from jobs.corpus_writers import (
    MARKER,
    OWNER,
    CorpusChangedError,
    CorpusLock,
    LockUnsupportedError,
    Owner,
    is_complete,
    read_marker,
)

REPO = Path(__file__).resolve().parents[2]
MATHFORGE = str(Path(sys.executable).parent / "mathforge")
# A writer in a child process: commits one version holding `data/part-0.txt` = argv[2].
WRITER = """
import sys
from jobs.corpus_output import StagedOutput
with StagedOutput(sys.argv[1], overwrite=True) as staging:
    (staging / "data").mkdir()
    (staging / "data" / "part-0.txt").write_text(sys.argv[2])
    (staging / "manifest.json").write_text("{}")
"""


def _commit(corpus: Path, text: str, **kwargs) -> StagedOutput:
    """One version whose data is `text`, committed in this process."""
    staged = StagedOutput(corpus, **{"overwrite": True, **kwargs})
    with staged as staging:
        (staging / "data").mkdir()
        (staging / "data" / "part-0.txt").write_text(text)
        (staging / "manifest.json").write_text("{}")
    return staged


def _data(corpus: Path) -> str:
    return (corpus / "data" / "part-0.txt").read_text()


def _versions(corpus: Path) -> list[str]:
    folder = corpus.with_name(f"{corpus.name}.versions")
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def _child(corpus: Path, text: str, crash_at: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "MATHFORGE_CRASH_AT": crash_at or ""}
    argv = [sys.executable, "-c", WRITER, str(corpus), text]
    return subprocess.run(argv, env=env, cwd=REPO, capture_output=True, text=True, timeout=60)


# ---------------------------------------------------------------- operator slips


def test_a_build_after_rm_of_the_link_keeps_the_earlier_version(tmp_path):
    corpus = tmp_path / "a"
    first = _commit(corpus, "one", overwrite=False)
    corpus.unlink()  # the slip: `rm corpora/a`
    second = _commit(corpus, "two", overwrite=False)  # no link: not "an existing corpus"
    assert _data(corpus) == "two" and "kept as the previous one" in second.recovered
    assert _versions(corpus) == [first.run_id, second.run_id]
    assert (first.versions / first.run_id / "data" / "part-0.txt").read_text() == "one"
    assert read_marker(corpus.resolve())["previous"] == first.run_id
    third = _commit(corpus, "three")  # a newer version is current: retention now lets the oldest go
    assert _versions(corpus) == [second.run_id, third.run_id]


def test_a_refresh_after_rm_of_the_link_restores_it_to_the_newest_complete_version(tmp_path):
    corpus = tmp_path / "a"
    _commit(corpus, "one")
    second = _commit(corpus, "two")
    corpus.unlink()
    staged = StagedOutput(corpus, update=True)
    assert (staged.readable_version() / "data" / "part-0.txt").read_text() == "two"  # read before the lock
    with staged:
        assert staged.base == second.versions / second.run_id
        staged.abandon()
    assert corpus.is_symlink() and _data(corpus) == "two"
    assert len(_versions(corpus)) == 2 and "restored the lost link" in staged.recovered


def test_a_link_to_a_deleted_version_is_refused_with_the_way_back_and_nothing_deleted(tmp_path):
    corpus = tmp_path / "a"
    first = _commit(corpus, "one")
    second = _commit(corpus, "two")
    shutil.rmtree(second.versions / second.run_id)  # the current version deleted by hand
    hint = rf"ln -sfn a\.versions/{first.run_id} a\. Nothing was"
    with pytest.raises(CorpusRecoveryError, match=hint), StagedOutput(corpus, update=True):
        pass
    assert _versions(corpus) == [first.run_id]


def test_without_a_provably_complete_version_a_refresh_refuses_and_deletes_nothing(tmp_path):
    corpus = tmp_path / "a"
    first = _commit(corpus, "one")
    version = first.versions / first.run_id
    (version / "data" / "part-0.txt").write_text("o")  # truncated, as by a power cut without fsync
    assert not is_complete(version)
    corpus.unlink()
    with pytest.raises(CorpusRecoveryError, match=r"no corpus link .* no version in .* is marked complete"):
        StagedOutput(corpus, update=True)
    assert _versions(corpus) == [first.run_id] and (version / "data" / "part-0.txt").exists()


def test_a_version_marker_lists_every_file_and_is_fsynced_last_before_the_swap(tmp_path, monkeypatch):
    """The durability order, from the real calls: each file, then the marker, then the folders' entries."""
    events: list[tuple[str, str]] = []
    real_fsync, real_rename, real_replace = os.fsync, os.rename, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def rename(src, dst, **kw):
        events.append(("rename", str(dst)))
        return real_rename(src, dst, **kw)

    def replace(src, dst, **kw):
        events.append(("replace", str(dst)))
        return real_replace(src, dst, **kw)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "rename", rename)
    monkeypatch.setattr(os, "replace", replace)
    corpus = tmp_path / "a"
    staged = _commit(corpus, "one")
    version = str(staged.versions / staged.run_id)
    staging = str(staged.staging)
    synced = [path for kind, path in events if kind == "fsync"]
    marker = synced.index(f"{staging}/.{MARKER}.tmp")  # written aside, fsynced, then renamed in place
    for name in ("data/part-0.txt", "manifest.json"):
        assert synced.index(f"{staging}/{name}") < marker
    assert synced.index(f"{staging}/data") < marker  # the folder's entries, too
    files = read_marker(Path(version))["files"]
    assert files.keys() == {"data/part-0.txt", "manifest.json", OWNER} and files["data/part-0.txt"] == 3
    into_versions = events.index(("rename", version))
    swap = events.index(("replace", str(corpus)))
    assert events.index(("replace", f"{staging}/{MARKER}")) < into_versions < swap
    last_dir_sync = len(events) - 1 - events[::-1].index(("fsync", staging))  # the marker's entry
    assert events.index(("fsync", f"{staging}/.{MARKER}.tmp")) < last_dir_sync < into_versions
    assert ("fsync", str(staged.versions)) in events[into_versions:swap]  # the rename made durable
    assert events[swap + 1] == ("fsync", str(tmp_path))  # and the link's rename


# ---------------------------------------------------------------- kill -9 at every step


@pytest.mark.parametrize("point", ["marked", "versioned", "swapped"])
def test_a_writer_killed_at_any_step_loses_nothing_and_the_next_run_finishes(tmp_path, point):
    corpus = tmp_path / "a"
    assert _child(corpus, "one").returncode == 0
    result = _child(corpus, "two", crash_at=point)
    assert result.returncode == -9, result.stderr[-2000:]
    assert _data(corpus) == ("two" if point == "swapped" else "one")
    assert _child(corpus, "three").returncode == 0
    assert _data(corpus) == "three"
    # what the killed run left is gone (its process is dead), and two versions remain: current + previous
    assert not list(tmp_path.glob("a.staging-*")) and not list(tmp_path.glob("a.link-*"))
    versions = _versions(corpus)
    assert len(versions) == 2 and all(is_complete(corpus.with_name("a.versions") / v) for v in versions)
    previous = read_marker(corpus.resolve())["previous"]
    assert previous == versions[0]
    expected = "two" if point == "swapped" else "one"
    assert (corpus.with_name("a.versions") / previous / "data" / "part-0.txt").read_text() == expected


@pytest.mark.parametrize("point", ["legacy-marked", "legacy-moved"])
def test_a_crash_while_migrating_a_plain_directory_loses_nothing(tmp_path, point):
    corpus = tmp_path / "a"
    (corpus / "data").mkdir(parents=True)  # a corpus written before versions existed
    (corpus / "data" / "part-0.txt").write_text("legacy")
    result = _child(corpus, "new", crash_at=point)
    assert result.returncode == -9, result.stderr[-2000:]
    if point == "legacy-marked":  # still the plain directory, now marked complete
        assert not corpus.is_symlink() and _data(corpus) == "legacy" and is_complete(corpus)
    else:  # no link now: the legacy data is a complete version, which a refresh links again
        assert not os.path.lexists(corpus)
        staged = StagedOutput(corpus, update=True)
        with staged:
            assert (staged.base / "data" / "part-0.txt").read_text() == "legacy"
            staged.abandon()
        assert _data(corpus) == "legacy"
    assert _child(corpus, "new").returncode == 0
    legacy = [v for v in _versions(corpus) if v.endswith("-legacy")]
    assert _data(corpus) == "new" and len(legacy) == 1  # kept as the previous version
    assert (corpus.with_name("a.versions") / legacy[0] / "data" / "part-0.txt").read_text() == "legacy"


# ---------------------------------------------------------------- staging folders of other runs


def _hold_staging(corpus: Path) -> subprocess.Popen:
    """A live writer: another process with its staging folder, waiting on stdin."""
    script = (
        "import sys; from pathlib import Path; from jobs.corpus_writers import make_staging; "
        f"make_staging(Path({str(corpus)!r} + '.staging-live'), 'live'); print('ready', flush=True); "
        "sys.stdin.read()"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO
    )
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_a_live_runs_staging_folder_is_left_alone_and_a_dead_ones_removed(tmp_path):
    corpus = tmp_path / "a"
    _commit(corpus, "one")
    live = _hold_staging(corpus)
    try:
        (tmp_path / "a.staging-live" / "part-0.txt").write_text("in progress")
        staged = _commit(corpus, "two")
        assert (tmp_path / "a.staging-live" / "part-0.txt").exists()
        assert any(f"pid {live.pid}" in line and "live run" in line for line in staged.left_alone)
    finally:
        live.stdin.close()
        live.wait(timeout=30)
    staged = _commit(corpus, "three")  # its process is gone now: provably dead
    assert not (tmp_path / "a.staging-live").exists() and str(tmp_path / "a.staging-live") in staged.cleaned


def test_a_reused_pid_does_not_keep_a_dead_runs_staging_folder(tmp_path):
    corpus = tmp_path / "a"
    folder = tmp_path / "a.staging-reused"
    folder.mkdir()
    me = Owner.this_process("old-run")
    # the pid of a live process (ours' parent), but another process start: the run that wrote it is gone
    parent = corpus_writers._process_start(os.getppid())
    Owner(**{**me.__dict__, "pid": os.getppid(), "start_ticks": parent - 1}).write(folder / OWNER)
    assert _commit(corpus, "one").cleaned == [str(folder)]
    assert not folder.exists()


def test_another_hosts_staging_folder_is_kept_until_it_is_stale(tmp_path):
    corpus = tmp_path / "a"
    folder = tmp_path / "a.staging-remote"
    (folder / "data").mkdir(parents=True)
    me = Owner.this_process("remote-run")
    Owner(**{**me.__dict__, "host": "another-" + socket.gethostname()}).write(folder / OWNER)
    orphan = tmp_path / "a.staging-unowned"  # no owner record (an older mathforge's): also unprovable
    orphan.mkdir()
    staged = _commit(corpus, "one", stale_hours=1)
    assert folder.exists() and orphan.exists()
    assert sum("another host or unknown" in line for line in staged.left_alone) == 2
    old = time.time() - 2 * 3600  # nothing changed under them for two hours
    for path in (folder / "data", folder / OWNER, folder, orphan):
        os.utime(path, (old, old))
    staged = _commit(corpus, "two", stale_hours=1)
    assert not folder.exists() and not orphan.exists() and not staged.left_alone


def test_this_processs_own_finished_staging_folder_is_dead_once_its_run_is_over(tmp_path):
    corpus = tmp_path / "a"
    with pytest.raises(RuntimeError, match="boom"), StagedOutput(corpus) as staging:
        (staging / "x").write_text("half")
        raise RuntimeError("boom")
    assert not list(tmp_path.glob("a.staging-*"))  # an exception cleans its own folder
    folder = corpus_writers.make_staging(tmp_path / "a.staging-mine", "mine")
    kept = _commit(corpus, "one")
    assert folder.exists() and any("live run" in line for line in kept.left_alone)  # still active here
    corpus_writers.run_over("mine")
    assert str(folder) in _commit(corpus, "two").cleaned


# ---------------------------------------------------------------- the lock


def test_a_filesystem_without_flock_is_named_in_a_clear_error(tmp_path, monkeypatch):
    def no_flock(fd, operation):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_flock)  # what NFS without a lock manager answers
    corpus = tmp_path / "a"
    unsupported = r"cannot lock .*a\.lock: flock is not supported on \S+ .*NFSv4"
    with pytest.raises(LockUnsupportedError, match=unsupported), StagedOutput(corpus):
        pass
    assert not list(tmp_path.glob("a.staging-*")) and not os.path.lexists(corpus)
    # any other OSError is not misread as "unsupported"
    monkeypatch.setattr(fcntl, "flock", lambda fd, op: (_ for _ in ()).throw(OSError(errno.EIO, "EIO")))
    with pytest.raises(OSError) as info:
        CorpusLock(corpus).acquire("x")
    assert not isinstance(info.value, LockUnsupportedError)


def test_the_lock_record_names_the_holder_and_is_emptied_on_release(tmp_path):
    lock = CorpusLock(tmp_path / "a")
    lock.acquire("run-1")
    holder = json.loads(lock.path.read_text())
    assert holder["run_id"] == "run-1" and holder["pid"] == os.getpid() and holder["start_ticks"]
    lock.release()
    assert lock.path.read_text() == ""
    lock.path.write_text('{"run_id": "ghost", "host": "elsewhere"}')  # a holder that never released it
    again = CorpusLock(tmp_path / "a")
    again.acquire("run-2")
    assert "ghost" in again.previous_holder
    again.release()


def test_a_link_moved_by_another_writer_during_the_run_is_not_overwritten(tmp_path):
    """Where flock is node-local, a writer on another machine may commit while this run holds the lock."""
    corpus = tmp_path / "a"
    _commit(corpus, "one")
    other = _commit(corpus, "two")
    staged = StagedOutput(corpus, overwrite=True)
    changed = "does not exclude writers on other machines"
    with pytest.raises(CorpusChangedError, match=changed), staged as staging:
        (staging / "data").mkdir()
        (staging / "data" / "part-0.txt").write_text("three")
        first = sorted(_versions(corpus))[0]  # the other machine swaps the link to another version
        os.symlink(f"a.versions/{first}", tmp_path / "tmp-link")
        os.replace(tmp_path / "tmp-link", corpus)
    assert _data(corpus) == "one"  # its commit stands
    assert staged.run_id in _versions(corpus) and other.run_id in _versions(corpus)  # nothing deleted


# ---------------------------------------------------------------- the command line, end to end


@pytest.mark.spark
@pytest.mark.slow
def test_cli_rm_of_the_link_then_refresh_recovers_and_keeps_every_row(tmp_path):
    from samplecrawl.writer import write_sample_crawl

    paths = write_sample_crawl(tmp_path / "crawl", n_files=2, records_per_file=8, seed=5)
    corpus = tmp_path / "corpus"
    common = ["--master", "local[1]"]
    build = [MATHFORGE, "corpus", "build", "--input", str(paths), "--output", str(corpus), "--limit", "1",
             "--langs", "all", "--min-math-score", "0", "--decontaminate", "false", *common]  # fmt: skip
    result = subprocess.run(build, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    first = {
        r["id"] for r in ds.dataset(corpus / "data", format="parquet").to_table(columns=["id"]).to_pylist()
    }
    first_version = corpus.resolve()
    corpus.unlink()  # the slip
    refresh = [MATHFORGE, "corpus", "refresh", "--corpus", str(corpus), "--input", str(paths), *common]
    result = subprocess.run(refresh, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {
        r["id"] for r in ds.dataset(corpus / "data", format="parquet").to_table(columns=["id"]).to_pylist()
    }
    assert first and first < rows  # every row of the first build, plus the second file's
    assert first_version.is_dir() and is_complete(first_version)  # kept as the previous version
    stats = json.loads((corpus / "stats.json").read_text())
    assert "restored the lost link" in stats["recovered"]
