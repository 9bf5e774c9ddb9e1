"""SFT: prompt masking, token-weighted accumulation, exact resume, torchrun, and learning a verifiable task."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchrun_launch import torchrun

from training.config import IGNORE_INDEX, OptimConfig, RunConfig, SFTConfig, SFTDataConfig, model_config
from training.data.packing import Batch
from training.data.synthetic import write_last_number_task
from training.distributed import Dist
from training.metrics import read_metrics
from training.models.transformer import Transformer
from training.objectives.sft import Example, SFTLoader, SFTObjective, pack_row, run
from training.trainer import Trainer


@pytest.fixture(scope="module")
def task(tmp_path_factory) -> dict[str, Path]:
    return write_last_number_task(tmp_path_factory.mktemp("task"), n_train=400, n_test=40)


def _config(data: Path, init: Path, out: Path, **run_options) -> SFTConfig:
    options = {"max_steps": 6, "log_every": 1, "ckpt_every": 1000, "device": "cpu", **run_options}
    return SFTConfig(
        run=RunConfig(out=str(out), **options),
        sft=SFTDataConfig(data=str(data), init=str(init), seq_len=256, batch_size=2),
        optim=OptimConfig(lr=3e-3),
    )


def test_targets_are_exactly_the_completion_tokens_of_a_hand_built_row() -> None:
    a = Example(np.array([1, 10, 11, 12, 20, 21, 2]), prompt_len=4)  # completion 20 21 2
    b = Example(np.array([1, 30, 40, 2]), prompt_len=2)  # completion 40 2
    ids, targets, docs = pack_row([a, b], 14, pad_id=0)
    assert ids.tolist() == [1, 10, 11, 12, 20, 21, 2, 1, 30, 40, 2, 0, 0, 0]
    ignore = IGNORE_INDEX
    assert targets.tolist() == [ignore, ignore, ignore, 20, 21, 2, ignore, ignore, 40, 2] + [ignore] * 4
    assert docs.tolist() == [0] * 7 + [1] * 4 + [2] * 3


def test_the_sft_loss_is_the_cross_entropy_of_the_completion_tokens_alone() -> None:
    model = Transformer(model_config("tiny", 64, max_seq_len=32, mtp_depth=0), seed=2)
    a = Example(np.array([1, 10, 11, 12, 20, 21, 2]), prompt_len=4)
    b = Example(np.array([1, 30, 40, 2]), prompt_len=2)
    row = pack_row([a, b], 16, pad_id=0)
    batch = Batch(*(torch.from_numpy(x)[None] for x in row))
    objective = SFTObjective.__new__(SFTObjective)
    objective.device = torch.device("cpu")
    assert objective.loss_tokens(batch) == 3 + 2
    loss_sum, _ = objective.loss(model, batch)
    with torch.no_grad():  # each example alone, unpacked: the sum of -log p over its completion tokens
        expected = 0.0
        for ex in (a, b):
            ids = torch.from_numpy(ex.tokens)[None]
            logits = model.logits(model.trunk(ids))[0, :-1]
            per_token = F.cross_entropy(logits, ids[0, 1:], reduction="none")
            expected += per_token[ex.prompt_len - 1 :].sum().item()
    assert loss_sum.item() == pytest.approx(expected, rel=1e-5)


def test_token_weighted_accumulation_gives_the_gradient_of_one_big_batch(init_model, task, tmp_path) -> None:
    """Micro-batches with 40 and 2 completion tokens: accumulating them gives exactly the gradient of the
    batch holding both, unlike averaging the two micro-batch means."""
    long = Example(np.arange(5, 55), prompt_len=10)
    short = Example(np.array([1, 5, 6, 7]), prompt_len=2)
    rows = [pack_row([ex], 64, pad_id=0) for ex in (long, short)]
    big = Batch(*(torch.from_numpy(np.stack(parts)) for parts in zip(*rows, strict=True)))
    micro = [Batch(*(torch.from_numpy(x)[None] for x in row)) for row in rows]

    cfg = _config(task["train"], init_model, tmp_path / "unused")
    objective = SFTObjective(cfg)
    objective.device = torch.device("cpu")
    model = Transformer(model_config("tiny", 64, max_seq_len=64, mtp_depth=0), seed=3)
    trainer = Trainer(cfg.run, cfg.optim, objective, Dist(0, 1, 0, torch.device("cpu")), model, model, None)

    def grads(batches: list[Batch]) -> torch.Tensor:
        model.zero_grad()
        trainer.accumulate(batches)
        return torch.cat([p.grad.flatten() for p in model.parameters()])

    one, accumulated = grads([big]), grads(micro)
    assert torch.allclose(one, accumulated, rtol=1e-5, atol=1e-7)
    model.zero_grad()
    for batch in micro:  # the mean of means weights the 2-token example like the 40-token one
        loss_sum, _ = objective.loss(model, batch)
        (loss_sum / objective.loss_tokens(batch) / 2).backward()
    mean_of_means = torch.cat([p.grad.flatten() for p in model.parameters()])
    assert not torch.allclose(one, mean_of_means, rtol=1e-2)


def test_loader_resumes_at_the_same_example_and_skips_what_does_not_fit() -> None:
    examples = [Example(np.arange(1, 2 + n), prompt_len=1) for n in (5, 9, 3, 40, 7, 6, 2, 8)]
    loader = SFTLoader(examples, 16, 2, pad_id=0, seed=1)
    first = [next(loader) for _ in range(3)]
    state = loader.state_dict()
    rest = [next(loader) for _ in range(4)]
    again = SFTLoader(examples, 16, 2, pad_id=0, seed=1)
    again.load_state_dict(state)
    for a, b in zip(rest, [next(again) for _ in range(4)], strict=True):
        assert torch.equal(a.input_ids, b.input_ids) and torch.equal(a.targets, b.targets)
    assert loader.stats["skipped_too_long"] == 1  # the 41-token example, counted once per epoch
    assert all((b.doc_ids >= 0).all() for b in first)


@pytest.mark.timeout(240)
def test_sft_resume_reproduces_an_uninterrupted_run_bit_for_bit(init_model, task, tmp_path) -> None:
    run(_config(task["train"], init_model, tmp_path / "straight"))
    run(_config(task["train"], init_model, tmp_path / "cut", stop_at=3, ckpt_every=3))
    run(_config(task["train"], init_model, tmp_path / "cut", resume=True, ckpt_every=3))
    straight = read_metrics(tmp_path / "straight" / "metrics.jsonl")
    resumed = read_metrics(tmp_path / "cut" / "metrics.jsonl")
    keys = ("loss", "grad_norm", "lr", "tokens", "completion_tokens")
    assert [{k: r[k] for k in keys} for r in straight] == [{k: r[k] for k in keys} for r in resumed]
    assert straight[-1]["loss"] < straight[0]["loss"]
    config = json.loads((tmp_path / "straight" / "config.json").read_text())
    assert config["objective"] == "sft" and config["template"]["kind"] == "r1"
    assert config["model_config"]["mtp_depth"] == 0  # MTP modules are dropped for SFT


@pytest.mark.timeout(300)
def test_sft_under_torchrun_keeps_ranks_identical_and_fsdp_matches_ddp(init_model, task, tmp_path) -> None:
    common = [
        "-m",
        "training.objectives.sft",
        "--data",
        str(task["train"]),
        "--init",
        str(init_model),
        "--max-steps",
        "4",
        "--seq-len",
        "256",
        "--batch-size",
        "2",
        "--grad-accum",
        "2",
        "--device",
        "cpu",
        "--log-every",
        "1",
        "--rank-logs",
    ]
    torchrun([*common, "--out", str(tmp_path / "ddp")])
    torchrun([*common, "--out", str(tmp_path / "fsdp"), "--parallel", "fsdp"])
    for run_dir in ("ddp", "fsdp"):
        rank0, rank1 = (read_metrics(tmp_path / run_dir / f"rank{r}.jsonl") for r in (0, 1))
        digests = [r["param_digest"] for r in rank0]
        assert digests == [r["param_digest"] for r in rank1] and len(set(digests)) == 4
        assert all(a["batch_digest"] != b["batch_digest"] for a, b in zip(rank0, rank1, strict=True))
    ddp, fsdp = (read_metrics(tmp_path / d / "metrics.jsonl") for d in ("ddp", "fsdp"))
    for a, b in zip(ddp, fsdp, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
