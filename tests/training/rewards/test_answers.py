"""Final-answer extraction and benchmark loading, on hand-made cases and on the real benchmark files."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from training.data.benchmarks import BenchmarkItem, benchmark_name, load_benchmark
from training.rewards.answers import extract_answer, extract_boxed, gold_answer, normalize_answer

REPO = Path(__file__).resolve().parents[3]

# (file, rows, first gold answer, question field)
BENCHMARKS = [
    ("gsm8k_test.jsonl", 1319, "18", "question"),
    ("gsm8k_test_socratic.jsonl.gz", 1319, "18", "question"),
    ("math500_test.jsonl", 500, "\\left( 3, \\frac{\\pi}{2} \\right)", "problem"),
    ("math_test_5000.jsonl.gz", 5000, "2", "problem"),
    ("aime24.jsonl", 30, "204", "question"),
    ("aime25.jsonl", 15, "70", "problem"),
    ("amc23.jsonl", 40, "27", "question"),
    ("minerva_math_ocw.jsonl", 272, "1.6", "problem"),
]


@pytest.fixture(scope="module")
def bench_dir(shared_data: Path) -> Path:
    return shared_data / "math_benchmarks"


def _jsonl(path: Path) -> list[dict]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


# --- extraction ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("so the result is $\\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}"),
        ("nested: \\boxed{\\frac{\\sqrt{3}}{\\left(2\\right)}} done", "\\frac{\\sqrt{3}}{\\left(2\\right)}"),
        ("first \\boxed{1}, then \\boxed{2}", "2"),
        ("$\\boxed 5$", "5"),
        ("\\boxed 12.", "12"),
        ("\\fbox{7}", "7"),
        ("literal braces \\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),
        ("ok \\boxed{3} then truncated \\boxed{\\frac{1}{", "3"),
        ("empty \\boxed{} then nothing", None),
        ("She makes 9 * 2 = $18 every day.\n#### 18", "18"),
        ("profit\n#### 70,000", "70000"),
        ("#### -3.5\n", "-3.5"),
        ("Thinking... The answer is 42.", "42"),
        ("so the final answer is $\\frac{3}{4}$. Done", "\\frac{3}{4}"),
        ("The answer is: 7", "7"),
        ("Answer: (0, 3)", "(0, 3)"),
        ("Final Answer: x = 5\nsome trailing words without digits", "x = 5"),
        ("I bought 3 apples and paid 1,250 dollars", "1250"),
        ("the temperature fell to -4 degrees", "-4"),
        ("roughly 0.75 of them", "0.75"),
        ("about 3/4 of them", "3/4"),
        ("a distance of 4.5e33 cm", "4.5e33"),
        ("no digits at all", None),
        ("", None),
    ],
)
def test_extract_answer(text: str, expected: str | None) -> None:
    assert extract_answer(text) == expected


def test_extract_boxed_prefers_last_complete_box() -> None:
    assert extract_boxed("\\boxed{a} and \\boxed{b^{2}}") == "b^{2}"
    assert extract_boxed("no box here") is None
    assert extract_boxed("\\boxedx is not a box") is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("$5$", "5"),
        ("  \\(x+1\\).", "x+1"),
        ("1,234", "1234"),
        ("1, 2", "1, 2"),
        ("\\[ 3 \\]", "3"),
        ("...", "..."),
    ],
)
def test_normalize_answer(raw: str, expected: str) -> None:
    assert normalize_answer(raw) == expected


def test_gold_answer_formats() -> None:
    assert gold_answer({"question": "q", "answer": "work\n#### 1,600"}) == "1600"
    assert gold_answer({"problem": "p", "solution": "so $\\boxed{\\dfrac{9}{7}}$."}) == "\\dfrac{9}{7}"
    assert gold_answer({"problem": "p", "answer": 27.0}) == "27"
    assert gold_answer({"problem": "p", "answer": 2.5}) == "2.5"
    assert gold_answer({"problem": "p", "answer": "025", "solution": "\\boxed{25}"}) == "025"
    assert gold_answer({"problem": "p", "answer": "", "solution": "\\boxed{4}"}) == "4"
    assert gold_answer({"problem": "p", "solution": "steps\n#### 12"}) == "12"
    with pytest.raises(ValueError, match="no gold answer"):
        gold_answer({"problem": "p", "solution": "no final answer marked"})


def test_gold_answers_of_real_benchmarks(bench_dir: Path) -> None:
    for name, rows, first, _ in BENCHMARKS:
        records = _jsonl(bench_dir / name)
        golds = [gold_answer(r) for r in records]
        assert len(golds) == rows, name
        assert golds[0] == first, name
        assert all(g.strip() for g in golds), name
    # GSM8K: the number after "####", commas removed; MATH-500: `answer` agrees with the solution's last box.
    gsm8k = _jsonl(bench_dir / "gsm8k_test.jsonl")
    assert all(gold_answer(r).lstrip("-").replace(".", "").isdigit() for r in gsm8k)
    math500 = _jsonl(bench_dir / "math500_test.jsonl")
    mismatched = [
        (r["answer"], extract_boxed(r["solution"]))
        for r in math500
        if r["answer"] != extract_boxed(r["solution"])
    ]
    assert not mismatched, mismatched[:10]
    # Answers extracted from model-like outputs: the reference solutions themselves.
    assert all(extract_answer(r["answer"]) == gold_answer(r) for r in gsm8k)
    assert all(extract_answer(r["solution"]) == normalize_answer(r["answer"]) for r in math500)


# --- benchmark files ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "rows", "first", "question_key"), BENCHMARKS)
def test_load_benchmark(bench_dir: Path, name: str, rows: int, first: str, question_key: str) -> None:
    path = bench_dir / name
    items = load_benchmark(path)
    assert len(items) == rows
    assert all(isinstance(it, BenchmarkItem) and it.question.strip() and it.answer.strip() for it in items)
    assert items[0].answer == first
    assert len({it.id for it in items}) == rows, "ids must be unique within a benchmark"
    raw = _jsonl(path)[0]
    assert items[0].question == raw[question_key]
    assert question_key not in items[0].extra
    assert set(items[0].extra) == set(raw) - {question_key}


def test_load_benchmark_parquet_and_ids(bench_dir: Path, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = _jsonl(bench_dir / "gsm8k_test.jsonl")[:20]
    path = tmp_path / "gsm8k_small.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    items = load_benchmark(path)
    assert [it.answer for it in items] == [gold_answer(r) for r in rows]
    assert items[0].id == "gsm8k_small-1"
    assert items[0].extra["answer"] == rows[0]["answer"]  # the worked solution is kept


def test_load_benchmark_errors_name_the_file(tmp_path: Path) -> None:
    no_question = tmp_path / "bad_q.jsonl"
    no_question.write_text(json.dumps({"answer": "1"}) + "\n")
    with pytest.raises(ValueError, match=r"bad_q\.jsonl: row 1 has no question"):
        load_benchmark(no_question)
    no_answer = tmp_path / "bad_a.jsonl.gz"
    with gzip.open(no_answer, "wt") as f:
        f.write(json.dumps({"question": "q", "answer": "1"}) + "\n\n")
        f.write(json.dumps({"problem": "p", "solution": "no box"}) + "\n")
    with pytest.raises(ValueError, match=r"bad_a\.jsonl\.gz: row 2: no gold answer"):
        load_benchmark(no_answer)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"question": "q", "answer": "1"}\n{not json\n')
    with pytest.raises(ValueError, match=r"broken\.jsonl: line 2 is not valid JSON"):
        load_benchmark(broken)


def test_benchmark_name() -> None:
    assert benchmark_name("/x/gsm8k_test.jsonl") == "gsm8k_test"
    assert benchmark_name("math_test_5000.jsonl.gz") == "math_test_5000"
    assert benchmark_name(Path("a/aime24.parquet")) == "aime24"


def test_answer_modules_do_not_import_torch() -> None:
    code = (
        "import sys, training.rewards.answers, training.data.benchmarks, training.rewards.verify; "
        "assert 'torch' not in sys.modules and 'math_verify' not in sys.modules, sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
