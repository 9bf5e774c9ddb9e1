"""Distillation divergences between a teacher's and a student's next-token distributions, chunked.

Logit distillation needs, at every distilled position, a divergence between softmax(student logits / T) and
softmax(teacher logits / T): two tensors of tokens × vocabulary, the largest of the step (twice 8 GB in bf16
for 8k tokens at V = 256k). Here both come from the models' final hidden states and output heads one chunk of
rows at a time; a *row op* turns the two logits chunks into each row's divergence and, when asked, overwrites
the student chunk with its gradient, so the extra memory is two chunks whatever the number of tokens.

Divergences (per row; S = student, T = teacher, both at temperature `temperature`), as in GKD and TRL's
GKDTrainer:

- `forward_kl`: KL(T ‖ S) = Σ p_T (log p_T − log p_S)  (mode covering; what plain KD and SFT on samples do);
- `reverse_kl`: KL(S ‖ T) = Σ p_S (log p_S − log p_T)  (mode seeking; MiniLLM);
- `jsd` with β: β·KL(T ‖ M) + (1 − β)·KL(S ‖ M), M = β·p_T + (1 − β)·p_S (generalised JSD). As TRL does, β = 0 is
  *defined* as forward KL and β = 1 as reverse KL: the mixture formula itself tends to β·KL(T ‖ S) and
  (1 − β)·KL(S ‖ T) there (its gradient points the same way, scaled by β or 1 − β).

No T² factor is applied (TRL's convention); the gradient flows to the student only.

Rows of the output heads beyond `vocab_size` (the padding Hugging Face models add to their embedding
matrices) are left out of both distributions: the heads are sliced, so they get no probability and no
gradient.

`topk_divergence` is the offline form: the teacher is a stored top-K of log-probabilities per position, and
both distributions are reduced to K + 1 outcomes (the K stored tokens and a tail bucket holding the rest of the
mass), which bounds the full divergence from below (data processing inequality).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Protocol

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from kernels.backend import Backend, resolve_backend, triton_ops
from kernels.chunked import chunk_rows

Divergence = Literal["forward_kl", "reverse_kl", "jsd"]
DIVERGENCES: tuple[str, ...] = ("forward_kl", "reverse_kl", "jsd")
Reduction = Literal["sum", "mean", "none"]

# Logits elements per chunk, for each of the two logits chunks: the torch row op holds several fp32 copies.
CHUNK_ELEMENTS: dict[str, int] = {"torch": 1 << 23, "triton": 1 << 27}

# Row-op kinds (the Triton kernel's constexpr): JSD at β = 0 or 1 is the matching KL.
FORWARD, REVERSE, MIXTURE = 0, 1, 2


@dataclass(frozen=True)
class DivergenceOptions:
    """Which divergence, at which temperature."""

    loss: str = "forward_kl"
    beta: float = 0.5
    temperature: float = 1.0

    def __post_init__(self) -> None:
        if self.loss not in DIVERGENCES:
            raise ValueError(f"loss must be one of {DIVERGENCES}, got {self.loss!r}")
        if not 0.0 <= self.beta <= 1.0:
            raise ValueError(f"beta must be in [0, 1], got {self.beta}")
        if not (math.isfinite(self.temperature) and self.temperature > 0.0):
            raise ValueError(f"temperature must be finite and > 0, got {self.temperature}")

    @property
    def kind(self) -> int:
        if self.loss == "forward_kl" or (self.loss == "jsd" and self.beta == 0.0):
            return FORWARD
        if self.loss == "reverse_kl" or (self.loss == "jsd" and self.beta == 1.0):
            return REVERSE
        return MIXTURE

    @property
    def scale(self) -> float:
        return 1.0 / self.temperature


# -- the plain full-logits implementation (what the chunked kernels are tested against) -----------------------


def divergence_from_logprobs(
    student_logprobs: torch.Tensor, teacher_logprobs: torch.Tensor, opts: DivergenceOptions
) -> torch.Tensor:
    """Per-row divergence [...] between two normalised log-distributions [..., V], written as TRL writes it
    (F.kl_div(input, target) is KL(target ‖ input)); differentiable in both."""
    s, t = student_logprobs, teacher_logprobs
    if opts.kind == FORWARD:
        return F.kl_div(s, t, reduction="none", log_target=True).sum(-1)
    if opts.kind == REVERSE:
        return F.kl_div(t, s, reduction="none", log_target=True).sum(-1)
    beta = torch.tensor(opts.beta, dtype=s.dtype, device=s.device)
    mixture = torch.logsumexp(torch.stack([s + torch.log1p(-beta), t + torch.log(beta)]), dim=0)
    kl_teacher = F.kl_div(mixture, t, reduction="none", log_target=True).sum(-1)
    kl_student = F.kl_div(mixture, s, reduction="none", log_target=True).sum(-1)
    return beta * kl_teacher + (1 - beta) * kl_student


def divergence_from_logits(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    loss: str = "forward_kl",
    beta: float = 0.5,
    temperature: float = 1.0,
) -> torch.Tensor:
    """The full-logits reference: per-row divergence [...] of softmax(logits / temperature), in the logits'
    dtype at least fp32. Holds every logit several times over: for tests and small vocabularies."""
    opts = DivergenceOptions(loss, beta, temperature)
    dtype = torch.promote_types(student_logits.dtype, torch.float32)
    s = F.log_softmax(student_logits.to(dtype) / temperature, dim=-1)
    t = F.log_softmax(teacher_logits.to(dtype) / temperature, dim=-1)
    return divergence_from_logprobs(s, t, opts)


# -- the row op ------------------------------------------------------------------------------------------------


class DivergenceRowOp(Protocol):
    def __call__(
        self,
        student_logits: torch.Tensor,
        teacher_logits: torch.Tensor,
        opts: DivergenceOptions,
        grad_scale: torch.Tensor | None = None,
    ) -> torch.Tensor: ...


def divergence_rows_torch(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    opts: DivergenceOptions,
    grad_scale: torch.Tensor | None = None,
) -> torch.Tensor:
    """Row divergences (fp32 at least, [C]) of two logits chunks [C, V].

    With `grad_scale` [C], `student_logits` is overwritten with grad_scale[i] * d div_i / d student_logits[i]
    (the 1/temperature included). Gradients, per row, with g the derivative in log p_S:
    forward KL p_S − p_T; reverse KL p_S (log p_S − log p_T − KL); JSD p_S (g − Σ p_S g) with
    g = (1 − β)(log p_S − log M).
    """
    dtype = torch.promote_types(student_logits.dtype, torch.float32)
    log_s = torch.log_softmax(student_logits.to(dtype) * opts.scale, dim=1)
    log_t = torch.log_softmax(teacher_logits.to(dtype) * opts.scale, dim=1)
    p_s = log_s.exp()
    kind = opts.kind
    if kind == FORWARD:
        p_t = log_t.exp()
        loss = (p_t * (log_t - log_s)).sum(dim=1)
        grad = p_s - p_t if grad_scale is not None else None
    elif kind == REVERSE:
        g = log_s - log_t
        loss = (p_s * g).sum(dim=1)
        grad = p_s * (g - loss[:, None]) if grad_scale is not None else None
    else:
        beta = opts.beta
        log_m = torch.logaddexp(log_s + math.log1p(-beta), log_t + math.log(beta))
        kl_teacher = (log_t.exp() * (log_t - log_m)).sum(dim=1)
        g = (1.0 - beta) * (log_s - log_m)
        dot = (p_s * g).sum(dim=1)  # (1 − β)·KL(S ‖ M)
        loss = beta * kl_teacher + dot
        grad = p_s * (g - dot[:, None]) if grad_scale is not None else None
    if grad is not None:
        assert grad_scale is not None
        student_logits.copy_(grad.mul_((grad_scale.to(dtype) * opts.scale)[:, None]))
    return loss


def row_op_for(backend: Backend) -> DivergenceRowOp:
    return triton_ops().divergence_rows_triton if backend == "triton" else divergence_rows_torch


# -- the chunked pass and its autograd Functions -----------------------------------------------------------------


@dataclass
class DivergencePass:
    loss: torch.Tensor  # [N], fp32 (fp64 for fp64 inputs)
    grad_hidden: torch.Tensor | None
    grad_weight: torch.Tensor | None


def divergence_pass(
    student_hidden: torch.Tensor,
    student_weight: torch.Tensor,
    teacher_hidden: torch.Tensor,
    teacher_weight: torch.Tensor,
    opts: DivergenceOptions,
    backend: Backend,
    *,
    chunk_size: int | None = None,
    grad_scale: torch.Tensor | None = None,
    grad_hidden: bool = False,
    grad_weight: bool = False,
) -> DivergencePass:
    """One pass over row chunks: each chunk's two logits from one matmul each, the row op, and with
    `grad_scale` [N] the chunk's share of d(Σ grad_scale_i · div_i) for the student's hidden states and head."""
    n_rows, vocab = student_hidden.shape[0], student_weight.shape[0]
    want = grad_scale is not None and (grad_hidden or grad_weight)
    row_op = row_op_for(backend)
    loss = torch.empty(
        n_rows, dtype=torch.promote_types(student_hidden.dtype, torch.float32), device=student_hidden.device
    )
    d_hidden = torch.empty_like(student_hidden) if want and grad_hidden else None
    d_weight = None
    if want and grad_weight:
        d_weight = torch.empty_like(student_weight) if n_rows else torch.zeros_like(student_weight)
    step = chunk_rows(n_rows, vocab, backend, chunk_size, CHUNK_ELEMENTS)
    for start in range(0, n_rows, step):
        rows = slice(start, min(start + step, n_rows))
        h = student_hidden[rows]
        s_logits = h @ student_weight.T
        t_logits = teacher_hidden[rows] @ teacher_weight.T
        scale = grad_scale[rows] if want else None
        loss[rows] = row_op(s_logits, t_logits, opts, scale)
        del t_logits
        if d_hidden is not None:
            torch.mm(s_logits, student_weight, out=d_hidden[rows])
        if d_weight is not None and start == 0:
            torch.mm(s_logits.T, h, out=d_weight)
        elif d_weight is not None:
            d_weight.addmm_(s_logits.T, h)
    return DivergencePass(loss, d_hidden, d_weight)


class WeightedDivergence(torch.autograd.Function):
    """Σ_i row_weight_i · div_i with the student's gradients computed in the forward pass (the gradient of a
    weighted sum is known up to the scalar upstream gradient); backward only rescales."""

    @staticmethod
    def forward(ctx, s_hidden, s_weight, t_hidden, t_weight, row_weight, opts, backend, chunk_size):
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        result = divergence_pass(
            s_hidden, s_weight, t_hidden, t_weight, opts, backend, chunk_size=chunk_size,
            grad_scale=row_weight if (need_h or need_w) else None, grad_hidden=need_h, grad_weight=need_w,
        )  # fmt: skip
        ctx.save_for_backward(result.grad_hidden, result.grad_weight)
        return (result.loss * row_weight).sum()

    @staticmethod
    def backward(ctx, grad_output):
        d_hidden, d_weight = ctx.saved_tensors
        if float(grad_output) != 1.0:
            d_hidden = None if d_hidden is None else d_hidden * grad_output.to(d_hidden.dtype)
            d_weight = None if d_weight is None else d_weight * grad_output.to(d_weight.dtype)
        return d_hidden, d_weight, None, None, None, None, None, None


class RowDivergence(torch.autograd.Function):
    """Per-row divergences [N]; forward keeps only its inputs, backward recomputes each chunk (the upstream
    gradient weights rows unevenly)."""

    @staticmethod
    def forward(ctx, s_hidden, s_weight, t_hidden, t_weight, opts, backend, chunk_size):
        result = divergence_pass(s_hidden, s_weight, t_hidden, t_weight, opts, backend, chunk_size=chunk_size)
        ctx.save_for_backward(s_hidden, s_weight, t_hidden, t_weight)
        ctx.config = (opts, backend, chunk_size)
        return result.loss

    @staticmethod
    def backward(ctx, grad_output):
        s_hidden, s_weight, t_hidden, t_weight = ctx.saved_tensors
        opts, backend, chunk_size = ctx.config
        result = divergence_pass(
            s_hidden, s_weight, t_hidden, t_weight, opts, backend, chunk_size=chunk_size,
            grad_scale=grad_output, grad_hidden=ctx.needs_input_grad[0], grad_weight=ctx.needs_input_grad[1],
        )  # fmt: skip
        return result.grad_hidden, result.grad_weight, None, None, None, None, None


def _check_inputs(
    s_hidden: torch.Tensor,
    s_weight: torch.Tensor,
    t_hidden: torch.Tensor,
    t_weight: torch.Tensor,
    vocab_size: int | None,
) -> int:
    """Clear errors for shapes and dtypes before any chunk is computed; the vocabulary both heads share."""
    for name, h, w in (("student", s_hidden, s_weight), ("teacher", t_hidden, t_weight)):
        if h.dim() != 2 or w.dim() != 2 or h.shape[1] != w.shape[1]:
            raise ValueError(
                f"{name}: hidden must be [N, H] and weight [V, H], got {tuple(h.shape)} and {tuple(w.shape)}"
            )
        if h.dtype != w.dtype:
            raise ValueError(f"{name}: hidden and weight dtypes differ: {h.dtype} vs {w.dtype}")
    if s_hidden.shape[0] != t_hidden.shape[0]:
        raise ValueError(f"{s_hidden.shape[0]} student rows but {t_hidden.shape[0]} teacher rows")
    if vocab_size is None and s_weight.shape[0] != t_weight.shape[0]:
        raise ValueError(
            f"student head has {s_weight.shape[0]} rows, teacher head {t_weight.shape[0]}: pass vocab_size "
            "(the tokenizer's size) so that padded rows are left out"
        )
    vocab = vocab_size if vocab_size is not None else s_weight.shape[0]
    if not 0 < vocab <= min(s_weight.shape[0], t_weight.shape[0]):
        raise ValueError(
            f"vocab_size {vocab} must be in [1, {min(s_weight.shape[0], t_weight.shape[0])}] (the smaller head)"
        )
    return vocab


def distill_divergence(
    student_hidden: torch.Tensor,
    student_weight: torch.Tensor,
    teacher_hidden: torch.Tensor,
    teacher_weight: torch.Tensor,
    loss: str = "forward_kl",
    *,
    beta: float = 0.5,
    temperature: float = 1.0,
    reduction: Reduction = "sum",
    vocab_size: int | None = None,
    backend: str | None = None,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Divergence between softmax(teacher_hidden @ teacher_weight[:V].T / T) and the student's, row by row.

    `student_hidden` [N, Hs] and `teacher_hidden` [N, Ht] are the final-normed hidden states at the same N
    positions; the weights are the output heads [Vs, Hs] and [Vt, Ht]; `vocab_size` V (the tokenizer's size)
    cuts both heads to their shared, real rows. Differentiable with respect to the student's inputs only.
    "sum"/"mean" compute the gradients during the forward pass; "none" returns [N] and recomputes each
    chunk in backward.
    """
    opts = DivergenceOptions(loss, beta, temperature)
    vocab = _check_inputs(student_hidden, student_weight, teacher_hidden, teacher_weight, vocab_size)
    s_weight, t_weight = student_weight[:vocab], teacher_weight[:vocab].detach()
    t_hidden = teacher_hidden.detach()
    chosen = resolve_backend(backend, student_hidden, s_weight, t_hidden, t_weight)
    if reduction == "none":
        return RowDivergence.apply(student_hidden, s_weight, t_hidden, t_weight, opts, chosen, chunk_size)
    n = student_hidden.shape[0]
    dtype = torch.promote_types(student_hidden.dtype, torch.float32)
    if reduction == "sum":
        row_weight = torch.ones(n, dtype=dtype, device=student_hidden.device)
    elif reduction == "mean":
        row_weight = torch.full((n,), 1.0 / max(n, 1), dtype=dtype, device=student_hidden.device)
    else:
        raise ValueError(f"reduction must be 'sum', 'mean' or 'none', got {reduction!r}")
    needs_grad = torch.is_grad_enabled() and (student_hidden.requires_grad or s_weight.requires_grad)
    if not needs_grad:
        result = divergence_pass(
            student_hidden, s_weight, t_hidden, t_weight, opts, chosen, chunk_size=chunk_size
        )
        return (result.loss * row_weight).sum()
    return WeightedDivergence.apply(
        student_hidden, s_weight, t_hidden, t_weight, row_weight, opts, chosen, chunk_size
    )


# -- offline: a stored top-K of the teacher's log-probabilities ----------------------------------------------------

TAIL_FLOOR = 1e-12  # smallest tail mass: a top-K that holds (nearly) all the mass leaves log(tail) finite


def bucket_logprobs(logprobs: torch.Tensor) -> torch.Tensor:
    """[..., K] log-probabilities of K tokens → [..., K + 1] with the tail bucket log(1 − Σ p) appended."""
    covered = torch.logsumexp(logprobs, dim=-1, keepdim=True)
    tail = torch.log((-torch.expm1(covered.clamp(max=0.0))).clamp_min(TAIL_FLOOR))
    return torch.cat((logprobs, tail), dim=-1)


def _topk_chunk(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    ids: torch.Tensor,
    teacher: torch.Tensor,
    opts: DivergenceOptions,
) -> torch.Tensor:
    logits = (hidden @ weight.T).to(torch.promote_types(hidden.dtype, torch.float32))
    student = torch.log_softmax(logits * opts.scale, dim=-1).gather(1, ids)
    return divergence_from_logprobs(bucket_logprobs(student), teacher, opts)


def topk_divergence(
    student_hidden: torch.Tensor,
    student_weight: torch.Tensor,
    teacher_ids: torch.Tensor,
    teacher_logprobs: torch.Tensor,
    loss: str = "forward_kl",
    *,
    beta: float = 0.5,
    temperature: float = 1.0,
    reduction: Reduction = "sum",
    vocab_size: int | None = None,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Divergence between a stored teacher top-K (`teacher_ids` [N, K], `teacher_logprobs` [N, K], taken at
    `temperature`) and the student's distribution, both reduced to the K tokens plus a tail bucket.

    The student's logits exist one chunk of rows at a time, in forward and (recomputed, activation
    checkpointing) in backward. PyTorch only: the top-K gather is cheap next to the matmul.
    """
    opts = DivergenceOptions(loss, beta, temperature)
    if teacher_ids.shape != teacher_logprobs.shape or teacher_ids.dim() != 2:
        raise ValueError(
            f"teacher_ids and teacher_logprobs must both be [N, K], got {tuple(teacher_ids.shape)} and "
            f"{tuple(teacher_logprobs.shape)}"
        )
    if teacher_ids.shape[0] != student_hidden.shape[0]:
        raise ValueError(f"{student_hidden.shape[0]} student rows but {teacher_ids.shape[0]} teacher rows")
    vocab = vocab_size or student_weight.shape[0]
    if teacher_ids.numel() and (int(teacher_ids.min()) < 0 or int(teacher_ids.max()) >= vocab):
        raise ValueError(f"teacher token ids outside [0, {vocab})")
    weight = student_weight[:vocab]
    dtype = torch.promote_types(student_hidden.dtype, torch.float32)
    teacher = bucket_logprobs(teacher_logprobs.to(dtype))
    n = student_hidden.shape[0]
    step = chunk_rows(n, vocab, "torch", chunk_size, CHUNK_ELEMENTS)
    parts = []
    for start in range(0, n, step):
        rows = slice(start, min(start + step, n))
        args = (student_hidden[rows], weight, teacher_ids[rows].long(), teacher[rows], opts)
        if torch.is_grad_enabled() and (student_hidden.requires_grad or weight.requires_grad):
            parts.append(checkpoint(_topk_chunk, *args, use_reentrant=False))
        else:
            parts.append(_topk_chunk(*args))
    rows_loss = torch.cat(parts) if parts else student_hidden.new_zeros(0, dtype=dtype)
    if reduction == "none":
        return rows_loss
    if reduction == "sum":
        return rows_loss.sum()
    if reduction == "mean":
        return rows_loss.sum() / max(n, 1)
    raise ValueError(f"reduction must be 'sum', 'mean' or 'none', got {reduction!r}")
