"""Parameters: AdamW groups (matrices decay; embeddings, norm gains and biases do not; shared weights are listed
once), a pretraining run's optimizer (built by the trainer) really applying decay that way; the per-objective
optimiser defaults; and the trainer's step and loop around the optimizer (clipping, schedule, cadence, logged
values)."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch

from training.config import DataConfig, OptimConfig, PretrainConfig, RunConfig, model_config
from training.distributed import Dist
from training.metrics import flops_per_token, read_metrics
from training.models.transformer import Transformer
from training.objectives.pretrain import PretrainObjective
from training.schedule import lr_at
from training.trainer import StepResult, Throughput, Trainer, metric, param_groups


def _names(model: torch.nn.Module, group: dict) -> set[str]:
    by_id = {id(p): n for n, p in model.named_parameters()}
    return {by_id[id(p)] for p in group["params"]}


def test_groups_for_a_tied_model_with_qkv_biases() -> None:
    model = Transformer(
        model_config("tiny", 64, max_seq_len=16, mtp_depth=1, qkv_bias=True, tie_embeddings=True)
    )
    assert model.head.weight is model.embed.weight
    decay, no_decay = param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0

    matrices = {"attn.wq.weight", "attn.wk.weight", "attn.wv.weight", "attn.wo.weight"}
    matrices |= {"ffn.w1.weight", "ffn.w2.weight", "ffn.w3.weight"}
    gains_and_biases = {"attn_norm.weight", "ffn_norm.weight", "attn.wq.bias", "attn.wk.bias", "attn.wv.bias"}
    blocks = ["layers.0", "layers.1", "mtp.0.block"]
    want_decay = {"mtp.0.eh_proj.weight"} | {f"{b}.{m}" for b in blocks for m in matrices}
    want_no_decay = {"embed.weight", "norm.weight", "mtp.0.enorm.weight", "mtp.0.hnorm.weight"}
    want_no_decay |= {"mtp.0.norm.weight"}
    want_no_decay |= {f"{b}.{g}" for b in blocks for g in gains_and_biases}
    # the tied head is the embedding (no "head.weight" of its own), and embeddings never decay
    assert _names(model, decay) == want_decay
    assert _names(model, no_decay) == want_no_decay
    assert (len(decay["params"]), len(no_decay["params"])) == (22, 20)

    # every trainable tensor exactly once, so AdamW accepts the groups (it refuses a tensor listed twice)
    ids = [id(p) for g in (decay, no_decay) for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    torch.optim.AdamW([decay, no_decay], lr=1e-3)


def test_untied_model_decays_its_head_and_frozen_tensors_are_left_out() -> None:
    model = Transformer(model_config("tiny", 64, max_seq_len=16, mtp_depth=0))
    decay, no_decay = param_groups(model, 0.3)
    assert "head.weight" in _names(model, decay) and "embed.weight" in _names(model, no_decay)
    assert [p.ndim for p in no_decay["params"] if p.ndim >= 2] == [2]  # the embedding, nothing else
    model.embed.weight.requires_grad_(False)
    decay, no_decay = param_groups(model, 0.3)
    assert "embed.weight" not in _names(model, decay) | _names(model, no_decay)
    assert not any(p.ndim >= 2 for p in no_decay["params"]) and all(p.ndim >= 2 for p in decay["params"])


def _pretrain_config(data, out, **run) -> PretrainConfig:
    return PretrainConfig(
        run=RunConfig(out=str(out), **{"max_steps": 10, "device": "cpu", "log_every": 1, **run}),
        data=DataConfig(data=str(data), vocab_size=300, seq_len=32, batch_size=2),
        optim=OptimConfig(lr=0.1, weight_decay=0.5, warmup_frac=0.2),
    )


@pytest.mark.timeout(120)
def test_a_pretraining_run_decays_matrices_and_leaves_gains_alone(corpus_dir, tmp_path) -> None:
    """With zero gradients an AdamW step moves a parameter only through decoupled weight decay,
    p ← p · (1 - lr · wd): the matrices shrink by exactly that factor; the embedding, gains and biases do not
    move."""
    cfg = _pretrain_config(corpus_dir, tmp_path / "run")
    trainer = Trainer.build(cfg.run, cfg.optim, PretrainObjective(cfg), cfg)
    model, opt = trainer.model, trainer.opt
    assert [g["weight_decay"] for g in opt.param_groups] == [0.5, 0.0]
    listed = [id(p) for g in opt.param_groups for p in g["params"]]
    assert sorted(listed) == sorted(id(p) for p in model.parameters())

    with torch.no_grad():  # gains away from 1, so that a decayed gain would show
        for param in model.parameters():
            if param.ndim < 2:
                param.add_(0.5)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for group in opt.param_groups:
        group["lr"] = 0.1
    for param in model.parameters():
        param.grad = torch.zeros_like(param)
    opt.step()
    shrink = 1 - 0.1 * 0.5
    for name, param in model.named_parameters():
        if param.ndim >= 2 and name != "embed.weight":
            assert torch.allclose(param, before[name] * shrink, rtol=1e-6, atol=0), name
        else:
            assert torch.equal(param, before[name]), name
    assert {"norm.weight", "mtp.0.norm.weight", "layers.0.attn_norm.weight", "embed.weight"} <= set(before)


@pytest.mark.timeout(120)
def test_train_step_sets_the_scheduled_lr_on_every_group(corpus_dir, tmp_path) -> None:
    cfg = _pretrain_config(corpus_dir, tmp_path / "run")
    trainer = Trainer.build(cfg.run, cfg.optim, PretrainObjective(cfg), cfg)
    assert (trainer.step, trainer.tokens, trainer.resumed) == (0, 0, False)
    gains = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.ndim < 2}
    for step in range(3):
        result = trainer.train_step()
        assert result.lr == lr_at(step, cfg.optim, 10)
        assert [g["lr"] for g in trainer.opt.param_groups] == [result.lr, result.lr]
        assert result.schedule == {"mtp_weight": 0.3}
    assert trainer.step == 3
    # gains did train (they get gradients), they just are not decayed
    assert any(not torch.equal(p, gains[n]) for n, p in trainer.model.named_parameters() if p.ndim < 2)


# -- the rest of the trainer's step and loop (mutation-testing survivors in training/trainer.py) ------------


def _norm_seen_by_the_optimizer(trainer: Trainer) -> list[float]:
    """Record the global gradient norm each time the optimizer steps, i.e. after clipping."""
    seen: list[float] = []
    step = trainer.opt.step

    def recording_step(*args, **kwargs):
        grads = [p.grad.norm() for p in trainer.model.parameters() if p.grad is not None]
        seen.append(torch.linalg.vector_norm(torch.stack(grads)).item())
        return step(*args, **kwargs)

    trainer.opt.step = recording_step
    return seen


@pytest.mark.parametrize("grad_clip", [1e-3, 0.0])
def test_gradients_reach_the_optimizer_clipped_to_grad_clip(corpus_dir, tmp_path, grad_clip) -> None:
    """AdamW's first step hardly depends on the gradient's scale, so only the norm it is handed shows
    whether clipping happened; grad_norm in the logs is the norm before clipping."""
    cfg = _pretrain_config(corpus_dir, tmp_path / "run")
    cfg.optim.grad_clip = grad_clip
    trainer = Trainer.build(cfg.run, cfg.optim, PretrainObjective(cfg), cfg)
    seen = _norm_seen_by_the_optimizer(trainer)
    result = trainer.train_step()
    assert result.grad_norm > 10 * 1e-3
    if grad_clip:
        assert seen == [pytest.approx(grad_clip, rel=1e-3)]
    else:  # 0: no clipping
        assert seen == [pytest.approx(result.grad_norm, rel=1e-5)]


@pytest.mark.timeout(120)
def test_fit_logs_checkpoints_counts_tokens_and_resumes_on_its_cadence(corpus_dir, tmp_path) -> None:
    out = tmp_path / "runs" / "tiny"  # parents are created too
    run = {"max_steps": 5, "log_every": 2, "ckpt_every": 2, "keep_checkpoints": 5, "rank_logs": True}
    cfg = _pretrain_config(corpus_dir, out, stop_at=3, **run)
    summary = Trainer.build(cfg.run, cfg.optim, PretrainObjective(cfg), cfg).fit()
    assert (summary["start"], summary["step"]) == (0, 3)
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl")] == [
        2,
        3,
    ]  # the last step is always logged
    assert _steps(out / "rank0.jsonl") == [1, 2, 3]

    cfg = _pretrain_config(corpus_dir, out, resume=True, **run)
    trainer = Trainer.build(cfg.run, cfg.optim, PretrainObjective(cfg), cfg)
    assert (trainer.step, trainer.tokens, trainer.resumed) == (3, 3 * 2 * 32, True)
    summary = trainer.fit()
    assert (summary["start"], summary["step"]) == (3, 5)
    assert sorted(p.name for p in (out / "checkpoints").glob("step_*")) == [
        "step_00000002",
        "step_00000003",  # the last step of each invocation is always saved
        "step_00000004",
        "step_00000005",
    ]
    records = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in records] == [2, 3, 4, 5]
    assert _steps(out / "rank0.jsonl") == [1, 2, 3, 4, 5]  # appended to on resume, not started again
    assert trainer.tokens == 5 * 2 * 32 == records[-1]["tokens"]  # steps × batch × seq_len
    assert [r["lr"] for r in records] == [lr_at(s, cfg.optim, 5) for s in (1, 2, 3, 4)]
    for r in records:  # one micro-batch, one depth: the logged total is main + λ · depth loss
        assert r["loss"] > 1 and r["main_loss"] > 1 and r["mtp_loss_1"] > 1
        assert r["loss"] == pytest.approx(r["main_loss"] + r["mtp_weight"] * r["mtp_loss_1"], rel=1e-6)
    assert (out / "loss_curve.png").read_bytes()[:4] == b"\x89PNG"  # drawn once the log is closed
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))


def _steps(path) -> list[int]:
    return [json.loads(line)["step"] for line in path.read_text().splitlines()]


def test_one_process_trains_whatever_the_parallel_mode(corpus_dir, tmp_path) -> None:
    cfg = _pretrain_config(corpus_dir, tmp_path / "run", parallel="fsdp")
    trainer = Trainer.build(cfg.run, cfg.optim, PretrainObjective(cfg), cfg)
    assert trainer.wrapped is trainer.model
    trainer.train_step()
    assert trainer.step == 1


def test_mfu_is_per_device_under_several_ranks() -> None:
    """Tokens/s counts every rank's tokens; MFU divides them among the ranks before comparing with one
    device's peak."""
    cfg = model_config("tiny", 64, max_seq_len=32)
    fake = SimpleNamespace(
        d=Dist(rank=0, world_size=2, local_rank=0, device=torch.device("cpu")),
        model=SimpleNamespace(cfg=cfg),
        objective=SimpleNamespace(seq_len=32),
        tokens=0,
    )
    speed = Throughput(fake, 0)
    speed.peak = 1e12
    speed.last_time -= 2.0
    measured = speed.measure(1, 4000)
    assert measured["tokens"] == 4000 and measured["tokens_per_s"] == pytest.approx(2000, rel=0.05)
    per_device = measured["tokens_per_s"] / 2
    assert measured["mfu"] == pytest.approx(per_device * flops_per_token(cfg, 32) / 1e12, rel=1e-9)


def test_logged_metrics_are_sums_over_counts_and_nan_without_any_count() -> None:
    """A metric no token counted in a step (an MTP depth without a valid target, say) logs NaN, never a
    division error or a fake zero; one counted token logs its value."""
    fake = SimpleNamespace(
        d=Dist(rank=0, world_size=1, local_rank=0, device=torch.device("cpu")),
        step=7,
        tokens=0,
        objective=SimpleNamespace(summary=lambda: {"skipped": {"too_short": 2}}),
    )
    result = StepResult(
        metrics={"loss": metric(6.0, 3.0), "mtp_loss_1": metric(0.0, 0.0), "main_loss": metric(5.0, 1.0)},
        grad_norm=0.5,
        lr=1e-3,
        schedule={"mtp_weight": 0.3},
        input_tokens=64,
        last_batch=None,
    )
    speed = SimpleNamespace(measure=lambda step, tokens: {"tokens": tokens})
    record = Trainer._log_record(fake, result, speed)
    assert list(record)[:2] == ["step", "loss"] and record["step"] == 7
    assert record["loss"] == 2.0 and record["main_loss"] == 5.0 and math.isnan(record["mtp_loss_1"])
    assert record["mtp_weight"] == 0.3 and record["lr"] == 1e-3 and record["grad_norm"] == 0.5
    assert record["data_too_short"] == 2


@pytest.mark.parametrize(
    ("objective", "required", "lr", "weight_decay", "beta2"),
    [
        ("pretrain", ["--data", "d"], 1e-3, 0.1, 0.95),
        ("sft", ["--data", "d", "--init", "m"], 2e-5, 0.0, 0.999),
        ("grpo", ["--prompts", "p", "--init", "m"], 1e-6, 0.0, 0.999),
        ("distill", ["--data", "d", "--init", "m", "--teacher", "t"], 2e-5, 0.0, 0.999),
    ],
)
def test_each_objective_has_its_own_optimiser_defaults_and_says_so(
    objective: str, required: list[str], lr: float, weight_decay: float, beta2: float, capsys
) -> None:
    """Fine-tuning objectives default to TRL's fine-tuning values, pretraining keeps its own; `--help` of each
    command shows the default that command uses."""
    from mathforge.cli import build_parser
    from training.cli import OBJECTIVES
    from training.config import config_from_args

    argv = ["train", objective, *required, "--out", "r"]
    cfg = config_from_args(OBJECTIVES[objective][1], build_parser().parse_args(argv))
    assert (cfg.optim.lr, cfg.optim.weight_decay, cfg.optim.beta2) == (lr, weight_decay, beta2)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", objective, "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert f"(default: {lr})" in shown and f"(default: {beta2})" in shown
