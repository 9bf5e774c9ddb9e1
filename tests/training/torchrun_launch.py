"""Starting two CPU ranks with torchrun for the distributed tests (gloo), killed as a group on timeout."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def torchrun(script: list[str], timeout: float = 240) -> None:
    """`torchrun --standalone --nproc-per-node 2 SCRIPT...` from the repository root; on timeout the whole
    process group goes, workers included; a failure shows the ranks' errors."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [*launcher, *script],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    errors = [line for line in stderr.splitlines() if "Error" in line or "error:" in line]
    assert proc.returncode == 0, "\n".join(errors[:20]) + "\n...\n" + stderr[-3000:]


# The tiny pretraining run the distributed tests compare: 4 steps, 2 micro-batches, a parameter digest per rank.
PRETRAIN_FLAGS = (
    "--max-steps 4 --seq-len 32 --batch-size 2 --grad-accum 2 --vocab-size 400 --device cpu --log-every 1 "
    "--rank-logs"
)


def pretrain_ranks(data: Path, out: Path, extra: str = "") -> None:
    """Two ranks of `python -m training.objectives.pretrain` on `data` into `out`, `extra` flags appended."""
    module = ["-m", "training.objectives.pretrain", "--data", str(data), "--out", str(out)]
    torchrun([*module, *PRETRAIN_FLAGS.split(), *extra.split()])
