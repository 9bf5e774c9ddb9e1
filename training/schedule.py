"""Schedules as pure functions of the step: nothing to save beyond the step itself, so resume is exact."""

from __future__ import annotations

import math

from training.config import OptimConfig, PretrainModelConfig


def warmup_steps(optim: OptimConfig, max_steps: int) -> int:
    return max(1, round(optim.warmup_frac * max_steps))


def lr_at(step: int, optim: OptimConfig, max_steps: int) -> float:
    """Linear warmup to the peak, then cosine decay to min_lr_ratio · peak at max_steps (0-based step)."""
    warmup = warmup_steps(optim, max_steps)
    if step < warmup:
        return optim.lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, max_steps - warmup))
    floor = optim.lr * optim.min_lr_ratio
    return floor + (optim.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def mtp_lambda_at(step: int, mtp: PretrainModelConfig, max_steps: int) -> float:
    """DeepSeek-V3's two-stage MTP weight: mtp_lambda, then mtp_lambda_late after the switch point."""
    return mtp.mtp_lambda if step < mtp.mtp_lambda_switch * max_steps else mtp.mtp_lambda_late
