"""A user reward for tests/training/objectives/test_grpo.py, imported by name ("grpo_fixtures:hang_on_marked")
inside its reward worker: it never returns for a batch whose prompts contain "HANG", so a GRPO run must cut it
at the reward timeout, count it, and go on."""

from __future__ import annotations

import threading
from typing import Any


def hang_on_marked(prompts: list[str], completions: list[str], **_: Any) -> list[float]:
    if any("HANG" in p for p in prompts):
        threading.Event().wait()  # never set: only the parent's hard timeout ends this call
    return [float(len(c) % 3 == 0) for c in completions]


def odd_digits(prompts: list[str], completions: list[str], **_: Any) -> list[float]:
    """1.0 when a completion holds an odd number of digits: some spread in every group even for an untrained
    model, so that updates happen."""
    return [float(sum(ch.isdigit() for ch in c) % 2) for c in completions]
