"""Benchmark files → uniform items (id, question, gold answer) for evaluation and reward checks.

Math benchmarks ship in a handful of shapes (GSM8K question/answer with "#### n", MATH problem/solution with
\\boxed{}, AIME/AMC problem/answer with numbers stored as strings or floats) and as JSON Lines, gzipped JSON
Lines or Parquet. This module reads all of them the same way, so that evaluation code never looks at a field
name. Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.data.records import dataset_name, read_records
from training.rewards.answers import gold_answer

__all__ = ["BenchmarkItem", "benchmark_name", "load_benchmark"]

QUESTION_FIELDS = ("question", "problem", "prompt")
_ID_FIELDS = ("id", "unique_id", "idx")


@dataclass(frozen=True)
class BenchmarkItem:
    """One benchmark question. `answer` is the gold answer string (see `training.rewards.answers.gold_answer`);
    `extra` keeps every other field of the source row (the worked solution, level, subject, url, ...)."""

    id: str
    question: str
    answer: str
    extra: dict[str, Any] = field(default_factory=dict)


def benchmark_name(path: str | Path) -> str:
    """The file name without .jsonl / .json / .gz / .parquet: "gsm8k_test.jsonl.gz" → "gsm8k_test"."""
    return dataset_name(path)


def load_benchmark(path: str | Path) -> list[BenchmarkItem]:
    """All items of a benchmark file (.jsonl, .jsonl.gz or .parquet).

    The question is the first non-empty field among question / problem / prompt; the gold answer comes from
    `gold_answer` (answer field, else the solution's last \\boxed{} or "####" line). The id is the row's id /
    unique_id / idx, else "<name>-<row number>". Raises ValueError naming the file and row when a row has no
    question or no gold answer.
    """
    path = Path(path)
    name = benchmark_name(path)
    items = []
    for n, row in enumerate(read_records(path), 1):
        question_key = next(
            (k for k in QUESTION_FIELDS if isinstance(row.get(k), str) and row[k].strip()),
            None,
        )
        if question_key is None:
            raise ValueError(
                f"{path}: row {n} has no question (none of the fields {QUESTION_FIELDS}; fields: {sorted(row)})"
            )
        try:
            answer = gold_answer(row)
        except ValueError as exc:
            raise ValueError(f"{path}: row {n}: {exc}") from exc
        id_key = next((k for k in _ID_FIELDS if row.get(k) is not None and str(row[k]) != ""), None)
        item_id = str(row[id_key]) if id_key is not None else f"{name}-{n}"
        extra = {k: v for k, v in row.items() if k != question_key}
        items.append(BenchmarkItem(id=item_id, question=row[question_key], answer=answer, extra=extra))
    return items
