"""Stream HTTP responses out of WARC (and ARC) files, one record at a time, surviving damaged files.

`read_html_responses` yields only what the corpus wants (HTTP 200 HTML responses with a body) and counts
everything else in a `Counter` under `skip:<reason>` or `error:<reason>` keys, so a job can report exactly
where records went. Damage handling:

- a single-member ("non-chunked") gzip file, which warcio refuses, is re-read through a streaming gunzip;
- a record cut short by the end of the file is skipped and counted (`error:truncated_record`);
- a parse error in the middle of a file does not end it: the reader scans forward to the next `WARC/1.x`
  header and carries on, so good records after the damage are kept (`error:<exception>` counts the damage);
- a corrupt gzip member is skipped (`error:corrupt_gzip_member`, counted once however often the file is
  re-read); if part of it had already been decompressed, the record it holds is cut there (counted as a
  truncated record, never kept with a spliced body) and reading resumes at the next member.

ARC records carry no record id (warcio invents a random one); they get one derived from their ARC header
line instead, so that re-reading a file gives the same ids.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import BinaryIO

from warcio.archiveiterator import ArchiveIterator
from warcio.exceptions import ArchiveLoadFailed
from warcio.recordloader import ARC2WARCHeadersParser

from crawl.inputs import open_input
from crawl.redact import redact_logs
from crawl.remote import RemoteError

log = redact_logs(logging.getLogger(__name__))  # log lines name input locations: no credentials

HTML_TYPES = ("text/html", "application/xhtml+xml")
SNIFF_TYPES = ("", "text/plain", "application/octet-stream", "unknown", "text/x-unknown")
DEFAULT_MAX_BODY_BYTES = 8 << 20
_CRAWL_NAME = re.compile(r"(CC-MAIN-\d{4}-\d{2})")
_WARC_HEADER = re.compile(rb"WARC/1\.[01]\r?\n")
_RESYNC_CHUNK = 1 << 16
_GZIP_MAGIC = b"\x1f\x8b\x08"


@dataclass(frozen=True)
class HtmlResponse:
    """One kept response: provenance plus the raw (content-decoded, undecoded-charset) HTML bytes."""

    warc_path: str
    record_id: str
    url: str
    fetch_time: datetime | None
    content_type: str
    body: bytes
    payload_digest: str
    crawl: str


def crawl_name(location: str, warcinfo_part_of: str | None = None) -> str:
    """The crawl a file belongs to (`CC-MAIN-2024-22`), from the path, else the warcinfo `isPartOf`."""
    match = _CRAWL_NAME.search(location)
    if match:
        return match.group(1)
    return (warcinfo_part_of or "").strip()


def parse_warc_date(value: str | None) -> datetime | None:
    """WARC-Date (ISO 8601, optionally with fractions) or ARC's 14-digit date, as aware UTC; None if malformed."""
    if not value:
        return None
    text = value.strip()
    try:
        if text.isdigit() and len(text) == 14:
            return datetime.strptime(text, "%Y%m%d%H%M%S").replace(tzinfo=UTC)
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _mime(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def looks_like_html(body: bytes) -> bool:
    head = body[:1024].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html", b"<head", b"<?xml")) or b"<html" in head


class _StableArcIds(ARC2WARCHeadersParser):
    """ARC records have no record id, and warcio makes a random one up on every read; derive it from the
    record's ARC header line (URL, IP, date, type, length) instead, so corpus ids stay the same run to run."""

    def _get_protocol_and_headers(self, headerline, parts):
        protocol, headers = super()._get_protocol_and_headers(headerline, parts)
        stable = f"<urn:arc-record:sha1:{hashlib.sha1(headerline.encode('utf-8', 'replace')).hexdigest()}>"
        return protocol, [(name, stable if name == "WARC-Record-ID" else value) for name, value in headers]


def _archive_iterator(stream: BinaryIO) -> ArchiveIterator:
    iterator = ArchiveIterator(stream, arc2warc=True)
    iterator.loader.arc_parser = _StableArcIds()  # warcio 1.8: the loader's ARC → WARC header converter
    return iterator


class _Prefixed(io.RawIOBase):
    """A readable stream that first returns `prefix`, then the rest of `inner` (used after a resync scan)."""

    def __init__(self, prefix: bytes, inner: BinaryIO):
        self._prefix = prefix
        self.inner = inner
        self._position = 0

    def tell(self) -> int:  # warcio computes record offsets with tell()
        return self._position

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        if self._prefix:
            n = min(len(buffer), len(self._prefix))
            buffer[:n] = self._prefix[:n]
            self._prefix = self._prefix[n:]
        else:
            data = self.inner.read(len(buffer))
            n = len(data)
            buffer[:n] = data
        self._position += n
        return n

    def close(self) -> None:
        self.inner.close()
        super().close()


def _scan_to_next_header(stream: BinaryIO, start: int) -> tuple[BinaryIO, int] | None:
    """Skip to byte `start`, then find the next WARC header line; return a stream positioned there and its offset."""
    position = 0
    while position < start:
        chunk = stream.read(min(start - position, _RESYNC_CHUNK))
        if not chunk:
            return None
        position += len(chunk)
    tail = b""
    while True:
        chunk = stream.read(_RESYNC_CHUNK)
        if not chunk:
            return None
        window = tail + chunk
        match = _WARC_HEADER.search(window)
        if match:
            offset = position - len(tail) + match.start()
            return _Prefixed(window[match.start() :], stream), offset  # type: ignore[return-value]
        position += len(chunk)
        tail = window[-16:]


class GunzipStream(io.RawIOBase):
    """Streaming gunzip over any member layout that degrades instead of failing.

    `gzip.GzipFile` raises on a truncated tail and discards the data of the read that hit it; here a
    truncated member ends the stream cleanly (`truncated` is set), and a corrupt member is skipped by
    scanning for the next gzip header (`corrupt_at` lists the compressed offsets of the skipped members), so
    the records around the damage survive. Zero padding between members (some writers align to blocks) is
    ignored.

    A corrupt member that had already produced output would splice the start of its record onto the next
    member's data. Instead the stream ends there (`splice_at` is the uncompressed offset), so the reader sees
    a record cut short, and a new stream opened with `resume_after=splice_at` reads on past that point.
    """

    def __init__(self, raw: BinaryIO, resume_after: int = -1):
        self._raw = raw
        self._inflater = zlib.decompressobj(wbits=31)
        self._in_member = False
        self._compressed = b""
        self._pending = b""
        self._position = 0
        self._produced = 0  # uncompressed bytes decompressed so far (delivered or pending)
        self._raw_read = 0  # compressed bytes read from `raw`
        self._member_start = 0  # compressed offset of the current member
        self._member_out = 0  # uncompressed bytes the current member has produced
        self._resume_after = resume_after
        self._eof = False
        self.truncated = False
        self.corrupt_at: list[int] = []
        self.splice_at: int | None = None

    @property
    def corrupt_members(self) -> int:
        return len(self.corrupt_at)

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def close(self) -> None:
        self._raw.close()
        super().close()

    def readinto(self, buffer) -> int:  # type: ignore[override]
        while not self._pending and not self._eof:
            self._fill()
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        self._position += n
        return n

    def _more_input(self) -> bool:
        chunk = self._raw.read(_RESYNC_CHUNK)
        self._raw_read += len(chunk)
        self._compressed += chunk
        return bool(chunk)

    def _fill(self) -> None:
        if not self._compressed and not self._more_input():
            self.truncated = self._in_member
            self._eof = True
            return
        if not self._in_member:
            self._compressed = self._compressed.lstrip(b"\x00")
            if not self._compressed:
                return
            self._member_start = self._raw_read - len(self._compressed)
            self._member_out = 0
        try:
            out = self._inflater.decompress(self._compressed)
        except zlib.error:
            self._skip_to_next_member()
            return
        self._in_member = True
        self._compressed = b""
        self._member_out += len(out)
        self._produced += len(out)
        if self._inflater.eof:
            self._compressed = self._inflater.unused_data
            self._inflater = zlib.decompressobj(wbits=31)
            self._in_member = False
        self._pending += out

    def _skip_to_next_member(self) -> None:
        self.corrupt_at.append(self._member_start)
        if self._member_out and self._produced > self._resume_after:
            # part of this member is already out: end the stream here rather than splice the next member on
            self.splice_at = self._produced
            self._eof = True
            return
        self._inflater = zlib.decompressobj(wbits=31)
        self._in_member = False
        data = self._compressed[1:]
        while True:
            at = data.find(_GZIP_MAGIC)
            if at >= 0:
                self._compressed = data[at:]
                return
            tail = data[-2:]
            chunk = self._raw.read(_RESYNC_CHUNK)
            self._raw_read += len(chunk)
            if not chunk:
                self._compressed = b""
                self._eof = True
                return
            data = tail + chunk


def open_decompressed(location: str, resume_after: int = -1, counters: Counter | None = None) -> BinaryIO:
    """The file's bytes with gzip removed, whatever its member layout; plain files pass through.

    `resume_after`: read on past a corrupt member that ends the stream at or before this uncompressed offset.
    `counters`: where a remote file's retries and resumes are counted.
    """
    raw = open_input(location, counters)
    if raw.peek(2)[:2] == b"\x1f\x8b":
        return GunzipStream(raw, resume_after)  # type: ignore[return-value]
    return raw


def _gunzip_of(stream: BinaryIO) -> GunzipStream | None:
    inner = stream.inner if isinstance(stream, _Prefixed) else stream
    return inner if isinstance(inner, GunzipStream) else None


class _GzipDamage:
    """Counts gzip damage once per file, although a resync re-reads the file from its start."""

    def __init__(self, counters: Counter):
        self._counters = counters
        self._corrupt: set[int] = set()
        self._truncated = False

    def add(self, stream: BinaryIO) -> None:
        gunzip = _gunzip_of(stream)
        if gunzip is None:
            return
        new = set(gunzip.corrupt_at) - self._corrupt
        if new:
            self._counters["error:corrupt_gzip_member"] += len(new)
            self._corrupt |= new
        if gunzip.truncated and not self._truncated:
            self._counters["error:truncated_gzip"] += 1
            self._truncated = True


def _resync(
    location: str, restart: int, damage: _GzipDamage, counters: Counter
) -> tuple[BinaryIO, int] | None:
    """A stream positioned at the first WARC header at or after uncompressed offset `restart`, if any."""
    while True:
        plain = open_decompressed(location, resume_after=restart, counters=counters)
        found = _scan_to_next_header(plain, restart)
        damage.add(plain)
        if found is not None:
            return found
        gunzip = _gunzip_of(plain)
        plain.close()
        if gunzip is None or gunzip.splice_at is None:
            return None
        restart = gunzip.splice_at  # the scan stopped at a corrupt member: carry on after it


def iter_archive_records(location: str, counters: Counter) -> Iterator:
    """warcio records of one file, with damage contained and counted (see the module docstring).

    The file is read through a streaming gunzip, so record offsets are positions in the uncompressed
    archive and a resync can scan forward from the last good record whatever the gzip layout was.
    """
    damage = _GzipDamage(counters)
    stream: BinaryIO | None = open_decompressed(location, counters=counters)
    base = 0  # uncompressed offset at which `stream` starts
    while stream is not None:
        iterator = _archive_iterator(stream)
        last_start: int | None = None
        reason = message = None
        try:
            for record in iterator:
                yield record
                last_start = iterator.get_record_offset()  # known only once the record is consumed
        except ArchiveLoadFailed as exc:
            reason, message = "archive_load_failed", str(exc)
        except RemoteError:  # the remote file itself is gone (retries used up, or it changed): not damage
            stream.close()
            raise
        except Exception as exc:  # warcio raises assorted errors on malformed headers
            reason, message = "malformed_record", f"{type(exc).__name__}: {exc}"
        damage.add(stream)
        gunzip = _gunzip_of(stream)
        stream.close()
        if reason is not None:
            counters[f"error:{reason}"] += 1
            first_line = message.strip().splitlines()[0] if message and message.strip() else ""
            log.warning(
                "damage in %s at offset ~%d (%s): %s", location, base + (last_start or 0), reason, first_line
            )
        if gunzip is not None and gunzip.splice_at is not None:
            restart = gunzip.splice_at  # a corrupt member ended the stream: go on after it
        elif reason is None:
            return
        else:
            restart = base + (last_start if last_start is not None else 0) + 1
        found = _resync(location, restart, damage, counters)
        if found is None:
            return
        stream, base = found
        counters["warn:resynced"] += 1


def read_html_responses(
    location: str, counters: Counter, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
) -> Iterator[HtmlResponse]:
    """Yield HTTP 200 HTML responses from one WARC/ARC file, counting every record that is not one.

    A missing or unreadable file counts `error:input_missing` / `error:input_unreadable` and yields nothing;
    a remote file that breaks off for good (`crawl.remote`) counts `error:input_broken_off` and ends there.
    """
    try:
        open_input(location, counters).close()
    except FileNotFoundError:
        counters["error:input_missing"] += 1
        log.warning("input missing: %s", location)
        return
    except (OSError, NotImplementedError) as exc:
        counters["error:input_unreadable"] += 1
        log.warning("input unreadable: %s (%s)", location, exc)
        return

    try:
        yield from _html_responses(location, counters, max_body_bytes)
    except RemoteError as exc:  # retries used up mid-file: what was read stands, the rest is not read
        counters["error:input_broken_off"] += 1
        log.warning("input %s broke off for good: %s", location, exc)


def _html_responses(location: str, counters: Counter, max_body_bytes: int) -> Iterator[HtmlResponse]:
    part_of: str | None = None
    for record in iter_archive_records(location, counters):
        rec_type = record.rec_type
        counters["records"] += 1
        if rec_type == "warcinfo":
            part_of = _warcinfo_part_of(record) or part_of
        record_id = record.rec_headers.get_header("WARC-Record-ID") or ""
        fetch_raw = record.rec_headers.get_header("WARC-Date")
        length = (record.rec_headers.get_header("Content-Length") or "").strip()
        if not length.isdigit() or (not record_id and not fetch_raw):
            # warcio's lenient ARC fallback turns stray lines of a damaged file into pseudo-records
            counters["error:malformed_record"] += 1
            continue
        if rec_type != "response":
            counters[f"skip:{rec_type or 'unknown'}_record"] += 1
            continue
        if record.http_headers is None:
            counters["skip:no_http_headers"] += 1
            continue
        status = record.http_headers.get_statuscode()
        if status != "200":
            counters["skip:http_status"] += 1
            continue
        content_type = record.http_headers.get_header("Content-Type") or ""
        mime = _mime(content_type)
        if mime not in HTML_TYPES and mime not in SNIFF_TYPES:
            counters["skip:not_html"] += 1
            continue
        try:
            body = _read_limited(record.content_stream(), max_body_bytes + 1)
        except EOFError:  # the file ends inside this record's gzip member
            counters["error:truncated_record"] += 1
            continue
        except RemoteError:
            raise
        except Exception as exc:  # bad chunking, bad content-encoding
            counters["error:bad_payload"] += 1
            log.warning("bad payload in %s %s: %s", location, record_id, exc)
            continue
        if len(body) > max_body_bytes:
            counters["skip:body_too_large"] += 1
            continue
        if record.raw_stream.limit > 0:
            counters["error:truncated_record"] += 1
            continue
        if not body.strip():
            counters["skip:empty_body"] += 1
            continue
        if mime not in HTML_TYPES and not looks_like_html(body):
            counters["skip:not_html"] += 1
            continue
        fetch_time = parse_warc_date(fetch_raw)
        if fetch_raw and fetch_time is None:
            counters["warn:bad_warc_date"] += 1
        counters["html_responses"] += 1
        yield HtmlResponse(
            warc_path=location,
            record_id=record_id,
            url=record.rec_headers.get_header("WARC-Target-URI") or "",
            fetch_time=fetch_time,
            content_type=content_type,
            body=body,
            payload_digest=record.rec_headers.get_header("WARC-Payload-Digest") or "",
            crawl=crawl_name(location, part_of),
        )


def _read_limited(stream, limit: int) -> bytes:
    """Read at most `limit` bytes in bounded chunks (warcio's readers return short reads)."""
    parts, total = [], 0
    while total < limit:
        chunk = stream.read(min(1 << 20, limit - total))
        if not chunk:
            break
        parts.append(chunk)
        total += len(chunk)
    return b"".join(parts)


def _warcinfo_part_of(record) -> str | None:
    try:
        text = record.content_stream().read(65536).decode("utf-8", "replace")
    except Exception:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() == "ispartof":
            return value.strip()
    return None
