"""One SFT step and one GRPO step at Qwen2.5-0.5B's and 1.5B's shapes: tokens/s, peak memory and MFU with each
memory lever on and off, every variant in a fresh process and against its objective's baseline of the same run.

Shapes are Qwen2.5's config.json values (random weights; qkv biases, tied embeddings, vocabulary 151,936, RoPE
θ 1e6). The SFT step is the real one (`SFTObjective.loss` through `Trainer.train_step`: bf16 autocast on GPU,
AdamW, clipping) on synthetic packed rows (documents of random length, loss on each one's completion half).
The GRPO step is a rollout (`generate`, KV cache, temperature 1) then an update: `completion_logprobs` of the
policy, the reference's under no_grad (β 0.04, k3), `policy_terms` + `aggregate` (dapo), backward, AdamW.

Levers: `ac` activation checkpointing per block; attention `dense` (the T×T document mask, the baseline), `sdpa`
(causal kernel when a batch holds one document per row, else dense) and `flex` (FlexAttention BlockMask; GPU
only: CPU FlexAttention has no backward); `ref_bf16` the frozen reference in bf16 (`--ref-dtype`); `mp_bf16`
FSDP2's bf16 parameter policy with fp32 reduction (`--mixed-precision`), here on a one-rank process group.
Peak memory is CUDA's max_memory_allocated above the set-up (model, optimiser state) on a GPU; on CPU the rise of
the process's peak RSS over its resident set after set-up. MFU uses training/metrics.py's FLOP count (GRPO:
the update's tokens only; rollout tokens/s is reported apart) and needs a known GPU or --peak-tflops.

    python bench/train_scale.py --scale 0.05 --seq 256                    # CPU, about a minute
    python bench/train_scale.py --device cuda --models 0.5b,1.5b --seq 2048 --batch 4
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.config import IGNORE_INDEX, ModelConfig, RunConfig, SFTConfig, SFTDataConfig, SFTOptimConfig
from training.data.packing import Batch, shift_targets
from training.distributed import Dist, prepare_frozen
from training.metrics import flops_per_token, mfu, peak_flops
from training.models.generation import completion_logprobs, generate
from training.models.transformer import Transformer
from training.objectives.grpo_loss import aggregate, policy_terms
from training.objectives.sft import SFTObjective
from training.trainer import Trainer
from typedconfig import add_dataclass_args, dataclass_from_args

# Qwen2.5 config.json values: hidden_size, num_hidden_layers, num_attention_heads, num_key_value_heads,
# intermediate_size (vocab_size 151936, tie_word_embeddings true, rope_theta 1e6, rms_norm_eps 1e-6).
SHAPES: dict[str, dict[str, int]] = {
    "0.5b": {"dim": 896, "n_layers": 24, "n_heads": 14, "n_kv_heads": 2, "ffn_dim": 4864},
    "1.5b": {"dim": 1536, "n_layers": 28, "n_heads": 12, "n_kv_heads": 2, "ffn_dim": 8960},
}
QWEN_VOCAB = 151936

# (name, objective, settings): each objective's first variant is its baseline.
VARIANTS: tuple[tuple[str, str, dict[str, object]], ...] = (
    ("baseline", "sft", {"attention": "dense"}),
    ("ac", "sft", {"attention": "dense", "activation_checkpointing": True}),
    ("sdpa", "sft", {"attention": "sdpa"}),
    ("flex", "sft", {"attention": "flex"}),
    ("flex+ac", "sft", {"attention": "flex", "activation_checkpointing": True}),
    ("mp_bf16", "sft", {"attention": "dense", "mixed_precision": "bf16"}),
    ("baseline", "grpo", {"ref_dtype": "fp32"}),
    ("ac", "grpo", {"ref_dtype": "fp32", "activation_checkpointing": True}),
    ("ref_bf16", "grpo", {"ref_dtype": "bf16"}),
    ("ac+ref_bf16", "grpo", {"ref_dtype": "bf16", "activation_checkpointing": True}),
)


@dataclass
class BenchConfig:
    device: str = field(default="cpu", metadata={"help": "cpu or cuda"})
    models: tuple[str, ...] = field(default=("0.5b", "1.5b"), metadata={"help": "shapes: 0.5b, 1.5b"})
    scale: float = field(
        default=1.0, metadata={"help": "scale head_dim, ffn, layers and vocabulary (CPU checks: 0.05)"}
    )
    layers: int = field(default=0, metadata={"help": "override the layer count (0: the shape's, scaled)"})
    seq: int = field(default=2048, metadata={"help": "SFT tokens per packed row"})
    batch: int = field(default=4, metadata={"help": "SFT rows per step"})
    mean_doc_len: int = field(default=0, metadata={"help": "mean SFT document length (0: seq / 4)"})
    prompts: int = field(default=2, metadata={"help": "GRPO prompts per step"})
    generations: int = field(default=4, metadata={"help": "GRPO completions per prompt"})
    prompt_len: int = field(default=128, metadata={"help": "GRPO prompt tokens"})
    new_tokens: int = field(default=128, metadata={"help": "GRPO completion tokens"})
    steps: int = field(default=2, metadata={"help": "timed steps after the first (memory) step"})
    variants: tuple[str, ...] = field(
        default=(), metadata={"help": "objective:name to run, e.g. sft:ac (default: all that fit the device)"}
    )
    peak_tflops: float = field(default=0.0, metadata={"help": "override the device's peak bf16 TFLOP/s"})
    fresh_process: bool = field(
        default=True, metadata={"help": "each variant in its own process (CPU peak RSS is per process)"}
    )
    out: str = field(default="train_scale", metadata={"help": "writes OUT.json and OUT.md"})
    one: str = field(default="", metadata={"help": "internal: run one variant (JSON) and print its row"})


def model_config(cfg: BenchConfig, shape: str) -> ModelConfig:
    """Qwen2.5's shape, scaled: head count kept, head_dim (even, >= 8), ffn, layers and vocabulary scaled."""
    s = SHAPES[shape]
    head_dim = max(8, 2 * round(s["dim"] // s["n_heads"] * cfg.scale / 2))
    layers = cfg.layers or max(1, math.ceil(s["n_layers"] * cfg.scale))
    vocab = QWEN_VOCAB if cfg.scale == 1.0 else max(1024, 64 * round(QWEN_VOCAB * cfg.scale / 64))
    return ModelConfig(
        vocab_size=vocab,
        dim=head_dim * s["n_heads"],
        n_layers=layers,
        n_heads=s["n_heads"],
        n_kv_heads=s["n_kv_heads"],
        ffn_dim=max(16, round(s["ffn_dim"] * cfg.scale)),
        max_seq_len=max(cfg.seq, cfg.prompt_len + cfg.new_tokens),
        rope_theta=1e6,
        mtp_depth=0,
        qkv_bias=True,
        tie_embeddings=True,
    )


def sft_batches(cfg: BenchConfig, vocab: int, device: torch.device) -> Iterator[Batch]:
    """Packed rows of random documents, each a prompt half (ignored) and a completion half (the loss)."""
    rng = np.random.default_rng(0)
    mean = cfg.mean_doc_len or max(8, cfg.seq // 4)
    while True:
        tokens = rng.integers(16, vocab, (cfg.batch, cfg.seq + 1))
        docs = np.cumsum(rng.random(tokens.shape) < 1.0 / mean, axis=1)
        targets = shift_targets(tokens, docs)
        position = np.arange(cfg.seq + 1)
        starts = np.maximum.accumulate(np.where(np.diff(docs, axis=1, prepend=-1) != 0, position, 0), axis=1)
        ends = np.stack([np.searchsorted(row, row, side="right") for row in docs])
        targets[(position < (starts + ends) // 2)[:, :-1]] = IGNORE_INDEX  # the prompt half of each document
        yield Batch(
            torch.from_numpy(tokens[:, :-1]).to(device),
            torch.from_numpy(targets).to(device),
            torch.from_numpy(docs[:, :-1]).to(device),
        )


def _fsdp_one_rank(model: Transformer, device: torch.device) -> None:
    """FSDP2's bf16 policy (training/distributed.py's: bf16 params, fp32 reduction) on a one-rank group."""
    import torch.distributed as dist
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(29500 + os.getpid() % 1000))
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=0, world_size=1)
    policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    for block in model.layers:
        fully_shard(block, mp_policy=policy)
    fully_shard(model, mp_policy=policy)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakMemory:
    """Peak memory of what runs inside, above what was held on entry (see the module docstring)."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.mb = device, 0.0

    def __enter__(self) -> PeakMemory:
        _sync(self.device)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
        else:
            self.base = _rss_bytes()
        return self

    def __exit__(self, *exc: object) -> None:
        _sync(self.device)
        if self.device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(self.device)
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        self.mb = max(0.0, peak - self.base) / 2**20


def _init_adam_state(model: torch.nn.Module, opt: torch.optim.Optimizer) -> None:
    """Allocate AdamW's state before measuring (a zero gradient leaves the weights as they are)."""
    for p in model.parameters():
        if p.requires_grad:
            p.grad = torch.zeros_like(p)
    opt.step()
    opt.zero_grad(set_to_none=True)


def run_sft(cfg: BenchConfig, mcfg: ModelConfig, settings: dict, device: torch.device) -> dict:
    model = Transformer(mcfg).to(device)
    model.configure(
        activation_checkpointing=bool(settings.get("activation_checkpointing")),
        attention=str(settings.get("attention", "auto")),
    )
    if settings.get("mixed_precision") == "bf16":
        _fsdp_one_rank(model, device)
    run = RunConfig(out="", max_steps=1 + cfg.steps, device=device.type)
    sft = SFTConfig(run=run, sft=SFTDataConfig(data="synthetic", init="synthetic", seq_len=cfg.seq))
    objective = SFTObjective(sft)  # the real objective and trainer step, on synthetic packed rows
    objective.loader = sft_batches(cfg, mcfg.vocab_size, device)  # type: ignore[assignment]
    objective.device = device
    opt = torch.optim.AdamW(model.parameters(), lr=2e-5)
    trainer = Trainer(run, SFTOptimConfig(), objective, Dist(0, 1, 0, device), model, model, opt)
    _init_adam_state(model, opt)
    params = sum(p.numel() for p in model.parameters())  # the tied head counted once
    with PeakMemory(device) as memory:
        trainer.train_step()
    start = time.perf_counter()
    for _ in range(cfg.steps):
        result = trainer.train_step()
    _sync(device)
    tokens_per_s = cfg.batch * cfg.seq * cfg.steps / (time.perf_counter() - start)
    return {
        "tokens_per_s": tokens_per_s,
        "peak_mb": memory.mb,
        "params_m": params / 1e6,
        "flops_per_token": flops_per_token(mcfg, cfg.seq),
        "loss": float(result.metrics["loss"][0] / result.metrics["loss"][1]),
    }


def run_grpo(cfg: BenchConfig, mcfg: ModelConfig, settings: dict, device: torch.device) -> dict:
    policy = Transformer(mcfg).to(device)
    policy.configure(activation_checkpointing=bool(settings.get("activation_checkpointing")))
    reference = prepare_frozen(
        copy.deepcopy(policy), "ddp", Dist(0, 1, 0, device), str(settings["ref_dtype"])
    )
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-6)
    _init_adam_state(policy, opt)
    g = torch.Generator().manual_seed(0)
    rows = cfg.prompts * cfg.generations
    prompts = torch.randint(16, mcfg.vocab_size, (rows, cfg.prompt_len), generator=g).tolist()
    advantages = torch.randn(rows, generator=g).to(device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    sampler = torch.Generator(device=device).manual_seed(0)

    def step() -> tuple[float, float]:
        _sync(device)
        start = time.perf_counter()
        with torch.no_grad(), autocast:
            out = generate(policy, prompts, cfg.new_tokens, temperature=1.0, generator=sampler)
            completions = out.tokens
            ref_logp, _ = completion_logprobs(reference, prompts, completions)
        _sync(device)
        rollout_s = time.perf_counter() - start
        with autocast:
            logp, mask = completion_logprobs(policy, prompts, completions)
        terms = policy_terms(
            logp, logp.detach(), advantages, mask, epsilon=0.2, epsilon_high=0.2, beta=0.04, ref_logp=ref_logp
        )
        loss_sum, norm = aggregate(terms.per_token, mask, "dapo", cfg.new_tokens)
        (loss_sum / norm).backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        _sync(device)
        return rollout_s, time.perf_counter() - start - rollout_s

    with PeakMemory(device) as memory:
        step()
    rollout_s = update_s = 0.0
    for _ in range(cfg.steps):
        r, u = step()
        rollout_s, update_s = rollout_s + r, update_s + u
    update_tokens = rows * (cfg.prompt_len + cfg.new_tokens) * cfg.steps
    return {
        "tokens_per_s": update_tokens / update_s,
        "rollout_tokens_per_s": rows * cfg.new_tokens * cfg.steps / rollout_s,
        "step_s": (rollout_s + update_s) / cfg.steps,
        "params_m": sum(p.numel() for p in policy.parameters()) / 1e6,
        "peak_mb": memory.mb,
        "flops_per_token": flops_per_token(mcfg, cfg.prompt_len + cfg.new_tokens),
    }


def run_one(cfg: BenchConfig, spec: dict) -> dict:
    device = torch.device(cfg.device)
    mcfg = model_config(cfg, spec["model"])
    torch.manual_seed(0)
    runner = run_sft if spec["objective"] == "sft" else run_grpo
    row = runner(cfg, mcfg, spec["settings"], device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = cfg.peak_tflops * 1e12 if cfg.peak_tflops else peak_flops(name)
    return {
        **spec,
        **row,
        "mfu": mfu(row["tokens_per_s"], row["flops_per_token"], peak),
        "device": name,
    }


def _in_fresh_process(cfg: BenchConfig, spec: dict) -> dict:
    args = [sys.executable, __file__, "--one", json.dumps(spec)]
    for key, value in asdict(cfg).items():
        if key not in ("one", "variants", "models"):
            args += [f"--{key.replace('_', '-')}", str(value)]
    done = subprocess.run(args, capture_output=True, text=True)
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or ["failed"]
        return {**spec, "error": tail[0][:200]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _wanted(cfg: BenchConfig) -> list[tuple[str, str, dict]]:
    chosen = [v for v in VARIANTS if not cfg.variants or f"{v[1]}:{v[0]}" in cfg.variants]
    if cfg.device != "cuda" and not cfg.variants:  # FlexAttention has no CPU backward
        chosen = [v for v in chosen if v[2].get("attention") != "flex"]
    return chosen


def markdown(cfg: BenchConfig, rows: list[dict]) -> str:
    lines = [
        f"device {rows[0].get('device', cfg.device) if rows else cfg.device}; scale {cfg.scale}; SFT {cfg.batch}×"
        f"{cfg.seq} packed; GRPO {cfg.prompts}×{cfg.generations} rows, {cfg.prompt_len}+{cfg.new_tokens} tokens",
        "",
        "| model | objective | variant | params (M) | tokens/s | vs baseline | peak MB | vs baseline | MFU |"
        " rollout tok/s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['objective']} | {r['variant']} | | {r['error']} | | | | | |")
            continue
        util = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a"
        rollout = f"{r['rollout_tokens_per_s']:,.0f}" if "rollout_tokens_per_s" in r else "-"
        lines.append(
            f"| {r['model']} | {r['objective']} | {r['variant']} | {r['params_m']:.1f} | {r['tokens_per_s']:,.0f} "
            f"| {r.get('speed_vs_baseline', 0):.2f} | {r['peak_mb']:,.0f} | {r.get('memory_vs_baseline', 0):.2f} "
            f"| {util} "
            f"| {rollout} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_dataclass_args(parser, BenchConfig)
    cfg = dataclass_from_args(BenchConfig, parser.parse_args(argv))
    if cfg.device == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA device here; use --device cpu with --scale 0.05 (a functional check)")
    if unknown := set(cfg.models) - set(SHAPES):
        parser.error(f"unknown models {sorted(unknown)}; choose from {list(SHAPES)}")
    if cfg.one:
        print(json.dumps(run_one(cfg, json.loads(cfg.one))))
        return 0
    rows: list[dict] = []
    for shape in cfg.models:
        baselines: dict[str, dict] = {}
        for name, objective, settings in _wanted(cfg):
            spec = {"model": shape, "objective": objective, "variant": name, "settings": settings}
            row = _in_fresh_process(cfg, spec) if cfg.fresh_process else run_one(cfg, spec)
            base = baselines.setdefault(objective, row) if "error" not in row else None
            if base is not None and "error" not in base:
                row["speed_vs_baseline"] = row["tokens_per_s"] / base["tokens_per_s"]
                row["memory_vs_baseline"] = row["peak_mb"] / max(base["peak_mb"], 1e-9)
            rows.append(row)
            print(json.dumps(row), flush=True)
    table = markdown(cfg, rows)
    print("\n" + table)
    Path(cfg.out + ".json").write_text(json.dumps({"config": asdict(cfg), "results": rows}, indent=1))
    Path(cfg.out + ".md").write_text(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
