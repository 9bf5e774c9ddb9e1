"""Who may write a corpus, and how what it writes survives a kill or a power cut.

- Durability: `fsync_tree` before a version is marked, `write_marker` (the completion marker, written and
  fsynced last, naming every file and its size), `is_complete` (the marker's files all there at their sizes).
- Ownership: each staging folder and the lock record name their run's host, boot, pid and process start
  (`Owner`), so `clean_staging` removes a folder only when its run is provably over.
- The lock: `CorpusLock`, an exclusive `flock` on `<corpus>.lock`; a filesystem without flock is refused by name.

`jobs.corpus_output` builds versions on top of these; `jobs.iterate_corpus` uses them for its rounds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import json
import logging
import os
import shutil
import signal
import socket
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MARKER = "_COMPLETE.json"  # written and fsynced last inside a version: a version without it is not whole
OWNER = ".owner.json"  # in a staging folder (and the version it becomes): the run that wrote it
STALE_ENV = "MATHFORGE_STALE_STAGING_HOURS"  # another host's staging folder is removed after this (168)
DEFAULT_STALE_HOURS = 168.0
# flock errors that mean "this filesystem cannot lock", not "someone holds the lock"
_NO_FLOCK = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL, errno.ENOSYS}
_ACTIVE_RUNS: set[str] = set()  # run ids whose staging folder this process is writing now


class CorpusLockedError(RuntimeError):
    """Another run holds the corpus's lock."""


class CorpusChangedError(CorpusLockedError):
    """The corpus link moved while this run held the lock: another writer got the lock too."""


class LockUnsupportedError(NotImplementedError):
    """The filesystem of the corpus has no working `flock`."""


def write_json(path: Path, obj: Any) -> None:
    """Write JSON through a temporary file and a rename: a reader sees the old file or the new one."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


# ---------------------------------------------------------------- durability


def fsync_path(path: str | os.PathLike[str], directory: bool = False) -> None:
    """fsync one file, or one directory (which makes its entries — creations, renames — durable)."""
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """fsync every file under `root`, then every directory bottom-up: after this, a power cut leaves the tree
    as it is now (hard-linked files included: fsync is per inode, cheap when already clean)."""
    for dirpath, _dirs, files in os.walk(root, topdown=False):
        for name in files:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                fsync_path(path)
        fsync_path(dirpath, directory=True)


def write_marker(version: Path, run_id: str, previous: str | None) -> None:
    """Make `version` durable and mark it complete: every file fsynced first, then the marker (naming each
    file and its size, and the version it replaces), written through a temporary file and fsynced last."""
    fsync_tree(version)
    files = {
        str(p.relative_to(version)): p.stat().st_size
        for p in sorted(version.rglob("*"))
        if p.is_file() and not p.is_symlink() and p.name != MARKER
    }
    marker = {
        "run_id": run_id,
        "previous": previous,
        "completed_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "files": files,
    }
    tmp = version / f".{MARKER}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(marker, fh, indent=1, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, version / MARKER)
    fsync_path(version, directory=True)


def read_marker(version: Path) -> dict[str, Any] | None:
    """The completion marker of `version` (None: there is none, or it is unreadable)."""
    try:
        marker = json.loads((version / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) and isinstance(marker.get("files"), dict) else None


def is_complete(version: Path) -> bool:
    """Provably complete: a marker whose every file is there with its recorded size."""
    marker = read_marker(version)
    if marker is None:
        return False
    for name, size in marker["files"].items():
        try:
            if (version / name).stat().st_size != size:
                return False
        except OSError:
            return False
    return True


# ---------------------------------------------------------------- who is writing


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _process_start(pid: int) -> int | None:
    """The start time of `pid` in clock ticks since boot (field 22 of /proc/<pid>/stat); None: no such
    process. With the pid it names one process: a reused pid has another start time."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])  # the command name may hold spaces and parentheses


@dataclasses.dataclass(frozen=True)
class Owner:
    """The process that writes a run's staging folder or holds a lock: host, boot, pid and process start
    together name it across pid reuse and reboots."""

    run_id: str
    host: str
    pid: int
    boot_id: str | None
    start_ticks: int | None
    started_at: str

    @classmethod
    def this_process(cls, run_id: str) -> Owner:
        return cls(
            run_id=run_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            boot_id=_boot_id(),
            start_ticks=_process_start(os.getpid()),
            started_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        )

    @classmethod
    def read(cls, path: Path) -> Owner | None:
        try:
            return cls(**json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            return None

    def write(self, path: Path) -> None:
        write_json(path, dataclasses.asdict(self))

    def alive(self) -> bool | None:
        """True: the run is provably running; False: provably over; None: not provable from this host."""
        if self.host != socket.gethostname():
            return None
        boot = _boot_id()
        if boot is not None and self.boot_id is not None and boot != self.boot_id:
            return False  # rebooted since: every process of that boot is gone
        if self.pid == os.getpid() and self.start_ticks == _process_start(self.pid):
            return self.run_id in _ACTIVE_RUNS  # this process knows its own runs
        if Path("/proc/self/stat").exists():
            start = _process_start(self.pid)
            return start is not None and start == self.start_ticks
        try:  # no /proc: the pid alone (a reused pid reads as alive, which only keeps a folder longer)
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return True

    def describe(self) -> str:
        return f"run {self.run_id}, pid {self.pid} on {self.host}, started {self.started_at}"


def stale_hours_default() -> float:
    return float(os.environ.get(STALE_ENV, DEFAULT_STALE_HOURS))


def make_staging(path: Path, run_id: str) -> Path:
    """Create a staging folder owned by this process (its owner record inside) and mark the run active."""
    path.mkdir()
    Owner.this_process(run_id).write(path / OWNER)
    _ACTIVE_RUNS.add(run_id)
    return path


def run_over(run_id: str) -> None:
    """This process stopped writing `run_id`'s staging folder without committing it: it is dead now."""
    _ACTIVE_RUNS.discard(run_id)


def _newest_mtime(path: Path) -> float:
    """The last change under `path`, looked for two levels deep (a live run adds entries there)."""
    newest = path.lstat().st_mtime
    with contextlib.suppress(OSError):
        for child in path.iterdir():
            newest = max(newest, child.lstat().st_mtime)
            if child.is_dir() and not child.is_symlink():
                for grandchild in child.iterdir():
                    newest = max(newest, grandchild.lstat().st_mtime)
    return newest


def _remove_staging(path: Path) -> None:
    """Remove a staging folder, its owner record last: interrupted, the rest is still recognised as dead."""
    for child in path.iterdir():
        if child.name == OWNER:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
    (path / OWNER).unlink(missing_ok=True)
    path.rmdir()


def clean_staging(paths: Iterable[Path], stale_hours: float) -> tuple[list[str], list[str]]:
    """Remove the staging folders whose run is provably over; returns (removed, left alone with why).

    On this host a run is over when its process is gone (pid and process start no longer match) or the
    machine rebooted since. A folder of another host, or without an owner record, is left alone unless
    nothing under it changed for `stale_hours`: a lock that is node-local cannot vouch for other hosts."""
    removed: list[str] = []
    kept: list[str] = []
    now = time.time()
    for path in sorted(paths):
        if not path.is_dir() or path.is_symlink():
            continue
        owner = Owner.read(path / OWNER)
        alive = owner.alive() if owner is not None else None
        who = owner.describe() if owner is not None else "no owner record"
        if alive:
            kept.append(f"{path}: in use by a live run ({who})")
            continue
        if alive is None:
            idle = (now - _newest_mtime(path)) / 3600
            if idle < stale_hours:
                kept.append(
                    f"{path}: written by another host or unknown ({who}), unchanged for {idle:.1f} h; "
                    f"removed once unchanged for {stale_hours:g} h ({STALE_ENV})"
                )
                continue
        _remove_staging(path)
        removed.append(str(path))
    for line in kept:
        log.warning("left alone: %s", line)
    return removed, kept


# ---------------------------------------------------------------- the lock


def filesystem_of(path: Path) -> str:
    """`<type> (<source>) mounted at <dir>` for the filesystem holding `path`, from /proc/self/mountinfo."""
    target = os.path.realpath(path)
    best: tuple[str, str, str] | None = None
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return "a filesystem of unknown type"
    for line in lines:
        left, _, right = line.partition(" - ")
        fields, rest = left.split(), right.split()
        if len(fields) < 5 or len(rest) < 2:
            continue
        mount = fields[4].replace("\\040", " ")
        inside = target == mount or target.startswith(mount.rstrip("/") + "/")
        if inside and (best is None or len(mount) >= len(best[0])):
            best = (mount, rest[0], rest[1])
    if best is None:
        return "a filesystem of unknown type"
    return f"{best[1]} ({best[2]}) mounted at {best[0]}"


class CorpusLock:
    """An exclusive `flock` on `<corpus>.lock`, held by whoever writes the corpus; the file names the holder
    (an `Owner`) while it is held and is emptied on release, so a record found on acquiring names a holder
    that died — or, where flock is node-local, one still running on another host (reported)."""

    def __init__(self, corpus: Path):
        self.path = corpus.with_name(f"{corpus.name}.lock")
        self.previous_holder: str | None = None
        self._fd: int | None = None

    def acquire(self, run_id: str) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "unknown"
            os.close(fd)
            raise CorpusLockedError(
                f"{self.path.with_suffix('')} is being written by another run ({holder}); "
                "a second refresh or build of the same corpus is refused: wait for that one to finish"
            ) from None
        except OSError as exc:
            os.close(fd)
            if exc.errno not in _NO_FLOCK:
                raise
            raise LockUnsupportedError(
                f"cannot lock {self.path}: flock is not supported on {filesystem_of(self.path.parent)} "
                f"({errno.errorcode.get(exc.errno or 0, exc.errno)}: {exc.strerror}). Writers of a corpus "
                "need a filesystem whose flock works across every machine that writes it: local disk, "
                "NFSv4, CephFS, or Lustre mounted with -o flock; move the corpus there or mount it so"
            ) from exc
        previous = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
        if previous:
            self.previous_holder = previous
            log.warning("%s names a holder that never released it: %s", self.path, previous)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(dataclasses.asdict(Owner.this_process(run_id))).encode("utf-8"), 0)
        os.fsync(fd)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)  # released cleanly: no holder to report
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def crash_point(name: str) -> None:
    """Fault injection for the kill -9 tests: `MATHFORGE_CRASH_AT=<name>` kills this process here with
    SIGKILL, as an operator's kill -9, the OOM killer or a power cut would. Names: extracted (build),
    marked (version complete in staging), versioned (in the versions folder), swapped (linked),
    legacy-marked, legacy-moved (migrating a plain directory from before versions)."""
    if os.environ.get("MATHFORGE_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
