"""Memory-frugal kernels for the training loss path: each has a Triton version and a PyTorch reference.

Triton runs when the inputs are CUDA tensors and triton is installed; the reference runs otherwise.
Every public function takes `backend="triton" | "torch"` to force one (see kernels/README.md).
"""

from kernels.backend import resolve_backend
from kernels.cross_entropy import fused_linear_cross_entropy
from kernels.distill import distill_divergence, divergence_from_logits, topk_divergence
from kernels.logprobs import token_logprobs
from kernels.rms_norm import rms_norm, rms_norm_torch

__all__ = [
    "distill_divergence",
    "divergence_from_logits",
    "fused_linear_cross_entropy",
    "resolve_backend",
    "rms_norm",
    "rms_norm_torch",
    "token_logprobs",
    "topk_divergence",
]
