"""Spark job: add the WARC files a corpus has not seen yet, as a new snapshot.

    spark-submit jobs/refresh_corpus.py --corpus /data/corpus --crawl CC-MAIN-2024-10 --crawl-base s3://commoncrawl/
    mathforge corpus refresh --corpus DIR --input warc.paths.gz      # same job, Spark local[*] by default

Only inputs whose key (`crawl.inputs.input_key`) the manifest does not list are read; `--limit` and
`--shard` apply to those, so `--limit 100` adds at most 100 new files a run (a crawl caught up in steps). Their pages go through
the corpus's own settings (its manifest's config: route, keep rules, cleaning), are deduplicated against the
corpus's dedup index (an indexed document always survives: published snapshots never change; a recrawl of
an indexed URL stays only when its text is new, and never in a corpus built with `--url-dedup first`) and become
`data/snapshot=<run id>/` of the corpus's next version, committed with its manifest, index and reports by
one rename (`jobs.corpus_output`). Its stats and report read only the new snapshot's rows and merge them
with the previous version's stored summary (`jobs.corpus_summary`): they cost what is new, not the corpus.
A refresh killed at any point leaves the old version in place; run again, it reads only the files it had not
committed (`jobs.corpus_work`) and ends with exactly the rows an uninterrupted run gives. A refresh with
nothing new changes nothing. Inputs an earlier run quarantined (the manifest's `inputs_quarantined`: files that
brought their reader down `--max-file-attempts` times) are skipped, and stay listed, unless
`--retry-quarantined` gives them fresh attempts.
"""

from __future__ import annotations

if __name__ == "__main__" and __package__ in (None, ""):  # run as a script by spark-submit
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession

from crawl.inputs import input_key, take_part
from jobs.build_corpus import write_version
from jobs.config import CorpusBuildConfig, CorpusRefreshConfig, FileAttemptsConfig, WarcInputs
from jobs.corpus_output import INDEX_DIR, StagedOutput, render_stats_markdown
from jobs.corpus_pipeline import CorpusPipeline
from jobs.corpus_work import WorkArea
from jobs.spark import job_main

log = logging.getLogger("mathforge.refresh_corpus")


def build_config_for(recorded: dict[str, Any], refresh: CorpusRefreshConfig) -> CorpusBuildConfig:
    """The corpus's own build settings, with the refresh's inputs and file attempts, and the corpus's index
    to dedup against."""
    known = {f.name for f in dataclasses.fields(CorpusBuildConfig)}
    settings = {k: v for k, v in recorded.items() if k in known}
    for section in (WarcInputs, FileAttemptsConfig):
        settings.update({f: getattr(refresh, f) for f in section.__dataclass_fields__})
    index = str(Path(refresh.corpus) / INDEX_DIR)  # through the link: under the lock, the version read
    settings.update(output=refresh.corpus, master=refresh.master, overwrite=False, index=index)
    return CorpusBuildConfig(**settings)


def refresh_corpus(spark: SparkSession, config: CorpusRefreshConfig) -> dict[str, Any]:
    """Add the unseen inputs as a new snapshot; returns the stats of the new version (or of the current one,
    with `refresh` saying why nothing changed)."""
    wanted = config.named_locations()
    staged = StagedOutput(config.corpus, update=True)
    manifest_path = staged.readable_version() / "manifest.json"  # a lost link: the version it recovers to
    recorded = json.loads(manifest_path.read_text(encoding="utf-8"))["config"]
    pipeline = CorpusPipeline(build_config_for(recorded, config))  # models checked before the lock
    with staged:
        assert staged.base is not None  # update=True refuses a corpus without versions
        manifest = json.loads((staged.base / "manifest.json").read_text(encoding="utf-8"))
        seen = {input_key(location) for location in manifest.get("inputs", [])}
        held = {input_key(q["path"]) for q in manifest.get("inputs_quarantined", [])}
        skipped = set() if config.retry_quarantined else held
        unseen = [location for location in wanted if input_key(location) not in seen | skipped]
        new = take_part(unseen, config.limit, config.shard) if unseen else []
        quarantined = sum(input_key(location) in skipped for location in wanted)
        log.info(
            "refresh of %s: %d inputs named, %d not seen yet, %d read now, %d quarantined skipped%s",
            staged.final,
            len(wanted),
            len(unseen),
            len(new),
            quarantined,
            " (--retry-quarantined reads them again)" if quarantined else "",
        )
        if not new:
            staged.abandon()
            stats = json.loads((staged.base / "stats.json").read_text(encoding="utf-8"))
            why = f"nothing new: all {len(wanted)} inputs are in the corpus already"
            if quarantined:
                why = (
                    f"nothing new: {len(wanted) - quarantined} of {len(wanted)} inputs are in the corpus "
                    f"already, {quarantined} quarantined (--retry-quarantined reads them again)"
                )
            return {**stats, "refresh": why}
        stats = write_version(spark, pipeline, new, staged, history=manifest)
    WorkArea.remove(staged.final)  # committed: there is nothing left to resume
    return stats


def main(argv: list[str] | None = None) -> None:
    job_main(
        argv,
        prog="refresh_corpus.py",
        doc=__doc__,
        config_cls=CorpusRefreshConfig,
        job=refresh_corpus,
        render=render_stats_markdown,
    )


if __name__ == "__main__":
    main()
