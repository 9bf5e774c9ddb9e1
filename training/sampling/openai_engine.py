"""The HTTP engine: any OpenAI-compatible server (vLLM, SGLang, TGI, `mathforge serve`) through the official
`openai` client, `/v1/completions` with the prompt rendered here (token ids when the tokenizers agree, else
text), so the server sees exactly the prompt the in-process engine would.

- Many requests in flight: one request per prompt (its n samples together), `concurrency` at a time.
- The client's own retries are off; a request is retried here with exponential backoff and jitter on 408,
  409, 429, 5xx, timeouts and connection errors, honouring Retry-After; each attempt has a timeout. A request
  that still fails comes back as failed completions with the reason and is counted (`failed_requests`):
  callers report it, never score it as a wrong answer.
- Token ids and log-probs come from the server where it returns them: vLLM's `return_token_ids` (the
  completion's ids) and `return_tokens_as_token_ids` (log-prob tokens as "token_id:N"), which `mathforge
  serve` mirrors. They mean something only when the server's tokenizer is ours: `check_tokenizer` compares
  the vocabulary digest a `mathforge serve` advertises, or the server's `/tokenize` of probe texts with ours.
"""

from __future__ import annotations

import email.utils
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import numpy as np
from tokenizers import Tokenizer

from training.models.prompts import PromptTemplate
from training.models.tokenizer import special_ids, vocabulary_digest
from training.sampling.interface import Completion, Prompt, Sampler, SamplingParams, failed_completion

log = logging.getLogger(__name__)

T = TypeVar("T")

RETRY_STATUS = frozenset({408, 409, 429})
TOKEN_ID_PREFIX = "token_id:"
# Texts whose tokenization shows a tokenizer apart: digits, LaTeX, whitespace runs, unicode, reasoning tags.
PROBE_TEXTS = (
    "Let x = 12. Then x^2 = 144 and \\frac{x}{2} = 6, so the answer is \\boxed{144}.",
    "  two spaces,\ttabs\n\nand newlines  ",
    "unicode: é ü ß 中文 ∑ √2 ≤ π → ∞",
    "<think> reasoning </think> The answer is 7.",
)


def api_base(url: str) -> str:
    """The client's base URL (…/v1) from a server address given with or without /v1."""
    url = url.rstrip("/")
    return url if url.endswith("/v1") else url + "/v1"


def retry_after(headers: Any) -> float | None:
    """Seconds a Retry-After (or retry-after-ms) header asks to wait, if it says."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, (when - datetime.now(UTC)).total_seconds())


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Exponential backoff with equal jitter: half of min(cap, base·2^attempt) plus up to as much again."""
    ceiling = min(cap, base * 2**attempt)
    return ceiling / 2 + rng.uniform(0.0, ceiling / 2)


@dataclass(frozen=True)
class Agreement:
    """Whether the server tokenizes as we do: "agree", "differ" or "unknown" (the server cannot say)."""

    status: str
    detail: str

    @property
    def agrees(self) -> bool:
        return self.status == "agree"


class OpenAISampler(Sampler):
    """Samples through an OpenAI-compatible server. `tokenizer`/`template` are the local model's (its stop
    strings are sent; its tokenizer is compared with the server's)."""

    name = "openai"

    def __init__(
        self,
        url: str,
        *,
        model: str = "",
        tokenizer: Tokenizer | None = None,
        template: PromptTemplate | None = None,
        concurrency: int = 8,
        timeout: float = 600.0,
        max_retries: int = 6,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        api_key: str | None = None,
        seed: int = 0,
    ) -> None:
        import openai

        super().__init__()
        if concurrency < 1 or max_retries < 0 or not timeout > 0:
            raise ValueError("concurrency must be >= 1, max_retries >= 0 and the timeout > 0")
        self.url, self.tokenizer, self.template = url, tokenizer, template
        self.max_retries, self.backoff, self.max_backoff = max_retries, backoff, max_backoff
        self.timeout = timeout
        self.client = openai.OpenAI(
            base_url=api_base(url),
            api_key=api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY",
            max_retries=0,
            timeout=timeout,
        )
        self._rng = random.Random()
        self._lock = threading.Lock()
        self._seed, self._drawn = seed, 0
        self.card = self._find_model(model)
        self.model = str(self.card["id"])
        context = self.card.get("max_model_len")
        self.max_context = int(context) if isinstance(context, int) else None
        # `mathforge serve` gives each row what the in-process engine would (its prompt's room, context + 1
        # minus the prompt); other servers want prompt + max_tokens <= max_model_len.
        self.clamps_itself = self.card.get("owned_by") == "mathforge"
        self.agreement: Agreement | None = None
        self._decoded: dict[str, int] | None = None
        self.pool = ThreadPoolExecutor(concurrency, thread_name_prefix="openai-sampler")
        log.info(
            "sampling through %s, model %s (max_model_len %s)", api_base(url), self.model, self.max_context
        )

    # -- set-up -----------------------------------------------------------------------------------------

    def _find_model(self, wanted: str) -> dict[str, Any]:
        page = self._call(lambda: self.client.models.list(), "GET /v1/models")
        cards = [{"id": m.id, **(m.model_extra or {}), "owned_by": m.owned_by} for m in page.data]
        names = [c["id"] for c in cards]
        if wanted:
            for card in cards:
                if card["id"] == wanted:
                    return card
            raise ValueError(f"{self.url} serves {names}, not {wanted!r} (--server-model)")
        if len(cards) != 1:
            raise ValueError(f"{self.url} serves {names}: name one with --server-model")
        return cards[0]

    def check_tokenizer(self, use_card: bool = True) -> Agreement:
        """Compare the server's tokenizer with ours (once; see the module docstring)."""
        if self.tokenizer is None:
            raise ValueError("check_tokenizer needs the local tokenizer")
        tokenizer = self.tokenizer
        if use_card and isinstance(self.card.get("tokenizer_sha"), str):
            ours = vocabulary_digest(tokenizer)
            same = self.card["tokenizer_sha"] == ours
            self.agreement = Agreement(
                "agree" if same else "differ",
                f"vocabulary digest: server {self.card['tokenizer_sha'][:12]}, local {ours[:12]}",
            )
            return self.agreement
        probes = list(PROBE_TEXTS)
        specials = special_ids(tokenizer)
        probes += [t for t in {tokenizer.id_to_token(specials.bos), tokenizer.id_to_token(specials.eos)} if t]
        if self.template is not None:
            probes += [s for s in self.template.stop_strings() if s]
        import httpx

        for text in probes:
            try:
                theirs = self._tokenize(text)
            except httpx.HTTPError as err:
                self.agreement = Agreement("unknown", f"the server's /tokenize failed: {err}")
                return self.agreement
            if theirs is None:
                self.agreement = Agreement("unknown", "the server offers no /tokenize endpoint")
                return self.agreement
            ours_ids = tokenizer.encode(text, add_special_tokens=False).ids
            if theirs != ours_ids:
                self.agreement = Agreement(
                    "differ", f"{text!r}: server ids {theirs[:12]}…, local ids {ours_ids[:12]}…"
                )
                return self.agreement
        self.agreement = Agreement("agree", f"{len(probes)} probe texts tokenized alike (/tokenize)")
        return self.agreement

    def _tokenize(self, text: str) -> list[int] | None:
        """The server's token ids of `text` without added special tokens (vLLM's /tokenize; None if absent)."""
        import httpx

        root = api_base(self.url)[: -len("/v1")]
        body = {"model": self.model, "prompt": text, "add_special_tokens": False}
        for path in ("/tokenize", "/v1/tokenize"):
            response = self._call(
                lambda path=path: httpx.post(root + path, json=body, timeout=self.timeout), f"POST {path}"
            )
            if response.status_code in (404, 405):
                continue
            response.raise_for_status()
            tokens = response.json().get("tokens")
            return [int(t) for t in tokens] if isinstance(tokens, list) else None
        return None

    @property
    def accepts_token_ids(self) -> bool:
        """Prompts may go as token ids only when the server's tokenizer is known to be ours."""
        return self.agreement is not None and self.agreement.agrees

    def reseed(self, seed: int) -> None:
        with self._lock:
            self._seed, self._drawn = seed, 0

    def describe(self) -> dict[str, object]:
        agreement = self.agreement.status if self.agreement else "unchecked"
        return {"engine": self.name, "server": self.url, "model": self.model, "tokenizer": agreement,
                "max_model_len": self.max_context}  # fmt: skip

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        self.client.close()

    # -- sampling ---------------------------------------------------------------------------------------

    def sample(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[list[Completion]]:
        if params.top_logprobs and params.logprob_temperature != 1.0:
            raise ValueError(
                "a server reports log-probs of the model's own distribution (temperature 1): use a log-prob "
                f"temperature of 1 with --server, not {params.logprob_temperature}"
            )
        stops = list(dict.fromkeys([*(self.template.stop_strings() if self.template else []), *params.stop]))
        seeds: list[int | None] = [None] * len(prompts)
        if params.temperature > 0:
            with self._lock:
                if params.seed is not None:
                    seeds = [(params.seed + i) % 2**31 for i in range(len(prompts))]
                else:  # the engine's own stream: fixed by reseed() and the order of the requests
                    seeds = [(self._seed * 1_000_003 + self._drawn + i) % 2**31 for i in range(len(prompts))]
                    self._drawn += len(prompts)
        futures = [
            self.pool.submit(self._request, prompt, params, stops, seed)
            for prompt, seed in zip(prompts, seeds, strict=True)
        ]
        return [future.result() for future in futures]

    def _request(
        self, prompt: Prompt, params: SamplingParams, stops: list[str], seed: int | None
    ) -> list[Completion]:
        body: dict[str, Any] = {
            "model": self.model,
            "prompt": prompt if isinstance(prompt, str) else list(prompt),
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "n": params.n,
            "logprobs": params.top_logprobs,
            "extra_body": {"return_token_ids": True, "return_tokens_as_token_ids": True},
        }
        if stops:
            body["stop"] = stops
        if seed is not None:
            body["seed"] = seed
        if not isinstance(prompt, str) and self.max_context and not self.clamps_itself:
            room = self.max_context - len(prompt)
            if room < 1:
                return [
                    failed_completion(f"the prompt of {len(prompt)} tokens fills the server's context")
                ] * (params.n)
            body["max_tokens"] = min(params.max_new_tokens, room)
        self._count("requests")
        try:
            response = self._call(lambda: self.client.completions.create(**body), "POST /v1/completions")
        except Exception as exc:  # every failure is reported, none is fatal to the run
            reason = _describe_error(exc)
            self._count("failed_requests")
            log.warning("request failed for good: %s", reason)
            return [failed_completion(reason)] * params.n
        choices = sorted(response.choices, key=lambda c: c.index)
        if len(choices) != params.n:
            self._count("failed_requests")
            return [
                failed_completion(f"the server returned {len(choices)} choices for n={params.n}")
            ] * params.n
        return [self._completion(choice, params) for choice in choices]

    def _completion(self, choice: Any, params: SamplingParams) -> Completion:
        extra = choice.model_extra or {}
        finish = choice.finish_reason
        if finish not in ("stop", "length"):
            self._count("failed_completions")
            return failed_completion(f"the server finished a completion with {finish!r}")
        lp = choice.logprobs
        token_ids = extra.get("token_ids")
        if token_ids is None and lp is not None and lp.tokens and all(_is_id(t) for t in lp.tokens):
            token_ids = [int(t[len(TOKEN_ID_PREFIX) :]) for t in lp.tokens]
        logprobs = [float(v) for v in lp.token_logprobs] if lp is not None and lp.token_logprobs else None
        completion = Completion(
            choice.text, list(token_ids) if token_ids is not None else None, finish, logprobs
        )
        if params.top_logprobs:
            try:
                completion.top_ids, completion.top_logprobs = self._top(lp, params.top_logprobs, token_ids)
            except ValueError as err:
                self._count("failed_completions")
                return failed_completion(str(err))
        return completion

    def _top(self, lp: Any, k: int, token_ids: list[int] | None) -> tuple[np.ndarray, np.ndarray]:
        """The server's top-K as [tokens, K] ids and log-probs, most likely first."""
        if lp is None or not lp.top_logprobs:
            raise ValueError("the server returned no top log-probs")
        if token_ids is not None and len(lp.top_logprobs) != len(token_ids):
            raise ValueError(f"{len(lp.top_logprobs)} top log-prob rows for {len(token_ids)} tokens")
        ids = np.zeros((len(lp.top_logprobs), k), dtype=np.int64)
        values = np.zeros((len(lp.top_logprobs), k), dtype=np.float32)
        for row, entries in enumerate(lp.top_logprobs):
            ranked = sorted((entries or {}).items(), key=lambda kv: -kv[1])[:k]
            if len(ranked) < k:
                raise ValueError(f"the server returned {len(ranked)} top log-probs at a token, {k} asked")
            for col, (token, value) in enumerate(ranked):
                ids[row, col] = self._token_id(token)
                values[row, col] = value
        return ids, values

    def _token_id(self, token: str) -> int:
        """A log-prob token's id: "token_id:N" as vLLM writes it on request, else the local token whose
        decoding it is (only when exactly one local token decodes so)."""
        if _is_id(token):
            return int(token[len(TOKEN_ID_PREFIX) :])
        if self.tokenizer is None:
            raise ValueError(f"cannot map the server's token {token!r} to an id without the local tokenizer")
        if self._decoded is None:
            table: dict[str, int] = {}
            clashes: set[str] = set()
            for i in range(self.tokenizer.get_vocab_size(with_added_tokens=True)):
                text = self.tokenizer.decode([i], skip_special_tokens=False)
                clashes.update({text} if text in table else set())
                table[text] = i
            self._decoded = {t: i for t, i in table.items() if t not in clashes}
        if token not in self._decoded:
            raise ValueError(f"the server's token {token!r} matches no single local token (ask the server for "
                             "token ids: vLLM's return_tokens_as_token_ids)")  # fmt: skip
        return self._decoded[token]

    # -- retries ----------------------------------------------------------------------------------------

    def _count(self, key: str) -> None:
        with self._lock:
            self.stats[key] += 1

    def _call(self, fn: Callable[[], T], what: str) -> T:
        """fn() with retries on transient failures (see the module docstring)."""
        import httpx
        import openai

        attempt = 0
        while True:
            wait: float | None = None
            try:
                result = fn()
                status = getattr(result, "status_code", None)  # plain httpx responses come back unraised
                if not (isinstance(status, int) and (status in RETRY_STATUS or status >= 500)):
                    return result
                reason, wait = f"HTTP {status}", retry_after(result.headers)  # type: ignore[attr-defined]
                if attempt >= self.max_retries:
                    return result
            except openai.APIStatusError as exc:
                retryable = exc.status_code in RETRY_STATUS or exc.status_code >= 500
                if not retryable or attempt >= self.max_retries:
                    raise
                reason, wait = f"HTTP {exc.status_code}", retry_after(exc.response.headers)
            except (openai.APIConnectionError, httpx.TransportError) as exc:  # timeouts included
                if attempt >= self.max_retries:
                    raise
                reason = type(exc).__name__
            delay = (
                wait
                if wait is not None
                else backoff_delay(attempt, self.backoff, self.max_backoff, self._rng)
            )
            self._count("retries")
            log.warning("%s: %s; retry %d of %d in %.2fs", what, reason, attempt + 1, self.max_retries, delay)
            time.sleep(delay)
            attempt += 1


def _is_id(token: str) -> bool:
    return token.startswith(TOKEN_ID_PREFIX) and token[len(TOKEN_ID_PREFIX) :].isdigit()


def _describe_error(exc: Exception) -> str:
    import openai

    if isinstance(exc, openai.APIStatusError):
        message = exc.message
        body = exc.body if isinstance(exc.body, dict) else None
        if body and isinstance(body.get("message"), str):
            message = body["message"]
        return f"HTTP {exc.status_code}: {message}"
    return f"{type(exc).__name__}: {exc}"


def server_sampler(
    engine: Any, tokenizer: Tokenizer, template: PromptTemplate, seed: int = 0
) -> OpenAISampler:
    """The HTTP engine as an `EngineConfig` (training/config.py) says, its tokenizer agreement checked."""
    sampler = OpenAISampler(
        engine.server, model=engine.server_model, tokenizer=tokenizer, template=template,
        concurrency=engine.concurrency, timeout=engine.request_timeout, max_retries=engine.max_retries,
        backoff=engine.retry_backoff, seed=seed,
    )  # fmt: skip
    agreement = sampler.check_tokenizer()
    (log.info if agreement.agrees else log.warning)(
        "tokenizer at %s: %s (%s)%s", engine.server, agreement.status, agreement.detail,
        "" if agreement.agrees else "; prompts go as text and the server's token ids are not trusted",
    )  # fmt: skip
    return sampler
