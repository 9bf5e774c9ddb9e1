"""JSONL metrics that survive a resume, the loss-curve PNG, and the MFU arithmetic."""

from __future__ import annotations

import pytest

from training.config import model_config
from training.metrics import (
    MetricsLogger,
    flops_per_token,
    matmul_params,
    mfu,
    peak_flops,
    plot_curves,
    read_metrics,
)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("NVIDIA H100 80GB HBM3", 989e12),
        ("NVIDIA H100 PCIe", 756e12),
        ("NVIDIA H200", 989e12),
        ("NVIDIA A100-SXM4-80GB", 312e12),
        ("NVIDIA L40S", 362e12),
        ("cpu", None),
    ],
)
def test_peak_flops_by_device_name(name, expected) -> None:
    assert peak_flops(name) == expected


def test_flops_per_token_is_six_n_plus_attention() -> None:
    cfg = model_config("small", 32000, mtp_depth=1)
    without = flops_per_token(cfg, 1024, with_mtp=False)
    with_mtp = flops_per_token(cfg, 1024)
    attention = 12 * cfg.n_layers * cfg.dim * 1024
    assert without == 6 * matmul_params(cfg, with_mtp=False) + attention
    assert with_mtp > without
    assert flops_per_token(cfg, 2048, with_mtp=False) - without == attention  # linear in sequence length
    assert mfu(1000.0, without, None) is None
    assert mfu(1000.0, without, 989e12) == pytest.approx(1000.0 * without / 989e12)


def test_resumed_log_drops_records_after_the_checkpoint(tmp_path) -> None:
    logger = MetricsLogger(tmp_path, tensorboard=False)
    for step in range(1, 6):
        logger.log({"step": step, "loss": 5.0 - step})
    logger.close()
    logger = MetricsLogger(tmp_path, resume_step=3, tensorboard=False)
    logger.log({"step": 4, "loss": 0.5})
    logger.close()
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert records[-1]["loss"] == 0.5


def test_loss_curve_is_a_png(tmp_path) -> None:
    logger = MetricsLogger(tmp_path, tensorboard=True)
    for step in range(1, 4):
        logger.log({"step": step, "loss": 3.0 / step, "main_loss": 2.0 / step, "mtp_loss_1": 2.5 / step})
    logger.close()
    curves = {"curve.png": ["loss", "main_loss", "mtp_loss_1"], "other.png": ["loss"]}
    pngs = plot_curves(tmp_path / "metrics.jsonl", tmp_path, curves)
    assert [p.name for p in pngs] == ["curve.png", "other.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    with pytest.raises(ValueError, match="no metrics"):
        plot_curves(tmp_path / "missing.jsonl", tmp_path, curves)
