"""Batching for `mathforge serve`: request threads hand in jobs, one scheduler thread runs them together.

The scheduler takes the first waiting job, waits up to the batch window for more (until `max_batch_rows`
rows, prompts × n, have arrived), groups what it holds by the settings one `generate()` call shares
(temperature, top-p, stop tokens, top-K) and runs each group as one batch through the in-process engine.
Rows of one batch may ask for different lengths: the batch runs to the longest and each row is cut to its
own (a greedy row is the same either way). A request with a `seed` (at temperature > 0) runs as its own
batch, its generator seeded by it, so that it is reproducible whatever else arrives; other sampled requests
draw from the server's one random stream. Counters (`requests`, `batches`, `rows`) say how well batching
went and are reported by /health.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from training.distributed import unwrap
from training.models.generation import mask_padded_vocab
from training.sampling.builtin import BuiltinSampler
from training.sampling.interface import Completion, SamplingParams
from training.serving.protocol import Job, Sample

log = logging.getLogger(__name__)


@torch.no_grad()
def raw_logprobs(model: nn.Module, prompt: list[int], completion: list[int], vocab_size: int) -> list[float]:
    """log p(token) of each completion token under the model's own distribution (temperature 1, the
    tokenizer's ids only): what servers report as token log-probs, whatever the sampling settings were."""
    if not completion:
        return []
    device = unwrap(model).embed.weight.device
    ids = torch.tensor([prompt + completion[:-1]], dtype=torch.long, device=device)
    where = torch.arange(len(prompt) - 1, len(prompt) - 1 + len(completion), device=device)
    targets = torch.tensor(completion, dtype=torch.long, device=device)

    def readout(inner: Any, normed: torch.Tensor) -> torch.Tensor:
        logits = mask_padded_vocab(inner.head(normed[0, where]).float(), vocab_size)
        return torch.log_softmax(logits, dim=-1).gather(-1, targets[:, None]).squeeze(-1)

    return model(ids, readout=readout).tolist()


class ServingEngine:
    """Runs one group of compatible jobs as one `generate()` batch and shapes the rows into `Sample`s."""

    def __init__(self, sampler: BuiltinSampler) -> None:
        self.sampler = sampler

    @staticmethod
    def group_key(job: Job, unique: int) -> tuple:
        if job.temperature <= 0:  # greedy: top-p and seed change nothing
            return (0.0, 1.0, job.logprobs or 0, None)
        seed = (job.seed, unique) if job.seed is not None else None
        return (job.temperature, job.top_p, job.logprobs or 0, seed)

    def run(self, jobs: list[Job]) -> list[list[Sample]]:
        first, sampler = jobs[0], self.sampler
        context = sampler.max_context or 0
        rooms = [min(j.max_tokens or context, context + 1 - len(j.prompt_ids)) for j in jobs]
        params = SamplingParams(
            max(rooms), temperature=first.temperature, top_p=first.top_p, n=1, top_logprobs=first.logprobs or 0,
            seed=first.seed if first.temperature > 0 else None,
        )  # fmt: skip
        rows = sampler.sample([j.prompt_ids for j in jobs for _ in range(j.n)], params)
        flat = iter(group[0] for group in rows)
        return [
            [self._shape(job, next(flat), room) for _ in range(job.n)]
            for job, room in zip(jobs, rooms, strict=True)
        ]

    def _shape(self, job: Job, completion: Completion, room: int) -> Sample:
        sampler = self.sampler
        assert completion.token_ids is not None
        if len(completion.token_ids) > room:  # this row asked for fewer tokens than its batch-mates
            tokens = completion.token_ids[:room]
            completion = Completion(
                sampler.decode(tokens), tokens, "length", (completion.logprobs or [])[:room],
                None if completion.top_ids is None else completion.top_ids[:room],
                None if completion.top_logprobs is None else completion.top_logprobs[:room],
            )  # fmt: skip
        completion, stop_reason = sampler.cut_at_stop(completion, job.stop)
        tokens = completion.token_ids or []
        reason: int | str | None = stop_reason
        if (
            reason is None
            and completion.finish_reason == "stop"
            and tokens
            and tokens[-1] in sampler.stop_ids
        ):
            reason = tokens[-1]
        sample = Sample(tokens, completion.text, completion.finish_reason, reason)
        if job.logprobs is not None:
            sample.logprobs = raw_logprobs(sampler.model, job.prompt_ids, tokens, sampler.vocab_size)
            if job.logprobs and completion.top_ids is not None and completion.top_logprobs is not None:
                sample.top = [
                    [(int(i), float(v)) for i, v in zip(ids, values, strict=True)]
                    for ids, values in zip(completion.top_ids, completion.top_logprobs, strict=True)
                ]
            else:
                sample.top = [[] for _ in tokens]
        return sample


@dataclass
class _Pending:
    job: Job
    key: tuple
    done: threading.Event = field(default_factory=threading.Event)
    result: list[Sample] | None = None
    error: BaseException | None = None


class Batcher:
    """The scheduler thread (see the module docstring). `submit` blocks the calling request thread."""

    def __init__(self, engine: ServingEngine, max_batch_rows: int, window_s: float) -> None:
        self.engine, self.max_rows, self.window_s = engine, max_batch_rows, window_s
        self.queue: queue.Queue[_Pending | None] = queue.Queue()
        self.stats: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._unique = itertools.count()
        self._thread = threading.Thread(target=self._loop, name="mathforge-batcher", daemon=True)
        self._thread.start()

    def submit(self, jobs: list[Job]) -> list[list[Sample]]:
        pending = [_Pending(job, ServingEngine.group_key(job, next(self._unique))) for job in jobs]
        with self._lock:
            self.stats["requests"] += 1
        for item in pending:
            self.queue.put(item)
        for item in pending:
            item.done.wait()
        for item in pending:
            if item.error is not None:
                raise item.error
        return [item.result or [] for item in pending]

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {**self.stats, "waiting": self.queue.qsize()}

    def close(self) -> None:
        self.queue.put(None)
        self._thread.join(timeout=60)

    def _loop(self) -> None:
        while True:
            first = self.queue.get()
            if first is None:
                return
            held, rows, stopping = [first], first.job.n, False
            deadline = time.monotonic() + self.window_s
            while rows < self.max_rows:
                try:
                    item = self.queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                held.append(item)
                rows += item.job.n
            groups: dict[tuple, list[_Pending]] = {}
            for item in held:
                groups.setdefault(item.key, []).append(item)
            for group in groups.values():
                self._run(group)
            if stopping:
                return

    def _run(self, group: list[_Pending]) -> None:
        start = 0
        while start < len(group):  # batches of at most max_rows rows (a single bigger job runs alone)
            part, rows = [], 0
            while start < len(group) and (not part or rows + group[start].job.n <= self.max_rows):
                part.append(group[start])
                rows += group[start].job.n
                start += 1
            try:
                results = self.engine.run([item.job for item in part])
                for item, result in zip(part, results, strict=True):
                    item.result = result
            except Exception as exc:  # reported to each waiting request, the server keeps serving
                log.exception("a batch of %d rows failed", rows)
                for item in part:
                    item.error = exc
            with self._lock:
                self.stats["batches"] += 1
                self.stats["rows"] += rows
            for item in part:
                item.done.set()
