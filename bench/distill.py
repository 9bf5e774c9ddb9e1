"""Distillation transfers, and the chunked divergence keeps memory flat: the two figures of roadmap item 9.

`transfer` (the default): the synthetic "last number" task (training/data/synthetic.py), every step through the
`mathforge` command line. The teacher is the tiny preset (158k parameters) fine-tuned long on the task's own
consistently written solutions; the student is a smaller model (dim 32, 58k parameters) given the same
number of steps three ways:

  gold     `train sft` on the training problems with their gold solutions, written in mixed styles
           (`restyle_solutions`: six phrasings, as solutions by many authors are);
  traces   `distill traces` (the teacher samples K per problem, math-verify keeps the correct ones, best-of-K)
           then `train sft` on those traces;
  distill  `train distill` from the teacher (forward KL on the traces' tokens, chunked kernel).

Held-out pass@1 is `mathforge eval` (greedy, verified, room for the longest gold phrasing). The check: traces
and distill reach >= 90% of the teacher's pass@1 and beat gold. What transfers is the teacher's single,
verified way of writing the solution: the same skill written six ways takes the student longer to learn.

`memory`: peak memory (and time) of forward + backward of the generalised JSD between teacher and student
next-token distributions, the plain way (both full logits, as eager PyTorch writes it) against the chunked
kernel (`kernels.distill_divergence`). On CPU each variant runs in a fresh process and the peak resident set
above its inputs is measured; on a GPU, `torch.cuda.max_memory_allocated` at vocabulary 128k in bf16.

    python bench/distill.py                          # transfer, ~8 minutes on 2 cores
    python bench/distill.py memory                   # CPU: 2048 tokens, vocabulary 32k, fp32
    python bench/distill.py memory --device cuda     # GPU: 8192 tokens, hidden 4096, vocabulary 128256, bf16
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


# -- transfer ---------------------------------------------------------------------------------------------------


def _mathforge(title: str, argv: list[str]) -> None:
    from mathforge.cli import main as mathforge

    print(f"\n=== {title}\n$ mathforge {' '.join(argv)}", flush=True)
    started = time.monotonic()
    if mathforge(argv) != 0:
        raise SystemExit(f"step failed: {title}")
    print(f"--- {title}: {time.monotonic() - started:.0f} s", flush=True)


def _models(out: Path) -> tuple[Path, Path]:
    """A byte-level BPE trained on generated math text, and the two untrained models sharing it."""
    sys.path.insert(0, str(REPO / "tests" / "training"))
    from training_corpus import write_corpus

    from training.config import model_config
    from training.data.packing import index_corpus, iter_texts
    from training.models.hf import save_model_dir
    from training.models.tokenizer import train_tokenizer
    from training.models.transformer import Transformer

    write_corpus(out / "corpus")
    tokenizer = train_tokenizer(list(iter_texts(index_corpus(out / "corpus"), 10**9)), vocab_size=512)
    (out / "tokenizer").mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(out / "tokenizer" / "tokenizer.json"))
    shapes = {"teacher": {}, "student": {"dim": 32, "n_heads": 2, "n_kv_heads": 1, "ffn_dim": 96}}
    dirs = []
    for name, shape in shapes.items():
        cfg = model_config("tiny", tokenizer.get_vocab_size(), max_seq_len=256, mtp_depth=0, **shape)
        model = Transformer(cfg, seed=1)
        print(f"{name}: {sum(p.numel() for p in model.parameters()):,} parameters")
        dirs.append(save_model_dir(model, out / "tokenizer" / "tokenizer.json", out / f"{name}_init", {}))
    return dirs[0], dirs[1]


def _pass_at_1(model: Path, test: Path, out: Path) -> float:
    _mathforge(f"eval {model.name}", ["eval", "--model", str(model), "--benchmark", str(test), "--out", str(out),
                                       "--max-new-tokens", "96", "--device", "cpu"])  # fmt: skip
    return json.loads((out / "summary.json").read_text())["test"]["pass@1"]


def transfer(args: argparse.Namespace) -> dict[str, float]:
    from training.data.synthetic import restyle_solutions, write_last_number_task

    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    started = time.monotonic()
    teacher_init, student_init = _models(out)
    task = write_last_number_task(out / "task", n_train=2000, n_test=args.test_items, seed=3)
    gold = restyle_solutions(task["train"], out / "task" / "gold_mixed_styles.jsonl", seed=0)
    common = ["--template", "plain", "--batch-size", "8", "--seq-len", "256", "--warmup-frac", "0.05",
              "--lr", "5e-3", "--weight-decay", "0.1", "--beta2", "0.95", "--device", "cpu", "--log-every", "50"]  # fmt: skip
    runs = out / "runs"
    _mathforge("teacher: SFT on the task's own solutions", ["train", "sft", "--data", str(task["train"]),
               "--init", str(teacher_init), "--out", str(runs / "teacher"), "--max-steps", str(args.teacher_steps),
               *common])  # fmt: skip
    _mathforge("traces: K teacher samples per problem, verified, best-of-K", ["distill", "traces", "--teacher",
               str(runs / "teacher"), "--prompts", str(task["train"]), "--out", str(out / "traces"), "--samples",
               str(args.samples), "--keep", "best", "--temperature", "1.0", "--top-p", "1.0", "--max-new-tokens",
               "48", "--chunk-prompts", "500", "--batch-size", "32", "--device", "cpu"])  # fmt: skip
    steps = ["--max-steps", str(args.steps)]
    _mathforge("student, gold: SFT on mixed-style gold solutions", ["train", "sft", "--data", str(gold), "--init",
               str(student_init), "--out", str(runs / "gold"), *steps, *common])  # fmt: skip
    _mathforge("student, traces: SFT on the teacher's traces", ["train", "sft", "--data", str(out / "traces"),
               "--init", str(student_init), "--out", str(runs / "traces"), *steps, *common])  # fmt: skip
    _mathforge("student, distill: forward KL to the teacher on the traces", ["train", "distill", "--teacher",
               str(runs / "teacher"), "--data", str(out / "traces"), "--init", str(student_init), "--out",
               str(runs / "distill"), "--loss", args.loss, *steps, *common])  # fmt: skip
    accuracy = {name: _pass_at_1(runs / name, task["test"], out / f"eval_{name}")
                for name in ("teacher", "gold", "traces", "distill")}  # fmt: skip
    summary = json.loads((out / "traces" / "_summary.json").read_text())["this_run"]
    print(f"\ntraces: {summary['samples']} samples, {summary['accepted']} verified, {summary['kept']} kept")
    print(
        f"\nheld-out pass@1 ({args.test_items} problems, greedy, verified); students: {args.steps} steps each"
    )
    teacher = accuracy["teacher"]
    for name, value in accuracy.items():
        share = f"  {value / teacher:6.0%} of the teacher" if name != "teacher" and teacher else ""
        print(f"  {name:<8} {value:.2f}{share}")
    ok = {
        name: accuracy[name] >= 0.9 * teacher and accuracy[name] > accuracy["gold"]
        for name in ("traces", "distill")
    }
    for name, passed in ok.items():
        print(f"  {name}: >= 90% of the teacher and above gold: {'yes' if passed else 'NO'}")
    print(f"{time.monotonic() - started:.0f} s")
    (out / "accuracy.json").write_text(json.dumps(accuracy, indent=1))
    return accuracy


# -- memory -----------------------------------------------------------------------------------------------------


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _measure(variant: str, shape: dict[str, Any]) -> dict[str, float]:
    """One forward + backward of the divergence; peak memory above the inputs, and seconds."""
    import torch

    from kernels import distill_divergence, divergence_from_logits

    device = torch.device(shape["device"])
    dtype = getattr(torch, shape["dtype"])
    g = torch.Generator(device=device).manual_seed(0)
    n, hs, ht, v = shape["tokens"], shape["hidden"], shape["teacher_hidden"], shape["vocab"]
    s_hidden = torch.randn(n, hs, generator=g, device=device, dtype=dtype).requires_grad_()
    s_weight = (torch.randn(v, hs, generator=g, device=device, dtype=dtype) / hs**0.5).requires_grad_()
    t_hidden = torch.randn(n, ht, generator=g, device=device, dtype=dtype)
    t_weight = torch.randn(v, ht, generator=g, device=device, dtype=dtype) / ht**0.5

    def step() -> float:
        if variant == "full":  # what eager code does: both logits, upcast, the divergence, autograd
            rows = divergence_from_logits(s_hidden @ s_weight.T, t_hidden @ t_weight.T, "jsd", 0.5, 1.0)
            loss = rows.sum()
        else:
            loss = distill_divergence(s_hidden, s_weight, t_hidden, t_weight, "jsd", beta=0.5)
        loss.backward()
        value = float(loss.detach())
        s_hidden.grad = s_weight.grad = None
        return value

    if device.type == "cuda":
        step()  # compile the kernels outside the measurement
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        value = step()
        torch.cuda.synchronize()
        seconds = time.perf_counter() - started
        peak = torch.cuda.max_memory_allocated() - base
    else:
        base = max(_rss_bytes(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
        started = time.perf_counter()
        value = step()
        seconds = time.perf_counter() - started
        peak = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base, 0)
    return {"peak_bytes": float(peak), "seconds": seconds, "loss": value}


def memory(args: argparse.Namespace) -> dict[str, Any]:
    gpu = args.device == "cuda"
    shape = {
        "device": args.device,
        "dtype": args.dtype or ("bfloat16" if gpu else "float32"),
        "tokens": args.tokens or (8192 if gpu else 2048),
        "hidden": args.hidden or (4096 if gpu else 256),
        "teacher_hidden": args.teacher_hidden or (4096 if gpu else 384),
        "vocab": args.vocab or (128256 if gpu else 32000),
    }
    print(f"generalised JSD (β 0.5), forward + backward: {json.dumps(shape)}")
    results = {}
    for variant in ("full", "chunked"):
        # a fresh process each: on CPU the peak resident set is per process
        proc = subprocess.run(
            [sys.executable, __file__, "memory-worker", variant, json.dumps(shape)],
            capture_output=True, text=True, check=False, env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")},
        )  # fmt: skip
        if proc.returncode != 0:
            raise SystemExit(f"{variant} failed:\n{proc.stderr[-3000:]}")
        results[variant] = json.loads(proc.stdout.strip().splitlines()[-1])
        r = results[variant]
        print(
            f"  {variant:<8} peak {r['peak_bytes'] / 2**20:9.1f} MiB   {r['seconds'] * 1000:8.1f} ms   loss {r['loss']:.6g}"
        )
    full, chunked = results["full"], results["chunked"]
    ratio = full["peak_bytes"] / max(chunked["peak_bytes"], 1.0)
    print(f"  full / chunked peak memory: {ratio:.1f}x; time {full['seconds'] / chunked['seconds']:.2f}x")
    rel = abs(full["loss"] - chunked["loss"]) / abs(full["loss"])
    print(f"  loss relative difference: {rel:.2e}")
    return {"shape": shape, **results, "ratio": ratio}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["memory-worker"]:
        print(json.dumps(_measure(argv[1], json.loads(argv[2]))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what")
    t = sub.add_parser("transfer", help="teacher vs gold-, traces- and distill-trained students (default)")
    m = sub.add_parser("memory", help="peak memory: full logits vs the chunked kernel")
    for p in (parser, t):
        p.add_argument("--out", default="bench_out/distill", help="work directory (replaced)")
        p.add_argument("--teacher-steps", type=int, default=1000)
        p.add_argument("--steps", type=int, default=450, help="student steps, the same for all three")
        p.add_argument("--samples", type=int, default=4, help="teacher samples per problem (K)")
        p.add_argument("--loss", default="forward_kl", help="train distill's divergence")
        p.add_argument("--test-items", type=int, default=100)
    m.add_argument("--device", default="cpu")
    m.add_argument("--dtype", default="")
    for flag in ("--tokens", "--hidden", "--teacher-hidden", "--vocab"):
        m.add_argument(flag, type=int, default=0)
    args = parser.parse_args(argv)
    if args.what == "memory":
        memory(args)
    else:
        transfer(args)


if __name__ == "__main__":
    main()
