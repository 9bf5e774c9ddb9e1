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


def _mirror(root: Path, crawl: str, names: list[str]) -> list[str]:
    keys = [f"crawl-data/{crawl}/segments/{i % 2}/warc/{name}" for i, name in enumerate(names)]
    for key in keys:
        _touch(root / key)
    with gzip.open(root / "crawl-data" / crawl / "warc.paths.gz", "wt") as fh:
        fh.write("\n".join(reversed(keys)) + "\n")
    return keys


def test_a_crawl_id_resolves_its_paths_file_under_the_base(tmp_path):
    from crawl.inputs import crawl_locations, crawl_paths_file

    keys = _mirror(tmp_path, "CC-MAIN-2024-10", [f"f{i}.warc.gz" for i in range(5)])
    # keys are relative to the crawl's root, not to the paths file's folder; sorted
    assert crawl_locations("CC-MAIN-2024-10", str(tmp_path) + "/") == sorted(f"{tmp_path}/{k}" for k in keys)
    assert (
        crawl_paths_file("CC-MAIN-2024-10", "s3://commoncrawl/")
        == "s3://commoncrawl/crawl-data/CC-MAIN-2024-10/warc.paths.gz"
    )
    with pytest.raises(InputError, match="CC-MAIN-2024-10"):
        crawl_paths_file("2024-10")
    with pytest.raises(InputError, match=r"CC-MAIN-2024-11.*--crawl-base.*does not exist"):
        crawl_locations("CC-MAIN-2024-11", str(tmp_path))


def test_limit_and_shards_partition_the_inputs():
    from crawl.inputs import take_part

    files = [f"f{i:02d}" for i in range(10)]
    assert take_part(files, limit=4) == files[:4]
    shards = [take_part(files, limit=7, shard=f"{i}/3") for i in range(3)]
    assert shards[0] == ["f00", "f03", "f06"]  # strided: each shard spans the crawl's segments
    assert (
        sorted(f for shard in shards for f in shard) == files[:7]
    )  # and the shards of one limit partition it
    for bad in ("3/3", "1", "a/b", "-1/2"):
        with pytest.raises(InputError, match="--shard"):
            take_part(files, shard=bad)
    with pytest.raises(InputError, match="--limit"):
        take_part(files, limit=0)


def test_a_file_is_known_by_its_crawl_key_whatever_the_mirror():
    from crawl.inputs import input_key

    key = "crawl-data/CC-MAIN-2024-10/segments/1/warc/x.warc.gz"
    assert input_key(f"https://data.commoncrawl.org/{key}") == input_key(f"s3://commoncrawl/{key}") == key
    assert input_key(f"s3a://bucket1/{key}") == input_key(f"https://u:p@mirror.example/{key}?sig=a") == key
    assert input_key(f"/mnt/cc/{key}") == key and input_key("/data/x.warc.gz") == "/data/x.warc.gz"
    news = "crawl-data/CC-NEWS/2024/01/CC-NEWS-20240101000000-00001.warc.gz"
    assert input_key(f"s3://commoncrawl/{news}") == input_key(f"/mirror/{news}") == news


@pytest.mark.parametrize(
    "pair",
    [
        # `crawl-data/` somewhere in a path, but not Common Crawl's layout: two different files
        ("/a/crawl-data/x.warc.gz", "/b/crawl-data/x.warc.gz"),
        (
            "/mnt/my-crawl-data/CC-MAIN-2024-10/segments/1/warc/x.warc.gz",
            "/mnt/crawl-data/CC-MAIN-2024-10/segments/1/warc/x.warc.gz",
        ),
        ("s3://b1/crawl-data/x.warc.gz", "s3://b2/crawl-data/x.warc.gz"),
        ("https://a.example/crawl-data/x.warc.gz", "https://b.example/crawl-data/x.warc.gz"),
        ("/a/crawl-data/CC-MAIN-2024-10/x.warc.gz", "/b/crawl-data/CC-MAIN-2024-10/x.warc.gz"),
        (
            "/a/crawl-data/CC-MAIN-2024-10/segments/1/other/x.warc.gz",
            "/b/crawl-data/CC-MAIN-2024-10/segments/1/other/x.warc.gz",
        ),
        (
            "/a/crawl-data/CC-MAIN-2024-10/segments/1/warc/x.warc.gz/y",
            "/b/crawl-data/CC-MAIN-2024-10/segments/1/warc/x.warc.gz/y",
        ),
        # the same path on two hosts or buckets, or two objects told apart by a parameter that is no secret
        ("https://a.example/x.warc.gz", "https://b.example/x.warc.gz"),
        ("https://h.example/get?file=1.warc.gz", "https://h.example/get?file=2.warc.gz"),
        ("s3://bucket/a.warc.gz", "/bucket/a.warc.gz"),
        ("http://h.example/x.warc.gz", "https://h.example/x.warc.gz"),
    ],
)
def test_two_different_files_never_share_a_key(pair):
    from crawl.inputs import input_key

    first, second = pair
    assert input_key(first) != input_key(second)


def test_a_location_and_its_redacted_form_share_a_key():
    """The manifest lists inputs redacted; a refresh must still know them."""
    from crawl.inputs import input_key
    from crawl.redact import redact_url

    for location in (
        "https://u:p@h.example/dir/x.warc.gz?X-Amz-Signature=abc&X-Amz-Credential=AK%2F1&v=2",
        "s3a://bucket/x.warc.gz",
        "https://H.EXAMPLE/x.warc.gz?sig=1#frag",
        "/data/./a/../x.warc.gz",
    ):
        assert input_key(redact_url(location)) == input_key(location)
    # re-signing a presigned URL names the same object; other parameters still tell objects apart
    assert input_key("https://h.example/x.warc.gz?v=1&sig=a") == input_key(
        "https://h.example/x.warc.gz?v=1&sig=b"
    )
    assert (
        input_key("https://h.example/x.warc.gz?v=1&sig=a") == "https://h.example/x.warc.gz?v=1&sig=REDACTED"
    )
    assert input_key("s3a://bucket/x.warc.gz") == "s3://bucket/x.warc.gz"
    assert input_key("/data/./a/../x.warc.gz") == "/data/x.warc.gz"


def test_exactly_one_of_input_and_crawl(tmp_path):
    from jobs.config import CorpusBuildConfig

    _mirror(tmp_path, "CC-MAIN-2024-10", ["a.warc.gz", "b.warc.gz", "c.warc.gz"])
    for kwargs in ({}, {"input": str(tmp_path), "crawl": "CC-MAIN-2024-10"}):
        with pytest.raises(InputError, match="exactly one of --input and --crawl"):
            CorpusBuildConfig(output="o", **kwargs).warc_locations()
    config = CorpusBuildConfig(output="o", crawl="CC-MAIN-2024-10", crawl_base=str(tmp_path), shard="1/2")
    # sorted by location: segments/0/{a,c}, segments/1/b; shard 1 of 2 is the second of those
    assert [Path(p).name for p in config.warc_locations()] == ["c.warc.gz"]
