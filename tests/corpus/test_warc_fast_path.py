"""The fast WARC path (FastWARC inflating, records framed strictly) against the robust reader it falls back to.

`read_html_responses(..., fast=False)` is the robust reader alone (the reader before issue 26, unchanged);
every test here asserts that the fast path gives the same pages, field for field, and the same counters, on
real files, on real files damaged in every way the robust reader handles, and on gzip member layouts the
fast path has to prove clean before it trusts them.
"""

import dataclasses
import itertools
import json
import logging
import random
import zlib
from collections import Counter
from pathlib import Path

import pytest

from crawl.warc import read_html_responses
from crawl.warc_frames import Tape

from .fault_server import FaultServer
from .warcs import gzip_member, html_warc_bytes, warc_response_head

HANDOVER = "with the robust reader"  # what the log says when the fast path hands a file over


def _both(path: Path, **kwargs) -> tuple[list, Counter]:
    """The pages and counters of both readers, asserted equal (every HtmlResponse field, every counter)."""
    fast, robust = Counter(), Counter()
    fast_rows = [dataclasses.astuple(r) for r in read_html_responses(str(path), fast, **kwargs)]
    robust_rows = [
        dataclasses.astuple(r) for r in read_html_responses(str(path), robust, fast=False, **kwargs)
    ]
    assert fast_rows == robust_rows
    assert fast == robust
    return fast_rows, fast


def _shared_warcs(shared_data) -> list[Path]:
    index = json.loads((shared_data / "warc" / "warc_index.json").read_text())["files"]
    return [shared_data / "warc" / name for name in sorted(index)]


def test_every_shared_file_reads_the_same_fast(shared_data):
    """All 23 real files (Common Crawl WARC/WAT/WET, ARC, ClueWeb, dolma, warcio's and resiliparse's damaged
    examples): the same pages and counters."""
    paths = _shared_warcs(shared_data)
    assert len(paths) >= 20
    pages = sum(len(_both(path)[0]) for path in paths)
    assert pages >= 90


def test_clean_common_crawl_files_stay_on_the_fast_path(shared_data, caplog):
    """The real Common Crawl WARC (50 records in 50 gzip members) and the 48-record dolma file are read whole
    by the fast path: it never hands them over."""
    caplog.set_level(logging.INFO, logger="crawl.warc")
    for name in ("commoncrawl/resiliparse_CC-MAIN-2020-34_sample.warc.gz", "other/dolma_sample-0000.warc.gz"):
        rows, counters = _both(shared_data / "warc" / name)
        assert rows and counters["records"] >= 48
    assert not [r for r in caplog.records if HANDOVER in r.getMessage()]


# ---------------------------------------------------------------- damage: the robust reader's counts, unchanged


def _members(data: bytes) -> list[bytes]:
    members, pos = [], 0
    while pos < len(data):
        inflater = zlib.decompressobj(wbits=31)
        inflater.decompress(data[pos:])
        members.append(data[pos : len(data) - len(inflater.unused_data)])
        pos = len(data) - len(inflater.unused_data)
    return members


def _corrupt(member: bytes, at: float = 0.5, width: int = 16) -> bytes:
    damaged = bytearray(member)
    middle = int(len(member) * at)
    for i in range(max(0, middle - width), min(len(member), middle + width)):
        damaged[i] ^= 0xFF
    return bytes(damaged)


@pytest.fixture(scope="module")
def dolma(shared_data) -> tuple[list[bytes], bytes]:
    """The real dolma file's 48 gzip members (one record each) and its records inflated."""
    data = (shared_data / "warc" / "other" / "dolma_sample-0000.warc.gz").read_bytes()
    members = _members(data)
    assert len(members) == 48
    return members, b"".join(zlib.decompress(m, wbits=31) for m in members)


def test_a_corrupt_member_anywhere_counts_the_same(dolma, tmp_path, caplog):
    """Each member corrupted in turn (its CRC or its deflate data): the fast path hands over at the last
    record it yielded and the robust reader counts exactly what it counts alone."""
    caplog.set_level(logging.INFO, logger="crawl.warc")
    members, _ = dolma
    path = tmp_path / "damaged.warc.gz"
    for k in range(len(members)):
        for at in (0.5, 0.995):  # the deflate data, or the trailer (CRC and length)
            path.write_bytes(b"".join([*members[:k], _corrupt(members[k], at, 2), *members[k + 1 :]]))
            _, counters = _both(path)
            assert counters["error:corrupt_gzip_member"] >= 1, (k, at)
    assert [r for r in caplog.records if HANDOVER in r.getMessage()]


@pytest.mark.parametrize("cut", [1, 9, 60, 500, 5000])
def test_a_truncated_file_counts_the_same(dolma, tmp_path, cut):
    members, _ = dolma
    data = b"".join(members)
    path = tmp_path / "cut.warc.gz"
    path.write_bytes(data[: len(data) - cut])
    _, counters = _both(path)
    assert counters["error:truncated_gzip"] + counters["error:truncated_record"] >= 1


@pytest.mark.parametrize(
    "tail", [b"\x00" * 7, b"garbage after the last member", b"\x1f", b"\x1f\x8b\x08"], ids=repr
)
def test_bytes_after_the_last_member_count_the_same(dolma, tmp_path, tail):
    members, _ = dolma
    path = tmp_path / "tail.warc.gz"
    path.write_bytes(b"".join(members) + tail)
    _both(path)


def test_zero_padding_and_a_broken_member_header_count_the_same(dolma, tmp_path):
    members, _ = dolma
    damaged = list(members)
    damaged[7] = b"\x00" * 512 + damaged[7]
    damaged[20] = b"\x1f\x8b\x09" + damaged[20][3:]
    path = tmp_path / "padded.warc.gz"
    path.write_bytes(b"".join(damaged))
    _, counters = _both(path)
    assert counters["error:corrupt_gzip_member"] == 1


def test_bombs_under_the_cap_count_the_same(dolma, tmp_path):
    """A member that inflates past the cap (a response that claims 8 MiB of zeros) and a good page whose
    member goes on with zeros: the fast path takes no member past the cap, the robust reader cuts them."""
    members, _ = dolma
    claims = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n<html><body>"
    zeros = 8 << 20
    bomb = gzip_member(
        [warc_response_head("https://bomb.example/", len(claims) + zeros, "bomb"), claims], zeros=zeros
    )
    page = gzip_member(
        [html_warc_bytes([("https://z.example/", "<p>zeros follow</p>")], gzip=False)], zeros=zeros
    )
    path = tmp_path / "bombs.warc.gz"
    path.write_bytes(b"".join([*members[:10], bomb, *members[10:30], page, *members[30:]]))
    for cap in (1 << 20, 32 << 20):
        _, counters = _both(path, max_inflated_bytes=cap)
        assert counters["error:inflated_too_large"] == (2 if cap == 1 << 20 else 0)


def test_plain_file_damage_counts_the_same(dolma, tmp_path):
    """An uncompressed file: garbage between records, a wrong Content-Length, a header line of a MiB, a
    record cut by the end of the file."""
    _, plain = dolma
    starts = [i for i in range(len(plain)) if plain.startswith(b"WARC/1.0\r\n", i)]
    cases = {
        "garbage": plain[: starts[5]] + b"not a WARC header\r\n" * 10 + plain[starts[5] :],
        "liar": plain.replace(b"Content-Length: ", b"Content-Length: 1", 1),
        "long-line": plain[: starts[9]] + b"WARC-X: " + b"y" * (1 << 20) + b"\r\n\r\n" + plain[starts[9] :],
        "cut": plain[: starts[30] + 700],
        "lf-only": plain[: starts[3]]
        + plain[starts[3] : starts[4]].replace(b"\r\n", b"\n")
        + plain[starts[4] :],
    }
    for name, data in cases.items():
        path = tmp_path / f"{name}.warc"
        path.write_bytes(data)
        _, counters = _both(path)
        assert counters["records"], name


def test_random_damage_counts_the_same(dolma, tmp_path):
    """Seeded random damage to the real file, several kinds at once: flipped bytes, members dropped,
    duplicated or cut, zeros and garbage between members, a header line changed."""
    members, _ = dolma
    rng = random.Random(26)
    path = tmp_path / "random.warc.gz"
    for _ in range(40):
        damaged = list(members)
        for _damage in range(rng.randint(1, 3)):
            k = rng.randrange(len(damaged))
            kind = rng.choice(["flip", "drop", "dup", "cut", "zeros", "garbage", "header"])
            if kind == "flip":
                damaged[k] = _corrupt(damaged[k], rng.random(), rng.randint(1, 8))
            elif kind == "drop":
                del damaged[k]
            elif kind == "dup":
                damaged.insert(k, damaged[k])
            elif kind == "cut":
                damaged[k] = damaged[k][: rng.randrange(1, len(damaged[k]))]
            elif kind == "zeros":
                damaged.insert(k, b"\x00" * rng.randint(1, 300))
            elif kind == "garbage":
                damaged.insert(k, rng.randbytes(rng.randint(1, 300)))
            else:
                text = zlib.decompress(damaged[k], wbits=31).replace(b"WARC-Date", b"WARC-Date\t", 1)
                damaged[k] = zlib.compress(text, wbits=31)
        path.write_bytes(b"".join(damaged))
        _both(path)


# ---------------------------------------------------------------- gzip layouts the fast path must prove clean


def _regzip(plain: bytes, cuts: list[int]) -> bytes:
    """`plain` as gzip members split at `cuts` (anywhere: inside records, several records per member)."""
    bounds = [0, *sorted(set(cuts)), len(plain)]
    return b"".join(zlib.compress(plain[a:b], wbits=31) for a, b in itertools.pairwise(bounds) if b > a)


def test_any_member_layout_reads_the_same(dolma, tmp_path):
    """Members of one record each, of many records, records split over members, members of a few bytes
    (several inside one read), one member for the whole file: the same pages and counters."""
    _, plain = dolma
    starts = [i for i in range(len(plain)) if plain.startswith(b"WARC/1.0\r\n", i)]
    rng = random.Random(21)
    layouts = {
        "per-record": starts[1:],
        "three-per-member": starts[3::3],
        "split-records": sorted(rng.sample(range(1, len(plain)), 60)),
        "tiny-members": sorted({*starts[1:], *range(starts[10], starts[10] + 3000, 7)}),
        "single-member": [],
    }
    path = tmp_path / "layout.warc.gz"
    for name, cuts in layouts.items():
        path.write_bytes(_regzip(plain, cuts))
        rows, counters = _both(path)
        assert len(rows) == 22 and counters["records"] == 48, name


def test_a_damaged_remote_file_is_read_once_by_both_paths(dolma):
    """Over the real HTTP fault server, a corrupt member in the middle: the fast path hands over without a
    second request, and the pages are those of the robust reader."""
    members, _ = dolma
    data = b"".join([*members[:20], _corrupt(members[20]), *members[21:]])
    with FaultServer({"/d.warc.gz": data}) as server:
        fast, robust = Counter(), Counter()
        fast_rows = [dataclasses.astuple(r)[1:] for r in read_html_responses(server.url("/d.warc.gz"), fast)]
        gets = server.gets("/d.warc.gz")
        robust_rows = [
            dataclasses.astuple(r)[1:]
            for r in read_html_responses(server.url("/d.warc.gz"), robust, fast=False)
        ]
    assert fast_rows == robust_rows and fast == robust
    assert gets == [None] and fast["remote:bytes"] == len(data)


def test_the_tape_finds_a_needle_across_its_chunks():
    """`Tape.contains` (how the fast path proves one gzip member between two it saw) on random chunkings."""
    rng = random.Random(3)
    for _ in range(2000):
        data = bytes(rng.choice(b"ab\x1f\x8b\x08") for _ in range(rng.randint(0, 60)))
        tape = Tape(_Chunks(data, rng))
        while tape.read(rng.randint(1, 7)):
            pass
        tape.drop_before(rng.randint(0, len(data)))
        start = rng.randint(tape.start, len(data))
        stop = rng.randint(start, len(data))
        assert tape.contains(b"\x1f\x8b\x08", start, stop) == (b"\x1f\x8b\x08" in data[start:stop])
        assert tape.slice(start, stop) == data[start:stop]


class _Chunks:
    def __init__(self, data: bytes, rng: random.Random):
        self._data, self._rng = data, rng

    def read(self, size: int) -> bytes:
        size = min(size, self._rng.randint(1, 5))
        chunk, self._data = self._data[:size], self._data[size:]
        return chunk
