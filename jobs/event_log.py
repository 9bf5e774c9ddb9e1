"""What a Spark application cost, read from its event log: tasks, bytes returned to the driver, shuffle.

Spark writes one JSON event per line when `spark.eventLog.enabled` is on (`spark.eventLog.compress false`
keeps it plain text; a rolling v2 log is a folder `eventlog_v2_<app>/events_<n>_<app>`). The figures here are
the ones a capacity plan and the scale tests need: how many tasks each stage ran, how many bytes tasks sent
back to the driver ("Result Size": a `collect`, an accumulator, a write's commit message), and how much each
stage shuffled, read and wrote. Pure JSON, no Spark needed: the tests read logs of finished runs.

    mathforge corpus build ... --conf spark.eventLog.enabled=true --conf spark.eventLog.dir=/tmp/events \\
        --conf spark.eventLog.compress=false
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# Spark settings that make an application leave a plain-text event log in `dir`.
EVENT_LOG_CONF = ("spark.eventLog.enabled=true", "spark.eventLog.compress=false")


def event_log_conf(directory: Path | str) -> list[str]:
    """`--conf KEY=VALUE` values that send an application's event log to `directory` (which must exist)."""
    return [*EVENT_LOG_CONF, f"spark.eventLog.dir={Path(directory).resolve().as_uri()}"]


@dataclass
class StageCost:
    """One stage's totals over its successful and failed task attempts."""

    stage_id: int
    name: str
    phase: str = ""  # the description of the job that ran it (`jobs.spark.job_phase`), if any
    tasks: int = 0
    failed_tasks: int = 0
    run_ms: int = 0  # executor run time, summed over tasks
    result_bytes: int = 0  # serialized task results sent to the driver
    shuffle_read_bytes: int = 0
    shuffle_write_bytes: int = 0
    input_bytes: int = 0
    output_bytes: int = 0
    spilled_bytes: int = 0


@dataclass
class AppCost:
    """One application's totals, and its stages in the order they completed."""

    app_id: str = ""
    wall_ms: int = 0
    jobs: int = 0
    stages: list[StageCost] = field(default_factory=list)

    def total(self, name: str) -> int:
        return sum(getattr(s, name) for s in self.stages)

    @property
    def tasks(self) -> int:
        return self.total("tasks")

    @property
    def result_bytes(self) -> int:
        return self.total("result_bytes")

    @property
    def max_stage_tasks(self) -> int:
        return max((s.tasks for s in self.stages), default=0)

    def by_phase(self) -> dict[str, dict[str, int]]:
        """Stage totals summed per phase, in the order phases first completed a stage."""
        phases: dict[str, dict[str, int]] = {}
        for stage in self.stages:
            totals = phases.setdefault(stage.phase or "other", {})
            for name, value in asdict(stage).items():
                if isinstance(value, int) and name != "stage_id":
                    totals[name] = totals.get(name, 0) + value
        return phases

    def summary(self) -> dict[str, Any]:
        names = (
            "tasks",
            "failed_tasks",
            "run_ms",
            "result_bytes",
            "shuffle_read_bytes",
            "shuffle_write_bytes",
        )
        more = ("input_bytes", "output_bytes", "spilled_bytes")
        return {
            "app_id": self.app_id,
            "wall_ms": self.wall_ms,
            "jobs": self.jobs,
            "stages": len(self.stages),
            **{n: self.total(n) for n in (*names, *more)},
        }

    def as_dict(self) -> dict[str, Any]:
        return {**self.summary(), "per_stage": [asdict(s) for s in self.stages]}


def event_files(path: Path | str) -> list[Path]:
    """The event files of one application: a plain log file, or the parts of a rolling v2 log folder."""
    path = Path(path)
    if path.is_file():
        return [path]
    parts = sorted(path.glob("events_*"), key=lambda p: int(p.name.split("_")[1]))
    if not parts:
        raise FileNotFoundError(f"no Spark event log in {path}")
    return parts


def application_logs(directory: Path | str) -> list[Path]:
    """Every application's log under `spark.eventLog.dir`, oldest first (in-progress logs included)."""
    logs = [
        p for p in Path(directory).iterdir() if not p.name.startswith(".") and not p.name.endswith(".crc")
    ]
    return sorted(logs, key=lambda p: p.stat().st_mtime)


def _events(path: Path | str) -> Iterator[dict[str, Any]]:
    for part in event_files(path):
        with part.open(encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    yield json.loads(line)


def read_app_cost(path: Path | str) -> AppCost:
    """Sum one application's event log (a file or a v2 folder) per stage."""
    app = AppCost()
    stages: dict[int, StageCost] = {}
    phase_of: dict[int, str] = {}
    start = end = 0
    for event in _events(path):
        kind = event["Event"]
        if kind == "SparkListenerApplicationStart":
            app.app_id, start = event.get("App ID", ""), event["Timestamp"]
        elif kind == "SparkListenerApplicationEnd":
            end = event["Timestamp"]
        elif kind == "SparkListenerJobStart":
            app.jobs += 1
            phase = (event.get("Properties") or {}).get("spark.job.description", "")
            phase_of.update({sid: phase for sid in event.get("Stage IDs", [])})
        elif kind == "SparkListenerTaskEnd":
            stage = stages.setdefault(event["Stage ID"], StageCost(event["Stage ID"], ""))
            _add_task(stage, event)
        elif kind == "SparkListenerStageCompleted":
            info = event["Stage Info"]
            stage = stages.setdefault(info["Stage ID"], StageCost(info["Stage ID"], ""))
            stage.name, stage.phase = info.get("Stage Name", ""), phase_of.get(stage.stage_id, "")
            app.stages.append(stage)
    app.wall_ms = max(0, end - start) if end else 0
    return app


def _add_task(stage: StageCost, event: dict[str, Any]) -> None:
    stage.tasks += 1
    if event.get("Task End Reason", {}).get("Reason") != "Success":
        stage.failed_tasks += 1
    metrics = event.get("Task Metrics") or {}
    shuffle_read = metrics.get("Shuffle Read Metrics", {})
    stage.run_ms += metrics.get("Executor Run Time", 0)
    stage.result_bytes += metrics.get("Result Size", 0)
    stage.shuffle_read_bytes += shuffle_read.get("Remote Bytes Read", 0) + shuffle_read.get(
        "Local Bytes Read", 0
    )
    stage.shuffle_write_bytes += metrics.get("Shuffle Write Metrics", {}).get("Shuffle Bytes Written", 0)
    stage.input_bytes += metrics.get("Input Metrics", {}).get("Bytes Read", 0)
    stage.output_bytes += metrics.get("Output Metrics", {}).get("Bytes Written", 0)
    stage.spilled_bytes += metrics.get("Disk Bytes Spilled", 0)
