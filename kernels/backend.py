"""Which implementation runs a kernel call: Triton on CUDA, the PyTorch reference elsewhere.

Triton is imported lazily, only once a call needs it: `@triton.jit` decides between compiled and
interpreted kernels when `kernels.triton_ops` is first imported, so TRITON_INTERPRET must already be set by
then, and a CPU-only install without triton must still be able to use the references.
"""

from __future__ import annotations

import importlib.util
from types import ModuleType
from typing import Literal

import torch

Backend = Literal["triton", "torch"]
BACKENDS: tuple[str, ...] = ("triton", "torch")


def triton_installed() -> bool:
    """True when the triton package can be imported (without importing it)."""
    return importlib.util.find_spec("triton") is not None


def triton_ops() -> ModuleType:
    """The Triton kernel module, imported on first use."""
    from kernels import triton_ops as module

    return module


def resolve_backend(backend: str | None, *tensors: torch.Tensor) -> Backend:
    """Pick the implementation for a call on `tensors`; `backend` forces one.

    None means Triton when every tensor is on CUDA and triton is installed, else the torch reference.
    Forcing "triton" on CPU tensors is valid only when the kernels run under TRITON_INTERPRET=1.
    """
    if backend is None:
        on_cuda = all(t.is_cuda for t in tensors)
        return "triton" if on_cuda and triton_installed() else "torch"
    if backend == "torch":
        return "torch"
    if backend != "triton":
        raise ValueError(f"backend must be one of {BACKENDS} or None, got {backend!r}")
    if not triton_installed():
        raise RuntimeError("backend='triton' needs the triton package: pip install 'mathforge[gpu]'")
    if not all(t.is_cuda for t in tensors) and not triton_ops().INTERPRETED:
        raise RuntimeError(
            "backend='triton' on CPU tensors runs only in the Triton interpreter: set TRITON_INTERPRET=1 "
            "in the environment before the process first uses the Triton kernels"
        )
    return "triton"
