"""GRPO's exact resume with a synced reference (iterative GRPO, `--ref-sync-every`): the reference is a past
policy that only the checkpoint can bring back, so a stopped and resumed run must log the very KL of an
uninterrupted one. And completions that fill the whole context train instead of crashing the log-prob pass."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed.checkpoint as dcp
from safetensors import safe_open

from training.config import GRPOConfig, GRPODataConfig, GRPOOptimConfig, RunConfig, model_config
from training.data.synthetic import write_last_number_task
from training.metrics import read_metrics
from training.models.hf import save_model_dir
from training.models.transformer import Transformer
from training.objectives.grpo import run

VOLATILE = {"tokens_per_s", "rollout_tokens_per_s", "mfu"}


@pytest.fixture(scope="module")
def prompts(tmp_path_factory) -> Path:
    return write_last_number_task(tmp_path_factory.mktemp("grpo_resume"), n_train=32, n_test=2)["train"]


def _config(prompts: Path, init: Path, out: Path, run_options=None, **grpo) -> GRPOConfig:
    options = {"max_steps": 6, "log_every": 1, "ckpt_every": 1000, "device": "cpu", **(run_options or {})}
    settings = {"num_generations": 4, "prompts_per_step": 2, "max_new_tokens": 10, "template": "plain",
                "verify_workers": 1, "samples_every": 0, "reward": ("grpo_fixtures:odd_digits",), **grpo}  # fmt: skip
    return GRPOConfig(
        run=RunConfig(out=str(out), **options),
        grpo=GRPODataConfig(prompts=str(prompts), init=str(init), **settings),
        optim=GRPOOptimConfig(lr=3e-2, warmup_frac=0.0),
    )


def _strip(path: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in VOLATILE} for r in read_metrics(path / "metrics.jsonl")]


@pytest.mark.timeout(300)
def test_resume_restores_the_synced_reference(prompts, init_model, tmp_path) -> None:
    """Synced at steps 2 and 4, stopped after step 3: step 4's rollout scores against the step-2 policy, which
    the old code replaced by the init model on resume."""
    grpo = {"beta": 0.04, "ref_sync_every": 2, "temperature": 1.2}
    seed = {"seed": 1}  # a rollout stream whose groups score unequally at steps 1, 3 and 5: the policy moves
    run(_config(prompts, init_model, tmp_path / "straight", seed, **grpo))
    run(_config(prompts, init_model, tmp_path / "cut", {"stop_at": 3, "ckpt_every": 3, **seed}, **grpo))
    with safe_open(tmp_path / "cut" / "checkpoints" / "step_00000003" / "objective.safetensors", "pt") as fh:
        assert "ref.embed.weight" in set(fh.keys())
    run(_config(prompts, init_model, tmp_path / "cut", {"resume": True, "ckpt_every": 3, **seed}, **grpo))
    straight, resumed = _strip(tmp_path / "straight"), _strip(tmp_path / "cut")
    assert [r["step"] for r in resumed] == [1, 2, 3, 4, 5, 6]
    assert straight == resumed
    # the reference is the policy itself on steps 0, 2 and 4 (init, synced), then the policy moves away
    assert [r["kl"] == 0 for r in straight] == [True, False] * 3


@pytest.mark.timeout(300)
def test_a_reference_without_sync_is_not_stored(prompts, init_model, tmp_path) -> None:
    """Without --ref-sync-every the reference is the init model, which a resume loads again: nothing extra."""
    cfg = _config(prompts, init_model, tmp_path / "run", {"max_steps": 1}, beta=0.04)
    run(cfg)
    assert not (tmp_path / "run" / "checkpoints" / "step_00000001" / "objective.safetensors").exists()


@pytest.mark.timeout(300)
def test_completions_that_fill_the_context_train(prompts, tokenizer, tmp_path) -> None:
    """max_new_tokens far beyond the context: generation stops where prompt + completion = max_seq_len, the
    log-prob pass accepts that (it used to get one token more and raise)."""
    root = tmp_path / "init"
    root.mkdir()
    tokenizer.save(str(root / "tokenizer.json"))
    cfg = model_config("tiny", tokenizer.get_vocab_size(), max_seq_len=40, mtp_depth=0)
    init = save_model_dir(Transformer(cfg, seed=1), root / "tokenizer.json", root / "model", {})
    out = tmp_path / "run"
    summary = run(
        _config(prompts, init, out, {"max_steps": 2}, max_new_tokens=500, temperature=1.0, beta=0.04)
    )
    assert summary["step"] == 2
    records = read_metrics(out / "metrics.jsonl")
    # with max_new_tokens 500 only the context cuts a completion: some did reach it
    assert any(r["truncated_frac"] > 0 for r in records)


@pytest.mark.timeout(600)
@pytest.mark.parametrize(("ckpt_format", "init"), [("dcp", "tied_qwen2"), ("safetensors", "init_model")])
def test_fsdp_resume_restores_the_synced_reference(
    prompts, tmp_path, request, ckpt_format: str, init: str
) -> None:
    """The issue's case: two FSDP2 ranks, β 0.04, sync every 2 steps, stopped after step 3 and resumed, on a
    tied Qwen2 imported from transformers (checkpointed the FSDP2 way, DCP shards) and on an untied model with
    MTP (gathered into safetensors). The reference is sharded like the policy."""
    from torchrun_launch import torchrun

    init_model = request.getfixturevalue(init)

    def args(out: Path) -> list[str]:
        return ["-m", "training.objectives.grpo", "--prompts", str(prompts), "--init", str(init_model), "--out", str(out),
                "--max-steps", "5", "--num-generations", "4", "--prompts-per-step", "2", "--max-new-tokens", "8",
                "--template", "plain", "--device", "cpu", "--log-every", "1", "--verify-workers", "1",
                "--reward", "tests.training.grpo_fixtures:odd_digits", "--beta", "0.04", "--ref-sync-every", "2",
                "--parallel", "fsdp", "--lr", "3e-2", "--warmup-frac", "0", "--samples-every", "0",
                "--ckpt-every", "3", "--ckpt-format", ckpt_format]  # fmt: skip

    torchrun(args(tmp_path / "straight"))
    torchrun([*args(tmp_path / "cut"), "--stop-at", "3"])
    step3 = tmp_path / "cut" / "checkpoints" / "step_00000003"
    if ckpt_format == "dcp":
        stored = dcp.FileSystemReader(str(step3)).read_metadata().state_dict_metadata
        assert len(stored["objective.ref.layers.0.attn.wq.weight"].chunks) == 2  # two rank shards
    else:
        with safe_open(step3 / "objective.safetensors", "pt") as fh:
            assert "ref.layers.0.attn.wq.weight" in set(fh.keys())
    torchrun([*args(tmp_path / "cut"), "--resume"])
    straight, resumed = _strip(tmp_path / "straight"), _strip(tmp_path / "cut")
    assert [r["step"] for r in resumed] == [1, 2, 3, 4, 5]
    assert straight == resumed
    assert straight[3]["kl"] > 0  # step 4 scores against the policy synced at step 2


@pytest.mark.timeout(300)
def test_masked_truncated_completions_leave_the_loss(prompts, init_model, tmp_path) -> None:
    """--truncated mask (DAPO's overlong filtering): with every completion cut off at 3 tokens nothing enters
    the loss, so the policy keeps its init weights, where --truncated zero trains on the same rollouts."""
    from training.models.model_io import load_model

    grpo = {"max_new_tokens": 3, "temperature": 1.0}
    masked = run(_config(prompts, init_model, tmp_path / "mask", {"max_steps": 3}, truncated="mask", **grpo))
    zero = run(_config(prompts, init_model, tmp_path / "zero", {"max_steps": 3}, truncated="zero", **grpo))
    assert masked["step"] == zero["step"] == 3
    records = read_metrics(tmp_path / "mask" / "metrics.jsonl")
    assert all(r["truncated_frac"] == 1.0 for r in records)  # the premise: every rollout was cut off
    assert any(r["zero_std_frac"] < 1.0 for r in records)  # and some group had a learning signal
    init = load_model(init_model).model.state_dict()
    kept = load_model(tmp_path / "mask").model.state_dict()
    trained = load_model(tmp_path / "zero").model.state_dict()
    assert all(torch.equal(v, init[k]) for k, v in kept.items())  # (GRPO leaves the MTP module out)
    assert not all(torch.equal(v, init[k]) for k, v in trained.items())
