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

A remote paths file is confined to its own host or bucket: it is somebody else's listing, read with the job's
credentials, so an entry naming another host or bucket (`s3://private-bucket/...`, `http://169.254.169.254/`,
`http://localhost/`) refuses the run with an `InputError` that lists them, before Spark starts, unless the
operator names that host or bucket in `allow_hosts` (`--allow-hosts`). The locations given directly, and the
entries of local paths files, are the operator's own and are taken as they are. Messages name locations
redacted (`crawl.redact`): signatures, tokens and userinfo are never shown.
"""

from __future__ import annotations

import contextlib
import glob
import gzip
import io
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import urllib3

from crawl.redact import redact_text, redact_url
from crawl.remote import S3_SCHEMES, SUPPORTED_SCHEMES, is_supported_remote, location_root, open_remote

WARC_SUFFIXES = (".warc", ".warc.gz", ".arc", ".arc.gz")
PATHS_SUFFIXES = (".paths", ".paths.gz", ".txt", ".txt.gz")
REMOTE_SCHEMES = ("s3://", "s3a://", "https://", "http://", "gs://", "hdfs://")


class InputError(ValueError):
    """The `--input` spec names nothing readable (or what it may not read); raised on the driver before any
    task starts. Its message is redacted, whatever the raiser put in it."""

    def __init__(self, *args: object):
        super().__init__(*(redact_text(a) if isinstance(a, str) else a for a in args))


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
    """The entries of a local or remote paths file, relative ones resolved (see the module docstring); the
    caller confines a remote one's entries (`confine_to_host`)."""
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


# ---------------------------------------------------------------- a remote listing names only its own host


def location_host(location: str) -> str:
    """The host a remote location names: an S3 bucket, or an HTTP(S) host name (lowercased, with `:port`
    when the port is not the scheme's default; no userinfo). `--allow-hosts` takes these names.

    An HTTP(S) location is parsed by urllib3, the parser `crawl.remote` connects with: `urlsplit` reads
    `https://evil.example\\@own.example/` as own.example where urllib3 connects to evil.example, and a check
    must name the host the reader will reach."""
    if location.startswith(S3_SCHEMES):
        return location.split("://", 1)[1].split("/", 1)[0]
    try:
        parts = urllib3.util.parse_url(location)
    except urllib3.exceptions.LocationParseError:  # unreadable (a bad port): kept visible, matches nothing
        return location.split("://", 1)[-1].split("/", 1)[0].rsplit("@", 1)[-1].lower()
    host = (parts.host or "").lower()
    default = {"http": 80, "https": 443}.get((parts.scheme or "").lower())
    return host if parts.port is None or parts.port == default else f"{host}:{parts.port}"


def _namespace(location: str) -> tuple[str, str]:
    """(kind, host): S3 buckets and HTTP hosts are different namespaces; http and https of a host are one."""
    return ("s3" if location.startswith(S3_SCHEMES) else "http", location_host(location))


def parse_allow_hosts(value: str | Iterable[str] | None) -> frozenset[str]:
    """`h1,h2` (host names, `host:port`, buckets, or URLs whose host is meant) → the set of names."""
    items = value.split(",") if isinstance(value, str) else list(value or ())
    names = set()
    for item in (i.strip() for i in items):
        if item:
            names.add(location_host(item) if "://" in item else item.lower().rstrip("/"))
    return frozenset(names)


def confine_to_host(entries: list[str], listing: str, allow_hosts: str | Iterable[str] = ()) -> None:
    """Refuse (`InputError`) a remote listing whose entries name a host or bucket other than its own and
    those in `allow_hosts`, counting and listing them, so a third-party `warc.paths.gz` cannot make the job
    read private buckets or internal addresses with its credentials."""
    own = _namespace(listing)
    allowed = parse_allow_hosts(allow_hosts)
    outside = [
        entry
        for entry in entries
        if is_supported_remote(entry) and _namespace(entry) != own and location_host(entry) not in allowed
    ]
    if not outside:
        return
    hosts = Counter(f"{entry.split('://', 1)[0]}://{location_host(entry)}" for entry in outside)
    listed = ", ".join(f"{host} ({n})" for host, n in sorted(hosts.items()))
    names = ",".join(sorted({location_host(entry) for entry in outside}))
    raise InputError(
        f"paths file {redact_url(listing)}: {len(outside)} of its {len(entries)} entries name hosts or buckets "
        f"other than its own ({location_host(listing)}): {listed}; first: {redact_url(outside[0])}. A remote "
        f"paths file may name only its own host or bucket; to read these too, pass --allow-hosts {names}"
    )


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


def _resolve_remote(item: str, allow_hosts: str | Iterable[str]) -> list[str]:
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
    confine_to_host(entries, item, allow_hosts)
    return entries


def resolve_inputs(
    spec: str | os.PathLike[str] | list[str], allow_hosts: str | Iterable[str] = ()
) -> list[str]:
    """Expand an input spec (or a comma-separated list of specs) into WARC locations, sorted and unique.

    Sorting makes task assignment, shard names and therefore the output independent of directory order.
    Entries of a paths file are kept even if they do not exist yet: a missing file is a per-input failure
    counted by the job, not a reason to refuse the other thousands of inputs. Remote WARC files are not
    checked here either; a remote paths file is read. Unsupported schemes, given directly or listed in a
    paths file, are refused with `InputError`, and so is a remote paths file naming hosts or buckets other than
    its own and `allow_hosts` (`confine_to_host`).
    """
    specs = spec if isinstance(spec, list) else [s for s in str(spec).split(",") if s.strip()]
    found: list[str] = []
    for raw in specs:
        item = raw.strip()
        _refuse_unsupported([item], "--input")
        if is_remote(item):
            found.extend(_resolve_remote(item, allow_hosts))
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


def crawl_locations(
    crawl: str, base: str = DEFAULT_CRAWL_BASE, allow_hosts: str | Iterable[str] = ()
) -> list[str]:
    """The WARC files of one crawl, sorted. Entries of Common Crawl's paths files are keys relative to the
    crawl's root (`crawl-data/...`), so they are joined to `base` (a mirror directory, an HTTPS host or an
    S3 bucket), not to the paths file's folder. A remote base's listing names no local files (`/a/b` is a
    key too) and only its own host or bucket, and `allow_hosts` (`confine_to_host`)."""
    paths_file = crawl_paths_file(crawl, base)
    root = base.rstrip("/")
    with _unreadable_as_input_error(f"crawl {crawl}: paths file {paths_file} (check --crawl-base)"):
        lines = paths_file_lines(paths_file)
    local_base = not is_remote(base)
    entries = [
        line if is_remote(line) or (local_base and os.path.isabs(line)) else f"{root}/{line.lstrip('/')}"
        for line in lines
    ]
    if not entries:
        raise InputError(f"crawl {crawl}: {paths_file} lists no WARC files")
    _refuse_unsupported(entries, f"crawl {crawl}: paths file {paths_file}")
    if not local_base:
        confine_to_host(entries, paths_file, allow_hosts)
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


# ---------------------------------------------------------------- what names one input across mirrors

_CC_MAIN_SUBSETS = frozenset({"warc", "wat", "wet", "robotstxt", "crawldiagnostics"})
_YEAR, _MONTH = re.compile(r"\d{4}"), re.compile(r"\d{2}")


def common_crawl_key(path: str) -> str | None:
    """The Common Crawl key of a path that ends in Common Crawl's own layout, else None:
    `.../crawl-data/CC-MAIN-<id>/segments/<segment>/<warc|wat|wet|...>/<file>` or
    `.../crawl-data/CC-NEWS/<yyyy>/<mm>/CC-NEWS-<...>`. `crawl-data` must be a whole path component that
    begins exactly that layout: `/a/crawl-data/x.warc.gz` or `/mnt/my-crawl-data/...` have no key."""
    parts = path.split("/")
    if len(parts) >= 6:
        tail = parts[-6:]
        if (
            tail[0] == "crawl-data"
            and CRAWL_ID.fullmatch(tail[1])
            and tail[2] == "segments"
            and tail[3]
            and tail[4] in _CC_MAIN_SUBSETS
            and tail[5]
        ):
            return "/".join(tail)
    if len(parts) >= 5:
        tail = parts[-5:]
        if (
            tail[:2] == ["crawl-data", "CC-NEWS"]
            and _YEAR.fullmatch(tail[2])
            and _MONTH.fullmatch(tail[3])
            and tail[4].startswith("CC-NEWS-")
        ):
            return "/".join(tail)
    return None


def input_key(location: str) -> str:
    """What names one WARC file whichever mirror it is read from; a refresh skips files whose key it has seen.

    A file in Common Crawl's layout is known by its key from `crawl-data/` on (`common_crawl_key`), so
    `s3://commoncrawl/<key>`, `https://data.commoncrawl.org/<key>` and a local mirror's copy are one file.
    Anything else is known by its whole normalised location: a remote one by scheme (`s3a` as `s3`), host
    or bucket, path and its query with secret values redacted (a presigned URL signed again is the same
    file; other parameters may name another file), never its userinfo or fragment; a local one by its
    absolute normalised path. Two different files never share a key; a location and its redacted form do.
    """
    if is_remote(location):
        scheme, _, rest = location.partition("://")
        scheme = "s3" if scheme.lower() == "s3a" else scheme.lower()
        rest = rest.split("#", 1)[0]
        path, question, query = rest.partition("?")
        authority, slash, key = path.partition("/")
        authority = authority.rsplit("@", 1)[-1]
        if scheme != "s3":
            authority = authority.lower()
        cc_key = common_crawl_key(key)
        if cc_key:
            return cc_key
        query = redact_url(f"x://h/?{query}").split("?", 1)[1] if question else ""
        return f"{scheme}://{authority}{slash}{key}{question}{query}"
    path = os.path.normpath(os.path.abspath(location))
    return common_crawl_key(path.replace(os.sep, "/")) or path
