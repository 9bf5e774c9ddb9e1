"""The corpus job's per-file path without Spark: every kept page's text is main content in every keep mode
(issue 11, item 2), and rows are built by column name."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from crawl.inputs import resolve_inputs
from crawl.warc import read_html_responses
from jobs.config import CorpusBuildConfig
from jobs.corpus_pipeline import CorpusPipeline, PageAnalyser
from jobs.corpus_schema import COLUMN_NAMES, row_from
from samplecrawl.text import UI
from samplecrawl.writer import write_sample_crawl

# Site chrome the sample crawl puts around every article (cookie banner, footer, login link, newsletter).
CHROME = tuple(UI[lang][key] for lang in UI for key in ("cookie", "privacy", "terms", "subscribe", "rights"))


@pytest.fixture(scope="module")
def sample_warc(tmp_path_factory) -> str:
    paths = write_sample_crawl(tmp_path_factory.mktemp("sample"), n_files=1, records_per_file=40, seed=3)
    return resolve_inputs(str(paths))[0]


def _chrome_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if any(chrome in line for chrome in CHROME)]


def test_keeping_every_page_keeps_no_site_chrome(sample_warc):
    counters: Counter = Counter()
    config = CorpusBuildConfig(input=sample_warc, output="-", min_math_score=0.0)
    rows = [
        dict(zip(COLUMN_NAMES, row, strict=True))
        for row in CorpusPipeline(config).process_file(sample_warc, counters)
    ]
    assert len(rows) == counters["kept"] == counters["html_responses"] > 20
    assert {row["extractor"] for row in rows} <= {"trafilatura", "resiliparse", "whole_page"}
    assert not {row["url"]: _chrome_lines(row["text"]) for row in rows if _chrome_lines(row["text"])}

    # the premise: in the default mode most of these pages skip math extraction, and their fast text, which
    # `--min-math-score 0` used to keep, is full of chrome
    analyser = PageAnalyser()
    default = [
        analyser.analyse_html(r.body, r.content_type, r.url)
        for r in read_html_responses(sample_warc, Counter())
    ]
    skipped = [page for page in default if not page.math_extracted]
    assert len(skipped) > len(rows) / 2 and all(_chrome_lines(page.text) for page in skipped)


def test_rows_are_built_by_column_name():
    values = {name: i for i, name in enumerate(COLUMN_NAMES)}
    assert row_from(values) == tuple(range(len(COLUMN_NAMES)))
    with pytest.raises(ValueError, match=r"missing \['text'\], unknown \['txt'\]"):
        row_from({**{k: v for k, v in values.items() if k != "text"}, "txt": 0})


def test_a_job_row_holds_each_value_under_its_column(shared_data: Path):
    warc = str(shared_data / "warc" / "commoncrawl" / "resiliparse_CC-MAIN-2020-34_sample.warc.gz")
    config = CorpusBuildConfig(input=warc, output="-", min_math_score=0.0)
    row = dict(zip(COLUMN_NAMES, next(CorpusPipeline(config).process_file(warc, Counter())), strict=True))
    assert row["url"].startswith("http") and row["domain"] in row["url"] and row["crawl"] == "CC-MAIN-2020-34"
    assert row["n_chars"] == len(row["text"]) > 0 and row["warc_path"] == warc
    assert isinstance(row["is_math"], bool) and 0 <= row["math_score"] <= 1 and 0 < row["lang_score"] <= 1
