"""Exact resume of SFT and distillation under torchrun FSDP2 (issue 22 item 3; GRPO's is in
test_grpo_resume.py): two ranks on a tied Qwen2 imported from transformers, resumed from a sharded DCP
checkpoint after step 2, log the very losses and metrics of an uninterrupted run. Distillation mixes off-policy
steps on the data with on-policy ones on the student's own samples, on both sides of the checkpoint, so each
rank's data position and sampling generator must come back."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
from hf_fixtures import CHATML, TEXTS, hf_model, save_hf
from torchrun_launch import torchrun

from mathforge.cli import main as mathforge
from training.metrics import read_metrics

VOLATILE = {"tokens_per_s", "mfu"}
SEED = 0  # with λ 0.5 steps 2 and 4 are on-policy: one on each side of the checkpoint, off-policy ones too
COMMON = ["--seq-len", "64", "--batch-size", "2", "--max-steps", "4", "--ckpt-every", "2", "--device", "cpu",
          "--log-every", "1", "--parallel", "fsdp", "--lr", "1e-2", "--warmup-frac", "0", "--seed", str(SEED)]  # fmt: skip


@pytest.fixture(scope="module")
def rows(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("fsdp_resume") / "rows.jsonl"
    pairs = [text.split(". ", 1) for text in TEXTS]
    path.write_text("".join(json.dumps({"prompt": p, "completion": c}) + "\n" for p, c in pairs))
    return path


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    """An untied one-layer Qwen2 with the student's tokenizer: another distribution to pull towards."""
    root = tmp_path_factory.mktemp("teacher")
    save_hf(hf_model("qwen2", tied=False, n_layers=1), root / "hf", sharded=False, chat_template=CHATML)
    assert mathforge(["model", "import", "--from", str(root / "hf"), "--out", str(root / "model")]) == 0
    return root / "model"


def _args(objective: str, rows: Path, init: Path, teacher: Path) -> list[str]:
    if objective == "sft":
        return ["-m", "training.objectives.sft", "--data", str(rows), "--init", str(init), *COMMON]
    return ["-m", "training.objectives.distill", "--data", str(rows), "--init", str(init), "--teacher",
            str(teacher), "--loss", "jsd", "--ce-weight", "0.5", "--lmbda", "0.5", "--max-new-tokens", "8",
            "--temperature", "1.0", *COMMON]  # fmt: skip


def _strip(path: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in VOLATILE} for r in read_metrics(path / "metrics.jsonl")]


@pytest.mark.timeout(600)
@pytest.mark.parametrize("objective", ["sft", "distill"])
def test_fsdp_resume_logs_the_uninterrupted_run(objective, rows, tied_qwen2, teacher, tmp_path) -> None:
    """The uninterrupted run keeps its step-2 checkpoint; a second run directory that holds only that
    checkpoint (a run that died right after writing it) resumes there and must log steps 3 and 4 as the
    uninterrupted run did."""
    args = _args(objective, rows, tied_qwen2, teacher)
    straight, cut = tmp_path / "straight", tmp_path / "cut"
    torchrun([*args, "--out", str(straight)])
    step2 = straight / "checkpoints" / "step_00000002"
    assert (step2 / "__1_0.distcp").is_file()  # FSDP2's sharded checkpoint: each rank wrote its own shards
    shutil.copytree(step2, cut / "checkpoints" / step2.name)
    torchrun([*args, "--out", str(cut), "--resume"])
    records, resumed = _strip(straight), _strip(cut)
    assert [r["step"] for r in records] == [1, 2, 3, 4] and [r["step"] for r in resumed] == [3, 4]
    assert resumed == records[2:]
    assert len({r["loss"] for r in records}) == 4  # it trained on fresh data every step
    if objective == "distill":
        drawn = [float(random.Random(SEED * 1_000_003 + step).random() < 0.5) for step in range(4)]
        assert [r["on_policy"] for r in records] == drawn == [0.0, 1.0, 0.0, 1.0]
        assert all(r["divergence"] > 0 for r in records)
