"""The sample crawl reads back with warcio, its manifest tells the truth, and it is deterministic."""

from __future__ import annotations

import hashlib
import html
import itertools
import json
import random
from base64 import b32encode
from collections import Counter
from pathlib import Path

import pytest
from warcio.archiveiterator import ArchiveIterator

from samplecrawl.math_render import ENCODINGS
from samplecrawl.pages import content_shingles, set_jaccard
from samplecrawl.writer import BROKEN_KINDS, MANIFEST_NAME, main, plan_crawl, write_sample_crawl


@pytest.fixture(scope="module")
def crawl(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("sample")
    paths = write_sample_crawl(out)
    return paths, json.loads((out / MANIFEST_NAME).read_text(encoding="utf-8"))


def _read(path: Path) -> list[dict]:
    """Every record warcio yields, with its offset and fully read body."""
    records = []
    with path.open("rb") as fh:
        it = ArchiveIterator(fh)
        for rec in it:
            body = rec.content_stream().read()
            records.append(
                {
                    "offset": it.get_record_offset(),
                    "type": rec.rec_type,
                    "id": rec.rec_headers.get_header("WARC-Record-ID"),
                    "uri": rec.rec_headers.get_header("WARC-Target-URI"),
                    "headers": rec.rec_headers,
                    "http": rec.http_headers,
                    "body": body,
                }
            )
    return records


@pytest.fixture(scope="module")
def records(crawl: tuple[Path, dict]) -> dict[str, list[dict]]:
    paths, manifest = crawl
    return {name: _read(paths.parent / name) for name in manifest["files"]}


def _by_id(records: dict[str, list[dict]]) -> dict[str, dict]:
    return {r["id"]: {**r, "file": name} for name, recs in records.items() for r in recs}


def test_paths_file_lists_the_warcs_named_like_common_crawl(crawl):
    paths, manifest = crawl
    names = paths.read_text().splitlines()
    assert names == manifest["files"] and len(names) == 4
    assert all(n.startswith("CC-MAIN-2026-00-sample-") and n.endswith(".warc.gz") for n in names)
    assert all((paths.parent / n).is_file() for n in names)


def test_files_read_back_and_match_the_manifest(crawl, records):
    _, manifest = crawl
    found = _by_id(records)
    for name, recs in records.items():
        assert recs[0]["type"] == "warcinfo" and recs[0]["headers"].get_header("WARC-Filename") == name
    entries = manifest["records"]
    assert len(entries) == 4 * 60 and len({e["record_id"] for e in entries}) == len(entries)
    truncated = [e for e in entries if e["broken"] == "truncated"]
    assert len(truncated) == 1
    for entry in entries:
        if entry is truncated[0]:
            continue
        rec = found[entry["record_id"]]
        assert (rec["file"], rec["offset"], rec["uri"], rec["type"]) == (
            entry["file"], entry["offset"], entry["uri"], entry["warc_type"]
        )  # fmt: skip
        assert rec["headers"].get_header("WARC-Date") == entry["warc_date"]
        assert rec["http"].get_statuscode() == str(entry["http_status"])
        assert rec["http"].get_header("Content-Type") == entry["content_type"]
        request = found[entry["request_record_id"]]
        assert request["type"] == "request" and request["uri"] == entry["uri"]
        assert rec["headers"].get_header("WARC-Concurrent-To") == entry["request_record_id"]
        if entry["warc_type"] == "response":
            assert len(rec["body"]) == int(rec["http"].get_header("Content-Length"))
            digest = "sha1:" + b32encode(hashlib.sha1(rec["body"]).digest()).decode()
            assert rec["headers"].get_header("WARC-Payload-Digest") == digest
    # Every capture in the files is in the manifest.
    listed = {e["record_id"] for e in entries}
    captured = [r for r in found.values() if r["type"] in ("response", "revisit")]
    assert {r["id"] for r in captured} <= listed


def test_truncated_record_is_last_and_earlier_records_survive(crawl, records):
    paths, manifest = crawl
    entry = next(e for e in manifest["records"] if e["broken"] == "truncated")
    recs = records[entry["file"]]
    in_file = [e for e in manifest["records"] if e["file"] == entry["file"]]
    assert in_file[-1] is entry
    # All captures before it read back complete ...
    complete = {
        r["id"] for r in recs if r["type"] in ("response", "revisit") and r["id"] != entry["record_id"]
    }
    assert complete == {e["record_id"] for e in in_file[:-1]}
    # ... and the file really ends inside the last record's body.
    cut = [r for r in recs if r["id"] == entry["record_id"]]
    if cut:
        assert len(cut[0]["body"]) < int(cut[0]["http"].get_header("Content-Length"))
    assert (paths.parent / entry["file"]).stat().st_size > entry["offset"]


def test_every_math_encoding_is_present_and_carries_its_formulas(crawl, records):
    _, manifest = crawl
    found = _by_id(records)
    markers = {
        "mathjax_paren": ["\\(", "\\[", "window.MathJax"],
        "mathjax_dollar": ["$$", "text/x-mathjax-config"],
        "script_math_tex": ['type="math/tex"', 'type="math/tex; mode=display"'],
        "mathml_annotated": ["<math", 'encoding="application/x-tex"'],
        "mathml_plain": ["<math", "<mrow>"],
        "katex": ['class="katex"', 'class="katex-html"', 'encoding="application/x-tex"'],
        "img_codecogs": ["latex.codecogs.com/png.latex?"],
        "img_latex_php": ["latex.php?latex="],
    }
    math = [e for e in manifest["records"] if e["is_math"] and e["broken"] is None]
    assert {e["math_encoding"] for e in math} == set(ENCODINGS)
    assert len({e["lang"] for e in math}) >= 6
    for entry in math:
        page = found[entry["record_id"]]["body"].decode(entry["charset"])
        assert all(m in page for m in markers[entry["math_encoding"]]), entry["math_encoding"]
        assert entry["formulas"]
        if entry["math_encoding"] == "mathml_plain":
            assert "application/x-tex" not in page
        elif entry["math_encoding"].startswith("img_"):
            assert all(f'alt="{html.escape(f, quote=True)}"' in page for f in entry["formulas"])
        elif entry["math_encoding"] == "script_math_tex":
            assert all(f in page for f in entry["formulas"])
        else:
            assert all(html.escape(f, quote=False) in page for f in entry["formulas"])
    assert not any(e["formulas"] or e["math_encoding"] for e in manifest["records"] if not e["is_math"])


def test_every_broken_kind_is_present_and_really_broken(crawl, records):
    _, manifest = crawl
    found = _by_id(records)
    broken = {e["broken"]: e for e in manifest["records"] if e["broken"]}
    assert set(broken) == set(BROKEN_KINDS)

    def rec(kind: str) -> dict:
        return found[broken[kind]["record_id"]]

    assert rec("http_404")["http"].get_statuscode() == "404"
    assert rec("http_301")["http"].get_statuscode() == "301" and rec("http_301")["http"].get_header(
        "Location"
    )
    assert rec("non_html_png")["body"].startswith(b"\x89PNG\r\n\x1a\n")
    assert rec("non_html_png")["http"].get_header("Content-Type") == "image/png"
    assert rec("non_html_pdf")["body"].startswith(b"%PDF-") and rec("non_html_pdf")["body"].rstrip().endswith(
        b"%%EOF"
    )
    assert rec("empty_body")["body"] == b"" and rec("empty_body")["http"].get_header(
        "Content-Type"
    ).startswith("text/html")
    lie = rec("charset_lie")
    assert "charset=utf-8" in lie["http"].get_header("Content-Type").lower()
    with pytest.raises(UnicodeDecodeError):
        lie["body"].decode("utf-8")
    assert any("\u0400" <= ch <= "\u04ff" for ch in lie["body"].decode("windows-1251"))
    mangled = rec("broken_html")["body"]
    with pytest.raises(UnicodeDecodeError):
        mangled.decode("utf-8" if broken["broken_html"]["charset"] == "utf-8" else "ascii")
    assert not mangled.rstrip().endswith(b"</html>")
    revisit = rec("revisit")
    assert revisit["type"] == "revisit"
    target = revisit["headers"].get_header("WARC-Refers-To-Target-URI")
    earlier = [e for e in manifest["records"] if e["uri"] == target and e["warc_type"] == "response"]
    assert earlier and earlier[0]["warc_date"] < broken["revisit"]["warc_date"]
    original = found[earlier[0]["record_id"]]
    assert revisit["headers"].get_header("WARC-Payload-Digest") == original["headers"].get_header(
        "WARC-Payload-Digest"
    )


def test_charsets_are_declared_where_the_manifest_says(crawl, records):
    _, manifest = crawl
    found = _by_id(records)
    pages = [
        e
        for e in manifest["records"]
        if e["charset"] and e["broken"] not in ("charset_lie", "broken_html", "truncated")
    ]
    seen = Counter((e["charset"], e["charset_declared"]) for e in pages)
    for charset in ("windows-1251", "gb18030", "gb2312"):
        assert any(c == charset for c, _ in seen), charset
    assert ("windows-1251", "none") in seen and any(c.startswith("gb") and d == "none" for c, d in seen)
    for entry in pages:
        rec = found[entry["record_id"]]
        body = rec["body"].decode(entry["charset"])  # decodes with the labelled charset
        header = rec["http"].get_header("Content-Type").lower()
        head = body[: body.index("</head>")].lower()
        assert ("charset=" in header) == ("header" in entry["charset_declared"])
        assert ("charset" in head) == ("meta" in entry["charset_declared"])
        if "meta" in entry["charset_declared"]:
            assert entry["charset"] in head


def test_duplicates_are_labelled_and_real(crawl, records):
    _, manifest = crawl
    found = _by_id(records)
    entries = {e["record_id"]: e for e in manifest["records"]}
    dups = [e for e in manifest["records"] if e["duplicate_kind"]]
    kinds = Counter((e["duplicate_kind"], e["is_math"]) for e in dups)
    assert all(kinds[(k, m)] >= 1 for k in ("exact", "near") for m in (True, False))
    for dup in dups:
        orig = entries[dup["duplicate_of"]]
        assert orig["duplicate_of"] is None and orig["broken"] is None and dup["uri"] != orig["uri"]
        assert orig["warc_date"] < dup["warc_date"] and orig["is_math"] == dup["is_math"]
        body, orig_body = found[dup["record_id"]]["body"], found[orig["record_id"]]["body"]
        if dup["duplicate_kind"] == "exact":
            assert body == orig_body
        else:
            assert body != orig_body and dup["domain"] != orig["domain"]
            assert 0.8 <= dup["near_dup_jaccard"] < 1.0 and dup["changed_words"] >= 1


def test_only_labelled_pages_are_near_duplicates():
    captures = plan_crawl(240, 0.3, random.Random(0))
    shingles = [(c, content_shingles(c.page)) for c in captures if c.page is not None]
    for (a, sa), (b, sb) in itertools.combinations(shingles, 2):
        if (a.original or a) is not (b.original or b):
            assert set_jaccard(sa, sb) < 0.8, (a.uri, b.uri)


def test_languages_and_domains_are_varied(crawl):
    _, manifest = crawl
    entries = manifest["records"]
    assert {"en", "de", "fr", "es", "ru", "zh", "pt", "it"} <= {e["lang"] for e in entries}
    per_domain = Counter(e["domain"] for e in entries)
    assert len(per_domain) >= 20 and max(per_domain.values()) >= 5
    days = {e["warc_date"][:10] for e in entries}
    assert len(days) >= 3
    assert 0.2 <= sum(e["is_math"] for e in entries) / len(entries) <= 0.4


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    def digest(seed: int, name: str) -> list[bytes]:
        out = tmp_path / name
        write_sample_crawl(out, n_files=2, records_per_file=25, seed=seed)
        return [p.read_bytes() for p in sorted(out.iterdir())]

    assert digest(7, "a") == digest(7, "b")
    assert digest(7, "a") != digest(8, "c")


def test_too_small_crawl_and_bad_share_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="at least"):
        write_sample_crawl(tmp_path, n_files=1, records_per_file=5)
    with pytest.raises(ValueError, match="math_share"):
        write_sample_crawl(tmp_path, math_share=1.5)


def test_command_line(tmp_path, capsys):
    main(["--out", str(tmp_path / "cli"), "--files", "2", "--records", "20", "--seed", "3"])
    printed = Path(capsys.readouterr().out.strip())
    assert printed == tmp_path / "cli" / "warc.paths"
    manifest = json.loads((tmp_path / "cli" / MANIFEST_NAME).read_text(encoding="utf-8"))
    assert manifest["seed"] == 3 and len(manifest["records"]) == 40
