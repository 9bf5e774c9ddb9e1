"""Decode-time CPU linears through oneDNN, with weights reordered once per `generate` call.

A decode step multiplies a few rows by every weight matrix. The CPU build sends fp32 `F.linear` to MKL's
sgemm, which on such thin inputs runs at less than half the speed of oneDNN's JIT kernels on weights
reordered once for the batch (what torch.compile's CPU freezing uses); the output head, the largest matrix,
dominates the step. `prepacked_linears(model, rows)` packs the fp32 nn.Linear weights of a CPU module and,
inside its block, runs each no-grad `F.linear` on one of them through the packed copy. It is a thread-local
TorchFunctionMode: the module is not changed, and other threads and autograd never see the packed copies.
Results equal F.linear's up to float rounding (the kernels sum in another order), not bit for bit.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

log = logging.getLogger(__name__)


def available() -> bool:
    """Whether this torch build has oneDNN and the packed-linear ops (private ops of torch.compile's CPU path)."""
    ops = torch.ops.mkldnn
    return (
        torch.backends.mkldnn.is_available()
        and hasattr(ops, "_reorder_linear_weight")
        and hasattr(ops, "_linear_pointwise")
    )


class _PackedLinears(TorchFunctionMode):
    def __init__(self, packs: dict[int, tuple[torch.Tensor, torch.Tensor]]) -> None:
        super().__init__()
        self.packs = packs  # id(weight) -> (weight, packed weight)

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func is F.linear and len(args) >= 2 and not torch.is_grad_enabled():
            x, weight = args[0], args[1]
            entry = self.packs.get(id(weight))
            if (
                entry is not None
                and entry[0] is weight
                and x.dtype == torch.float32
                and x.device.type == "cpu"
            ):
                bias = args[2] if len(args) > 2 else kwargs.get("bias")
                return torch.ops.mkldnn._linear_pointwise(x.contiguous(), entry[1], bias, "none", [], "")
        return func(*args, **kwargs)


@contextlib.contextmanager
def prepacked_linears(model: nn.Module, rows: int) -> Iterator[bool]:
    """Run the block's no-grad fp32 CPU linears of `model` on weights packed for `rows` input rows; yields
    whether it did (False: no oneDNN, or nothing to pack, and the linears run as usual)."""
    weights = [
        m.weight
        for m in model.modules()
        if isinstance(m, nn.Linear) and m.weight.dtype == torch.float32 and m.weight.device.type == "cpu"
    ]
    if not weights or not available():
        yield False
        return
    try:
        packs = {
            id(w): (w, torch.ops.mkldnn._reorder_linear_weight(w.detach(), max(1, rows))) for w in weights
        }
    except RuntimeError as error:  # a CPU oneDNN cannot serve: the plain linears are still right
        log.warning("prepacked CPU linears unavailable (%s); using F.linear", error)
        yield False
        return
    with _PackedLinears(packs):
        yield True
