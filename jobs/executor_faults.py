"""Fault injection for the executor-loss test: kill the executor a task runs in, once, at a named point.

    spark-submit --conf spark.executorEnv.MATHFORGE_KILL_EXECUTOR_AT=signatures \
                 --conf spark.executorEnv.MATHFORGE_KILL_EXECUTOR_MARKER=/shared/killed ...

The first task to reach the point creates the marker file (on storage every executor sees) and SIGKILLs its
executor JVM, as a reclaimed spot instance or a crashed node would; every later attempt finds the marker
and goes on, so the job must survive exactly one executor loss. Only a cluster executor is killed: in local
mode the JVM is the driver, and the point does nothing.
"""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

log = logging.getLogger(__name__)

POINT_ENV = "MATHFORGE_KILL_EXECUTOR_AT"
MARKER_ENV = "MATHFORGE_KILL_EXECUTOR_MARKER"
EXECUTOR_MAIN = b"org.apache.spark.executor.CoarseGrainedExecutorBackend"


def executor_loss_point(name: str) -> None:
    """Kill this task's executor here if `MATHFORGE_KILL_EXECUTOR_AT=name` and the marker does not exist."""
    if os.environ.get(POINT_ENV) != name:
        return
    marker = os.environ.get(MARKER_ENV)
    if not marker:
        raise RuntimeError(f"{POINT_ENV}={name} needs {MARKER_ENV} (a file path every executor can see)")
    jvm = executor_jvm(os.getpid())
    if jvm is None:
        log.warning(
            "%s=%s: no executor JVM above this process (local mode?); nothing killed", POINT_ENV, name
        )
        return
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return  # fired already: this is a later attempt
    os.write(fd, f"{name} {jvm}\n".encode())
    os.close(fd)
    os.kill(jvm, signal.SIGKILL)


def executor_jvm(pid: int) -> int | None:
    """The pid of the executor JVM among `pid`'s ancestors (a Python worker's parent is the pyspark daemon,
    whose parent is the JVM), or None; Linux /proc."""
    while pid > 1:
        proc = Path("/proc") / str(pid)
        try:
            if EXECUTOR_MAIN in (proc / "cmdline").read_bytes():
                return pid
            stat = (proc / "stat").read_text()
        except OSError:
            return None
        pid = int(stat.rsplit(")", 1)[1].split()[1])  # the field after the (command) is the state, then ppid
    return None
