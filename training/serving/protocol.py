"""The OpenAI wire format of `mathforge serve`: requests checked and turned into engine jobs, results turned
into the response shapes the `openai` client reads. Torch-free.

A request the server cannot serve gets an OpenAI error body (`{"error": {"message", "type", "param",
"code"}}`) with status 400 (404 for a model it does not serve, as OpenAI and vLLM answer). vLLM's extra
request fields are understood: `return_token_ids` (each choice carries `prompt_token_ids` and `token_ids`),
`return_tokens_as_token_ids` (log-prob tokens written "token_id:N"), `add_special_tokens` on completions.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

MAX_STOP_STRINGS = 16
# Parameters other servers honour that this one does not: refused unless left at their neutral value.
_NEUTRAL = {
    "echo": (False, None),
    "suffix": (None, ""),
    "presence_penalty": (0, 0.0, None),
    "frequency_penalty": (0, 0.0, None),
    "logit_bias": (None, {}),
    "tools": (None, []),
    "response_format": (None, {"type": "text"}),
}


class RequestError(Exception):
    """A request the server cannot serve, as an OpenAI error response."""

    def __init__(
        self, message: str, *, param: str | None = None, status: int = 400, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.message, self.param, self.status, self.code = message, param, status, code

    def body(self) -> dict[str, Any]:
        kind = "not_found_error" if self.status == 404 else "invalid_request_error"
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}


@dataclass(frozen=True)
class Limits:
    model: str  # the served name
    context: int  # the model's max_seq_len
    vocab: int  # token ids the tokenizer has
    max_n: int
    max_logprobs: int


@dataclass
class Job:
    """One prompt's `n` samples, as the engine sees them. `max_tokens` None: all the room the context leaves.
    `logprobs` None: none asked; K >= 0: each token's log-prob and the K most likely."""

    prompt_ids: list[int]
    n: int
    max_tokens: int | None
    temperature: float
    top_p: float
    stop: tuple[str, ...]
    seed: int | None
    logprobs: int | None


@dataclass
class Sample:
    """One row the engine wrote: the tokens (the stop token included), the text without stop token or stop
    string, why it ended, and the log-probs asked for ([(id, logprob)] most likely first per token)."""

    token_ids: list[int]
    text: str
    finish_reason: str
    stop_reason: int | str | None = None
    logprobs: list[float] | None = None
    top: list[list[tuple[int, float]]] | None = None


@dataclass
class ParsedRequest:
    kind: str  # "completion" or "chat"
    jobs: list[Job]
    tokens_as_ids: bool
    return_token_ids: bool


# -- requests ----------------------------------------------------------------------------------------


def parse_completion(
    body: Mapping[str, Any], limits: Limits, encode: Callable[[str, bool | None], list[int]]
) -> ParsedRequest:
    """A /v1/completions request. `encode(text, add_special_tokens)` frames a text prompt (None: as the
    model saw text in training)."""
    _common_checks(body, limits)
    add_special = body.get("add_special_tokens")
    if add_special is not None and not isinstance(add_special, bool):
        raise RequestError("add_special_tokens must be a boolean", param="add_special_tokens")
    prompts = [encode(p, add_special) if isinstance(p, str) else p for p in _prompts(body.get("prompt"))]
    logprobs = body.get("logprobs")
    if logprobs is not None:
        logprobs = _int(body, "logprobs", 0, limits.max_logprobs)
    max_tokens = body.get("max_tokens", 16)
    max_tokens = None if max_tokens is None else _int(body, "max_tokens", 1, None)
    best_of = body.get("best_of")
    if best_of is not None and best_of != body.get("n", 1):
        raise RequestError("best_of is not supported (leave it out, or equal to n)", param="best_of")
    return ParsedRequest(
        "completion",
        _jobs(body, limits, prompts, max_tokens, logprobs),
        bool(body.get("return_tokens_as_token_ids")),
        bool(body.get("return_token_ids")),
    )


def parse_chat(
    body: Mapping[str, Any], limits: Limits, render: Callable[[list[dict[str, str]]], list[int]]
) -> ParsedRequest:
    """A /v1/chat/completions request; `render(messages)` applies the model's chat template (ValueError for
    a conversation it cannot render)."""
    _common_checks(body, limits)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError("messages must be a non-empty list", param="messages")
    plain = []
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping) or message.get("role") not in ("system", "user", "assistant"):
            raise RequestError(f"messages[{i}] needs a role of system, user or assistant", param="messages")
        plain.append({"role": message["role"], "content": _content(message.get("content"), i)})
    try:
        prompt = render(plain)
    except ValueError as err:
        raise RequestError(
            f"the model's chat template cannot render these messages: {err}", param="messages"
        ) from err
    logprobs = None
    want = body.get("logprobs", False)
    if not isinstance(want, bool):
        raise RequestError("logprobs must be a boolean on chat completions", param="logprobs")
    top = body.get("top_logprobs")
    if top is not None:
        top = _int(body, "top_logprobs", 0, limits.max_logprobs)
        if not want:
            raise RequestError("top_logprobs needs logprobs: true", param="top_logprobs")
    if want:
        logprobs = top or 0
    key = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    max_tokens = None if body.get(key) is None else _int(body, key, 1, None)
    return ParsedRequest(
        "chat",
        _jobs(body, limits, [prompt], max_tokens, logprobs),
        bool(body.get("return_tokens_as_token_ids")),
        bool(body.get("return_token_ids")),
    )


def _common_checks(body: Mapping[str, Any], limits: Limits) -> None:
    model = body.get("model")
    if model is not None and model != limits.model:
        raise RequestError(
            f"The model `{model}` does not exist; this server serves `{limits.model}`",
            param="model", status=404, code="model_not_found",
        )  # fmt: skip
    if body.get("stream"):
        raise RequestError("streaming is not supported by mathforge serve", param="stream")
    for name, neutral in _NEUTRAL.items():
        if name in body and body[name] not in neutral:
            raise RequestError(f"{name} is not supported by mathforge serve", param=name)


def _jobs(
    body: Mapping[str, Any],
    limits: Limits,
    prompts: list[list[int]],
    max_tokens: int | None,
    logprobs: int | None,
) -> list[Job]:
    n = _int(body, "n", 1, limits.max_n, default=1)
    temperature = _number(body, "temperature", 1.0)
    if temperature < 0:
        raise RequestError(f"temperature must be >= 0, got {temperature}", param="temperature")
    top_p = _number(body, "top_p", 1.0)
    if not 0.0 < top_p <= 1.0:
        raise RequestError(f"top_p must be in (0, 1], got {top_p}", param="top_p")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise RequestError("seed must be an integer", param="seed")
    stop = _stop(body.get("stop"))
    for i, ids in enumerate(prompts):
        if not ids:
            raise RequestError(f"prompt {i} is empty", param="prompt")
        bad = [t for t in ids if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < limits.vocab]
        if bad:
            raise RequestError(
                f"prompt {i} holds token ids outside the vocabulary [0, {limits.vocab}): {bad[:5]}",
                param="prompt",
            )
        if len(ids) > limits.context:
            raise RequestError(
                f"This model's maximum context length is {limits.context} tokens; the prompt has {len(ids)} "
                "tokens. Please shorten the prompt.",
                param="prompt", code="context_length_exceeded",
            )  # fmt: skip
    return [Job(list(ids), n, max_tokens, temperature, top_p, stop, seed, logprobs) for ids in prompts]


def _prompts(value: Any) -> list[str | list[int]]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value:
        if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return [list(value)]
        if all(isinstance(v, str) for v in value):
            return list(value)
        if all(isinstance(v, list) for v in value):
            return [list(v) for v in value]
    raise RequestError(
        "prompt must be a string, a list of strings, a list of token ids or a list of such lists",
        param="prompt",
    )


def _content(value: Any, i: int) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(p, Mapping) and p.get("type") == "text" for p in value):
        return "".join(str(p.get("text", "")) for p in value)
    raise RequestError(f"messages[{i}].content must be a string or a list of text parts", param="messages")


def _stop(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
        raise RequestError("stop must be a non-empty string or a list of them", param="stop")
    if len(stops) > MAX_STOP_STRINGS:
        raise RequestError(f"at most {MAX_STOP_STRINGS} stop strings", param="stop")
    return tuple(dict.fromkeys(stops))


def _int(body: Mapping[str, Any], name: str, low: int, high: int | None, default: int | None = None) -> int:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestError(f"{name} must be an integer, got {value!r}", param=name)
    if value < low or (high is not None and value > high):
        bounds = f">= {low}" if high is None else f"between {low} and {high}"
        raise RequestError(f"{name} must be {bounds}, got {value}", param=name)
    return value


def _number(body: Mapping[str, Any], name: str, default: float) -> float:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise RequestError(f"{name} must be a finite number, got {value!r}", param=name)
    return float(value)


# -- responses ---------------------------------------------------------------------------------------


def completion_response(
    request: ParsedRequest,
    results: Sequence[Sequence[Sample]],
    limits: Limits,
    token_str: Callable[[int], str],
) -> dict[str, Any]:
    """The /v1/completions response: choice i·n + j is sample j of prompt i."""
    choices = []
    for i, (job, samples) in enumerate(zip(request.jobs, results, strict=True)):
        for j, sample in enumerate(samples):
            choice: dict[str, Any] = {
                "index": i * job.n + j, "text": sample.text, "finish_reason": sample.finish_reason,
                "stop_reason": sample.stop_reason, "logprobs": None,
            }  # fmt: skip
            if job.logprobs is not None:
                tokens = [_token(t, request.tokens_as_ids, token_str) for t in sample.token_ids]
                offsets, at = [], 0
                for token in tokens:
                    offsets.append(at)
                    at += len(token)
                choice["logprobs"] = {
                    "tokens": tokens,
                    "token_logprobs": sample.logprobs,
                    "top_logprobs": [
                        {_token(t, request.tokens_as_ids, token_str): v for t, v in row}
                        for row in sample.top or []
                    ],
                    "text_offset": offsets,
                }
            if request.return_token_ids:
                choice["prompt_token_ids"] = job.prompt_ids
                choice["token_ids"] = sample.token_ids
            choices.append(choice)
    return _envelope("cmpl", "text_completion", request, results, limits, choices)


def chat_response(
    request: ParsedRequest,
    results: Sequence[Sequence[Sample]],
    limits: Limits,
    token_str: Callable[[int], str],
) -> dict[str, Any]:
    """The /v1/chat/completions response (one conversation, its n choices)."""
    (job,) = request.jobs
    choices = []
    for j, sample in enumerate(results[0]):
        choice: dict[str, Any] = {
            "index": j, "message": {"role": "assistant", "content": sample.text},
            "finish_reason": sample.finish_reason, "stop_reason": sample.stop_reason, "logprobs": None,
        }  # fmt: skip
        if job.logprobs is not None:
            content = []
            for k, token_id in enumerate(sample.token_ids):
                token = _token(token_id, request.tokens_as_ids, token_str)
                top = (sample.top or [[]] * len(sample.token_ids))[k]
                content.append({
                    "token": token, "logprob": (sample.logprobs or [0.0] * (k + 1))[k],
                    "bytes": list(token.encode()),
                    "top_logprobs": [
                        {"token": (s := _token(t, request.tokens_as_ids, token_str)), "logprob": v,
                         "bytes": list(s.encode())}
                        for t, v in top
                    ],
                })  # fmt: skip
            choice["logprobs"] = {"content": content}
        if request.return_token_ids:
            choice["prompt_token_ids"] = job.prompt_ids
            choice["token_ids"] = sample.token_ids
        choices.append(choice)
    return _envelope("chatcmpl", "chat.completion", request, results, limits, choices)


def _token(token_id: int, as_id: bool, token_str: Callable[[int], str]) -> str:
    return f"token_id:{token_id}" if as_id else token_str(token_id)


def _envelope(
    prefix: str,
    kind: str,
    request: ParsedRequest,
    results: Sequence[Sequence[Sample]],
    limits: Limits,
    choices: list[dict[str, Any]],
) -> dict[str, Any]:
    prompt_tokens = sum(len(job.prompt_ids) for job in request.jobs)
    completion_tokens = sum(len(s.token_ids) for samples in results for s in samples)
    return {
        "id": f"{prefix}-{uuid.uuid4().hex}",
        "object": kind,
        "created": int(time.time()),
        "model": limits.model,
        "choices": choices,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }
