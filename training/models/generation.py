"""Sampling with a KV cache, per-token log-probabilities of completions, and MTP-drafted speculative decoding.

Batched prompts are left-padded: every row then writes the same cache slot at each step, and per-row RoPE
positions (counted from each row's first real token) make a padded row compute what it would alone. GRPO and
distillation call `generate` for rollouts and `completion_logprobs` (differentiable) for their losses.

The sampler allocates once: the KV cache and the valid-key mask hold prompt + budget slots for the rows
present (never max_seq_len), every step writes in place, and tokens and log-probs go to device buffers read
back at the end. Prompts are prefilled in chunks. Whether rows finished is read on the host only every few
steps (a sync on GPU); there, once enough rows are done, they leave the batch and the cache is compacted to
the rows and slots still needed. None of this changes what a row samples: it equals the row sampled alone.

`generate` and `completion_logprobs` take the model as training holds it (plain, DDP or FSDP2) and only ever
call its forward with a readout: FSDP2 gathers the shards there, and DDP synchronises the gradients of what its
forward produced. Under FSDP2 every forward is a collective, so the ranks of one `generate` call run the same
number of forwards whatever their prompts: they agree on the step budget and the prefill chunks (all-reduce
max), a rank with fewer chunks fills in with one-token dummy forwards, a rank whose rows are all done keeps
stepping with dummy forwards until every rank is done, and all ranks read "all done?" at the same steps.
Speculative decoding is an inference tool and takes the plain module.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from training.distributed import all_ranks_done, unwrap
from training.models.packed_linears import prepacked_linears
from training.models.transformer import KVCache, Logits, TokenLogprobs, Transformer

log = logging.getLogger(__name__)

# -- pure helpers ---------------------------------------------------------------------------------------


def attention_mask(start: int, q_len: int, valid_keys: torch.Tensor) -> torch.Tensor:
    """(B, 1, q_len, S) mask for queries at cache slots start..start+q_len-1 over keys 0..S-1.

    A query sees earlier valid keys and always itself, so that a padding query never has an all-masked row
    (which would make NaNs that then leak through the attention of later layers).
    """
    keys = torch.arange(valid_keys.shape[1], device=valid_keys.device)
    queries = torch.arange(start, start + q_len, device=valid_keys.device)
    causal = keys[None, :] <= queries[:, None]
    itself = keys[None, :] == queries[:, None]
    return ((causal[None] & valid_keys[:, None, :]) | itself[None]).unsqueeze(1)


def left_pad(
    prompts: Sequence[Sequence[int]], pad_id: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids (B, L) with the prompts right-aligned, and a (B, L) mask of real tokens."""
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token (for example BOS)")
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long, device=device)
    valid = torch.zeros((len(prompts), width), dtype=torch.bool, device=device)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt) :] = torch.tensor(list(prompt), dtype=torch.long, device=device)
        valid[row, width - len(prompt) :] = True
    return ids, valid


def _blocks(x: torch.Tensor, block: int, fill: float) -> torch.Tensor:
    """(B, V) as (B, ceil(V / block), block), the last block padded with `fill`."""
    rows, vocab = x.shape
    n = -(-vocab // block)
    if n * block != vocab:
        x = F.pad(x, (0, n * block - vocab), value=fill)
    return x.view(rows, n, block)


def row_argmax(logits: torch.Tensor, block: int = 256) -> torch.Tensor:
    """`logits.argmax(-1)` of (B, V) logits, the same ids (the first of equal maxima): on CPU through the maxima
    of blocks of `block` ids, because argmax, unlike amax, is not vectorised there (6x slower at 32k ids)."""
    if logits.device.type != "cpu" or logits.dim() != 2 or logits.shape[1] < 4 * block:
        return logits.argmax(dim=-1)
    blocks = _blocks(logits, block, float("-inf"))
    best = blocks.amax(dim=-1).argmax(dim=-1)  # the first block holding the maximum
    inner = blocks[torch.arange(len(blocks), device=logits.device), best].argmax(dim=-1)
    return best * block + inner


def draw(probs: torch.Tensor, generator: torch.Generator | None = None, block: int = 256) -> torch.Tensor:
    """One id per row of (B, V) probabilities (not necessarily normalised). On CPU by inverting the cumulative
    distribution in float64, per block of ids and then inside the block drawn (one uniform number per row):
    torch.multinomial is 30x slower there at 32k ids. Ids of probability 0 are never drawn."""
    if probs.device.type != "cpu" or probs.dim() != 2:
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
    blocks = _blocks(probs, block, 0.0)
    rows = torch.arange(len(blocks), device=probs.device)
    mass = blocks.sum(dim=-1, dtype=torch.float64)
    cdf = mass.cumsum(dim=-1)
    u = torch.rand((len(blocks), 1), generator=generator, dtype=torch.float64) * cdf[:, -1:]
    which = torch.searchsorted(cdf, u, right=True).clamp(max=blocks.shape[1] - 1)  # a block of mass > 0
    rest = u - (cdf.gather(-1, which) - mass.gather(-1, which))
    inner = blocks[rows, which[:, 0]]
    pick = torch.searchsorted(inner.double().cumsum(dim=-1), rest, right=True)[:, 0]
    last = block - 1 - (inner > 0).flip(-1).to(torch.uint8).argmax(dim=-1)  # rounding never picks a zero
    return which[:, 0] * block + torch.minimum(pick, last)


def _nucleus(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Probabilities kept on the smallest set of most likely ids whose mass reaches top_p (not renormalised).
    On CPU the most likely 1024 ids are sorted first (a partial sort), and all only where they do not hold
    the set: sorting 32k ids per row costs more than the decode step."""
    vocab = probs.shape[-1]
    top, order = None, None
    if probs.device.type == "cpu" and vocab > 2048:
        top, order = probs.topk(1024, dim=-1)
        if not bool((top.sum(dim=-1) >= top_p).all()):
            top, order = None, None
    if top is None or order is None:
        top, order = probs.sort(dim=-1, descending=True)
    before = top.cumsum(dim=-1) - top  # mass of strictly more likely tokens
    return torch.zeros_like(probs).scatter(-1, order, torch.where(before < top_p, top, 0.0))


def sample_next(
    logits: torch.Tensor,
    temperature: float,
    top_p: float,
    generator: torch.Generator | None = None,
    *,
    with_logprobs: bool = False,
) -> Any:
    """One token per row: greedy at temperature 0, else from the smallest set of tokens with mass >= top_p.

    with_logprobs: also each token's log-probability under the (renormalised) distribution it was drawn
    from, which is what an off-policy correction needs (0 for greedy picks)."""
    if temperature <= 0:
        token = row_argmax(logits)
        return (token, torch.zeros(token.shape, device=token.device)) if with_logprobs else token
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1.0:
        probs = _nucleus(probs, top_p)
        probs = probs / probs.sum(dim=-1, keepdim=True)
    token = draw(probs, generator)
    if not with_logprobs:
        return token
    return token, probs.gather(-1, token[:, None]).squeeze(-1).log()


def mask_padded_vocab(logits: torch.Tensor, vocab_size: int | None) -> torch.Tensor:
    """Logits with the head rows past the tokenizer's `vocab_size` set to -inf: models pad their embedding
    matrix (Qwen2.5: 151,936 tokens, 152,064 rows), and a sampled padding id decodes to nothing."""
    if vocab_size is None or vocab_size >= logits.shape[-1]:
        return logits
    padded = torch.arange(logits.shape[-1], device=logits.device) >= vocab_size
    return logits.masked_fill(padded, float("-inf"))


def _fsdp_collective(model: nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule) and dist.is_initialized()


def _agreed_max(values: list[int], model: nn.Module) -> list[int]:
    """The most of each count (steps, prefill chunks) any rank needs: one all-reduce max under FSDP2, where
    each forward is a collective; elsewhere the rank's own."""
    if not _fsdp_collective(model):
        return values
    agreed = torch.tensor(values, device=unwrap(model).embed.weight.device)
    dist.all_reduce(agreed, op=dist.ReduceOp.MAX)
    return agreed.tolist()


def _truncate_at_stop(tokens: list[int], stop_ids: Collection[int]) -> list[int]:
    for i, token in enumerate(tokens):
        if token in stop_ids:
            return tokens[: i + 1]
    return tokens


# -- generation -----------------------------------------------------------------------------------------


@dataclass
class SamplerStats:
    """What one `generate` call did: forwards with real rows and dummy forwards (FSDP2 lock-step), batch
    compactions, and the KV cache's allocated elements after allocation and after each compaction."""

    forwards: int = 0
    dummy_forwards: int = 0
    compactions: int = 0
    cache_elements: list[int] = field(default_factory=list)


@dataclass
class Generation:
    """Sampled completions (new tokens only, up to and including the first stop token) and, per token, its
    log-probability under the distribution it was sampled from (after temperature and top-p; 0 when greedy).
    `truncated[i]`: completion i was cut off by the length limit (finish reason "length", no stop token)."""

    tokens: list[list[int]]
    logprobs: list[list[float]]
    # with top_k_logprobs: per completion, the K most likely ids and their log-probs at each token, [len, K]
    top_ids: list[np.ndarray] | None = None
    top_logprobs: list[np.ndarray] | None = None
    truncated: list[bool] = field(default_factory=list)
    stats: SamplerStats | None = None


def _skip_head(model: Transformer, normed: torch.Tensor) -> None:
    """The readout of forwards whose logits nobody reads (prefill chunks before the last, dummy forwards)."""
    return None


def _decode_logits(
    model: nn.Module, token: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor, cache: KVCache
) -> torch.Tensor:
    """One decode step: the (B,) fed tokens at (B,) positions to (B, vocab) logits."""
    return model(
        token[:, None], positions=positions[:, None], mask=mask, cache=cache, readout=Logits(last_only=True)
    )[:, -1]


@functools.cache
def _compiled_decode(backend: str) -> Callable[..., torch.Tensor]:
    return torch.compile(_decode_logits, backend=backend)


def _decode_fn(model: nn.Module, compile_decode: bool | str, device: torch.device) -> Callable | None:
    """The compiled decode step, or None (eager): `True` compiles with inductor on CUDA only (on CPU it is
    ignored, so that it never breaks a CPU run); a backend name compiles with it anywhere (tests use "eager").
    A DDP or FSDP2 wrapper always decodes eagerly: its hooks are what keep ranks in step."""
    if not compile_decode:
        return None
    if unwrap(model) is not model:
        log.warning("compile_decode ignored: the model is wrapped (%s)", type(model).__name__)
        return None
    if compile_decode is True:
        if device.type != "cuda":
            log.info("compile_decode ignored on %s (inductor decode is for CUDA)", device.type)
            return None
        return _compiled_decode("inductor")
    return _compiled_decode(compile_decode)


class _Rows:
    """The rows still in the batch (compaction drops finished ones): their index in the caller's batch, prompt
    length, token budget, whether they finished, and the token each feeds next."""

    def __init__(self, lengths: list[int], limits: list[int], device: torch.device) -> None:
        self.index = torch.arange(len(lengths), device=device)
        self.lengths_list, self.limits_list = lengths, limits
        self.lengths = torch.tensor(lengths, device=device)
        self.limits = torch.tensor(limits, device=device)
        self.finished = torch.zeros(len(lengths), dtype=torch.bool, device=device)
        self.token = torch.zeros(len(lengths), dtype=torch.long, device=device)

    def keep(self, rows: list[int]) -> torch.Tensor:
        picked = torch.tensor(rows, device=self.index.device)
        for name in ("index", "lengths", "limits", "finished", "token"):
            setattr(self, name, getattr(self, name).index_select(0, picked))
        self.lengths_list = [self.lengths_list[r] for r in rows]
        self.limits_list = [self.limits_list[r] for r in rows]
        return picked


@torch.no_grad()
def generate(
    model: nn.Module,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    top_p: float = 1.0,
    stop_ids: Collection[int] = (),
    pad_id: int = 0,
    use_cache: bool = True,
    generator: torch.Generator | None = None,
    vocab_size: int | None = None,
    top_k_logprobs: int = 0,
    logprob_temperature: float = 1.0,
    prefill_chunk: int = 512,
    check_every: int = 0,
    compact_below: float = 0.75,
    compile_decode: bool | str = False,
    cpu_prepack: bool = True,
) -> Generation:
    """Batched sampling with the KV cache through the model's forward (plain, DDP or FSDP2): the completions
    and their sampling log-probabilities.

    Each row gets `max_new_tokens` at most, fewer where its prompt leaves less room in the model's context
    (a long prompt no longer shortens its batch-mates' budget); a prompt longer than the context is an error.
    Under FSDP2 the ranks stay in step whatever their prompts and budgets (see the module docstring).

    `vocab_size` (the tokenizer's) keeps padded embedding rows out of the distribution; `top_k_logprobs` K
    also returns, per token, the K most likely ids under softmax(logits / logprob_temperature) and their
    log-probs (what offline distillation stores).

    Speed and memory (none changes what is sampled, beyond float rounding): prompts are prefilled `prefill_chunk` columns per
    forward; whether rows finished is read on the host every `check_every` steps (0: every step on CPU, every
    8 on GPU, where each read is a sync), and when at most `compact_below` of the batch is unfinished the
    finished rows leave it (their KV cache too, and the slots no remaining row needs); `compile_decode`
    compiles the one-token step (see `_decode_fn`); `cpu_prepack` runs a plain CPU model's fp32 linears on
    oneDNN-packed copies of the weights (see `training.models.packed_linears`; equal up to float rounding,
    at the cost of a second copy of the weights during the call)."""
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be positive, got {max_new_tokens}")
    if prefill_chunk < 1 or check_every < 0 or not 0.0 <= compact_below <= 1.0:
        raise ValueError(
            f"need prefill_chunk >= 1, check_every >= 0 and compact_below in [0, 1]; got {prefill_chunk}, "
            f"{check_every}, {compact_below}"
        )
    if temperature > 0 and not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    inner = unwrap(model)
    device = inner.embed.weight.device
    ids, valid = left_pad(prompts, pad_id, device)
    batch, width = ids.shape
    context = inner.cfg.max_seq_len
    if width > context:
        raise ValueError(f"a prompt of {width} tokens exceeds the model's max_seq_len {context}")
    lengths = [len(p) for p in prompts]
    limits = [min(max_new_tokens, context + 1 - n) for n in lengths]  # the last token is sampled, never fed
    own_steps = max(limits)
    sampler = _Sampler(
        batch, own_steps, device, temperature, top_p, stop_ids, pad_id, generator, vocab_size,
        top_k_logprobs, logprob_temperature,
    )  # fmt: skip
    if not use_cache:
        _recompute_loop(model, ids, valid, lengths, limits, sampler)
    else:
        check = check_every or (1 if device.type == "cpu" else 8)
        decode = _decode_fn(model, compile_decode, device)
        # packing costs about a forward's worth of weight traffic: worth it from a few decode steps on
        prepack = cpu_prepack and decode is None and unwrap(model) is model and own_steps > 4
        with prepacked_linears(model, batch) if prepack else contextlib.nullcontext():
            _cached_loop(
                model, ids, valid, lengths, limits, sampler, prefill_chunk, check, compact_below, decode
            )
    return sampler.result(limits, stop_ids)


class _Sampler:
    """Draws each step's tokens for the rows in the batch and records them by their row in the caller's batch,
    in buffers on the device (read back once, at the end)."""

    def __init__(
        self,
        batch: int,
        steps: int,
        device: torch.device,
        temperature: float,
        top_p: float,
        stop_ids: Collection[int],
        pad_id: int,
        generator: torch.Generator | None,
        vocab_size: int | None,
        top_k: int,
        logprob_temperature: float,
    ) -> None:
        self.temperature, self.top_p, self.pad_id, self.generator = temperature, top_p, pad_id, generator
        self.vocab_size, self.top_k, self.logprob_temperature = vocab_size, top_k, logprob_temperature
        self.stops = torch.tensor(sorted(stop_ids), dtype=torch.long, device=device)
        self.tokens = torch.full((steps, batch), pad_id, dtype=torch.long, device=device)
        self.logprobs = torch.zeros((steps, batch), dtype=torch.float32, device=device)
        self.top_ids = torch.zeros((steps, batch, top_k), dtype=torch.long, device=device)
        self.top_values = torch.zeros((steps, batch, top_k), dtype=torch.float32, device=device)
        self.taken = 0
        self.stats = SamplerStats()

    def step(self, logits: torch.Tensor, rows: _Rows) -> None:
        """Token `taken` of every row from its (rows, vocab) logits; finished rows get padding."""
        step = self.taken
        last = mask_padded_vocab(logits, self.vocab_size)
        if self.top_k:
            top = torch.log_softmax(last.float() / self.logprob_temperature, dim=-1).topk(self.top_k)
            self.top_ids[step].index_copy_(0, rows.index, top.indices)
            self.top_values[step].index_copy_(0, rows.index, top.values)
        token, logprob = sample_next(last, self.temperature, self.top_p, self.generator, with_logprobs=True)
        token = torch.where(rows.finished, self.pad_id, token)
        self.tokens[step].index_copy_(0, rows.index, token)
        self.logprobs[step].index_copy_(0, rows.index, torch.where(rows.finished, 0.0, logprob.float()))
        self.taken += 1
        rows.finished |= torch.isin(token, self.stops) | (rows.limits <= self.taken)
        rows.token = token

    def result(self, limits: list[int], stop_ids: Collection[int]) -> Generation:
        cut = [min(n, self.taken) for n in limits]
        tokens = [
            _truncate_at_stop(row[:n], stop_ids) for row, n in zip(self.tokens.T.tolist(), cut, strict=True)
        ]
        logprobs = [row[: len(t)] for row, t in zip(self.logprobs.T.tolist(), tokens, strict=True)]
        truncated = [not (t and t[-1] in stop_ids) for t in tokens]
        if not self.top_k:
            return Generation(tokens, logprobs, truncated=truncated, stats=self.stats)
        top_ids = self.top_ids.transpose(0, 1).cpu().numpy()  # [B, steps, K]
        top_values = self.top_values.transpose(0, 1).cpu().numpy()
        return Generation(
            tokens,
            logprobs,
            [top_ids[row, : len(t)] for row, t in enumerate(tokens)],
            [top_values[row, : len(t)] for row, t in enumerate(tokens)],
            truncated,
            self.stats,
        )


def _dummy_forward(model: nn.Module, ids: torch.Tensor, sampler: _Sampler) -> None:
    """This rank is done and another is not: the same forwards (FSDP2 all-gathers) on one dummy token."""
    model(ids[:1, -1:], readout=_skip_head)
    sampler.stats.dummy_forwards += 1


def _cached_loop(
    model: nn.Module,
    ids: torch.Tensor,
    valid: torch.Tensor,
    lengths: list[int],
    limits: list[int],
    sampler: _Sampler,
    prefill_chunk: int,
    check: int,
    compact_below: float,
    decode: Callable | None,
) -> None:
    """Chunked prefill, then one-token steps over static buffers: the KV cache and the valid-key mask are
    allocated once for prompt + budget (slot s of the row-aligned batch is buffer column s - base), finished
    rows leave the batch at the host checks, and every forward writes its keys in place."""
    inner = unwrap(model)
    device = ids.device
    batch, width = ids.shape
    context = inner.cfg.max_seq_len
    own_steps = max(limits)
    own_chunks = -(-width // prefill_chunk)
    steps, chunks = _agreed_max([own_steps, own_chunks], model)
    slots = width + own_steps - 1
    cache = KVCache(len(inner.layers), slots, trusted_positions=True)
    keys = torch.zeros((batch, slots), dtype=torch.bool, device=device)  # valid keys; generated slots as fed
    keys[:, :width] = valid
    prompt_positions = (valid.long().cumsum(dim=1) - 1).clamp(min=0)
    rows = _Rows(lengths, limits, device)
    stats = sampler.stats
    for chunk in range(chunks):
        if chunk >= own_chunks:
            _dummy_forward(model, ids, sampler)
            continue
        start, end = chunk * prefill_chunk, min(width, (chunk + 1) * prefill_chunk)
        last = chunk == own_chunks - 1
        out = model(
            ids[:, start:end],
            positions=prompt_positions[:, start:end],
            mask=attention_mask(start, end - start, keys[:, :end]),
            cache=cache,
            readout=Logits(last_only=True) if last else _skip_head,
        )
        stats.forwards += 1
        if last:
            stats.cache_elements.append(cache.elements())
            sampler.step(out[:, -1], rows)
    base, done = 0, False  # base: the first slot the buffers still hold
    slot_index = torch.zeros(1, dtype=torch.long, device=device)
    for step in range(1, steps):
        if (step - 1) % check == 0:
            if not done:
                unfinished = (~rows.finished).nonzero().squeeze(1).tolist()  # the host read (a sync on GPU)
                done = not unfinished or sampler.taken == own_steps
                if not done and len(unfinished) <= compact_below * len(rows.lengths_list):
                    base, keys = _compact(rows, unfinished, cache, keys, width, base)
                    stats.compactions += 1
                    stats.cache_elements.append(cache.elements())
            if all_ranks_done(done, model):
                break
        if done or sampler.taken == own_steps:
            _dummy_forward(model, ids, sampler)
            continue
        slot = width + sampler.taken - 1 - base  # buffer column of the token fed now
        keys[:, slot] = True
        positions = (rows.lengths + (sampler.taken - 1)).clamp(max=context - 1)
        if decode is None:
            logits = _decode_logits(model, rows.token, positions, keys[:, None, None, : slot + 1], cache)
        else:
            slot_index.fill_(slot)
            cache.slot = slot_index
            logits = decode(model, rows.token, positions, keys[:, None, None, :], cache)
            cache.slot = None
            cache.length += 1
        stats.forwards += 1
        sampler.step(logits, rows)


def _compact(
    rows: _Rows, keep: list[int], cache: KVCache, keys: torch.Tensor, width: int, base: int
) -> tuple[int, torch.Tensor]:
    """Keep only the rows `keep` (indices into the batch as it is) and the slots they still need: from the
    first slot of their longest prompt to the last slot their longest budget feeds. The new base and keys."""
    picked = rows.keep(keep)
    first = width - max(rows.lengths_list)
    end = width + max(rows.limits_list) - 1
    cache.keep(picked, first - base, end - base)
    return first, keys.index_select(0, picked)[:, first - base : end - base]


def _recompute_loop(
    model: nn.Module,
    ids: torch.Tensor,
    valid: torch.Tensor,
    lengths: list[int],
    limits: list[int],
    sampler: _Sampler,
) -> None:
    """The reference without a cache: every step recomputes the whole prefix (what the cached loop must equal)."""
    context = unwrap(model).cfg.max_seq_len
    rows = _Rows(lengths, limits, ids.device)
    own_steps = max(limits)
    (steps,) = _agreed_max([own_steps], model)
    done = False
    for _ in range(steps):
        if done:
            _dummy_forward(model, ids, sampler)
        else:
            positions = (valid.long().cumsum(dim=1) - 1).clamp(min=0, max=context - 1)
            mask = attention_mask(0, ids.shape[1], valid)
            logits = model(ids, positions=positions, mask=mask, readout=Logits(last_only=True))
            sampler.stats.forwards += 1
            sampler.step(logits[:, -1], rows)
            done = bool(rows.finished.all()) or sampler.taken == own_steps
            ids = torch.cat((ids, rows.token[:, None]), dim=1)
            valid = torch.cat((valid, ~rows.finished[:, None]), dim=1)
        if all_ranks_done(done, model):
            break


def completion_logprobs(
    model: nn.Module,
    prompts: Sequence[Sequence[int]],
    completions: Sequence[Sequence[int]],
    pad_id: int = 0,
    temperature: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """log p(completion token j | prompt, earlier completion tokens), shape (B, max completion length), and
    the mask of real completion tokens, under softmax(logits / temperature) (what sampling at that temperature
    drew from). Differentiable; one forward pass over right-padded rows."""
    if len(prompts) != len(completions):
        raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
    if any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token (for example BOS)")
    device = unwrap(model).embed.weight.device
    # A row's last completion token is only ever a target: leaving it out of the input keeps a completion that
    # filled the context (prompt + completion = max_seq_len + 1) inside the model's positions.
    rows = [list(p) + list(c)[:-1] for p, c in zip(prompts, completions, strict=True)]
    width = max(len(r) for r in rows)
    comp_width = max(1, max(len(c) for c in completions))
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long, device=device)
    targets = torch.full((len(rows), comp_width), pad_id, dtype=torch.long, device=device)
    mask = torch.zeros((len(rows), comp_width), dtype=torch.bool, device=device)
    for i, (row, completion) in enumerate(zip(rows, completions, strict=True)):
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long, device=device)
        targets[i, : len(completion)] = torch.tensor(list(completion), dtype=torch.long, device=device)
        mask[i, : len(completion)] = True
    prompt_lens = torch.tensor([len(p) for p in prompts], device=device)
    where = (prompt_lens[:, None] - 1 + torch.arange(comp_width, device=device)[None]).clamp(max=width - 1)
    # right padding: plain causal attention leaves real tokens untouched
    logprobs = model(ids, readout=TokenLogprobs(targets, where, temperature))
    return logprobs.masked_fill(~mask, 0.0), mask


# -- speculative decoding with the MTP modules ----------------------------------------------------------


@dataclass
class SpeculativeStats:
    drafted: int = 0
    accepted: int = 0
    main_forwards: int = 0


@torch.no_grad()
def speculative_generate(
    model: Transformer,
    prompt: Sequence[int],
    max_new_tokens: int,
    stop_ids: Collection[int] = (),
    vocab_size: int | None = None,
) -> tuple[list[int], SpeculativeStats]:
    """Greedy decoding of one prompt where the D MTP modules draft D tokens and one main forward verifies them.

    The output equals plain greedy decoding; each main forward commits between 1 and D+1 tokens. MTP depth k
    at position j reads h^{k-1}_j and token j+k, so its cache only keeps positions whose inputs are committed;
    positions computed from drafts are recomputed after verification. `vocab_size` masks padded head rows
    out of drafts and verification alike.
    """
    depth = len(model.mtp)
    if depth == 0:
        raise ValueError("speculative decoding needs a model with MTP modules")
    if not prompt or max_new_tokens < 1:
        raise ValueError("speculative decoding needs a non-empty prompt and max_new_tokens >= 1")
    if len(prompt) + max_new_tokens - 1 > model.cfg.max_seq_len:
        raise ValueError(
            f"{len(prompt)} prompt + {max_new_tokens} new tokens exceed the model's max_seq_len "
            f"{model.cfg.max_seq_len}"
        )
    device = model.embed.weight.device
    limit = len(prompt) + max_new_tokens + depth + 1
    main_cache = KVCache(len(model.layers), limit)
    mtp_caches = [KVCache(1, limit) for _ in range(depth)]
    tokens = list(prompt)  # committed tokens; the last one is not yet processed by the main model
    stats = SpeculativeStats()

    def run_main(new: list[int]) -> torch.Tensor:
        start = main_cache.length
        ids = torch.tensor([new], dtype=torch.long, device=device)
        valid = torch.ones((1, start + len(new)), dtype=torch.bool, device=device)
        positions = torch.arange(start, start + len(new), device=device)[None]
        stats.main_forwards += 1
        return model.trunk(ids, positions, attention_mask(start, len(new), valid), main_cache)

    hidden = [run_main(tokens)]  # hidden[k]: committed h^k for positions 0.. (k = 0: main model)
    hidden += [hidden[0].new_zeros((1, 0, hidden[0].shape[-1])) for _ in range(depth)]
    tokens.append(int(mask_padded_vocab(model.logits(hidden[0][:, -1]), vocab_size).argmax(-1)))
    while len(tokens) - len(prompt) < max_new_tokens and not any(
        t in stop_ids for t in tokens[len(prompt) :]
    ):
        n = len(tokens) - 1  # tokens[n] is committed, the main model has processed 0..n-1
        # drafts sit at positions n+1..n+d, which must exist: fewer drafts near max_seq_len
        n_drafts = min(depth, model.cfg.max_seq_len - 1 - n)
        drafts: list[int] = []
        extended = hidden[0]
        for k, module in enumerate(model.mtp[:n_drafts], start=1):
            cache, done = mtp_caches[k - 1], hidden[k].shape[1]
            cache.length = done
            seq = tokens + drafts
            ids = torch.tensor([seq[done + k : n + k]], dtype=torch.long, device=device)
            positions = torch.arange(done, n, device=device)[None]
            mask = attention_mask(done, n - done, torch.ones((1, n), dtype=torch.bool, device=device))
            out, normed = module(
                extended[:, done:n], model.embed(ids), model.rope(positions, n - done), mask, cache
            )
            drafts.append(int(mask_padded_vocab(model.head(normed[:, -1]), vocab_size).argmax(-1)))
            committed = max(0, n - k + 1 - done)  # positions whose token j+k is not a draft
            hidden[k] = torch.cat((hidden[k], out[:, :committed]), dim=1)
            extended = torch.cat((hidden[k], out[:, committed:]), dim=1)
        verified = run_main([tokens[-1], *drafts])
        greedy = mask_padded_vocab(model.logits(verified[0]), vocab_size).argmax(-1).tolist()
        accepted = 0
        while accepted < n_drafts and drafts[accepted] == greedy[accepted]:
            accepted += 1
        stats.drafted += n_drafts
        stats.accepted += accepted
        main_cache.length = n + accepted + 1
        hidden[0] = torch.cat((hidden[0], verified[:, : accepted + 1]), dim=1)
        tokens += [*drafts[:accepted], greedy[accepted]]
    completion = _truncate_at_stop(tokens[len(prompt) :], stop_ids)[:max_new_tokens]
    return completion, stats
