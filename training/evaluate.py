"""`mathforge eval`: a model on math benchmarks — batched KV-cache generation, verified answers, pass@1, pass@k
and maj@k per benchmark file.

Each item's K completions are generated together (greedy when K is 1), their final answers extracted and
checked against the gold answer by `training.verify.Verifier` (math-verify in worker processes with a hard
timeout). A verification that times out or crashes is counted as such in the summary, never silently as a
wrong answer (it does not count as correct in pass@k either). Writes `DIR/summary.json` and one JSONL line
per item in `DIR/<benchmark>.jsonl`.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from training.benchmarks import BenchmarkItem, benchmark_name, load_benchmark
from training.config import EvalConfig
from training.generate import generate
from training.model_io import LoadedModel, load_model
from training.tokenizer import encode_prompt, special_ids, stop_token_ids
from training.verify import Verdict, Verifier
from typedconfig import to_dict

log = logging.getLogger(__name__)

SUMMARY_FILE = "summary.json"


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct (Chen et al., 2021): 1 - C(n-c, k) / C(n, k)."""
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def majority_correct(verdicts: list[Verdict]) -> bool:
    """Whether the most common extracted answer (ties: the first seen) was judged correct."""
    answers = [v.prediction for v in verdicts if v.prediction is not None]
    if not answers:
        return False
    top = Counter(answers).most_common(1)[0][0]
    return any(v.correct is True for v in verdicts if v.prediction == top)


def score_items(per_item: list[list[Verdict]], k: int) -> dict[str, Any]:
    """Summary figures of one benchmark from each item's K verdicts."""
    n = len(per_item)
    statuses = Counter(v.status for verdicts in per_item for v in verdicts)
    if n == 0:
        return {"n": 0}
    correct = [sum(v.correct is True for v in verdicts) for verdicts in per_item]
    return {
        "n": n,
        "samples": k,
        "pass@1": sum(c / k for c in correct) / n,
        f"pass@{k}": sum(pass_at_k(k, c, k) for c in correct) / n,
        "pass@k": sum(pass_at_k(k, c, k) for c in correct) / n,
        f"maj@{k}": sum(majority_correct(v) for v in per_item) / n,
        "maj@k": sum(majority_correct(v) for v in per_item) / n,
        "verify_timeouts": statuses["timeout"],
        "verify_errors": statuses["error"],
        "no_answer": statuses["no_answer"],
    }


class Evaluator:
    """Generates and verifies; one instance serves several benchmark files (and GRPO's periodic evals)."""

    def __init__(self, loaded: LoadedModel, cfg: EvalConfig, verifier: Verifier) -> None:
        self.loaded, self.cfg, self.verifier = loaded, cfg, verifier
        tokenizer, template = loaded.tokenizer, loaded.template
        self.stop_ids = stop_token_ids(tokenizer, template.stop_strings())
        self.pad_id = special_ids(tokenizer).pad
        self.generator = torch.Generator(device=loaded.model.embed.weight.device).manual_seed(cfg.seed)

    def prompt_ids(self, item: BenchmarkItem) -> list[int]:
        template = self.loaded.template
        return encode_prompt(
            self.loaded.tokenizer, template.render_prompt(item.question), template.renders_special_tokens
        )

    def completions(self, prompts: list[list[int]]) -> list[list[str]]:
        """K decoded completions per prompt; prompts too long for the model get empty completions."""
        cfg, model = self.cfg, self.loaded.model
        k = cfg.samples
        room = model.cfg.max_seq_len + 1 - max(len(p) for p in prompts)
        max_new = min(cfg.max_new_tokens, room)
        if max_new < 1:
            return [[""] * k for _ in prompts]
        device = model.embed.weight.device
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
        with autocast:
            out = generate(
                model,
                [p for p in prompts for _ in range(k)],
                max_new,
                temperature=cfg.temperature if k > 1 else 0.0,
                top_p=cfg.top_p,
                stop_ids=self.stop_ids,
                pad_id=self.pad_id,
                generator=self.generator,
            )
        texts = [
            self.loaded.tokenizer.decode(
                [t for t in tokens if t not in self.stop_ids], skip_special_tokens=False
            )
            for tokens in out.tokens
        ]
        return [texts[i * k : (i + 1) * k] for i in range(len(prompts))]

    def run_benchmark(self, path: str | Path, out_dir: Path) -> dict[str, Any]:
        cfg = self.cfg
        items = load_benchmark(path)
        if cfg.limit:
            items = items[: cfg.limit]
        name = benchmark_name(path)
        per_item: list[list[Verdict]] = []
        too_long = 0
        with open(out_dir / f"{name}.jsonl", "w") as fh:
            batches = range(0, len(items), cfg.batch_size)
            for start in tqdm(batches, desc=f"eval {name}", unit="batch", dynamic_ncols=True):
                chunk = items[start : start + cfg.batch_size]
                prompts = [self.prompt_ids(item) for item in chunk]
                fits = [len(p) < self.loaded.model.cfg.max_seq_len for p in prompts]
                too_long += fits.count(False)
                texts: list[list[str]] = [[""] * cfg.samples for _ in chunk]
                kept = [i for i, ok in enumerate(fits) if ok]
                if kept:
                    for i, completions in zip(
                        kept, self.completions([prompts[i] for i in kept]), strict=True
                    ):
                        texts[i] = completions
                flat = self.verifier.verify_batch(
                    [t for ts in texts for t in ts],
                    [item.answer for item in chunk for _ in range(cfg.samples)],
                )
                for i, item in enumerate(chunk):
                    verdicts = flat[i * cfg.samples : (i + 1) * cfg.samples]
                    per_item.append(verdicts)
                    record = {
                        "id": item.id,
                        "question": item.question,
                        "gold": item.answer,
                        "completions": texts[i],
                        "answers": [v.prediction for v in verdicts],
                        "correct": [v.correct for v in verdicts],
                        "status": [v.status for v in verdicts],
                    }
                    fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        summary = score_items(per_item, cfg.samples)
        summary["prompt_too_long"] = too_long
        log.info("%s: %s", name, summary)
        return summary


def evaluate(cfg: EvalConfig) -> dict[str, Any]:
    """Evaluate as configured; returns (and writes) the summary."""
    device = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    loaded = load_model(cfg.model, device=device, template=cfg.template)
    loaded.model.drop_mtp()
    out_dir = Path(cfg.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {}
    with Verifier(workers=cfg.verify_workers, timeout_s=cfg.verify_timeout) as verifier:
        evaluator = Evaluator(loaded, cfg, verifier)
        for path in cfg.benchmark:
            summary[benchmark_name(path)] = evaluator.run_benchmark(path, out_dir)
    (out_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=1))
    (out_dir / "eval_config.json").write_text(
        json.dumps(
            {"config": to_dict(cfg), "template": loaded.template.to_dict(), "model_kind": loaded.kind},
            indent=1,
        )
    )
    return summary
