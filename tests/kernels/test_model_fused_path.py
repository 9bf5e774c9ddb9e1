"""The training model gives the same losses with its fused kernel path on and off (CPU reference).

Same seed, same batches, a few optimiser steps: the main head, the MTP head and the norms all go through
`kernels` when `fused_kernels` is on, so a kernel whose value or gradient drifts shows up as a diverging
loss curve.
"""

from __future__ import annotations

import pytest
import torch

import training.config as config_module
import training.models.transformer as model_module

VOCAB, SEQ, BATCH, STEPS = 200, 24, 3, 6


def batch():
    """One fixed batch, trained on repeatedly so that the loss has something to fall towards."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, VOCAB, (BATCH, SEQ + 1), generator=g)
    targets = ids[:, 1:].clone()
    targets[0, :5] = config_module.IGNORE_INDEX  # a prompt that carries no loss
    doc_ids = (torch.arange(SEQ) >= SEQ // 2).long().expand(BATCH, SEQ)  # two documents per row
    return ids[:, :-1], targets, doc_ids


def train(fused: bool) -> tuple[list[tuple[float, float]], torch.Tensor]:
    cfg = config_module.model_config("tiny", VOCAB, max_seq_len=SEQ, mtp_depth=1, fused_kernels=fused)
    model = model_module.Transformer(cfg, seed=0)
    optimiser = torch.optim.SGD(model.parameters(), lr=1.0)  # not Adam: it would hide a mis-scaled gradient
    losses = []
    ids, targets, doc_ids = batch()
    for _ in range(STEPS):
        out = model(ids, targets, doc_ids=doc_ids, mtp_weight=0.3)
        optimiser.zero_grad()
        out.loss.backward()
        optimiser.step()
        losses.append((out.main_loss.item(), out.mtp_losses[0].item()))
    with torch.no_grad():
        logprobs = model(ids, readout=model_module.TokenLogprobs(ids.roll(-1, dims=1)))
    return losses, logprobs


def test_fused_and_eager_paths_train_to_the_same_losses():
    fused_losses, fused_logprobs = train(fused=True)
    eager_losses, eager_logprobs = train(fused=False)
    assert fused_losses[-1][0] < fused_losses[0][0]  # it does train
    for (fused_main, fused_mtp), (eager_main, eager_mtp) in zip(fused_losses, eager_losses, strict=True):
        assert fused_main == pytest.approx(eager_main, rel=1e-4)
        assert fused_mtp == pytest.approx(eager_mtp, rel=1e-4)
    assert torch.allclose(fused_logprobs, eager_logprobs, rtol=1e-4, atol=1e-5)
