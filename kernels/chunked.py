"""Softmax losses of `hidden @ weight.T` computed chunk of rows by chunk, never holding all the logits.

Shared by the cross-entropy and log-probability kernels and by both backends: only the row op (the
softmax math on one logits chunk) differs between Triton and PyTorch; the matmuls are cuBLAS/ATen either way.
Peak extra memory is one chunk of logits, reused in place for its own gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from kernels.backend import Backend, triton_ops
from kernels.ce_rows import RowOp, RowOptions, ce_rows_torch

# Logits elements per chunk: the torch row op holds a few fp32 copies of its chunk, the Triton one none.
CHUNK_ELEMENTS: dict[str, int] = {"torch": 1 << 25, "triton": 1 << 28}


def row_op_for(backend: Backend) -> RowOp:
    return triton_ops().ce_rows_triton if backend == "triton" else ce_rows_torch


def chunk_rows(
    n_rows: int,
    vocab: int,
    backend: Backend,
    chunk_size: int | None,
    budget: dict[str, int] = CHUNK_ELEMENTS,
) -> int:
    """Rows per chunk: `chunk_size` if given, else balanced chunks under the backend's element `budget`."""
    if chunk_size is not None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        return chunk_size
    max_rows = max(1, budget[backend] // max(vocab, 1))
    n_chunks = -(-n_rows // max_rows)
    return max(1, -(-n_rows // max(n_chunks, 1)))


@dataclass
class PassResult:
    loss: torch.Tensor  # [N] fp32 (fp64 for fp64 inputs), 0 on ignored rows
    lse: torch.Tensor  # [N], same dtype
    grad_hidden: torch.Tensor | None
    grad_weight: torch.Tensor | None


def linear_softmax_pass(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    opts: RowOptions,
    backend: Backend,
    *,
    chunk_size: int | None = None,
    grad_scale: torch.Tensor | None = None,
    grad_hidden: bool = False,
    grad_weight: bool = False,
) -> PassResult:
    """One pass over row chunks; with `grad_scale` [N], also d(sum_i grad_scale_i * loss_i) for the inputs.

    The weight gradient accumulates in the weight's dtype (cuBLAS accumulates each chunk in fp32).
    """
    n_rows, vocab = hidden.shape[0], weight.shape[0]
    want_grads = grad_scale is not None and (grad_hidden or grad_weight)
    row_op = row_op_for(backend)
    loss = torch.empty(n_rows, dtype=torch.promote_types(hidden.dtype, torch.float32), device=hidden.device)
    lse = torch.empty_like(loss)
    d_hidden = (
        torch.empty(hidden.shape, dtype=hidden.dtype, device=hidden.device)
        if want_grads and grad_hidden
        else None
    )
    d_weight = None
    if want_grads and grad_weight:  # the first chunk writes it (no memset); no chunk at all: zeros
        d_weight = torch.empty_like(weight) if n_rows else torch.zeros_like(weight)
    step = chunk_rows(n_rows, vocab, backend, chunk_size)
    for start in range(0, n_rows, step):
        rows = slice(start, min(start + step, n_rows))
        h = hidden[rows]
        logits = h @ weight.T
        scale = grad_scale[rows] if want_grads else None
        loss[rows], lse[rows] = row_op(logits, targets[rows], opts, scale)
        if d_hidden is not None:
            torch.mm(logits, weight, out=d_hidden[rows])
        if d_weight is not None and start == 0:
            torch.mm(logits.T, h, out=d_weight)
        elif d_weight is not None:
            d_weight.addmm_(logits.T, h)
    return PassResult(loss, lse, d_hidden, d_weight)


class WeightedLoss(torch.autograd.Function):
    """sum_i row_weight_i * loss_i with the input gradients computed during the forward pass.

    The gradient of a weighted sum is known before backward up to the scalar grad_output, so the logits
    are touched once; backward only rescales.
    """

    @staticmethod
    def forward(ctx, hidden, weight, targets, row_weight, opts, backend, chunk_size):
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        result = linear_softmax_pass(
            hidden,
            weight,
            targets,
            opts,
            backend,
            chunk_size=chunk_size,
            grad_scale=row_weight if (need_h or need_w) else None,
            grad_hidden=need_h,
            grad_weight=need_w,
        )
        ctx.save_for_backward(result.grad_hidden, result.grad_weight)
        return (result.loss * row_weight).sum()

    @staticmethod
    def backward(ctx, grad_output):
        d_hidden, d_weight = ctx.saved_tensors
        if float(grad_output) != 1.0:  # loss.backward() passes 1: skip two full-size multiplies
            d_hidden = None if d_hidden is None else d_hidden * grad_output.to(d_hidden.dtype)
            d_weight = None if d_weight is None else d_weight * grad_output.to(d_weight.dtype)
        return d_hidden, d_weight, None, None, None, None, None


def weighted_loss(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    row_weight: torch.Tensor,
    opts: RowOptions,
    backend: Backend,
    chunk_size: int | None,
) -> torch.Tensor:
    """sum_i row_weight_i * loss_i; the gradient work is skipped when autograd will not ask for it.

    (Inside Function.forward grad mode is always off and needs_input_grad ignores torch.no_grad(), so the
    decision is taken here.)
    """
    if torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad):
        return WeightedLoss.apply(hidden, weight, targets, row_weight, opts, backend, chunk_size)
    result = linear_softmax_pass(hidden, weight, targets, opts, backend, chunk_size=chunk_size)
    return (result.loss * row_weight).sum()


class RowLoss(torch.autograd.Function):
    """Per-row losses [N]; backward recomputes each logits chunk, since grad_output weights rows unevenly."""

    @staticmethod
    def forward(ctx, hidden, weight, targets, opts, backend, chunk_size):
        result = linear_softmax_pass(hidden, weight, targets, opts, backend, chunk_size=chunk_size)
        ctx.save_for_backward(hidden, weight, targets)
        ctx.config = (opts, backend, chunk_size)
        return result.loss

    @staticmethod
    def backward(ctx, grad_output):
        hidden, weight, targets = ctx.saved_tensors
        opts, backend, chunk_size = ctx.config
        result = linear_softmax_pass(
            hidden,
            weight,
            targets,
            opts,
            backend,
            chunk_size=chunk_size,
            grad_scale=grad_output,
            grad_hidden=ctx.needs_input_grad[0],
            grad_weight=ctx.needs_input_grad[1],
        )
        return result.grad_hidden, result.grad_weight, None, None, None, None


def check_linear_inputs(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, opts: RowOptions
) -> None:
    """Clear errors for shapes, dtypes and out-of-range targets before any chunk is computed."""
    if hidden.dim() != 2 or weight.dim() != 2:
        raise ValueError(
            f"hidden must be [N, H] and weight [V, H], got {tuple(hidden.shape)} and {tuple(weight.shape)}"
        )
    if hidden.shape[1] != weight.shape[1]:
        raise ValueError(
            f"hidden size mismatch: hidden {tuple(hidden.shape)} vs weight {tuple(weight.shape)}"
        )
    if targets.shape != (hidden.shape[0],):
        raise ValueError(f"targets must be [N] = [{hidden.shape[0]}], got {tuple(targets.shape)}")
    if hidden.dtype != weight.dtype:
        raise ValueError(f"hidden and weight dtypes differ: {hidden.dtype} vs {weight.dtype}")
    if targets.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"targets must be int32 or int64, got {targets.dtype}")
    vocab = weight.shape[0]
    bad = (targets != opts.ignore_index) & ((targets < 0) | (targets >= vocab))
    if bool(bad.any()):
        first = int(targets[bad][0])
        raise ValueError(
            f"{int(bad.sum())} target(s) outside [0, {vocab}) and not ignore_index={opts.ignore_index}, e.g. {first}"
        )
