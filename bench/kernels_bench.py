"""Forward + backward time and peak memory of the kernels against eager PyTorch and torch.compile.

Every ratio is against eager PyTorch measured in the same run, on the same inputs. The eager baselines are
what the training model does without its fused path: logits upcast to fp32 before the softmax, RMSNorm
statistics in fp32 (`kernels.rms_norm_torch`). Peak memory needs CUDA (on CPU it is reported as n/a).

    python bench/kernels_bench.py                      # GPU: 8192 tokens × 4096 hidden × 128256 vocab, bf16
    python bench/kernels_bench.py --device cpu --small # smoke run: the script works, figures mean little
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from kernels import fused_linear_cross_entropy, rms_norm, rms_norm_torch, token_logprobs
from typedconfig import add_dataclass_args, dataclass_from_args, to_dict

KERNELS = ("linear_ce", "token_logprobs", "rms_norm")
SMALL_SHAPE = {"tokens": 512, "hidden": 128, "vocab": 8003}


@dataclass
class BenchConfig:
    device: str = field(default="cuda", metadata={"help": "cuda or cpu"})
    dtype: str = field(default="bfloat16", metadata={"help": "bfloat16, float16 or float32"})
    tokens: int = field(default=8192, metadata={"help": "rows (batch × sequence)"})
    hidden: int = 4096
    vocab: int = 128256
    small: bool = field(default=False, metadata={"help": f"override the shape with {SMALL_SHAPE}"})
    kernels: tuple[str, ...] = field(default=KERNELS, metadata={"help": "which kernels to run"})
    compile: bool = field(default=True, metadata={"help": "include torch.compile of the eager code"})
    warmup: int = 2
    iters: int = 5
    seed: int = 0
    out: str = field(default="", metadata={"help": "also write the results here as JSON"})

    def __post_init__(self) -> None:
        if self.small:
            self.tokens, self.hidden, self.vocab = SMALL_SHAPE.values()
        unknown = set(self.kernels) - set(KERNELS)
        if unknown:
            raise ValueError(f"unknown kernels {sorted(unknown)}; choose from {KERNELS}")


# -- the functions measured: eager baselines and the kernels ------------------------------------------------


def eager_linear_ce(hidden, weight, targets):
    return F.cross_entropy((hidden @ weight.T).float(), targets)


def eager_token_logprobs(hidden, weight, tokens):
    return torch.log_softmax((hidden @ weight.T).float(), dim=-1).gather(1, tokens[:, None])[:, 0]


def native_rms_norm(x, weight):
    return F.rms_norm(x, (x.shape[-1],), weight, eps=1e-6)


@dataclass
class Case:
    """One kernel on fixed inputs: `variants` map a name to fn(*leaves, *consts) -> output."""

    name: str
    leaves: list[torch.Tensor]  # differentiable inputs
    consts: list[torch.Tensor]  # targets / token ids
    upstream: torch.Tensor | None  # gradient fed to backward (None: the output is a scalar)
    variants: dict[str, Callable[..., torch.Tensor]]


def build_case(name: str, cfg: BenchConfig, fused_backends: list[str]) -> Case:
    device, dtype = torch.device(cfg.device), getattr(torch, cfg.dtype)
    g = torch.Generator(device=device).manual_seed(cfg.seed)
    n, h, v = cfg.tokens, cfg.hidden, cfg.vocab

    def randn(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g, device=device, dtype=torch.float32) * scale).to(dtype)

    if name == "rms_norm":
        # The torch reference is the eager code here: only the Triton kernel is a separate variant.
        variants = {"eager": rms_norm_torch, "F.rms_norm": native_rms_norm}
        if cfg.compile:
            variants["torch.compile"] = torch.compile(rms_norm_torch)
        if "triton" in fused_backends:
            variants["kernels[triton]"] = lambda x, w: rms_norm(x, w, backend="triton")
        return Case(name, [randn(n, h), randn(h)], [], randn(n, h), variants)

    hidden, weight = randn(n, h), randn(v, h, scale=h**-0.5)
    ids = torch.randint(0, v, (n,), generator=g, device=device)
    eager = eager_linear_ce if name == "linear_ce" else eager_token_logprobs
    fused = fused_linear_cross_entropy if name == "linear_ce" else token_logprobs
    variants = {"eager": eager}
    if cfg.compile:
        variants["torch.compile"] = torch.compile(eager)
    for backend in fused_backends:
        variants[f"kernels[{backend}]"] = lambda x, w, t, f=fused, b=backend: f(x, w, t, backend=b)
    upstream = None if name == "linear_ce" else torch.randn(n, generator=g, device=device)
    return Case(name, [hidden, weight], [ids], upstream, variants)


# -- measuring -----------------------------------------------------------------------------------------------


@dataclass
class Result:
    kernel: str
    variant: str
    ms: float | None = None
    peak_mib: float | None = None
    value_err: float | None = None  # relative to eager
    grad_err: float | None = None  # gradient of the first input, relative to eager
    error: str = ""


def rel_err(got: torch.Tensor, want: torch.Tensor) -> float:
    got, want = got.cpu().float(), want.float()
    return float((got - want).norm() / want.norm().clamp_min(1e-30))


def ratio(value: float | None, baseline: float | None) -> str:
    return "-" if value is None or not baseline else f"{value / baseline:.2f}"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_variant(case: Case, fn: Callable[..., torch.Tensor], cfg: BenchConfig):
    """Median fwd+bwd milliseconds, peak MiB over the timed steps, and the last output and first grad."""
    device = torch.device(cfg.device)
    leaves = [t.detach().requires_grad_() for t in case.leaves]

    def step() -> torch.Tensor:
        for leaf in leaves:
            leaf.grad = None
        out = fn(*leaves, *case.consts)
        out.backward(case.upstream if case.upstream is not None else None)
        return out.detach()

    for _ in range(cfg.warmup):
        step()
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(cfg.iters):
        sync(device)
        start = time.perf_counter()
        out = step()
        sync(device)
        times.append((time.perf_counter() - start) * 1e3)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return statistics.median(times), peak, out, leaves[0].grad


def run_case(case: Case, cfg: BenchConfig) -> list[Result]:
    results, reference = [], None
    for variant, fn in case.variants.items():
        result = Result(case.name, variant)
        try:
            result.ms, result.peak_mib, out, grad = run_variant(case, fn, cfg)
        except Exception as err:  # one failing variant (OOM, no compiler) must not hide the others
            result.error = f"{type(err).__name__}: {str(err).splitlines()[0][:80] if str(err) else ''}"
            results.append(result)
            continue
        if reference is None and variant == "eager":
            reference = (out.cpu(), grad.cpu())  # off the GPU: not part of the next variants' peaks
        if reference is not None:
            result.value_err, result.grad_err = rel_err(out, reference[0]), rel_err(grad, reference[1])
        results.append(result)
        del out, grad
        gc.collect()
    return results


def format_table(results: list[Result]) -> str:
    header = f"{'kernel':<15}{'variant':<18}{'ms':>10}{'x eager':>9}{'peak MiB':>11}{'x eager':>9}{'err value':>11}{'err grad':>10}"
    lines = [header, "-" * len(header)]
    for kernel in dict.fromkeys(r.kernel for r in results):
        rows = [r for r in results if r.kernel == kernel]
        eager = next((r for r in rows if r.variant == "eager"), None)
        for r in rows:
            if r.error:
                lines.append(f"{kernel:<15}{r.variant:<18}  failed: {r.error}")
                continue
            peak = "n/a" if r.peak_mib is None else f"{r.peak_mib:.0f}"
            errs = ["-" if e is None else f"{e:.1e}" for e in (r.value_err, r.grad_err)]
            lines.append(
                f"{kernel:<15}{r.variant:<18}{r.ms:>10.2f}{ratio(r.ms, eager and eager.ms):>9}{peak:>11}"
                f"{ratio(r.peak_mib, eager and eager.peak_mib):>9}{errs[0]:>11}{errs[1]:>10}"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_dataclass_args(parser, BenchConfig)
    cfg = dataclass_from_args(BenchConfig, parser.parse_args(argv))
    device = torch.device(cfg.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(
            "--device cuda but no CUDA device is available (use --device cpu --small for a smoke run)"
        )
    # On CUDA both the Triton kernels and the chunked torch reference; on CPU only the reference runs compiled.
    fused_backends = ["triton", "torch"] if device.type == "cuda" else ["torch"]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device {name}, torch {torch.__version__}, {cfg.dtype}, tokens {cfg.tokens} × hidden {cfg.hidden}"
          f" × vocab {cfg.vocab}; median of {cfg.iters} fwd+bwd steps after {cfg.warmup} warm-up")  # fmt: skip
    results = []
    for kernel in cfg.kernels:
        results += run_case(build_case(kernel, cfg, fused_backends), cfg)
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    print(format_table(results))
    if cfg.out:
        Path(cfg.out).write_text(
            json.dumps(
                {"config": to_dict(cfg), "device": name, "results": [r.__dict__ for r in results]}, indent=2
            )
        )


if __name__ == "__main__":
    main()
