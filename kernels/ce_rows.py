"""The per-row softmax math shared by the cross-entropy and log-probability kernels, in plain PyTorch.

A "row op" takes one chunk of logits [C, V] and returns each row's loss and log-partition; when asked for
gradients it overwrites the chunk with them, so the chunk's memory is reused and no second [C, V] tensor
outlives the call. The Triton row op in `kernels.triton_ops` has the same contract and is tested against
this one.

Per row, with c = softcap(logits) * scale and lse = logsumexp(c):
    loss = (1 - eps) * (lse - c[target]) + eps * (lse - mean(c)) + z_loss * lse**2
and 0 for rows whose target is `ignore_index`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import torch


@dataclass(frozen=True)
class RowOptions:
    """What a row op computes; the defaults give plain cross-entropy."""

    ignore_index: int = -100
    label_smoothing: float = 0.0
    z_loss: float = 0.0
    softcap: float | None = None
    scale: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.label_smoothing <= 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1], got {self.label_smoothing}")
        if self.z_loss < 0.0:
            raise ValueError(f"z_loss must be >= 0, got {self.z_loss}")
        if self.softcap is not None and not self.softcap > 0.0:
            raise ValueError(f"softcap must be > 0 or None, got {self.softcap}")
        if not (math.isfinite(self.scale) and self.scale > 0.0):
            raise ValueError(f"scale (1 / temperature) must be finite and > 0, got {self.scale}")


class RowOp(Protocol):
    def __call__(
        self,
        logits: torch.Tensor,
        targets: torch.Tensor,
        opts: RowOptions,
        grad_scale: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]: ...


def ce_rows_torch(
    logits: torch.Tensor,
    targets: torch.Tensor,
    opts: RowOptions,
    grad_scale: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Row losses and log-partitions (fp32, [C]) of `logits` [C, V].

    With `grad_scale` [C], `logits` is overwritten with grad_scale[i] * d loss_i / d logits[i] (zero for
    ignored rows). The math runs in fp32 at least (fp64 stays fp64, for gradcheck).
    """
    valid = targets != opts.ignore_index
    safe_targets = torch.where(valid, targets, 0).unsqueeze(1)
    z = logits.to(torch.promote_types(logits.dtype, torch.float32))
    tanh = None
    if opts.softcap is not None:
        tanh = torch.tanh(z / opts.softcap)
        z = tanh * opts.softcap
    if opts.scale != 1.0:
        z = z * opts.scale
    lse = torch.logsumexp(z, dim=1)
    eps = opts.label_smoothing
    loss = lse - z.gather(1, safe_targets).squeeze(1)
    if eps:
        loss = (1.0 - eps) * loss + eps * (lse - z.mean(dim=1))
    if opts.z_loss:
        loss = loss + opts.z_loss * lse.square()
    loss = torch.where(valid, loss, 0.0)
    if grad_scale is not None:
        grad = z.sub_(lse.unsqueeze(1)).exp_()  # z may alias fp32 logits: they are overwritten anyway
        if opts.z_loss:
            grad.mul_((1.0 + 2.0 * opts.z_loss * lse).unsqueeze(1))
        if eps:
            grad.sub_(eps / logits.shape[1])
        grad.scatter_add_(1, safe_targets, torch.full_like(safe_targets, eps - 1.0, dtype=grad.dtype))
        if tanh is not None:
            grad.mul_(1.0 - tanh.square_())
        row_scale = torch.where(valid, grad_scale.to(z.dtype), 0.0) * opts.scale
        logits.copy_(grad.mul_(row_scale.unsqueeze(1)))
    return loss, lse
