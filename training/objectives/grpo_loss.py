"""GRPO's arithmetic as pure tensor functions: group-relative advantages, the clipped policy objective (token or
sequence ratio), the k3 KL estimator, and the loss aggregations of GRPO, Dr. GRPO, DAPO and BNPO.

Aggregation returns a (sum, normaliser) pair rather than a mean, because the trainer divides the summed loss by
the normaliser totalled over all micro-batches and ranks: that makes "dapo" a token mean over the whole global
batch and "grpo" a mean over every sequence of the step, exactly, however the batch is split.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

SCALE_REWARDS = ("group", "batch", "none")
LOSS_TYPES = ("grpo", "dr_grpo", "dapo", "bnpo")
IMPORTANCE = ("token", "sequence")
# verl / OpenRLHF's bounds: the log-ratio before exp (e^20 is still finite in bf16/fp32 arithmetic) and the k3
# value per token. One sampled token at log-prob -25 where the reference has -2 would otherwise add e^23.
KL_LOG_RATIO_CLAMP = 20.0
KL_VALUE_CLAMP = 10.0


def group_advantages(rewards: torch.Tensor, scale: str = "group", eps: float = 1e-4) -> torch.Tensor:
    """(P, G) rewards → advantages: each reward minus its group's mean, divided by the group's std ("group",
    DeepSeekMath), the whole batch's std ("batch", more robust for small groups) or nothing ("none", Dr. GRPO)."""
    if scale not in SCALE_REWARDS:
        raise ValueError(f"scale_rewards must be one of {SCALE_REWARDS}, got {scale!r}")
    centred = rewards - rewards.mean(dim=1, keepdim=True)
    if scale == "group":
        return centred / (rewards.std(dim=1, keepdim=True) + eps)
    if scale == "batch":
        return centred / (rewards.std() + eps)
    return centred


def zero_spread(rewards: torch.Tensor) -> torch.Tensor:
    """(P,) True where every answer of the group got the same reward: zero advantage, nothing to learn."""
    return (rewards.max(dim=1).values - rewards.min(dim=1).values) == 0


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor, clamp: bool = False) -> torch.Tensor:
    """Per-token k3 estimate of KL(π || π_ref) (Schulman): exp(r) - r - 1 with r = ref - logp; >= 0, and 0 where
    the two policies agree. `clamp` bounds r to ±KL_LOG_RATIO_CLAMP and the value to ±KL_VALUE_CLAMP (verl's
    "low_var_kl"); a clamped token then contributes no gradient, as there."""
    delta = ref_logp - logp
    if clamp:
        delta = delta.clamp(-KL_LOG_RATIO_CLAMP, KL_LOG_RATIO_CLAMP)
    kl = torch.exp(delta) - delta - 1.0
    return kl.clamp(-KL_VALUE_CLAMP, KL_VALUE_CLAMP) if clamp else kl


def kl_clamped(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Where `k3_kl(..., clamp=True)` clamped (the log-ratio or the value): what the KL clamp share counts."""
    delta = ref_logp - logp
    return (delta.abs() > KL_LOG_RATIO_CLAMP) | (torch.exp(delta) - delta - 1.0 > KL_VALUE_CLAMP)


@dataclass
class PolicyTerms:
    per_token: torch.Tensor  # (B, L) loss per token (masked positions are 0)
    ratio: torch.Tensor  # (B, L) importance ratio used
    clipped_low: torch.Tensor  # (B, L) bool: ratio < 1 - ε where the advantage is negative
    clipped_high: torch.Tensor  # (B, L) bool: ratio > 1 + ε_high where the advantage is positive
    kl: torch.Tensor  # (B, L) k3 per token (0 without a reference)
    kl_clamped: torch.Tensor  # (B, L) bool: the k3 clamp bounded this token (never without a reference)


def policy_terms(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    epsilon: float,
    epsilon_high: float,
    importance: str = "token",
    beta: float = 0.0,
    ref_logp: torch.Tensor | None = None,
    kl_clamp: bool = True,
) -> PolicyTerms:
    """-min(ρ·A, clip(ρ, 1-ε, 1+ε_high)·A) + β·k3 per token. ρ is the token ratio π/π_old, or for "sequence"
    (GSPO) the length-normalised sequence ratio exp(mean_t log π/π_old), shared by the sequence's tokens.
    `kl_clamp` bounds k3 as verl/OpenRLHF do (see `k3_kl`)."""
    if importance not in IMPORTANCE:
        raise ValueError(f"importance must be one of {IMPORTANCE}, got {importance!r}")
    mask_f = mask.to(logp.dtype)
    log_ratio = (logp - old_logp) * mask_f
    if importance == "sequence":
        lengths = mask_f.sum(dim=1).clamp(min=1.0)
        log_ratio = (log_ratio.sum(dim=1) / lengths)[:, None].expand_as(logp)
    ratio = torch.exp(log_ratio)
    adv = advantages[:, None].to(logp.dtype)
    clipped = torch.clamp(ratio, 1.0 - epsilon, 1.0 + epsilon_high)
    per_token = -torch.min(ratio * adv, clipped * adv)
    kl = torch.zeros_like(logp)
    clamped = torch.zeros_like(mask)
    if beta > 0.0:
        if ref_logp is None:
            raise ValueError("beta > 0 needs the reference log-probabilities")
        kl = k3_kl(logp, ref_logp, clamp=kl_clamp)
        if kl_clamp:
            clamped = kl_clamped(logp.detach(), ref_logp) & mask
        per_token = per_token + beta * kl
    return PolicyTerms(
        per_token=per_token * mask_f,
        ratio=ratio,
        clipped_low=(ratio < 1.0 - epsilon) & (adv < 0) & mask,
        clipped_high=(ratio > 1.0 + epsilon_high) & (adv > 0) & mask,
        kl=kl * mask_f,
        kl_clamped=clamped,
    )


def aggregate(
    per_token: torch.Tensor, mask: torch.Tensor, loss_type: str, max_completion_len: int
) -> tuple[torch.Tensor, float]:
    """(loss sum, normaliser) of one micro-batch; the trainer divides the sums by the normalisers' total:
    grpo — each sequence's token mean, averaged over sequences; dr_grpo — token sum over sequences × the constant
    max length; dapo — token mean over all tokens of the step; bnpo — each micro-batch's token mean, averaged."""
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")
    mask_f = mask.to(per_token.dtype)
    n_seq = per_token.shape[0]
    if loss_type == "grpo":
        return (per_token.sum(dim=1) / mask_f.sum(dim=1).clamp(min=1.0)).sum(), float(n_seq)
    if loss_type == "dr_grpo":
        return per_token.sum() / max_completion_len, float(n_seq)
    if loss_type == "dapo":
        return per_token.sum(), float(mask_f.sum())
    return per_token.sum() / mask_f.sum().clamp(min=1.0), 1.0
