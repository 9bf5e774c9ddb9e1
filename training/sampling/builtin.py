"""The in-process engine: `generate()` (KV cache, batched, left-padded) through the model as training holds it.

It is the one GRPO and on-policy distillation use: their rollouts must come from the very weights being
trained, through the DDP/FSDP2 wrapper (under FSDP2 every forward is a collective the ranks run in step), so
they never leave the process. `eval`, `distill traces` and `generate` use it unless given `--server`.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from contextlib import nullcontext
from typing import Any

import torch
from tokenizers import Tokenizer
from torch import nn

from training.distributed import unwrap
from training.models.generation import generate
from training.models.prompts import PromptTemplate
from training.models.tokenizer import encode_prompt, n_token_ids, special_ids, stop_token_ids
from training.sampling.interface import Completion, Prompt, Sampler, SamplingParams, cut_at_stop_strings


class BuiltinSampler(Sampler):
    """Samples with `generate()`; one call is one batch of len(prompts) × n rows. `generator` (shared with the
    caller, e.g. checkpointed by GRPO) is the engine's own random stream."""

    name = "builtin"

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Tokenizer,
        template: PromptTemplate,
        *,
        generator: torch.Generator | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.model, self.tokenizer, self.template = model, tokenizer, template
        inner = unwrap(model)
        self.device = inner.embed.weight.device
        self.max_context = inner.cfg.max_seq_len
        self.stop_ids = stop_token_ids(tokenizer, template.stop_strings())
        self.pad_id = special_ids(tokenizer).pad
        self.vocab_size = n_token_ids(tokenizer)
        self.generator = (
            generator if generator is not None else torch.Generator(device=self.device).manual_seed(seed)
        )

    def encode(self, prompt: Prompt) -> list[int]:
        """Token ids as given, or text framed as in training (a chat rendering holds its special tokens)."""
        if isinstance(prompt, str):
            return encode_prompt(self.tokenizer, prompt, self.template.renders_special_tokens)
        return list(prompt)

    def decode(self, tokens: Sequence[int], stop_ids: Collection[int] | None = None) -> str:
        stops = self.stop_ids if stop_ids is None else stop_ids
        return self.tokenizer.decode([t for t in tokens if t not in stops], skip_special_tokens=False)

    def reseed(self, seed: int) -> None:
        self.generator.manual_seed(seed)

    def sample(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[list[Completion]]:
        ids = [self.encode(p) for p in prompts]
        if not ids:
            return []
        stop_ids = set(self.stop_ids)
        for text in params.stop:  # a stop string that is one token also ends generation early
            token = self.tokenizer.token_to_id(text)
            if token is not None:
                stop_ids.add(token)
        generator = self.generator
        if params.seed is not None:
            generator = torch.Generator(device=self.device).manual_seed(params.seed)
        autocast: Any = (
            torch.autocast("cuda", dtype=torch.bfloat16) if self.device.type == "cuda" else nullcontext()
        )
        with autocast:
            out = generate(
                self.model, [p for p in ids for _ in range(params.n)], params.max_new_tokens,
                temperature=params.temperature, top_p=params.top_p, stop_ids=stop_ids, pad_id=self.pad_id,
                generator=generator, vocab_size=self.vocab_size, top_k_logprobs=params.top_logprobs,
                logprob_temperature=params.logprob_temperature,
            )  # fmt: skip
        rows = []
        for j, tokens in enumerate(out.tokens):
            completion = Completion(
                self.decode(tokens, stop_ids),
                list(tokens),
                "length" if out.truncated[j] else "stop",
                list(out.logprobs[j]),
                out.top_ids[j] if out.top_ids is not None else None,
                out.top_logprobs[j] if out.top_logprobs is not None else None,
            )
            rows.append(self.cut_at_stop(completion, params.stop, stop_ids)[0])
        return [rows[i * params.n : (i + 1) * params.n] for i in range(len(ids))]

    def cut_at_stop(
        self, completion: Completion, stops: Sequence[str], stop_ids: Collection[int] | None = None
    ) -> tuple[Completion, str | None]:
        """A completion cut at the first stop string in its text: the text before it, the shortest token
        prefix whose text holds it (and the log-probs of those tokens), finish reason "stop"; and which stop
        string it was (None: none occurs, the completion is returned as it is)."""
        hit = cut_at_stop_strings(completion.text, stops)
        if hit.stop is None or completion.token_ids is None:
            return completion, None
        tokens = completion.token_ids
        keep = next(
            (k for k in range(1, len(tokens) + 1) if hit.stop in self.decode(tokens[:k], stop_ids)),
            len(tokens),
        )

        def cut(values: Any) -> Any:
            return None if values is None else values[:keep]

        cut_completion = Completion(
            hit.text, tokens[:keep], "stop", cut(completion.logprobs), cut(completion.top_ids),
            cut(completion.top_logprobs),
        )  # fmt: skip
        return cut_completion, hit.stop
