"""GRPO end to end on CPU: the logged metrics, a hanging reward, bitwise resume with μ > 1 and a reference
model, dynamic sampling's drop-and-refill, and identical ranks under torchrun."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torchrun_launch import torchrun

from training.config import GRPOConfig, GRPODataConfig, OptimConfig, RunConfig
from training.data.synthetic import write_last_number_task
from training.metrics import read_metrics
from training.objectives.grpo import GRPOObjective, run


@pytest.fixture(scope="module")
def prompts(tmp_path_factory) -> Path:
    """Synthetic prompts with answers, every fourth marked "HANG" for the hanging reward."""
    root = tmp_path_factory.mktemp("grpo_prompts")
    task = write_last_number_task(root, n_train=64, n_test=4)
    rows = [json.loads(line) for line in task["train"].open()]
    for i, row in enumerate(rows):
        if i % 4 == 3:
            row["prompt"] = "HANG " + row["prompt"]
    path = root / "prompts.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _config(prompts: Path, init: Path, out: Path, run_options=None, **grpo) -> GRPOConfig:
    options = {"max_steps": 4, "log_every": 1, "ckpt_every": 1000, "device": "cpu", **(run_options or {})}
    settings = {"num_generations": 4, "prompts_per_step": 2, "max_new_tokens": 12, "template": "plain",
                "verify_workers": 1, "samples_every": 2, **grpo}  # fmt: skip
    return GRPOConfig(
        run=RunConfig(out=str(out), **options),
        grpo=GRPODataConfig(prompts=str(prompts), init=str(init), **settings),
        optim=OptimConfig(lr=1e-2, warmup_frac=0.0),
    )


@pytest.mark.timeout(300)
def test_a_run_logs_its_metrics_and_survives_a_hanging_reward(prompts, init_model, tmp_path) -> None:
    cfg = _config(prompts, init_model, tmp_path / "run", reward=("accuracy", "grpo_fixtures:hang_on_marked=0.5"),
                  reward_timeout=2.0)  # fmt: skip
    summary = run(cfg)
    assert summary["step"] == 4
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    required = {"step", "reward_mean", "accuracy", "kl", "completion_len_mean", "zero_std_frac", "clip_frac",
                "reward_std", "entropy", "truncated_frac", "rollout_tokens_per_s", "lr"}  # fmt: skip
    assert required <= set(records[0])
    timeouts = sum(r["reward_grpo_fixtures:hang_on_marked_timeouts"] for r in records)
    assert timeouts > 0  # some step drew a marked prompt, its batch was cut and counted
    assert summary["data"]["grpo_fixtures:hang_on_marked_timeouts"] > 0
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in records)
    samples = [json.loads(line) for line in (tmp_path / "run" / "samples.jsonl").open()]
    assert samples and {"step", "prompt", "completion", "reward", "answer", "truncated"} <= set(samples[0])
    assert set(samples[0]["rewards"]) == {"accuracy", "grpo_fixtures:hang_on_marked"}
    # a rollout cut off by the length limit never earns accuracy, and the run says so
    assert any(s["truncated"] for s in samples)
    assert all(s["rewards"]["accuracy"] == 0.0 for s in samples if s["truncated"])
    assert all(r["truncated_credited_frac"] == 0.0 for r in records)
    assert (tmp_path / "run" / "reward_curve.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.timeout(300)
def test_resume_is_bitwise_with_inner_iterations_and_a_reference(prompts, init_model, tmp_path) -> None:
    """μ = 2: the checkpoint after step 3 falls between the two uses of a rollout batch, which must come back."""
    grpo = {"iterations": 2, "beta": 0.04, "reward": ("grpo_fixtures:odd_digits",), "temperature": 1.2}
    run(_config(prompts, init_model, tmp_path / "straight", **grpo))
    run(_config(prompts, init_model, tmp_path / "cut", {"stop_at": 3, "ckpt_every": 3}, **grpo))
    run(_config(prompts, init_model, tmp_path / "cut", {"resume": True, "ckpt_every": 3}, **grpo))
    straight = read_metrics(tmp_path / "straight" / "metrics.jsonl")
    resumed = read_metrics(tmp_path / "cut" / "metrics.jsonl")
    volatile = {"tokens_per_s", "rollout_tokens_per_s", "mfu"}
    strip = lambda records: [{k: v for k, v in r.items() if k not in volatile} for r in records]  # noqa: E731
    assert strip(straight) == strip(resumed)
    assert straight[1]["kl"] > 0  # the policy moved away from the reference after the first update


def test_dynamic_sampling_drops_zero_spread_groups_and_refills(
    prompts, init_model, tmp_path, monkeypatch
) -> None:
    cfg = _config(prompts, init_model, tmp_path / "run", dynamic_sampling=True, prompts_per_step=3,
                  max_resample_rounds=3, reward=("accuracy",))  # fmt: skip
    objective = GRPOObjective(cfg)
    from training.distributed import Dist
    from training.trainer import TrainContext

    (tmp_path / "run").mkdir()
    model = objective.setup(
        TrainContext(Dist(0, 1, 0, torch.device("cpu")), tmp_path / "run", cfg.run, False)
    )
    rounds = iter([[[1, 1, 1, 1], [0, 1, 0, 0], [0, 0, 0, 0]], [[0, 0, 0, 0], [1, 0, 0, 1]], [[0, 0, 1, 1]]])

    def fake_groups(model, items):  # the rewards of each round's groups, as if sampled
        rewards = torch.tensor(next(rounds), dtype=torch.float64)
        assert len(items) == rewards.shape[0]
        n = rewards.numel()
        return {"items": items, "prompt_ids": [[1, 2]] * n, "completions": [[3, 4]] * n, "texts": ["x"] * n,
                "rewards": rewards, "per_function": {"accuracy": rewards.flatten().tolist()},
                "timeouts": {}, "errors": {}, "seconds": 1.0, "truncated": [False] * n}  # fmt: skip

    monkeypatch.setattr(objective, "_generate_groups", fake_groups)
    rollouts = objective._rollout(0, model)
    objective.close()
    kept = [row["advantages"] for row in rollouts.micro]
    # round 1 asks for 3 prompts and keeps 1, round 2 asks for the 2 missing and keeps 1, round 3 for the last
    assert len(kept) == 1 and len(kept[0]) == 3 * 4
    assert rollouts.metrics["dropped_frac"] == [3.0, 6.0]  # three zero-spread groups dropped of six generated
    advantages = torch.tensor(kept[0]).view(3, 4)
    assert (advantages.std(dim=1) > 0).all()  # every kept group has something to learn from


@pytest.mark.timeout(300)
def test_grpo_under_torchrun_keeps_both_ranks_identical(prompts, init_model, tmp_path) -> None:
    args = ["-m", "training.objectives.grpo", "--prompts", str(prompts), "--init", str(init_model), "--out",
            str(tmp_path / "run"), "--max-steps", "3", "--num-generations", "4", "--prompts-per-step", "2",
            "--max-new-tokens", "10", "--template", "plain", "--device", "cpu", "--log-every", "1",
            "--rank-logs", "--grad-accum", "2", "--verify-workers", "1", "--lr", "1e-2"]  # fmt: skip
    torchrun(args)
    rank0, rank1 = (read_metrics(tmp_path / "run" / f"rank{r}.jsonl") for r in (0, 1))
    assert [r["param_digest"] for r in rank0] == [r["param_digest"] for r in rank1]
    assert [r["step"] for r in rank0] == [1, 2, 3]
    assert all(a["batch_digest"] != b["batch_digest"] for a, b in zip(rank0, rank1, strict=True))


def test_reward_flag_is_repeatable_and_comma_separated() -> None:
    """`--reward accuracy --reward format=0.2,overlong` (the README's form) keeps every reward; the first use
    replaces the default."""
    from mathforge.cli import build_parser
    from typedconfig import dataclass_from_args

    base = ["train", "grpo", "--prompts", "p.jsonl", "--init", "m", "--out", "r"]
    args = build_parser().parse_args([*base, "--reward", "accuracy", "--reward", "format=0.2,overlong"])
    assert dataclass_from_args(GRPODataConfig, args).reward == ("accuracy", "format=0.2", "overlong")
    assert dataclass_from_args(GRPODataConfig, build_parser().parse_args(base)).reward == ("accuracy",)
    args = build_parser().parse_args([*base, "--reward", "format"])
    assert dataclass_from_args(GRPODataConfig, args).reward == ("format",)
