"""Spark configuration belongs to the user (issue 23, item 4): mathforge's settings are defaults under
spark-defaults.conf and `spark-submit --conf`, and a command's `--conf KEY=VALUE` is applied over all of them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jobs.spark import SPARK_DEFAULTS, parse_conf, session_conf
from mathforge.cli import build_parser

REPO = Path(__file__).resolve().parents[2]


def test_the_users_conf_wins_over_the_defaults_and_conf_flags_win_over_both():
    defaults = {
        "spark.task.maxFailures": "2",
        "spark.ui.enabled": "false",
        "spark.sql.session.timeZone": "UTC",
    }
    user = {
        "spark.task.maxFailures": "8",
        "spark.sql.session.timeZone": "Europe/Paris",
        "spark.user.only": "x",
    }
    explicit = {"spark.sql.session.timeZone": "Asia/Tokyo", "spark.speculation": "true"}

    assert session_conf(defaults, user, explicit) == {
        "spark.ui.enabled": "false",  # the user said nothing: mathforge's default
        "spark.sql.session.timeZone": "Asia/Tokyo",  # --conf over the user's and mathforge's values
        "spark.speculation": "true",
    }  # maxFailures and spark.user.only are the user's: not set again, so Spark keeps the user's values
    assert session_conf(defaults, {}, {}) == defaults
    assert session_conf(defaults, defaults, {}) == {}


def test_conf_values_split_at_the_first_equals_sign_and_keep_their_commas():
    assert parse_conf(
        [
            "spark.driver.extraJavaOptions=-Da=1,-Db=x=y",
            "spark.task.maxFailures=4",
            "spark.task.maxFailures=5",
        ]
    ) == {"spark.driver.extraJavaOptions": "-Da=1,-Db=x=y", "spark.task.maxFailures": "5"}
    assert parse_conf(["spark.executorEnv.EMPTY="]) == {"spark.executorEnv.EMPTY": ""}
    for bad in ("spark.task.maxFailures", "=5", "task.maxFailures=5"):
        with pytest.raises(ValueError, match="--conf"):
            parse_conf([bad])


@pytest.mark.parametrize(
    "command",
    [
        ["corpus", "build", "--output", "o"],
        ["corpus", "refresh", "--corpus", "c"],
        ["corpus", "dedup", "--input", "i", "--output", "o"],
        ["corpus", "iterate", "--seeds", "s", "--output", "o"],
        ["classifier", "train", "--output", "o"],
    ],
)
def test_every_spark_command_takes_repeated_conf_flags_with_commas(command):
    flags = ["--conf", "spark.driver.extraJavaOptions=-Da=1,-Db=2", "--conf", "spark.task.maxFailures=5"]
    args = build_parser().parse_args(command + flags)
    assert args.conf == ("spark.driver.extraJavaOptions=-Da=1,-Db=2", "spark.task.maxFailures=5")
    assert build_parser().parse_args(command).conf == ()


# Runs in a fresh interpreter: the shared test session's JVM already exists, and spark-defaults.conf and
# PYSPARK_SUBMIT_ARGS are read only when a JVM is launched. The command line is parsed by the real parser.
SESSION_SCRIPT = """
import json, sys
from jobs.spark import run_job
from mathforge.cli import build_parser
from typedconfig import dataclass_from_args
from jobs.config import CorpusDedupConfig

args = build_parser().parse_args(sys.argv[1:])
def settings(spark, config):
    conf = spark.sparkContext.getConf()
    keys = ["spark.task.maxFailures", "spark.python.worker.reuse", "spark.ui.enabled",
            "spark.speculation.multiplier", "spark.driver.extraJavaOptions", "spark.app.name"]
    out = {key: conf.get(key) for key in keys}
    out["spark.sql.session.timeZone"] = spark.conf.get("spark.sql.session.timeZone")
    out["driver_props"] = spark.sparkContext._jvm.System.getProperty("mathforge.test")
    return out
print("RESULT " + json.dumps(run_job(settings, dataclass_from_args(CorpusDedupConfig, args), "t")))
"""


@pytest.mark.spark
def test_spark_defaults_and_submit_conf_survive_and_conf_flags_win(tmp_path):
    conf_dir = tmp_path / "conf"
    conf_dir.mkdir()
    (conf_dir / "spark-defaults.conf").write_text(
        "spark.sql.session.timeZone America/New_York\nspark.speculation.multiplier 3\n"
        "spark.task.maxFailures 9\n",
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYSPARK_GATEWAY")}
    env["SPARK_CONF_DIR"] = str(conf_dir)
    # what `spark-submit --conf` does for a plain-Python driver: these become the JVM's spark.* properties
    env["PYSPARK_SUBMIT_ARGS"] = (
        "--conf spark.python.worker.reuse=false --conf spark.task.maxFailures=7 pyspark-shell"
    )
    argv = [
        "corpus",
        "dedup",
        "--input",
        "i",
        "--output",
        "o",
        "--master",
        "local[1]",
        "--app-name",
        "conf-test",
    ]
    argv += [
        "--conf",
        "spark.task.maxFailures=5",
        "--conf",
        "spark.driver.extraJavaOptions=-Dmathforge.test=a,b",
    ]
    done = subprocess.run(
        [sys.executable, "-c", SESSION_SCRIPT, *argv],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    got = json.loads(lines[-1].removeprefix("RESULT "))

    assert got["spark.task.maxFailures"] == "5"  # --conf over spark-submit's 7, spark-defaults' 9, ours 2
    assert got["spark.python.worker.reuse"] == "false"  # spark-submit --conf over mathforge's "true"
    assert got["spark.sql.session.timeZone"] == "America/New_York"  # spark-defaults.conf over "UTC"
    assert got["spark.speculation.multiplier"] == "3"  # the user's own setting, untouched
    assert got["spark.ui.enabled"] == SPARK_DEFAULTS["spark.ui.enabled"]  # where the user is silent: ours
    assert got["spark.driver.extraJavaOptions"].endswith(" -Dmathforge.test=a,b")  # Spark prepends its own
    assert got["driver_props"] == "a,b"  # a launch-time setting given by --conf reached the driver JVM
    assert got["spark.app.name"] == "conf-test"
