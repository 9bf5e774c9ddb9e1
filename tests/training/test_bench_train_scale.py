"""bench/train_scale.py runs (on CPU, Qwen2.5-0.5B's shape scaled to a sliver) and writes what it reports."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def bench(monkeypatch) -> ModuleType:
    spec = importlib.util.spec_from_file_location("train_scale", REPO / "bench" / "train_scale.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "train_scale", module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_train_scale_reports_each_lever_against_its_objectives_baseline(bench, tmp_path) -> None:
    out = tmp_path / "scale"
    args = (
        "--models 0.5b --scale 0.02 --layers 1 --seq 64 --batch 2 --prompts 1 --generations 2 --prompt-len 8 "
        "--new-tokens 4 --steps 1 --variants sft:baseline,sft:ac,sft:sdpa,grpo:baseline,grpo:ac "
        "--fresh-process false --peak-tflops 1"
    )
    assert bench.main([*args.split(), "--out", str(out)]) == 0
    report = json.loads(out.with_suffix(".json").read_text())
    rows = report["results"]
    assert [(r["objective"], r["variant"]) for r in rows] == [
        ("sft", "baseline"), ("sft", "ac"), ("sft", "sdpa"), ("grpo", "baseline"), ("grpo", "ac")
    ]  # fmt: skip
    for r in rows:
        assert "error" not in r, r
        assert r["tokens_per_s"] > 0 and r["peak_mb"] >= 0 and 0 < r["mfu"] < 1
        assert r["params_m"] > 0 and r["device"] == "cpu"
    for base, row in ((rows[0], rows[1]), (rows[3], rows[4])):
        assert base["speed_vs_baseline"] == 1.0 and base["memory_vs_baseline"] == 1.0
        assert row["speed_vs_baseline"] == row["tokens_per_s"] / base["tokens_per_s"]
    assert all(r["rollout_tokens_per_s"] > 0 for r in rows[3:])
    table = out.with_suffix(".md").read_text()
    assert "| 0.5b | sft | ac |" in table and "| 0.5b | grpo | baseline |" in table


def test_full_scale_shapes_are_qwen25s(bench) -> None:
    small, large = (bench.model_config(bench.BenchConfig(), name) for name in ("0.5b", "1.5b"))
    assert (small.dim, small.n_layers, small.n_heads, small.n_kv_heads, small.ffn_dim) == (
        896,
        24,
        14,
        2,
        4864,
    )
    assert (large.dim, large.n_layers, large.n_heads, large.n_kv_heads, large.ffn_dim) == (
        1536,
        28,
        12,
        2,
        8960,
    )
    assert small.vocab_size == large.vocab_size == 151936 and small.tie_embeddings and small.qkv_bias
