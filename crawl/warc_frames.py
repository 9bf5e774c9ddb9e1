"""The bytes of an archive for `crawl.warc`'s fast path: inflated by FastWARC, with proof of what is intact.

`crawl.warc` reads a clean file fast and hands a damaged one over to its robust reader (`ArchiveRecords`) at
the last record it yielded. For that it needs two things from the byte source, and this module provides them:

- what is proven intact: `confirmed` is an uncompressed offset before which every gzip member is whole and
  verified (CRC and length, by the inflater) and no bigger than `limit`, so the robust reader would have read
  those bytes in the same way, with no damage, no pause and no inflation cap;
- a replay: `replay(at)` gives a stream that the robust reader can start on, without reading the source
  again (a remote file gets one request): the compressed bytes from the start of the member holding `at`,
  kept in memory (`Tape`), followed by the rest of the source, and how many inflated bytes to skip.

FastWARC's `GzipReader` (Rust, zlib-rs) inflates about twice as fast as Python's zlib, but its reads cross
member boundaries and it ends a truncated file without an error. What it does say is which member it is in
(`frame_start_position`): each time that moves, the member that ended is sized from its gzip trailer (ISIZE)
when it is the only one since the last known start (no gzip magic between), else by inflating that stretch
again with Python's zlib (rare: records smaller than a read). The last member of the file is checked the same
way at the end, so a truncated or padded tail is never taken as clean.
"""

from __future__ import annotations

import functools
import io
import re
import zlib
from collections import deque
from typing import BinaryIO

from fastwarc.stream_io import GzipReader

from crawl.remote import RemoteError

_MAGIC = b"\x1f\x8b\x08"
_PLAIN_READ = 1 << 18  # a plain file is read in blocks of at least this


class Odd(Exception):
    """The source is not provably clean here: the robust reader must take over."""


class Tape:
    """The compressed bytes given to the inflater, kept from an offset on (`drop_before`), to replay them."""

    def __init__(self, raw: BinaryIO):
        self.raw = raw
        self._chunks: deque[bytes] = deque()
        self.start = 0  # source offset of the first kept byte
        self.end = 0  # source offset after the last byte read
        self.error: BaseException | None = None  # what the source raised, if it did

    def read(self, size: int = -1) -> bytes:
        try:
            data = self.raw.read(size if size is not None and size >= 0 else 1 << 16)
        except BaseException as exc:
            self.error = exc
            raise
        if data:
            self._chunks.append(data)
            self.end += len(data)
        return data

    def tell(self) -> int:
        return self.end

    def close(self) -> None:  # the inflater never closes the source: the reader does
        pass

    def slice(self, start: int, stop: int) -> bytes:
        """The kept bytes from `start` to `stop`."""
        parts, at = [], self.start
        for chunk in self._chunks:
            if at >= stop:
                break
            if at + len(chunk) > start:
                parts.append(memoryview(chunk)[max(0, start - at) : stop - at])
            at += len(chunk)
        return b"".join(parts)

    def contains(self, needle: bytes, start: int, stop: int) -> bool:
        """Whether `needle` lies wholly within the kept bytes from `start` to `stop`, searched in place (a
        compiled literal: `re` finds it about twice as fast as `bytes.find`)."""
        pattern, size = _literal(needle), len(needle)
        at, tail = self.start, b""  # tail: the last bytes in range before this chunk, for a needle across
        for chunk in self._chunks:
            end = at + len(chunk)
            if end > start and at < stop:
                lo, hi = max(start, at) - at, min(stop, end) - at
                if pattern.search(chunk, lo, hi) or (
                    tail and needle in tail + chunk[lo : min(hi, lo + size - 1)]
                ):
                    return True
                tail = (tail + chunk[max(lo, hi - size + 1) : hi])[1 - size :]
            at = end
        return False

    def drop_before(self, offset: int) -> None:
        """Forget the bytes before `offset` (whole chunks only)."""
        while self._chunks and self.start + len(self._chunks[0]) <= offset:
            self.start += len(self._chunks.popleft())


class GzipFrames:
    """A gzip file's inflated bytes, read by FastWARC, with `confirmed` and `replay` (module docstring).

    A member larger than `limit` inflated bytes is not taken as clean (`Odd` is raised): `limit` is at most
    the robust reader's inflation cap, so every member read here is one the cap never touches.
    """

    def __init__(self, raw: BinaryIO, limit: int):
        self.tape = Tape(raw)
        self._inflater = GzipReader(self.tape)
        self._limit = limit
        self.position = 0  # inflated bytes delivered
        # (compressed, inflated) offsets of member starts; all before the last one is whole and verified
        self._starts: deque[tuple[int, int]] = deque([(0, 0)])
        self._frame = 0  # the last of `_starts`: the member being read, and its inflated offset
        self.confirmed = 0
        self.ended = False

    def read(self, size: int) -> bytes:
        """At most `size` inflated bytes (fewer near `limit`); b"" at the end of the file. Raises `Odd` where
        the file is damaged or a member grows past `limit`."""
        before = self.position
        room = self._limit - (before - self.confirmed)
        if room < 0:
            raise Odd("gzip member larger than the fast path's limit")
        try:
            data = self._inflater.read(size if size <= room else room + 1)
        except OSError as exc:
            if exc is self.tape.error and isinstance(exc, RemoteError):
                raise  # the remote file broke off for good: not damage, and nothing to hand over
            raise Odd(f"gzip damage: {exc}") from exc
        self.position = before + len(data)
        if self._inflater.frame_start_position() != self._frame:
            self._moved_to(self._inflater.frame_start_position(), before)
        if self.position - self.confirmed > self._limit:
            raise Odd("gzip member larger than the fast path's limit")
        if not data:
            self._end()
        return data

    def _moved_to(self, frame: int, before: int) -> None:
        start, at = self._starts[-1]
        if frame is None or frame < start:
            raise Odd("FastWARC reports no gzip member here")
        if self.tape.contains(_MAGIC, start + 1, frame):
            size = _members_size(self.tape.slice(start, frame), self._limit)  # several members: inflate them
        else:  # one member: its size is in its trailer
            size = int.from_bytes(self.tape.slice(frame - 4, frame), "little")
            if size > self._limit:
                size = None
        if size is None or not before <= at + size <= self.position:
            raise Odd(f"gzip members before offset {frame} do not add up")
        self._starts.append((frame, at + size))
        self._frame, self.confirmed = frame, at + size

    def _end(self) -> None:
        """The inflater says the file ended: prove the last members whole and the source drained."""
        while self.tape.read(1 << 16):
            pass
        start, at = self._starts[-1]
        size = _members_size(self.tape.slice(start, self.tape.end), self._limit)
        if size is None or at + size != self.position:
            raise Odd("the file ends inside a gzip member, or with bytes that are no member")
        self._starts.append((self.tape.end, self.position))
        self._frame, self.confirmed = self.tape.end, self.position
        self.ended = True

    def release(self, offset: int) -> None:
        """Nothing before inflated `offset` will be replayed: forget member starts and bytes before it."""
        while len(self._starts) > 1 and self._starts[1][1] <= offset:
            self._starts.popleft()
        self.tape.drop_before(self._starts[0][0])

    def replay(self, at: int, align: int) -> tuple[BinaryIO, int]:
        """The source again from the member holding inflated offset `at` (which must not be before the last
        `release`), read in blocks that end where blocks of `align` from the start of the file end; and how
        many of its inflated bytes come before `at`."""
        start, inflated_start = max(s for s in self._starts if s[1] <= at)
        replay = Replay(self.tape.slice(start, self.tape.end), self.tape.raw, start, align)
        return replay, at - inflated_start  # type: ignore[return-value]


class PlainFrames:
    """An uncompressed file's bytes, read in large blocks; every byte read is `confirmed`."""

    def __init__(self, raw: BinaryIO):
        self.tape = Tape(raw)
        self.position = 0
        self.ended = False

    @property
    def confirmed(self) -> int:
        return self.position

    def read(self, size: int) -> bytes:
        data = self.tape.read(max(size, _PLAIN_READ))
        self.position += len(data)
        self.ended = not data
        return data

    def release(self, offset: int) -> None:
        self.tape.drop_before(offset)

    def replay(self, at: int, align: int) -> tuple[BinaryIO, int]:
        """The source again from offset `at` (not before the last `release`), read in blocks that end where
        blocks of `align` from the start of the file end; and 0 bytes to skip."""
        return Replay(self.tape.slice(at, self.tape.end), self.tape.raw, at, align), 0  # type: ignore[return-value]


def open_frames(raw: BinaryIO, limit: int) -> GzipFrames | PlainFrames:
    """`raw` (a buffered stream) as gzip frames if it starts like gzip, else as plain bytes."""
    if raw.peek(2)[:2] == b"\x1f\x8b":  # type: ignore[attr-defined]
        return GzipFrames(raw, limit)
    return PlainFrames(raw)


@functools.cache
def _literal(needle: bytes) -> re.Pattern[bytes]:
    return re.compile(re.escape(needle))


def _members_size(data: bytes, limit: int) -> int | None:
    """Inflated size of `data` if it is whole gzip members, each inflating to at most `limit`; else None."""
    total = 0
    while data:
        inflater = zlib.decompressobj(wbits=31)
        try:
            size = len(inflater.decompress(data, limit + 1))
        except zlib.error:
            return None
        if not inflater.eof or size > limit:
            return None
        total += size
        data = inflater.unused_data
    return total


class Replay(io.RawIOBase):
    """`prefix`, then the rest of `raw` (a buffered stream): the source again from `offset`, without reading
    it twice. No read crosses a multiple of `align` counted from the start of the file, so the robust reader
    gets the same blocks it would have got reading the file from the start (where a gzip member fails, and
    how much of it was inflated by then, depends on those blocks)."""

    def __init__(self, prefix: bytes, raw: BinaryIO, offset: int, align: int):
        self._prefix = prefix
        self._at = 0
        self._raw = raw
        self._offset = offset
        self._align = align

    def readable(self) -> bool:
        return True

    def peek(self, size: int = 1) -> bytes:
        rest = self._prefix[self._at :]
        return rest if len(rest) >= 2 else rest + self._raw.peek(size)[: max(size, 2)]  # type: ignore[attr-defined]

    def read(self, size: int | None = -1) -> bytes:
        room = self._align - self._offset % self._align
        size = room if size is None or size < 0 else min(size, room)
        data = self._prefix[self._at : self._at + size]
        self._at += len(data)
        if len(data) < size:
            data += self._raw.read(size - len(data))
        self._offset += len(data)
        return data

    def readinto(self, buffer) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._raw.close()
        super().close()
