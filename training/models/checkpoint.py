"""Checkpoints as safetensors plus one small JSON, written atomically.

Layout: `<root>/step_00000042/{model,optimizer,rng}.safetensors` and `meta.json` (and
`objective.safetensors` when the objective keeps tensors of its own), plus a `latest` file naming
the newest complete one. A checkpoint is written into a hidden temporary directory and renamed into place, so
a crash mid-write never leaves something that looks finished. This module knows files, not processes: the
training loop gathers full (unsharded) state and per-rank state before calling `save_checkpoint`.

Sharded checkpoints (`storage: "dcp"` in the meta) are for FSDP2 runs too big for one rank to hold the full
state: every rank writes its own shards of the weights, the Adam state and the objective's tensors with
torch.distributed.checkpoint (`__<rank>_0.distcp` files and DCP's `.metadata`) and reads back only its own
on resume; rank 0 adds `rng.safetensors` and `meta.json`. That path is a collective (every rank calls
`save_dcp_checkpoint`, on a file system all ranks share) and keeps the same atomic publish: the shards go into
a hidden temporary directory that rank 0 renames into place once DCP's metadata says every rank has written.
`load_dcp_model` reads such a checkpoint into a full model in one process (the converter, `load_model`).

A model with tied embeddings (`model_config.tie_embeddings` in the meta) is stored with `embed.weight` only,
as Hugging Face stores it: safetensors refuses two names for one buffer (one process), and a gathered FSDP2
state holds two equal copies that would double the file. `load_checkpoint` puts `head.weight` back as the
very same tensor, so that loaders see the state a tied model's `state_dict()` has.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

FORMAT_VERSION = 1
_LATEST = "latest"
_OBJECTIVE = "objective.safetensors"
DCP = "dcp"  # meta["storage"] of a sharded checkpoint


@dataclass
class Checkpoint:
    step: int
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]  # torch optimiser state dict keyed by parameter name (FQN)
    rng: dict[str, torch.Tensor] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)  # JSON-ready: config, loader states, ...
    # tensors an objective keeps besides the model (GRPO's synced reference), the same on every rank
    objective: dict[str, torch.Tensor] = field(default_factory=dict)


TIED_HEAD, TIED_EMBED = "head.weight", "embed.weight"


def _tied(meta: dict[str, Any]) -> bool:
    return bool((meta.get("model_config") or {}).get("tie_embeddings"))


def stored_model_state(model: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The tensors to write: a tied model's head is its embedding, stored once under `embed.weight`."""
    if _tied(meta):
        return {k: v for k, v in model.items() if k != TIED_HEAD}
    return dict(model)


def _flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors of the per-parameter state for safetensors, everything else (param groups, scalars) for JSON."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for name, per_param in state["state"].items():
        for key, value in per_param.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{name}/{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(name, {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], rest: dict[str, Any]) -> dict[str, Any]:
    state: dict[str, dict[str, Any]] = {name: dict(values) for name, values in rest["scalars"].items()}
    for flat, value in tensors.items():
        name, key = flat.rsplit("/", 1)
        state.setdefault(name, {})[key] = value
    return {"state": state, "param_groups": rest["param_groups"]}


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def step_dir_name(step: int) -> str:
    return f"step_{step:08d}"


def _fsync_tree(path: Path) -> None:
    for sub in sorted(path.rglob("*"), reverse=True):
        if sub.is_file():
            with open(sub, "rb") as fh:
                os.fsync(fh.fileno())
        else:
            _fsync_dir(sub)
    _fsync_dir(path)


def _publish(root: Path, tmp: Path, final: Path, keep: int) -> Path:
    """Rename a complete temporary checkpoint into place, point `latest` at it, drop all but `keep`."""
    _fsync_tree(tmp)
    if final.exists():  # re-saving a step (after a resume): move the old one aside first
        stale = root / f".stale-{final.name}-{os.getpid()}"
        os.replace(final, stale)
        os.replace(tmp, final)
        shutil.rmtree(stale)
    else:
        os.replace(tmp, final)
    _fsync_dir(root)
    _write_text_atomic(root / _LATEST, final.name + "\n")
    for old in list_checkpoints(root)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def save_checkpoint(root: str | Path, ckpt: Checkpoint, keep: int = 2) -> Path:
    """Write `ckpt` under root, point `latest` at it, and keep only the newest `keep` checkpoints."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / step_dir_name(ckpt.step)
    tmp = root / f".tmp-{final.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    optim_tensors, optim_rest = _flatten_optimizer(ckpt.optimizer)
    model = stored_model_state(ckpt.model, ckpt.meta)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.items()}, tmp / "model.safetensors")
    save_file(optim_tensors, tmp / "optimizer.safetensors")
    save_file({k: v.cpu().contiguous() for k, v in ckpt.rng.items()}, tmp / "rng.safetensors")
    if ckpt.objective:
        save_file({k: v.detach().cpu().contiguous() for k, v in ckpt.objective.items()}, tmp / _OBJECTIVE)
    meta = {"format": FORMAT_VERSION, "step": ckpt.step, "optimizer": optim_rest, **ckpt.meta}
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
    return _publish(root, tmp, final, keep)


def save_dcp_checkpoint(
    root: str | Path,
    step: int,
    state: dict[str, Any],
    rng: dict[str, torch.Tensor],
    meta: dict[str, Any],
    *,
    is_main: bool,
    keep: int = 2,
) -> Path:
    """Collective: every rank writes its shards of `state` ({"model", "optimizer", "objective"}: sharded
    state dicts, DTensors welcome) with DCP; rank 0 then writes `rng` and `meta` and publishes atomically.
    The temporary directory's name is the same on every rank, so that they all write into one."""
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp

    root = Path(root)
    final = root / step_dir_name(step)
    tmp = root / f".tmp-{final.name}-dcp"
    if is_main:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    if dist.is_initialized():
        dist.barrier()
    model = stored_model_state(state["model"], meta)
    dcp.save({**state, "model": model}, checkpoint_id=tmp)  # returns once DCP's .metadata is written
    if not is_main:
        return final
    save_file({k: v.cpu().contiguous() for k, v in rng.items()}, tmp / "rng.safetensors")
    full_meta = {"format": FORMAT_VERSION, "storage": DCP, "step": step, **meta}
    (tmp / "meta.json").write_text(json.dumps(full_meta, indent=1, sort_keys=True))
    return _publish(root, tmp, final, keep)


def load_dcp_state(path: str | Path, state: dict[str, Any], meta: dict[str, Any]) -> None:
    """Read a sharded checkpoint into `state` in place ({"model", "optimizer", "objective"} as for saving,
    shaped like this run's, so each rank reads only its own shards). A collective under torchrun."""
    import torch.distributed.checkpoint as dcp

    model = stored_model_state(state["model"], meta)
    dcp.load({**state, "model": model}, checkpoint_id=Path(path))


def load_dcp_model(path: str | Path, model: torch.nn.Module, meta: dict[str, Any]) -> None:
    """The weights of a sharded checkpoint, gathered into a plain (unsharded) model in this one process."""
    import warnings

    import torch.distributed.checkpoint as dcp

    state = stored_model_state(dict(model.state_dict()), meta)
    with warnings.catch_warnings():  # "assuming the intent is to load in a single process": it is
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        dcp.load({"model": state}, checkpoint_id=Path(path), no_dist=True)  # in place: the model's tensors


def list_checkpoints(root: str | Path) -> list[Path]:
    """Complete checkpoints under root, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("step_*") if (p / "meta.json").is_file())


def latest_checkpoint(root: str | Path) -> Path | None:
    root = Path(root)
    pointer = root / _LATEST
    if pointer.is_file():
        path = root / pointer.read_text().strip()
        if (path / "meta.json").is_file():
            return path
    found = list_checkpoints(root)
    return found[-1] if found else None


def load_checkpoint(path: str | Path) -> Checkpoint:
    path = Path(path)
    meta = json.loads((path / "meta.json").read_text())
    if meta.get("format") != FORMAT_VERSION:
        raise ValueError(f"{path}: checkpoint format {meta.get('format')}, this code reads {FORMAT_VERSION}")
    if meta.get("storage") == DCP:  # tensors stay in the shards: load_dcp_state / load_dcp_model
        return Checkpoint(
            step=meta.pop("step"),
            model={},
            optimizer={},
            rng=load_file(path / "rng.safetensors"),
            meta={k: v for k, v in meta.items() if k != "format"},
        )
    optimizer = _unflatten_optimizer(load_file(path / "optimizer.safetensors"), meta.pop("optimizer"))
    model = load_file(path / "model.safetensors")
    if _tied(meta) and TIED_HEAD not in model:
        model[TIED_HEAD] = model[TIED_EMBED]  # the same tensor: the head is the embedding
    return Checkpoint(
        step=meta.pop("step"),
        model=model,
        optimizer=optimizer,
        rng=load_file(path / "rng.safetensors"),
        objective=load_file(path / _OBJECTIVE) if (path / _OBJECTIVE).is_file() else {},
        meta={k: v for k, v in meta.items() if k != "format"},
    )
