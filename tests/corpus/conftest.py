"""Fixtures shared by the corpus tests: one build of the real Common Crawl sample for the whole session."""

from __future__ import annotations

from pathlib import Path

import pytest

CC = "commoncrawl/resiliparse_CC-MAIN-2020-34_sample.warc.gz"


@pytest.fixture(scope="session")
def cc_corpus(spark, shared_data, tmp_path_factory) -> tuple[Path, dict]:
    """The corpus job over the real CC sample (every language, no math bar): its directory and its stats.
    Built once; test_build_corpus.py checks its rows, test_report.py renders its report.html."""
    from jobs.build_corpus import build_corpus
    from jobs.config import CorpusBuildConfig

    out = tmp_path_factory.mktemp("cc") / "corpus"
    cfg = CorpusBuildConfig(
        input=str(shared_data / "warc" / CC), output=str(out), langs="all", min_math_score=0.0
    )
    return out, build_corpus(spark, cfg)
