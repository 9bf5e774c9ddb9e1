"""Pretraining loop with multi-token prediction; `python -m training.pretrain` is the torchrun entry point.

One process per device: plain on one device, DDP or FSDP2 under torchrun (gloo on CPU, NCCL on GPU). All
state needed to continue bit for bit (weights, AdamW moments, step, each rank's loader position and RNG) goes
into the checkpoint; learning rate and MTP weight are functions of the step, so they need nothing more.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from tokenizers import Tokenizer
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict, set_state_dict
from tqdm import tqdm

from mathforge.config import to_dict
from training.checkpoint import Checkpoint, latest_checkpoint, load_checkpoint, save_checkpoint
from training.config import TrainConfig, add_train_args, model_config, train_config_from_args
from training.data import Batch, Corpus, PackedLoader, index_corpus, iter_texts
from training.distributed import Dist, barrier, gather_objects, param_digest, setup_distributed, wrap_model
from training.metrics import (
    LOSS_CURVE_FILE,
    METRICS_FILE,
    MetricsLogger,
    flops_per_token,
    mfu,
    peak_flops,
    plot_loss_curve,
)
from training.model import Transformer
from training.schedule import lr_at, mtp_lambda_at
from training.tokenizer import load_tokenizer, train_tokenizer

log = logging.getLogger(__name__)

TOKENIZER_FILE = "tokenizer.json"
CHECKPOINT_DIR = "checkpoints"


def prepare_tokenizer(cfg: TrainConfig, corpus: Corpus, run_dir: Path, d: Dist, resuming: bool) -> Tokenizer:
    """The given tokenizer.json, the run's own (when resuming), or one trained on the corpus by rank 0."""
    if cfg.data.tokenizer:
        return load_tokenizer(cfg.data.tokenizer)
    path = run_dir / TOKENIZER_FILE
    if not (resuming and path.is_file()):
        if d.is_main:
            log.info(
                "training a %d-token BPE on up to %d documents", cfg.data.vocab_size, cfg.data.tokenizer_docs
            )
            tokenizer = train_tokenizer(iter_texts(corpus, cfg.data.tokenizer_docs), cfg.data.vocab_size)
            tmp = path.with_name(f".{path.name}.tmp")
            tokenizer.save(str(tmp))
            os.replace(tmp, path)
        barrier(d)
    return load_tokenizer(path)


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Matrices decay, norm gains do not."""
    params = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]


def _rank_state(loader: PackedLoader, d: Dist) -> dict[str, Any]:
    state: dict[str, Any] = {
        "loader": loader.state_dict(),
        "python_rng": random.getstate(),
        "rng_cpu": torch.get_rng_state(),
    }
    if d.device.type == "cuda":
        state["rng_cuda"] = torch.cuda.get_rng_state(d.device)
    return state


def save(
    step: int,
    model: Transformer,
    opt: torch.optim.Optimizer,
    loader: PackedLoader,
    meta: dict[str, Any],
    cfg: TrainConfig,
    d: Dist,
) -> None:
    """Collective: every rank contributes its loader position and RNG, rank 0 writes full tensors. The
    schedules are functions of the step, so their state is the step (their values are stored to read)."""
    model_sd, optim_sd = get_state_dict(
        model, opt, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
    )
    ranks = gather_objects(_rank_state(loader, d), d)
    if d.is_main:
        rng = {f"rank{r}.{k}": v for r, s in enumerate(ranks) for k, v in s.items() if k.startswith("rng_")}
        per_rank = {
            "loaders": [s["loader"] for s in ranks],
            "python_rng": [s["python_rng"] for s in ranks],
            "world_size": d.world_size,
            "scheduler": {
                "step": step,
                "next_lr": lr_at(step, cfg.optim, cfg.run.max_steps),
                "next_mtp_weight": mtp_lambda_at(step, cfg.run),
            },
        }
        path = save_checkpoint(
            Path(cfg.run.out) / CHECKPOINT_DIR,
            Checkpoint(step, model_sd, optim_sd, rng, {**meta, **per_rank}),
            keep=cfg.run.keep_checkpoints,
        )
        log.info("checkpoint %s", path)
    barrier(d)


def restore(
    path: Path,
    model: Transformer,
    opt: torch.optim.Optimizer,
    loader: PackedLoader,
    meta: dict[str, Any],
    d: Dist,
) -> int:
    """Load weights, optimiser state, this rank's loader position and RNG; returns the step to continue from."""
    ckpt = load_checkpoint(path)
    if ckpt.meta["world_size"] != d.world_size:
        raise ValueError(f"{path} was written by {ckpt.meta['world_size']} ranks; resume with as many")
    if ckpt.meta["model_config"] != meta["model_config"]:
        raise ValueError(f"{path}: model configuration differs from this run's: {ckpt.meta['model_config']}")
    if ckpt.meta["config"]["run"]["max_steps"] != meta["config"]["run"]["max_steps"]:
        log.warning("max_steps changed since %s: the learning-rate and MTP schedules change with it", path)
    set_state_dict(
        model,
        opt,
        model_state_dict=ckpt.model,
        optim_state_dict=ckpt.optimizer,
        options=StateDictOptions(full_state_dict=True),
    )
    loader.load_state_dict(ckpt.meta["loaders"][d.rank])
    version, internal, gauss = ckpt.meta["python_rng"][d.rank]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(ckpt.rng[f"rank{d.rank}.rng_cpu"])
    if d.device.type == "cuda":
        torch.cuda.set_rng_state(ckpt.rng[f"rank{d.rank}.rng_cuda"], d.device)
    return ckpt.step


@dataclass
class Session:
    """Everything one rank trains with, built by `setup`."""

    cfg: TrainConfig
    d: Dist
    model: Transformer  # the plain module (FSDP2 shards it in place; DDP wraps it in `wrapped`)
    wrapped: nn.Module
    opt: torch.optim.Optimizer
    loader: PackedLoader
    meta: dict[str, Any]  # configuration stored with every checkpoint
    start: int  # steps already done (from the checkpoint)
    resumed: bool


@dataclass
class StepResult:
    losses: torch.Tensor  # [loss, main_loss, mtp_loss_1..D], averaged over micro-batches (this rank)
    grad_norm: float
    lr: float
    mtp_weight: float
    last_batch: Batch


def setup(cfg: TrainConfig, d: Dist) -> Session:
    run_dir = Path(cfg.run.out)
    run_dir.mkdir(parents=True, exist_ok=True)
    resume_from = latest_checkpoint(run_dir / CHECKPOINT_DIR)
    if resume_from is not None and not cfg.run.resume:
        raise FileExistsError(f"{run_dir} already holds checkpoints: pass --resume or choose another --out")
    if cfg.run.resume and resume_from is None:
        log.info("no checkpoint in %s: starting from scratch", run_dir)

    corpus = index_corpus(cfg.data.data, cfg.data.text_column)
    tokenizer = prepare_tokenizer(cfg, corpus, run_dir, d, resuming=resume_from is not None)
    mcfg = model_config(
        cfg.run.preset,
        tokenizer.get_vocab_size(),
        max_seq_len=cfg.data.seq_len,
        mtp_depth=cfg.run.mtp_depth,
        fused_kernels=cfg.run.fused_kernels,
    )
    meta = {"config": to_dict(cfg), "model_config": to_dict(mcfg)}
    if d.is_main:
        (run_dir / "config.json").write_text(json.dumps(meta, indent=1))

    torch.manual_seed(cfg.run.seed)
    model = Transformer(mcfg, seed=cfg.run.seed).to(d.device)
    wrapped = wrap_model(model, cfg.run.parallel, d)
    opt = torch.optim.AdamW(
        _param_groups(model, cfg.optim.weight_decay),
        lr=cfg.optim.lr,
        betas=(cfg.optim.beta1, cfg.optim.beta2),
        fused=d.device.type == "cuda" and cfg.run.parallel != "fsdp",
    )
    loader = PackedLoader(
        corpus,
        tokenizer,
        cfg.data.seq_len,
        cfg.data.batch_size,
        rank=d.rank,
        world_size=d.world_size,
        seed=cfg.run.seed,
        shuffle=cfg.data.shuffle,
    )
    start = restore(resume_from, model, opt, loader, meta, d) if resume_from is not None else 0
    return Session(cfg, d, model, wrapped, opt, loader, meta, start, resumed=resume_from is not None)


def train_step(s: Session, step: int) -> StepResult:
    """One optimiser step over grad_accum micro-batches (gradients synchronised on the last one only)."""
    cfg, d = s.cfg, s.d
    lr = lr_at(step, cfg.optim, cfg.run.max_steps)
    for group in s.opt.param_groups:
        group["lr"] = lr
    mtp_weight = mtp_lambda_at(step, cfg.run)
    accum = cfg.optim.grad_accum
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if d.device.type == "cuda" else nullcontext()
    losses = torch.zeros(2 + s.model.cfg.mtp_depth, device=d.device)
    for micro in range(accum):
        batch = next(s.loader).to(d.device)
        sync = micro == accum - 1
        no_sync = nullcontext()
        if d.world_size > 1 and cfg.run.parallel == "fsdp":
            s.model.set_requires_gradient_sync(sync)
        elif d.world_size > 1 and not sync:
            no_sync = s.wrapped.no_sync()
        with no_sync, autocast:
            out = s.wrapped(batch.input_ids, batch.targets, batch.doc_ids, mtp_weight, cfg.data.doc_mask)
            (out.loss / accum).backward()
        losses += torch.stack([out.loss, out.main_loss, *out.mtp_losses]).detach().float() / accum
    max_norm = cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else float("inf")
    grad_norm = torch.nn.utils.clip_grad_norm_(s.model.parameters(), max_norm)
    if hasattr(grad_norm, "full_tensor"):  # FSDP2: a DTensor
        grad_norm = grad_norm.full_tensor()
    s.opt.step()
    s.opt.zero_grad(set_to_none=True)
    return StepResult(losses, float(grad_norm), lr, mtp_weight, batch)


def _rank_record(s: Session, step: int, result: StepResult) -> dict[str, Any]:
    """What the distributed test compares across ranks: weights, and which data each rank read."""
    position = s.loader.state()
    return {
        "step": step,
        "param_digest": param_digest(s.model),
        "batch_digest": hashlib.sha256(result.last_batch.input_ids.cpu().numpy().tobytes()).hexdigest(),
        "shard": position.shard,
        "row_group": position.row_group,
        "epoch": position.epoch,
    }


class Throughput:
    """Tokens/s and MFU between two log lines."""

    def __init__(self, s: Session, start: int) -> None:
        cfg, d = s.cfg, s.d
        self.device = d.device
        self.tokens_per_step = cfg.data.batch_size * cfg.data.seq_len * cfg.optim.grad_accum * d.world_size
        self.world_size = d.world_size
        self.flops_per_token = flops_per_token(s.model.cfg, cfg.data.seq_len)
        self.peak = peak_flops(torch.cuda.get_device_name(d.device)) if d.device.type == "cuda" else None
        self.last_time, self.last_step = time.perf_counter(), start

    def measure(self, step: int) -> dict[str, Any]:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        tokens_per_s = self.tokens_per_step * (step - self.last_step) / (now - self.last_time)
        self.last_time, self.last_step = now, step
        return {
            "tokens": step * self.tokens_per_step,
            "tokens_per_s": tokens_per_s,
            "mfu": mfu(tokens_per_s / self.world_size, self.flops_per_token, self.peak),
        }


def _log_record(s: Session, step: int, result: StepResult, speed: Throughput) -> dict[str, Any]:
    """Losses averaged over ranks, with schedule values and throughput (a collective under torchrun)."""
    losses = result.losses
    if s.d.world_size > 1:
        dist.all_reduce(losses)
        losses = losses / s.d.world_size
    values = losses.tolist()
    return {
        "step": step,
        "loss": values[0],
        "main_loss": values[1],
        **{f"mtp_loss_{k}": v for k, v in enumerate(values[2:], start=1)},
        "mtp_weight": result.mtp_weight,
        "lr": result.lr,
        "grad_norm": result.grad_norm,
        **speed.measure(step),
        **{f"data_{k}": v for k, v in s.loader.stats.items() if k.startswith("skipped")},  # this rank's
    }


def run(cfg: TrainConfig) -> dict[str, Any]:
    """Train as configured (in this process, or as one torchrun rank); returns a short summary."""
    d = setup_distributed(cfg.run.device)
    try:
        return _train(setup(cfg, d))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _train(s: Session) -> dict[str, Any]:
    cfg, d = s.cfg, s.d
    run_dir = Path(cfg.run.out)
    end = min(cfg.run.max_steps, cfg.run.stop_at or cfg.run.max_steps)
    logger = MetricsLogger(run_dir, resume_step=s.start if s.resumed else None) if d.is_main else None
    rank_log = None
    if cfg.run.rank_logs:
        rank_log = open(run_dir / f"rank{d.rank}.jsonl", "a" if s.resumed else "w")  # noqa: SIM115
    speed = Throughput(s, s.start)
    progress = tqdm(total=end, initial=s.start, disable=not d.is_main, desc="pretrain", dynamic_ncols=True)
    record: dict[str, Any] = {}
    s.wrapped.train()
    for step in range(s.start + 1, end + 1):  # `step` counts completed optimiser steps
        result = train_step(s, step - 1)
        progress.update(1)
        if rank_log is not None:
            rank_log.write(json.dumps(_rank_record(s, step, result)) + "\n")
            rank_log.flush()
        if step % cfg.run.log_every == 0 or step == end:
            record = _log_record(s, step, result, speed)
            if logger is not None:
                logger.log(record)
            progress.set_postfix(loss=f"{record['loss']:.3f}", tok_s=f"{record['tokens_per_s']:,.0f}")
        if step % cfg.run.ckpt_every == 0 or step == end:
            save(step, s.model, s.opt, s.loader, s.meta, cfg, d)
    progress.close()
    if rank_log is not None:
        rank_log.close()
    if logger is not None:
        logger.close()
        if (run_dir / METRICS_FILE).stat().st_size:
            plot_loss_curve(run_dir / METRICS_FILE, run_dir / LOSS_CURVE_FILE)
    log.info("loader: %s", dict(s.loader.stats))
    return {
        "start": s.start,
        "step": max(end, s.start),
        "last": record,
        "run_dir": str(run_dir),
        "loader_stats": dict(s.loader.stats),
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training.pretrain", description=__doc__.splitlines()[0])
    add_train_args(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run(train_config_from_args(build_parser().parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
