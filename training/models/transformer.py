"""Decoder-only transformer (RMSNorm, RoPE, SwiGLU, grouped-query attention) with DeepSeek-V3 MTP modules.

MTP module k (1-based) sees, at position i, the previous depth's hidden state h^{k-1}_i and the embedding of
token i+k, and predicts token i+k+1. It shares the embedding and the output head with the main model and keeps
the sequence length (positions past the end are padded and their targets ignored), so every depth reuses the
same attention mask and RoPE tables. With `fused_kernels` the norms and the head losses go through `kernels`.

Two memory levers are runtime settings of the module (`Transformer.configure`), not part of its saved shape:
activation checkpointing (each block's activations recomputed in backward) and the attention backend of packed
rows. A document mask is the dense (B, 1, T, T) boolean mask only on the `dense` path (the reference); `sdpa`
and `flex` take SDPA's causal kernel without any mask when every row holds one document, and otherwise `flex`
passes FlexAttention a BlockMask built from per-block document ranges (O(B·(T/128)²), never T×T).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
import zlib
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention.flex_attention import BlockMask, flex_attention
from torch.utils.checkpoint import checkpoint

from training.config import ATTENTION_BACKENDS, IGNORE_INDEX, ModelConfig

# What attention layers accept: an explicit boolean mask, FlexAttention's block mask, or None (causal).
AttentionMask = torch.Tensor | BlockMask | None


def _kernels():
    import kernels  # only when fused_kernels is on: the package is optional at import time

    return kernels


# -- pure tensor functions ------------------------------------------------------------------------------


def rms_norm_reference(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).type_as(x) * weight


def rope_tables(head_dim: int, max_len: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of shape (max_len, head_dim // 2), in float32."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    angles = torch.outer(torch.arange(max_len, dtype=torch.float64), inv_freq)
    return angles.cos().float(), angles.sin().float()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the two halves of each head dimension; x is (B, H, T, hd), cos/sin broadcast to (B, 1, T, hd/2)."""
    x1, x2 = x.float().chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).type_as(x)


def document_causal_mask(doc_ids: torch.Tensor) -> torch.Tensor:
    """(B, 1, T, T) boolean mask, True where query i may attend key j: j <= i and same document."""
    same_doc = doc_ids[:, :, None] == doc_ids[:, None, :]
    causal = torch.ones(doc_ids.shape[1], doc_ids.shape[1], dtype=torch.bool, device=doc_ids.device).tril()
    return (same_doc & causal).unsqueeze(1)


def doc_block_mask(doc_ids: torch.Tensor, block_size: int = 128) -> BlockMask:
    """FlexAttention's causal document mask for (B, T) doc ids, built from each block's lowest and highest
    doc id: a (query, key) block pair is skipped when the ranges cannot meet, full when both blocks hold the
    same single document and the keys lie strictly before the queries, and otherwise evaluated per element by
    the mask function. Correct for any doc ids (a range test only over-approximates which pairs can meet)."""
    b, t = doc_ids.shape
    n = -(-t // block_size)
    # Padded ids (-1: no real key or query matches) keep the mask function's reads in bounds.
    padded = F.pad(doc_ids, (0, n * block_size - t), value=-1)
    edge = torch.cat((doc_ids, doc_ids[:, -1:].expand(b, n * block_size - t)), dim=1).view(b, n, block_size)
    low, high = edge.amin(-1), edge.amax(-1)
    blocks = torch.arange(n, device=doc_ids.device)
    meet = (blocks[:, None] >= blocks[None, :]) & (low[:, None, :] <= high[:, :, None])
    meet &= high[:, None, :] >= low[:, :, None]
    single = low == high
    full = (blocks[:, None] > blocks[None, :]) & single[:, :, None] & single[:, None, :]
    full &= low[:, :, None] == low[:, None, :]

    def kv_blocks(pairs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pairs = pairs[:, None].to(torch.int32)  # (B, 1, query blocks, key blocks)
        order = torch.argsort(pairs, dim=-1, descending=True, stable=True).to(torch.int32)
        return pairs.sum(-1, dtype=torch.int32), order

    def mask_mod(batch: torch.Tensor, head: torch.Tensor, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return (q >= k) & (padded[batch, q] == padded[batch, k])

    return BlockMask.from_kv_blocks(
        *kv_blocks(meet & ~full),
        *kv_blocks(full),
        BLOCK_SIZE=block_size,
        mask_mod=mask_mod,
        seq_lengths=(t, t),
    )


def resolve_attention(backend: str, device: torch.device) -> str:
    """The backend `auto` stands for: FlexAttention where it compiles to a fused kernel (CUDA), else SDPA."""
    if backend not in ATTENTION_BACKENDS:
        raise ValueError(f"attention must be one of {', '.join(ATTENTION_BACKENDS)}, got {backend!r}")
    if backend == "auto":
        return "flex" if device.type == "cuda" else "sdpa"
    return backend


@functools.cache
def _compiled_flex_attention() -> Any:
    return torch.compile(flex_attention, dynamic=False)


def flex_attention_call(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, block_mask: BlockMask, enable_gqa: bool
) -> torch.Tensor:
    """Compiled FlexAttention on GPU; on CPU the eager, unfused reference (forward only: torch has no CPU
    backward for it), without its warning that it is unfused."""
    if q.device.type == "cuda":
        return _compiled_flex_attention()(q, k, v, block_mask=block_mask, enable_gqa=enable_gqa)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="flex_attention called without torch.compile")
        return flex_attention(q, k, v, block_mask=block_mask, enable_gqa=enable_gqa)


def shift_left(x: torch.Tensor, k: int, fill: int) -> torch.Tensor:
    """x[:, i + k] at position i; the last k positions get `fill`."""
    if k == 0:
        return x
    return torch.cat((x[:, k:], x.new_full((x.shape[0], min(k, x.shape[1])), fill)), dim=1)


def mtp_targets(targets: torch.Tensor, doc_ids: torch.Tensor | None, k: int) -> torch.Tensor:
    """Targets of MTP depth k: token i+k+1 at position i, ignored where it would leave position i's document.

    `targets` are the next-token targets (already ignored across boundaries), so targets[i + k] is token
    i+k+1 and it is valid for position i only if position i+k is still in the same document.
    """
    shifted = shift_left(targets, k, IGNORE_INDEX)
    if doc_ids is None:
        return shifted
    same_doc = shift_left(doc_ids, k, -1) == doc_ids
    return torch.where(same_doc, shifted, IGNORE_INDEX)


# -- modules --------------------------------------------------------------------------------------------


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float, fused: bool) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps
        self.fused = fused

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused:
            return _kernels().rms_norm(x, self.weight, eps=self.eps)
        return rms_norm_reference(x, self.weight, self.eps)


class KVCache:
    """Keys and values of the positions fed so far, per layer, in buffers of `max_len` slots allocated on first
    use (batch and dtype from the activations): decoding writes in place and never regrows a tensor.

    `keep` drops rows (finished completions) and slots that no remaining row needs, so that the memory follows
    the tokens held. A set `slot` (a one-element long tensor) is the static-shape mode of a compiled decode step:
    `update` writes there and returns the whole buffers (the caller's mask hides unfilled slots) and the caller
    moves `length`. `trusted_positions`: the caller checked that its positions fit the RoPE table, which saves
    the check's host sync on every forward."""

    def __init__(self, n_layers: int, max_len: int, *, trusted_positions: bool = False) -> None:
        self.max_len = max_len
        self.length = 0
        self.slot: torch.Tensor | None = None
        self.trusted_positions = trusted_positions
        self._k: list[torch.Tensor | None] = [None] * n_layers
        self._v: list[torch.Tensor | None] = [None] * n_layers

    def _buffers(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cache_k, cache_v = self._k[layer], self._v[layer]
        if cache_k is None or cache_v is None:
            shape = (k.shape[0], k.shape[1], self.max_len, k.shape[3])
            cache_k = self._k[layer] = k.new_zeros(shape)
            cache_v = self._v[layer] = v.new_zeros(shape)
        return cache_k, cache_v

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cache_k, cache_v = self._buffers(layer, k, v)
        if self.slot is not None:
            cache_k.index_copy_(2, self.slot, k)
            cache_v.index_copy_(2, self.slot, v)
            return cache_k, cache_v
        end = self.length + k.shape[2]
        if end > self.max_len:
            raise ValueError(f"KV cache of {self.max_len} positions is full ({end} needed)")
        cache_k[:, :, self.length : end] = k
        cache_v[:, :, self.length : end] = v
        return cache_k[:, :, :end], cache_v[:, :, :end]

    def keep(self, rows: torch.Tensor, start: int = 0, end: int | None = None) -> None:
        """Only the batch rows `rows` (indices, in their new order) and slots start..end-1 (start becomes 0),
        in fresh buffers of exactly that size."""
        end = self.max_len if end is None else end
        if not 0 <= start <= self.length <= end:
            raise ValueError(f"cannot keep slots {start}..{end} of a cache holding {self.length}")
        for layer, (k, v) in enumerate(zip(self._k, self._v, strict=True)):
            if k is not None and v is not None:
                self._k[layer] = k[:, :, start:end].index_select(0, rows)
                self._v[layer] = v[:, :, start:end].index_select(0, rows)
        self.length -= start
        self.max_len = end - start

    def elements(self) -> int:
        """Elements allocated for keys and values over all layers (what the cache's memory is proportional to)."""
        return sum(t.numel() for t in (*self._k, *self._v) if t is not None)


def grouped_query_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """SDPA of (B, H, T, hd) queries over (B, Hkv, S, hd) keys and values without repeating them per query head:
    the H / Hkv query heads that share a KV head become that head's queries (their mask rows repeated), so a
    decode step reads the cache once instead of copying it H / Hkv times."""
    b, heads, t, head_dim = q.shape
    kv_heads, keys = k.shape[1], k.shape[2]
    group = heads // kv_heads
    q = q.reshape(b, kv_heads, group * t, head_dim)
    mask = mask.expand(b, 1, t, keys)[:, :, None].expand(b, 1, group, t, keys).reshape(b, 1, group * t, keys)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return out.view(b, heads, t, head_dim)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        self.wq = nn.Linear(cfg.dim, cfg.n_heads * cfg.head_dim, bias=cfg.qkv_bias)
        self.wk = nn.Linear(cfg.dim, cfg.n_kv_heads * cfg.head_dim, bias=cfg.qkv_bias)
        self.wv = nn.Linear(cfg.dim, cfg.n_kv_heads * cfg.head_dim, bias=cfg.qkv_bias)
        self.wo = nn.Linear(cfg.n_heads * cfg.head_dim, cfg.dim, bias=False)

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        mask: AttentionMask,
        cache: KVCache | None,
        layer: int,
    ) -> torch.Tensor:
        b, t, _ = x.shape
        q = self.wq(x).view(b, t, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.wk(x).view(b, t, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = self.wv(x).view(b, t, self.n_kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        if cache is not None:
            k, v = cache.update(layer, k, v)
        if mask is None and k.shape[2] != t:
            raise ValueError("attending to cached positions needs an explicit mask")
        grouped = self.n_kv_heads != self.n_heads
        if cache is not None and grouped and isinstance(mask, torch.Tensor):
            out = grouped_query_attention(q, k, v, mask)
            return self.wo(out.transpose(1, 2).reshape(b, t, -1))
        if isinstance(mask, BlockMask):
            out = flex_attention_call(q, k, v, mask, enable_gqa=grouped)
            return self.wo(out.transpose(1, 2).reshape(b, t, -1))
        if grouped and mask is not None:
            # SDPA's GQA mode has no masked fused kernel on GPU (it would fall back to the slow math path);
            # repeating the KV heads keeps the memory-efficient kernel.
            repeat = self.n_heads // self.n_kv_heads
            k, v = k.repeat_interleave(repeat, dim=1), v.repeat_interleave(repeat, dim=1)
            grouped = False
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=mask is None, enable_gqa=grouped
        )
        return self.wo(out.transpose(1, 2).reshape(b, t, -1))


class FeedForward(nn.Module):
    """SwiGLU: w2(silu(w1 x) * w3 x)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.w1 = nn.Linear(cfg.dim, cfg.ffn_dim, bias=False)
        self.w3 = nn.Linear(cfg.dim, cfg.ffn_dim, bias=False)
        self.w2 = nn.Linear(cfg.ffn_dim, cfg.dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int) -> None:
        super().__init__()
        self.layer = layer  # index into the KV cache
        self.attn_norm = RMSNorm(cfg.dim, cfg.norm_eps, cfg.fused_kernels)
        self.attn = Attention(cfg)
        self.ffn_norm = RMSNorm(cfg.dim, cfg.norm_eps, cfg.fused_kernels)
        self.ffn = FeedForward(cfg)

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        mask: AttentionMask,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x), rope, mask, cache, self.layer)
        return x + self.ffn(self.ffn_norm(x))


class MTPModule(nn.Module):
    """One MTP depth: [RMSNorm(emb(t_{i+k})); RMSNorm(h^{k-1}_i)] → projection → block; own final norm."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.enorm = RMSNorm(cfg.dim, cfg.norm_eps, cfg.fused_kernels)
        self.hnorm = RMSNorm(cfg.dim, cfg.norm_eps, cfg.fused_kernels)
        self.eh_proj = nn.Linear(2 * cfg.dim, cfg.dim, bias=False)
        self.block = Block(cfg, layer=0)
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps, cfg.fused_kernels)

    def forward(
        self,
        hidden: torch.Tensor,
        next_embedding: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        mask: AttentionMask,
        cache: KVCache | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """h^k (the next depth's input) and its final norm (the shared head's input), both from one call so
        that FSDP, which gathers this module's weights per call, sees every use."""
        x = self.eh_proj(torch.cat((self.enorm(next_embedding), self.hnorm(hidden)), dim=-1))
        hidden = self.block(x, rope, mask, cache)
        return hidden, self.norm(hidden)


@dataclass
class ModelOutput:
    loss: torch.Tensor  # main + λ · mean(MTP losses)
    main_loss: torch.Tensor  # mean over the counted targets
    mtp_losses: list[torch.Tensor] = field(default_factory=list)
    counts: list[torch.Tensor] = field(default_factory=list)  # targets counted: main, then each MTP depth


class Readout(Protocol):
    """What a forward pass returns instead of the training loss: a function of the final-normed hidden states
    computed inside `Transformer.forward`, so that it runs where DDP and FSDP2 expect (FSDP2 gathers the head
    only there, and DDP only synchronises gradients of what its forward produced)."""

    def __call__(self, model: Transformer, normed: torch.Tensor) -> Any: ...


@dataclass(frozen=True)
class Logits:
    """float32 logits at every position, or at the last one only (all that sampling needs)."""

    last_only: bool = False

    def __call__(self, model: Transformer, normed: torch.Tensor) -> torch.Tensor:
        return model.head(normed[:, -1:] if self.last_only else normed).float()


@dataclass(frozen=True)
class TokenLogprobs:
    """log p(targets[b, j]) from position where[b, j] (where=None: from position j), under softmax(logits /
    temperature). Positions are picked before the head, so only they pay for the vocabulary (and with fused
    kernels not even they in full); the temperature scales the hidden states, which scales the logits."""

    targets: torch.Tensor
    where: torch.Tensor | None = None
    temperature: float = 1.0

    def __call__(self, model: Transformer, normed: torch.Tensor) -> torch.Tensor:
        if self.where is not None:
            normed = normed.gather(1, self.where[..., None].expand(-1, -1, normed.shape[-1]))
        if self.temperature != 1.0:
            normed = normed / self.temperature
        return model.normed_token_logprobs(normed, self.targets)


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig, seed: int = 0) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.layers = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps, cfg.fused_kernels)
        self.head = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.head.weight = self.embed.weight
        self.mtp = nn.ModuleList(MTPModule(cfg) for _ in range(cfg.mtp_depth))
        cos, sin = rope_tables(cfg.head_dim, cfg.max_seq_len, cfg.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.activation_checkpointing = False
        self.attention = "auto"
        self.init_weights(seed)

    def configure(
        self, *, activation_checkpointing: bool | None = None, attention: str | None = None
    ) -> None:
        """Runtime memory levers (not saved with the weights): recompute each block (and MTP module) in
        backward instead of keeping its activations; the attention backend of document-masked rows."""
        if attention is not None:
            resolve_attention(attention, torch.device("cpu"))  # validates the name
            self.attention = attention
        if activation_checkpointing is not None:
            self.activation_checkpointing = activation_checkpointing

    def _call(self, module: nn.Module, *args: Any) -> Any:
        """module(*args), under non-reentrant activation checkpointing when it is on and gradients are
        recorded. The checkpoint wraps the module call, so FSDP2's per-block hooks run inside it, and FSDP2
        lets its pre-backward unshard serve the recomputation."""
        if self.activation_checkpointing and torch.is_grad_enabled():
            return checkpoint(module, *args, use_reentrant=False)
        return module(*args)

    def document_mask(self, doc_ids: torch.Tensor) -> AttentionMask:
        """The attention mask of packed rows under the configured backend: None (plain causal) when every
        row holds one document, unless the backend is `dense`; a BlockMask for `flex`; else the dense mask."""
        backend = resolve_attention(self.attention, doc_ids.device)
        if backend != "dense" and bool((doc_ids == doc_ids[:, :1]).all()):
            return None
        if backend == "flex":
            return doc_block_mask(doc_ids)
        return document_causal_mask(doc_ids)

    @torch.no_grad()
    def init_weights(self, seed: int) -> None:
        """Each parameter from its own generator seeded by (seed, name): the main model's initial weights do
        not depend on whether MTP modules exist, and every rank builds the same model."""
        depth_scale = 1.0 / math.sqrt(2 * self.cfg.n_layers)
        for name, param in self.named_parameters():
            generator = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))
            if name.endswith("norm.weight"):
                param.fill_(1.0)
            elif name.endswith(".bias"):
                param.zero_()
            else:
                std = self.cfg.init_std * (depth_scale if name.endswith(("wo.weight", "w2.weight")) else 1.0)
                param.copy_(torch.randn(param.shape, generator=generator) * std)

    def drop_mtp(self) -> None:
        """Plain next-token model for inference: the MTP modules are only needed for training and drafting."""
        self.mtp = nn.ModuleList()
        self.cfg = dataclasses.replace(self.cfg, mtp_depth=0)

    def rope(
        self, positions: torch.Tensor | None, length: int, check: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """cos/sin for (B, T) positions (None: 0..length-1), shaped to broadcast over heads. `check=False` skips
        the range check of explicit positions (a host sync) for callers that checked them already."""
        if positions is None:
            if length > self.cfg.max_seq_len:
                raise ValueError(f"sequence of {length} tokens exceeds max_seq_len {self.cfg.max_seq_len}")
            return self.rope_cos[:length][None, None], self.rope_sin[:length][None, None]
        if check and int(positions.max()) >= self.cfg.max_seq_len:
            raise ValueError(f"position {int(positions.max())} exceeds max_seq_len {self.cfg.max_seq_len}")
        return self.rope_cos[positions][:, None], self.rope_sin[positions][:, None]

    def trunk(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor | None = None,
        mask: AttentionMask = None,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        """Hidden states after the last block, before the final norm (the input of MTP depth 1)."""
        rope = self.rope(positions, input_ids.shape[1], check=cache is None or not cache.trusted_positions)
        h = self.embed(input_ids)
        for block in self.layers:
            h = block(h, rope, mask, cache) if cache is not None else self._call(block, h, rope, mask)
        if cache is not None and cache.slot is None:
            cache.length += input_ids.shape[1]
        return h

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Main output head on trunk hidden states (for the plain module; through a DDP/FSDP wrapper use
        `forward(..., readout=Logits())`)."""
        return self.head(self.norm(hidden))

    def normed_token_logprobs(self, normed: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
        """log p(token_ids | normed hidden) under the main head; normed is (..., dim), token_ids (...)."""
        if self.cfg.fused_kernels:
            normed, weight = self.head_inputs(normed)
            flat = _kernels().token_logprobs(normed.flatten(0, -2), weight, token_ids.flatten())
            return flat.view(token_ids.shape)
        logprobs = F.log_softmax(self.head(normed).float(), dim=-1)
        return logprobs.gather(-1, token_ids.unsqueeze(-1)).squeeze(-1)

    def head_inputs(self, normed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Hidden states and head weight in one dtype for the kernels: the autocast dtype when autocast is
        on (what nn.Linear would use), else the hidden states' dtype."""
        device_type = normed.device.type
        dtype = (
            torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else normed.dtype
        )
        return normed.to(dtype), self.head.weight.to(dtype)

    def _loss(self, normed: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean cross-entropy over non-ignored targets (0 when there are none, never NaN), and their count."""
        count = (targets != IGNORE_INDEX).sum()
        if self.cfg.fused_kernels:
            normed, weight = self.head_inputs(normed)
            total = _kernels().fused_linear_cross_entropy(
                normed.flatten(0, 1),
                weight,
                targets.flatten(),
                ignore_index=IGNORE_INDEX,
                reduction="sum",
            )
        else:
            logits = self.head(normed).float()
            total = F.cross_entropy(
                logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX, reduction="sum"
            )
        return total / count.clamp(min=1), count

    def forward(
        self,
        input_ids: torch.Tensor,
        targets: torch.Tensor | None = None,
        doc_ids: torch.Tensor | None = None,
        mtp_weight: float = 0.0,
        doc_attention: bool = True,
        *,
        readout: Readout | None = None,
        positions: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
    ) -> Any:
        """The training loss (a `ModelOutput`), or `readout(self, final-normed hidden states)`.

        doc_ids (B, T) keeps MTP targets inside their document, and attention too unless doc_attention is off
        (plain causal attention can use the fastest SDPA kernels). positions, mask and cache are for
        incremental decoding; an explicit mask replaces the document mask.
        """
        if mask is None and doc_ids is not None and doc_attention:
            mask = self.document_mask(doc_ids)
        hidden = self.trunk(input_ids, positions, mask, cache)
        if readout is not None:
            return readout(self, self.norm(hidden))
        if targets is None:
            raise ValueError("forward needs targets (the training loss) or a readout")
        rope = self.rope(positions, input_ids.shape[1])
        main, count = self._loss(self.norm(hidden), targets)
        losses, counts = [main], [count]
        for k, module in enumerate(self.mtp, start=1):
            next_embedding = self.embed(shift_left(input_ids, k, 0))
            hidden, normed = self._call(module, hidden, next_embedding, rope, mask)
            loss_k, count_k = self._loss(normed, mtp_targets(targets, doc_ids, k))
            losses.append(loss_k)
            counts.append(count_k)
        mtp_losses = losses[1:]
        loss = main + mtp_weight * torch.stack(mtp_losses).mean() if mtp_losses else main
        return ModelOutput(loss=loss, main_loss=main, mtp_losses=mtp_losses, counts=counts)
