"""The training loop, owned once. Objectives (pretraining with MTP, SFT, GRPO, distillation) plug into it.

The trainer owns what every objective needs: the process group and device, wrapping the model (DDP or FSDP2),
AdamW with warmup and cosine decay, gradient accumulation, clipping, checkpoints with bitwise resume, metrics
(JSONL, TensorBoard, PNG curves) and the progress bar. An objective owns its data, its loss and its metrics.

Gradient accumulation is weighted by loss tokens, not by micro-batches: before a step the trainer counts the
loss tokens of every micro-batch on every rank (one all-reduce), and each micro-batch's summed loss is scaled
by world_size / total, so that after DDP's or FSDP2's gradient averaging the gradient is that of the mean loss
over every loss token of the step. That is exact however unevenly the tokens fall (SFT, RL), and the same as a
mean of means for packed pretraining. Forward runs under bf16 autocast on GPU; backward runs outside it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict, set_state_dict
from tqdm import tqdm

from training.config import OptimConfig, RunConfig, add_config_args, config_from_args
from training.distributed import (
    Dist,
    barrier,
    full_tensor,
    gather_objects,
    leave_distributed,
    param_digest,
    setup_distributed,
    wrap_model,
)
from training.metrics import METRICS_FILE, MetricsLogger, flops_per_token, mfu, peak_flops, plot_curves
from training.models.checkpoint import (
    DCP,
    Checkpoint,
    latest_checkpoint,
    load_checkpoint,
    load_dcp_state,
    save_checkpoint,
    save_dcp_checkpoint,
)
from training.models.transformer import Transformer
from training.schedule import lr_at
from typedconfig import to_dict

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
CONFIG_FILE = "config.json"

# A metric is a (sum, count) pair; the logged value is the sum over micro-batches and ranks divided by the
# count over the same, so every metric is a proper mean whatever the batch sizes.
Metrics = dict[str, tuple[torch.Tensor, torch.Tensor]]


def metric(
    total: torch.Tensor | float, count: torch.Tensor | float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """A (sum, count) metric from tensors or numbers; detached, float64 for exact sums."""
    as_tensor = lambda x: torch.as_tensor(x.detach() if isinstance(x, torch.Tensor) else x)  # noqa: E731
    return as_tensor(total).double().cpu(), as_tensor(count).double().cpu()


@dataclass
class TrainContext:
    """What an objective may use to set itself up."""

    d: Dist
    run_dir: Path
    run: RunConfig
    resuming: bool  # a checkpoint will be restored after setup (reuse the run's own tokenizer)


class Objective(Protocol):
    """One way of training the model: its data, its loss, its metrics.

    `loss` returns the loss SUMMED over the batch's loss tokens (the trainer normalises by the step's total,
    which it learns from `loss_tokens` before any forward pass), plus (sum, count) metrics. It receives the
    wrapped model (DDP/FSDP2) and must call it, not its submodules, so that gradients are synchronised.
    """

    name: str
    seq_len: int  # typical tokens per sequence, for the FLOP estimate

    def setup(self, ctx: TrainContext) -> Transformer: ...

    def meta(self) -> dict[str, Any]: ...

    def begin_step(self, step: int, model: nn.Module) -> dict[str, float]: ...

    def next_batch(self) -> Any: ...

    def loss_tokens(self, batch: Any) -> int: ...

    def input_tokens(self, batch: Any) -> int: ...

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, Metrics]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def position(self) -> dict[str, Any]: ...

    def curves(self) -> dict[str, list[str]]: ...

    def summary(self) -> dict[str, Any]: ...


class TensorState(Protocol):
    """Optional for an objective: tensors it keeps besides the model and must get back on resume (GRPO's
    synced reference), the same on every rank, or DTensors sharded like the model's (a frozen model under
    FSDP2): gathered for a safetensors checkpoint, written as shards in a DCP one. `load_tensor_state` gets
    what `tensor_state` gave (full tensors, or the very DTensors DCP loaded in place)."""

    def tensor_state(self) -> dict[str, torch.Tensor]: ...

    def load_tensor_state(self, state: dict[str, torch.Tensor]) -> None: ...


class LoaderObjective:
    """Plumbing shared by objectives whose data is one resumable loader with a `stats` Counter (pretraining,
    SFT): batches, data state for checkpoints and the summary come from the loader."""

    loader: Any = None

    def next_batch(self) -> Any:
        assert self.loader is not None, "setup() first"
        return next(self.loader)

    def state_dict(self) -> dict[str, Any]:
        return self.loader.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.loader.load_state_dict(state)

    def summary(self) -> dict[str, Any]:
        stats = dict(self.loader.stats) if self.loader is not None else {}
        return {**stats, "skipped": {k: v for k, v in stats.items() if k.startswith("skipped")}}


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight matrices decay; embeddings (a tied head with them), norm gains and biases do not. Decay pulls
    the rows of tokens a batch never shows towards zero, which erodes a pretrained vocabulary (nanoGPT,
    Megatron and OLMo keep embeddings out of decay too)."""
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    params = [p for p in model.parameters() if p.requires_grad]
    decays = lambda p: p.ndim >= 2 and id(p) not in embeddings  # noqa: E731
    return [
        {"params": [p for p in params if decays(p)], "weight_decay": weight_decay},
        {"params": [p for p in params if not decays(p)], "weight_decay": 0.0},
    ]


@dataclass
class StepResult:
    metrics: Metrics  # this rank's (sum, count) pairs over the step's micro-batches
    grad_norm: float
    lr: float
    schedule: dict[str, float]  # the objective's per-step values (MTP weight, ...)
    input_tokens: int  # this rank's
    last_batch: Any


@dataclass
class Trainer:
    run: RunConfig
    optim: OptimConfig
    objective: Objective
    d: Dist
    model: Transformer  # the plain module (FSDP2 shards it in place; DDP wraps it in `wrapped`)
    wrapped: nn.Module
    opt: torch.optim.Optimizer
    meta: dict[str, Any] = field(default_factory=dict)  # stored with every checkpoint
    step: int = 0  # optimiser steps done
    tokens: int = 0  # input tokens seen, all ranks
    resumed: bool = False

    @classmethod
    def build(cls, run: RunConfig, optim: OptimConfig, objective: Objective, config: Any) -> Trainer:
        """Join the process group, let the objective build its model and data, wrap, restore if resuming."""
        d = setup_distributed(run.device)
        run_dir = Path(run.out)
        run_dir.mkdir(parents=True, exist_ok=True)
        resume_from = latest_checkpoint(run_dir / CHECKPOINT_DIR)
        if resume_from is not None and not run.resume:
            raise FileExistsError(
                f"{run_dir} already holds checkpoints: pass --resume or choose another --out"
            )
        if run.resume and resume_from is None:
            log.info("no checkpoint in %s: starting from scratch", run_dir)
        torch.manual_seed(run.seed)
        model = objective.setup(TrainContext(d, run_dir, run, resuming=resume_from is not None))
        model = model.to(d.device)
        model.configure(activation_checkpointing=run.activation_checkpointing, attention=run.attention)
        meta = {
            "objective": objective.name,
            "config": to_dict(config),
            "model_config": to_dict(model.cfg),
            **objective.meta(),
        }
        if d.is_main:
            (run_dir / CONFIG_FILE).write_text(json.dumps(meta, indent=1))
        wrapped = wrap_model(model, run.parallel, d, run.mixed_precision)
        opt = torch.optim.AdamW(
            param_groups(model, optim.weight_decay),
            lr=optim.lr,
            betas=(optim.beta1, optim.beta2),
            fused=d.device.type == "cuda" and run.parallel != "fsdp",
        )
        trainer = cls(run, optim, objective, d, model, wrapped, opt, meta)
        if resume_from is not None:
            trainer.restore(resume_from)
        return trainer

    # -- one step -----------------------------------------------------------------------------------------

    def train_step(self) -> StepResult:
        """One optimiser step over grad_accum micro-batches."""
        lr = lr_at(self.step, self.optim, self.run.max_steps)
        for group in self.opt.param_groups:
            group["lr"] = lr
        self.wrapped.train()
        schedule = self.objective.begin_step(self.step, self.wrapped)
        batches = [self.objective.next_batch() for _ in range(self.optim.grad_accum)]
        sums = self.accumulate(batches)
        max_norm = self.optim.grad_clip if self.optim.grad_clip > 0 else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)
        if hasattr(grad_norm, "full_tensor"):  # FSDP2: a DTensor
            grad_norm = grad_norm.full_tensor()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.step += 1
        input_tokens = sum(self.objective.input_tokens(b) for b in batches)
        return StepResult(sums, float(grad_norm), lr, schedule, input_tokens, batches[-1])

    def accumulate(self, batches: list[Any]) -> Metrics:
        """Forward and backward over micro-batches, gradients synchronised on the last one only, each summed
        loss scaled by world_size / (loss tokens of all micro-batches on all ranks)."""
        d = self.d
        counts = torch.tensor([float(self.objective.loss_tokens(b)) for b in batches], dtype=torch.float64)
        total = counts.sum()
        if d.world_size > 1:
            dist.all_reduce(total)
        scale = d.world_size / max(float(total), 1.0)
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if d.device.type == "cuda" else nullcontext()
        sums: Metrics = {}
        for micro, batch in enumerate(batches):
            sync = micro == len(batches) - 1
            no_sync = nullcontext()
            if d.world_size > 1 and self.run.parallel == "fsdp":
                self.model.set_requires_gradient_sync(sync)
            elif d.world_size > 1 and not sync:
                no_sync = self.wrapped.no_sync()
            with no_sync:
                with autocast:
                    loss_sum, metrics = self.objective.loss(self.wrapped, batch)
                (loss_sum * scale).backward()
            for key, (value, count) in {"loss": metric(loss_sum, counts[micro]), **metrics}.items():
                old = sums.get(key, (0.0, 0.0))
                sums[key] = (old[0] + value, old[1] + count)
        return sums

    # -- checkpoints --------------------------------------------------------------------------------------

    def _rank_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "data": self.objective.state_dict(),
            "python_rng": random.getstate(),
            "rng_cpu": torch.get_rng_state(),
        }
        if self.d.device.type == "cuda":
            state["rng_cuda"] = torch.cuda.get_rng_state(self.d.device)
        return state

    def ckpt_format(self) -> str:
        """safetensors or dcp; `auto` is dcp under torchrun FSDP2, where no rank should hold the full state."""
        if self.run.ckpt_format != "auto":
            return self.run.ckpt_format
        return DCP if self.d.world_size > 1 and self.run.parallel == "fsdp" else "safetensors"

    def save(self) -> None:
        """Collective: every rank contributes its data position and RNG; rank 0 writes the full tensors
        (safetensors), or every rank writes its own shards (dcp). The schedules are functions of the step, so
        their state is the step (the next values are stored to read)."""
        sharded = self.ckpt_format() == DCP
        model_sd, optim_sd = get_state_dict(
            self.model,
            self.opt,
            options=StateDictOptions(full_state_dict=not sharded, cpu_offload=not sharded),
        )
        tensors = self.objective.tensor_state() if hasattr(self.objective, "tensor_state") else {}
        if not sharded:
            tensors = {k: full_tensor(v) for k, v in tensors.items()}  # a collective for DTensors
        ranks = gather_objects(self._rank_state(), self.d)
        rng = {f"rank{r}.{k}": v for r, s in enumerate(ranks) for k, v in s.items() if k.startswith("rng_")}
        per_rank = {
            "data": [s["data"] for s in ranks],
            "python_rng": [s["python_rng"] for s in ranks],
            "world_size": self.d.world_size,
            "tokens": self.tokens,
            "scheduler": {"step": self.step, "next_lr": lr_at(self.step, self.optim, self.run.max_steps)},
        }
        root = Path(self.run.out) / CHECKPOINT_DIR
        if sharded:
            state = {"model": model_sd, "optimizer": optim_sd, "objective": tensors}
            path = save_dcp_checkpoint(
                root, self.step, state, rng, {**self.meta, **per_rank}, is_main=self.d.is_main,
                keep=self.run.keep_checkpoints,
            )  # fmt: skip
        elif self.d.is_main:
            path = save_checkpoint(
                root,
                Checkpoint(self.step, model_sd, optim_sd, rng, {**self.meta, **per_rank}, tensors),
                keep=self.run.keep_checkpoints,
            )
        if self.d.is_main:
            log.info("checkpoint %s", path)
        barrier(self.d)

    def restore(self, path: Path) -> None:
        """Weights, optimiser state, the objective's data position and tensors, this rank's RNG, the step and
        the token count. From a sharded checkpoint each rank reads only its own shards."""
        ckpt = load_checkpoint(path)
        d = self.d
        if ckpt.meta["world_size"] != d.world_size:
            raise ValueError(f"{path} was written by {ckpt.meta['world_size']} ranks; resume with as many")
        if ckpt.meta["model_config"] != self.meta["model_config"]:
            raise ValueError(
                f"{path}: model configuration differs from this run's: {ckpt.meta['model_config']}"
            )
        if ckpt.meta["config"]["run"]["max_steps"] != self.run.max_steps:
            log.warning("max_steps changed since %s: the learning-rate schedule changes with it", path)
        if ckpt.meta.get("storage") == DCP:
            model_sd, optim_sd = get_state_dict(self.model, self.opt)  # this rank's shards, to load into
            tensors = self.objective.tensor_state() if hasattr(self.objective, "tensor_state") else {}
            state = {"model": model_sd, "optimizer": optim_sd, "objective": tensors}
            load_dcp_state(path, state, ckpt.meta)
            set_state_dict(self.model, self.opt, model_state_dict=model_sd, optim_state_dict=optim_sd)
            ckpt.objective = tensors
        else:
            set_state_dict(
                self.model,
                self.opt,
                model_state_dict=ckpt.model,
                optim_state_dict=ckpt.optimizer,
                options=StateDictOptions(full_state_dict=True),
            )
        self.objective.load_state_dict(ckpt.meta["data"][d.rank])
        if hasattr(self.objective, "load_tensor_state"):
            self.objective.load_tensor_state(ckpt.objective)
        version, internal, gauss = ckpt.meta["python_rng"][d.rank]
        random.setstate((version, tuple(internal), gauss))
        torch.set_rng_state(ckpt.rng[f"rank{d.rank}.rng_cpu"])
        if d.device.type == "cuda":
            torch.cuda.set_rng_state(ckpt.rng[f"rank{d.rank}.rng_cuda"], d.device)
        self.step, self.tokens, self.resumed = ckpt.step, ckpt.meta["tokens"], True

    # -- logging ------------------------------------------------------------------------------------------

    def _log_record(self, result: StepResult, speed: Throughput) -> dict[str, Any]:
        """Metrics reduced over ranks, with schedule values and throughput (a collective under torchrun)."""
        keys = sorted(result.metrics)
        if self.d.world_size > 1:  # every rank reports the same keys: the objective's metrics are fixed
            names = gather_objects(keys, self.d)
            if any(n != keys for n in names):
                raise RuntimeError(f"ranks disagree on metric names: {names}")
        stacked = torch.stack([torch.stack(result.metrics[k]) for k in keys])
        if self.d.world_size > 1:
            stacked = stacked.to(self.d.device)
            dist.all_reduce(stacked)
        values = {
            k: float(s / c) if c > 0 else float("nan")
            for k, (s, c) in zip(keys, stacked.tolist(), strict=True)
        }
        data_stats = self.objective.summary().get("skipped", {})
        return {
            "step": self.step,
            **{k: values[k] for k in ("loss", *[k for k in keys if k != "loss"])},
            **result.schedule,
            "lr": result.lr,
            "grad_norm": result.grad_norm,
            **speed.measure(self.step, self.tokens),
            **{f"data_{k}": v for k, v in data_stats.items()},  # this rank's
        }

    def _rank_record(self, result: StepResult) -> dict[str, Any]:
        """What the distributed tests compare across ranks: weights, and which data each rank read."""
        ids = getattr(result.last_batch, "input_ids", None)
        if ids is not None:
            digest = hashlib.sha256(ids.cpu().numpy().tobytes()).hexdigest()
        else:  # a JSON-like batch (GRPO's rollouts)
            digest = hashlib.sha256(
                json.dumps(result.last_batch, sort_keys=True, default=str).encode()
            ).hexdigest()
        return {
            "step": self.step,
            "param_digest": param_digest(self.model),
            "batch_digest": digest,
            **self.objective.position(),
        }

    # -- the loop -----------------------------------------------------------------------------------------

    def fit(self) -> dict[str, Any]:
        run, d = self.run, self.d
        run_dir = Path(run.out)
        start = self.step
        end = min(run.max_steps, run.stop_at or run.max_steps)
        logger = None
        if d.is_main:
            resume_step = start if self.resumed else None
            logger = MetricsLogger(run_dir, resume_step, run.log_to, self.meta)
        rank_log = None
        if run.rank_logs:
            rank_log = open(run_dir / f"rank{d.rank}.jsonl", "a" if self.resumed else "w")  # noqa: SIM115
        speed = Throughput(self, start)
        progress = tqdm(
            total=end, initial=start, disable=not d.is_main, desc=self.objective.name, dynamic_ncols=True
        )
        record: dict[str, Any] = {}
        while self.step < end:
            result = self.train_step()
            tokens = torch.tensor(float(result.input_tokens))
            if d.world_size > 1:
                dist.all_reduce(tokens)
            self.tokens += int(tokens)
            progress.update(1)
            if rank_log is not None:
                rank_log.write(json.dumps(self._rank_record(result)) + "\n")
                rank_log.flush()
            if self.step % run.log_every == 0 or self.step == end:
                record = self._log_record(result, speed)
                if logger is not None:
                    logger.log(record)
                progress.set_postfix(loss=f"{record['loss']:.3f}", tok_s=f"{record['tokens_per_s']:,.0f}")
            if self.step % run.ckpt_every == 0 or self.step == end:
                self.save()
        progress.close()
        if rank_log is not None:
            rank_log.close()
        if logger is not None:
            logger.close()
            if (run_dir / METRICS_FILE).stat().st_size:
                plot_curves(run_dir / METRICS_FILE, run_dir, self.objective.curves())
        summary = self.objective.summary()
        log.info("%s data: %s", self.objective.name, summary)
        return {
            "start": start,
            "step": max(end, start),
            "last": record,
            "run_dir": str(run_dir),
            "data": summary,
        }


class Throughput:
    """Tokens/s and MFU between two log lines."""

    def __init__(self, trainer: Trainer, start: int) -> None:
        d = trainer.d
        self.device = d.device
        self.world_size = d.world_size
        self.flops_per_token = flops_per_token(trainer.model.cfg, trainer.objective.seq_len)
        self.peak = peak_flops(torch.cuda.get_device_name(d.device)) if d.device.type == "cuda" else None
        self.last_time, self.last_tokens = time.perf_counter(), trainer.tokens

    def measure(self, step: int, tokens: int) -> dict[str, Any]:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        tokens_per_s = (tokens - self.last_tokens) / max(now - self.last_time, 1e-9)
        self.last_time, self.last_tokens = now, tokens
        return {
            "tokens": tokens,
            "tokens_per_s": tokens_per_s,
            "mfu": mfu(tokens_per_s / self.world_size, self.flops_per_token, self.peak),
        }


def train(run: RunConfig, optim: OptimConfig, objective: Objective, config: Any) -> dict[str, Any]:
    """Train as configured (in this process, or as one torchrun rank); returns a short summary."""
    try:
        summary = Trainer.build(run, optim, objective, config).fit()
    except BaseException:
        leave_distributed(clean=False)
        raise
    leave_distributed()
    return summary


def command_line(config_cls: type, run: Any, prog: str, doc: str, argv: list[str] | None = None) -> int:
    """`python -m training.<objective>` (the torchrun entry points): flags from the run config's sections."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog=prog, description=doc.splitlines()[0])
    add_config_args(parser, config_cls)
    run(config_from_args(config_cls, parser.parse_args(argv)))
    return 0
