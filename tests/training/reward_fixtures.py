"""User reward functions for tests/training/rewards/test_rewards.py, imported by name ("reward_fixtures:NAME")
inside the reward worker processes. Each misbehaves only on marked completions, so that a worker that timed out or
failed can be shown to work again on the next batch."""

from __future__ import annotations

import math
import os
import sys
import threading
from typing import Any


def misbehave(prompts: list[str], completions: list[str], **_: Any) -> list[float | None]:
    """0.5 per completion (None for "SKIP"); blocks for ever on "HANG", raises on "RAISE", dies on "CRASH"."""
    if any("HANG" in c for c in completions):
        threading.Event().wait()  # never set: only the parent's hard timeout ends this call
    if any("RAISE" in c for c in completions):
        raise ZeroDivisionError("reward failed on purpose")
    if any("CRASH" in c for c in completions):
        os._exit(7)
    return [None if "SKIP" in c else 0.5 for c in completions]


def spin(prompts: list[str], completions: list[str], **_: Any) -> list[float]:
    """Busy-loops for ever (a pure-Python loop, no blocking call) on "SPIN"; else 1.0 each."""
    if any("SPIN" in c for c in completions):
        while True:
            pass
    return [1.0] * len(completions)


def echo(
    prompts: list[str], completions: list[str], *, completion_lengths: list[int], **columns: Any
) -> list[float]:
    """What it was given, as numbers: the "difficulty" column + completion length / 1000, + 100 when the
    "answer" column arrived too."""
    return [
        float(d) + length / 1000 + (100.0 if a is not None else 0.0)
        for d, length, a in zip(columns["difficulty"], completion_lengths, columns["answer"], strict=True)
    ]


def truncated_flags(
    prompts: list[str], completions: list[str], *, truncated: list[bool], **_: Any
) -> list[float]:
    """1.0 per completion the caller said was cut off by the length limit."""
    return [1.0 if t else 0.0 for t in truncated]


def prompt_lengths(prompts: list[str], completions: list[str], **_: Any) -> list[float]:
    return [float(len(p)) for p in prompts]


def torch_free(prompts: list[str], completions: list[str], **_: Any) -> list[float]:
    """1.0 when the worker has not imported torch (it must not re-import the trainer's __main__)."""
    return [0.0 if "torch" in sys.modules else 1.0] * len(completions)


def one_too_many(prompts: list[str], completions: list[str], **_: Any) -> list[float]:
    return [1.0] * (len(completions) + 1)


def not_a_list(prompts: list[str], completions: list[str], **_: Any) -> Any:
    return {"reward": 1.0}


def strings(prompts: list[str], completions: list[str], **_: Any) -> list[Any]:
    return ["1.0"] * len(completions)


def nan(prompts: list[str], completions: list[str], **_: Any) -> list[float]:
    return [math.nan] * len(completions)


NOT_CALLABLE = 3
