"""Fused linear cross-entropy: the loss of `hidden @ weight.T` without materialising the logits.

The logits of a language-model head are its largest tensor (tokens × vocabulary); this computes the loss
and both input gradients one chunk of rows at a time, so the extra memory is one chunk.
"""

from __future__ import annotations

from typing import Literal

import torch

from kernels.backend import resolve_backend
from kernels.ce_rows import RowOptions
from kernels.chunked import RowLoss, check_linear_inputs, weighted_loss

Reduction = Literal["mean", "sum", "none"]


def fused_linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    backend: str | None = None,
    *,
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Cross-entropy of `hidden` [N, H] @ `weight` [V, H].T against `targets` [N].

    Matches `F.cross_entropy(hidden @ weight.T, targets, ignore_index=..., label_smoothing=...)`, plus
    optional `z_loss` * logsumexp² per row (PaLM) and `softcap` * tanh(logits / softcap) (Gemma 2).
    "mean" averages over non-ignored rows and is 0 (with zero gradients) when every row is ignored;
    "none" returns [N] with 0 on ignored rows. With "mean"/"sum" the gradients are computed in the forward
    pass; "none" recomputes each chunk in backward, since its rows can be weighted unevenly.
    """
    opts = RowOptions(
        ignore_index=ignore_index, label_smoothing=label_smoothing, z_loss=z_loss, softcap=softcap
    )
    check_linear_inputs(hidden, weight, targets, opts)
    chosen = resolve_backend(backend, hidden, weight, targets)
    if reduction == "none":
        return RowLoss.apply(hidden, weight, targets, opts, chosen, chunk_size)
    valid = (targets != ignore_index).to(torch.promote_types(hidden.dtype, torch.float32))
    if reduction == "mean":
        row_weight = valid / valid.sum().clamp_min(1.0)
    elif reduction == "sum":
        row_weight = valid
    else:
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    return weighted_loss(hidden, weight, targets, row_weight, opts, chosen, chunk_size)
