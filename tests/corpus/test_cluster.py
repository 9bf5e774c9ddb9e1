"""spark-submit against a real standalone Spark cluster (master + worker on 127.0.0.1), compared with local mode.

The executors run a Python that has the dependencies but *not* mathforge on its path, as on a real cluster
where the code arrives only through the zip the driver ships; the test checks that premise first. An
executor killed mid-job (`jobs.executor_faults`) is replaced by the worker, and the job commits the rows of an
undisturbed run.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from jobs.build_corpus import build_corpus
from jobs.config import CorpusBuildConfig
from jobs.executor_faults import MARKER_ENV, POINT_ENV

pytestmark = [pytest.mark.cluster, pytest.mark.spark]

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CC = "warc/commoncrawl/resiliparse_CC-MAIN-2020-34_sample.warc.gz"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _site_packages() -> str:
    import pyarrow

    return str(Path(pyarrow.__file__).resolve().parents[1])


def _executor_python(root: Path) -> Path:
    """A bare venv whose only link to the dependencies is a path entry (no .pth processing: no mathforge)."""
    env_dir = root / "executor-env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True)
    site = next(env_dir.glob("lib/python3*/site-packages"))
    (site / "deps.pth").write_text(_site_packages() + "\n")
    return env_dir / "bin" / "python"


def _wait_for_worker(webui_port: int, procs: list[subprocess.Popen], deadline_s: float = 180) -> None:
    """Poll the master's JSON status until a worker is alive (or a process died)."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        for p in procs:
            if p.poll() is not None:
                raise RuntimeError(f"{p.args} exited with {p.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{webui_port}/json/", timeout=2) as resp:
                if json.load(resp).get("aliveworkers", 0) >= 1:
                    return
        except OSError:
            pass
        time.sleep(0.5)  # polling interval of a condition, not a synchronisation guess
    raise TimeoutError("the Spark worker did not register with the master")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("cluster")
    port, webui, worker_ui = _free_port(), _free_port(), _free_port()
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_NO_DAEMONIZE": "1"}
    spark_class = str(BIN / "spark-class")
    logs = [(root / "master.log").open("wb"), (root / "worker.log").open("wb")]
    master = subprocess.Popen(
        [
            spark_class,
            "org.apache.spark.deploy.master.Master",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--webui-port",
            str(webui),
        ],
        env=env,
        cwd=root,
        stdout=logs[0],
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    worker = subprocess.Popen(
        [
            spark_class,
            "org.apache.spark.deploy.worker.Worker",
            f"spark://127.0.0.1:{port}",
            "--cores",
            "2",
            "--memory",
            "2g",
            "--webui-port",
            str(worker_ui),
            "--work-dir",
            str(root / "work"),
        ],
        env=env,
        cwd=root,
        stdout=logs[1],
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _wait_for_worker(webui, [master, worker])
        yield {"url": f"spark://127.0.0.1:{port}", "root": root, "python": _executor_python(root)}
    finally:
        for proc in (worker, master):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in (worker, master):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for fh in logs:
            fh.close()
    assert master.poll() is not None and worker.poll() is not None


def _rows(out: Path, table: str = "data") -> list[dict]:
    return sorted(ds.dataset(out / table, format="parquet").to_table().to_pylist(), key=lambda r: r["id"])


def _submit(cluster: dict, job: str, args: list[str], cwd: Path, conf: tuple[str, ...] = ()):
    """`spark-submit jobs/<job>` on the cluster, its executors on the code-less Python."""
    cmd = [
        str(BIN / "spark-submit"),
        "--master",
        cluster["url"],
        "--conf",
        f"spark.pyspark.python={cluster['python']}",
        "--conf",
        f"spark.pyspark.driver.python={sys.executable}",
        "--conf",
        "spark.executor.memory=1g",
        *(flag for kv in conf for flag in ("--conf", kv)),
        str(REPO / "jobs" / job),
        *args,
    ]
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"}
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    errors = [line for line in result.stderr.splitlines() if "Error" in line or "Exception" in line]
    assert result.returncode == 0, "\n".join(errors[:30]) + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def local_cc_corpus(spark, shared_data, tmp_path_factory) -> Path:
    """The undisturbed run: `corpus build` of the CC sample in local mode."""
    out = tmp_path_factory.mktemp("local") / "corpus"
    build_corpus(spark, CorpusBuildConfig(input=str(shared_data / CC), output=str(out), min_math_score=0.0))
    return out


def test_spark_submit_on_standalone_cluster_equals_local_mode(
    cluster, local_cc_corpus, shared_data, tmp_path
):
    executor_python = cluster["python"]
    # The premise: executors cannot import our code unless the driver ships it.
    probe = subprocess.run([str(executor_python), "-c", "import crawl"], cwd=tmp_path, capture_output=True)
    assert probe.returncode != 0
    assert (
        subprocess.run(
            [str(executor_python), "-c", "import warcio, fasttext, trafilatura"], cwd=tmp_path
        ).returncode
        == 0
    )

    out_cluster = tmp_path / "cluster_corpus"
    args = ["--input", str(shared_data / CC), "--output", str(out_cluster), "--min-math-score", "0"]
    _submit(cluster, "build_corpus.py", args, tmp_path)
    manifest = json.loads((out_cluster / "manifest.json").read_text())
    assert manifest["spark"]["master"] == cluster["url"]

    cluster_rows, local_rows = _rows(out_cluster), _rows(local_cc_corpus)
    assert len(cluster_rows) == 16
    assert cluster_rows == local_rows
    stats_cluster = json.loads((out_cluster / "stats.json").read_text())
    stats_local = json.loads((local_cc_corpus / "stats.json").read_text())
    assert stats_cluster["counters"] == stats_local["counters"]


def test_executor_killed_during_dedup_commits_the_rows_of_an_undisturbed_run(
    cluster, local_cc_corpus, shared_data, tmp_path
):
    """The executor dies (SIGKILL, as a reclaimed spot instance) while near dedup computes signatures from
    the exact step's output: with `localCheckpoint` that output died with it and the run failed; from the
    scratch tables the lost tasks are simply run again on the executor the worker starts instead."""
    marker = tmp_path / "executor-killed"
    work = cluster["root"] / "work"
    apps_before = set(work.glob("app-*"))
    out = tmp_path / "corpus"
    args = ["--input", str(shared_data / CC), "--output", str(out), "--min-math-score", "0"]
    fault = (f"spark.executorEnv.{POINT_ENV}=signatures", f"spark.executorEnv.{MARKER_ENV}={marker}")
    _submit(cluster, "build_corpus.py", args, tmp_path, conf=fault)

    assert marker.is_file()  # the fault fired, once
    (app,) = set(work.glob("app-*")) - apps_before
    assert len([p for p in app.iterdir() if p.is_dir()]) == 2  # the killed executor and its replacement
    assert _rows(out) == _rows(local_cc_corpus)
    assert _rows(out, "removed") == _rows(local_cc_corpus, "removed")
    assert not list(out.resolve().glob("dedup-scratch"))


def test_iterate_on_standalone_cluster_equals_local_mode(cluster, spark, shared_data, tmp_path):
    """`corpus iterate` via spark-submit: the pool pass and every round's scoring run in the executors."""
    from jobs.config import IterateConfig
    from jobs.iterate_corpus import iterate_corpus
    from samplecrawl.planted_web import seed_texts

    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text("".join(json.dumps({"text": t}) + "\n" for t in seed_texts(30)))
    warc = shared_data / CC
    loop_args = [
        "--seeds",
        str(seeds),
        "--rounds",
        "2",
        "--epoch",
        "10",
        "--bucket",
        "20000",
        "--min-score",
        "0.3",
    ]
    out_cluster = tmp_path / "cluster_loop"
    _submit(
        cluster,
        "iterate_corpus.py",
        ["--input", str(warc), "--output", str(out_cluster), *loop_args],
        tmp_path,
    )
    assert json.loads((out_cluster / "manifest.json").read_text())["spark"]["master"] == cluster["url"]
    assert (out_cluster / "rounds" / "1" / "report.json").is_file()

    out_local = tmp_path / "local_loop"
    config = IterateConfig(
        input=str(warc),
        output=str(out_local),
        seeds=str(seeds),
        rounds=2,
        epoch=10,
        bucket=20000,
        min_score=0.3,
    )
    iterate_corpus(spark, config)
    for n in (1, 2):
        cluster_scores = _scores(out_cluster / "rounds" / str(n) / "scores")
        if cluster_scores is None:  # converged after round 1
            continue
        assert cluster_scores == _scores(out_local / "rounds" / str(n) / "scores")
    assert _rows(out_cluster) == _rows(out_local)


def _scores(folder: Path) -> dict | None:
    if not folder.is_dir():
        return None
    table = ds.dataset(folder, format="parquet").to_table()
    return dict(zip(table.column("id").to_pylist(), table.column("score").to_pylist(), strict=True))
