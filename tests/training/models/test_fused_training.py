"""The model's `fused_kernels` route (kernels/ for norms, head losses and log-probs) against plain PyTorch."""

from __future__ import annotations

import pytest
import torch

from training.config import (
    DataConfig,
    OptimConfig,
    PretrainConfig,
    PretrainModelConfig,
    RunConfig,
    model_config,
)
from training.metrics import read_metrics
from training.models.generation import completion_logprobs
from training.models.transformer import Transformer
from training.objectives.pretrain import run


def _config(data, out, fused: bool) -> PretrainConfig:
    return PretrainConfig(
        run=RunConfig(out=str(out), max_steps=6, log_every=1, device="cpu", fused_kernels=fused),
        data=DataConfig(data=str(data), vocab_size=512, seq_len=48, batch_size=4),
        optim=OptimConfig(lr=3e-3),
        model=PretrainModelConfig(mtp_depth=2),
    )


@pytest.mark.timeout(120)
def test_tiny_model_trains_to_the_same_losses_with_fused_kernels_on_and_off(corpus_dir, tmp_path) -> None:
    run(_config(corpus_dir, tmp_path / "plain", fused=False))
    run(_config(corpus_dir, tmp_path / "fused", fused=True))
    plain, fused = (
        read_metrics(tmp_path / "plain" / "metrics.jsonl"),
        read_metrics(tmp_path / "fused" / "metrics.jsonl"),
    )
    assert len(plain) == len(fused) == 6
    for a, b in zip(plain, fused, strict=True):
        for key in ("loss", "main_loss", "mtp_loss_1", "mtp_loss_2", "grad_norm"):
            assert b[key] == pytest.approx(a[key], rel=1e-4), (a["step"], key)
    assert fused[-1]["loss"] < fused[0]["loss"]


def test_fused_gradients_and_logprobs_match_plain_pytorch() -> None:
    models = [
        Transformer(model_config("tiny", 300, max_seq_len=32, mtp_depth=1, fused_kernels=fused), seed=2)
        for fused in (False, True)
    ]
    ids = torch.randint(3, 300, (3, 32), generator=torch.Generator().manual_seed(0))
    docs = torch.tensor([[0] * 12 + [1] * 20] * 3)
    targets = torch.where(docs[:, 1:] == docs[:, :-1], ids[:, 1:], -100)
    targets = torch.cat((targets, torch.full((3, 1), -100)), dim=1)
    for model in models:
        model(ids, targets, docs, mtp_weight=0.3).loss.backward()
    plain, fused = (dict(m.named_parameters()) for m in models)
    for name, param in plain.items():
        assert torch.allclose(param.grad, fused[name].grad, rtol=1e-4, atol=1e-6), name
    prompts, completions = [[0, 5, 6], [0, 9]], [[7, 8, 1], [4]]
    with torch.no_grad():
        expected, mask = completion_logprobs(models[0], prompts, completions)
        got, _ = completion_logprobs(models[1], prompts, completions)
    assert torch.allclose(expected[mask], got[mask], atol=1e-5)
