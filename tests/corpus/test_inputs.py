import gzip
from pathlib import Path

import pytest

from crawl.inputs import InputError, open_input, resolve_inputs


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"WARC/1.0\r\n")
    return path


def test_single_file_directory_and_glob(tmp_path):
    a = _touch(tmp_path / "crawl" / "b.warc.gz")
    b = _touch(tmp_path / "crawl" / "sub" / "a.warc")
    _touch(tmp_path / "crawl" / "notes.txt.bak")
    assert resolve_inputs(str(a)) == [str(a.resolve())]
    assert resolve_inputs(str(tmp_path / "crawl")) == sorted([str(a.resolve()), str(b.resolve())])
    assert resolve_inputs(str(tmp_path / "crawl" / "*.warc.gz")) == [str(a.resolve())]


def test_paths_file_gzip_relative_and_remote(tmp_path):
    a = _touch(tmp_path / "segments" / "x.warc.gz")
    paths = tmp_path / "warc.paths.gz"
    with gzip.open(paths, "wt") as fh:
        fh.write(
            "segments/x.warc.gz\n\n# comment\ns3://commoncrawl/crawl-data/y.warc.gz\nsegments/missing.warc.gz\n"
        )
    resolved = resolve_inputs(str(paths))
    # sorted, missing entries kept (counted later as failed inputs), remote entries kept verbatim
    assert str(a.resolve()) in resolved
    assert "s3://commoncrawl/crawl-data/y.warc.gz" in resolved
    assert str((tmp_path / "segments" / "missing.warc.gz").resolve()) in resolved
    assert resolved == sorted(resolved)


def test_comma_separated_specs_are_deduplicated(tmp_path):
    a = _touch(tmp_path / "a.warc")
    assert resolve_inputs(f"{a},{a}") == [str(a.resolve())]


@pytest.mark.parametrize("spec", ["does/not/exist.warc.gz", "no_match_*.warc.gz"])
def test_missing_inputs_raise_clear_errors(tmp_path, spec):
    with pytest.raises(InputError):
        resolve_inputs(str(tmp_path / spec))


def test_empty_directory_and_empty_paths_file(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no WARC"):
        resolve_inputs(str(tmp_path / "empty"))
    (tmp_path / "warc.paths").write_text("\n")
    with pytest.raises(InputError, match="lists no inputs"):
        resolve_inputs(str(tmp_path / "warc.paths"))


def test_remote_inputs_say_what_is_missing():
    with pytest.raises(NotImplementedError, match="s3://"):
        open_input("s3://bucket/file.warc.gz")
