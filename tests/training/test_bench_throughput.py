"""bench/train_throughput.py runs (on CPU, tiny) and writes what it reports."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_benchmark_runs_on_cpu_and_reports_mtp_against_its_baseline(tmp_path, capsys, monkeypatch) -> None:
    spec = importlib.util.spec_from_file_location("train_throughput", REPO / "bench" / "train_throughput.py")
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "train_throughput", bench)  # dataclasses look their module up there
    spec.loader.exec_module(bench)
    out = tmp_path / "bench.json"
    args = "--device cpu --presets tiny --mtp-depths 0,1 --steps 2 --warmup 1 --seq-len 64 --batch-size 2"
    assert bench.main([*args.split(), "--vocab-size", "1024", "--peak-tflops", "1", "--out", str(out)]) == 0
    results = json.loads(out.read_text())["results"]
    assert [(r["preset"], r["mtp_depth"]) for r in results] == [("tiny", 0), ("tiny", 1)]
    assert all(r["tokens_per_s"] > 0 and 0 < r["mfu"] < 1 for r in results)
    assert results[0]["vs_no_mtp"] == 1.0
    assert results[1]["vs_no_mtp"] == results[1]["tokens_per_s"] / results[0]["tokens_per_s"]
    assert "| tiny | 1 |" in capsys.readouterr().out
