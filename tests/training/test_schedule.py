"""Learning-rate and MTP-weight schedules: exact values, shape, and what a real `mathforge train pretrain`
run logs through the console script, before and after `--resume`."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from itertools import pairwise
from pathlib import Path

import pytest

from training.config import OptimConfig, PretrainModelConfig
from training.schedule import lr_at, mtp_lambda_at, warmup_steps

REPO = Path(__file__).resolve().parents[2]
PEAK, FLOOR = 1e-3, 1e-4  # min_lr_ratio 0.1


def _optim(warmup_frac: float = 0.1, lr: float = PEAK, min_lr_ratio: float = 0.1) -> OptimConfig:
    return OptimConfig(lr=lr, min_lr_ratio=min_lr_ratio, warmup_frac=warmup_frac)


@pytest.mark.parametrize(
    ("warmup_frac", "max_steps", "expected"),
    [(0.1, 100, 10), (0.05, 1000, 50), (0.05, 30, 2), (0.0, 100, 1), (0.5, 3, 2), (0.01, 10, 1)],
)
def test_warmup_steps_round_and_never_drop_below_one(warmup_frac, max_steps, expected) -> None:
    assert warmup_steps(_optim(warmup_frac), max_steps) == expected


def test_lr_exact_values_at_the_landmarks() -> None:
    optim, max_steps = _optim(0.1), 100  # 10 warmup steps, then 90 of cosine
    assert lr_at(0, optim, max_steps) == pytest.approx(PEAK / 10, rel=1e-12)  # first step: 1/10 of the peak
    assert lr_at(4, optim, max_steps) == pytest.approx(PEAK / 2, rel=1e-12)
    assert lr_at(9, optim, max_steps) == pytest.approx(PEAK, rel=1e-12)  # warmup's last step reaches the peak
    assert lr_at(10, optim, max_steps) == pytest.approx(PEAK, rel=1e-12)  # cosine starts at the peak
    assert lr_at(55, optim, max_steps) == pytest.approx((PEAK + FLOOR) / 2, rel=1e-12)  # half-way: the middle
    # the last step trained (99) is one 90th of the cosine short of the floor; max_steps and past it: the floor
    last = FLOOR + (PEAK - FLOOR) * 0.5 * (1 - math.cos(math.pi / 90))
    assert lr_at(99, optim, max_steps) == pytest.approx(last, rel=1e-12)
    assert lr_at(99, optim, max_steps) > FLOOR
    assert lr_at(100, optim, max_steps) == pytest.approx(FLOOR, rel=1e-12)
    assert lr_at(500, optim, max_steps) == pytest.approx(FLOOR, rel=1e-12)
    # a quarter into the cosine: floor + (peak - floor) · (1 + cos(π/4)) / 2 (10 warmup steps, 40 of cosine)
    quarter = FLOOR + (PEAK - FLOOR) * (1 + math.sqrt(0.5)) / 2
    assert lr_at(20, _optim(0.2), 50) == pytest.approx(quarter, rel=1e-12)


def test_floor_follows_min_lr_ratio_and_zero_ratio_decays_to_zero() -> None:
    assert lr_at(100, _optim(0.1, lr=2e-3, min_lr_ratio=0.25), 100) == pytest.approx(5e-4, rel=1e-12)
    assert lr_at(100, _optim(0.1, min_lr_ratio=0.0), 100) == pytest.approx(0.0, abs=1e-18)
    assert lr_at(55, _optim(0.1, min_lr_ratio=0.0), 100) == pytest.approx(PEAK / 2, rel=1e-12)


@pytest.mark.parametrize(
    ("warmup_frac", "max_steps"), [(0.1, 100), (0.05, 1000), (0.0, 7), (0.5, 2), (0.3, 1)]
)
def test_lr_rises_through_warmup_then_never_rises(warmup_frac, max_steps) -> None:
    optim = _optim(warmup_frac)
    warmup = warmup_steps(optim, max_steps)
    values = [lr_at(step, optim, max_steps) for step in range(max_steps + 5)]
    assert all(0 < v <= PEAK + 1e-15 for v in values[:warmup])  # warmup starts from peak / warmup
    assert all(FLOOR - 1e-15 <= v <= PEAK + 1e-15 for v in values[warmup:])
    assert all(a < b for a, b in pairwise(values[:warmup]))
    assert values[warmup - 1] == pytest.approx(PEAK, rel=1e-12)
    assert all(a >= b for a, b in pairwise(values[warmup - 1 :]))
    if max_steps > warmup:  # else the run is all warmup and never decays
        assert values[max_steps] == pytest.approx(FLOOR, rel=1e-12)


def test_mtp_weight_switches_at_the_configured_fraction() -> None:
    mtp = PretrainModelConfig(mtp_lambda=0.3, mtp_lambda_late=0.1, mtp_lambda_switch=0.7)
    assert [mtp_lambda_at(s, mtp, 100) for s in (0, 69, 70, 99)] == [0.3, 0.3, 0.1, 0.1]
    assert [mtp_lambda_at(s, mtp, 30) for s in (20, 21)] == [0.3, 0.1]
    assert [mtp_lambda_at(s, mtp, 10) for s in (6, 7)] == [0.3, 0.1]
    never = PretrainModelConfig(mtp_lambda=0.5, mtp_lambda_late=0.0, mtp_lambda_switch=1.0)
    assert {mtp_lambda_at(s, never, 10) for s in range(10)} == {0.5}
    at_once = PretrainModelConfig(mtp_lambda=0.5, mtp_lambda_late=0.2, mtp_lambda_switch=0.0)
    assert {mtp_lambda_at(s, at_once, 10) for s in range(10)} == {0.2}


# -- the real entry point --------------------------------------------------------------------------------


def _mathforge(*args: str, cwd: Path) -> str:
    """`mathforge ...` through the console script installed next to this Python, importing this checkout."""
    script = Path(sys.executable).parent / "mathforge"
    assert script.is_file(), f"no console script at {script}: pip install -e ."
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    # one torch thread: a tiny model on a shared two-core machine runs several times faster on one
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([str(script), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done.stdout


@pytest.mark.timeout(240)
def test_pretrain_through_the_console_script_leaves_its_artefacts_and_resumes(corpus_dir, tmp_path) -> None:
    out = tmp_path / "run"
    flags = [
        *("train", "pretrain", "--data", str(corpus_dir), "--out", str(out), "--preset", "tiny"),
        *("--max-steps", "6", "--seq-len", "32", "--batch-size", "2", "--vocab-size", "300"),
        *(
            "--device",
            "cpu",
            "--log-every",
            "1",
            "--ckpt-every",
            "2",
            "--lr",
            "2e-3",
            "--warmup-frac",
            "0.34",
        ),
        *("--mtp-depth", "2", "--mtp-lambda-switch", "0.5"),
    ]
    printed = _mathforge(*flags, "--stop-at", "3", cwd=tmp_path)
    assert "trained to step 3: loss" in printed and str(out) in printed
    assert {p.name for p in out.iterdir()} >= {
        "config.json",
        "tokenizer.json",
        "metrics.jsonl",
        "loss_curve.png",
        "tensorboard",
        "checkpoints",
    }
    config = json.loads((out / "config.json").read_text())
    assert config["objective"] == "pretrain" and config["model_config"]["mtp_depth"] == 2
    assert config["config"]["run"]["max_steps"] == 6 and config["config"]["optim"]["lr"] == 2e-3
    assert sorted(p.name for p in (out / "checkpoints").glob("step_*")) == ["step_00000002", "step_00000003"]
    first = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in first] == [1, 2, 3]

    printed = _mathforge(*flags, "--resume", cwd=tmp_path)
    assert "trained to step 6: loss" in printed
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert records[:3] == first  # the resumed run appended, it did not start again
    assert sorted(p.name for p in (out / "checkpoints").glob("step_*"))[-1] == "step_00000006"
    optim = OptimConfig(lr=2e-3, warmup_frac=0.34)  # 2 warmup steps of 6
    assert [r["lr"] for r in records] == pytest.approx([lr_at(s, optim, 6) for s in range(6)], rel=1e-9)
    assert [r["mtp_weight"] for r in records] == [0.3, 0.3, 0.3, 0.1, 0.1, 0.1]
    assert records[3]["tokens"] == 4 * 2 * 32  # the token count carried over the restart
    assert all(
        math.isfinite(r[k]) for r in records for k in ("loss", "main_loss", "mtp_loss_1", "mtp_loss_2")
    )
