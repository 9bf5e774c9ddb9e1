"""Chat completions through the HTTP engine: the server applies the model's own chat template.

`OpenAISampler` renders prompts here and sends `/v1/completions`, so the server sees exactly what the in-process
engine would; that needs the model's tokenizer and template locally. A caller that only asks an instruction
model a question (quality annotation: `mathforge classifier annotate`) has neither and should not need them:
vLLM, SGLang and `mathforge serve` render a conversation with the served model's template at
`/v1/chat/completions`. `OpenAIChat` adds that one call to the same client, retries with backoff, failure
counters and request pool, and answers with the interface's `Completion` (text, finish reason, error).

Each conversation carries its own seed (a caller makes it a function of the row, so an answer can be
reproduced and a retry asks with another seed). A reasoning server (vLLM's --reasoning-parser) returns the
reasoning apart from the content; only the content is returned here.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from training.sampling.interface import Completion, failed_completion
from training.sampling.openai_engine import OpenAISampler, _describe_error

log = logging.getLogger(__name__)


class OpenAIChat(OpenAISampler):
    """An `OpenAISampler` that also speaks `/v1/chat/completions` (see the module docstring)."""

    name = "openai-chat"

    def chat(
        self,
        conversations: Sequence[Sequence[Mapping[str, str]]],
        seeds: Sequence[int | None],
        *,
        max_tokens: int,
        temperature: float = 0.0,
        top_p: float = 1.0,
    ) -> list[Completion]:
        """One completion per conversation, in order; a request that failed for good comes back failed."""
        if len(seeds) != len(conversations):
            raise ValueError(f"{len(seeds)} seeds for {len(conversations)} conversations")
        if max_tokens < 1 or temperature < 0 or not 0 < top_p <= 1:
            raise ValueError("max_tokens must be >= 1, temperature >= 0 and top_p in (0, 1]")
        futures = [
            self.pool.submit(self._chat_one, list(messages), seed, max_tokens, temperature, top_p)
            for messages, seed in zip(conversations, seeds, strict=True)
        ]
        return [future.result() for future in futures]

    def _chat_one(
        self,
        messages: list[Mapping[str, str]],
        seed: int | None,
        max_tokens: int,
        temperature: float,
        top_p: float,
    ) -> Completion:
        body: dict[str, Any] = {"model": self.model, "messages": [dict(m) for m in messages],
                                "max_tokens": max_tokens, "temperature": temperature, "top_p": top_p, "n": 1}  # fmt: skip
        if seed is not None:
            body["seed"] = seed
        self._count("requests")
        try:
            response = self._call(
                lambda: self.client.chat.completions.create(**body), "POST /v1/chat/completions"
            )
        except Exception as exc:  # every failure is reported, none is fatal to the run
            reason = _describe_error(exc)
            self._count("failed_requests")
            log.warning("chat request failed for good: %s", reason)
            return failed_completion(reason)
        if len(response.choices) != 1:
            self._count("failed_requests")
            return failed_completion(f"the server returned {len(response.choices)} choices for n=1")
        choice = response.choices[0]
        if choice.finish_reason not in ("stop", "length"):
            self._count("failed_completions")
            return failed_completion(f"the server finished a completion with {choice.finish_reason!r}")
        return Completion(choice.message.content or "", None, choice.finish_reason)


def chat_engine(engine: Any, seed: int = 0) -> OpenAIChat:
    """The chat client as an `EngineConfig` (training/config.py) says; no local tokenizer is involved."""
    if not engine.server:
        raise ValueError("this command talks to a server: give --server URL (vLLM, SGLang, mathforge serve)")
    return OpenAIChat(
        engine.server, model=engine.server_model, concurrency=engine.concurrency,
        timeout=engine.request_timeout, max_retries=engine.max_retries, backoff=engine.retry_backoff, seed=seed,
    )  # fmt: skip
