"""Triton kernels: the cross-entropy and distillation row ops and RMSNorm forward/backward, with launchers.

Imported lazily by `kernels.backend` (never at package import): `@triton.jit` decides at import time whether
the kernels are compiled for the GPU or run by the interpreter (TRITON_INTERPRET=1, CPU tensors, fp32).
The matmuls around the row op stay in cuBLAS; what Triton fuses is everything between them: the two passes
over each logits row (online max/sum-exp, then softmax gradient written over the logits in place).
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from kernels.ce_rows import RowOptions
from kernels.distill import DivergenceOptions

INTERPRETED: bool = bool(triton.knobs.runtime.interpret)

MAX_BLOCK_V = 4096
MAX_RMS_HIDDEN = 65536


@triton.jit
def _capped(x, softcap, HAS_SOFTCAP: tl.constexpr):
    """softcap * tanh(x / softcap) and tanh itself (tanh from exp: tl has no tanh)."""
    if HAS_SOFTCAP:
        th = 1.0 - 2.0 / (tl.exp(2.0 * x / softcap) + 1.0)
        x = softcap * th
    else:
        th = x
    return x, th


@triton.jit
def _ce_rows_kernel(
    logits_ptr,
    stride_row,
    targets_ptr,
    grad_scale_ptr,
    loss_ptr,
    lse_ptr,
    V,
    ignore_index,
    eps,
    z_loss,
    softcap,
    scale,
    HAS_GRAD: tl.constexpr,
    HAS_SOFTCAP: tl.constexpr,
    HAS_SMOOTHING: tl.constexpr,
    HAS_Z_LOSS: tl.constexpr,
    BLOCK_V: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    base = logits_ptr + row * stride_row
    target = tl.load(targets_ptr + row)
    valid = target != ignore_index
    safe_target = tl.where(valid, target, 0)
    cols = tl.arange(0, BLOCK_V)

    # Pass 1: running max and sum of exponentials (and the sum of logits, for label smoothing).
    # Every tile holds at least one real column, so the running max is finite after the first tile.
    row_max = float("-inf")
    sum_exp = 0.0
    total = 0.0
    for start in range(0, V, BLOCK_V):
        idx = start + cols
        mask = idx < V
        x = tl.load(base + idx, mask=mask, other=0.0).to(tl.float32)
        c, _ = _capped(x, softcap, HAS_SOFTCAP)
        c = tl.where(mask, c * scale, float("-inf"))
        new_max = tl.maximum(row_max, tl.max(c, axis=0))
        sum_exp = sum_exp * tl.exp(row_max - new_max) + tl.sum(tl.exp(c - new_max), axis=0)
        row_max = new_max
        if HAS_SMOOTHING:
            total += tl.sum(tl.where(mask, c, 0.0), axis=0)
    lse = row_max + tl.log(sum_exp)

    x_target = tl.load(base + safe_target).to(tl.float32)
    c_target, _ = _capped(x_target, softcap, HAS_SOFTCAP)
    loss = lse - c_target * scale
    if HAS_SMOOTHING:
        loss = (1.0 - eps) * loss + eps * (lse - total / V)
    if HAS_Z_LOSS:
        loss += z_loss * lse * lse
    tl.store(loss_ptr + row, tl.where(valid, loss, 0.0))
    tl.store(lse_ptr + row, lse)

    # Pass 2: d loss / d logits, scaled per row, written over the logits just read.
    if HAS_GRAD:
        row_scale = tl.where(valid, tl.load(grad_scale_ptr + row).to(tl.float32), 0.0) * scale
        if HAS_Z_LOSS:
            prob_factor = 1.0 + 2.0 * z_loss * lse
        else:
            prob_factor = 1.0
        for start in range(0, V, BLOCK_V):
            idx = start + cols
            mask = idx < V
            x = tl.load(base + idx, mask=mask, other=0.0).to(tl.float32)
            c, th = _capped(x, softcap, HAS_SOFTCAP)
            grad = tl.exp(c * scale - lse) * prob_factor
            if HAS_SMOOTHING:
                grad -= eps / V
            grad = tl.where(idx == safe_target, grad - (1.0 - eps), grad)
            if HAS_SOFTCAP:
                grad *= 1.0 - th * th
            tl.store(base + idx, (grad * row_scale).to(logits_ptr.dtype.element_ty), mask=mask)


def ce_rows_triton(
    logits: torch.Tensor,
    targets: torch.Tensor,
    opts: RowOptions,
    grad_scale: torch.Tensor | None = None,
    *,
    block_v: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Same contract as `kernels.ce_rows.ce_rows_torch`; `block_v` overrides the vocabulary tile."""
    if logits.stride(1) != 1:
        raise ValueError("ce_rows_triton needs logits with contiguous rows (it writes gradients in place)")
    n_rows, vocab = logits.shape
    loss = torch.empty(n_rows, dtype=torch.float32, device=logits.device)
    lse = torch.empty_like(loss)
    if n_rows == 0:
        return loss, lse
    block = block_v or min(triton.next_power_of_2(vocab), MAX_BLOCK_V)
    _ce_rows_kernel[(n_rows,)](
        logits,
        logits.stride(0),
        targets.contiguous(),
        loss if grad_scale is None else grad_scale.contiguous(),
        loss,
        lse,
        vocab,
        opts.ignore_index,
        float(opts.label_smoothing),
        float(opts.z_loss),
        float(opts.softcap or 1.0),
        float(opts.scale),
        HAS_GRAD=grad_scale is not None,
        HAS_SOFTCAP=opts.softcap is not None,
        HAS_SMOOTHING=opts.label_smoothing > 0.0,
        HAS_Z_LOSS=opts.z_loss > 0.0,
        BLOCK_V=block,
        num_warps=8 if block >= 2048 else 4,
    )
    return loss, lse


@triton.jit
def _rms_norm_fwd_kernel(x_ptr, w_ptr, y_ptr, rstd_ptr, stride_x, stride_y, H, eps, BLOCK_H: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK_H)
    mask = cols < H
    x = tl.load(x_ptr + row * stride_x + cols, mask=mask, other=0.0).to(tl.float32)
    w = tl.load(w_ptr + cols, mask=mask, other=0.0).to(tl.float32)
    rstd = tl.rsqrt(tl.sum(x * x, axis=0) / H + eps)
    tl.store(y_ptr + row * stride_y + cols, (x * rstd * w).to(y_ptr.dtype.element_ty), mask=mask)
    tl.store(rstd_ptr + row, rstd)


@triton.jit
def _rms_norm_bwd_kernel(
    dy_ptr,
    x_ptr,
    w_ptr,
    rstd_ptr,
    dx_ptr,
    dw_partial_ptr,
    M,
    H,
    rows_per_program,
    BLOCK_H: tl.constexpr,
):
    """dx per row; dw summed over this program's rows into its own slot of dw_partial (no atomics)."""
    pid = tl.program_id(0)
    cols = tl.arange(0, BLOCK_H)
    mask = cols < H
    w = tl.load(w_ptr + cols, mask=mask, other=0.0).to(tl.float32)
    dw_acc = tl.zeros([BLOCK_H], tl.float32)
    first = pid * rows_per_program
    last = tl.minimum(first + rows_per_program, M)
    for row in range(first, last):
        offset = tl.cast(row, tl.int64) * H
        x = tl.load(x_ptr + offset + cols, mask=mask, other=0.0).to(tl.float32)
        dy = tl.load(dy_ptr + offset + cols, mask=mask, other=0.0).to(tl.float32)
        rstd = tl.load(rstd_ptr + row)
        x_hat = x * rstd
        w_dy = w * dy
        dx = (w_dy - x_hat * (tl.sum(x_hat * w_dy, axis=0) / H)) * rstd
        tl.store(dx_ptr + offset + cols, dx.to(dx_ptr.dtype.element_ty), mask=mask)
        dw_acc += dy * x_hat
    tl.store(dw_partial_ptr + pid * H + cols, dw_acc, mask=mask)


def _hidden_block(hidden: int) -> int:
    if hidden > MAX_RMS_HIDDEN:
        raise ValueError(
            f"the Triton RMSNorm keeps a row in registers: hidden size {hidden} > {MAX_RMS_HIDDEN}"
        )
    return triton.next_power_of_2(hidden)


def rms_norm_fwd(x: torch.Tensor, weight: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """y [M, H] in x's dtype and the per-row 1/rms [M] (fp32) that backward reuses."""
    x = x.contiguous()
    n_rows, hidden = x.shape
    y = torch.empty_like(x)
    rstd = torch.empty(n_rows, dtype=torch.float32, device=x.device)
    if n_rows:
        block = _hidden_block(hidden)
        _rms_norm_fwd_kernel[(n_rows,)](
            x, weight.contiguous(), y, rstd, x.stride(0), y.stride(0), hidden, eps, BLOCK_H=block,
            num_warps=min(max(block // 256, 1), 16),
        )  # fmt: skip
    return y, rstd


def _programs(n_rows: int, device: torch.device) -> int:
    """Enough programs to fill the GPU, few enough that the partial dw sums stay small."""
    if device.type == "cuda":
        return min(n_rows, 4 * torch.cuda.get_device_properties(device).multi_processor_count)
    return min(n_rows, 4)


def rms_norm_bwd(
    dy: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, rstd: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """dx [M, H] in x's dtype and dw [H] in weight's dtype."""
    dy, x = dy.contiguous(), x.contiguous()
    n_rows, hidden = x.shape
    dx = torch.empty_like(x)
    programs = max(_programs(n_rows, x.device), 1)
    dw_partial = torch.zeros(programs, hidden, dtype=torch.float32, device=x.device)
    if n_rows:
        block = _hidden_block(hidden)
        _rms_norm_bwd_kernel[(programs,)](
            dy, x, weight.contiguous(), rstd, dx, dw_partial, n_rows, hidden, triton.cdiv(n_rows, programs),
            BLOCK_H=block, num_warps=min(max(block // 256, 1), 16),
        )  # fmt: skip
    return dx, dw_partial.sum(dim=0).to(weight.dtype)


# -- distillation: the divergence row op --------------------------------------------------------------------


@triton.jit
def _logaddexp(a, b):
    top = tl.maximum(a, b)
    return top + tl.log(tl.exp(a - top) + tl.exp(b - top))


@triton.jit
def _divergence_rows_kernel(
    s_ptr,
    stride_s,
    t_ptr,
    stride_t,
    grad_scale_ptr,
    loss_ptr,
    V,
    beta,
    log_beta,
    log_1m_beta,
    scale,
    KIND: tl.constexpr,
    HAS_GRAD: tl.constexpr,
    BLOCK_V: tl.constexpr,
):
    """One row of two logits chunks: log-partitions, the divergence, and its student gradient in place.

    KIND 0 forward KL(T‖S), 1 reverse KL(S‖T), 2 generalised JSD (see kernels/distill.py for the math)."""
    row = tl.program_id(0).to(tl.int64)
    s_base = s_ptr + row * stride_s
    t_base = t_ptr + row * stride_t
    cols = tl.arange(0, BLOCK_V)

    # Pass 1: both log-partitions, online.
    s_max = float("-inf")
    s_sum = 0.0
    t_max = float("-inf")
    t_sum = 0.0
    for start in range(0, V, BLOCK_V):
        idx = start + cols
        mask = idx < V
        s = tl.where(mask, tl.load(s_base + idx, mask=mask, other=0.0).to(tl.float32) * scale, float("-inf"))
        t = tl.where(mask, tl.load(t_base + idx, mask=mask, other=0.0).to(tl.float32) * scale, float("-inf"))
        s_new = tl.maximum(s_max, tl.max(s, axis=0))
        s_sum = s_sum * tl.exp(s_max - s_new) + tl.sum(tl.exp(s - s_new), axis=0)
        s_max = s_new
        t_new = tl.maximum(t_max, tl.max(t, axis=0))
        t_sum = t_sum * tl.exp(t_max - t_new) + tl.sum(tl.exp(t - t_new), axis=0)
        t_max = t_new
    s_lse = s_max + tl.log(s_sum)
    t_lse = t_max + tl.log(t_sum)

    # Pass 2: the divergence, and Σ p_S·g that the gradient subtracts (g: derivative in log p_S).
    loss = 0.0
    dot = 0.0
    for start in range(0, V, BLOCK_V):
        idx = start + cols
        mask = idx < V
        log_s = tl.load(s_base + idx, mask=mask, other=0.0).to(tl.float32) * scale - s_lse
        log_t = tl.load(t_base + idx, mask=mask, other=0.0).to(tl.float32) * scale - t_lse
        p_s = tl.where(mask, tl.exp(log_s), 0.0)
        p_t = tl.where(mask, tl.exp(log_t), 0.0)
        if KIND == 0:
            loss += tl.sum(p_t * (log_t - log_s), axis=0)
        elif KIND == 1:
            loss += tl.sum(p_s * (log_s - log_t), axis=0)
        else:
            log_m = _logaddexp(log_s + log_1m_beta, log_t + log_beta)
            g = (1.0 - beta) * (log_s - log_m)
            loss += beta * tl.sum(p_t * (log_t - log_m), axis=0)
            dot += tl.sum(p_s * g, axis=0)
    if KIND == 1:
        dot = loss
    if KIND == 2:
        loss += dot
    tl.store(loss_ptr + row, loss)

    # Pass 3: d div / d student logits, scaled per row (and by 1/T), written over the student logits.
    if HAS_GRAD:
        row_scale = tl.load(grad_scale_ptr + row).to(tl.float32) * scale
        for start in range(0, V, BLOCK_V):
            idx = start + cols
            mask = idx < V
            log_s = tl.load(s_base + idx, mask=mask, other=0.0).to(tl.float32) * scale - s_lse
            log_t = tl.load(t_base + idx, mask=mask, other=0.0).to(tl.float32) * scale - t_lse
            p_s = tl.exp(log_s)
            if KIND == 0:
                grad = p_s - tl.exp(log_t)
            elif KIND == 1:
                grad = p_s * (log_s - log_t - dot)
            else:
                log_m = _logaddexp(log_s + log_1m_beta, log_t + log_beta)
                grad = p_s * ((1.0 - beta) * (log_s - log_m) - dot)
            tl.store(s_base + idx, (grad * row_scale).to(s_ptr.dtype.element_ty), mask=mask)


def divergence_rows_triton(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    opts: DivergenceOptions,
    grad_scale: torch.Tensor | None = None,
    *,
    block_v: int | None = None,
) -> torch.Tensor:
    """Same contract as `kernels.distill.divergence_rows_torch`; `block_v` overrides the vocabulary tile."""
    if student_logits.stride(1) != 1 or teacher_logits.stride(1) != 1:
        raise ValueError("divergence_rows_triton needs logits with contiguous rows")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student logits {tuple(student_logits.shape)} vs teacher logits {tuple(teacher_logits.shape)}"
        )
    n_rows, vocab = student_logits.shape
    loss = torch.empty(n_rows, dtype=torch.float32, device=student_logits.device)
    if n_rows == 0:
        return loss
    block = block_v or min(triton.next_power_of_2(vocab), MAX_BLOCK_V)
    beta = float(opts.beta)
    mixture = opts.kind == 2
    _divergence_rows_kernel[(n_rows,)](
        student_logits,
        student_logits.stride(0),
        teacher_logits,
        teacher_logits.stride(0),
        loss if grad_scale is None else grad_scale.contiguous(),
        loss,
        vocab,
        beta,
        math.log(beta) if mixture else 0.0,
        math.log1p(-beta) if mixture else 0.0,
        float(opts.scale),
        KIND=opts.kind,
        HAS_GRAD=grad_scale is not None,
        BLOCK_V=block,
        num_warps=8 if block >= 2048 else 4,
    )
    return loss
