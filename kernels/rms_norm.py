"""RMSNorm, y = x / sqrt(mean(x²) + eps) * weight over the last dimension, computed in fp32."""

from __future__ import annotations

import torch

from kernels.backend import resolve_backend, triton_ops


def rms_norm_torch(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """The reference: statistics in fp32 at least, result in x's dtype; autograd provides the backward."""
    compute = torch.promote_types(x.dtype, torch.float32)
    xf = x.to(compute)
    y = xf * torch.rsqrt(xf.square().mean(dim=-1, keepdim=True) + eps)
    return (y * weight.to(compute)).to(x.dtype)


class _TritonRMSNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, eps):
        rows = x.reshape(-1, x.shape[-1])
        y, rstd = triton_ops().rms_norm_fwd(rows, weight, eps)
        ctx.save_for_backward(rows, weight, rstd)
        return y.view(x.shape)

    @staticmethod
    def backward(ctx, grad_y):
        rows, weight, rstd = ctx.saved_tensors
        grad_rows = grad_y.reshape(rows.shape)
        dx, dw = triton_ops().rms_norm_bwd(grad_rows, rows, weight, rstd)
        return dx.view(grad_y.shape), dw if ctx.needs_input_grad[1] else None, None


def rms_norm(
    x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6, backend: str | None = None
) -> torch.Tensor:
    """RMSNorm of `x` [..., H] with `weight` [H]; Triton on CUDA, the torch reference elsewhere."""
    if weight.dim() != 1 or x.shape[-1] != weight.shape[0]:
        raise ValueError(f"weight must be [H] = [{x.shape[-1]}], got {tuple(weight.shape)}")
    if resolve_backend(backend, x, weight) == "torch":
        return rms_norm_torch(x, weight, eps)
    return _TritonRMSNorm.apply(x, weight, eps)
