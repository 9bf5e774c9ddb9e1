"""GRPO's two halves: rollout tokens/s (KV-cache sampling) and training tokens/s (policy log-probs + backward),
with the peak memory of the log-prob path against computing the full logits, measured in the same run.

The log-prob path is `completion_logprobs` through the model's forward with `fused_kernels` (chunked token
log-probs: never batch × tokens × vocabulary logits); the baseline is the same model computing full fp32 logits
and a log-softmax (what a plain implementation does). Peak memory is CUDA's max_memory_allocated on a GPU; on
CPU it is the rise of the process's peak RSS during one forward+backward, each variant in a fresh process.

    python bench/grpo_throughput.py                        # CPU: tiny preset, 32k vocabulary
    python bench/grpo_throughput.py --device cuda --preset 1b --vocab-size 128256 --max-new-tokens 512
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.config import model_config
from training.models.generation import completion_logprobs, generate
from training.models.transformer import Transformer
from typedconfig import add_dataclass_args, dataclass_from_args


@dataclass
class BenchConfig:
    device: str = field(default="cpu", metadata={"help": "cpu or cuda"})
    preset: str = field(default="tiny", metadata={"help": "model preset"})
    vocab_size: int = 32768
    prompts: int = field(default=4, metadata={"help": "prompts per rollout batch"})
    generations: int = field(default=8, metadata={"help": "completions per prompt, G"})
    prompt_len: int = 64
    max_new_tokens: int = 64
    repeats: int = field(default=3, metadata={"help": "timed repetitions (the median is reported)"})
    memory_variant: str = field(default="", metadata={"help": "internal: measure one variant's memory"})


def _model(cfg: BenchConfig, fused: bool) -> Transformer:
    mcfg = model_config(
        cfg.preset,
        cfg.vocab_size,
        max_seq_len=cfg.prompt_len + cfg.max_new_tokens,
        mtp_depth=0,
        fused_kernels=fused,
    )
    return Transformer(mcfg, seed=0).to(cfg.device)


def _batch(cfg: BenchConfig) -> tuple[list[list[int]], list[list[int]]]:
    g = torch.Generator().manual_seed(0)
    rows = cfg.prompts * cfg.generations
    prompts = torch.randint(16, cfg.vocab_size, (rows, cfg.prompt_len), generator=g).tolist()
    completions = torch.randint(16, cfg.vocab_size, (rows, cfg.max_new_tokens), generator=g).tolist()
    return prompts, completions


def full_logits_logprobs(
    model: Transformer, prompts: list[list[int]], completions: list[list[int]]
) -> torch.Tensor:
    """The baseline: every position's fp32 logits, log-softmax, gather."""
    ids = torch.tensor(
        [p + c for p, c in zip(prompts, completions, strict=True)], device=model.embed.weight.device
    )
    logits = model.logits(model.trunk(ids)).float()
    width = len(completions[0])
    logprobs = F.log_softmax(logits[:, -width - 1 : -1], dim=-1)
    targets = torch.tensor(completions, device=ids.device)
    return logprobs.gather(-1, targets[..., None]).squeeze(-1)


def _train_call(model: Transformer, variant: str, prompts, completions) -> None:
    if variant == "fused":
        logprobs, mask = completion_logprobs(model, prompts, completions)
        (logprobs * mask).sum().backward()
    else:
        full_logits_logprobs(model, prompts, completions).sum().backward()


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def measure_memory(cfg: BenchConfig, variant: str) -> float:
    """Peak memory (MB) above the set-up of one forward+backward of the variant."""
    model = _model(cfg, fused=variant == "fused")
    prompts, completions = _batch(cfg)
    if cfg.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        _train_call(model, variant, prompts, completions)
        _sync(cfg.device)
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    _train_call(model, variant, prompts, completions)
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024


def _memory_in_fresh_process(cfg: BenchConfig, variant: str) -> float:
    if cfg.device == "cuda":
        return measure_memory(cfg, variant)
    args = [sys.executable, __file__, "--memory-variant", variant]
    for key, value in asdict(cfg).items():
        if key != "memory_variant":
            args += [f"--{key.replace('_', '-')}", str(value)]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return float(out.strip().splitlines()[-1])


def _median_time(fn, device: str, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def run(cfg: BenchConfig) -> dict:
    prompts, completions = _batch(cfg)
    rows = len(prompts)
    results: dict = {"config": asdict(cfg)}
    policy = _model(cfg, fused=True).eval()
    gen = torch.Generator(device=cfg.device).manual_seed(0)
    rollout = lambda: generate(policy, prompts, cfg.max_new_tokens, temperature=1.0, generator=gen)  # noqa: E731
    rollout()  # warm-up
    seconds = _median_time(rollout, cfg.device, cfg.repeats)
    results["rollout_tokens_per_s"] = rows * cfg.max_new_tokens / seconds
    tokens = rows * (cfg.prompt_len + cfg.max_new_tokens)
    for variant in ("fused", "full_logits"):
        model = _model(cfg, fused=variant == "fused")
        step = lambda model=model, variant=variant: _train_call(model, variant, prompts, completions)  # noqa: E731
        step()
        seconds = _median_time(step, cfg.device, cfg.repeats)
        results[f"train_tokens_per_s_{variant}"] = tokens / seconds
        results[f"peak_mb_{variant}"] = _memory_in_fresh_process(cfg, variant)
    logits_mb = rows * cfg.max_new_tokens * cfg.vocab_size * 4 / 2**20
    results["one_fp32_logits_tensor_mb"] = logits_mb
    results["memory_ratio_fused_vs_full"] = results["peak_mb_fused"] / max(
        results["peak_mb_full_logits"], 1e-9
    )
    results["speed_ratio_fused_vs_full"] = (
        results["train_tokens_per_s_fused"] / results["train_tokens_per_s_full_logits"]
    )
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_dataclass_args(parser, BenchConfig)
    cfg = dataclass_from_args(BenchConfig, parser.parse_args(argv))
    torch.set_num_threads(1) if cfg.device == "cpu" else None
    if cfg.memory_variant:
        print(measure_memory(cfg, cfg.memory_variant))
        return
    results = run(cfg)
    print(json.dumps(results, indent=1))
    print(
        f"rollout {results['rollout_tokens_per_s']:,.0f} tok/s; training {results['train_tokens_per_s_fused']:,.0f} "
        f"tok/s (full logits {results['train_tokens_per_s_full_logits']:,.0f}); log-prob path peak "
        f"{results['peak_mb_fused']:.0f} MB vs {results['peak_mb_full_logits']:.0f} MB with full logits "
        f"({results['memory_ratio_fused_vs_full']:.2f}x)"
    )


if __name__ == "__main__":
    main()
