"""`mathforge eval`: a model on math benchmarks — batched KV-cache generation, verified answers, pass@1, pass@k
and maj@k per benchmark file.

Each item's K completions are generated together (greedy when K is 1), their final answers extracted and
checked against the gold answer by `training.rewards.verify.Verifier` (math-verify in worker processes with a
hard timeout). A verification that times out or crashes is counted as such in the summary, never silently as a
wrong answer (it does not count as correct in pass@k either). Writes `DIR/summary.json` and one JSONL line
per item in `DIR/<benchmark>.jsonl`.

Answers are extracted two ways and both scores are reported side by side (lm-eval's strict-match and
flexible-extract): `strict`, the final closed `\\boxed{}` (what GRPO's accuracy reward credits), and `lenient`,
with fallbacks down to the last number; `--answer-match` picks the headline figures. A prompt too long for the
model is skipped and counted (`prompt_too_long`), not scored; the others of its batch are generated as usual,
each with its own budget. `truncated` counts completions cut off by the length limit.

Samples come from the one sampling interface (training/sampling/): in process by default, or with `--server
URL` from an OpenAI-compatible server (the prompts rendered here, as in process). A question whose request
failed for good at the server is written with its reason and counted (`failed`), never scored.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from training.config import EvalConfig
from training.data.benchmarks import BenchmarkItem, benchmark_name, load_benchmark
from training.models.model_io import LoadedModel, ModelText, load_model, load_model_text
from training.models.tokenizer import encode_prompt, stop_token_ids
from training.rewards.answers import ANSWER_MATCHES, extractor
from training.rewards.verify import Verdict, Verifier
from training.sampling.builtin import BuiltinSampler
from training.sampling.interface import Completion, Sampler, SamplingParams
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


def verify_matches(
    verifier: Verifier, texts: list[str], golds: list[Any], after: str | None = None
) -> dict[str, list[Verdict]]:
    """Verdicts of `texts` against `golds` under each answer match (ANSWER_MATCHES), checking an (answer, item)
    pair once when both extractions agree."""
    answers = {match: [extractor(match, after)(t) for t in texts] for match in ANSWER_MATCHES}
    unique: dict[tuple[str | None, int], int] = {}
    for values in answers.values():
        for i, answer in enumerate(values):
            unique.setdefault((answer, i), len(unique))
    pairs = list(unique)
    verdicts = verifier.verify_answers([a for a, _ in pairs], [golds[i] for _, i in pairs])
    return {
        match: [verdicts[unique[(a, i)]] for i, a in enumerate(values)] for match, values in answers.items()
    }


def format_summary(summary: dict[str, dict[str, Any]]) -> str:
    """The printed table: per benchmark, strict and lenient pass@1 / pass@k / maj@k side by side."""
    lines = [f"{'benchmark':<24} {'n':>5} {'K':>3} {'match':<8} {'pass@1':>7} {'pass@k':>7} {'maj@k':>7} "
             f"{'no answer':>9} {'too long':>8} {'truncated':>9}"]  # fmt: skip
    for name, figures in summary.items():
        if not figures.get("n"):
            lines.append(
                f"{name:<24} {0:>5}   (nothing scored; {figures.get('prompt_too_long', 0)} too long, "
                f"{figures.get('failed', 0)} failed)"
            )
            continue
        for j, match in enumerate(ANSWER_MATCHES):
            f = figures[match]
            head = f"{name:<24} {figures['n']:>5} {figures['samples']:>3}" if j == 0 else " " * 34
            extra = f"{figures['prompt_too_long']:>8} {figures['truncated']:>9}" if j == 0 else ""
            lines.append(
                f"{head} {match:<8} {f['pass@1']:>7.3f} {f['pass@k']:>7.3f} {f['maj@k']:>7.3f} "
                f"{f['no_answer']:>9} {extra}".rstrip()
            )
    for name, figures in summary.items():
        if figures.get("failed"):
            lines.append(
                f"{name}: {figures['failed']} questions not scored, their requests failed (see the JSONL)"
            )
    return "\n".join(lines)


class Evaluator:
    """Samples and verifies; one instance serves several benchmark files (and GRPO's periodic evals). `loaded`
    gives the tokenizer and prompt template; without a `sampler` its model samples in process."""

    def __init__(
        self,
        loaded: LoadedModel | ModelText,
        cfg: EvalConfig,
        verifier: Verifier,
        sampler: Sampler | None = None,
    ) -> None:
        self.loaded, self.cfg, self.verifier = loaded, cfg, verifier
        if sampler is None:
            assert isinstance(loaded, LoadedModel), "in-process sampling needs the model"
            sampler = BuiltinSampler(loaded.model, loaded.tokenizer, loaded.template, seed=cfg.seed)
        self.sampler = sampler
        self.stop_ids = stop_token_ids(loaded.tokenizer, loaded.template.stop_strings())

    def prompt_text(self, item: BenchmarkItem) -> str:
        return self.loaded.template.render_prompt(item.question)

    def prompt_ids(self, item: BenchmarkItem) -> list[int]:
        return encode_prompt(
            self.loaded.tokenizer, self.prompt_text(item), self.loaded.template.renders_special_tokens
        )

    def sample(self, prompts: list[list[int]] | list[str]) -> list[list[Completion]]:
        """K completions per prompt (greedy when K is 1); each prompt gets max_new_tokens or the room the
        model's context leaves it, whichever is less."""
        cfg = self.cfg
        params = SamplingParams(
            cfg.max_new_tokens, temperature=cfg.temperature if cfg.samples > 1 else 0.0, top_p=cfg.top_p,
            n=cfg.samples,
        )  # fmt: skip
        return self.sampler.sample(prompts, params)

    def completions(self, prompts: list[list[int]]) -> tuple[list[list[str]], list[list[bool]]]:
        """K decoded completions per prompt and whether each was truncated (finish reason "length")."""
        groups = self.sample(prompts)
        return [[c.text for c in g] for g in groups], [[c.truncated for c in g] for g in groups]

    def run_benchmark(self, path: str | Path, out_dir: Path) -> dict[str, Any]:
        cfg = self.cfg
        items = load_benchmark(path)
        if cfg.limit:
            items = items[: cfg.limit]
        name = benchmark_name(path)
        per_item: dict[str, list[list[Verdict]]] = {match: [] for match in ANSWER_MATCHES}
        too_long = truncated = failed = 0
        after = self.loaded.template.reasoning_close
        context = self.sampler.max_context
        with open(out_dir / f"{name}.jsonl", "w") as fh:
            batches = range(0, len(items), cfg.batch_size)
            for start in tqdm(batches, desc=f"eval {name}", unit="batch", dynamic_ncols=True):
                chunk = items[start : start + cfg.batch_size]
                prompts = [self.prompt_ids(item) for item in chunk]
                kept = [i for i, p in enumerate(prompts) if context is None or len(p) <= context]
                too_long += len(chunk) - len(kept)
                for i in sorted(set(range(len(chunk))) - set(kept)):
                    record = {"id": chunk[i].id, "question": chunk[i].question, "gold": chunk[i].answer,
                              "skipped": "prompt_too_long", "prompt_tokens": len(prompts[i])}  # fmt: skip
                    fh.write(json.dumps(record, ensure_ascii=False) + "\n")
                if not kept:
                    continue
                asked = [
                    prompts[i] if self.sampler.accepts_token_ids else self.prompt_text(chunk[i]) for i in kept
                ]
                groups = self.sample(asked)
                for j, i in reversed(list(enumerate(kept))):
                    errors = [c.error for c in groups[j] if c.failed]
                    if errors:
                        failed += 1
                        record = {"id": chunk[i].id, "question": chunk[i].question, "gold": chunk[i].answer,
                                  "failed": errors[0]}  # fmt: skip
                        fh.write(json.dumps(record, ensure_ascii=False) + "\n")
                        del kept[j], groups[j]
                if not kept:
                    continue
                texts = [[c.text for c in g] for g in groups]
                cut = [[c.truncated for c in g] for g in groups]
                truncated += sum(map(sum, cut))
                flat = verify_matches(
                    self.verifier,
                    [t for ts in texts for t in ts],
                    [chunk[i].answer for i in kept for _ in range(cfg.samples)],
                    after,
                )
                for j, i in enumerate(kept):
                    item = chunk[i]
                    verdicts = {m: v[j * cfg.samples : (j + 1) * cfg.samples] for m, v in flat.items()}
                    for match in ANSWER_MATCHES:
                        per_item[match].append(verdicts[match])
                    head = verdicts[cfg.answer_match]
                    record = {
                        "id": item.id,
                        "question": item.question,
                        "gold": item.answer,
                        "completions": texts[j],
                        "finish": ["length" if c else "stop" for c in cut[j]],
                        "answers": [v.prediction for v in head],
                        "correct": [v.correct for v in head],
                        "status": [v.status for v in head],
                        **{
                            match: {
                                "answers": [v.prediction for v in verdicts[match]],
                                "correct": [v.correct for v in verdicts[match]],
                            }
                            for match in ANSWER_MATCHES
                        },
                    }
                    fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        summary = score_items(per_item[cfg.answer_match], cfg.samples)
        summary["answer_match"] = cfg.answer_match
        for match in ANSWER_MATCHES:
            figures = score_items(per_item[match], cfg.samples)
            summary[match] = {
                key: figures.get(key, 0.0) for key in ("pass@1", "pass@k", "maj@k", "no_answer")
            }
        summary["prompt_too_long"] = too_long
        summary["truncated"] = truncated
        summary["failed"] = failed
        log.info("%s: %s", name, summary)
        return summary


def evaluate(cfg: EvalConfig) -> dict[str, Any]:
    """Evaluate as configured; returns (and writes) the summary."""
    sampler: Sampler
    if cfg.engine.server:
        from training.sampling.openai_engine import server_sampler

        loaded: LoadedModel | ModelText = load_model_text(cfg.model, template=cfg.template)
        sampler = server_sampler(cfg.engine, loaded.tokenizer, loaded.template, seed=cfg.seed)
    else:
        device = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        loaded = load_model(cfg.model, device=device, template=cfg.template)
        loaded.model.drop_mtp()
        sampler = BuiltinSampler(loaded.model, loaded.tokenizer, loaded.template, seed=cfg.seed)
    out_dir = Path(cfg.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {}
    with sampler, Verifier(workers=cfg.verify_workers, timeout_s=cfg.verify_timeout) as verifier:
        evaluator = Evaluator(loaded, cfg, verifier, sampler)
        for path in cfg.benchmark:
            summary[benchmark_name(path)] = evaluator.run_benchmark(path, out_dir)
        engine = {**sampler.describe(), **dict(sampler.stats)}
    (out_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=1))
    (out_dir / "eval_config.json").write_text(
        json.dumps(
            {"config": to_dict(cfg), "template": loaded.template.to_dict(), "model_kind": loaded.kind,
             "engine": engine},
            indent=1,
        )
    )  # fmt: skip
    return summary
