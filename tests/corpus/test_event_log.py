"""jobs/event_log.py on the event log of a real Spark application (its own JVM: event logging is fixed at
session start, so the suite's shared session cannot be used)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from jobs.event_log import application_logs, event_log_conf, read_app_cost

pytestmark = pytest.mark.spark

REPO = Path(__file__).resolve().parents[2]

APP = textwrap.dedent(
    """
    import sys
    from pyspark.sql import SparkSession
    from jobs.spark import job_phase

    builder = SparkSession.builder.master("local[2]").appName("event-log-test")
    for kv in sys.argv[2:]:
        key, value = kv.split("=", 1)
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    for rows in (2_000, 200_000):
        df = spark.range(rows, numPartitions=4)
        with job_phase(spark, f"collect {rows}"):
            assert len(df.collect()) == rows
        with job_phase(spark, f"count per key {rows}"):
            assert df.groupBy((df.id % 7).alias("k")).count().count() == 7
    assert spark.sparkContext.getLocalProperty("spark.job.description") is None
    spark.stop()
    """
)


def _run(tmp_path: Path) -> Path:
    events = tmp_path / "events"
    events.mkdir()
    subprocess.run(
        [sys.executable, "-c", APP, "-", *event_log_conf(events)],
        cwd=REPO,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        check=True,
        capture_output=True,
        timeout=240,
    )
    (log,) = application_logs(events)
    return log


def test_phases_tasks_and_driver_bound_bytes(tmp_path) -> None:
    app = read_app_cost(_run(tmp_path))
    phases = app.by_phase()
    sizes = (2_000, 200_000)
    assert set(phases) == {f"{verb} {rows}" for rows in sizes for verb in ("collect", "count per key")}
    assert app.total("failed_tasks") == 0 and app.wall_ms > 0 and app.jobs >= 4
    assert app.tasks == sum(p["tasks"] for p in phases.values())
    for rows in sizes:
        assert phases[f"collect {rows}"]["tasks"] == 4  # one per partition of spark.range
        assert phases[f"count per key {rows}"]["shuffle_write_bytes"] > 0
    # a collect sends every row to the driver: its bytes grow with the rows (8 bytes a long at least) ...
    collected = [phases[f"collect {rows}"]["result_bytes"] for rows in sizes]
    assert collected[1] - collected[0] >= 8 * (sizes[1] - sizes[0]) * 0.5
    # ... a count per key does not
    counted = [phases[f"count per key {rows}"]["result_bytes"] for rows in sizes]
    assert counted[1] < 2 * counted[0]
