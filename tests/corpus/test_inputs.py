import gzip
import re
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


def test_paths_file_gzip_relative_and_missing(tmp_path):
    a = _touch(tmp_path / "segments" / "x.warc.gz")
    b = _touch(tmp_path / "abs" / "z.warc")
    paths = tmp_path / "warc.paths.gz"
    with gzip.open(paths, "wt") as fh:
        fh.write(f"segments/x.warc.gz\n\n# comment\n{b}\nsegments/missing.warc.gz\n")
    # sorted, missing entries kept (counted later as failed inputs)
    assert resolve_inputs(str(paths)) == sorted(
        [str(a.resolve()), str(b), str((tmp_path / "segments" / "missing.warc.gz").resolve())]
    )


@pytest.mark.parametrize("remote", ["gs://commoncrawl/crawl-data/y.warc.gz", "hdfs://namenode/y.warc"])
def test_unsupported_remote_inputs_are_refused_with_what_to_do(tmp_path, remote):
    """Given directly, with a local one, or listed in a paths file: refused while resolving, naming the
    input and the schemes that work, so that a job never starts only to count every such input unreadable."""
    local = _touch(tmp_path / "a.warc.gz")
    scheme = remote.split("://")[0]
    with pytest.raises(
        InputError,
        match=rf"--input: {scheme}:// inputs are not supported \(remote inputs can be s3://.*https://",
    ):
        resolve_inputs(f"{local},{remote}")
    paths = tmp_path / "warc.paths"
    paths.write_text(f"{local}\n{remote}\n{remote}.2\n")
    with pytest.raises(InputError, match=rf"warc\.paths.*{re.escape(remote)}\) and 1 more unsupported"):
        resolve_inputs(str(paths))


def test_supported_remote_entries_of_a_local_paths_file_are_kept_as_they_are(tmp_path):
    local = _touch(tmp_path / "a.warc.gz")
    remote = ["s3://commoncrawl/y.warc.gz", "https://data.commoncrawl.org/y.warc.gz", "http://x.org/y.warc"]
    paths = tmp_path / "warc.paths"
    paths.write_text("".join(f"{entry}\n" for entry in [local, *remote]))
    assert resolve_inputs(str(paths)) == sorted([str(local), *remote])


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


def test_unsupported_remote_inputs_say_what_is_missing():
    with pytest.raises(NotImplementedError, match=r"gs:// inputs are not supported.*s3://"):
        open_input("gs://bucket/file.warc.gz")
