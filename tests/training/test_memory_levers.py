"""The memory levers a 1.5B run needs, under torchrun with two CPU ranks (gloo) and FSDP2: a bf16
mixed-precision policy whose master weights stay fp32, sharded DCP checkpoints that resume exactly and convert
to a model directory, and a frozen reference sharded like the policy."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.distributed.checkpoint as dcp
from torchrun_launch import pretrain_ranks
from torchrun_launch import torchrun as torchrun_ranks
from training_corpus import write_corpus

from mathforge.cli import main as mathforge
from training.metrics import read_metrics
from training.models.model_io import load_model

VOLATILE = {"tokens_per_s", "mfu"}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("levers_corpus")
    write_corpus(root, n_docs=60, n_shards=3, row_group_size=5)
    return root


def _metrics(out: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in VOLATILE} for r in read_metrics(out / "metrics.jsonl")]


@pytest.fixture(scope="module")
def fp32_full(data, tmp_path_factory) -> Path:
    """The reference run: FSDP2 in fp32, full-state safetensors checkpoints."""
    out = tmp_path_factory.mktemp("fp32") / "run"
    pretrain_ranks(data, out, "--parallel fsdp --ckpt-format safetensors")
    return out


@pytest.mark.timeout(600)
def test_dcp_checkpoints_hold_shards_resume_exactly_and_convert(data, fp32_full, tmp_path) -> None:
    out = tmp_path / "run"
    pretrain_ranks(data, out, "--parallel fsdp --stop-at 2")  # dcp is the default under torchrun FSDP2
    step2 = out / "checkpoints" / "step_00000002"
    files = {p.name for p in step2.iterdir()}
    # one shard file per rank and DCP's metadata; no full-state file, not even on rank 0
    assert files == {"__0_0.distcp", "__1_0.distcp", ".metadata", "meta.json", "rng.safetensors"}
    assert not any(p.name.startswith(".tmp-") for p in (out / "checkpoints").iterdir())
    full_bytes = (fp32_full / "checkpoints" / "step_00000004" / "model.safetensors").stat().st_size
    full_bytes += (fp32_full / "checkpoints" / "step_00000004" / "optimizer.safetensors").stat().st_size
    for shard in ("__0_0.distcp", "__1_0.distcp"):  # each rank wrote about half of the weights + Adam state
        assert (step2 / shard).stat().st_size < 0.7 * full_bytes
    meta = dcp.FileSystemReader(str(step2)).read_metadata().state_dict_metadata
    wq = meta["model.layers.0.attn.wq.weight"]
    assert "optimizer.state.layers.0.attn.wq.weight.exp_avg" in meta
    assert len({chunk.offsets for chunk in wq.chunks}) == 2  # stored as two rank shards

    pretrain_ranks(data, out, "--parallel fsdp --resume")
    assert _metrics(out) == _metrics(fp32_full)  # the format changes nothing; the resume is exact
    digests = [[r["param_digest"] for r in read_metrics(run / "rank1.jsonl")] for run in (out, fp32_full)]
    assert digests[0] == digests[1]

    converted = tmp_path / "converted"
    checkpoint = out / "checkpoints" / "step_00000004"
    assert mathforge(["model", "convert", "--from", str(checkpoint), "--out", str(converted)]) == 0
    assert (converted / "model.json").is_file() and (converted / "tokenizer.json").is_file()
    ours, theirs = load_model(converted).model.state_dict(), load_model(fp32_full).model.state_dict()
    assert list(ours) == list(theirs)
    for name, tensor in ours.items():
        assert torch.equal(tensor, theirs[name]), name
    assert not torch.equal(ours["layers.0.attn.wq.weight"], load_model(step2).model.layers[0].attn.wq.weight)


@pytest.mark.timeout(600)
def test_bf16_policy_trains_close_to_fp32_and_keeps_fp32_master_weights(data, fp32_full, tmp_path) -> None:
    out = tmp_path / "run"
    pretrain_ranks(data, out, "--parallel fsdp --mixed-precision bf16")
    bf16, fp32 = read_metrics(out / "metrics.jsonl"), read_metrics(fp32_full / "metrics.jsonl")
    assert [r["step"] for r in bf16] == [1, 2, 3, 4]
    for a, b in zip(bf16, fp32, strict=True):
        assert math.isfinite(a["loss"]) and a["loss"] == pytest.approx(b["loss"], rel=1e-3)
    assert [a["loss"] for a in bf16] != [b["loss"] for b in fp32]  # the policy did compute in bf16
    rank0, rank1 = (read_metrics(out / f"rank{r}.jsonl") for r in (0, 1))
    assert [r["param_digest"] for r in rank0] == [r["param_digest"] for r in rank1]
    # the sharded master weights and Adam's moments the checkpoint holds stay fp32
    meta = (
        dcp.FileSystemReader(str(out / "checkpoints" / "step_00000004")).read_metadata().state_dict_metadata
    )
    for key in ("model.layers.0.attn.wq.weight", "optimizer.state.layers.0.attn.wq.weight.exp_avg_sq"):
        assert meta[key].properties.dtype == torch.float32, key


@pytest.mark.timeout(300)
def test_frozen_reference_is_sharded_and_scores_like_the_full_one(tmp_path) -> None:
    torchrun_ranks([str(Path(__file__).with_name("torchrun_frozen.py")), "--out", str(tmp_path)], timeout=200)
    for rank in (0, 1):
        record = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert record["ref_numel"] == record["full_numel"] // 2  # each rank holds half of the reference
        assert record["root_resharded"]  # nothing stays gathered after a forward
        assert record["max_diff"] < 1e-5  # the sharded reference's log-probs are the plain model's
        assert record["ref_dtypes"] == ["torch.bfloat16"]  # --ref-dtype bf16
        assert 0 < record["max_diff_bf16"] < 0.05
        assert record["head_equal"] and record["synced_equal"]
