"""Process-group plumbing for torchrun: joining the group, wrapping the model, small collectives."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from training.models.transformer import Transformer


@dataclass(frozen=True)
class Dist:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str) -> Dist:
    """Join the torchrun process group if there is one (NCCL on GPU, gloo on CPU); device: auto, cpu, cuda."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    torch_device = torch.device("cuda", local_rank) if device == "cuda" else torch.device("cpu")
    if device == "cuda":
        torch.cuda.set_device(torch_device)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device == "cuda" else "gloo")
    return Dist(rank, world_size, local_rank, torch_device)


def barrier(d: Dist) -> None:
    if d.world_size > 1:
        dist.barrier()


def leave_distributed(clean: bool = True) -> None:
    """Leave the process group. After a clean run the ranks meet at a barrier first: a rank that tears gloo
    down while its peer still has traffic in flight can take the peer down with SIGABRT ("terminate called
    without an active exception") even though both finished their work. After a failure there is no barrier,
    the peer may never arrive."""
    if not dist.is_initialized():
        return
    if clean:
        dist.barrier()
    dist.destroy_process_group()


def wrap_model(model: Transformer, parallel: str, d: Dist, mixed_precision: str = "off") -> nn.Module:
    """DDP, or FSDP2 with one shard group per block (and MTP module) plus the root, or the model itself.

    `mixed_precision="bf16"` gives FSDP2 a bf16 policy: parameters are all-gathered and computed with in bf16
    (half the all-gather traffic and the unsharded parameter memory), gradients are reduce-scattered in fp32,
    and the sharded parameters the optimiser steps (the master weights) and Adam's state stay fp32."""
    if d.world_size == 1:
        return model
    if parallel == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        # No buffer broadcast: the only buffers are RoPE tables every rank computes alike, and a broadcast in
        # every forward would make generation a collective that ranks must call equally often.
        return DistributedDataParallel(
            model, device_ids=[d.local_rank] if d.device.type == "cuda" else None, broadcast_buffers=False
        )
    if parallel == "fsdp":
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        policy = MixedPrecisionPolicy()
        if mixed_precision == "bf16":
            policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
        elif mixed_precision != "off":
            raise ValueError(f"mixed_precision must be off or bf16, got {mixed_precision!r}")
        for block in [*model.layers, *model.mtp]:
            fully_shard(block, mp_policy=policy)
        fully_shard(model, mp_policy=policy)
        return model
    if mixed_precision != "off":
        raise ValueError("mixed_precision is an FSDP2 policy: use it with parallel fsdp")
    raise ValueError(f"parallel must be ddp or fsdp, got {parallel!r}")


def frozen_dtype(ref_dtype: str, device: torch.device) -> torch.dtype:
    """The dtype a frozen reference or teacher is held in: `auto` is bf16 on GPU (where its forward runs under
    bf16 autocast anyway), fp32 on CPU."""
    if ref_dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"fp32": torch.float32, "bf16": torch.bfloat16}[ref_dtype]


def prepare_frozen(model: Transformer, parallel: str, d: Dist, ref_dtype: str = "auto") -> Transformer:
    """A frozen model (GRPO's reference, distillation's teacher): eval mode, no gradients, in `ref_dtype`, and
    under torchrun FSDP2 sharded like the policy, so that each rank holds 1/world of it instead of a full
    copy. The sharded model all-gathers its parameters in each forward, which is then a collective that every
    rank must call equally often; its root reshards after the forward too (FSDP2 keeps a training root's
    parameters gathered for the backward, which a frozen model never runs)."""
    model = model.to(device=d.device, dtype=frozen_dtype(ref_dtype, d.device))
    model.eval().requires_grad_(False)
    if d.world_size > 1 and parallel == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for block in [*model.layers, *model.mtp]:
            fully_shard(block, reshard_after_forward=True)
        fully_shard(model, reshard_after_forward=True)
    return model


def full_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """The whole tensor of a DTensor (a collective: every rank must ask), or the tensor itself."""
    return tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor


def local_numel(model: nn.Module) -> int:
    """Parameter elements this rank holds (its shards under FSDP2)."""
    return sum((p.to_local() if hasattr(p, "to_local") else p).numel() for p in model.parameters())


def unwrap(model: nn.Module) -> Transformer:
    """The Transformer inside a DDP wrapper (FSDP2 shards the module in place, so it is the module itself)."""
    inner = getattr(model, "module", model)
    if not isinstance(inner, Transformer):
        raise TypeError(f"expected a Transformer or a DDP-wrapped one, got {type(model).__name__}")
    return inner


def all_ranks_done(done: bool, model: nn.Module) -> bool:
    """Whether every rank is done, for loops whose forward is a collective (FSDP2 gathers shards in every
    forward, so all ranks must stop together); elsewhere simply `done`."""
    from torch.distributed.fsdp import FSDPModule

    if not (isinstance(model, FSDPModule) and dist.is_initialized()):
        return done
    flag = torch.tensor([0 if done else 1], device=unwrap(model).embed.weight.device)
    dist.all_reduce(flag)
    return int(flag) == 0


def gather_objects(obj: Any, d: Dist) -> list[Any]:
    """Every rank's `obj`, on every rank (pickled; for small per-rank state)."""
    if d.world_size == 1:
        return [obj]
    out: list[Any] = [None] * d.world_size
    dist.all_gather_object(out, obj)
    return out


def param_digest(model: nn.Module) -> str:
    """sha256 of the parameter bytes: equal digests mean bitwise-equal weights. FSDP shards are gathered
    first, so this is a collective there."""
    digest = hashlib.sha256()
    for param in model.parameters():
        full = param.full_tensor() if hasattr(param, "full_tensor") else param
        digest.update(full.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
