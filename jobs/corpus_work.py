"""Resume at file granularity: each input file of a build or refresh is a committed unit, and a file that keeps
bringing its reader down is quarantined instead of wedging the corpus.

The work area survives kill -9 and is found again by the rerun, because it is named by what decides the rows:

    <corpus>.work/<run key>/            digest of the settings that decide a file's rows, the packages' versions
        key.json                        and the version the run builds on (`run_key`); what went into it
        files/<file key>/               sha1 of the input's redacted location, and its name for people
            attempt-<id>.json           written before a process starts reading the file; its outcome after
            rows-<id>.parquet           the rows of the attempt that committed the file
            done.json                   the commit: summary, counters, rows file (temporary file + rename)

A rerun with the same key reads again only the inputs without `done.json` (or whose reading was cut off:
`UNFINISHED_INPUT`); the summary and counters of the others come from their markers, so the stats stay whole
and exact (a file counts once however often its task ran). The version's commit removes the whole folder;
a work area made against an older version is removed by the next run (its key can no longer match).

Each attempt reads its file in a child process forked from the task's Python worker (`run_isolated`), so
a file that kills its reader (the OOM killer's SIGKILL, a segfault in a C library, `os._exit`) or runs past
`--file-time-limit` takes only the child down: the task writes the outcome into the attempt record and
tries again, up to `--max-file-attempts` attempts, all within one task whatever `spark.task.maxFailures`
says (local mode never retries a task). An attempt record without an outcome is one whose whole worker was
lost with it (an executor lost, the run killed): it counts too, so attempts add up across Spark task
retries and reruns. A file whose failed attempts reach the limit is quarantined: its task yields nothing
for it, the job goes on, and the manifest lists it with the reason (`inputs_quarantined`).

Fault injection for the tests, read by the driver and carried to the tasks (`FaultPlan`):
`MATHFORGE_CRASH_ON_FILE=<substring>` makes the process reading a matching input SIGKILL itself as it starts;
`MATHFORGE_CRASH_AT=files:<K>` SIGKILLs the driver (and the task's worker) once K files are committed.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import hashlib
import json
import logging
import multiprocessing
import os
import re
import shutil
import signal
import socket
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from crawl.redact import redact_logs, redact_text, redact_url

log = redact_logs(logging.getLogger(__name__))  # log lines name input locations: no credentials

WORK_SUFFIX = ".work"
KEY_FILE = "key.json"
DONE = "done.json"
ROWS_BATCH = 1000
# Per-file errors after which the file was not read to its end: its marker does not count as committed on a
# rerun, and the manifest lists it as unfinished, not as seen, so the next refresh reads it again.
UNFINISHED_INPUT = frozenset({"input_missing", "input_unreadable", "input_broken_off"})
CRASH_ON_FILE_ENV = "MATHFORGE_CRASH_ON_FILE"
CRASH_AT_ENV = "MATHFORGE_CRASH_AT"
LOST = "the worker reading it was lost (its executor died, or the run was killed)"
_PR_SET_PDEATHSIG = 1


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _write_json_atomic(path: Path, obj: Any, durable: bool = False) -> None:
    """Write through a uniquely named temporary file and a rename: a reader, or a concurrent writer of the
    same path, sees one whole file or the other."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=1, sort_keys=True, default=str)
        if durable:
            fh.flush()
            os.fsync(fh.fileno())
    os.replace(tmp, path)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


# ---------------------------------------------------------------- keys


def run_key(settings: dict[str, Any]) -> str:
    """A short digest of `settings` (JSON-able): equal settings, equal key."""
    blob = json.dumps(settings, sort_keys=True, default=str).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:16]


def file_key(location: str) -> str:
    """The folder name of one input: a digest of its redacted location (so a re-signed URL is the same
    file and no secret reaches a path), then its file name, for whoever looks."""
    shown = redact_url(location)
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", shown.rstrip("/").rsplit("/", 1)[-1])[:48]
    return f"{hashlib.sha1(shown.encode('utf-8')).hexdigest()[:16]}-{name}"


def work_root(corpus: Path) -> Path:
    """`<corpus>.work`: beside the corpus link, never inside a version, never matched by the staging cleanup."""
    return corpus.with_name(f"{corpus.name}{WORK_SUFFIX}")


# ---------------------------------------------------------------- the work area


@dataclasses.dataclass(frozen=True)
class WorkArea:
    """`<corpus>.work/<run key>/`: the committed files of one run's settings (module docstring)."""

    root: Path

    @classmethod
    def open(cls, corpus: Path, settings: dict[str, Any]) -> WorkArea:
        """The work area of `settings` (created if new; its `key.json` records them). Work areas of other
        settings made against another base version can never be resumed: they are removed (the caller holds
        the corpus lock); those of the same base are another configuration's resume point and kept."""
        parent = work_root(corpus)
        area = cls(parent / run_key(settings))
        base = settings.get("base")
        if parent.is_dir():
            for other in sorted(parent.iterdir()):
                if other == area.root or not other.is_dir():
                    continue
                recorded = _read_json(other / KEY_FILE) or {}
                if recorded.get("base") != base:
                    shutil.rmtree(other, ignore_errors=True)
                    log.warning(
                        "removed %s: work of a run against another version, which cannot resume", other
                    )
                else:
                    log.info("left %s: the work of another configuration, resumable with it", other)
        (area.root / "files").mkdir(parents=True, exist_ok=True)
        if not (area.root / KEY_FILE).is_file():
            _write_json_atomic(area.root / KEY_FILE, {**settings, "created_at": _now()})
        return area

    def slot(self, location: str) -> FileSlot:
        return FileSlot(self.root / "files" / file_key(location))

    def committed_count(self) -> int:
        return sum(1 for _ in (self.root / "files").glob(f"*/{DONE}"))

    def discard_if_unused(self) -> None:
        """Remove this work area if no file was attempted in it (a run that failed before reading anything
        leaves nothing behind)."""
        files = self.root / "files"
        if files.is_dir() and not any(files.iterdir()):
            shutil.rmtree(self.root, ignore_errors=True)
            with contextlib.suppress(OSError):
                self.root.parent.rmdir()  # only if empty

    @staticmethod
    def remove(corpus: Path) -> None:
        """Drop every work area of `corpus` (after a commit none can resume: each names an older base)."""
        shutil.rmtree(work_root(corpus), ignore_errors=True)


@dataclasses.dataclass(frozen=True)
class FileSlot:
    """One input's folder in the work area: its attempts, its rows and its commit marker."""

    path: Path

    def done(self) -> dict[str, Any] | None:
        """The commit record, or None when the file was never committed."""
        return _read_json(self.path / DONE)

    def committed(self) -> dict[str, Any] | None:
        """The commit record if it makes reading the file again pointless (the file was read to its end)."""
        done = self.done()
        if done is None or UNFINISHED_INPUT.intersection(done["summary"]["errors"]):
            return None
        return done

    def attempts(self) -> list[dict[str, Any]]:
        """Every attempt record, oldest first."""
        if not self.path.is_dir():
            return []
        found = (_read_json(p) for p in sorted(self.path.glob("attempt-*.json")))
        return sorted((a for a in found if a), key=lambda a: (a.get("started_at", ""), a.get("id", "")))

    def failed_attempts(self) -> list[dict[str, Any]]:
        """Attempts that did not commit the file: with a failure reason, or without any outcome (lost)."""
        done = self.done() or {}
        return [
            a for a in self.attempts() if a.get("outcome") != "committed" and a["id"] != done.get("attempt")
        ]

    def start_attempt(self) -> str:
        """Record an attempt before anything reads the file: if the reader dies, the record stays."""
        self.path.mkdir(parents=True, exist_ok=True)
        attempt = f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%f')}-{uuid.uuid4().hex[:8]}"
        record = {"id": attempt, "started_at": _now(), "host": socket.gethostname(), "pid": os.getpid()}
        _write_json_atomic(self.path / f"attempt-{attempt}.json", {**record, "outcome": None}, durable=True)
        return attempt

    def end_attempt(self, attempt: str, outcome: str) -> None:
        """Record how an attempt ended: "committed", or why it failed."""
        path = self.path / f"attempt-{attempt}.json"
        record = _read_json(path) or {"id": attempt}
        _write_json_atomic(path, {**record, "outcome": outcome, "ended_at": _now()}, durable=True)

    def forget_failures(self) -> None:
        """Give the file fresh attempts (`--retry-quarantined`): its failed attempts' records go."""
        for attempt in self.failed_attempts():
            (self.path / f"attempt-{attempt['id']}.json").unlink(missing_ok=True)

    def discard_unfinished(self) -> None:
        """Forget a commit whose reading was cut off, so that this run reads the file again."""
        done = self.done()
        if done is not None and self.committed() is None:
            (self.path / DONE).unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                (self.path / done["rows_file"]).unlink()

    def commit(self, attempt: str, rows: Iterable[tuple], record: Callable[[int], dict[str, Any]]) -> None:
        """Write `rows` to this attempt's Parquet file, then the commit marker `record(n_rows)` names it: the
        file is committed exactly when `done.json` exists. Both fsynced: a marker never outlives its rows."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        from jobs.corpus_schema import COLUMN_NAMES, arrow_schema

        schema = arrow_schema()
        name = f"rows-{attempt}.parquet"
        n_rows = 0
        with pq.ParquetWriter(self.path / name, schema, compression="zstd") as writer:
            for batch in _batches(rows, ROWS_BATCH):
                columns = list(zip(*batch, strict=True))
                writer.write_table(
                    pa.table(
                        {
                            c: pa.array(v, schema.field(c).type)
                            for c, v in zip(COLUMN_NAMES, columns, strict=True)
                        }
                    )
                )
                n_rows += len(batch)
        with open(self.path / name, "rb") as fh:
            os.fsync(fh.fileno())
        _write_json_atomic(
            self.path / DONE, {**record(n_rows), "attempt": attempt, "rows_file": name}, durable=True
        )


def _batches(items: Iterable[tuple], size: int) -> Iterator[list[tuple]]:
    batch: list[tuple] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


# ---------------------------------------------------------------- attempts


def quarantine_reason(failed: list[dict[str, Any]]) -> str:
    """What a person reads about a quarantined file: how many attempts failed, and how."""
    reasons = Counter(a.get("outcome") or LOST for a in failed)
    parts = [reason if n == 1 else f"{reason} (x{n})" for reason, n in reasons.most_common()]
    return f"{len(failed)} attempts failed: " + "; ".join(parts)


def exit_reason(exitcode: int | None, message: str | None) -> str:
    """Why a reading process ended without committing, from its exit status and its last word."""
    if message:
        return message
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        cause = {
            "SIGKILL": "out of memory (the OOM killer), or killed from outside",
            "SIGSEGV": "a segmentation fault, in a C library",
            "SIGBUS": "a bus error, in a C library",
            "SIGABRT": "an abort, in a C library",
        }.get(name, "")
        return f"the process reading it died of {name}" + (f": {cause}" if cause else "")
    return f"the process reading it exited with code {exitcode} without committing it"


def _die_with_parent(parent: int) -> None:
    """The reading process must not outlive the task's worker (Spark kills workers with SIGKILL)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)


def _child(body: Callable[[], None], report: Any, parent: int) -> None:
    _die_with_parent(parent)
    code = 0
    try:
        body()
    except BaseException as exc:  # everything a file can raise is its attempt's outcome
        report.send(redact_text(f"raised {type(exc).__name__}: {exc}")[:2000])  # it reaches the manifest
        code = 1
    finally:
        report.close()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)  # never the parent's exit handlers: this is a fork of a Spark worker


def can_isolate() -> bool:
    return "fork" in multiprocessing.get_all_start_methods()


def run_isolated(body: Callable[[], None], time_limit: float | None) -> str | None:
    """Run `body` in a forked child and wait at most `time_limit` seconds (None or 0: no limit); None when it
    returned, else why not (what it raised, the signal that killed it, the time limit). Where there is no
    fork, `body` runs here: exceptions are still outcomes, crashes take the worker (and count as lost)."""
    if not can_isolate():
        try:
            body()
        except Exception as exc:
            return redact_text(f"raised {type(exc).__name__}: {exc}")[:2000]
        return None
    ctx = multiprocessing.get_context("fork")
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_child, args=(body, send, os.getpid()), daemon=True)
    child.start()
    send.close()
    child.join(time_limit or None)
    if child.is_alive():
        child.kill()
        child.join()
        receive.close()
        return f"over the per-file time limit of {time_limit:g} s (--file-time-limit): killed"
    message = None
    with contextlib.suppress(EOFError, OSError):  # EOF: the child said nothing before it ended
        message = receive.recv() if receive.poll() else None
    receive.close()
    return None if child.exitcode == 0 else exit_reason(child.exitcode, message)


# ---------------------------------------------------------------- fault injection (tests)


@dataclasses.dataclass(frozen=True)
class FaultPlan:
    """Deterministic crashes for the tests (module docstring), read from the driver's environment."""

    crash_on_file: str | None = None
    crash_after_files: int | None = None
    driver_pid: int | None = None

    @classmethod
    def from_env(cls) -> FaultPlan:
        at = os.environ.get(CRASH_AT_ENV, "")
        after = int(at.split(":", 1)[1]) if at.startswith("files:") else None
        return cls(os.environ.get(CRASH_ON_FILE_ENV) or None, after, os.getpid() if after else None)

    def on_start(self, location: str) -> None:
        """In the reading process, as it starts `location`."""
        if self.crash_on_file and self.crash_on_file in location:
            os.kill(os.getpid(), signal.SIGKILL)

    def on_commit(self, area: WorkArea) -> None:
        """In the task's worker, after a file is committed."""
        if self.crash_after_files and area.committed_count() >= self.crash_after_files:
            assert self.driver_pid is not None
            os.kill(self.driver_pid, signal.SIGKILL)
            os.kill(os.getpid(), signal.SIGKILL)


# ---------------------------------------------------------------- one input, in its task


@dataclasses.dataclass(frozen=True)
class FileAttempts:
    """How many attempts an input gets, and how long each may take (0: no limit)."""

    max_attempts: int = 3
    time_limit: float = 0.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"--max-file-attempts must be at least 1, got {self.max_attempts}")
        if self.time_limit < 0:
            raise ValueError(f"--file-time-limit must be 0 (no limit) or positive, got {self.time_limit}")


def process_input(
    area: WorkArea,
    location: str,
    read: Callable[[str, Counter], Iterator[tuple]],
    summarise: Callable[[str, Counter, float], dict[str, Any]],
    attempts: FileAttempts,
    fault: FaultPlan | None = None,
) -> dict[str, Any]:
    """Commit one input (what a task runs per file): already committed → its record ("resumed"); else up to
    the remaining attempts, each in a child process → its record ("read"); attempts used up → the
    quarantine record ("quarantined"). `read(location, counters)` yields its rows."""
    fault = fault or FaultPlan()
    slot = area.slot(location)
    slot.discard_unfinished()
    while True:
        done = slot.committed()
        if done is not None:  # by a rerun's earlier run, an earlier try of this task, or a speculative copy
            return {**done, "status": "resumed"}
        failed = slot.failed_attempts()
        if len(failed) >= attempts.max_attempts:
            reason = quarantine_reason(failed)
            log.error("quarantined %s: %s", redact_url(location), reason)
            return {
                "status": "quarantined",
                "path": redact_url(location),
                "attempts": len(failed),
                "reason": reason,
            }
        if failed:
            log.warning(
                "reading %s again (attempt %d of %d; last: %s)",
                redact_url(location),
                len(failed) + 1,
                attempts.max_attempts,
                failed[-1].get("outcome") or LOST,
            )
        attempt = slot.start_attempt()

        def body(attempt: str = attempt) -> None:
            fault.on_start(location)
            counters: Counter = Counter()
            started = time.monotonic()
            rows = read(location, counters)
            slot.commit(
                attempt,
                rows,
                lambda n: {
                    "summary": summarise(location, counters, time.monotonic() - started),
                    "counters": dict(counters),
                    "rows": n,
                },
            )

        outcome = run_isolated(body, attempts.time_limit)
        done = slot.done()
        if outcome is None and done is not None and done["attempt"] == attempt:
            slot.end_attempt(attempt, "committed")
            fault.on_commit(area)
            return {**done, "status": "read"}
        slot.end_attempt(attempt, outcome or "the process reading it ended without committing it")
        log.warning("reading %s failed: %s", redact_url(location), outcome)
