"""Models with tied input/output embeddings (Qwen2.5-0.5B/1.5B, Llama 3.2 1B) and untied ones go the whole way:
a tiny random transformers Qwen2 → `mathforge model import` → `train sft` with the fine-tuning defaults →
stopped at a checkpoint → resumed → `model export` → `AutoModelForCausalLM.from_pretrained`, whose greedy
continuation equals mathforge's. A checkpoint stores the tied matrix once (safetensors refuses one buffer
under two names, which is how the single-process path used to die at its first checkpoint)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.distributed.checkpoint as dcp
import transformers
from hf_fixtures import CHATML, TEXTS, hf_model, save_hf
from safetensors import safe_open

from mathforge.cli import main as mathforge
from training.metrics import read_metrics
from training.models.checkpoint import latest_checkpoint
from training.models.generation import generate
from training.models.model_io import load_model

VOLATILE = {"tokens_per_s", "mfu"}


def _keys(path: Path) -> set[str]:
    with safe_open(path, framework="pt") as fh:
        return set(fh.keys())


def _sft_rows(path: Path) -> Path:
    rows = [{"prompt": text.split(". ", 1)[0], "completion": text.split(". ", 1)[1]} for text in TEXTS]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _metrics(run: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in VOLATILE} for r in read_metrics(run / "metrics.jsonl")]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("tied", [True, False])
def test_import_sft_stop_resume_export_reload(tmp_path, tied: bool) -> None:
    save_hf(hf_model("qwen2", tied), tmp_path / "hf", sharded=False, chat_template=CHATML)
    assert (
        mathforge(["model", "import", "--from", str(tmp_path / "hf"), "--out", str(tmp_path / "model")]) == 0
    )
    data = _sft_rows(tmp_path / "sft.jsonl")
    sft = ["train", "sft", "--data", str(data), "--init", str(tmp_path / "model"), "--seq-len", "64",
           "--batch-size", "2", "--max-steps", "6", "--device", "cpu", "--log-every", "1"]  # fmt: skip

    straight, cut = tmp_path / "straight", tmp_path / "cut"
    assert mathforge([*sft, "--out", str(straight), "--ckpt-every", "3"]) == 0
    assert mathforge([*sft, "--out", str(cut), "--ckpt-every", "3", "--stop-at", "3"]) == 0

    # the checkpoint holds the tied matrix once, in the weights and in the Adam state
    checkpoint = latest_checkpoint(cut / "checkpoints")
    assert checkpoint is not None and checkpoint.name == "step_00000003"
    weights, adam = _keys(checkpoint / "model.safetensors"), _keys(checkpoint / "optimizer.safetensors")
    assert "embed.weight" in weights and ("head.weight" in weights) != tied
    assert "embed.weight/exp_avg" in adam and ("head.weight/exp_avg" in adam) != tied

    assert mathforge([*sft, "--out", str(cut), "--ckpt-every", "3", "--resume"]) == 0
    assert _metrics(cut) == _metrics(straight)  # the resumed run is the uninterrupted one

    loaded = load_model(cut)
    model = loaded.model
    assert model.cfg.tie_embeddings == tied and (model.head.weight is model.embed.weight) == tied
    init = load_model(tmp_path / "model").model
    assert not torch.equal(model.layers[0].attn.wq.weight, init.layers[0].attn.wq.weight)  # it trained
    straight_model = load_model(straight).model
    for (name, a), b in zip(model.state_dict().items(), straight_model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name

    assert mathforge(["model", "export", "--from", str(cut), "--out", str(tmp_path / "export")]) == 0
    config = json.loads((tmp_path / "export" / "config.json").read_text())
    assert config["tie_word_embeddings"] == tied
    assert ("lm_head.weight" in _keys(tmp_path / "export" / "model.safetensors")) != tied
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "export").eval()
    assert (reloaded.lm_head.weight is reloaded.model.embed_tokens.weight) == tied
    assert torch.equal(reloaded.model.embed_tokens.weight, model.embed.weight.detach())

    prompt = loaded.tokenizer.encode(TEXTS[3]).ids[:8]
    ours = generate(model, [prompt], 12, temperature=0).tokens[0]
    theirs = reloaded.generate(
        torch.tensor([prompt]),
        attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
        max_new_tokens=12,
        do_sample=False,
        eos_token_id=None,
        pad_token_id=0,
    )[0, len(prompt) :]
    assert ours == theirs.tolist()


@pytest.mark.timeout(600)
@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_tied_model_under_torchrun_checkpoints_once_and_resumes(tmp_path, parallel: str) -> None:
    """Two ranks: DDP's full state is written with the matrix once; FSDP2's sharded DCP checkpoint holds the
    matrix once too, and `model convert` gathers it into a tied model directory. The resumed ranks stay
    identical, and the result exports to a tied transformers model."""
    from torchrun_launch import torchrun

    save_hf(hf_model("qwen2", tied=True), tmp_path / "hf", sharded=False, chat_template=CHATML)
    assert (
        mathforge(["model", "import", "--from", str(tmp_path / "hf"), "--out", str(tmp_path / "model")]) == 0
    )
    out = tmp_path / "run"
    args = ["-m", "training.objectives.sft", "--data", str(_sft_rows(tmp_path / "sft.jsonl")), "--init",
            str(tmp_path / "model"), "--out", str(out), "--seq-len", "64", "--batch-size", "2", "--max-steps", "4",
            "--ckpt-every", "2", "--device", "cpu", "--log-every", "1", "--rank-logs", "--parallel", parallel,
            "--lr", "1e-3"]  # fmt: skip
    torchrun([*args, "--stop-at", "2"])
    step2 = out / "checkpoints" / "step_00000002"
    if parallel == "ddp":
        weights = _keys(step2 / "model.safetensors")
    else:  # the DCP default under FSDP2: rank shards, no full-state file
        assert not (step2 / "model.safetensors").exists() and (step2 / "__1_0.distcp").is_file()
        stored = dcp.FileSystemReader(str(step2)).read_metadata().state_dict_metadata
        weights = {k.removeprefix("model.") for k in stored if k.startswith("model.")}
    assert "embed.weight" in weights and "head.weight" not in weights
    torchrun([*args, "--resume"])
    rank0, rank1 = (read_metrics(out / f"rank{r}.jsonl") for r in (0, 1))
    assert [r["step"] for r in rank0] == [1, 2, 3, 4]
    assert [r["param_digest"] for r in rank0] == [r["param_digest"] for r in rank1]

    model = load_model(out).model
    assert model.head.weight is model.embed.weight
    assert mathforge(["model", "convert", "--from", str(out), "--out", str(tmp_path / "converted")]) == 0
    converted = load_model(tmp_path / "converted").model
    assert converted.head.weight is converted.embed.weight
    for (name, a), b in zip(model.state_dict().items(), converted.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert mathforge(["model", "export", "--from", str(out), "--out", str(tmp_path / "export")]) == 0
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "export").eval()
    assert reloaded.lm_head.weight is reloaded.model.embed_tokens.weight
    assert torch.equal(reloaded.model.embed_tokens.weight, model.embed.weight.detach())
