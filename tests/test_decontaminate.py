"""Benchmark decontamination against the real GSM8K and MATH sets in ../shared/data/math_benchmarks."""

from __future__ import annotations

import gzip
import json
import pickle
import random
from collections import Counter
from pathlib import Path

import pytest

from classifiers.decontaminate import (
    BenchmarkItem,
    ContaminationIndex,
    DecontaminationConfig,
    load_benchmark_items,
)
from samplecrawl.math_text import MATH_LANGS
from samplecrawl.pages import MATH_GENRES, build_page, page_text


@pytest.fixture(scope="module")
def benchmarks(shared_data: Path) -> Path:
    return shared_data / "math_benchmarks"


@pytest.fixture(scope="module")
def index(benchmarks: Path) -> ContaminationIndex:
    return ContaminationIndex.from_files([benchmarks / "gsm8k_test.jsonl", benchmarks / "math500_test.jsonl"])


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _mangle(text: str, rng: random.Random) -> str:
    """Same words, other case and whitespace (as a forum post or a re-typeset page would have them)."""
    out = []
    for word in text.split():
        word = word.upper() if rng.random() < 0.3 else word.lower() if rng.random() < 0.5 else word
        out.append(word + rng.choice([" ", "  ", "\n", " \t ", "\n\n"]))
    return "".join(out)


def test_quoted_gsm8k_questions_are_found_despite_case_and_whitespace(index, benchmarks):
    rng = random.Random(0)
    rows = _rows(benchmarks / "gsm8k_test.jsonl")
    for lineno in rng.sample(range(len(rows)), 25):
        question = rows[lineno]["question"]
        doc = f"Homework thread, page 2.\n\nCan someone help with this one?\n{_mangle(question, rng)}\nThanks in advance!"
        matches = index.find_contamination(doc)
        assert any(m.benchmark == "gsm8k_test" and m.item_id == f"line {lineno + 1}" for m in matches), (
            question
        )
        assert all(m.kind == "ngram" and len(m.matched.split()) == 13 for m in matches)


def test_quoted_math500_problems_are_found_with_other_tex_delimiters(index, benchmarks):
    rng = random.Random(1)
    rows = _rows(benchmarks / "math500_test.jsonl")
    picked = rng.sample(rows, 25) + [r for r in rows if len(r["problem"].split()) < 8][:5]
    for row in picked:
        problem = row["problem"].replace("$", "\\(", 1)  # MathJax delimiters instead of dollars
        doc = f"<p>Exercise 7.</p> {_mangle(problem, rng)} <p>Hint: draw a picture.</p>"
        matches = index.find_contamination(doc)
        # (MATH problems sometimes share a 13-gram with another problem, which then matches too.)
        assert row["unique_id"] in [m.item_id for m in matches if m.benchmark == "math500_test"], row[
            "problem"
        ]
    short = next(r for r in rows if r["problem"] == "How many positive whole-number divisors does 196 have?")
    (match,) = index.find_contamination("Q: how many positive whole number divisors does 196 have ?")
    assert (match.kind, match.item_id) == ("whole", short["unique_id"])
    assert "math500_test" in match.reason and "196" in match.reason


def test_documents_on_the_same_topics_without_the_question_are_kept(index):
    topical = [
        # GSM8K's first question is about a farmer's ducks, eggs and a market; this is not that question.
        "Ducks are productive layers: a healthy duck lays an egg most days of the year. Many small farms "
        "sell surplus eggs at the weekly farmers' market, where duck eggs fetch a higher price than hen "
        "eggs. Bakers like them for muffins because the yolks are richer.",
        # MATH-500 opens with converting rectangular to polar coordinates; this explains the topic instead.
        "To convert a point from rectangular to polar coordinates, compute the distance r from the origin "
        "with the Pythagorean theorem and find the angle theta with the arctangent, adjusting the quadrant. "
        "For example the point (1, 1) has r equal to the square root of 2 and angle pi over 4.",
        "How many divisors does a number have? Write its prime factorisation and multiply the exponents "
        "plus one: 12 = 2^2 * 3 has (2+1)(1+1) = 6 divisors.",
    ]
    for doc in topical:
        assert index.find_contamination(doc) == [], doc[:60]


def test_generated_math_pages_are_not_flagged(benchmarks):
    index = ContaminationIndex.from_files([benchmarks])  # every set, every question field
    rng = random.Random(5)
    for _ in range(150):
        page = build_page(rng.choice(MATH_LANGS), rng.choice(MATH_GENRES), rng)
        assert not index.is_contaminated(page_text(page)), page.title


def test_loader_reads_gzip_folders_and_counts_bad_lines(tmp_path):
    good = {
        "id": 7,
        "problem": "Find the number of ordered pairs of integers with the given property please.",
    }
    lines = [json.dumps(good), "{not json", json.dumps({"answer": "3"}), json.dumps({"question": "  "}), ""]
    (tmp_path / "set_a.jsonl").write_text("\n".join(lines), encoding="utf-8")
    with gzip.open(tmp_path / "set_b.jsonl.gz", "wt", encoding="utf-8") as fh:
        fh.write(
            json.dumps(
                {"question": "What is two plus two equal to?", "problem": "What is two plus two equal to?"}
            )
        )
    (tmp_path / "notes.txt").write_text("not a benchmark", encoding="utf-8")
    counters: Counter = Counter()
    items = load_benchmark_items([tmp_path], counters=counters)
    assert items == [
        BenchmarkItem("set_a", "7", good["problem"]),
        BenchmarkItem("set_b", "line 1", "What is two plus two equal to?"),
    ]
    assert counters["skip:bad_json"] == 1 and counters["skip:no_question"] == 2
    with pytest.raises(FileNotFoundError):
        load_benchmark_items([tmp_path / "missing.jsonl"])


def test_ngram_length_and_short_items_are_configurable():
    items = [
        BenchmarkItem("b", "long", "one two three four five six seven eight nine ten eleven twelve thirteen"),
        BenchmarkItem("b", "short", "compute seven times eight"),
        BenchmarkItem("b", "tiny", "why"),
    ]
    index = ContaminationIndex(items, DecontaminationConfig(ngram=5, min_words=2))
    assert index.stats["skipped_short_items"] == 1 and len(index) == 2
    (m,) = index.find_contamination("xx FIVE six seven Eight nine yy")
    assert (m.item_id, m.kind, m.matched, m.position) == ("long", "ngram", "five six seven eight nine", 1)
    assert index.find_contamination("five six seven eight") == []  # 4 words < n and not the whole item
    (m,) = index.find_contamination("Please COMPUTE: seven  times\neight.")
    assert (m.item_id, m.kind) == ("short", "whole")
    assert index.find_contamination("compute seven times") == []


def test_index_survives_pickling_for_spark_executors(index, benchmarks):
    question = _rows(benchmarks / "gsm8k_test.jsonl")[10]["question"]
    clone = pickle.loads(pickle.dumps(index))
    assert clone.find_contamination(question) == index.find_contamination(question) != []
