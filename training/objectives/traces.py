"""`mathforge distill traces`: a teacher's verified solutions, for SFT (R1-style distillation) or for logit
distillation from stored log-probs.

K completions per prompt are sampled from the teacher (in process, or with `--server URL` at an
OpenAI-compatible server: see training/sampling/) and scored by the reward
functions (`accuracy` checks answers with math-verify in a process pool with hard timeouts); a completion is
accepted when every reward function gave it a value and their weighted total reaches `--min-reward`. Exact
duplicates of an accepted (prompt, completion) pair are dropped; `--keep all` keeps every other accepted
completion in sampling order, `--keep best` the best ones (highest reward, then shortest), and
`--max-per-prompt M` caps either.

Output: `OUT/part-NNNNN.parquet`, one per chunk of `--chunk-prompts` prompts, each written to a hidden
temporary file and renamed into place when complete, plus `OUT/_config.json` (what the rows depend on) and
`OUT/_summary.json` (counts). A chunk's sampling is seeded by (seed, chunk number), so a run that crashed is
resumed by running the same command again: finished chunks are skipped, the unfinished one is redone from its
start and comes out identical, and no row is written twice. `train sft` and `train distill` read the
directory as it is (the `_` files are skipped); `train distill --offline` reads the stored top-K.

Columns: `prompt` (the question as given), `completion` (decoded, without the stop token), `answer`,
`reward` (weighted total), `rewards` (JSON, per function), `prompt_index`, `sample` (which of the K),
`teacher`, `teacher_sha` (weights digest), `template`, `temperature`, `top_p`, `max_new_tokens`, `seed`,
`finish` (stop or length), `prompt_ids` and `completion_ids` (the exact tokens, stop token included),
`tokenizer_sha`, and with `--top-k-logprobs N`: `teacher_top_k` (N), `logprob_temperature`,
`teacher_top_ids` (int32) and `teacher_top_logprobs` (float16), both little-endian row-major
[completion tokens, N] bytes: about 6·N bytes a token before compression.

Through a server the columns are the same: token ids and top-K come from the server (vLLM's return_token_ids
and return_tokens_as_token_ids, which `mathforge serve` mirrors) and are trusted only when the server's
tokenizer is the teacher's (checked first; `--top-k-logprobs` is refused otherwise); `teacher_sha` is the
weights digest `mathforge serve` advertises (else `server:<model>`); the log-probs are the server's, of the
model's own distribution, so `--logprob-temperature` must be 1. A chunk in which a request failed for good
is not committed: it is counted (`failed_chunks`) and a rerun of the same command samples it again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from tqdm import tqdm

from training.config import TracesConfig
from training.distributed import param_digest
from training.models.model_io import LoadedModel, ModelText, load_model, load_model_text
from training.models.tokenizer import encode_prompt, vocabulary_digest
from training.objectives.grpo import PromptItem, load_prompts
from training.objectives.sft import Example
from training.rewards.functions import Rewards, parse_reward_specs
from training.sampling.builtin import BuiltinSampler
from training.sampling.interface import Sampler, SamplingParams

log = logging.getLogger(__name__)

CONFIG_FILE = "_config.json"
SUMMARY_FILE = "_summary.json"
# Test hook: raise after this many chunks were committed by this invocation, halfway through the next one.
FAIL_ENV = "MATHFORGE_TRACES_FAIL_AFTER_CHUNKS"

SCHEMA = pa.schema(
    [
        ("prompt", pa.string()),
        ("completion", pa.string()),
        ("answer", pa.string()),
        ("reward", pa.float64()),
        ("rewards", pa.string()),
        ("prompt_index", pa.int64()),
        ("sample", pa.int32()),
        ("teacher", pa.string()),
        ("teacher_sha", pa.string()),
        ("template", pa.string()),
        ("temperature", pa.float64()),
        ("top_p", pa.float64()),
        ("max_new_tokens", pa.int32()),
        ("seed", pa.int64()),
        ("finish", pa.string()),
        ("prompt_ids", pa.list_(pa.int32())),
        ("completion_ids", pa.list_(pa.int32())),
        ("tokenizer_sha", pa.string()),
        ("teacher_top_k", pa.int32()),
        ("logprob_temperature", pa.float64()),
        ("teacher_top_ids", pa.binary()),
        ("teacher_top_logprobs", pa.binary()),
    ]
)


def part_name(chunk: int) -> str:
    return f"part-{chunk:05d}.parquet"


def pair_digest(prompt: str, completion: str) -> str:
    return hashlib.sha1(json.dumps([prompt, completion]).encode()).hexdigest()


def encode_top(ids: np.ndarray, logprobs: np.ndarray) -> tuple[bytes, bytes]:
    """The compact form of a completion's top-K: int32 ids and float16 log-probs (clipped at −60), as bytes."""
    return (
        np.ascontiguousarray(ids, dtype="<i4").tobytes(),
        np.ascontiguousarray(np.maximum(logprobs, -60.0), dtype="<f2").tobytes(),
    )


def decode_top(row: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """A trace row's stored top-K as ([tokens, K] int64 ids, [tokens, K] float32 log-probs)."""
    k = int(row["teacher_top_k"])
    ids = np.frombuffer(row["teacher_top_ids"], dtype="<i4").astype(np.int64).reshape(-1, k)
    values = np.frombuffer(row["teacher_top_logprobs"], dtype="<f2").astype(np.float32).reshape(-1, k)
    return ids, values


def trace_examples(
    rows: list[dict[str, Any]], tokenizer_sha: str, temperature: float, where: str | Path
) -> list[Example]:
    """Offline distillation examples from trace rows: the exact prompt and completion tokens the teacher saw and
    wrote, with its stored top-K. The traces' tokenizer must be the student's, and their log-probs taken at the
    distillation temperature (a stored top-K cannot be re-tempered: the tail's shape is unknown)."""
    needed = ("prompt_ids", "completion_ids", "teacher_top_k", "teacher_top_ids", "teacher_top_logprobs")
    examples = []
    for number, row in enumerate(rows):
        if any(row.get(key) is None for key in needed) or not row["teacher_top_k"]:
            raise ValueError(
                f"{where}: row {number} has no stored teacher log-probs; offline distillation reads traces "
                f"written by `mathforge distill traces --top-k-logprobs N` (columns {', '.join(needed)})"
            )
        if row.get("tokenizer_sha") != tokenizer_sha:
            raise ValueError(
                f"{where}: row {number} was tokenized by another tokenizer than the student's "
                "(tokenizer_sha differs): stored token ids would not mean the same tokens"
            )
        if not math.isclose(float(row["logprob_temperature"]), temperature):
            raise ValueError(
                f"{where}: row {number} stores log-probs at temperature {row['logprob_temperature']}, "
                f"distillation runs at {temperature}: pass --temperature {row['logprob_temperature']} or write "
                f"the traces with --logprob-temperature {temperature}"
            )
        if examples and int(row["teacher_top_k"]) != examples[0].top_ids.shape[1]:
            raise ValueError(
                f"{where}: row {number} stores a top-{row['teacher_top_k']}, earlier rows another K"
            )
        prompt, completion = list(row["prompt_ids"]), list(row["completion_ids"])
        ids, values = decode_top(row)
        if len(ids) != len(completion):
            raise ValueError(
                f"{where}: row {number}: {len(ids)} stored top-K rows for {len(completion)} tokens"
            )
        examples.append(Example(np.array(prompt + completion, dtype=np.int64), len(prompt), ids, values))
    if not examples:
        raise ValueError(f"{where}: no trace rows")
    return examples


def select(
    candidates: list[dict[str, Any]], keep: str, max_per_prompt: int, seen: set[str]
) -> tuple[list[dict[str, Any]], int]:
    """The accepted candidates one prompt keeps, and how many exact duplicates were dropped (within the prompt,
    or of a pair in `seen`, which the kept pairs join)."""
    unique, duplicates = [], 0
    for cand in candidates:
        digest = pair_digest(cand["prompt"], cand["completion"])
        if digest in seen:
            duplicates += 1
            continue
        seen.add(digest)
        unique.append((digest, cand))
    if keep == "best":
        unique.sort(key=lambda dc: (-dc[1]["reward"], len(dc[1]["completion_ids"]), dc[1]["sample"]))
    limit = max_per_prompt or (1 if keep == "best" else len(unique))
    for digest, _ in unique[limit:]:
        seen.discard(digest)  # not written, so not a duplicate of anything later
    return [cand for _, cand in unique[:limit]], duplicates


class ChunkFailed(RuntimeError):
    """A request of the chunk failed for good: the chunk is not committed (a rerun samples it again)."""


class TraceWriter:
    """Samples, scores and keeps one chunk of prompts at a time (see the module docstring)."""

    def __init__(
        self,
        cfg: TracesConfig,
        text: LoadedModel | ModelText,
        rewards: Rewards,
        sampler: Sampler,
        teacher_sha: str,
    ) -> None:
        self.cfg, self.text, self.rewards, self.sampler = cfg, text, rewards, sampler
        self.tokenizer_sha = vocabulary_digest(text.tokenizer)
        self.teacher_sha = teacher_sha

    def _candidates(self, items: list[tuple[int, PromptItem]]) -> list[list[dict]]:
        """K scored samples for each (index, prompt); each a row dict plus `accepted`."""
        cfg, template, tokenizer = self.cfg, self.text.template, self.text.tokenizer
        k = cfg.samples
        rendered = [template.render_prompt(item.text) for _, item in items]
        prompt_ids = [encode_prompt(tokenizer, text, template.renders_special_tokens) for text in rendered]
        params = SamplingParams(
            cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p, n=k,
            top_logprobs=cfg.top_k_logprobs, logprob_temperature=cfg.logprob_temperature,
        )  # fmt: skip
        groups = self.sampler.sample(prompt_ids if self.sampler.accepts_token_ids else rendered, params)
        out = [c for group in groups for c in group]
        errors = [c.error for c in out if c.failed]
        if errors:
            raise ChunkFailed(f"{len(errors)} of {len(out)} samples failed; the first: {errors[0]}")
        # the server's ids mean our tokens only when its tokenizer is ours; else the texts' local encoding
        trusted = self.sampler.accepts_token_ids
        tokens_of = [
            c.token_ids
            if c.token_ids is not None and trusted
            else tokenizer.encode(c.text, add_special_tokens=False).ids
            for c in out
        ]
        texts = [c.text for c in out]
        columns = {key: [item.columns.get(key) for _, item in items for _ in range(k)]
                   for key in {key for _, item in items for key in item.columns}}  # fmt: skip
        scored = self.rewards.score(
            [text for text in rendered for _ in range(k)], texts, columns, [len(t) for t in tokens_of],
            [c.truncated for c in out],
        )  # fmt: skip
        groups_out = []
        for i, (index, item) in enumerate(items):
            group = []
            for s in range(k):
                j = i * k + s
                values = {name: scored.per_function[name][j] for name in scored.per_function}
                row = {
                    "prompt": item.text, "completion": texts[j], "answer": str(item.columns["answer"]),
                    "reward": scored.total[j], "rewards": json.dumps(values), "prompt_index": index,
                    "sample": s, "teacher": cfg.teacher, "teacher_sha": self.teacher_sha,
                    "template": template.kind, "temperature": cfg.temperature, "top_p": cfg.top_p,
                    "max_new_tokens": cfg.max_new_tokens, "seed": cfg.seed, "finish": out[j].finish_reason,
                    "prompt_ids": prompt_ids[i], "completion_ids": tokens_of[j], "tokenizer_sha": self.tokenizer_sha,
                    "teacher_top_k": cfg.top_k_logprobs, "logprob_temperature": cfg.logprob_temperature,
                    "teacher_top_ids": None, "teacher_top_logprobs": None,
                    "accepted": all(v is not None for v in values.values()) and scored.total[j] >= cfg.min_reward,
                }  # fmt: skip
                if cfg.top_k_logprobs:
                    top_ids, top_values = out[j].top_ids, out[j].top_logprobs
                    assert top_ids is not None and top_values is not None
                    row["teacher_top_ids"], row["teacher_top_logprobs"] = encode_top(top_ids, top_values)
                group.append(row)
            groups_out.append(group)
        return groups_out

    def chunk_rows(
        self, chunk: int, items: list[tuple[int, PromptItem]], seen: set[str], counts: dict[str, int]
    ) -> list[dict[str, Any]]:
        """The kept rows of one chunk; its sampling depends only on (seed, chunk) and the prompts in it."""
        cfg = self.cfg
        self.sampler.reseed(cfg.seed * 1_000_003 + chunk)
        kept_rows: list[dict[str, Any]] = []
        for start in range(0, len(items), cfg.batch_size):
            for group in self._candidates(items[start : start + cfg.batch_size]):
                accepted = [row for row in group if row["accepted"]]
                kept, duplicates = select(accepted, cfg.keep, cfg.max_per_prompt, seen)
                counts["samples"] += len(group)
                counts["accepted"] += len(accepted)
                counts["duplicates"] += duplicates
                counts["kept"] += len(kept)
                counts["prompts_with_kept"] += bool(kept)
                kept_rows.extend({k: v for k, v in row.items() if k != "accepted"} for row in kept)
        return kept_rows


def _fingerprint(cfg: TracesConfig, items: list[PromptItem], teacher_sha: str, tokenizer_sha: str) -> dict:
    """What the rows depend on: a rerun into the same directory must agree on all of it."""
    settings = {
        k: v
        for k, v in asdict(cfg).items()
        if k not in ("device", "verify_workers", "reward_timeout", "engine")
    }
    prompts = hashlib.sha256(json.dumps([item.text for item in items]).encode()).hexdigest()
    fingerprint = {"config": settings, "prompts_sha": prompts, "n_prompts": len(items), "teacher_sha": teacher_sha,
                   "tokenizer_sha": tokenizer_sha}  # fmt: skip
    return json.loads(json.dumps(fingerprint))  # as stored: tuples become lists


def _commit(table: pa.Table, out: Path, chunk: int, fail_now: bool) -> None:
    tmp = out / f".{part_name(chunk)}.tmp"
    pq.write_table(table, tmp, compression="zstd")
    if fail_now:
        raise RuntimeError(f"{FAIL_ENV}: stopping before chunk {chunk} is committed (test hook)")
    os.replace(tmp, out / part_name(chunk))


def _teacher(cfg: TracesConfig) -> tuple[LoadedModel | ModelText, Sampler, str]:
    """The teacher's tokenizer and template, the engine that samples it and its weights digest."""
    if cfg.engine.server:
        from training.sampling.openai_engine import server_sampler

        text = load_model_text(cfg.teacher, template=cfg.template)
        sampler = server_sampler(cfg.engine, text.tokenizer, text.template, seed=cfg.seed)
        if cfg.top_k_logprobs and not sampler.accepts_token_ids:
            sampler.close()
            raise ValueError(
                f"--top-k-logprobs stores token ids and log-probs, but the tokenizer at {cfg.engine.server} is "
                f"not known to be the teacher's ({sampler.agreement.detail if sampler.agreement else 'unchecked'})"
                ": serve the same tokenizer, or write traces without --top-k-logprobs"
            )
        sha = sampler.card.get("weights_sha")
        return text, sampler, str(sha) if isinstance(sha, str) else f"server:{sampler.model}"
    device = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device == "cuda" else None
    loaded = load_model(cfg.teacher, device=device, dtype=dtype, template=cfg.template)
    loaded.model.drop_mtp()
    return (
        loaded,
        BuiltinSampler(loaded.model, loaded.tokenizer, loaded.template),
        param_digest(loaded.model)[:16],
    )


def write_traces(cfg: TracesConfig) -> dict[str, Any]:
    """Sample, verify and keep as configured, resuming a crashed run in the same directory; the summary."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    items = load_prompts(cfg.prompts, cfg.prompt_column)
    if cfg.limit:
        items = items[: cfg.limit]
    text, sampler, teacher_sha = _teacher(cfg)
    specs = parse_reward_specs(cfg.reward)
    with sampler, Rewards(
        specs, timeout_s=cfg.reward_timeout, verify_workers=cfg.verify_workers,
        max_completion_tokens=cfg.max_new_tokens, overlong_buffer=cfg.overlong_buffer,
        answer_after=text.template.reasoning_close,
    ) as rewards:  # fmt: skip
        writer = TraceWriter(cfg, text, rewards, sampler, teacher_sha)
        fingerprint = _fingerprint(cfg, items, writer.teacher_sha, writer.tokenizer_sha)
        config_path = out / CONFIG_FILE
        if config_path.is_file():
            previous = json.loads(config_path.read_text())
            if previous != fingerprint:
                changed = sorted(k for k in fingerprint if previous.get(k) != fingerprint[k])
                raise ValueError(
                    f"{out} holds traces of another run ({', '.join(changed)} differ): rerun the same command "
                    "to resume it, or choose another --out"
                )
        else:
            config_path.write_text(json.dumps(fingerprint, indent=1))
        for stale in out.glob(".part-*.tmp"):
            stale.unlink()
        chunks = math.ceil(len(items) / cfg.chunk_prompts)
        done = [c for c in range(chunks) if (out / part_name(c)).is_file()]
        seen: set[str] = set()
        for c in done:
            pairs = pq.read_table(out / part_name(c), columns=["prompt", "completion"]).to_pylist()
            seen.update(pair_digest(pair["prompt"], pair["completion"]) for pair in pairs)
        counts = dict.fromkeys(("samples", "accepted", "duplicates", "kept", "prompts_with_kept"), 0)
        failed_chunks: list[int] = []
        fail_after = int(os.environ.get(FAIL_ENV, "-1"))
        committed = 0
        started = sum(min(cfg.chunk_prompts, len(items) - c * cfg.chunk_prompts) for c in done)
        progress = tqdm(total=len(items), initial=started, desc="traces", unit="prompt", dynamic_ncols=True)
        for c in range(chunks):
            if c in done:
                continue
            first = c * cfg.chunk_prompts
            chunk_items = list(enumerate(items))[first : first + cfg.chunk_prompts]
            try:
                rows = writer.chunk_rows(c, chunk_items, seen, counts)
            except ChunkFailed as err:
                log.error("chunk %d not written (a rerun samples it again): %s", c, err)
                failed_chunks.append(c)
                progress.update(len(chunk_items))
                continue
            table = pa.Table.from_pylist(rows, schema=SCHEMA)
            _commit(table, out, c, fail_now=committed == fail_after)
            committed += 1
            progress.update(len(chunk_items))
            progress.set_postfix(
                kept=counts["kept"], accepted=f"{counts['accepted'] / max(counts['samples'], 1):.2f}"
            )
        progress.close()
        stats = dict(rewards.stats)
        engine = {**sampler.describe(), **dict(sampler.stats)}
    total_rows = sum(
        pq.ParquetFile(out / part_name(c)).metadata.num_rows
        for c in range(chunks)
        if (out / part_name(c)).is_file()
    )
    summary = {
        "prompts": len(items), "chunks": chunks, "chunks_resumed": len(done), "rows": total_rows,
        "this_run": counts, "reward_stats": stats, "teacher": cfg.teacher, "out": str(out),
        "failed_chunks": failed_chunks, "engine": engine,
    }  # fmt: skip
    (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=1))
    log.info("traces: %s", summary)
    return summary
