"""The constant teacher's task: it answers every question with 42 (`conftest.constant_teacher`)."""

from __future__ import annotations

import json
from pathlib import Path

CONSTANT_ANSWER = "The answer is \\boxed{42}."


def constant_teacher_prompts(task: dict[str, Path], n: int) -> list[dict[str, str]]:
    """The first `n` training problems as prompts the constant teacher gets right on even rows only: their
    answer is 42 there and the problem's own answer on odd rows."""
    rows = [json.loads(line) for line in task["train"].open()][:n]
    return [
        {"prompt": r["prompt"], "answer": "42" if i % 2 == 0 else r["answer"]} for i, r in enumerate(rows)
    ]
