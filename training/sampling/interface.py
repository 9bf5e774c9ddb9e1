"""One sampling interface for every command that asks a model to write: `eval`, `distill traces`, `generate`,
GRPO's rollouts and on-policy distillation all say "complete these prompts with these settings" and nothing
above this seam knows which engine answers.

Two engines sit behind it: `BuiltinSampler` (in process, through the model as training holds it: plain, DDP
or FSDP2) and `OpenAISampler` (any OpenAI-compatible server: vLLM, SGLang, TGI, `mathforge serve`). A prompt
is token ids or text (text is framed as the model saw text in training, see `encode_prompt`); a completion
carries its text, its token ids when the engine knows them, its finish reason, per-token log-probs and, on
request, the top-K log-probs per token. A request that failed for good comes back as a completion with
finish reason "error" and the reason, never silently as an empty answer.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Prompt = Sequence[int] | str

FINISH_REASONS = ("stop", "length", "error")


@dataclass(frozen=True)
class SamplingParams:
    """What to sample. `stop` holds stop strings beyond the model's own (its EOS and its template's end of
    turn always stop). `top_logprobs` K asks for the K most likely tokens and their log-probs at every
    completion token, under softmax(logits / logprob_temperature) in process; servers report theirs (vLLM's
    default is the model's raw distribution, temperature 1). `seed` restarts the engine's randomness for this
    call (None: the engine's own stream, see `Sampler.reseed`)."""

    max_new_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    n: int = 1
    stop: tuple[str, ...] = ()
    top_logprobs: int = 0
    logprob_temperature: float = 1.0
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1 or self.n < 1:
            raise ValueError(f"max_new_tokens and n must be positive, got {self.max_new_tokens} and {self.n}")
        if not (math.isfinite(self.temperature) and self.temperature >= 0.0):
            raise ValueError(f"temperature must be a finite number >= 0, got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_logprobs < 0 or not self.logprob_temperature > 0.0:
            raise ValueError("top_logprobs must be >= 0 and logprob_temperature > 0")
        if any(not s for s in self.stop):
            raise ValueError("stop strings must not be empty")


@dataclass
class Completion:
    """One sampled completion. `token_ids` are the completion's tokens, the stop token included (None when the
    engine did not say); `text` is decoded without the stop token or stop string. `logprobs` are per-token
    log-probs as the engine reports them (in process: of the distribution each token was drawn from, 0 when
    greedy; servers: usually the model's raw distribution). `top_ids` / `top_logprobs` are [tokens, K]."""

    text: str
    token_ids: list[int] | None
    finish_reason: str
    logprobs: list[float] | None = None
    top_ids: np.ndarray | None = None
    top_logprobs: np.ndarray | None = None
    error: str | None = None

    @property
    def truncated(self) -> bool:
        """Cut off by the length limit (finish reason "length")."""
        return self.finish_reason == "length"

    @property
    def failed(self) -> bool:
        return self.finish_reason == "error"


def failed_completion(reason: str) -> Completion:
    return Completion("", None, "error", error=reason)


class Sampler(ABC):
    """An engine: `sample` returns, for each prompt, its `params.n` completions in order."""

    name = "sampler"
    # prompt + completion tokens the model holds (None: unknown); a longer prompt is the caller's to skip
    max_context: int | None = None

    def __init__(self) -> None:
        self.stats: Counter[str] = Counter()  # requests, retries, failed_requests, ... (engine-specific)

    @property
    def accepts_token_ids(self) -> bool:
        """Whether prompts may be given as token ids (a server only once its tokenizer is known to be ours)."""
        return True

    @abstractmethod
    def sample(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[list[Completion]]: ...

    @abstractmethod
    def reseed(self, seed: int) -> None:
        """Restart the engine's own random stream (what calls without `params.seed` draw from) at `seed`."""

    def describe(self) -> dict[str, object]:
        """What produced the samples (written next to results)."""
        return {"engine": self.name}

    def close(self) -> None:  # noqa: B027 - most engines hold nothing to release
        """Release threads and connections (the built-in engine holds none)."""

    def __enter__(self) -> Sampler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class StopHit:
    text: str  # the text before the stop string
    stop: str | None  # which stop string ended it (None: none did)


def cut_at_stop_strings(text: str, stops: Sequence[str]) -> StopHit:
    """The text up to the earliest occurrence of any stop string (OpenAI semantics: the stop string itself
    is not returned); on a tie at one position the longer stop string wins."""
    best: tuple[int, int, str] | None = None
    for stop in stops:
        at = text.find(stop) if stop else -1
        if at >= 0 and (best is None or (at, -len(stop)) < (best[0], best[1])):
            best = (at, -len(stop), stop)
    if best is None:
        return StopHit(text, None)
    return StopHit(text[: best[0]], best[2])
