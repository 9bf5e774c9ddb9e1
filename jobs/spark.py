"""Spark plumbing shared by the jobs: the session, dict/list accumulators, and shipping our code to executors.

The session's configuration belongs to the user: mathforge's settings are defaults under spark-defaults.conf
and `spark-submit --conf`, and a command's own `--conf KEY=VALUE` is applied last (`session_conf`).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from pyspark import AccumulatorParam, SparkConf, SparkContext
from pyspark.sql import SparkSession

from crawl import remote
from jobs.config import Preflight

# What executors import: the page code and the jobs. Not `samplecrawl` (the generated crawl's text tables, used
# by the driver-side demo only) nor `mathforge` (the command line, which runs on the driver).
EXECUTOR_PACKAGES = ("crawl", "classifiers", "pipeline", "jobs")
C = TypeVar("C")
R = TypeVar("R")


class CounterParam(AccumulatorParam):
    """Accumulates `{name: count}` dicts: each task adds its Counter once, at the end of its partition."""

    def zero(self, value: dict) -> dict:
        return {}

    def addInPlace(self, acc: dict, other: dict) -> dict:
        for key, count in other.items():
            acc[key] = acc.get(key, 0) + count
        return acc


class ListParam(AccumulatorParam):
    """Accumulates small per-task records (one summary per input file)."""

    def zero(self, value: list) -> list:
        return []

    def addInPlace(self, acc: list, other: list) -> list:
        acc.extend(other)
        return acc


def is_local(master: str) -> bool:
    return master.startswith("local")


# mathforge's own Spark settings. They are defaults, never impositions: a key the user set in
# spark-defaults.conf or with `spark-submit --conf` (or PYSPARK_SUBMIT_ARGS) keeps the user's value, and a
# `--conf KEY=VALUE` given to a mathforge command overrides everything (README "Spark configuration").
SPARK_DEFAULTS: dict[str, str] = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.parquet.compression.codec": "zstd",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.ui.showConsoleProgress": "true",
    "spark.ui.enabled": "false",
    "spark.python.worker.reuse": "true",
    "spark.task.maxFailures": "2",
}


def parse_conf(items: Iterable[str]) -> dict[str, str]:
    """`--conf KEY=VALUE` values as settings, split at the first `=` (a value may hold `=` and commas); a
    later use of a key wins, as with spark-submit. Only `spark.*` keys: Spark ignores any other, so a typo
    would silently change nothing."""
    conf: dict[str, str] = {}
    for item in items:
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise ValueError(f"--conf takes KEY=VALUE, got {item!r}")
        if not key.startswith("spark."):
            raise ValueError(
                f"--conf {key}: Spark settings start with 'spark.' (Spark ignores any other key)"
            )
        conf[key] = value
    return conf


def session_conf(
    defaults: Mapping[str, str], user: Mapping[str, str], explicit: Mapping[str, str]
) -> dict[str, str]:
    """What mathforge sets on the session builder: each default the user has not set, then the explicit
    settings (`--conf`), which win over both. The user's own settings are not repeated: Spark holds them
    already, and a builder value would override them."""
    return {key: value for key, value in defaults.items() if key not in user} | dict(explicit)


def user_spark_conf(explicit: Mapping[str, str]) -> dict[str, str]:
    """The settings the user gave Spark before mathforge (spark-defaults.conf, spark-submit's `--conf` or
    PYSPARK_SUBMIT_ARGS): the driver JVM holds them as system properties, which `SparkConf()` loads.

    Outside spark-submit this starts the JVM (not yet a context) with only the explicit settings, so that
    launch-time ones such as `spark.driver.memory` take effect, and none of mathforge's defaults are mistaken
    for the user's. Under spark-submit, or with a context already running, the JVM is the one there is.
    """
    launch = SparkConf(loadDefaults=False).setAll(list(explicit.items()))
    SparkContext._ensure_initialized(conf=launch)  # public API has no "gateway only"; stable since Spark 1
    return dict(SparkConf().getAll())


def get_spark(master: str | None, app_name: str, extra_conf: Mapping[str, str] | None = None) -> SparkSession:
    """A session with the settings the jobs rely on (UTC timestamps, zstd Parquet, this Python on executors,
    this environment's `crawl.remote` settings on executors) as defaults the user's Spark configuration
    overrides; `extra_conf` (a command's `--conf`) overrides everything.

    Under spark-submit the master is already set; pass `master=None` to keep it.
    """
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    explicit = dict(extra_conf or {})
    # the remote-reading settings (retries, timeouts, S3 endpoint and anonymity) reach cluster executors
    remote_env = {f"spark.executorEnv.{k}": v for k, v in remote.settings_env().items()}
    conf = session_conf(SPARK_DEFAULTS | remote_env, user_spark_conf(explicit), explicit)
    builder = SparkSession.builder.appName(app_name)
    if master:
        builder = builder.master(master)
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


def build_pyfiles_zip(dest_dir: str | os.PathLike[str] | None = None) -> Path:
    """Zip the packages executors import (`EXECUTOR_PACKAGES`, not their dependencies) for `--py-files` /
    `addPyFile`.

    On a cluster the executors do not share the driver's environment; the dependencies come from the
    executor image, our code from this zip.
    """
    root = Path(__file__).resolve().parents[1]
    dest = Path(dest_dir or tempfile.mkdtemp(prefix="mathforge-pyfiles-")) / "mathforge_pkgs.zip"
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
        for package in EXECUTOR_PACKAGES:
            for path in sorted((root / package).rglob("*.py")):
                zf.write(path, path.relative_to(root).as_posix())
    return dest


def ship_code(spark: SparkSession) -> None:
    """Send our packages to the executors unless they run in this very process (local mode); once per
    context (a job that runs another job, like `corpus iterate` running `corpus build`, ships it once)."""
    sc = spark.sparkContext
    if not is_local(sc.master) and not getattr(sc, "_mathforge_code_shipped", False):
        sc.addPyFile(str(build_pyfiles_zip()))
        sc._mathforge_code_shipped = True


@contextmanager
def job_phase(spark: SparkSession, name: str) -> Iterator[None]:
    """Name the Spark jobs started inside (the UI's description, the event log's `spark.job.description`):
    the event log then sums each phase's tasks, shuffle and driver-bound bytes (`jobs.event_log`)."""
    sc = spark.sparkContext
    previous = sc.getLocalProperty("spark.job.description")
    sc.setJobDescription(name)
    try:
        yield
    finally:
        sc.setLocalProperty("spark.job.description", previous)  # type: ignore[arg-type]


def launched_by_spark_submit() -> bool:
    """spark-submit starts the Python driver with a gateway already running; its --master then wins."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def run_job(job: Callable[[SparkSession, C], R], config: C, app_name: str) -> R:
    """Check the config (`Preflight`), start a session (or join spark-submit's), run `job(spark, config)`,
    stop the session."""
    conf = parse_conf(getattr(config, "conf", ()))  # a malformed --conf fails before the JVM starts
    if isinstance(config, Preflight):
        config.preflight()
    master = None if launched_by_spark_submit() else getattr(config, "master", "local[*]")
    spark = get_spark(master, getattr(config, "app_name", app_name), conf)
    try:
        return job(spark, config)
    finally:
        spark.stop()


def job_main(
    argv: list[str] | None,
    *,
    prog: str,
    doc: str,
    config_cls: type[C],
    job: Callable[[SparkSession, C], R],
    render: Callable[[R], str],
) -> None:
    """The `spark-submit jobs/<name>.py ...` entry point shared by every job."""
    from typedconfig import add_dataclass_args, dataclass_from_args

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog=prog, description=doc.split("\n\n")[0])
    add_dataclass_args(parser, config_cls)
    config = dataclass_from_args(config_cls, parser.parse_args(argv))
    print(render(run_job(job, config, f"mathforge-{prog.removesuffix('.py')}")))
