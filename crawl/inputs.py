"""Turn what a user types after `--input` into an ordered list of WARC locations, and open them as streams.

Accepted forms, as Common Crawl users have them: one WARC file, a directory of WARC files, a glob, or a paths
file (one path or URL per line, optionally gzipped, like `warc.paths.gz`). Relative entries in a paths file
resolve against the paths file's directory. Remote schemes (`s3://`, `https://`, ...) are recognised and
refused while the inputs are resolved, on the driver before Spark starts, with a message that says what to
do instead of "file not found" or a job that counts every input unreadable; reading them is roadmap item 11.
"""

from __future__ import annotations

import glob
import gzip
import os
from pathlib import Path
from typing import BinaryIO

WARC_SUFFIXES = (".warc", ".warc.gz", ".arc", ".arc.gz")
PATHS_SUFFIXES = (".paths", ".paths.gz", ".txt", ".txt.gz")
REMOTE_SCHEMES = ("s3://", "s3a://", "https://", "http://", "gs://", "hdfs://")


class InputError(ValueError):
    """The `--input` spec names nothing readable; raised on the driver before any task starts."""


def is_remote(location: str) -> bool:
    return location.startswith(REMOTE_SCHEMES)


def remote_input_message(location: str) -> str:
    """Why a remote location cannot be read, and what to do instead."""
    scheme = location.split("://", 1)[0]
    return (
        f"{scheme}:// inputs are not supported yet (roadmap item 11): copy the files locally or mount them "
        f"({location})"
    )


def _refuse_remote(entries: list[str], source: str) -> None:
    remote = [entry for entry in entries if is_remote(entry)]
    if remote:
        more = f" and {len(remote) - 1} more remote inputs" if len(remote) > 1 else ""
        raise InputError(f"{source}: {remote_input_message(remote[0])}{more}")


def is_warc_name(name: str) -> bool:
    return name.lower().endswith(WARC_SUFFIXES)


def _read_paths_file(path: Path) -> list[str]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as fh:
        lines = [line.strip() for line in fh]
    entries = []
    for line in lines:
        if not line or line.startswith("#"):
            continue
        if is_remote(line) or os.path.isabs(line):
            entries.append(line)
        else:
            entries.append(str((path.parent / line).resolve()))
    return entries


def _looks_like_paths_file(path: Path) -> bool:
    name = path.name.lower()
    if is_warc_name(name):
        return False
    return name.endswith(PATHS_SUFFIXES) or "paths" in name


def resolve_inputs(spec: str | os.PathLike[str] | list[str]) -> list[str]:
    """Expand an input spec (or a comma-separated list of specs) into WARC locations, sorted and unique.

    Sorting makes task assignment, shard names and therefore the output independent of directory order.
    Entries of a paths file are kept even if they do not exist yet: a missing file is a per-input failure
    counted by the job, not a reason to refuse the other thousands of inputs. Remote entries, given
    directly or listed in a paths file, are refused with `InputError` until they can be read.
    """
    specs = spec if isinstance(spec, list) else [s for s in str(spec).split(",") if s.strip()]
    found: list[str] = []
    for raw in specs:
        item = raw.strip()
        _refuse_remote([item], "--input")
        path = Path(item).expanduser()
        if any(ch in item for ch in "*?["):
            matches = sorted(m for m in glob.glob(str(path), recursive=True) if os.path.isfile(m))
            if not matches:
                raise InputError(f"glob {item!r} matches no files")
            found.extend(str(Path(m).resolve()) for m in matches)
        elif path.is_dir():
            matches = sorted(p for p in path.rglob("*") if p.is_file() and is_warc_name(p.name))
            if not matches:
                raise InputError(f"directory {item!r} holds no WARC/ARC files (*.warc, *.warc.gz, *.arc.gz)")
            found.extend(str(p.resolve()) for p in matches)
        elif path.is_file():
            if _looks_like_paths_file(path):
                entries = _read_paths_file(path)
                if not entries:
                    raise InputError(f"paths file {item!r} lists no inputs")
                _refuse_remote(entries, f"paths file {item!r}")
                found.extend(entries)
            else:
                found.append(str(path.resolve()))
        else:
            raise InputError(f"input {item!r} does not exist")
    return sorted(dict.fromkeys(found))


def open_input(location: str) -> BinaryIO:
    """Open one WARC location for streaming reads (the raw bytes; warcio handles the gzip members)."""
    if is_remote(location):
        raise NotImplementedError(remote_input_message(location))
    return open(location, "rb", buffering=1 << 20)
