"""On-policy distillation steps are bounded like off-policy ones: at most batch_size rows of seq_len per
micro-batch. They used to complete every prompt of the packed rows and give each sample a row of its own, so
a step with short examples built tens of full-length rows (memory spikes at the random on-policy steps)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from training.config import DistillConfig, DistillOptimConfig, DistillOptions, RunConfig, SFTDataConfig
from training.distributed import Dist
from training.metrics import read_metrics
from training.objectives.distill import DistillObjective
from training.objectives.distill import run as distill
from training.trainer import TrainContext


def _config(init: Path, data: Path, out: Path, **run) -> DistillConfig:
    return DistillConfig(
        run=RunConfig(out=str(out), **{"max_steps": 2, "log_every": 1, "device": "cpu", **run}),
        data=SFTDataConfig(data=str(data), init=str(init), template="plain", seq_len=128, batch_size=2),
        distill=DistillOptions(teacher=str(init), lmbda=1.0, max_new_tokens=200),
        optim=DistillOptimConfig(lr=1e-2, grad_accum=2),
    )


@pytest.mark.timeout(300)
def test_on_policy_micro_batches_hold_batch_size_rows(init_model, tmp_path) -> None:
    data = tmp_path / "short.jsonl"  # a few tokens each: an off-policy row packs many
    data.write_text("".join(json.dumps({"prompt": f"Last of {i}, {i + 3}?", "completion": f"{i + 3}."}) + "\n"
                            for i in range(64)))  # fmt: skip
    cfg = _config(init_model, data, tmp_path / "run")
    objective = DistillObjective(cfg)
    (tmp_path / "run").mkdir()
    model = objective.setup(
        TrainContext(Dist(0, 1, 0, torch.device("cpu")), tmp_path / "run", cfg.run, False)
    )
    assert objective.loader is not None
    per_row = len(objective.loader.next_rows()[0])
    assert per_row >= 3  # short examples: an off-policy row packs several
    start = objective.loader.position.index

    objective.begin_step(0, model)
    batches = [objective.next_batch() for _ in range(2)]
    for batch in batches:
        assert batch.on_policy and tuple(batch.input_ids.shape) == (2, 128)
        assert (batch.doc_ids[:, 0] == 0).all()  # one sample per row
    assert objective.loader.position.index == start + 2 * 2  # batch_size prompts per micro-batch
    # max_new_tokens beyond the row: a sample fills at most its row (prompt + completion <= seq_len)
    assert all(int((b.doc_ids == 0).sum(dim=1).max()) <= 128 for b in batches)

    summary = distill(_config(init_model, data, tmp_path / "trained"))
    assert summary["step"] == 2
    records = read_metrics(tmp_path / "trained" / "metrics.jsonl")
    assert [r["on_policy"] for r in records] == [1.0, 1.0]
    assert all(r["divergence"] == pytest.approx(0.0, abs=1e-5) for r in records[:1])  # its own teacher
