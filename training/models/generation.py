"""Sampling with a KV cache, per-token log-probabilities of completions, and MTP-drafted speculative decoding.

Batched prompts are left-padded: every row then writes the same cache slot at each step, and per-row RoPE
positions (counted from each row's first real token) make a padded row compute what it would alone. GRPO and
distillation call `generate` for rollouts and `completion_logprobs` (differentiable) for their losses.

`generate` and `completion_logprobs` take the model as training holds it (plain, DDP or FSDP2) and only ever
call its forward with a readout: FSDP2 gathers the shards there, and DDP synchronises the gradients of what its
forward produced. Under FSDP2 every forward is a collective, so the ranks of one `generate` call run the same
number of forwards whatever their prompts: they agree on the step budget (all-reduce max), and a rank whose rows
are all done keeps stepping with one-token dummy forwards until every rank is done. Speculative decoding is an
inference tool and takes the plain module.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from training.distributed import all_ranks_done, unwrap
from training.models.transformer import KVCache, Logits, TokenLogprobs, Transformer

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
        token = logits.argmax(dim=-1)
        return (token, torch.zeros(token.shape, device=token.device)) if with_logprobs else token
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        before = sorted_probs.cumsum(dim=-1) - sorted_probs  # mass of strictly more likely tokens
        sorted_probs = torch.where(before < top_p, sorted_probs, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
        probs = probs / probs.sum(dim=-1, keepdim=True)
    token = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
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


def _agreed_steps(steps: int, model: nn.Module) -> int:
    """The most steps any rank needs (all-reduce max under FSDP2, where each step is a collective)."""
    if not _fsdp_collective(model):
        return steps
    budget = torch.tensor([steps], device=unwrap(model).embed.weight.device)
    dist.all_reduce(budget, op=dist.ReduceOp.MAX)
    return int(budget)


def _truncate_at_stop(tokens: list[int], stop_ids: Collection[int]) -> list[int]:
    for i, token in enumerate(tokens):
        if token in stop_ids:
            return tokens[: i + 1]
    return tokens


# -- generation -----------------------------------------------------------------------------------------


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
) -> Generation:
    """Batched sampling with the KV cache through the model's forward (plain, DDP or FSDP2): the completions
    and their sampling log-probabilities.

    Each row gets `max_new_tokens` at most, fewer where its prompt leaves less room in the model's context
    (a long prompt no longer shortens its batch-mates' budget); a prompt longer than the context is an error.
    Under FSDP2 the ranks stay in step whatever their prompts and budgets (see the module docstring).

    `vocab_size` (the tokenizer's) keeps padded embedding rows out of the distribution; `top_k_logprobs` K
    also returns, per token, the K most likely ids under softmax(logits / logprob_temperature) and their
    log-probs (what offline distillation stores)."""
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be positive, got {max_new_tokens}")
    inner = unwrap(model)
    device = inner.embed.weight.device
    ids, valid = left_pad(prompts, pad_id, device)
    batch, width = ids.shape
    context = inner.cfg.max_seq_len
    if width > context:
        raise ValueError(f"a prompt of {width} tokens exceeds the model's max_seq_len {context}")
    lengths = torch.tensor([len(p) for p in prompts], device=device)
    limits = (context + 1 - lengths).clamp(max=max_new_tokens)  # the last token is sampled, never fed
    own_steps = int(limits.max())
    steps = _agreed_steps(own_steps, model)
    cache = KVCache(len(inner.layers), width + own_steps) if use_cache else None
    out = torch.full((batch, own_steps), pad_id, dtype=torch.long, device=device)
    out_logprobs = torch.zeros((batch, own_steps), dtype=torch.float32, device=device)
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    stops = torch.tensor(sorted(stop_ids), dtype=torch.long, device=device)
    step_ids, start, taken = ids, 0, 0
    top_steps: list[tuple[torch.Tensor, torch.Tensor]] = []
    for _ in range(steps):
        if taken == own_steps or bool(finished.all()):
            # This rank is done and another is not: the same forwards (FSDP2 all-gathers) on one dummy token.
            model(ids[:1, -1:], readout=Logits(last_only=True))
            if all_ranks_done(True, model):
                break
            continue
        positions = (valid.long().cumsum(dim=1) - 1).clamp(min=0)
        if cache is not None:
            mask = attention_mask(start, step_ids.shape[1], valid)
            logits = model(
                step_ids,
                positions=positions[:, start:],
                mask=mask,
                cache=cache,
                readout=Logits(last_only=True),
            )
        else:
            mask = attention_mask(0, ids.shape[1], valid)
            logits = model(ids, positions=positions, mask=mask, readout=Logits(last_only=True))
        last = mask_padded_vocab(logits[:, -1], vocab_size)
        if top_k_logprobs:
            top = torch.log_softmax(last.float() / logprob_temperature, dim=-1).topk(top_k_logprobs)
            top_steps.append((top.indices.cpu(), top.values.cpu()))
        token, logprob = sample_next(last, temperature, top_p, generator, with_logprobs=True)
        token = torch.where(finished, pad_id, token)
        out[:, taken] = token
        out_logprobs[:, taken] = torch.where(finished, 0.0, logprob)
        taken += 1
        finished |= torch.isin(token, stops) | (limits <= taken)
        if all_ranks_done(bool(finished.all()), model):
            break
        ids = torch.cat((ids, token[:, None]), dim=1)
        # A finished row's later tokens are padding: its positions stop growing (a row at its context limit
        # would otherwise run past the RoPE table while its batch-mates go on).
        valid = torch.cat((valid, ~finished[:, None]), dim=1)
        start = ids.shape[1] - 1
        step_ids = token[:, None]
    cut = limits.clamp(max=taken).tolist()
    tokens = [_truncate_at_stop(row[:n], stop_ids) for row, n in zip(out.tolist(), cut, strict=True)]
    logprobs = [row[: len(t)] for row, t in zip(out_logprobs.tolist(), tokens, strict=True)]
    truncated = [not (t and t[-1] in stop_ids) for t in tokens]
    if not top_k_logprobs:
        return Generation(tokens, logprobs, truncated=truncated)
    top_ids = torch.stack([i for i, _ in top_steps], dim=1).numpy()  # [B, steps, K]
    top_values = torch.stack([v for _, v in top_steps], dim=1).numpy()
    return Generation(
        tokens,
        logprobs,
        [top_ids[row, : len(t)] for row, t in enumerate(tokens)],
        [top_values[row, : len(t)] for row, t in enumerate(tokens)],
        truncated,
    )


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
