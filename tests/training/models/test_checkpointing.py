"""Checkpoint files: safetensors + JSON, atomic replacement, `latest`, pruning."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from training.config import model_config
from training.models.checkpoint import (
    Checkpoint,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from training.models.transformer import Transformer


def _trained_state():
    model = Transformer(model_config("tiny", 100, max_seq_len=16), seed=0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ids = torch.randint(0, 100, (2, 16))
    model(ids, ids).loss.backward()
    opt.step()
    names = {id(p): n for n, p in model.named_parameters()}
    state = opt.state_dict()
    by_name = {
        "state": {names[id(p)]: state["state"][i] for i, p in enumerate(model.parameters())},
        "param_groups": [
            {**g, "params": [names[id(p)] for p in model.parameters()]} for g in state["param_groups"]
        ],
    }
    return model.state_dict(), by_name


def test_round_trip_is_bit_exact(tmp_path) -> None:
    model_sd, optim_sd = _trained_state()
    rng = {"rank0.rng_cpu": torch.get_rng_state()}
    path = save_checkpoint(tmp_path, Checkpoint(7, model_sd, optim_sd, rng, {"loaders": [{"epoch": 1}]}))
    loaded = load_checkpoint(path)
    assert loaded.step == 7 and loaded.meta["loaders"] == [{"epoch": 1}]
    assert all(torch.equal(model_sd[k], loaded.model[k]) for k in model_sd)
    for name, state in optim_sd["state"].items():
        for key, value in state.items():
            assert torch.equal(value, loaded.optimizer["state"][name][key])
    assert loaded.optimizer["param_groups"][0]["lr"] == optim_sd["param_groups"][0]["lr"]
    assert torch.equal(loaded.rng["rank0.rng_cpu"], rng["rank0.rng_cpu"])
    assert set(load_file(path / "model.safetensors")) == set(model_sd)  # a standard safetensors file
    assert json.loads((path / "meta.json").read_text())["step"] == 7


def test_latest_points_to_the_newest_and_old_ones_are_pruned(tmp_path) -> None:
    model_sd, optim_sd = _trained_state()
    for step in (10, 20, 30):
        save_checkpoint(tmp_path, Checkpoint(step, model_sd, optim_sd), keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000020", "step_00000030"]
    assert latest_checkpoint(tmp_path).name == "step_00000030"


def test_an_interrupted_write_never_looks_like_a_checkpoint(tmp_path) -> None:
    model_sd, optim_sd = _trained_state()
    save_checkpoint(tmp_path, Checkpoint(5, model_sd, optim_sd))
    half = tmp_path / ".tmp-step_00000010-999"  # what a crash during a save leaves behind
    half.mkdir()
    (half / "model.safetensors").write_bytes(b"partial")
    (tmp_path / "step_00000010").mkdir()  # a directory without meta.json is not complete either
    assert latest_checkpoint(tmp_path).name == "step_00000005"
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000005"]


def test_saving_the_same_step_again_replaces_it(tmp_path) -> None:
    model_sd, optim_sd = _trained_state()
    save_checkpoint(tmp_path, Checkpoint(5, model_sd, optim_sd, meta={"v": 1}))
    save_checkpoint(tmp_path, Checkpoint(5, model_sd, optim_sd, meta={"v": 2}))
    assert load_checkpoint(latest_checkpoint(tmp_path)).meta["v"] == 2
    assert len(list(tmp_path.iterdir())) == 2  # the checkpoint and `latest`, no leftovers


def test_unknown_format_is_refused(tmp_path) -> None:
    model_sd, optim_sd = _trained_state()
    path = save_checkpoint(tmp_path, Checkpoint(1, model_sd, optim_sd))
    meta = json.loads((path / "meta.json").read_text())
    (path / "meta.json").write_text(json.dumps({**meta, "format": 99}))
    with pytest.raises(ValueError, match="format"):
        load_checkpoint(path)
