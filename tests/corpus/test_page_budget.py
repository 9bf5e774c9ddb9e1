"""The per-page time budget in the corpus job: an over-budget page is counted and skipped, its task goes on.

The hostile page is 100,000 TeX scripts (~4 s of work on this machine without a budget); the ordinary pages
around it take a few milliseconds each, so a 0.5 s budget separates them with a wide margin either way.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from bench.hostile_pages import math_scripts, ordinary_page
from crawl.deadline import Deadline, PageTimeout
from jobs.build_corpus import build_corpus
from jobs.config import CorpusBuildConfig
from jobs.corpus_pipeline import CorpusPipeline, PageAnalyser

from .warcs import write_html_warc

BUDGET = 0.5
ORDINARY = [(f"https://ok.example/{i}", ordinary_page(i)) for i in range(4)]


@pytest.fixture(scope="module")
def hostile_warc(tmp_path_factory) -> Path:
    """Two ordinary pages, the hostile one, two more: the pages after it must still be read."""
    pages = [*ORDINARY[:2], ("https://hostile.example/scripts", math_scripts(100_000)), *ORDINARY[2:]]
    return write_html_warc(tmp_path_factory.mktemp("hostile") / "hostile.warc.gz", pages)


def test_analyse_html_stops_at_a_passed_deadline():
    passed = Deadline(time.monotonic() - 1)
    with pytest.raises(PageTimeout):
        PageAnalyser().analyse_html(math_scripts(10).encode(), "text/html; charset=utf-8", None, passed)


def test_the_task_loop_counts_the_over_budget_page_and_goes_on(hostile_warc):
    config = CorpusBuildConfig(
        input=str(hostile_warc), output="-", min_math_score=0.0, page_time_budget=BUDGET
    )
    counters: Counter = Counter()
    rows = list(CorpusPipeline(config).process_file(str(hostile_warc), counters))
    assert counters["error:page_timeout"] == 1 and "error:page_failed" not in counters
    assert sorted(row[1] for row in rows) == [url for url, _ in ORDINARY]


@pytest.mark.spark
def test_job_counts_the_over_budget_page_and_keeps_the_others(spark, hostile_warc, tmp_path):
    out = tmp_path / "corpus"
    config = CorpusBuildConfig(
        input=str(hostile_warc),
        output=str(out),
        min_math_score=0.0,
        page_time_budget=BUDGET,
        near_dedup=False,
    )
    stats = build_corpus(spark, config)
    assert stats["counters"]["error:page_timeout"] == 1 and stats["counters"]["html_responses"] == 5
    assert stats["per_file"][0]["errors"] == {"page_timeout": 1}
    rows = ds.dataset(out / "data", format="parquet").to_table(columns=["url"]).to_pylist()
    assert sorted(r["url"] for r in rows) == [url for url, _ in ORDINARY]
    assert "error:page_timeout | 1" in (out / "STATS.md").read_text()
