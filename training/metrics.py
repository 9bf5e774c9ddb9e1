"""Training metrics: a JSONL log (one object per logged step) mirrored to TensorBoard and/or Weights & Biases,
a loss-curve PNG, and the FLOP arithmetic behind MFU (shared by the training loop and bench/).

The JSONL log is the record of a run; the trackers are views of it. Each tracker is one small class with
`log(step, scalars)` and `close()`, chosen by name with `--log-to` (`TRACKERS`)."""

from __future__ import annotations

import json
import math
import os
import uuid
from pathlib import Path
from typing import Any

from training.config import ModelConfig

METRICS_FILE = "metrics.jsonl"
LOSS_CURVE_FILE = "loss_curve.png"

# Dense bf16 peak FLOP/s by device name; the first substring that matches wins, so specific names come first.
PEAK_BF16_FLOPS: tuple[tuple[str, float], ...] = (
    ("GH200", 989e12),
    ("H200", 989e12),
    ("H100 PCIe", 756e12),
    ("H100", 989e12),
    ("H20", 148e12),
    ("B200", 2250e12),
    ("A100", 312e12),
    ("L40S", 362e12),
    ("L4", 121e12),
    ("A10G", 125e12),
    ("RTX 4090", 165e12),
)


def peak_flops(device_name: str) -> float | None:
    """Peak dense bf16 FLOP/s of a device from its name, or None when unknown (CPUs included)."""
    for key, flops in PEAK_BF16_FLOPS:
        if key.lower() in device_name.lower():
            return flops
    return None


def _block_params(cfg: ModelConfig) -> int:
    attention = cfg.dim * cfg.head_dim * (2 * cfg.n_heads + 2 * cfg.n_kv_heads)
    return attention + 3 * cfg.dim * cfg.ffn_dim


def matmul_params(cfg: ModelConfig, with_mtp: bool = True) -> int:
    """Weights that take part in a matmul per token (the embedding lookup does not; each MTP depth runs the
    shared head again, so it counts once per depth)."""
    main = cfg.n_layers * _block_params(cfg) + cfg.dim * cfg.vocab_size
    mtp = cfg.mtp_depth * (2 * cfg.dim * cfg.dim + _block_params(cfg) + cfg.dim * cfg.vocab_size)
    return main + (mtp if with_mtp else 0)


def flops_per_token(cfg: ModelConfig, seq_len: int, with_mtp: bool = True) -> float:
    """Training FLOPs per token: 6·N for the matmuls plus 12·layers·dim·seq_len for attention scores and
    values (PaLM's accounting, full rather than causal attention, document masking ignored)."""
    layers = cfg.n_layers + (cfg.mtp_depth if with_mtp else 0)
    return 6.0 * matmul_params(cfg, with_mtp) + 12.0 * layers * cfg.n_heads * cfg.head_dim * seq_len


def mfu(tokens_per_s: float, flops_per_tok: float, peak: float | None) -> float | None:
    return None if not peak else tokens_per_s * flops_per_tok / peak


class TensorBoardTracker:
    """Scalars under <run_dir>/tensorboard."""

    def __init__(self, run_dir: Path, config: dict[str, Any], resumed: bool) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self._writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))

    def log(self, step: int, scalars: dict[str, float]) -> None:
        for key, value in scalars.items():
            self._writer.add_scalar(key, value, step)

    def close(self) -> None:
        self._writer.close()


class WandbTracker:
    """One W&B run per run directory: its id is kept in <run_dir>/wandb_run_id, so a resumed training run
    continues the same W&B run. Project and entity come from W&B's own environment (`WANDB_PROJECT`,
    default "mathforge"; `WANDB_ENTITY`); `WANDB_MODE=offline` writes it under <run_dir>/wandb to sync later."""

    ID_FILE = "wandb_run_id"

    def __init__(self, run_dir: Path, config: dict[str, Any], resumed: bool) -> None:
        import wandb

        id_file = run_dir / self.ID_FILE
        run_id = id_file.read_text().strip() if resumed and id_file.is_file() else uuid.uuid4().hex[:12]
        id_file.write_text(run_id + "\n")
        self._run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "mathforge"),
            name=run_dir.resolve().name,
            id=run_id,
            resume="allow",
            dir=str(run_dir),
            config=config,
            reinit="create_new",
        )

    def log(self, step: int, scalars: dict[str, float]) -> None:
        self._run.log(scalars, step=step)

    def close(self) -> None:
        self._run.finish()


TRACKERS: dict[str, type[TensorBoardTracker] | type[WandbTracker]] = {
    "tensorboard": TensorBoardTracker,
    "wandb": WandbTracker,
}


class MetricsLogger:
    """Appends one JSON object per logged step to <run_dir>/metrics.jsonl and mirrors the finite numbers to
    the trackers named in `log_to` (`TRACKERS`).

    On resume, records past the resumed step (logged after the checkpoint by the interrupted run) are dropped
    so the log reads as one uninterrupted run.
    """

    def __init__(
        self,
        run_dir: str | Path,
        resume_step: int | None = None,
        log_to: tuple[str, ...] = ("tensorboard",),
        config: dict[str, Any] | None = None,
    ) -> None:
        unknown = sorted(set(log_to) - set(TRACKERS))
        if unknown:
            raise ValueError(f"unknown tracker(s) {', '.join(unknown)}; choose from {', '.join(TRACKERS)}")
        run_dir = Path(run_dir)
        self.path = run_dir / METRICS_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is None:
            self.path.write_text("")
        else:
            kept = [r for r in read_metrics(self.path) if r.get("step", -1) <= resume_step]
            self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))
        self._file = open(self.path, "a")  # noqa: SIM115 - kept open for the whole run, closed in close()
        self._trackers = [TRACKERS[name](run_dir, config or {}, resume_step is not None) for name in log_to]

    def log(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        scalars = {
            key: value
            for key, value in record.items()
            if key != "step" and isinstance(value, int | float) and math.isfinite(value)
        }
        for tracker in self._trackers:
            tracker.log(record["step"], scalars)

    def close(self) -> None:
        self._file.close()
        for tracker in self._trackers:
            tracker.close()


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_curves(metrics_path: str | Path, run_dir: str | Path, curves: dict[str, list[str]]) -> list[Path]:
    """One PNG per entry of `curves` (file name → metric keys), each key plotted against step from the JSONL
    log; keys missing from the log are left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(metrics_path)
    if not records:
        raise ValueError(f"no metrics in {metrics_path} to plot")
    written = []
    for name, keys in curves.items():
        fig, ax = plt.subplots(figsize=(7, 4))
        for key in keys:
            points = [(r["step"], r[key]) for r in records if isinstance(r.get(key), int | float)]
            if points:
                ax.plot(*zip(*points, strict=True), label=key)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(Path(run_dir) / name, dpi=120)
        plt.close(fig)
        written.append(Path(run_dir) / name)
    return written
