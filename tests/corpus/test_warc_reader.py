import json
from collections import Counter

import pytest

from crawl.warc import parse_warc_date, read_html_responses

from .warcs import html_warc_bytes

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


@pytest.mark.parametrize(
    "name",
    sorted(
        [
            "other/clueweb09-ja_quirk.warc.gz",
            "other/dolma_sample-0000.warc.gz",
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
            "other/warcio_post-test.warc.gz",
            "commoncrawl/ccnet_sample_CC-MAIN-2019-13.wet",
            "commoncrawl/whirlwind_CC-MAIN-2024-22.warc.wat.gz",
        ]
    ),
)
def test_edge_case_files_never_raise_and_account_for_records(shared_data, name):
    index = json.loads((shared_data / "warc" / "warc_index.json").read_text())["files"][name]
    rows, counters = _read(shared_data / "warc" / name)
    # Every record is accounted for: kept, skipped with a reason, or failed with a reason.
    per_record_errors = ("error:truncated_record", "error:bad_payload", "error:malformed_record")
    skipped = sum(v for k, v in counters.items() if k.startswith(("skip:", *per_record_errors)))
    assert counters["records"] == counters["html_responses"] + skipped
    assert len(rows) == counters["html_responses"]
    # We never read fewer records than warcio did before any error it raised.
    assert counters["records"] >= sum(index["record_types"].values()) - index["record_types"].get(
        "unknown", 0
    )
    html_in_index = [
        r for r in index["payload_records"] if r["type"] == "response" and "html" in r["content_type"]
    ]
    if "warcio_error" not in index:  # where warcio gave up early we recover more than it listed
        assert len(rows) <= len(html_in_index)


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
