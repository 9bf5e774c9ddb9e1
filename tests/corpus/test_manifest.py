"""The manifest's versions cover every library that shapes a row, checked against what the page path loads."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from jobs.corpus_output import TRACKED_PACKAGES, package_versions

# Libraries the per-page path imports that cannot change a row: networking, URL and date helpers that
# trafilatura imports for metadata and downloads, which the job does not use.
NOT_SHAPING_TEXT = {
    "babel",
    "brotli",
    "certifi",
    "courlan",
    "fsspec",
    "htmldate",
    "python-dateutil",
    "setuptools",
    "six",
    "tld",
    "urllib3",
}

# One math page and one prose page through everything the job does per page, then the distributions of
# every module that is loaded by then.
PAGE_PATH = """
import json, sys
from importlib import metadata
from jobs.corpus_pipeline import PageAnalyser
analyser = PageAnalyser()
analyser.load_models()
for page in (
    "<html><body><article><p>Solve \\\\(x^2 = 4\\\\): <math><mi>x</mi></math> "
    "<script type='math/tex'>x = 2</script></p></article></body></html>",
    "<html><body><article><p>We walked along the coast for three days.</p></article></body></html>",
):
    analyser.analyse_html(page.encode(), "text/html; charset=utf-8", "https://example.org/p")
owners = metadata.packages_distributions()
print(json.dumps(sorted({d for m in list(sys.modules) for d in owners.get(m.split(".")[0], [])})))
"""


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_library_the_page_path_loads_is_versioned_or_declared_irrelevant():
    repo = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", PAGE_PATH], capture_output=True, text=True, timeout=300, cwd=repo
    )
    assert result.returncode == 0, result.stderr[-2000:]
    loaded = {_normalise(d) for d in json.loads(result.stdout)}
    assert {"resiliparse", "trafilatura", "justext", "lxml"} <= loaded  # the check sees the real path
    assert loaded - set(TRACKED_PACKAGES) - NOT_SHAPING_TEXT == set()


def test_package_versions_name_each_tracked_library():
    versions = package_versions()
    assert set(versions) == {"python", *TRACKED_PACKAGES}
    assert versions["resiliparse"] == "2.0.0" and versions["justext"] != "not installed"


def test_stats_report_shows_how_each_cleaning_step_worked():
    """The figures a reader needs to trust near dedup (candidates, large buckets, documents a bucket cap left
    unchecked) are in STATS.md, not only in stats.json."""
    from jobs.corpus_output import render_stats_markdown

    stats = {
        "run_id": "r1",
        "inputs": {"total": 1, "failed": []},
        "counters": {"records": 3},
        "kept": 2,
        "kept_chars": 10,
        "seconds": 1.0,
        "by_lang": {"en": 2},
        "math_score_histogram": [],
        "cleaning": {
            "input_documents": 5,
            "output_documents": 2,
            "steps": {
                "exact": {"removed": 1},
                "near": {
                    "removed": 2,
                    "candidate_pairs": 7,
                    "large_bucket_unchecked": 3,
                    "exact_check": True,
                },
                "decontaminate": {"skipped": "no benchmarks"},
            },
        },
    }
    text = render_stats_markdown(stats)
    assert "| removed by near | 2 |" in text
    assert "| near: large_bucket_unchecked | 3 |" in text and "| near: candidate_pairs | 7 |" in text
    assert "exact_check" not in text  # flags are not figures
