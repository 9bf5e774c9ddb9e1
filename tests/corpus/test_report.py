"""report.html: the renderer on a stats dict, and the real report of a corpus build drawn by headless Chromium."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jobs.corpus_report import SNIPPET_CHARS, render_report_html
from jobs.corpus_summary import REPORT_SAMPLES
from mathforge.cli import main

REPO = Path(__file__).resolve().parents[2]
PLOTS = ("languages", "math-score", "counters", "removals", "domains", "history")
SECTIONS = (*PLOTS, "samples")
HOSTILE = '<script>alert("pwned")</script><img src=x onerror=alert(1)> & "quotes"'


def _stats() -> dict:
    return {
        "run_id": "20250101T000000Z-abcdef12",
        "seconds": 12.5,
        "kept": 30,
        "kept_chars": 45678,
        "by_lang": {f"l{i:02d}": 20 - i for i in range(20)} | {"en": 40},
        "math_score_histogram": [[i / 10, i] for i in range(10)],
        "counters": {"records": 90, "html_responses": 45, "kept": 30, "drop:lang": 10, "error:truncated_gzip": 1},
        "cleaning": {
            "input_documents": 36,
            "steps": {  # sorted, as stats.json stores them; they ran exact, near, decontamination
                "decontamination": {"removed": 0, "skipped": "no --benchmarks given"},
                "exact": {"removed": 4},
                "near": {"removed": 2},
            },
            "output_documents": 30,
        },
        "inputs": {"total": 3, "failed": [{"path": "bad<1>.warc.gz", "errors": {"truncated_gzip": 1}}]},
        "top_domains": [{"domain": "math.example", "documents": 20, "math": 18}, {"domain": HOSTILE, "documents": 10, "math": 1}],
        "top_domains_math_by": "is_math",
        "samples": [
            {"url": "https://math.example/a?x=<b>", "domain": "math.example", "lang": "en", "math_score": 0.93,
             "text": HOSTILE + " $x^2$ " + "y" * 2000},
            {"url": "javascript:alert(1)", "domain": "evil.example", "lang": "en", "math_score": 0.1, "text": "short"},
        ],
    }  # fmt: skip


def test_renderer_draws_every_section_and_escapes_crawled_text():
    page = render_report_html(
        _stats(), {"config": {"min_math_score": 0.5}, "created_at": "2025-01-01T00:00:00Z"}
    )
    for section in SECTIONS:
        assert f'<section id="{section}">' in page, section
    for plot in PLOTS:
        match = re.search(
            rf'<figure data-plot="{plot}"><img alt="[^"]*" src="data:image/png;base64,([^"]+)"', page
        )
        assert match, f"no {plot} plot"
        image = Image.open(io.BytesIO(base64.b64decode(match.group(1))))
        assert image.format == "PNG" and image.width > 300 and image.height > 150
    # Self-contained: nothing fetched, nothing run; crawled text arrives escaped, as text.
    assert "<script" not in page.lower() and "<img src=x" not in page
    assert "&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt;" in page
    assert not re.search(r'(src|href)="(?!data:image/png;base64,|https://math\.example/)', page)
    assert 'href="javascript:' not in page and "javascript:alert(1)" in page  # shown, not linked
    assert 'href="https://math.example/a?x=&lt;b&gt;"' in page
    assert "y" * SNIPPET_CHARS not in page and "…" in page  # the first SNIPPET_CHARS characters only
    removals = page.split('<section id="removals">')[1]
    assert removals.index("by exact") < removals.index("by near") < removals.index("by decontamination")
    assert "bad&lt;1&gt;.warc.gz" in page and "no --benchmarks given" in page
    assert "--min-math-score 0.5" in page and "(21 languages)" in page


def test_refresh_history_renders_every_run_the_manifest_lists():
    runs = [
        {
            "run_id": f"run-{i}",
            "created_at": f"2025-0{i + 1}-01T00:00:00Z",
            "inputs": 4,
            "documents": 10 * (i + 1),
        }
        for i in range(3)
    ]
    page = render_report_html(_stats(), {"runs": runs})
    history = page.split('<section id="history">')[1].split("</section>")[0]
    assert 'data-plot="history"' in history and "3 run(s)" in history
    assert all(f"<td>run-{i}</td>" in history for i in range(3))
    assert '<td class="n">60</td>' in history  # the corpus size after the third run
    single = render_report_html(_stats(), {"run_id": "only", "created_at": "2025-01-01T00:00:00Z"})
    assert "1 run(s)" in single and "<td>only</td>" in single  # a plain build is a history of one


def _chromium() -> str:
    path = shutil.which("chromium") or (
        "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None
    )
    if path is None:
        pytest.fail(
            "headless Chromium is needed to check report.html and was not found: install Debian's chromium "
            "package (`apt-get install -y chromium`; `make venv` does it when run as root)",
            pytrace=False,
        )
    return path


def _chromium_run(chromium: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--user-data-dir={profile}"]
    result = subprocess.run([chromium, *flags, *args], capture_output=True, text=True, timeout=90)
    assert result.returncode == 0, f"chromium {args[0]} failed: {result.stderr[-2000:]}"
    return result


@pytest.mark.spark  # cc_corpus: the session's one build of the real CC sample (conftest.py)
def test_built_corpus_report_renders_in_headless_chromium(cc_corpus, tmp_path):
    chromium = _chromium()
    out, stats = cc_corpus
    report = out / "report.html"
    assert report.is_file(), "corpus build wrote no report.html next to STATS.md"
    html = report.read_text(encoding="utf-8")
    on_disk = json.loads((out / "stats.json").read_text())
    assert sum(d["documents"] for d in on_disk["top_domains"]) <= stats["kept"]
    assert len(on_disk["samples"]) == min(REPORT_SAMPLES, stats["kept"])
    assert all(len(s["text"]) <= SNIPPET_CHARS + 1 for s in on_disk["samples"])  # clipped in Spark

    # The JSON files are enough to draw it again: `corpus report` gives the same page.
    report.rename(tmp_path / "built.html")
    assert main(["corpus", "report", "--corpus", str(out)]) == 0
    assert report.read_text(encoding="utf-8") == html

    url = report.as_uri()
    dom = _chromium_run(chromium, tmp_path / "profile", "--dump-dom", url).stdout
    for plot in PLOTS:
        assert re.search(rf'<figure data-plot="{plot}"><img [^>]*src="data:image/png;base64,', dom), plot
    assert dom.count('<div class="doc">') == len(on_disk["samples"])

    shot = tmp_path / "report_screenshot.png"
    _chromium_run(chromium, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1200,2400", url)
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape[:2] == (2400, 1200)
    colours = np.unique(pixels.reshape(-1, 3), axis=0)
    assert len(colours) > 50, f"the page rendered nearly blank ({len(colours)} colours): {shot}"
    bar_blue = np.all(np.abs(pixels.astype(int) - (0x3B, 0x6F, 0xD4)) <= 8, axis=-1).sum()
    assert bar_blue > 5000, f"no plot bars painted ({bar_blue} bar-blue pixels): {shot}"
    bench_out = REPO / "bench_out"  # gitignored: the screenshot is kept there for a person to look at
    bench_out.mkdir(exist_ok=True)
    shutil.copyfile(shot, bench_out / "report_screenshot.png")
    print(f"report screenshot: {shot} (copied to {bench_out / 'report_screenshot.png'})")
