"""The `mathforge` command as a user runs it: inspect's JSON on real pages, and corpus build end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from crawl.math_eval import formula_hits, gold_pages
from mathforge.cli import main

from .warcs import article_html, write_html_warc

MATHFORGE = str(Path(sys.executable).parent / "mathforge")


def _inspect(capsys, *argv: str) -> dict:
    assert main(["inspect", *argv, "--compact"]) == 0
    return json.loads(capsys.readouterr().out)


def test_inspect_reports_what_the_job_decides(capsys, shared_data):
    page = _inspect(capsys, str(shared_data / "html_math" / "mineru-webkit_ccmath" / "katex_mathjax.html.gz"))
    assert {"lang", "lang_score", "math_score", "text", "is_math", "stages"} <= set(page)
    assert page["lang"] == "en" and page["is_math"] and page["math_score"] >= 0.5
    assert page["stages"]["prefilter_hit"] and page["stages"]["math_extracted"]
    assert "\\frac" in page["text"] and "$$" in page["text"]


def test_gold_formulas_survive_in_inspects_text(capsys, shared_data):
    found = total = 0
    for gold in gold_pages(shared_data):
        args = [str(gold.path)] + (["--url", gold.url] if gold.url else [])
        found += formula_hits(_inspect(capsys, *args)["text"], gold.formulas)
        total += len(gold.formulas)
    assert total > 200 and found / total >= 0.9


def test_inspect_of_a_non_math_page_and_of_a_missing_file(capsys, shared_data):
    pages = sorted((shared_data / "html_general" / "trafilatura-eval").glob("*.html*"))
    page = _inspect(capsys, str(pages[0]))
    assert not page["is_math"] and not page["stages"]["math_extracted"] and page["text"]
    assert main(["inspect", str(shared_data / "no-such-page.html")]) == 2
    assert "no such file" in capsys.readouterr().err


@pytest.mark.spark
def test_corpus_build_command_end_to_end(tmp_path):
    math_page = article_html(
        "Solve $x^2 - 5x + 6 = 0$ by factoring: $(x-2)(x-3) = 0$, so $x = 2$ or $x = 3$.\n"
        "The quadratic formula gives $$x = \\frac{-b \\pm \\sqrt{b^2 - 4ac}}{2a}$$ for any "
        "quadratic equation $ax^2 + bx + c = 0$ with $a \\neq 0$."
    )
    prose = article_html("We spent the weekend walking along the river, eating ice cream and watching boats.")
    warc = write_html_warc(
        tmp_path / "in.warc.gz", [("https://m.example/q", math_page), ("https://p.example/w", prose)]
    )
    out = tmp_path / "corpus"
    result = subprocess.run(
        [MATHFORGE, "corpus", "build", "--input", str(warc), "--output", str(out), "--master", "local[1]"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "kept: 1 documents" in result.stdout and "drop:not_math" in result.stdout
    stats = json.loads((out / "stats.json").read_text())
    assert stats["counters"]["kept"] == 1 and stats["counters"]["drop:not_math"] == 1
    again = subprocess.run(
        [MATHFORGE, "corpus", "build", "--input", str(warc), "--output", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 2 and "already exists" in again.stderr
