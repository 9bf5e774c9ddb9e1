"""The WARC reader on real files: exactly the expected pages of every file, chunked bodies, gzip damage."""

import io
import json
import random
import re
import zlib
from collections import Counter
from pathlib import Path

import brotli
import pytest
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from crawl.warc import GunzipStream, parse_warc_date, read_html_responses

from .fault_server import FaultServer
from .warcs import gzip_member, html_warc_bytes, response_warc_bytes, warc_response_head

PAGES = [
    (f"https://example.org/p{i}", f"<html><body><p>page {i}</p></body></html>".encode()) for i in range(3)
]


def _read(path) -> tuple[list, Counter]:
    counters = Counter()
    return list(read_html_responses(str(path), counters)), counters


def test_commoncrawl_excerpt_yields_every_html_response(shared_data):
    index = json.loads((shared_data / "warc" / "warc_index.json").read_text())["files"]
    name = "commoncrawl/resiliparse_CC-MAIN-2020-34_sample.warc.gz"
    expected = [r["uri"] for r in index[name]["payload_records"] if r["content_type"].startswith("text/html")]
    rows, counters = _read(shared_data / "warc" / name)
    assert [r.url for r in rows] == expected
    assert all(r.crawl == "CC-MAIN-2020-34" and r.fetch_time is not None and r.record_id for r in rows)
    assert counters["records"] == sum(index[name]["record_types"].values())
    assert not [k for k in counters if k.startswith("error:")]


HTML_TYPES = ("text/html", "application/xhtml+xml")
OTHER_FILES = sorted(
    [
        "other/clueweb09-ja_quirk.warc.gz",
        "other/dolma_sample-0000.warc.gz",
        "other/dolma_sample-0001.warc.gz",
        "other/ia-web-commons_IAH-urls-wget.warc.gz",
        "other/ia-web-commons_html-lang-attribute.warc",
        "other/resiliparse_block-sized-records.warc.gz",
        "other/resiliparse_clipped.warc.gz",
        "other/warcio_example-bad-non-chunked.warc.gz",
        "other/warcio_example-digest.warc",
        "other/warcio_example-iana.org-chunked.warc",
        "other/warcio_example-resource.warc.gz",
        "other/warcio_example-trunc.warc",
        "other/warcio_example-wrong-chunks.warc.gz",
        "other/warcio_example.arc.gz",
        "other/warcio_example.warc",
        "other/warcio_example.warc.gz",
        "other/warcio_post-test.warc.gz",
        "commoncrawl/ccnet_sample_CC-MAIN-2019-13.wet",
        "commoncrawl/jwarc_cc_commoncrawl.org.warc.gz",
        "commoncrawl/whirlwind_CC-MAIN-2024-22.warc.gz",
        "commoncrawl/whirlwind_CC-MAIN-2024-22.warc.wat.gz",
        "commoncrawl/whirlwind_CC-MAIN-2024-22.warc.wet.gz",
    ]
)
# Where the index (what warcio 1.8.1 read, without HTTP statuses) does not say what the corpus gets:
PAGES_NOT_IN_INDEX = {
    # the 9 other text/html responses are 301/302 redirects to these two captures (HTTP status 200)
    "other/ia-web-commons_IAH-urls-wget.warc.gz": [
        ("https://archive.org/", "text/html; charset=UTF-8", 30550),
        ("https://archive.org/", "text/html; charset=UTF-8", 30459),
    ],
    # the file ends inside its only record: nothing to keep
    "other/resiliparse_clipped.warc.gz": [],
    # warcio stops after the first record of this single-member gzip file; the page is there all the same
    "other/warcio_example-bad-non-chunked.warc.gz": [("http://example.com/", "text/html", 1270)],
    # warcio loses the body (the index says 0 bytes): the gzip members split the record in the middle
    "other/warcio_example-wrong-chunks.warc.gz": [("http://example.com/", "text/html; charset=UTF-8", 1270)],
}
# Records in the file where warcio gave up early (the index counts only what came before its error)
RECORDS_NOT_IN_INDEX = {
    "other/warcio_example-bad-non-chunked.warc.gz": {
        "warcinfo": 2,
        "response": 1,
        "request": 2,
        "revisit": 1,
    },
    "other/warcio_example-wrong-chunks.warc.gz": {"response": 1, "request": 1},
}
_WARC_HEADER_BLOCK = re.compile(rb"(?:^|\n)WARC/\d\.\d+\r\n((?:[^\r\n]+\r\n)+)\r\n")  # 0.18 too


def _index(shared_data) -> dict:
    return json.loads((shared_data / "warc" / "warc_index.json").read_text())["files"]


def _gunzip_what_can_be(data: bytes) -> bytes:
    """All members' bytes up to the first damage (an oracle independent of the reader under test)."""
    if not data.startswith(b"\x1f\x8b"):
        return data
    out = []
    while data:
        inflater = zlib.decompressobj(wbits=31)
        try:
            out.append(inflater.decompress(data))
        except zlib.error:
            break
        if not inflater.eof:
            break
        data = inflater.unused_data.lstrip(b"\x00")
    return b"".join(out)


def _response_headers(path: Path) -> list[dict[str, str]]:
    """WARC headers of every response record, found by a plain regex over the decompressed file."""
    found = []
    for match in _WARC_HEADER_BLOCK.finditer(_gunzip_what_can_be(path.read_bytes())):
        fields = {}
        for line in match.group(1).decode("utf-8", "replace").split("\r\n"):
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip().removeprefix("<").removesuffix(">")  # wget: <uri>
        if fields.get("warc-type") == "response":
            found.append(fields)
    return found


def _record_id(fields: dict[str, str]) -> str:
    return f"<{fields['warc-record-id']}>" if "warc-record-id" in fields else ""


def _expected_pages(name: str, entry: dict) -> list[tuple[str, str, int]]:
    if name in PAGES_NOT_IN_INDEX:
        return PAGES_NOT_IN_INDEX[name]
    return [
        (r["uri"], r["content_type"], r["payload_bytes"])
        for r in entry.get("payload_records", [])
        if r["type"] == "response" and r["content_type"].split(";")[0].strip().lower() in HTML_TYPES
    ]


@pytest.mark.parametrize("name", OTHER_FILES)
def test_each_file_yields_exactly_its_html_pages(shared_data, name):
    """URL, Content-Type, body length and record id of every page, in file order; every record accounted for."""
    entry = _index(shared_data)[name]
    path = shared_data / "warc" / name
    rows, counters = _read(path)
    expected = _expected_pages(name, entry)
    assert [(r.url, r.content_type, len(r.body)) for r in rows] == expected
    assert counters["html_responses"] == len(expected)
    assert all(r.body.lstrip()[:1] == b"<" for r in rows)  # decoded HTML, not chunk sizes or gzip bytes

    # record ids: what the file's own WARC headers say, for the same URL in the same order
    headers_by_url: dict[str, list[dict]] = {}
    for fields in _response_headers(path):
        headers_by_url.setdefault(fields.get("warc-target-uri", ""), []).append(fields)
    if name.endswith((".arc", ".arc.gz")):  # ARC has no record ids: one derived from the capture, stable
        again, _ = _read(path)
        assert [r.record_id for r in rows] == [r.record_id for r in again]
        assert all(r.record_id and "uuid" not in r.record_id for r in rows)
    else:
        for row in rows:
            fields = headers_by_url[row.url]
            while fields and _record_id(fields[0]) != row.record_id:
                fields.pop(0)  # a redirect or other non-page response of the same URL
            assert fields, (row.url, row.record_id)
            fields.pop(0)

    # every record is counted once: kept, skipped with a reason or failed with a reason
    per_record_errors = ("error:truncated_record", "error:bad_payload", "error:malformed_record")
    skipped = sum(v for k, v in counters.items() if k.startswith(("skip:", *per_record_errors)))
    assert counters["records"] == counters["html_responses"] + skipped
    types = RECORDS_NOT_IN_INDEX.get(name, entry["record_types"])
    if "warcio_error" not in entry or name in RECORDS_NOT_IN_INDEX:
        for rec_type, n in types.items():
            if rec_type != "response":
                assert counters[f"skip:{rec_type}_record"] == n, rec_type
        responses = sum(v for k, v in counters.items() if k in ("html_responses", "skip:http_status"))
        responses += counters["skip:not_html"] + counters["error:truncated_record"]
        assert responses == types.get("response", 0)
    errors = {k: v for k, v in counters.items() if k.startswith("error:")}
    if name == "other/resiliparse_clipped.warc.gz":
        assert errors == {"error:truncated_record": 1, "error:truncated_gzip": 1}
    elif name == "commoncrawl/ccnet_sample_CC-MAIN-2019-13.wet":  # wrong Content-Length values throughout
        assert errors.keys() <= {"error:archive_load_failed", "error:malformed_record"} and errors
    else:
        assert errors == {}


def test_the_example_page_is_the_same_in_every_warcio_example(shared_data):
    bodies = {}
    for name in OTHER_FILES:
        for row in _read(shared_data / "warc" / name)[0]:
            if row.url == "http://example.com/":
                bodies[name] = row.body
    assert len(bodies) == 6 and len(set(bodies.values())) == 1
    assert (next(iter(bodies.values()))[-8:], len(next(iter(bodies.values())))) == (b"</html>\n", 1270)


# ---------------------------------------------------------------- chunked transfer encoding


def _dechunk(data: bytes) -> bytes:
    """HTTP/1.1 chunked transfer decoding, written out (RFC 9112 section 7.1), as the oracle."""
    out, pos = [], 0
    while True:
        eol = data.index(b"\r\n", pos)
        size = int(data[pos:eol].split(b";")[0], 16)
        if size == 0:
            return b"".join(out)
        out.append(data[eol + 2 : eol + 2 + size])
        pos = eol + 2 + size + 2


def test_real_chunked_response_comes_out_dechunked(shared_data):
    path = shared_data / "warc" / "other" / "warcio_example-iana.org-chunked.warc"
    raw = path.read_bytes()
    start = raw.index(b"WARC-Type: response")
    length = int(re.search(rb"Content-Length: (\d+)", raw[start:]).group(1))
    block = raw[raw.index(b"\r\n\r\n", start) + 4 :][:length]
    http_head, _, chunked = block.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding: chunked" in http_head
    rows, counters = _read(path)
    assert [r.url for r in rows] == ["http://www.iana.org/"] and counters["html_responses"] == 1
    body = rows[0].body
    assert body == _dechunk(chunked) and len(body) == 7223  # warc_index.json: payload_bytes
    assert body.startswith(b"<!doctype html>") and body.rstrip().endswith(b"</html>")


def _chunked_response_warc(pages: list[tuple[str, bytes, list[tuple[str, str]]]]) -> bytes:
    """Responses whose HTTP payload is written exactly as given (already chunked / encoded)."""
    buffer = io.BytesIO()
    writer = WARCWriter(buffer, gzip=True)
    for url, payload, headers in pages:
        http = StatusAndHeaders("200 OK", headers, protocol="HTTP/1.1")
        record = writer.create_warc_record(url, "response", payload=io.BytesIO(payload), http_headers=http)
        writer.write_record(record)
    return buffer.getvalue()


def _chunk(data: bytes, sizes: list[int]) -> bytes:
    out, pos = [], 0
    for i, size in enumerate(sizes):
        piece = data[pos : pos + size]
        ext = b";name=value" if i == 1 else b""  # chunk extensions are legal and must be ignored
        out.append(b"%x%s\r\n%s\r\n" % (len(piece), ext, piece))
        pos += size
    out.append(b"%x\r\n%s\r\n" % (len(data) - pos, data[pos:]) if pos < len(data) else b"")
    return b"".join(out) + b"0\r\n\r\n"


def test_chunked_and_gzip_encoded_responses_are_decoded(tmp_path):
    page = "<html><body><p>Chunk me: $x^2$ and a long tail " + "é" * 3000 + ".</p></body></html>"
    body = page.encode("utf-8")
    gzipped = zlib.compress(body, wbits=31)
    pages = [
        (
            "https://c.example/chunked",
            _chunk(body, [1, 17, 4000]),
            [("Content-Type", "text/html; charset=utf-8"), ("Transfer-Encoding", "chunked")],
        ),
        (
            "https://c.example/chunked-gzip",
            _chunk(gzipped, [10, 100]),
            [
                ("Content-Type", "text/html"),
                ("Transfer-Encoding", "chunked"),
                ("Content-Encoding", "gzip"),
            ],
        ),
        (
            "https://c.example/plain",
            body,
            [("Content-Type", "text/html"), ("Content-Length", str(len(body)))],
        ),
    ]
    path = tmp_path / "chunked.warc.gz"
    path.write_bytes(_chunked_response_warc(pages))
    rows, counters = _read(path)
    assert [r.url for r in rows] == [url for url, _, _ in pages]
    assert [r.body for r in rows] == [body, body, body]
    assert not [k for k in counters if k.startswith("error:")]


# ---------------------------------------------------------------- gzip members: damage and padding

DOLMA = "other/dolma_sample-0000.warc.gz"


def _members(data: bytes) -> list[bytes]:
    members, pos = [], 0
    while pos < len(data):
        inflater = zlib.decompressobj(wbits=31)
        inflater.decompress(data[pos:])
        assert inflater.eof
        end = len(data) - len(inflater.unused_data)
        members.append(data[pos:end])
        pos = end
    return members


def _corrupt(member: bytes) -> bytes:
    """Flip 32 bytes in the middle of a member's deflate data (header and trailer intact)."""
    damaged = bytearray(member)
    middle = len(member) // 2
    for i in range(middle - 16, middle + 16):
        damaged[i] ^= 0xFF
    return bytes(damaged)


@pytest.fixture(scope="module")
def dolma(shared_data) -> tuple[list[bytes], list]:
    """The good file's gzip members (one record each) and its pages read intact."""
    path = shared_data / "warc" / DOLMA
    members = _members(path.read_bytes())
    index = _index(shared_data)[DOLMA]
    assert len(members) == sum(index["record_types"].values()) == 48
    rows, counters = _read(path)
    assert len(rows) == 22 and not [k for k in counters if k.startswith("error:")]
    return members, rows


def _page_members(members: list[bytes]) -> list[int]:
    """Which member holds each page (response records), in order."""
    return [i for i, m in enumerate(members) if b"WARC-Type: response" in zlib.decompress(m, wbits=31)[:2000]]


def test_a_corrupt_member_costs_only_its_own_record(dolma, tmp_path):
    """Damage each member in turn: every record before and after it is read, the damage is counted once."""
    members, good = dolma
    pages = _page_members(members)
    assert len(pages) == len(good)
    path = tmp_path / "damaged.warc.gz"
    for k in range(1, len(members) - 1):
        path.write_bytes(b"".join([*members[:k], _corrupt(members[k]), *members[k + 1 :]]))
        rows, counters = _read(path)
        lost = {pages.index(k)} if k in pages else set()
        expected = [(r.record_id, r.body) for i, r in enumerate(good) if i not in lost]
        assert [(r.record_id, r.body) for r in rows] == expected, f"member {k}"
        assert counters["error:corrupt_gzip_member"] == 1, (k, dict(counters))
        errors = {key for key in counters if key.startswith("error:")}
        assert errors <= {"error:corrupt_gzip_member", "error:truncated_record"}, (k, errors)


def test_several_damaged_members_and_a_broken_member_header(dolma, tmp_path):
    members, good = dolma
    pages = _page_members(members)
    damaged = list(members)
    for k in (pages[3], pages[4], pages[10]):  # two neighbours and one further on
        damaged[k] = _corrupt(damaged[k])
    damaged[pages[15]] = b"\x1f\x8b\x09" + damaged[pages[15]][3:]  # not a deflate member any more
    path = tmp_path / "damaged.warc.gz"
    path.write_bytes(b"".join(damaged))
    rows, counters = _read(path)
    lost = {3, 4, 10, 15}
    assert [r.record_id for r in rows] == [r.record_id for i, r in enumerate(good) if i not in lost]
    assert [r.body for r in rows] == [r.body for i, r in enumerate(good) if i not in lost]
    assert counters["error:corrupt_gzip_member"] == 4


@pytest.mark.parametrize("padding", [1, 7, 512, 4096])
def test_zero_padding_between_members_is_skipped(dolma, tmp_path, padding):
    members, good = dolma
    path = tmp_path / "padded.warc.gz"
    path.write_bytes((b"\x00" * padding).join(members) + b"\x00" * padding)
    rows, counters = _read(path)
    assert [(r.record_id, r.body) for r in rows] == [(r.record_id, r.body) for r in good]
    assert counters["records"] == 48 and not [k for k in counters if k.startswith(("error:", "warn:"))]


def test_specific_damage_is_counted_with_its_reason(shared_data):
    other = shared_data / "warc" / "other"
    rows, counters = _read(other / "resiliparse_clipped.warc.gz")
    assert rows == [] and counters["error:truncated_record"] + counters["error:truncated_gzip"] >= 1
    # warcio refuses single-member gzip files after the first record; we re-read them and keep the page.
    rows, counters = _read(other / "warcio_example-bad-non-chunked.warc.gz")
    assert len(rows) == 1 and counters["records"] == 6 and counters["skip:revisit_record"] == 1
    rows, counters = _read(other / "warcio_example.arc.gz")
    assert len(rows) == 1 and rows[0].url.startswith("http") and rows[0].fetch_time is not None
    rows, counters = _read(shared_data / "warc" / "commoncrawl" / "ccnet_sample_CC-MAIN-2019-13.wet")
    assert rows == [] and counters["error:archive_load_failed"] >= 1 and counters["warn:resynced"] >= 1


def test_records_after_mid_file_garbage_are_kept(tmp_path):
    first = html_warc_bytes(PAGES[:1], gzip=False)
    rest = html_warc_bytes(PAGES[1:], gzip=False)
    path = tmp_path / "damaged.warc"
    path.write_bytes(first + b"this is not a WARC header\r\n" * 20 + rest)
    rows, counters = _read(path)
    assert [r.url for r in rows] == [u for u, _ in PAGES]
    assert any(k.startswith("error:") for k in counters)


def test_truncated_gzip_keeps_records_before_the_cut(tmp_path):
    data = html_warc_bytes(PAGES, gzip=True)
    path = tmp_path / "cut.warc.gz"
    path.write_bytes(data[: len(data) - 60])
    rows, counters = _read(path)
    assert [r.url for r in rows] == [u for u, _ in PAGES[:2]]
    assert counters["error:truncated_record"] + counters["error:truncated_gzip"] >= 1


def test_missing_and_empty_inputs_are_counted(tmp_path):
    rows, counters = _read(tmp_path / "missing.warc.gz")
    assert rows == [] and counters["error:input_missing"] == 1
    (tmp_path / "empty.warc.gz").write_bytes(b"")
    rows, counters = _read(tmp_path / "empty.warc.gz")
    assert rows == [] and counters["records"] == 0


def test_warc_dates():
    assert parse_warc_date("2020-08-08T17:27:41Z").isoformat() == "2020-08-08T17:27:41+00:00"
    assert parse_warc_date("20200808172741").year == 2020
    assert parse_warc_date("Sat Aug 8 2020") is None


def _warc_with_statuses(path: Path, records: list[tuple[str, str, str, bytes]]) -> Path:
    """(url, status line, content type, body) responses, in order."""
    buffer = io.BytesIO()
    writer = WARCWriter(buffer, gzip=True)
    for url, status, content_type, body in records:
        headers = StatusAndHeaders(status, [("Content-Type", content_type)], protocol="HTTP/1.1")
        writer.write_record(
            writer.create_warc_record(url, "response", payload=io.BytesIO(body), http_headers=headers)
        )
    path.write_bytes(buffer.getvalue())
    return path


@pytest.mark.parametrize(
    ("skipped", "reason"),
    [
        (("https://x.org/empty", "200 OK", "text/html", b"   \n"), "skip:empty_body"),
        (("https://x.org/gone", "404 Not Found", "text/html", b"<html>gone</html>"), "skip:http_status"),
        (("https://x.org/pic", "200 OK", "image/png", b"\x89PNG...."), "skip:not_html"),
        (
            ("https://x.org/big", "200 OK", "text/html", b"<html>" + b"x" * 5000 + b"</html>"),
            "skip:body_too_large",
        ),
    ],
)
def test_a_skipped_record_never_hides_the_pages_after_it(tmp_path, skipped, reason) -> None:
    """Every skip counts its record and goes on with the next one: the pages before and after are read."""
    good = b"<html><body><p>a page</p></body></html>"
    path = _warc_with_statuses(
        tmp_path / "mixed.warc.gz",
        [("https://x.org/a", "200 OK", "text/html", good), skipped, ("https://x.org/b", "200 OK", "text/html", good),
         skipped, ("https://x.org/c", "200 OK", "text/html", good)],
    )  # fmt: skip
    counters: Counter = Counter()
    pages = list(read_html_responses(str(path), counters, max_body_bytes=1000))
    assert [p.url for p in pages] == ["https://x.org/a", "https://x.org/b", "https://x.org/c"]
    assert counters[reason] == 2 and counters["html_responses"] == 3


# ---------------------------------------------------------------- damage and bombs: one pass over one open stream

CAP = 4 << 20  # the inflation cap for these tests (the default is 64 MiB)
BOMB = 64 << 20  # zeros in each bomb member: 16 times the cap, about 64 KB compressed
BOMB_PAGE = ("https://bomb.example/after-zeros", b"<html><body><p>kept before the zeros</p></body></html>")


@pytest.fixture(scope="module")
def bombed(dolma, tmp_path_factory) -> tuple[Path, list[tuple[str, bytes]], int]:
    """The real file with a corrupt page member in the middle and two bomb members: a response that claims
    64 MiB of zeros, and a good page whose member goes on with 64 MiB of zeros after its record. Returns
    the file, the pages expected from it (record id, body) in order, and its good members' inflated size."""
    members, good = dolma
    pages = _page_members(members)
    claims = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n<html><body>"
    bomb_claims = gzip_member(
        [warc_response_head("https://bomb.example/claims", len(claims) + BOMB, "bomb-claims"), claims],
        zeros=BOMB,
    )
    page_then_zeros = gzip_member([html_warc_bytes([BOMB_PAGE], gzip=False)], zeros=BOMB)
    damaged = list(members)
    damaged[pages[5]] = _corrupt(members[pages[5]])
    damaged.insert(pages[15] + 1, page_then_zeros)
    damaged.insert(pages[10] + 1, bomb_claims)
    path = tmp_path_factory.mktemp("bombed") / "bombed.warc.gz"
    path.write_bytes(b"".join(damaged))
    expected = [(r.record_id, r.body) for i, r in enumerate(good) if i != 5]
    expected.insert(15, ("", BOMB_PAGE[1]))  # after good page 15 (14 of them before it once page 5 is lost)
    inflated = sum(len(zlib.decompress(m, wbits=31)) for i, m in enumerate(members) if i != pages[5])
    return path, expected, inflated


def _pages(rows) -> list[tuple[str, bytes]]:
    return [("" if r.url == BOMB_PAGE[0] else r.record_id, r.body) for r in rows]


def test_damage_and_bombs_cost_only_their_own_records(bombed):
    """Every good page before and after a corrupt member and two bombs is read; each is counted once."""
    path, expected, _ = bombed
    counters: Counter = Counter()
    rows = list(read_html_responses(str(path), counters, max_inflated_bytes=CAP))
    assert _pages(rows) == expected
    assert counters["error:corrupt_gzip_member"] == 1
    assert counters["error:inflated_too_large"] == 2
    assert counters["skip:inflated_too_large"] == 1  # the response that claims the zeros
    assert counters["html_responses"] == len(expected)


def test_the_corpus_job_reads_with_its_configured_inflation_cap(bombed):
    """`--max-inflated-bytes` reaches the reader in each task: with the default (64 MiB) the 64 MiB bombs
    pass, with the cap they are cut, and the good pages are read either way."""
    from jobs.config import CorpusBuildConfig
    from jobs.corpus_pipeline import CorpusPipeline

    path, expected, _ = bombed
    seen = {}
    for cap in (CAP, BOMB + (1 << 20)):
        config = CorpusBuildConfig(input=str(path), output="-", min_math_score=0.0, max_inflated_bytes=cap)
        counters: Counter = Counter()
        list(CorpusPipeline(config).process_file(str(path), counters))
        seen[cap] = (counters["error:inflated_too_large"], counters["html_responses"])
    assert seen[CAP] == (2, len(expected))
    assert seen[BOMB + (1 << 20)][0] == 0


def test_gunzip_reads_each_compressed_byte_once_and_inflates_each_bomb_only_to_the_cap(bombed):
    path, _, inflated = bombed
    gunzip = GunzipStream(open(path, "rb"), max_inflated=CAP)  # noqa: SIM115 (closed below)
    total, pauses = 0, 0
    while True:
        chunk = gunzip.read(1 << 16)
        if chunk:
            total += len(chunk)
        elif gunzip.broken:
            pauses += 1
            gunzip.resume()
        else:
            break
    gunzip.close()
    assert gunzip.raw_bytes_read == path.stat().st_size
    # the bombs pause the stream (their records are cut); the small corrupt member fails before any of its
    # output is out, so it is dropped whole without a pause
    assert (len(gunzip.corrupt_at), len(gunzip.oversized_at), pauses) == (1, 2, 2)
    # the good members whole, the corrupt one up to its damage, each bomb at most to the cap
    assert inflated < total <= inflated + 2 * CAP + (1 << 20)


def test_a_damaged_remote_file_is_read_in_one_request_without_reopening(bombed):
    """Over the real HTTP fault server: the same pages as the local file, and one GET that reads the file
    once (no request from byte 0 again, no Range request, no separate existence check)."""
    path, expected, _ = bombed
    with FaultServer({"/bombed.warc.gz": path.read_bytes()}) as server:
        counters: Counter = Counter()
        rows = list(read_html_responses(server.url("/bombed.warc.gz"), counters, max_inflated_bytes=CAP))
        gets = server.gets("/bombed.warc.gz")
    assert _pages(rows) == expected
    assert gets == [None]  # one request, read once
    assert counters["remote:bytes"] == path.stat().st_size
    assert counters["error:corrupt_gzip_member"] == 1 and counters["error:inflated_too_large"] == 2


def test_a_wrong_content_length_does_not_hide_the_records_it_swallowed(tmp_path):
    """A record that claims more than it holds swallows the records after it and ends inside a later one;
    the resync looks inside it (from bytes kept in memory: the file is read once) and finds them all."""
    first = html_warc_bytes(PAGES[:1], gzip=False)
    rest = html_warc_bytes(PAGES[1:], gzip=False)
    tail_pages = [
        (f"https://example.org/t{i}", f"<html><body><p>tail {i}</p></body></html>") for i in range(2)
    ]
    tail = html_warc_bytes(tail_pages, gzip=False)
    claimed = int(re.search(rb"Content-Length: (\d+)", first).group(1))
    end = first.index(b"\r\n\r\n", first.index(b"Content-Length")) + 4 + claimed
    lie = claimed + (len(first) - end) + len(rest) + 60  # ends 60 bytes into the first tail record
    liar = first.replace(b"Content-Length: %d" % claimed, b"Content-Length: %d" % lie, 1)
    path = tmp_path / "liar.warc"
    path.write_bytes(liar + rest + tail)
    rows, counters = _read(path)
    # the liar itself comes out with what it swallowed (nothing tells it apart); then every swallowed record
    assert [r.url for r in rows] == [u for u, _ in PAGES] + [u for u, _ in tail_pages]
    assert counters["warn:resynced"] == 1


def test_a_header_line_of_megabytes_is_cut_not_read_quadratically(tmp_path):
    """A WARC header line of 8 MiB without a newline (then good records): read in linear time, counted."""
    path = tmp_path / "long-line.warc"
    path.write_bytes(
        html_warc_bytes(PAGES[:1], gzip=False) + b"WARC-X: " + b"y" * (8 << 20) + b"\r\n\r\n"
        + html_warc_bytes(PAGES[1:], gzip=False)
    )  # fmt: skip
    rows, counters = _read(path)
    assert [r.url for r in rows] == [u for u, _ in PAGES]
    assert any(k.startswith("error:") for k in counters)


# ---------------------------------------------------------------- content codings: gzip, deflate, br, lies

HTML = (
    "<html><body><p>Brotli, gzip and deflate: $a^2+b^2=c^2$ " + "é" * 2000 + "</p></body></html>"
).encode()


def _coded(coding: str, body: bytes) -> tuple[str, bytes, list[tuple[str, str]]]:
    return (
        f"https://enc.example/{coding or 'none'}",
        body,
        [("Content-Type", "text/html"), ("Content-Encoding", coding)],
    )


@pytest.mark.parametrize(
    ("coding", "payload"),
    [
        ("br", brotli.compress(HTML)),
        ("gzip", zlib.compress(HTML, wbits=31)),
        ("x-gzip", zlib.compress(HTML, wbits=31)),
        ("deflate", zlib.compress(HTML)),  # zlib-wrapped, as the standard says
        ("deflate", zlib.compress(HTML, wbits=-15)),  # raw deflate, as some servers send it
        ("gzip, br", brotli.compress(zlib.compress(HTML, wbits=31))),  # applied in that order
        ("identity", HTML),
    ],
    ids=["br", "gzip", "x-gzip", "deflate-zlib", "deflate-raw", "gzip-then-br", "identity"],
)
def test_content_codings_are_decoded_into_normal_pages(tmp_path, coding, payload):
    path = tmp_path / "coded.warc.gz"
    path.write_bytes(
        response_warc_bytes(
            [_coded(coding, payload), ("https://enc.example/next", HTML, [("Content-Type", "text/html")])]
        )
    )
    rows, counters = _read(path)
    assert [r.body for r in rows] == [HTML, HTML]
    assert counters["html_responses"] == 2
    assert not [k for k in counters if k.startswith(("error:", "skip:", "warn:"))]


def test_lying_and_unsupported_codings_are_counted_and_the_next_page_is_read(tmp_path):
    noise = random.Random(21).randbytes(5000)
    pages = [
        _coded("gzip", noise),  # says gzip, is noise: skipped
        _coded("br", noise),  # says br, is noise: skipped
        _coded("gzip", _corrupt(zlib.compress(HTML, wbits=31))),  # real gzip, damaged in the middle: skipped
        _coded("zstd", HTML),  # a coding not decoded here: skipped
        _coded("br", HTML),  # stored decoded with the header kept (as many archives do): kept as it is
        ("https://enc.example/last", HTML, [("Content-Type", "text/html")]),
    ]
    path = tmp_path / "lies.warc.gz"
    path.write_bytes(response_warc_bytes(pages))
    rows, counters = _read(path)
    assert [r.url for r in rows] == ["https://enc.example/br", "https://enc.example/last"]
    assert [r.body for r in rows] == [HTML, HTML]
    assert counters["skip:bad_content_encoding"] == 3
    assert counters["skip:unsupported_content_encoding"] == 1
    assert counters["warn:stored_decoded"] == 1
    assert not [k for k in counters if k.startswith("error:")]


def test_a_brotli_bomb_is_inflated_only_to_the_body_limit(tmp_path):
    """256 MiB of zeros behind `Content-Encoding: br` (a few hundred bytes): counted too large, not inflated."""
    compressor = brotli.Compressor(quality=1)
    block = bytes(1 << 20)
    bomb = b"".join([compressor.process(b"<html><body>"), *(compressor.process(block) for _ in range(256))])
    bomb += compressor.finish()
    assert len(bomb) < 100_000
    path = tmp_path / "br-bomb.warc.gz"
    path.write_bytes(
        response_warc_bytes(
            [_coded("br", bomb), ("https://enc.example/next", HTML, [("Content-Type", "text/html")])]
        )
    )
    counters: Counter = Counter()
    rows = list(read_html_responses(str(path), counters, max_body_bytes=1 << 20))
    assert [r.url for r in rows] == ["https://enc.example/next"]
    assert counters["skip:body_too_large"] == 1
