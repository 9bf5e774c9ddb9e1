"""Tokens/s of mathforge's in-process sampler against transformers' `generate` on the same weights and batch.

A random Qwen2 model is built with transformers, saved, and imported through `training.models.hf.load_hf`, so
both sides run bit-identical weights. Both sample the same prompts (mixed lengths, left-padded) for exactly
`new_tokens` tokens per row (no stop ids; transformers with min_new_tokens = max_new_tokens), one run of each
in turn (A B A B ...) so that load on a shared machine hits both alike; the table gives the median and range
of tokens/s and the ratio of the medians, and how many greedy rows agree token for token.

    python bench/sampler.py                                  # CPU, one thread: 16 prompts x 128 new tokens
    python bench/sampler.py --temperature 1.0 --top-p 0.9    # sampling instead of greedy
    python bench/sampler.py --device cuda --batch 64 --compile true

The same script measures an older sampler: `git archive REV training typedconfig kernels | tar -x -C /tmp/old`,
copy this file to /tmp/old/bench/ and run it there (levers the old `generate` lacks are left out).
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.models.generation import generate
from training.models.hf import load_hf
from typedconfig import add_dataclass_args, dataclass_from_args


@dataclass
class BenchConfig:
    device: str = field(default="cpu", metadata={"help": "cpu or cuda"})
    threads: int = field(default=1, metadata={"help": "torch threads on CPU"})
    hidden: int = 384
    layers: int = 4
    heads: int = 6
    kv_heads: int = 2
    intermediate: int = 1024
    vocab: int = 32000
    batch: int = field(default=16, metadata={"help": "prompts per generate call"})
    prompt_min: int = field(default=16, metadata={"help": "shortest prompt (lengths spread evenly)"})
    prompt_max: int = field(default=64, metadata={"help": "longest prompt"})
    new_tokens: int = field(default=128, metadata={"help": "tokens sampled per row by both sides"})
    temperature: float = field(default=0.0, metadata={"help": "0: greedy"})
    top_p: float = 1.0
    runs: int = field(default=5, metadata={"help": "timed runs of each side, alternating"})
    compile: bool = field(default=False, metadata={"help": "mathforge: torch.compile the decode step"})
    prefill_chunk: int = field(default=512, metadata={"help": "mathforge: prompt tokens per prefill forward"})
    cpu_prepack: bool = field(default=True, metadata={"help": "mathforge: oneDNN-packed CPU linears"})
    dtype: str = field(default="float32", metadata={"help": "float32 or bfloat16 (both sides)"})


def build_models(cfg: BenchConfig, root: Path):
    """A random transformers Qwen2 model and the same weights imported into mathforge."""
    import transformers

    config = transformers.Qwen2Config(
        hidden_size=cfg.hidden,
        num_hidden_layers=cfg.layers,
        num_attention_heads=cfg.heads,
        num_key_value_heads=cfg.kv_heads,
        intermediate_size=cfg.intermediate,
        vocab_size=cfg.vocab,
        max_position_embeddings=max(1024, cfg.prompt_max + cfg.new_tokens),
        tie_word_embeddings=False,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=0,
    )
    torch.manual_seed(0)
    reference = transformers.Qwen2ForCausalLM(config).eval()
    reference.save_pretrained(root / "hf")
    dtype = getattr(torch, cfg.dtype)
    ours = load_hf(root / "hf", dtype=cfg.dtype).to(cfg.device).eval()
    return reference.to(device=cfg.device, dtype=dtype), ours


def make_prompts(cfg: BenchConfig) -> list[list[int]]:
    g = torch.Generator().manual_seed(1)
    lengths = torch.linspace(cfg.prompt_min, cfg.prompt_max, cfg.batch).round().long().tolist()
    return [torch.randint(2, cfg.vocab, (n,), generator=g).tolist() for n in lengths]


def hf_generate(model, prompts: list[list[int]], cfg: BenchConfig, seed: int) -> list[list[int]]:
    width = max(len(p) for p in prompts)
    ids = torch.zeros((len(prompts), width), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt) :] = torch.tensor(prompt)
        mask[row, width - len(prompt) :] = 1
    sampling = {"do_sample": False}
    if cfg.temperature > 0:
        sampling = {"do_sample": True, "temperature": cfg.temperature, "top_p": cfg.top_p, "top_k": 0}
    torch.manual_seed(seed)
    with torch.no_grad():
        out = model.generate(
            ids.to(cfg.device),
            attention_mask=mask.to(cfg.device),
            max_new_tokens=cfg.new_tokens,
            min_new_tokens=cfg.new_tokens,
            eos_token_id=None,
            pad_token_id=0,
            **sampling,
        )
    return out[:, width:].tolist()


def ours_generate(model, prompts: list[list[int]], cfg: BenchConfig, seed: int) -> list[list[int]]:
    generator = torch.Generator(device=cfg.device).manual_seed(seed)
    levers = {
        "compile_decode": cfg.compile,
        "prefill_chunk": cfg.prefill_chunk,
        "cpu_prepack": cfg.cpu_prepack,
    }
    accepted = inspect.signature(generate).parameters  # an older checkout's generate has fewer levers
    return generate(
        model,
        prompts,
        cfg.new_tokens,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        generator=generator,
        **{name: value for name, value in levers.items() if name in accepted},
    ).tokens


def _timed(fn) -> tuple[float, list[list[int]]]:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    tokens = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start, tokens


def run(cfg: BenchConfig) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        reference, ours = build_models(cfg, Path(tmp))
    prompts = make_prompts(cfg)
    sides = {
        "transformers": lambda seed: hf_generate(reference, prompts, cfg, seed),
        "mathforge": lambda seed: ours_generate(ours, prompts, cfg, seed),
    }
    outputs = {name: fn(0) for name, fn in sides.items()}  # warm-up (and compilation)
    rates: dict[str, list[float]] = {name: [] for name in sides}
    for run_index in range(cfg.runs):
        for name, fn in sides.items():
            seconds, tokens = _timed(lambda fn=fn, seed=run_index + 1: fn(seed))
            produced = sum(len(t) for t in tokens)
            if produced != cfg.batch * cfg.new_tokens:
                raise RuntimeError(
                    f"{name} produced {produced} tokens, expected {cfg.batch * cfg.new_tokens}"
                )
            rates[name].append(produced / seconds)
            print(f"run {run_index + 1} {name:>12}: {produced / seconds:9,.0f} tokens/s", flush=True)
    agree = sum(a == b for a, b in zip(outputs["transformers"], outputs["mathforge"], strict=True))
    summary = {
        name: {"median": statistics.median(r), "min": min(r), "max": max(r)} for name, r in rates.items()
    }
    # each run against the transformers run just before it: robust to load that drifts over the session
    paired = [ours / theirs for ours, theirs in zip(rates["mathforge"], rates["transformers"], strict=True)]
    return {
        "config": asdict(cfg),
        "tokens_per_s": summary,
        "ratio": summary["mathforge"]["median"] / summary["transformers"]["median"],
        "paired_ratios": paired,
        "greedy_rows_equal": f"{agree}/{cfg.batch}" if cfg.temperature <= 0 else None,
        "torch": torch.__version__,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_dataclass_args(parser, BenchConfig)
    cfg = dataclass_from_args(BenchConfig, parser.parse_args(argv))
    if cfg.device == "cpu":
        torch.set_num_threads(cfg.threads)
    results = run(cfg)
    print(json.dumps(results, indent=1))
    print(f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    print(f"\n{'side':>12} | {'median tok/s':>12} | {'range':>19}")
    for name, s in results["tokens_per_s"].items():
        print(f"{name:>12} | {s['median']:12,.0f} | {s['min']:8,.0f} - {s['max']:8,.0f}")
    equal = results["greedy_rows_equal"]
    paired = results["paired_ratios"]
    print(
        f"ratio of medians mathforge / transformers: {results['ratio']:.2f}; paired runs "
        f"{statistics.median(paired):.2f} ({min(paired):.2f} - {max(paired):.2f})"
        + (f"; greedy rows equal {equal}" if equal else "")
    )


if __name__ == "__main__":
    main()
