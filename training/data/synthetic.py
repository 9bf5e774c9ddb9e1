"""A verifiable synthetic task small enough to learn on a CPU: "which number comes last in this list?".

The demo, the SFT benchmark and the tests use it to show that post-training works end to end (SFT data →
training → `mathforge eval` with verified answers) in minutes. The answer is copied from the question, so a
tiny model learns it from its own tokens; arithmetic would need far more steps (a tiny model pretrained on
4,000 worked sums gets only ~15% of unseen sums right). Torch-free.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any


def last_number_item(
    rng: random.Random, low: int = 10, high: int = 99, worked: bool = True
) -> dict[str, Any]:
    """One question; `worked` completions restate the last number before the boxed answer."""
    numbers = [rng.randint(low, high) for _ in range(rng.randint(3, 5))]
    answer = numbers[-1]
    lead = f"The list ends with {answer}. " if worked else ""
    return {
        "question": f"Which number comes last in the list {', '.join(map(str, numbers))}?",
        "completion": f"{lead}The answer is \\boxed{{{answer}}}.",
        "answer": str(answer),
    }


def write_last_number_task(
    out_dir: str | Path,
    n_train: int = 2000,
    n_test: int = 100,
    seed: int = 0,
    *,
    low: int = 10,
    high: int = 99,
    worked: bool = True,
    n_sft: int = 0,
) -> dict[str, Path]:
    """`train.jsonl` (prompt, completion, answer) for SFT and `test.jsonl` (question, answer) for eval; test
    questions never appear in the training set. `n_sft` > 0 also writes `sft.jsonl`, the first `n_sft`
    training rows: SFT on a few examples teaches the format and leaves the skill to GRPO on all prompts."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    test: dict[str, dict[str, Any]] = {}
    while len(test) < n_test:
        item = last_number_item(rng, low, high, worked)
        test[item["question"]] = item
    train = []
    while len(train) < n_train:
        item = last_number_item(rng, low, high, worked)
        if item["question"] not in test:
            train.append(item)
    paths = {"train": out / "train.jsonl", "test": out / "test.jsonl"}
    rows = [{"prompt": i["question"], "completion": i["completion"], "answer": i["answer"]} for i in train]
    with open(paths["train"], "w") as fh:
        fh.writelines(json.dumps(row) + "\n" for row in rows)
    if n_sft > 0:
        paths["sft"] = out / "sft.jsonl"
        with open(paths["sft"], "w") as fh:
            fh.writelines(json.dumps(row) + "\n" for row in rows[:n_sft])
    with open(paths["test"], "w") as fh:
        for item in test.values():
            fh.write(json.dumps({"question": item["question"], "answer": item["answer"]}) + "\n")
    return paths


# Ways to write a "last number" solution: the first is the task's own; together they stand for gold solutions
# written by many authors in mixed styles, which a teacher's best-of-K traces (one style) do not have.
SOLUTION_STYLES = (
    "The list ends with {x}. The answer is \\boxed{{{x}}}.",
    "Reading the list from left to right, the final number we reach is {x}, so the answer is \\boxed{{{x}}}.",
    "Last: {x}. \\boxed{{{x}}}",
    "We need the number at the end of the list. It is {x}. Therefore the answer is \\boxed{{{x}}}.",
    "\\boxed{{{x}}}",
    "The numbers are written in order and the last one written is {x}; the answer is \\boxed{{{x}}}.",
)


def restyle_solutions(
    train: str | Path, out: str | Path, styles: int = len(SOLUTION_STYLES), seed: int = 0
) -> Path:
    """A copy of a `write_last_number_task` training file whose solutions are each rewritten in one of the
    first `styles` SOLUTION_STYLES at random: the same problems and answers, mixed-style gold solutions."""
    if not 1 <= styles <= len(SOLUTION_STYLES):
        raise ValueError(f"styles must be in [1, {len(SOLUTION_STYLES)}], got {styles}")
    rng = random.Random(seed)
    rows = [json.loads(line) for line in Path(train).read_text().splitlines() if line.strip()]
    with open(out, "w") as fh:
        for row in rows:
            row["completion"] = SOLUTION_STYLES[rng.randrange(styles)].format(x=row["answer"])
            fh.write(json.dumps(row) + "\n")
    return Path(out)
