"""GRPO (DeepSeekMath) with verifiable rewards, as an objective of the shared trainer.

Each rollout samples G completions for each of a step's prompts with the in-process engine
(training/sampling/builtin.py: the KV-cache generator through the wrapped policy; rollouts are on-policy, so
they never go to a server); the reward functions score them (answer checks in a process pool with hard timeouts); each
completion's advantage is its reward relative to its group. The policy then takes μ optimiser steps on that
rollout batch with the clipped objective (token ratio, or GSPO's sequence ratio), plus β·k3 KL to a frozen
reference when β > 0. Log-probabilities are computed from hidden states through `TokenLogprobs`, so with
`--fused-kernels` the chunked kernel path runs and no full (tokens × vocabulary) logits exist.
`python -m training.objectives.grpo` is the torchrun entry point.

Differences from TRL's GRPOTrainer worth knowing: the rollout batch is per rank (`prompts_per_step` prompts
each), so groups never straddle ranks; entropy is logged as the mean negative log-probability of the sampled
tokens (an on-policy Monte Carlo estimate, because the full distribution is never materialised).
"""

from __future__ import annotations

import copy
import json
import logging
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from training.config import GRPOConfig
from training.data.records import read_records
from training.distributed import all_ranks_done, prepare_frozen, unwrap
from training.models.generation import completion_logprobs
from training.models.model_io import TOKENIZER_FILE, load_model
from training.models.prompts import PromptTemplate
from training.models.tokenizer import encode_prompt, special_ids
from training.models.transformer import Transformer
from training.objectives.grpo_loss import aggregate, group_advantages, policy_terms, zero_spread
from training.rewards.answers import gold_answer
from training.rewards.functions import Rewards, parse_reward_specs
from training.sampling.builtin import BuiltinSampler
from training.sampling.interface import SamplingParams
from training.trainer import Metrics, TrainContext, command_line, metric, train

log = logging.getLogger(__name__)

SAMPLES_FILE = "samples.jsonl"
_PROMPT_FIELDS = ("question", "problem")


@dataclass
class PromptItem:
    text: str  # the question as the dataset gives it (the template renders it)
    columns: dict[str, Any]  # every dataset column, "answer" the gold answer string


def load_prompts(path: str, prompt_column: str) -> list[PromptItem]:
    """Prompt rows: the prompt (or question/problem) column and a gold answer (an `answer` field, a GSM8K
    `#### n` or a `\\boxed{}` solution), every other column kept for the reward functions."""
    items = []
    for number, row in enumerate(read_records(path), start=1):
        key = next(
            (k for k in (prompt_column, *_PROMPT_FIELDS) if isinstance(row.get(k), str) and row[k]), None
        )
        if key is None:
            raise ValueError(f"{path}: row {number} has no {prompt_column!r} (or question/problem) column")
        try:
            answer = gold_answer(row)
        except ValueError as err:
            raise ValueError(f"{path}: row {number}: {err}") from err
        items.append(PromptItem(row[key], {**row, "answer": answer}))
    if not items:
        raise ValueError(f"{path}: no prompts")
    return items


@dataclass
class Rollouts:
    """One rollout batch of this rank, split into the step's micro-batches (JSON-ready for checkpoints)."""

    micro: list[dict[str, Any]]
    metrics: dict[str, list[float]]  # name → [sum, count], emitted with the first micro-batch of each step
    uses: int = 0


@dataclass
class PromptPosition:
    epoch: int = 0
    index: int = 0


class GRPOObjective:
    """Rollouts, rewards and group-relative advantages; the clipped policy loss."""

    name = "grpo"

    def __init__(self, cfg: GRPOConfig) -> None:
        self.cfg = cfg
        self.g = cfg.grpo
        self.seq_len = 0
        self.epsilon_high = self.g.epsilon_high or self.g.epsilon
        self.rollouts: Rollouts | None = None
        self.cursor = PromptPosition()
        self.micro_index = 0
        self.ref: Transformer | None = None
        self.rewards: Rewards | None = None
        self.template: PromptTemplate | None = None
        self.device = torch.device("cpu")
        self.stats: dict[str, int] = {}

    # -- set-up -----------------------------------------------------------------------------------------

    def setup(self, ctx: TrainContext) -> Transformer:
        g = self.g
        if (g.prompts_per_step * g.num_generations) % self.cfg.optim.grad_accum:
            raise ValueError(
                f"prompts_per_step × num_generations = {g.prompts_per_step * g.num_generations} completions "
                f"do not split into grad_accum = {self.cfg.optim.grad_accum} micro-batches"
            )
        loaded = load_model(g.init, fused_kernels=ctx.run.fused_kernels, template=g.template)
        model, self.tokenizer, self.template = loaded.model, loaded.tokenizer, loaded.template
        model.drop_mtp()
        model.train()
        if ctx.d.is_main:
            (ctx.run_dir / TOKENIZER_FILE).write_bytes(loaded.tokenizer_path.read_bytes())
        self.d, self.device, self.run_dir = ctx.d, ctx.d.device, ctx.run_dir
        if g.beta > 0:  # sharded like the policy under FSDP2; --ref-dtype
            self.ref = prepare_frozen(copy.deepcopy(model), ctx.run.parallel, ctx.d, ctx.run.ref_dtype)
        self.prompts = load_prompts(g.prompts, g.prompt_column)
        if len(self.prompts) < ctx.d.world_size:
            raise ValueError(f"{len(self.prompts)} prompts for {ctx.d.world_size} ranks")
        self.rewards = Rewards(
            parse_reward_specs(g.reward),
            timeout_s=g.reward_timeout,
            verify_workers=g.verify_workers,
            max_completion_tokens=g.max_new_tokens,
            overlong_buffer=g.overlong_buffer,
            truncated=g.truncated,
            answer_after=self.template.reasoning_close,
        )
        self.pad_id = special_ids(self.tokenizer).pad
        self.generator = torch.Generator(device=ctx.d.device).manual_seed(
            ctx.run.seed * 1_000_003 + ctx.d.rank
        )
        self.seq_len = min(model.cfg.max_seq_len, 512)
        log.info("GRPO: %d prompts from %s, template %s", len(self.prompts), g.prompts, self.template.kind)
        return model

    def meta(self) -> dict[str, Any]:
        assert self.template is not None
        return {"template": self.template.to_dict(), "init": self.g.init, "tokenizer": TOKENIZER_FILE}

    # -- prompts ----------------------------------------------------------------------------------------

    def _next_prompts(self, n: int) -> list[PromptItem]:
        out = []
        while len(out) < n:
            order = list(range(len(self.prompts)))
            random.Random(self.cfg.run.seed * 1_000_003 + self.cursor.epoch).shuffle(order)
            mine = order[self.d.rank :: self.d.world_size]
            if self.cursor.index >= len(mine):
                self.cursor = PromptPosition(self.cursor.epoch + 1, 0)
                continue
            out.append(self.prompts[mine[self.cursor.index]])
            self.cursor.index += 1
        return out

    # -- rollouts ---------------------------------------------------------------------------------------

    def begin_step(self, step: int, model: nn.Module) -> dict[str, float]:
        g = self.g
        if self.ref is not None and g.ref_sync_every and step and step % g.ref_sync_every == 0:
            self._sync_reference(model)
        if self.rollouts is None or self.rollouts.uses >= g.iterations:
            self.rollouts = self._rollout(step, model)
        self.rollouts.uses += 1
        self.micro_index = 0
        return {}

    def _sync_reference(self, model: nn.Module) -> None:
        """Iterative GRPO: the reference becomes the current policy. Under FSDP2 both are sharded alike, so
        each rank copies its own shard (into the reference's dtype) and nothing is gathered."""
        assert self.ref is not None
        policy = dict(unwrap(model).named_parameters())
        with torch.no_grad():
            for name, param in self.ref.named_parameters():
                param.copy_(policy[name].detach())

    def _generate_groups(self, model: nn.Module, items: list[PromptItem]) -> dict[str, Any]:
        g, template = self.g, self.template
        assert template is not None and self.rewards is not None
        prompt_ids = [
            encode_prompt(self.tokenizer, template.render_prompt(item.text), template.renders_special_tokens)
            for item in items
        ]
        repeated = [ids for ids in prompt_ids for _ in range(g.num_generations)]
        sampler = BuiltinSampler(model, self.tokenizer, template, generator=self.generator)
        # each row: max_new_tokens, fewer where its prompt leaves less room
        params = SamplingParams(
            g.max_new_tokens, temperature=g.temperature, top_p=g.top_p, n=g.num_generations
        )
        start = time.perf_counter()
        samples = [c for group in sampler.sample(prompt_ids, params) for c in group]
        seconds = time.perf_counter() - start
        tokens = [c.token_ids or [] for c in samples]
        texts = [c.text for c in samples]
        columns = {key: [item.columns.get(key) for item in items for _ in range(g.num_generations)]
                   for key in {k for item in items for k in item.columns}}  # fmt: skip
        truncated = [c.truncated for c in samples]
        scored = self.rewards.score(
            [template.render_prompt(item.text) for item in items for _ in range(g.num_generations)],
            texts,
            columns,
            [len(c) for c in tokens],
            truncated,
        )
        return {
            "items": items,
            "prompt_ids": repeated,
            "completions": tokens,
            "texts": texts,
            "rewards": torch.tensor(scored.total, dtype=torch.float64).view(len(items), g.num_generations),
            "per_function": scored.per_function,
            "timeouts": scored.timeouts,
            "errors": scored.errors,
            "seconds": seconds,
            "truncated": truncated,
        }

    def _rollout(self, step: int, model: nn.Module) -> Rollouts:
        g = self.g
        was_training = model.training
        model.eval()
        kept: list[dict[str, Any]] = []  # one dict per group
        dropped = generated_groups = 0
        rounds = 0
        sums: dict[str, list[float]] = {}
        for spec in parse_reward_specs(g.reward):  # every rank logs the same keys
            sums[f"reward_{spec.name}_timeouts"] = [0.0, 1.0]
            sums[f"reward_{spec.name}_errors"] = [0.0, 1.0]

        def add(name: str, total: float, count: float) -> None:
            old = sums.setdefault(name, [0.0, 0.0])
            old[0] += total
            old[1] += count

        while True:
            need = g.prompts_per_step - len(kept)
            batch = self._generate_groups(model, self._next_prompts(max(need, 1)))
            rounds += 1
            spread = ~zero_spread(batch["rewards"])
            for i in range(len(batch["items"])):
                generated_groups += 1
                group = {key: batch[key][i * g.num_generations : (i + 1) * g.num_generations]
                         for key in ("prompt_ids", "completions", "texts", "truncated")}  # fmt: skip
                group.update(item=batch["items"][i], rewards=batch["rewards"][i], spread=bool(spread[i]))
                group["per_function"] = {name: values[i * g.num_generations : (i + 1) * g.num_generations]
                                         for name, values in batch["per_function"].items()}  # fmt: skip
                if g.dynamic_sampling and not group["spread"] and rounds <= g.max_resample_rounds:
                    dropped += 1
                    continue
                kept.append(group)
            for name, count in batch["timeouts"].items():
                add(f"reward_{name}_timeouts", count, 0.0)  # counts per step, summed over rounds and ranks
            for name, count in batch["errors"].items():
                add(f"reward_{name}_errors", count, 0.0)
            tokens = sum(len(c) for c in batch["completions"])
            add("rollout_tokens_per_s", tokens, batch["seconds"])
            full = len(kept) >= g.prompts_per_step or not g.dynamic_sampling
            if all_ranks_done(full or rounds > g.max_resample_rounds, model):
                break
        kept = kept[: g.prompts_per_step]
        if was_training:
            model.train()
        return self._finish_rollout(step, model, kept, dropped, generated_groups, sums)

    def _finish_rollout(
        self,
        step: int,
        model: nn.Module,
        groups: list[dict[str, Any]],
        dropped: int,
        generated: int,
        sums: dict[str, list[float]],
    ) -> Rollouts:
        g = self.g
        rewards = torch.stack([grp["rewards"] for grp in groups])
        advantages = group_advantages(rewards, g.scale_rewards).flatten().tolist()
        prompts = [p for grp in groups for p in grp["prompt_ids"]]
        completions = [c for grp in groups for c in grp["completions"]]
        truncated = [t for grp in groups for t in grp["truncated"]]
        n = len(completions)
        lengths = [len(c) for c in completions]
        old = self._logprobs(model, prompts, completions) if g.iterations > 1 else None
        ref = self._logprobs(self.ref, prompts, completions) if self.ref is not None else None
        sums["reward_mean"] = [float(rewards.sum()), float(n)]
        sums["reward_std"] = [float(rewards.std()) if n > 1 else 0.0, 1.0]  # this rank's, averaged over ranks
        for name in groups[0]["per_function"]:
            values = [v for grp in groups for v in grp["per_function"][name] if v is not None]
            sums[f"reward_{name}_mean"] = [float(sum(values)), float(len(values))]
        if "accuracy" in groups[0]["per_function"]:
            sums["accuracy"] = list(sums["reward_accuracy_mean"])
            # a rollout cut off by the length limit that still earned accuracy: 0 unless a reward games it
            accuracy = [v for grp in groups for v in grp["per_function"]["accuracy"]]
            credited = sum(
                bool(t) and v is not None and v > 0 for t, v in zip(truncated, accuracy, strict=True)
            )
            sums["truncated_credited_frac"] = [float(credited), float(n)]
        sums["completion_len_mean"] = [float(sum(lengths)), float(n)]
        sums["completion_len_max"] = [float(max(lengths)), 1.0]  # averaged over ranks
        sums["truncated_frac"] = [float(sum(truncated)), float(n)]
        sums["zero_std_frac"] = [float(sum(not grp["spread"] for grp in groups)) + dropped, float(generated)]
        sums["dropped_frac"] = [float(dropped), float(generated)]
        if self.d.is_main and g.samples_every and step % g.samples_every == 0:
            self._write_samples(step, groups[:2])
        per_micro = n // self.cfg.optim.grad_accum
        micro = []
        for start in range(0, n, per_micro):
            part = slice(start, start + per_micro)
            micro.append(
                {
                    "prompts": prompts[part],
                    "completions": completions[part],
                    "advantages": advantages[part],
                    "truncated": truncated[part],
                    "old_logp": old[part] if old is not None else None,
                    "ref_logp": ref[part] if ref is not None else None,
                }
            )
        return Rollouts(micro, sums)

    @torch.no_grad()
    def _logprobs(self, model: nn.Module, prompts: list[list[int]], completions: list[list[int]]) -> list:
        """Per-token log-probabilities (lists, JSON-ready) of completions, one micro-batch at a time."""
        out: list[list[float]] = []
        step = max(1, len(completions) // self.cfg.optim.grad_accum)
        autocast = (
            torch.autocast("cuda", dtype=torch.bfloat16) if self.device.type == "cuda" else nullcontext()
        )
        for start in range(0, len(completions), step):
            with autocast:
                values, _ = completion_logprobs(
                    model, prompts[start : start + step], completions[start : start + step], self.pad_id,
                    self.g.temperature,
                )  # fmt: skip
            for row, completion in zip(
                values.float().tolist(), completions[start : start + step], strict=True
            ):
                out.append(row[: len(completion)])
        return out

    def _write_samples(self, step: int, groups: list[dict[str, Any]]) -> None:
        with open(self.run_dir / SAMPLES_FILE, "a") as fh:
            for grp in groups:
                rows = zip(grp["texts"], grp["rewards"].tolist(), grp["truncated"], strict=True)
                for i, (text, reward, cut) in enumerate(rows):
                    record = {"step": step, "prompt": grp["item"].text, "answer": grp["item"].columns["answer"],
                              "completion": text, "reward": reward, "truncated": bool(cut),
                              "rewards": {name: values[i] for name, values in grp["per_function"].items()}}  # fmt: skip
                    fh.write(json.dumps(record, ensure_ascii=False) + "\n")

    # -- the loss ---------------------------------------------------------------------------------------

    def next_batch(self) -> dict[str, Any]:
        assert self.rollouts is not None, "begin_step() first"
        batch = self.rollouts.micro[self.micro_index]
        batch = {**batch, "first": self.micro_index == 0}
        self.micro_index += 1
        return batch

    def _mask_counts(self, batch: dict[str, Any]) -> list[int]:
        return [0 if (self.g.truncated == "mask" and t) else len(c)
                for c, t in zip(batch["completions"], batch["truncated"], strict=True)]  # fmt: skip

    def loss_tokens(self, batch: dict[str, Any]) -> int:
        if self.g.loss_type == "dapo":
            return sum(self._mask_counts(batch))
        if self.g.loss_type == "bnpo":
            return 1
        return len(batch["completions"])

    def input_tokens(self, batch: dict[str, Any]) -> int:
        return sum(len(p) + len(c) for p, c in zip(batch["prompts"], batch["completions"], strict=True))

    def _padded(self, rows: list[list[float]], width: int) -> torch.Tensor:
        out = torch.zeros((len(rows), width), dtype=torch.float32)
        for i, row in enumerate(rows):
            out[i, : len(row)] = torch.tensor(row, dtype=torch.float32)
        return out.to(self.device)

    def loss(self, model: nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, Metrics]:
        g = self.g
        logp, mask = completion_logprobs(
            model, batch["prompts"], batch["completions"], self.pad_id, g.temperature
        )
        logp = logp.float()
        if g.truncated == "mask":
            keep = torch.tensor([not t for t in batch["truncated"]], device=mask.device)
            mask = mask & keep[:, None]
        width = logp.shape[1]
        old = self._padded(batch["old_logp"], width) if batch["old_logp"] is not None else logp.detach()
        ref = self._padded(batch["ref_logp"], width) if batch["ref_logp"] is not None else None
        advantages = torch.tensor(batch["advantages"], dtype=torch.float32, device=logp.device)
        terms = policy_terms(
            logp, old, advantages, mask, epsilon=g.epsilon, epsilon_high=self.epsilon_high,
            importance=g.importance, beta=g.beta, ref_logp=ref, kl_clamp=g.kl_clamp,
        )  # fmt: skip
        loss_sum, _ = aggregate(terms.per_token, mask, g.loss_type, g.max_new_tokens)
        tokens = mask.sum()
        metrics: Metrics = {
            "kl": metric(terms.kl.sum(), tokens),
            "kl_clamp_frac": metric(terms.kl_clamped.sum(), tokens),
            "clip_frac": metric((terms.clipped_low | terms.clipped_high).sum(), tokens),
            "clip_frac_low": metric(terms.clipped_low.sum(), tokens),
            "clip_frac_high": metric(terms.clipped_high.sum(), tokens),
            "entropy": metric(-(logp.detach() * mask).sum(), tokens),
        }
        if batch["first"]:
            for name, (total, count) in self.rollouts.metrics.items():  # type: ignore[union-attr]
                metrics[name] = metric(total, count)
        return loss_sum, metrics

    # -- state ------------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        rollouts = None
        if self.rollouts is not None:
            rollouts = {
                "micro": self.rollouts.micro,
                "metrics": self.rollouts.metrics,
                "uses": self.rollouts.uses,
            }
        return {
            "epoch": self.cursor.epoch,
            "index": self.cursor.index,
            "rank": self.d.rank,
            "world_size": self.d.world_size,
            "n_prompts": len(self.prompts),
            "generator": self.generator.get_state().tolist(),
            "rollouts": rollouts,
            "reward_stats": dict(self.rewards.stats) if self.rewards is not None else {},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if (state["rank"], state["world_size"]) != (self.d.rank, self.d.world_size):
            raise ValueError(
                "GRPO state is for another rank layout: resume with the same number of processes"
            )
        if state["n_prompts"] != len(self.prompts):
            raise ValueError(
                f"the prompt set changed since the checkpoint ({state['n_prompts']} prompts then)"
            )
        self.cursor = PromptPosition(state["epoch"], state["index"])
        self.generator.set_state(torch.tensor(state["generator"], dtype=torch.uint8))
        saved = state["rollouts"]
        self.rollouts = Rollouts(saved["micro"], saved["metrics"], saved["uses"]) if saved else None
        if self.rewards is not None:
            self.rewards.stats.update(state.get("reward_stats", {}))

    def tensor_state(self) -> dict[str, torch.Tensor]:
        """A synced reference is a past policy that nothing else keeps: it goes into the checkpoint (without
        ref-sync the reference is the init model, which a resumed run loads again). Under FSDP2 these are the
        reference's shards (DTensors): gathered for safetensors, written per rank by DCP."""
        if self.ref is None or not self.g.ref_sync_every:
            return {}
        return {f"ref.{name}": param.detach() for name, param in self.ref.named_parameters()}

    def load_tensor_state(self, state: dict[str, torch.Tensor]) -> None:
        if self.ref is None or not self.g.ref_sync_every:
            return
        params = dict(self.ref.named_parameters())  # a tied head is the embedding: one tensor
        stored = {name.removeprefix("ref."): t for name, t in state.items() if name.startswith("ref.")}
        if set(stored) != set(params):
            raise ValueError(
                "the checkpoint holds no synced GRPO reference (written without --ref-sync-every?): "
                f"expected {len(params)} tensors, found {len(stored)}"
            )
        with torch.no_grad():
            for name, param in params.items():
                param.copy_(shard_like(stored[name], param))

    def position(self) -> dict[str, Any]:
        return {"epoch": self.cursor.epoch, "index": self.cursor.index}

    def curves(self) -> dict[str, list[str]]:
        rewards = [f"reward_{s.name}_mean" for s in parse_reward_specs(self.g.reward)]
        return {
            "loss_curve.png": ["loss"],
            "reward_curve.png": ["reward_mean", *rewards, "accuracy"],
            "kl_clip.png": ["kl", "clip_frac", "zero_std_frac", "truncated_frac"],
        }

    def summary(self) -> dict[str, Any]:
        stats = dict(self.rewards.stats) if self.rewards is not None else {}
        return {**stats, "skipped": {}}

    def close(self) -> None:
        if self.rewards is not None:
            self.rewards.close()


def shard_like(tensor: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
    """`tensor` (a full tensor, or already a DTensor) laid out like `param` (a DTensor under FSDP2): every rank
    holds the full tensor here, so each takes its own shard without communication."""
    if not hasattr(param, "device_mesh") or hasattr(tensor, "device_mesh"):
        return tensor
    from torch.distributed.tensor import distribute_tensor

    return distribute_tensor(tensor.to(param.device), param.device_mesh, param.placements, src_data_rank=None)


def run(cfg: GRPOConfig) -> dict[str, Any]:
    """GRPO as configured (in this process, or as one torchrun rank); returns a short summary."""
    objective = GRPOObjective(cfg)
    try:
        return train(cfg.run, cfg.optim, objective, cfg)
    finally:
        objective.close()


def main(argv: list[str] | None = None) -> int:
    return command_line(GRPOConfig, run, "python -m training.objectives.grpo", __doc__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
