"""Stream HTTP responses out of WARC (and ARC) files, one record at a time, surviving damaged files.

`read_html_responses` yields only what the corpus wants (HTTP 200 HTML responses with a body) and counts
everything else in a `Counter` under `skip:<reason>` or `error:<reason>` keys, so a job can report exactly
where records went. Every file is read front to back once, whatever the damage (after an existence check
that opens and closes it): recovery scans forward on the same stream (a remote file gets no further
request, see `crawl.remote`), and the work and memory per record are bounded. Damage handling:

- a single-member ("non-chunked") gzip file, which warcio refuses, is read through a streaming gunzip;
- a record cut short by the end of the file is skipped and counted (`error:truncated_record`);
- a parse error in the middle of a file does not end it: the reader scans forward for the next `WARC/1.x`
  header and carries on, so good records after the damage are kept (`error:<exception>` counts the damage,
  `warn:resynced` the restarts). The scan starts just after the last good record's start, from bytes kept in
  memory (at most `_REPLAY_BYTES`), so a record with a wrong Content-Length does not hide the records it
  swallowed;
- a corrupt gzip member is skipped (`error:corrupt_gzip_member`); if part of it had already been decompressed,
  the record it holds is cut there (counted as a truncated record, never kept with a spliced body) and reading
  resumes at the next member;
- a gzip member that inflates past `max_inflated_bytes` (default `DEFAULT_MAX_INFLATED_BYTES`) since its start
  or since its record began (a gzip bomb) is abandoned there (`error:inflated_too_large`); a response it holds
  is counted `skip:inflated_too_large`, and reading resumes at the next member. In a single-member file the
  records after such a record are lost (they share the member);
- header lines are read in linear time and cut at `_MAX_LINE_BYTES` (warcio's own line reader is quadratic).

HTTP bodies are decoded here, not by warcio: chunked transfer coding, then `Content-Encoding` gzip, deflate,
br (brotli) or a list of them, each inflated in bounded steps and stopped once the body passes its limit
(`skip:body_too_large`). Many archives store bodies already decoded but keep the header: a body that does not
decode yet starts like markup is kept as stored (`warn:stored_decoded`); any other body that does not decode
under its declared coding (a lying header) is `skip:bad_content_encoding`, and a coding we cannot decode
(`compress`, `zstd`, ...) is `skip:unsupported_content_encoding`. A declared charset that is not a web encoding
(`crawl.charset`) is counted `charset:refused` (the page is kept; decoding ignores the label).

ARC records carry no record id (warcio invents a random one); they get one derived from their ARC header
line instead, so that re-reading a file gives the same ids.

Speed (issue 26): a clean file is read by `FastArchiveRecords` (FastWARC inflates, records are framed in a
strict form and parsed as warcio parses them), about twice as fast; at the first thing it cannot prove clean
it hands the rest of the file to the robust reader above (`ArchiveRecords`), which then yields and counts
exactly what it would have alone (`tests/corpus/test_warc_fast_path.py`, `bench/warc_read.py`).
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
import zlib
from collections import Counter, deque
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, BinaryIO

import brotli
from warcio.archiveiterator import ArchiveIterator
from warcio.bufferedreaders import ChunkedDataReader, DecompressingBufferedReader
from warcio.digestverifyingreader import DigestChecker
from warcio.exceptions import ArchiveLoadFailed
from warcio.limitreader import LimitReader
from warcio.recordloader import ARC2WARCHeadersParser, ArcWarcRecord, ArcWarcRecordLoader
from warcio.statusandheaders import StatusAndHeaders
from warcio.utils import BUFF_SIZE

from crawl.charset import refused_charsets
from crawl.inputs import open_input
from crawl.redact import redact_logs
from crawl.remote import RemoteError
from crawl.warc_frames import GzipFrames, Odd, open_frames

log = redact_logs(logging.getLogger(__name__))  # log lines name input locations: no credentials

HTML_TYPES = ("text/html", "application/xhtml+xml")
SNIFF_TYPES = ("", "text/plain", "application/octet-stream", "unknown", "text/x-unknown")
DEFAULT_MAX_BODY_BYTES = 8 << 20
# A gzip member may inflate this far per record (Common Crawl's records are truncated at about 1 MiB; WAT and
# WET records are smaller): past it the member is a bomb or not worth reading, and is abandoned.
DEFAULT_MAX_INFLATED_BYTES = 64 << 20
_MAX_LINE_BYTES = 256 << 10  # a WARC or HTTP header line longer than this is damage
_INFLATE_BLOCK = 1 << 16  # output step of every decompressor: no call inflates more than this at once
_REPLAY_BYTES = 16 << 20  # how far back a resync may re-scan (bytes kept since the last record's start)
_CRAWL_NAME = re.compile(r"(CC-MAIN-\d{4}-\d{2})")
_WARC_HEADER = re.compile(rb"WARC/1\.[01]\r?\n")
_RESYNC_CHUNK = 1 << 16
_GZIP_MAGIC = b"\x1f\x8b\x08"
# The fast path (`FastArchiveRecords`): records it frames itself, and how it reads them
_FAST_RECORD_BYTES = 16 << 20  # a record (and a gzip member) larger than this goes to the robust reader
_MAX_FAST_HEAD = 64 << 10  # so is a WARC header longer than this (far under `_MAX_LINE_BYTES`)
_HEAD_READ = 1024  # a record's first read: under almost every record's size, so reads end on record ends
_HEAD_READ_MORE = 8192
_READ_BLOCK = 1 << 16  # reads of the body: buffers of this size are reused by malloc, larger ones page-fault
# Lines that start with a printable ASCII byte (never blank, never a continuation, whatever warcio strips)
_STRICT_HEAD = re.compile(rb"WARC/1\.[01]\r\n(?:[\x21-\x7e][^\r\n]*\r\n)*\r\n")
_STRICT_LINES = re.compile(rb"(?:[\x21-\x7e][^\r\n]*\r\n)+\r\n")
# A header line (of lines like those): the name is up to the first colon, as warcio splits it
_HEADER_LINE = re.compile(r"([^:\r\n]*):([^\r\n]*)\r\n")
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length[ \t]*:([^\r]*)\r\n", re.IGNORECASE)  # warcio's: the first


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


class _LineCappedReader(DecompressingBufferedReader):
    """warcio's buffered reader with a line reader that is linear and stops at `_MAX_LINE_BYTES`.

    warcio joins a long line with `bytes +=` block by block (quadratic), and with no length limit: a header
    line of a gigabyte of zeros would take hours. Here the parts are joined once and the line is cut at the
    cap; what follows comes back as the next line, which the parser then refuses (and the reader resyncs).
    """

    def readline(self, length: int | None = None) -> bytes:
        limit = _MAX_LINE_BYTES if length is None else min(length, _MAX_LINE_BYTES)
        parts: list[bytes] = []
        total = 0
        while total < limit:
            self._fillbuff()
            if self.empty():
                break
            part = self.buff.readline(limit - total)
            parts.append(part)
            total += len(part)
            if part.endswith(b"\n"):
                break
        return b"".join(parts)


def _archive_iterator(stream: BinaryIO) -> ArchiveIterator:
    iterator = ArchiveIterator(stream, arc2warc=True)
    iterator.loader.arc_parser = _StableArcIds()  # warcio 1.8: the loader's ARC → WARC header converter
    iterator.reader = _LineCappedReader(iterator.fh, block_size=BUFF_SIZE)  # nothing read yet: a swap
    return iterator


class _Tape(io.RawIOBase):
    """The archive's (uncompressed) bytes with a short memory: a resync can re-read recent bytes.

    Keeps what it delivered since `keep_from(offset)` (at most `limit` bytes, the newest), so that
    `rewind_to(offset)` can deliver them again without touching the source: the file is read once. Offsets
    are positions in the uncompressed archive (what warcio's record offsets are, too).
    """

    def __init__(self, inner: BinaryIO, limit: int = _REPLAY_BYTES, start: int = 0):
        self.inner = inner
        self._limit = limit
        self._kept: deque[bytes] = deque()
        self._kept_bytes = 0
        self._kept_start = start  # offset of the first kept byte
        self._position = start  # offset of the next byte delivered (`start`: where `inner` begins)
        self._replay = b""
        self._replay_at = 0

    def tell(self) -> int:
        return self._position

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        if self._replay_at < len(self._replay):
            n = min(len(buffer), len(self._replay) - self._replay_at)
            data = memoryview(self._replay)[self._replay_at : self._replay_at + n]
            buffer[:n] = data
            self._replay_at += n
            self._keep(bytes(data))
            return n
        n = self.inner.readinto(buffer)  # type: ignore[attr-defined]
        if n:
            self._keep(bytes(memoryview(buffer)[:n]))
        return n or 0

    def _keep(self, data: bytes) -> None:
        self._kept.append(data)
        self._kept_bytes += len(data)
        self._position += len(data)
        while len(self._kept) > 1 and self._kept_bytes - len(self._kept[0]) >= self._limit:
            dropped = self._kept.popleft()
            self._kept_bytes -= len(dropped)
            self._kept_start += len(dropped)

    def keep_from(self, offset: int) -> None:
        """Forget the bytes before `offset` (whole pieces only)."""
        while self._kept and self._kept_start + len(self._kept[0]) <= offset:
            dropped = self._kept.popleft()
            self._kept_bytes -= len(dropped)
            self._kept_start += len(dropped)

    def rewind_to(self, offset: int) -> int:
        """Deliver again from `offset`, or from the oldest byte still kept if that is later; return where."""
        offset = max(offset, self._kept_start)
        if offset >= self._position:
            return self._position
        pending = self._replay[self._replay_at :]
        kept = b"".join(self._kept)[offset - self._kept_start :]
        self._replay, self._replay_at = kept + pending, 0
        self._kept.clear()
        self._kept_bytes = 0
        self._kept_start = self._position = offset
        return offset

    def close(self) -> None:
        self.inner.close()
        super().close()


def _scan_to_next_header(tape: _Tape) -> int | None:
    """Read on to the next WARC header line and rewind the tape to it; its offset, or None at the end."""
    tail = b""
    while True:
        start = tape.tell() - len(tail)
        chunk = tape.read(_RESYNC_CHUNK)
        if not chunk:
            return None
        window = tail + chunk
        match = _WARC_HEADER.search(window)
        if match:
            return tape.rewind_to(start + match.start())
        tail = window[-16:]
        tape.keep_from(tape.tell() - len(tail))


class GunzipStream(io.RawIOBase):
    """Streaming gunzip over any member layout that degrades instead of failing, in linear time.

    `gzip.GzipFile` raises on a truncated tail and discards the data of the read that hit it; here a
    truncated member ends the stream cleanly (`truncated` is set), and a corrupt member is skipped by
    scanning for the next gzip header (`corrupt_at` lists the compressed offsets of the skipped members), so
    the records around the damage survive. Zero padding between members (some writers align to blocks) is
    ignored. Output comes in blocks of at most `_INFLATE_BLOCK` bytes: no buffer grows with a member.

    A member that inflates past `max_inflated` bytes since it began, or since `start_record()` was last
    called (the reader calls it at each record), is abandoned (`oversized_at`), like a corrupt one.

    A damaged or abandoned member that had already produced output would splice the start of its record
    onto the next member's data. Instead the stream pauses there: reads return b"" (`broken` says why:
    "corrupt" or "oversized"), the reader sees its record cut short, and `resume()` carries on with the next
    member on the same stream.
    """

    def __init__(self, raw: BinaryIO, max_inflated: int = DEFAULT_MAX_INFLATED_BYTES):
        self._raw = raw
        self._max_inflated = max_inflated
        self._inflater = zlib.decompressobj(wbits=31)
        self._in_member = False
        self._input = b""  # compressed bytes not given to the inflater yet
        self._out = b""  # the current output block
        self._out_at = 0
        self._position = 0
        self._raw_read = 0  # compressed bytes read from `raw`
        self._member_start = 0  # compressed offset of the current member
        self._member_out = 0  # uncompressed bytes the current member has produced
        self._record_out = 0  # ... since the member began or the last `start_record()`, whichever is later
        self._eof = False
        self.broken: str | None = None
        self.truncated = False
        self.corrupt_at: list[int] = []
        self.oversized_at: list[int] = []

    @property
    def corrupt_members(self) -> int:
        return len(self.corrupt_at)

    @property
    def raw_bytes_read(self) -> int:
        """Compressed bytes read from the source so far."""
        return self._raw_read

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def close(self) -> None:
        self._raw.close()
        super().close()

    def start_record(self) -> None:
        """A record starts about here: the inflation cap counts from now."""
        self._record_out = 0

    def resume(self) -> None:
        """Carry on after a pause (see the class docstring) with the next member."""
        self.broken = None

    def readinto(self, buffer) -> int:  # type: ignore[override]
        while self._out_at >= len(self._out):
            if self._eof or self.broken:
                return 0
            self._fill()
        n = min(len(buffer), len(self._out) - self._out_at)
        buffer[:n] = memoryview(self._out)[self._out_at : self._out_at + n]
        self._out_at += n
        self._position += n
        return n

    def _read_raw(self) -> bytes:
        chunk = self._raw.read(_RESYNC_CHUNK)
        self._raw_read += len(chunk)
        return chunk

    def _fill(self) -> None:
        self._out, self._out_at = b"", 0
        if not self._input:
            self._input = self._read_raw()
        exhausted = not self._input
        if exhausted and not self._in_member:
            self._eof = True
            return
        if not self._in_member:
            self._input = self._input.lstrip(b"\x00")
            if not self._input:
                return
            self._member_start = self._raw_read - len(self._input)
            self._member_out = self._record_out = 0
        try:
            out = self._inflater.decompress(self._input, _INFLATE_BLOCK)
        except zlib.error:
            self.corrupt_at.append(self._member_start)
            self._abandon_member("corrupt")
            return
        if exhausted and not out and not self._inflater.eof:  # the file ends inside this member
            self.truncated = True
            self._eof = True
            return
        self._in_member = True
        if self._inflater.eof:
            self._input = self._inflater.unused_data
            self._inflater = zlib.decompressobj(wbits=31)
            self._in_member = False
        else:
            self._input = self._inflater.unconsumed_tail
        self._member_out += len(out)
        self._record_out += len(out)
        if self._record_out > self._max_inflated:
            self.oversized_at.append(self._member_start)
            out = out[: len(out) - (self._record_out - self._max_inflated)]
            if self._in_member:
                self._abandon_member("oversized")
            else:
                self.broken = "oversized"
        self._out = out

    def _abandon_member(self, why: str) -> None:
        """Drop the rest of this member: pause if it produced output, then find the next member's header."""
        if self._member_out:
            self.broken = why
        self._inflater = zlib.decompressobj(wbits=31)
        self._in_member = False
        data = self._input[1:]
        while True:
            at = data.find(_GZIP_MAGIC)
            if at >= 0:
                self._input = data[at:]
                return
            chunk = self._read_raw()
            if not chunk:
                self._input = b""
                self._eof = True
                return
            data = data[-2:] + chunk


def open_decompressed(location: str, counters: Counter | None = None, **gunzip) -> BinaryIO:
    """The file's bytes with gzip removed, whatever its member layout; plain files pass through.

    `counters`: where a remote file's retries and resumes are counted; `gunzip`: `GunzipStream` options.
    """
    raw = open_input(location, counters)
    return decompressed(raw, **gunzip)


def decompressed(raw: BinaryIO, **gunzip) -> BinaryIO:
    """`raw` (a buffered stream) through `GunzipStream` if it starts like gzip, else as it is."""
    if raw.peek(2)[:2] == b"\x1f\x8b":  # type: ignore[attr-defined]
        return GunzipStream(raw, **gunzip)  # type: ignore[return-value]
    return raw


def _count_gzip_damage(gunzip: GunzipStream | None, counters: Counter) -> None:
    if gunzip is None:
        return
    if gunzip.corrupt_at:
        counters["error:corrupt_gzip_member"] += len(gunzip.corrupt_at)
    if gunzip.oversized_at:
        counters["error:inflated_too_large"] += len(gunzip.oversized_at)
    if gunzip.truncated:
        counters["error:truncated_gzip"] += 1


class ArchiveRecords:
    """warcio records of one open archive stream, with damage contained and counted (module docstring).

    Iterate once. `cut_by` says why the stream paused under the record last yielded, if it did ("corrupt",
    "oversized"): a record read short while it is set was cut by gzip damage or the inflation cap.

    Taking over from the fast path (`FastArchiveRecords`), `raw` replays the file from a gzip member (or a
    plain offset): `skip` inflated bytes come before `start`, the archive offset where reading resumes, and
    with `skip_first` the record there was yielded already (it is read again, as the last good record before
    the damage, but not yielded).
    """

    def __init__(
        self,
        raw: BinaryIO,
        counters: Counter,
        location: str = "",
        *,
        start: int = 0,
        skip: int = 0,
        skip_first: bool = False,
        **gunzip,
    ):
        self.counters = counters
        self.location = location
        self.plain = decompressed(raw, **gunzip)
        self.gunzip = self.plain if isinstance(self.plain, GunzipStream) else None
        while skip > 0 and (chunk := self.plain.read(min(skip, _RESYNC_CHUNK))):
            skip -= len(chunk)
        self.tape = _Tape(self.plain, start=start)
        self._skip_first = skip_first

    @property
    def cut_by(self) -> str | None:
        return self.gunzip.broken if self.gunzip is not None else None

    in_memory = False  # records are streamed

    def close(self) -> None:
        self.tape.close()

    def __iter__(self) -> Iterator:
        try:
            yield from self._records()
        finally:
            _count_gzip_damage(self.gunzip, self.counters)
            self.close()

    def _records(self) -> Iterator:
        tape, gunzip, counters = self.tape, self.gunzip, self.counters
        resynced_at = -1  # where the last resync scan found a header
        while True:
            iterator = _archive_iterator(tape)  # type: ignore[arg-type]
            last_start: int | None = None
            reason = message = None
            try:
                for record in iterator:
                    if gunzip is not None:
                        gunzip.start_record()
                    if self._skip_first:
                        self._skip_first = False  # the fast path yielded it
                    else:
                        yield record
                    last_start = iterator.get_record_offset()  # known only once the record is consumed
                    tape.keep_from(last_start)
            except ArchiveLoadFailed as exc:
                reason, message = "archive_load_failed", str(exc)
            except RemoteError:  # the remote file itself is gone (retries used up, or it changed): not damage
                raise
            except Exception as exc:  # warcio raises assorted errors on malformed headers
                reason, message = "malformed_record", f"{type(exc).__name__}: {exc}"
            self._skip_first = False
            parsed_to = tape.tell() - (iterator.reader.rem_length() if iterator.reader is not None else 0)
            if reason is not None:
                counters[f"error:{reason}"] += 1
                first_line = message.strip().splitlines()[0][:200] if message and message.strip() else ""
                where = last_start if last_start is not None else parsed_to
                log.warning("damage in %s at offset ~%d (%s): %s", self.location, where, reason, first_line)
            if gunzip is not None and gunzip.broken:
                gunzip.resume()  # damage ended that stretch: go on with the next member
                restart = tape.tell()
            elif reason is None:
                return
            elif last_start is not None:
                restart = last_start + 1  # a wrong length may have swallowed good records: look inside
            else:  # nothing read since the last resync: on from where parsing stopped, and never back
                restart = max(parsed_to, resynced_at + 1)
            tape.rewind_to(restart)
            while (found := _scan_to_next_header(tape)) is None:
                if gunzip is None or not gunzip.broken:
                    return
                gunzip.resume()  # the scan ran into more gzip damage: on past it
            resynced_at = found
            counters["warn:resynced"] += 1


def iter_archive_records(location: str, counters: Counter, **gunzip) -> Iterator:
    """warcio records of one file, opened once (see `ArchiveRecords`)."""
    yield from ArchiveRecords(open_input(location, counters), counters, location, **gunzip)


class _RecordBytes:
    """One framed record's bytes, kept as the pieces they were read in, read as `_LineCappedReader` reads
    the archive (full reads, lines cut at `_MAX_LINE_BYTES`); a read that covers whole pieces copies nothing."""

    __slots__ = ("_at", "_index", "_left", "_pieces")

    def __init__(self, pieces: list[tuple[bytes, int, int]], size: int):
        self._pieces = pieces  # (bytes, start, stop)
        self._index = 0
        self._at = pieces[0][1] if pieces else 0
        self._left = size

    def skip(self, size: int) -> None:
        """Read `size` bytes and drop them (without making them)."""
        size = min(size, self._left)
        self._left -= size
        while size > 0:
            stop = self._pieces[self._index][2]
            step = min(stop - self._at, size)
            self._at += step
            size -= step
            if self._at == stop:
                self._index += 1
                self._at = self._pieces[self._index][1] if self._index < len(self._pieces) else 0

    def contiguous(self, size: int) -> tuple[bytes, int, int, bool]:
        """The next bytes that lie in one piece, at most `size`: (piece, start, stop, whether that is all
        `size` bytes)."""
        data, _, stop = self._pieces[self._index]
        end = min(stop, self._at + size)
        return data, self._at, end, end == self._at + size

    def readline(self, size: int | None = -1) -> bytes:
        cap = _MAX_LINE_BYTES if size is None or size < 0 else min(size, _MAX_LINE_BYTES)
        return self._take(min(cap, self._left), line=True)

    def read(self, size: int | None = -1) -> bytes:
        return self._take(self._left if size is None or size < 0 else min(size, self._left), line=False)

    def _take(self, size: int, line: bool) -> bytes:
        parts = []
        while size > 0 and self._index < len(self._pieces):
            data, _, stop = self._pieces[self._index]
            end = min(stop, self._at + size)
            if line and (newline := data.find(b"\n", self._at, end)) >= 0:
                end, size = newline + 1, 0
            parts.append(data if self._at == 0 and end == len(data) else memoryview(data)[self._at : end])
            size -= end - self._at
            self._left -= end - self._at
            self._at = end
            if end == stop:
                self._index += 1
                self._at = self._pieces[self._index][1] if self._index < len(self._pieces) else 0
        if len(parts) == 1 and type(parts[0]) is bytes:
            return parts[0]
        return b"".join(parts)  # one copy, of memoryviews where a piece is read in part


@dataclass
class _Framed:
    """A record framed by the fast path: where it starts and ends in the archive, its bytes, its WARC head."""

    start: int
    end: int
    pieces: list[tuple[bytes, int, int]]
    head: bytes  # the WARC header block, CRLF CRLF included


class FastArchiveRecords:
    """The records of `ArchiveRecords`, read about twice as fast while the file is provably clean.

    FastWARC inflates (`crawl.warc_frames`); records are framed here only where the framing cannot differ
    from warcio's: a `WARC/1.0` or `WARC/1.1` header whose lines start with a printable ASCII byte and end in
    an empty line, a Content-Length of digits, the block, then exactly CRLF CRLF. Each record then becomes the
    record warcio would make of those bytes (`_warc_record`). A record is yielded only once the gzip members
    under it are proven whole (`confirmed`), so one record is read ahead.

    Anything else (damage, a truncated or padded end, ARC, another header form, a member past the inflation
    cap, a record over `_FAST_RECORD_BYTES`) hands the rest of the file to `ArchiveRecords`, replayed from
    the last record yielded without reading the source again: that record is read again but not yielded, so
    the robust reader resumes in the state it would have had, and every damage count is its own.
    """

    def __init__(self, raw: BinaryIO, counters: Counter, location: str = "", **gunzip):
        self.counters = counters
        self.location = location
        self._raw = raw
        self._gunzip = gunzip
        cap = gunzip.get("max_inflated", DEFAULT_MAX_INFLATED_BYTES)
        self._frames = open_frames(raw, min(cap, _FAST_RECORD_BYTES))
        self._loader = ArcWarcRecordLoader(verify_http=False, arc2warc=True)  # as `_archive_iterator`'s
        self._loader.arc_parser = _StableArcIds()
        self._data = b""  # bytes read past the last record framed, from `_offset` on: the next record's start
        self._offset = 0
        self._at = 0  # archive offset of `_data[_offset]`
        self._robust: ArchiveRecords | None = None

    @property
    def cut_by(self) -> str | None:
        return self._robust.cut_by if self._robust is not None else None

    @property
    def in_memory(self) -> bool:
        """Whether the record last yielded is whole in memory (its payload is read in one piece)."""
        return self._robust is None

    def __iter__(self) -> Iterator:
        try:
            handover = yield from self._fast()
            if handover is not None:
                yield from self._hand_over(*handover)
        finally:
            if self._robust is None:
                self._raw.close()

    def _hand_over(self, at: int, yielded: bool, why: str) -> Iterator:
        log.info("reading %s on from offset %d with the robust reader: %s", self.location, at, why)
        # aligned as the robust reader reads alone: GunzipStream's raw blocks, or warcio's on a plain file
        raw, skip = self._frames.replay(
            at, _RESYNC_CHUNK if isinstance(self._frames, GzipFrames) else BUFF_SIZE
        )
        self._data = b""
        self._robust = ArchiveRecords(
            raw, self.counters, self.location, start=at, skip=skip, skip_first=yielded, **self._gunzip
        )
        yield from self._robust

    def _fast(self) -> Generator[Any, None, tuple[int, bool, str] | None]:
        """Yield records while the file is clean; at the end None, or where and why to hand over."""
        pending: deque[_Framed] = deque()  # framed records not yet confirmed
        last: int | None = None  # where the last record yielded starts
        while True:
            odd = None
            try:
                framed = self._frame()
            except Odd as exc:
                framed, odd = None, str(exc)
            if framed is not None:
                pending.append(framed)
            while pending and pending[0].end <= self._frames.confirmed:
                record = pending.popleft()
                try:  # a record warcio refuses is the robust reader's to count
                    yield self._warc_record(record)
                except RemoteError:
                    raise
                except Exception as exc:
                    odd = f"warcio refuses the record at {record.start}: {type(exc).__name__}: {exc}"
                    break
                last = record.start
                self._frames.release(last)
            if odd is not None:
                return (0, False, odd) if last is None else (last, True, odd)
            if framed is None:
                return None

    def _frame(self) -> _Framed | None:
        """Read the next record whole; None at a clean end of the file. Raises `Odd` where the framing is
        not the strict one (class docstring)."""
        data, lo, at = self._data, self._offset, self._at
        while (head_end := data.find(b"\r\n\r\n", lo, lo + _MAX_FAST_HEAD)) < 0:
            if len(data) - lo >= _MAX_FAST_HEAD:
                raise Odd(f"no end of a WARC header at {at}")
            more = self._frames.read(_HEAD_READ if lo == len(data) else _HEAD_READ_MORE)
            if not more:
                if lo < len(data):
                    raise Odd(f"the file ends inside the record at {at}")
                return None
            data, lo = (more, 0) if lo == len(data) else (data[lo:] + more, 0)
            self._data, self._offset = data, lo
        head_end += 4
        if not _STRICT_HEAD.fullmatch(data, lo, head_end):
            raise Odd(f"a WARC header not in the strict form at {at}")
        length = _CONTENT_LENGTH.search(data, lo, head_end)
        value = length.group(1).strip(b" ") if length else b""
        if not value.isdigit():
            raise Odd(f"no Content-Length of digits at {at}")
        size = head_end - lo + int(value) + 4
        if size > _FAST_RECORD_BYTES:
            raise Odd(f"a record of {size} bytes at {at}")
        pieces = [(data, lo, min(len(data), lo + size))]
        have = pieces[0][2] - lo
        while have < size:
            more = self._frames.read(min(size - have, _READ_BLOCK))
            if not more:
                raise Odd(f"the file ends inside the record at {at}")
            pieces.append((more, 0, min(len(more), size - have)))
            have += pieces[-1][2]
        last, _, stop = pieces[-1]
        self._data, self._offset, self._at = last, stop, at + size
        tail = last[stop - 4 : stop] if stop - pieces[-1][1] >= 4 else _tail(pieces, 4)
        if tail != b"\r\n\r\n":
            raise Odd(f"the record at {at} is not followed by CRLF CRLF")
        return _Framed(at, at + size, pieces, data[lo:head_end])

    def _warc_record(self, framed: _Framed):
        """The record warcio's `parse_record_stream` makes of these bytes (its WARC branch, with the WARC
        header parsed from memory: `_warc_headers`)."""
        stream = _RecordBytes(framed.pieces, framed.end - framed.start - 4)
        rec_headers = _warc_headers(framed.head)
        if rec_headers is None:  # not UTF-8: warcio decodes line by line
            return self._loader.parse_record_stream(stream)
        stream.skip(len(framed.head))
        loader = self._loader
        rec_type = rec_headers.get_header("WARC-Type")
        uri = loader._ensure_target_uri_format(rec_headers)
        length = rec_headers.get_header("Content-Length")
        content_type = rec_headers.get_header("Content-Type")
        length = int(length)  # digits (`_frame`)
        block = LimitReader.wrap_stream(stream, length)
        http_headers = self._http_headers(rec_type, uri, block, stream, length)
        payload_length = length - block.tell() if length and http_headers else -1
        return ArcWarcRecord(
            "warc",
            rec_type,
            rec_headers,
            block,
            http_headers,
            content_type,
            length,
            payload_length=payload_length,
            digest_checker=DigestChecker(False),
        )

    def _http_headers(self, rec_type, uri, block: LimitReader, stream: _RecordBytes, length: int):
        """warcio's `load_http_headers`, with the HTTP header parsed from memory when it is in one piece."""
        loader = self._loader
        parser = loader.http_req_parser if rec_type == "request" else loader.http_parser
        if length == 0 or rec_type not in loader.HTTP_RECORDS or not isinstance(uri, str) or parser.verify:
            return loader.load_http_headers(rec_type, uri, block, length)
        if not uri.startswith(loader.HTTP_SCHEMES):
            return None
        data, at, end, whole = stream.contiguous(length)
        try:
            parsed = _parse_http_head(data, at, end, whole)
        except EOFError:
            if rec_type == "revisit":
                return None  # an empty revisit, as warcio has it
            raise
        if parsed is None:  # the header runs past this piece: warcio reads it
            return loader.load_http_headers(rec_type, uri, block, length)
        headers, size = parsed
        stream.skip(size)
        block.limit -= size
        return headers


def _parse_http_head(data: bytes, at: int, end: int, whole: bool) -> tuple[StatusAndHeaders, int] | None:
    """What warcio's `StatusAndHeadersParser.parse` (with `verify` off, as our loader has it) makes of the
    lines in `data[at:end]`, and how many bytes it reads; None if a line runs on past `end` and the record
    does not end there (`whole`), so that only warcio can read it."""
    start = at
    head_end = data.find(b"\r\n\r\n", at, min(end, at + _MAX_FAST_HEAD))
    if head_end >= 0 and _STRICT_LINES.fullmatch(data, at, head_end + 4):
        try:  # lines that start with a printable ASCII byte: one pass gives what the loop below would
            text = data[at : head_end + 2].decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            first, _, rest = text.partition("\r\n")
            headers = [(name.rstrip(" \t"), value.strip()) for name, value in _HEADER_LINE.findall(rest)]
            protocol_status = first.rstrip().split(" ", 1)
            statusline = protocol_status[1].strip() if len(protocol_status) > 1 else ""
            parsed = _status_and_headers(statusline, headers, protocol_status[0], len(text) + 2)
            return parsed, head_end + 4 - at

    def readline() -> str:
        nonlocal at
        stop = min(end, at + _MAX_LINE_BYTES)
        newline = data.find(b"\n", at, stop)
        if newline >= 0:
            stop = newline + 1
        elif stop == end and not whole:
            raise _RunsOn
        line = data[at:stop]
        at = stop
        try:
            return line.decode("utf-8")
        except UnicodeDecodeError:
            return line.decode("iso-8859-1")

    try:  # from here on, warcio's parse line by line (statusandheaders.py, warcio 1.8.1)
        full_statusline = readline()
        statusline, total_read = full_statusline.rstrip(), len(full_statusline)
        headers: list[tuple[str, str]] = []
        if total_read == 0:
            raise EOFError()
        if not statusline:
            return _status_and_headers(statusline, headers, "", total_read), at - start
        protocol_status = statusline.split(" ", 1)
        line = readline()
        total_read += len(line)
        line = line.rstrip()
        while line:
            result = line.split(":", 1)
            if len(result) == 2:
                name, value = result[0].rstrip(" \t"), result[1].lstrip()
            else:
                name, value = result[0], None
            next_line = readline()
            total_read += len(next_line)
            next_line = next_line.rstrip()
            while next_line and next_line.startswith((" ", "\t")):
                if value is not None:
                    value += next_line
                next_line = readline()
                total_read += len(next_line)
                next_line = next_line.rstrip()
            if value is not None:
                headers.append((name, value))
            line = next_line
    except _RunsOn:
        return None
    statusline = protocol_status[1].strip() if len(protocol_status) > 1 else ""
    return _status_and_headers(statusline, headers, protocol_status[0], total_read), at - start


class _RunsOn(Exception):
    """A header line goes on past the bytes in memory."""


class _IndexedHeaders(StatusAndHeaders):
    """warcio's `StatusAndHeaders`, whose `get_header` (the first header of that name, any case) looks the
    name up in a dict, made on first use and dropped when a header changes."""

    _index: dict[str, str] | None = None

    def get_header(self, name, default_value=None):
        index = self._index
        if index is None:
            index = {}
            for key, value in self.headers:
                index.setdefault(key.lower(), value)
            self._index = index
        return index.get(name.lower(), default_value)

    def add_header(self, name, value):
        self._index = None
        return super().add_header(name, value)

    def replace_header(self, name, value):
        self._index = None
        return super().replace_header(name, value)

    def remove_header(self, name):
        self._index = None
        return super().remove_header(name)


def _status_and_headers(statusline: str, headers: list, protocol: str, total_len: int) -> StatusAndHeaders:
    """`StatusAndHeaders(statusline, headers, protocol, total_len)` for headers that are already str tuples
    (its constructor copies them through `headers_to_str_headers`, which would change nothing)."""
    parsed = _IndexedHeaders.__new__(_IndexedHeaders)
    parsed.statusline, parsed.headers, parsed.protocol = statusline, headers, protocol
    parsed.total_len, parsed.headers_buff = total_len, None
    return parsed


def _tail(pieces: list[tuple[bytes, int, int]], size: int) -> bytes:
    parts = []
    for data, start, stop in reversed(pieces):
        parts.append(data[max(start, stop - size) : stop])
        size -= len(parts[-1])
        if size <= 0:
            break
    return b"".join(reversed(parts))


def _warc_headers(head: bytes) -> StatusAndHeaders | None:
    """What warcio's `StatusAndHeadersParser(WARC_TYPES).parse` makes of a strict WARC header (`_STRICT_HEAD`),
    or None if it is not UTF-8 (warcio then decodes each line on its own, as UTF-8 or else Latin-1)."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return None
    # a line without a colon is dropped; none is a continuation or blank (each starts with a printable)
    headers = [(name.rstrip(" \t"), value.strip()) for name, value in _HEADER_LINE.findall(text, 10)]
    return _status_and_headers("", headers, text[:8], len(text))


def read_html_responses(
    location: str,
    counters: Counter,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_inflated_bytes: int = DEFAULT_MAX_INFLATED_BYTES,
    fast: bool = True,
) -> Iterator[HtmlResponse]:
    """Yield HTTP 200 HTML responses from one WARC/ARC file, counting every record that is not one.

    A missing or unreadable file counts `error:input_missing` / `error:input_unreadable` and yields nothing;
    a remote file that breaks off for good (`crawl.remote`) counts `error:input_broken_off` and ends there.
    `max_inflated_bytes` caps what one gzip member may inflate per record (see the module docstring).
    `fast=False` reads with the robust reader alone (the fast path yields the same; see `FastArchiveRecords`).
    """
    try:  # opened once: the stream that proves the file exists is the one that is read
        stream = open_input(location, counters)
    except FileNotFoundError:
        counters["error:input_missing"] += 1
        log.warning("input missing: %s", location)
        return
    except (OSError, NotImplementedError) as exc:
        counters["error:input_unreadable"] += 1
        log.warning("input unreadable: %s (%s)", location, exc)
        return

    try:
        reader = FastArchiveRecords if fast else ArchiveRecords
        records = reader(stream, counters, location, max_inflated=max_inflated_bytes)
        yield from _html_responses(location, records, counters, max_body_bytes)
    except RemoteError as exc:  # retries used up mid-file: what was read stands, the rest is not read
        counters["error:input_broken_off"] += 1
        log.warning("input %s broke off for good: %s", location, exc)


def _html_responses(
    location: str, records: ArchiveRecords | FastArchiveRecords, counters: Counter, max_body_bytes: int
) -> Iterator[HtmlResponse]:
    part_of: str | None = None
    for record in records:
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
        codings = _content_codings(record)
        if any(coding not in _CONTENT_DECODERS for coding in codings):
            counters["skip:unsupported_content_encoding"] += 1
            continue
        try:
            block = max_body_bytes + 1 if records.in_memory else _RESYNC_CHUNK
            body, left_encoded = _decoded_body(_http_payload(record), codings, max_body_bytes + 1, block)
        except EOFError:  # the file ends inside this record's gzip member
            counters["error:truncated_record"] += 1
            continue
        except _BadEncoding as exc:  # the header lies about the body's coding
            counters["skip:bad_content_encoding"] += 1
            log.info("body of %s %s does not decode: %s", location, record_id, exc)
            continue
        except RemoteError:
            raise
        except Exception as exc:  # bad chunking
            counters["error:bad_payload"] += 1
            log.warning("bad payload in %s %s: %s", location, record_id, exc)
            continue
        if len(body) > max_body_bytes:
            counters["skip:body_too_large"] += 1
            continue
        if left_encoded:
            counters["warn:stored_decoded"] += (
                1  # Content-Encoding names a coding the stored body no longer has
            )
        if record.raw_stream.limit > 0:
            cut_by_cap = records.cut_by == "oversized"
            counters["skip:inflated_too_large" if cut_by_cap else "error:truncated_record"] += 1
            continue
        if not body or body.isspace():  # `not body.strip()` without copying the body
            counters["skip:empty_body"] += 1
            continue
        if mime not in HTML_TYPES and not looks_like_html(body):
            counters["skip:not_html"] += 1
            continue
        fetch_time = parse_warc_date(fetch_raw)
        if fetch_raw and fetch_time is None:
            counters["warn:bad_warc_date"] += 1
        if refused_charsets(body, content_type):
            counters["charset:refused"] += 1  # kept: decoding ignores a label that is not a web encoding
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


def _http_payload(record):
    """The HTTP payload with chunked transfer coding removed and any content coding left on."""
    coding = (record.http_headers.get_header("Transfer-Encoding") or "").split(",")[-1].strip().lower()
    if coding == "chunked":
        return ChunkedDataReader(record.raw_stream)  # no decomp_type: content codings are decoded here
    return record.raw_stream


class _BadEncoding(Exception):
    """The body does not decode under the content coding its header declares."""


class _Inflate:
    """gzip or deflate, in output steps of at most `_INFLATE_BLOCK` bytes (a bomb inflates only as far as read).

    `deflate` is zlib-wrapped by the standard but raw in some servers' answers: like browsers, both are read.
    """

    def __init__(self, coding: str):
        self._coding = coding
        self._inflater = zlib.decompressobj(wbits=31 if coding in ("gzip", "x-gzip") else 15)
        self._started = False

    def feed(self, data: bytes) -> Iterator[bytes]:
        while data and not self._inflater.eof:
            try:
                out = self._inflater.decompress(data, _INFLATE_BLOCK)
            except zlib.error as exc:
                if self._coding == "deflate" and not self._started:
                    self._inflater, self._started = zlib.decompressobj(wbits=-15), True
                    continue  # raw deflate, no zlib header
                raise _BadEncoding(f"{self._coding}: {exc}") from exc
            self._started = True
            data = self._inflater.unconsumed_tail
            if out:
                yield out


class _Brotli:
    """br, in output steps of about `_INFLATE_BLOCK` bytes (brotli packs a gigabyte of zeros in a few bytes)."""

    def __init__(self) -> None:
        self._decoder = brotli.Decompressor()

    def feed(self, data: bytes) -> Iterator[bytes]:
        try:
            if not data or self._decoder.is_finished():
                return
            out = self._decoder.process(data, output_buffer_limit=_INFLATE_BLOCK)
            if out:
                yield out
            while not self._decoder.can_accept_more_data():
                out = self._decoder.process(b"", output_buffer_limit=_INFLATE_BLOCK)
                if not out:
                    break
                yield out
        except brotli.error as exc:
            raise _BadEncoding(f"br: {exc}") from exc


_CONTENT_DECODERS = {
    "gzip": _Inflate,
    "x-gzip": _Inflate,
    "deflate": _Inflate,
    "br": lambda _coding: _Brotli(),
}


def _content_codings(record) -> list[str]:
    header = record.http_headers.get_header("Content-Encoding") or ""
    return [c for c in (part.strip().lower() for part in header.split(",")) if c and c != "identity"]


def _take(pieces: Iterator[bytes], limit: int) -> bytes:
    """At most `limit` bytes of `pieces`, joined once; stops pulling (and inflating) at the limit."""
    parts, total = [], 0
    for part in pieces:
        parts.append(part)
        total += len(part)
        if total >= limit:
            break
    return b"".join(parts)[:limit]


def _looks_like_markup(head: bytes) -> bool:
    return head.lstrip(b"\xef\xbb\xbf \t\r\n\x0c").startswith(b"<")


def _decoded_body(stream, codings: list[str], limit: int, block: int = _RESYNC_CHUNK) -> tuple[bytes, bool]:
    """The payload of `stream` with `codings` undone (last applied first), at most `limit` bytes, in bounded
    work; and whether the codings were left undone.

    Many archives (ClueWeb09, older crawls) store the body already decoded yet keep its `Content-Encoding`
    header: a body that fails to decode but starts like markup is taken as it is. Any other body that fails
    to decode raises `_BadEncoding`. `stream` is read `block` bytes at a time (a record already in memory is
    read in one piece, so an undecoded body is never copied).
    """
    if not codings and block >= limit:
        return stream.read(limit), False  # what `_take` would join of one read: the same bytes, no copy
    kept: list[bytes] = []  # the raw payload read so far, up to `limit`: the body if it was never encoded
    kept_bytes = 0

    def raw() -> Iterator[bytes]:
        nonlocal kept_bytes
        while chunk := stream.read(block):
            if kept_bytes < limit:
                kept.append(chunk)
                kept_bytes += len(chunk)
            yield chunk

    def through(pieces: Iterator[bytes], level: int) -> Iterator[bytes]:
        if level == len(decoders):
            yield from pieces
            return
        for piece in pieces:
            yield from through(decoders[level].feed(piece), level + 1)

    decoders = [_CONTENT_DECODERS[coding](coding) for coding in reversed(codings)]
    pieces = raw()
    try:
        return _take(through(pieces, 0), limit), False
    except _BadEncoding:
        if not _looks_like_markup(b"".join(kept)[:1024]):
            raise
    return _take(iter([*kept, *pieces]), limit), True


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
