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
    logger = MetricsLogger(tmp_path, log_to=())
    for step in range(1, 6):
        logger.log({"step": step, "loss": 5.0 - step})
    logger.close()
    logger = MetricsLogger(tmp_path, resume_step=3, log_to=())
    logger.log({"step": 4, "loss": 0.5})
    logger.close()
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert records[-1]["loss"] == 0.5


def test_loss_curve_is_a_png(tmp_path) -> None:
    logger = MetricsLogger(tmp_path, log_to=("tensorboard",))
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


def test_trackers_are_named_in_one_place() -> None:
    from training.config import TRACKER_NAMES, RunConfig
    from training.metrics import TRACKERS

    assert set(TRACKERS) == set(TRACKER_NAMES)
    assert RunConfig(out="x", log_to=("none",)).log_to == ()
    with pytest.raises(ValueError, match="log_to takes"):
        RunConfig(out="x", log_to=("mlflow",))
    with pytest.raises(ValueError, match="unknown tracker"):
        MetricsLogger("unused", log_to=("mlflow",))


def test_wandb_receives_every_logged_number_and_a_resume_continues_its_run(tmp_path, monkeypatch) -> None:
    """Offline W&B (no server): the run files hold the JSONL log's numbers at their steps and the config;
    a resumed logger reopens the same W&B run id, so the run's history reads as one."""
    from wandb_files import read_offline_runs

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    logger = MetricsLogger(tmp_path, log_to=("wandb",), config={"optim": {"lr": 2e-5}})
    for step in range(1, 4):
        logger.log({"step": step, "loss": 4.0 - step, "nan": float("nan"), "note": "text"})
    logger.close()
    logger = MetricsLogger(tmp_path, resume_step=2, log_to=("wandb",), config={"optim": {"lr": 2e-5}})
    logger.log({"step": 3, "loss": 0.5})
    logger.close()

    first, resumed = read_offline_runs(tmp_path)
    assert first["id"] == resumed["id"] == (tmp_path / "wandb_run_id").read_text().strip()
    assert first["config"]["optim"] == {"lr": 2e-5}
    assert first["history"] == [{"step": 1, "loss": 3.0}, {"step": 2, "loss": 2.0}, {"step": 3, "loss": 1.0}]
    assert resumed["history"] == [{"step": 3, "loss": 0.5}]
    assert [r["loss"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [3.0, 2.0, 0.5]
