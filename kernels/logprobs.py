"""Per-token log-probabilities of chosen tokens under `hidden @ weight.T`, without the full logits.

The building block of GRPO (policy and reference log-probs of sampled tokens) and of logit distillation:
each needs log p(token) over the whole vocabulary, for every position, with gradients.
"""

from __future__ import annotations

import torch

from kernels.backend import resolve_backend
from kernels.ce_rows import RowOptions
from kernels.chunked import RowLoss, check_linear_inputs


def token_logprobs(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    token_ids: torch.Tensor,
    backend: str | None = None,
    *,
    temperature: float = 1.0,
    softcap: float | None = None,
    ignore_index: int = -100,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """log softmax(softcap(hidden @ weight.T) / temperature)[i, token_ids[i]] as fp32 [N].

    Differentiable with respect to `hidden` and `weight`; rows whose token is `ignore_index` (e.g. prompt
    positions) give 0 and no gradient. `temperature` should match the one the tokens were sampled at.
    """
    if not temperature > 0.0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    opts = RowOptions(ignore_index=ignore_index, softcap=softcap, scale=1.0 / temperature)
    check_linear_inputs(hidden, weight, token_ids, opts)
    chosen = resolve_backend(backend, hidden, weight, token_ids)
    return -RowLoss.apply(hidden, weight, token_ids, opts, chosen, chunk_size)
