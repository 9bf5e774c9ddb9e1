"""The last-number task's options that the GRPO recipe relies on: the digit range, the short completion, and the
few-example SFT subset."""

from __future__ import annotations

import json
import re

from training.data.synthetic import write_last_number_task


def _rows(path) -> list[dict]:
    return [json.loads(line) for line in path.open()]


def test_single_digit_task_with_a_few_shot_sft_subset(tmp_path):
    paths = write_last_number_task(tmp_path, n_train=200, n_test=30, low=1, high=9, worked=False, n_sft=32)
    train, sft, test = _rows(paths["train"]), _rows(paths["sft"]), _rows(paths["test"])
    assert len(train) == 200 and len(test) == 30
    assert sft == train[:32]  # exactly the first n_sft training rows
    for row in train:
        numbers = [int(n) for n in re.findall(r"\d+", row["prompt"])]
        assert all(1 <= n <= 9 for n in numbers) and 3 <= len(numbers) <= 5
        assert row["answer"] == str(numbers[-1])
        assert row["completion"] == f"The answer is \\boxed{{{numbers[-1]}}}."
    assert not {r["prompt"] for r in train} & {r["question"] for r in test}


def test_defaults_are_unchanged_and_write_no_sft_subset(tmp_path):
    paths = write_last_number_task(tmp_path, n_train=20, n_test=5)
    assert "sft" not in paths and not (tmp_path / "sft.jsonl").exists()
    row = _rows(paths["train"])[0]
    assert row["completion"].startswith(f"The list ends with {row['answer']}. ")
    assert all(10 <= int(n) <= 99 for n in re.findall(r"\d+", row["prompt"]))
