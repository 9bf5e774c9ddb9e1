"""spark-submit against a real standalone Spark cluster (master + worker on 127.0.0.1), compared with local mode.

The executors run a Python that has the dependencies but *not* mathforge on its path, as on a real cluster
where the code arrives only through the zip the driver ships; the test checks that premise first.
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


def _rows(out: Path) -> list[dict]:
    return sorted(ds.dataset(out / "data", format="parquet").to_table().to_pylist(), key=lambda r: r["id"])


def test_spark_submit_on_standalone_cluster_equals_local_mode(cluster, spark, shared_data, tmp_path):
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

    warc = shared_data / CC
    out_cluster = tmp_path / "cluster_corpus"
    cmd = [
        str(BIN / "spark-submit"),
        "--master",
        cluster["url"],
        "--conf",
        f"spark.pyspark.python={executor_python}",
        "--conf",
        f"spark.pyspark.driver.python={sys.executable}",
        "--conf",
        "spark.executor.memory=1g",
        str(REPO / "jobs" / "build_corpus.py"),
        "--input",
        str(warc),
        "--output",
        str(out_cluster),
        "--min-math-score",
        "0",
    ]
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"}
    result = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    errors = [line for line in result.stderr.splitlines() if "Error" in line or "Exception" in line]
    assert result.returncode == 0, "\n".join(errors[:30])
    manifest = json.loads((out_cluster / "manifest.json").read_text())
    assert manifest["spark"]["master"] == cluster["url"]

    out_local = tmp_path / "local_corpus"
    build_corpus(spark, CorpusBuildConfig(input=str(warc), output=str(out_local), min_math_score=0.0))
    cluster_rows, local_rows = _rows(out_cluster), _rows(out_local)
    assert len(cluster_rows) == 16
    assert cluster_rows == local_rows
    stats_cluster = json.loads((out_cluster / "stats.json").read_text())
    stats_local = json.loads((out_local / "stats.json").read_text())
    assert stats_cluster["counters"] == stats_local["counters"]


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
        str(REPO / "jobs" / "iterate_corpus.py"),
        "--input",
        str(warc),
        "--output",
        str(out_cluster),
        *loop_args,
    ]
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"}
    result = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    errors = [line for line in result.stderr.splitlines() if "Error" in line or "Exception" in line]
    assert result.returncode == 0, "\n".join(errors[:30]) + result.stderr[-3000:]
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
