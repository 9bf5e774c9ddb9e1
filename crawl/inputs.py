"""Turn what a user types after `--input` into an ordered list of WARC locations, and open them as streams.

Accepted forms, as Common Crawl users have them: one WARC file, a directory of WARC files, a glob, or a paths
file (one path or URL per line, optionally gzipped, like `warc.paths.gz`). Each can be local or remote:
`s3://bucket/key` (`s3a://` alike), `https://` or `http://` (a remote WARC file, or a remote paths file, read
and gunzipped while it streams; globs and directories are local only). Relative entries of a local paths
file resolve against the paths file's directory; relative entries of a remote one resolve against its
scheme and host or bucket (`https://data.commoncrawl.org/`, `s3://commoncrawl/`), since Common Crawl's
paths files list keys from there (`crawl-data/CC-MAIN-.../x.warc.gz`). Other schemes (`gs://`, `hdfs://`)
are refused while the inputs are resolved, on the driver before Spark starts, with a message that names the
supported ones. Remote files are read by `crawl.remote`: streamed, with retries and Range resumes.
"""

from __future__ import annotations

import contextlib
import glob
import gzip
import io
import os
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from crawl.remote import SUPPORTED_SCHEMES, is_supported_remote, location_root, open_remote

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
    supported = ", ".join(SUPPORTED_SCHEMES)
    return (
        f"{scheme}:// inputs are not supported (remote inputs can be {supported}): copy the files to one of "
        f"those or locally, or mount them ({location})"
    )


def _refuse_unsupported(entries: list[str], source: str) -> None:
    refused = [entry for entry in entries if is_remote(entry) and not is_supported_remote(entry)]
    if refused:
        more = f" and {len(refused) - 1} more unsupported inputs" if len(refused) > 1 else ""
        raise InputError(f"{source}: {remote_input_message(refused[0])}{more}")


def is_warc_name(name: str) -> bool:
    return name.lower().endswith(WARC_SUFFIXES)


def _read_paths_file(location: str) -> list[str]:
    """The entries of a local or remote paths file, relative ones resolved (see the module docstring)."""
    remote = is_remote(location)
    entries = []
    for line in paths_file_lines(location):
        if is_remote(line):
            entries.append(line)
        elif remote:  # `/a/b` too: a remote listing names no local files
            entries.append(location_root(location) + line.lstrip("/"))
        elif os.path.isabs(line):
            entries.append(line)
        else:
            entries.append(str((Path(location).parent / line).resolve()))
    return entries


def _looks_like_paths_file(name: str) -> bool:
    name = name.lower()
    if is_warc_name(name):
        return False
    return name.endswith(PATHS_SUFFIXES) or "paths" in name


@contextlib.contextmanager
def _unreadable_as_input_error(what: str) -> Iterator[None]:
    """A listing that cannot be read refuses the run on the driver, saying which listing and why."""
    try:
        yield
    except FileNotFoundError as exc:
        raise InputError(f"{what} does not exist ({exc})") from exc
    except (OSError, EOFError) as exc:  # crawl.remote's errors are OSErrors; EOFError: a cut gzip
        raise InputError(f"{what} cannot be read: {exc}") from exc


def _resolve_remote(item: str) -> list[str]:
    """A remote `--input` item: a paths file's entries, or the one WARC location it names."""
    if item.endswith("/"):
        raise InputError(f"input {item!r}: remote folders cannot be listed; give a paths file or the files")
    if not _looks_like_paths_file(PurePosixPath(item.split("?", 1)[0]).name):
        return [item]
    with _unreadable_as_input_error(f"paths file {item!r}"):
        entries = _read_paths_file(item)
    if not entries:
        raise InputError(f"paths file {item!r} lists no inputs")
    _refuse_unsupported(entries, f"paths file {item!r}")
    return entries


def resolve_inputs(spec: str | os.PathLike[str] | list[str]) -> list[str]:
    """Expand an input spec (or a comma-separated list of specs) into WARC locations, sorted and unique.

    Sorting makes task assignment, shard names and therefore the output independent of directory order.
    Entries of a paths file are kept even if they do not exist yet: a missing file is a per-input failure
    counted by the job, not a reason to refuse the other thousands of inputs. Remote WARC files are not
    checked here either; a remote paths file is read. Unsupported schemes, given directly or listed in a
    paths file, are refused with `InputError`.
    """
    specs = spec if isinstance(spec, list) else [s for s in str(spec).split(",") if s.strip()]
    found: list[str] = []
    for raw in specs:
        item = raw.strip()
        _refuse_unsupported([item], "--input")
        if is_remote(item):
            found.extend(_resolve_remote(item))
            continue
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
            if _looks_like_paths_file(path.name):
                entries = _read_paths_file(str(path))
                if not entries:
                    raise InputError(f"paths file {item!r} lists no inputs")
                _refuse_unsupported(entries, f"paths file {item!r}")
                found.extend(entries)
            else:
                found.append(str(path.resolve()))
        else:
            raise InputError(f"input {item!r} does not exist")
    return sorted(dict.fromkeys(found))


def open_input(location: str, counters: Counter | None = None) -> BinaryIO:
    """Open one WARC location for streaming reads (the raw bytes; warcio handles the gzip members).

    Remote locations stream through `crawl.remote.open_remote`, which counts its retries and resumes in
    `counters`; a missing object raises `FileNotFoundError` here, as a missing local file does.
    """
    if is_remote(location):
        if not is_supported_remote(location):
            raise NotImplementedError(remote_input_message(location))
        return io.BufferedReader(open_remote(location, counters), buffer_size=1 << 20)  # type: ignore[return-value]
    return open(location, "rb", buffering=1 << 20)


# ---------------------------------------------------------------- a Common Crawl crawl by id, and part of it

DEFAULT_CRAWL_BASE = "https://data.commoncrawl.org/"  # Common Crawl over HTTPS; on AWS: s3://commoncrawl/
CRAWL_ID = re.compile(r"CC-MAIN-\d{4}-\d{2}")


def crawl_paths_file(crawl: str, base: str = DEFAULT_CRAWL_BASE) -> str:
    """Where a crawl lists its WARC files: `<base>/crawl-data/<crawl>/warc.paths.gz`."""
    if not CRAWL_ID.fullmatch(crawl):
        raise InputError(f"--crawl expects a Common Crawl id like CC-MAIN-2024-10, got {crawl!r}")
    return f"{base.rstrip('/')}/crawl-data/{crawl}/warc.paths.gz"


def crawl_locations(crawl: str, base: str = DEFAULT_CRAWL_BASE) -> list[str]:
    """The WARC files of one crawl, sorted. Entries of Common Crawl's paths files are keys relative to the
    crawl's root (`crawl-data/...`), so they are joined to `base` (a mirror directory, an HTTPS host or an
    S3 bucket), not to the paths file's folder."""
    paths_file = crawl_paths_file(crawl, base)
    root = base.rstrip("/")
    with _unreadable_as_input_error(f"crawl {crawl}: paths file {paths_file} (check --crawl-base)"):
        lines = paths_file_lines(paths_file)
    entries = [
        line if is_remote(line) or os.path.isabs(line) else f"{root}/{line.lstrip('/')}" for line in lines
    ]
    if not entries:
        raise InputError(f"crawl {crawl}: {paths_file} lists no WARC files")
    return sorted(dict.fromkeys(entries))


def paths_file_lines(location: str) -> list[str]:
    """The non-empty, non-comment lines of a paths file (gzipped when its name ends in .gz), streamed."""
    with open_input(location) as raw:
        binary = gzip.GzipFile(fileobj=raw) if location.endswith(".gz") else raw
        with io.TextIOWrapper(binary, encoding="utf-8") as stream:
            return [line.strip() for line in stream if line.strip() and not line.lstrip().startswith("#")]


def parse_shard(shard: str) -> tuple[int, int]:
    """`i/n` (0 <= i < n) → (i, n)."""
    try:
        index, count = (int(part) for part in shard.split("/"))
    except ValueError:
        raise InputError(f"--shard expects i/n, e.g. 0/4, got {shard!r}") from None
    if count < 1 or not 0 <= index < count:
        raise InputError(f"--shard {shard!r}: need 0 <= i < n")
    return index, count


def take_part(locations: list[str], limit: int | None = None, shard: str | None = None) -> list[str]:
    """The first `limit` locations (in sorted order), then every n-th of those from the i-th (`shard` i/n):
    the n shards of one limit partition it, and striding spreads each shard over the crawl's segments."""
    if limit is not None:
        if limit < 1:
            raise InputError(f"--limit must be at least 1, got {limit}")
        locations = locations[:limit]
    if shard:
        index, count = parse_shard(shard)
        if index >= len(locations):
            raise InputError(f"--shard {shard} selects none of the {len(locations)} inputs")
        locations = locations[index::count]
    return locations


def input_key(location: str) -> str:
    """What names one WARC file whichever mirror it is read from: its Common Crawl key (from `crawl-data/`
    on) when the location has one, else the location itself. A refresh skips files whose key it has seen."""
    start = location.find("crawl-data/")
    return location[start:] if start >= 0 else location
