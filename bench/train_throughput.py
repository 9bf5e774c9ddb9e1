"""Training throughput (tokens/s) and MFU of the model presets, with and without MTP.

Runs the real training step (`training.trainer.Trainer.train_step` with the pretraining objective: bf16 autocast on GPU, AdamW, clipping) on
synthetic packed batches (random tokens, random document boundaries), so it measures the model and the step,
not the tokenizer. Each preset's MTP runs are reported as a ratio against the same preset without MTP, measured
in the same invocation.

    python bench/train_throughput.py --device cuda --presets tiny,small,125m,350m,1b --seq-len 2048
    python bench/train_throughput.py --device cpu --presets tiny --steps 3 --warmup 1 --seq-len 128 --batch-size 2
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.config import (
    PRESETS,
    DataConfig,
    OptimConfig,
    PretrainConfig,
    PretrainModelConfig,
    RunConfig,
    model_config,
)
from training.data.packing import Batch, shift_targets
from training.distributed import Dist
from training.metrics import flops_per_token, mfu, peak_flops
from training.models.transformer import Transformer
from training.objectives.pretrain import PretrainObjective
from training.trainer import Trainer
from typedconfig import add_dataclass_args, dataclass_from_args, to_dict


@dataclass
class BenchConfig:
    device: str = field(default="cuda", metadata={"help": "cuda or cpu"})
    presets: tuple[str, ...] = field(
        default=("tiny", "small", "125m", "350m", "1b"), metadata={"help": "presets"}
    )
    mtp_depths: tuple[int, ...] = field(default=(0, 1), metadata={"help": "MTP depths; 0 is the baseline"})
    seq_len: int = 2048
    batch_size: int = 8
    vocab_size: int = 32768
    mean_doc_len: int = field(default=600, metadata={"help": "mean synthetic document length in tokens"})
    doc_mask: bool = field(default=True, metadata={"help": "document-masked attention, as in training"})
    fused_kernels: bool = field(default=False, metadata={"help": "route norms and losses through kernels/"})
    warmup: int = field(default=3, metadata={"help": "untimed steps first"})
    steps: int = field(default=10, metadata={"help": "timed steps"})
    peak_tflops: float = field(default=0.0, metadata={"help": "override the device's peak bf16 TFLOP/s"})
    out: str = field(default="", metadata={"help": "also write the results as JSON here"})


def synthetic_batches(cfg: BenchConfig, generator: torch.Generator, device: torch.device) -> Iterator[Batch]:
    """Random tokens packed into rows with random document boundaries (doc ids and targets as the loader
    makes them)."""
    rng = np.random.default_rng(int(torch.randint(0, 2**31, (1,), generator=generator)))
    shape = (cfg.batch_size, cfg.seq_len + 1)
    while True:
        tokens = rng.integers(16, cfg.vocab_size, shape)
        docs = np.cumsum(rng.random(shape) < 1.0 / cfg.mean_doc_len, axis=1)
        yield Batch(
            torch.from_numpy(tokens[:, :-1]).to(device),
            torch.from_numpy(shift_targets(tokens, docs)).to(device),
            torch.from_numpy(docs[:, :-1]).to(device),
        )


def measure(cfg: BenchConfig, preset: str, mtp_depth: int) -> dict:
    device = torch.device(cfg.device)
    mcfg = model_config(
        preset, cfg.vocab_size, max_seq_len=cfg.seq_len, mtp_depth=mtp_depth, fused_kernels=cfg.fused_kernels
    )
    train = PretrainConfig(
        run=RunConfig(out="", max_steps=cfg.warmup + cfg.steps),
        data=DataConfig(
            data="synthetic", seq_len=cfg.seq_len, batch_size=cfg.batch_size, doc_mask=cfg.doc_mask
        ),
        optim=OptimConfig(),
        model=PretrainModelConfig(preset=preset, mtp_depth=mtp_depth),
    )
    model = Transformer(mcfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    objective = PretrainObjective(train)  # the real objective and trainer step, on synthetic batches
    objective.loader = synthetic_batches(cfg, torch.Generator().manual_seed(0), device)  # type: ignore[assignment]
    objective.device = device
    trainer = Trainer(train.run, train.optim, objective, Dist(0, 1, 0, device), model, model, opt)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(cfg.warmup):
        trainer.train_step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(cfg.steps):
        result = trainer.train_step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elapsed = time.perf_counter() - start
    tokens_per_s = cfg.batch_size * cfg.seq_len * cfg.steps / elapsed
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = cfg.peak_tflops * 1e12 if cfg.peak_tflops else peak_flops(name)
    return {
        "preset": preset,
        "mtp_depth": mtp_depth,
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "tokens_per_s": tokens_per_s,
        "mfu": mfu(tokens_per_s, flops_per_token(mcfg, cfg.seq_len), peak),
        "peak_mem_gb": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
        "loss": float(result.metrics["loss"][0] / result.metrics["loss"][1]),
        "device": name,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_dataclass_args(parser, BenchConfig)
    cfg = dataclass_from_args(BenchConfig, parser.parse_args(argv))
    if cfg.device == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA device here; use --device cpu (for a functional check only)")
    unknown = set(cfg.presets) - set(PRESETS)
    if unknown:
        parser.error(f"unknown presets {sorted(unknown)}; choose from {list(PRESETS)}")
    rows = []
    for preset in cfg.presets:
        baseline = None
        for depth in cfg.mtp_depths:
            try:
                row = measure(cfg, preset, depth)
            except torch.cuda.OutOfMemoryError:
                row = {"preset": preset, "mtp_depth": depth, "error": "out of memory"}
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            if depth == 0 and "tokens_per_s" in row:
                baseline = row["tokens_per_s"]
            row["vs_no_mtp"] = row["tokens_per_s"] / baseline if baseline and "tokens_per_s" in row else None
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(
        f"\nseq_len {cfg.seq_len}, batch {cfg.batch_size}, doc_mask {cfg.doc_mask}, fused {cfg.fused_kernels}"
    )
    print("| preset | MTP D | params (M) | tokens/s | vs D=0 | MFU | peak mem (GB) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        if "error" in r:
            print(f"| {r['preset']} | {r['mtp_depth']} | | {r['error']} | | | |")
            continue
        ratio = f"{r['vs_no_mtp']:.2f}" if r["vs_no_mtp"] else "-"
        util = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a"
        mem = f"{r['peak_mem_gb']:.1f}" if r["peak_mem_gb"] is not None else "-"
        print(
            f"| {r['preset']} | {r['mtp_depth']} | {r['params_m']:.1f} | {r['tokens_per_s']:,.0f} | {ratio} "
            f"| {util} | {mem} |"
        )
    if cfg.out:
        Path(cfg.out).write_text(json.dumps({"config": to_dict(cfg), "results": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
