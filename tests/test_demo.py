"""`python -m mathforge.demo` at a small size, run the way `make demo` runs it: the real entry point, as a
subprocess, offline, without ../shared."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pyarrow.dataset as ds
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.spark]

STEPS = {"--train-steps": 2, "--sft-steps": 2, "--grpo-steps": 1, "--eval-items": 10}


def _last_step(metrics) -> int:
    return [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()][-1]["step"]


def test_demo_runs_the_whole_path_and_writes_what_it_lists(tmp_path):
    out = tmp_path / "demo_out"
    argv = [sys.executable, "-m", "mathforge.demo", "--out", str(out), "--files", "1", "--records", "30"]
    argv += [str(x) for kv in STEPS.items() for x in kv]
    result = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=1500)
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-3000:])
    assert "Demo finished" in result.stdout and "(missing!)" not in result.stdout

    # the crawl it generated, the classifier it trained, and the corpus built with that classifier
    crawl = json.loads((out / "crawl" / "sample_manifest.json").read_text())
    assert (crawl["n_files"], crawl["records_per_file"]) == (1, 30)
    classifier = json.loads((out / "models" / "math_classifier.json").read_text())
    manifest = json.loads((out / "corpus" / "manifest.json").read_text())
    assert manifest["math_scorer"] == {"name": "fasttext", "version": classifier["version"]}
    rows = ds.dataset(out / "corpus" / "data", format="parquet").to_table().to_pylist()
    crawl_ids = {r["record_id"] for r in crawl["records"]}
    assert rows and all(r["warc_record_id"] in crawl_ids for r in rows)
    kept = re.search(r"against the generator's labels: (\d+) pages kept", result.stdout)
    assert kept and int(kept.group(1)) == len(rows)
    assert "## Where the records went" in (out / "corpus" / "STATS.md").read_text()

    # each training stage ran the steps asked for and left its curves
    assert _last_step(out / "run" / "metrics.jsonl") == STEPS["--train-steps"]
    assert _last_step(out / "sft" / "metrics.jsonl") == STEPS["--sft-steps"]
    assert _last_step(out / "grpo" / "metrics.jsonl") == STEPS["--grpo-steps"]
    for png in ("run/loss_curve.png", "sft/loss_curve.png", "grpo/reward_curve.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    # the accuracies it prints are the evaluations it wrote
    for name in ("pretrained", "sft", "grpo"):
        summary = json.loads((out / f"eval_{name}" / "summary.json").read_text())["test"]
        printed = re.search(rf"^  {name}\s+([0-9.]+)$", result.stdout, re.MULTILINE)
        assert printed and float(printed.group(1)) == pytest.approx(summary["pass@1"], abs=0.005)
        assert summary["n"] > 0
