"""The math-verify pool: equivalences on real benchmark answers, and hard timeouts / crashes inside workers."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from training.rewards.answers import gold_answer
from training.rewards.verify import Verdict, Verifier, check_equal

# A real pathological input: comparing 9^(9^9) with a number makes sympy compute a 370-million-digit integer
# inside a single C-level pow (math-verify's own signal alarm could not even interrupt it).
HANGING_PREDICTION = "so the answer is $\\boxed{9^{9^{9}}}$"


def fault_checker(pred: str, gold: str) -> bool:
    """Test hook run in the workers instead of `check_equal` (must be module-level: workers import it)."""
    if pred == "CRASH":
        os._exit(3)
    if pred == "RAISE":
        raise ValueError("checker failed on purpose")
    if pred == "HANG":
        threading.Event().wait()  # blocks for ever: only the parent's hard timeout ends it
    if pred == "TORCHFREE":
        return "torch" not in sys.modules
    return check_equal(pred, gold)


def _jsonl(path: Path) -> list[dict]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope="module")
def verifier():
    with Verifier(workers=max(2, min(4, os.cpu_count() or 2)), timeout_s=20.0) as v:
        yield v


@pytest.fixture(scope="module")
def pairs(shared_data: Path) -> dict[str, tuple[list[str], list[str]]]:
    """Per benchmark: (reference solutions as "model outputs", gold answers)."""
    bench = shared_data / "math_benchmarks"
    gsm8k = _jsonl(bench / "gsm8k_test.jsonl")
    math500 = _jsonl(bench / "math500_test.jsonl")
    return {
        "gsm8k": ([r["answer"] for r in gsm8k], [gold_answer(r) for r in gsm8k]),
        "math500": ([r["solution"] for r in math500], [gold_answer(r) for r in math500]),
    }


def _rate(verdicts: list[Verdict], want: bool) -> float:
    return sum(v.correct is want for v in verdicts) / len(verdicts)


@pytest.mark.parametrize("name", ["gsm8k", "math500"])
def test_gold_answers_verify_against_themselves(verifier: Verifier, pairs, name: str) -> None:
    solutions, golds = pairs[name]
    start = time.perf_counter()
    verdicts = verifier.verify_batch(solutions, golds)
    elapsed = time.perf_counter() - start
    rate = _rate(verdicts, True)
    print(f"{name}: {len(golds)} self-checks, correct {rate:.4f}, {elapsed:.1f} s")
    misses = [(i, v) for i, v in enumerate(verdicts) if v.correct is not True]
    assert len(verdicts) == len(golds)
    assert rate >= 0.99, misses[:30]


@pytest.mark.parametrize("name", ["gsm8k", "math500"])
def test_different_answers_are_wrong(verifier: Verifier, pairs, name: str) -> None:
    solutions, golds = pairs[name]
    n = len(golds)
    other = []  # for each item, the next item whose gold differs as a string
    for i in range(n):
        j = next(k % n for k in range(i + 1, i + n) if golds[k % n].strip() != golds[i].strip())
        other.append(golds[j])
    start = time.perf_counter()
    verdicts = verifier.verify_batch(solutions, other)
    elapsed = time.perf_counter() - start
    rate = _rate(verdicts, False)
    print(f"{name}: {n} cross-checks, judged wrong {rate:.4f}, {elapsed:.1f} s")
    accepted = [(i, v) for i, v in enumerate(verdicts) if v.correct is not False]
    assert rate >= 0.99, accepted[:30]


EQUIVALENT = [
    ("\\boxed{\\frac12}", "0.5"),
    ("\\boxed{\\dfrac{3}{4}}", "3/4"),
    ("The answer is $(0,3)$.", "(0, 3)"),
    ("\\boxed{2\\sqrt{2}}", "\\sqrt{8}"),
    ("\\boxed{90^\\circ}", "90"),
    ("#### 1,600", "1600"),
    ("\\boxed{x=5}", "5"),
    ("\\boxed{\\text{Evelyn}}", "\\text{Evelyn}"),
    ("The answer is Evelyn.", "\\text{Evelyn}"),
    ("\\boxed{10\\%}", "10"),
]
DIFFERENT = [
    ("\\boxed{\\frac12}", "0.6"),
    ("\\boxed{3/4}", "4/3"),
    ("\\boxed{(0,3)}", "(3, 0)"),
    ("\\boxed{2\\sqrt{2}}", "\\sqrt{2}"),
    ("#### 1,600", "160"),
    ("\\boxed{\\text{Evelyn}}", "\\text{Bob}"),
    ("\\boxed{x^2}", "x^3"),
]


def test_equivalences(verifier: Verifier) -> None:
    preds, golds = zip(*(EQUIVALENT + DIFFERENT), strict=True)
    verdicts = verifier.verify_batch(list(preds), list(golds))
    assert all(v.status == "ok" for v in verdicts), verdicts
    got = [v.correct for v in verdicts]
    assert got == [True] * len(EQUIVALENT) + [False] * len(DIFFERENT), list(
        zip(preds, golds, got, strict=True)
    )


def test_check_equal_in_process() -> None:
    assert check_equal("\\frac12", "0.5")
    assert check_equal("\\dfrac{3}{4}", "3/4")
    assert not check_equal("3/4", "0.7")


def test_no_answer_is_wrong_not_undecided(verifier: Verifier) -> None:
    before = verifier.stats["no_answer"]
    verdict = verifier.verify_one("I could not solve it.", "4")
    assert verdict == Verdict(False, "no_answer", None, "4")
    assert verifier.stats["no_answer"] == before + 1


def test_hanging_item_is_cut_at_the_timeout() -> None:
    preds = ["\\boxed{1}", "\\boxed{\\frac{1}{2}}", HANGING_PREDICTION, "#### 12", "\\boxed{5}"]
    golds = ["1", "0.5", "2", "12", "6"]
    with Verifier(workers=2, timeout_s=2.0) as v:
        v.verify_one("\\boxed{1}", "1")  # workers up
        start = time.perf_counter()
        verdicts = v.verify_batch(preds, golds)
        elapsed = time.perf_counter() - start
        assert [x.status for x in verdicts] == ["ok", "ok", "timeout", "ok", "ok"]
        assert [x.correct for x in verdicts] == [True, True, None, True, False]
        assert verdicts[2].prediction == "9^{9^{9}}" and "2 s" in verdicts[2].detail
        assert 2.0 <= elapsed < 20.0, elapsed
        assert v.stats["timeout"] == 1 and v.restarts == 1
        # The pool keeps working, with the replacement worker, for the next batch.
        again = v.verify_batch(["\\boxed{3}", "\\boxed{4}", "\\boxed{5}"], ["3", "4", "6"])
        assert [x.correct for x in again] == [True, True, False]
        assert v.stats["timeout"] == 1 and v.restarts == 1


def test_crash_and_exception_fail_only_their_item() -> None:
    preds = [
        "\\boxed{1}",
        "\\boxed{CRASH}",
        "\\boxed{2}",
        "\\boxed{RAISE}",
        "\\boxed{3}",
        "\\boxed{TORCHFREE}",
    ]
    golds = ["1", "1", "2", "1", "4", "1"]
    with Verifier(workers=2, timeout_s=20.0, checker=fault_checker) as v:
        verdicts = v.verify_batch(preds, golds)
        assert [x.status for x in verdicts] == ["ok", "error", "ok", "error", "ok", "ok"]
        assert [x.correct for x in verdicts] == [
            True,
            None,
            True,
            None,
            False,
            True,
        ]  # workers never import torch
        assert "exit code 3" in verdicts[1].detail
        assert "ValueError: checker failed on purpose" in verdicts[3].detail
        assert v.stats["error"] == 2 and v.restarts == 1
        # A checker that blocks for ever (not sympy this time) is cut the same way.
        v.timeout_s = 1.0
        hung = v.verify_batch(["\\boxed{HANG}", "\\boxed{7}"], ["1", "7"])
        assert [(x.status, x.correct) for x in hung] == [("timeout", None), ("ok", True)]
        assert v.restarts == 2


def test_batch_shape_and_closed_pool() -> None:
    v = Verifier(workers=1, timeout_s=5.0, start_method="spawn")
    assert v.verify_batch([], []) == []
    with pytest.raises(ValueError, match="2 predictions but 1 gold"):
        v.verify_batch(["1", "2"], ["1"])
    assert v.verify_one("\\boxed{2}", 2.0).correct is True
    v.close()
    v.close()
    with pytest.raises(RuntimeError, match="closed"):
        v.verify_one("1", "1")


def test_workers_do_not_import_the_main_module(tmp_path: Path) -> None:
    """A trainer's main module imports torch: workers must not re-import it (multiprocessing would)."""
    log = tmp_path / "imports.log"
    script = tmp_path / "trainer_main.py"
    script.write_text(
        "import sys\n"
        f"open({str(log)!r}, 'a').write(__name__ + '\\n')\n"
        "from training.rewards.verify import Verifier\n"
        "if __name__ == '__main__':\n"
        "    with Verifier(workers=2, timeout_s=20.0, memory_limit_mb=4096) as v:\n"
        "        verdicts = v.verify_batch(['\\\\boxed{3}', '\\\\boxed{4}'], ['3', '5'])\n"
        "    assert [x.correct for x in verdicts] == [True, False], verdicts\n"
    )
    repo = Path(__file__).resolve().parents[3]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    subprocess.run([sys.executable, str(script)], check=True, cwd=tmp_path, env=env, timeout=120)
    assert log.read_text().split() == ["__main__"]
