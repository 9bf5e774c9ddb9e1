"""Remote WARC inputs (issue 14, item 1): HTTP(S) through a real local server that misbehaves on cue, S3
through moto in server mode (behind the same misbehaving server as a proxy), and the corpus job over both."""

from __future__ import annotations

import dataclasses
import email.utils
import gzip
import json
import logging
import os
import random
import socket
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from crawl import remote
from crawl.inputs import InputError, crawl_locations, location_host, open_input, resolve_inputs
from crawl.remote import (
    RemoteChangedError,
    RemoteError,
    RemoteRetriesExhausted,
    RetryPolicy,
    open_remote,
)
from crawl.warc import read_html_responses
from samplecrawl.writer import write_sample_crawl

from .fault_server import (
    ChangedEtag,
    Cut,
    FaultServer,
    IgnoreRange,
    Redirect,
    Slow,
    Stall,
    Status,
)

FAST = RetryPolicy(attempts=5, backoff=0.001, max_backoff=0.01, read_timeout=5.0, connect_timeout=5.0)
FAST_ENV = {
    "MATHFORGE_REMOTE_RETRIES": "5",
    "MATHFORGE_REMOTE_BACKOFF": "0.001",
    "MATHFORGE_REMOTE_MAX_BACKOFF": "0.01",
    "MATHFORGE_REMOTE_READ_TIMEOUT": "5",
    "MATHFORGE_REMOTE_CONNECT_TIMEOUT": "5",
}
DUMMY_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
NO_AWS_LOOKUPS = {  # nothing outside the test may supply credentials or slow the chain down
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/credentials",
    "AWS_CONFIG_FILE": "/nonexistent/config",
}
BUCKET = "commoncrawl"
DATA = random.Random(14).randbytes(200_000)
REMOTE_COUNTERS = ("remote:retries", "remote:resumes", "remote:throttled")


def _remote_counts(counters: Counter) -> tuple[int, int, int]:
    return tuple(counters.get(k, 0) for k in REMOTE_COUNTERS)  # type: ignore[return-value]


@pytest.fixture
def server() -> Iterator[FaultServer]:
    with FaultServer({"/data.bin": DATA}) as running:
        yield running


@pytest.fixture(scope="module")
def sample_crawl(tmp_path_factory) -> list[Path]:
    """Two WARC files of the generated sample crawl (named like Common Crawl's, damage included)."""
    paths = write_sample_crawl(tmp_path_factory.mktemp("crawl"), n_files=2, records_per_file=12, seed=5)
    return [Path(p) for p in resolve_inputs(str(paths))]


@pytest.fixture
def aws_env(monkeypatch) -> None:
    """Dummy credentials and nothing else from the machine; S3 clients made afresh for the test."""
    for name in [k for k in os.environ if k.startswith(("AWS_", "MATHFORGE_"))]:
        monkeypatch.delenv(name)
    for name, value in {**DUMMY_AWS, **NO_AWS_LOOKUPS}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(remote._S3, "_clients", {})


@pytest.fixture(scope="module")
def moto_url(sample_crawl) -> Iterator[str]:
    """moto's S3 in server mode on 127.0.0.1, with the sample WARC files (public, as Common Crawl's are)
    and a gzipped paths file listing them relative to the bucket, as Common Crawl's do."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    s3 = boto3.client(
        "s3",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    s3.create_bucket(Bucket=BUCKET)
    keys = [f"crawl-data/CC-MAIN-2026-00/segments/0/warc/{p.name}" for p in sample_crawl]
    for key, path in zip(keys, sample_crawl, strict=True):
        s3.put_object(Bucket=BUCKET, Key=key, Body=path.read_bytes(), ACL="public-read")
    listing = gzip.compress("".join(f"{key}\n" for key in keys).encode())
    s3.put_object(
        Bucket=BUCKET, Key="crawl-data/CC-MAIN-2026-00/warc.paths.gz", Body=listing, ACL="public-read"
    )
    s3.put_object(Bucket=BUCKET, Key="data.bin", Body=DATA, ACL="public-read")
    yield url
    server.stop()


# ---------------------------------------------------------------- HTTP: every fault, byte for byte


@pytest.mark.parametrize(
    ("faults", "counts", "ranges"),
    [
        ([], (0, 0, 0), [None]),
        ([Status(503), Status(503)], (2, 0, 2), [None, None, None]),
        ([Status(503, retry_after="0")], (1, 0, 1), [None, None]),
        ([Status(429), Status(429), Status(429)], (3, 0, 3), [None] * 4),
        ([Status(500), Status(502), Status(408)], (3, 0, 0), [None] * 4),
        ([Cut(70_000)], (0, 1, 0), [None, "bytes=70000-"]),
        ([Cut(1_000), Cut(5_000)], (0, 2, 0), [None, "bytes=1000-", "bytes=6000-"]),
        ([Cut(0)], (0, 1, 0), [None, None]),  # nothing delivered yet: the resume is a plain GET
        ([Slow(chunk=8192, pause=0.001)], (0, 0, 0), [None]),
        ([Cut(1_000), IgnoreRange()], (0, 1, 0), [None, "bytes=1000-"]),  # 200 to a Range: skipped
        (
            [Status(500), Cut(100), Status(503, retry_after="0")],
            (2, 1, 1),
            [None, None, "bytes=100-", "bytes=100-"],
        ),
    ],
    ids=[
        "clean",
        "503-twice",
        "503-retry-after",
        "429-thrice",
        "5xx-and-408",
        "cut",
        "cut-twice",
        "cut-before-body",
        "slow",
        "range-ignored",
        "throttled-resume",
    ],
)
def test_http_faults_are_survived_byte_for_byte(server, faults, counts, ranges):
    server.script("/data.bin", *faults)
    counters: Counter = Counter()
    with open_remote(server.url("/data.bin"), counters, FAST) as stream:
        data = stream.read()
        assert stream.tell() == len(DATA)
    assert data == DATA
    assert _remote_counts(counters) == counts  # (retries, resumes, throttled)
    assert counters["remote:bytes"] == len(DATA)
    assert server.gets("/data.bin") == ranges


def test_a_connection_reset_mid_body_is_resumed(server):
    server.script("/data.bin", Cut(70_000, reset=True))
    counters: Counter = Counter()
    assert open_remote(server.url("/data.bin"), counters, FAST).read() == DATA
    assert _remote_counts(counters) == (0, 1, 0) and counters["remote:bytes"] == len(DATA)
    resumed = server.gets("/data.bin")[
        1
    ]  # what the client had received when the RST came is up to its kernel
    assert resumed is not None and resumed.startswith("bytes=")


def test_a_stalled_body_times_out_and_is_resumed(server):
    """The server sends 2000 bytes, then nothing for 3 s (a server-side pause); the client's 0.25 s read
    timeout fires and the rest comes through a Range request."""
    server.script("/data.bin", Stall(2_000, seconds=3.0))
    counters: Counter = Counter()
    policy = dataclasses.replace(FAST, read_timeout=0.25)
    assert open_remote(server.url("/data.bin"), counters, policy).read() == DATA
    assert _remote_counts(counters) == (0, 1, 0)
    assert server.gets("/data.bin") == [None, "bytes=2000-"]


def test_a_changed_object_is_never_spliced(server):
    server.script("/data.bin", Cut(1_000), ChangedEtag())
    stream = open_remote(server.url("/data.bin"), Counter(), FAST)
    with pytest.raises(RemoteChangedError, match=r"data\.bin changed while it was read \(at byte 1000"):
        stream.read()


def test_a_missing_object_fails_at_once_naming_the_url(server):
    url = server.url("/crawl-data/gone.warc.gz")
    counters: Counter = Counter()
    with pytest.raises(FileNotFoundError, match=rf"no such object: {url} \(HTTP 404"):
        open_remote(url, counters, FAST)
    assert len(server.gets("/crawl-data/gone.warc.gz")) == 1 and _remote_counts(counters) == (0, 0, 0)
    # and the job counts it as a missing input, as it does a missing local file
    assert list(read_html_responses(url, counters)) == [] and counters["error:input_missing"] == 1


def test_a_refusal_fails_at_once(server):
    with pytest.raises(RemoteError, match=r"forbidden: HTTP 403") as raised:
        open_remote(server.url("/x/forbidden"), Counter(), FAST)
    assert not isinstance(raised.value, FileNotFoundError) and len(server.gets("/x/forbidden")) == 1


def test_used_up_retries_name_the_location_the_attempts_and_the_last_cause(server):
    server.script("/data.bin", *[Status(503)] * 5)
    counters: Counter = Counter()
    policy = dataclasses.replace(FAST, attempts=3)
    with pytest.raises(RemoteRetriesExhausted, match=r"data\.bin: gave up after 3 attempts.*HTTP 503"):
        open_remote(server.url("/data.bin"), counters, policy)
    assert _remote_counts(counters) == (2, 0, 3) and len(server.gets("/data.bin")) == 3

    server.script("/data.bin", *[Cut(0)] * 5)  # answers that never get anywhere count as failures too
    with pytest.raises(RemoteRetriesExhausted, match=r"gave up after 3 attempts in a row at byte 0"):
        open_remote(server.url("/data.bin"), Counter(), policy).read()


def test_no_server_at_all_is_retried_then_reported():
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    counters: Counter = Counter()
    with pytest.raises(
        RemoteRetriesExhausted, match=rf"127\.0\.0\.1:{port}/x.*2 attempts.*(refused|Connection)"
    ):
        open_remote(f"http://127.0.0.1:{port}/x", counters, dataclasses.replace(FAST, attempts=2))
    assert counters["remote:retries"] == 1


def test_retry_after_is_honoured_and_capped(server, monkeypatch):
    waits: list[float] = []
    monkeypatch.setattr(remote, "_sleep", waits.append)
    server.script("/data.bin", Status(503, retry_after="7"), Status(429, retry_after="120"), Status(503))
    policy = RetryPolicy(attempts=5, backoff=0.001, max_backoff=30.0)
    assert open_remote(server.url("/data.bin"), Counter(), policy).read() == DATA
    assert waits[:2] == [7.0, 30.0] and len(waits) == 3 and 0 <= waits[2] <= 0.004  # then full jitter
    soon = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=20), usegmt=True)
    assert 15 < remote._retry_after(soon) <= 20 and remote._retry_after("soon") is None


def test_retry_policy_from_env_and_full_jitter():
    policy = RetryPolicy.from_env({"MATHFORGE_REMOTE_RETRIES": "4", "MATHFORGE_REMOTE_BACKOFF": "0.25"})
    assert policy == RetryPolicy(attempts=4, backoff=0.25)
    assert RetryPolicy.from_env({}) == RetryPolicy(10, 0.5, 30.0, 60.0, 10.0)
    with pytest.raises(ValueError, match="MATHFORGE_REMOTE_READ_TIMEOUT='soon' is not a number"):
        RetryPolicy.from_env({"MATHFORGE_REMOTE_READ_TIMEOUT": "soon"})
    draws = [policy.delay(3) for _ in range(2000)]
    assert min(draws) >= 0 and 0.9 < max(draws) <= 1.0  # uniform(0, 0.25 * 2**2)
    assert all(policy.delay(20) <= 30.0 for _ in range(100))
    assert remote.settings_env({**FAST_ENV, "AWS_SECRET_ACCESS_KEY": "s", "HOME": "/"}) == FAST_ENV


def test_read_html_responses_over_a_faulty_url_equals_the_local_file(sample_crawl):
    local = sample_crawl[0]
    with FaultServer({f"/{local.name}": local.read_bytes()}) as server:
        server.script(f"/{local.name}", Status(503, retry_after="0"), Cut(local.stat().st_size // 2))
        url = server.url(f"/{local.name}")
        counters: Counter = Counter()
        over_http = list(read_html_responses(url, counters))
    expected: Counter = Counter()
    records = list(read_html_responses(str(local), expected))
    assert len(records) > 5
    assert [dataclasses.replace(r, warc_path="") for r in over_http] == [
        dataclasses.replace(r, warc_path="") for r in records
    ]
    assert {k: v for k, v in counters.items() if not k.startswith("remote:")} == expected
    # the one GET takes the 503 and its retry; the read is cut halfway and resumed once
    assert _remote_counts(counters) == (1, 1, 1) and counters["remote:bytes"] == local.stat().st_size


# ---------------------------------------------------------------- remote paths files


def test_a_remote_paths_file_lists_keys_from_the_host_root(server, monkeypatch):
    for name, value in FAST_ENV.items():  # resolve_inputs reads its policy from the environment
        monkeypatch.setenv(name, value)
    listing = (
        "crawl-data/CC/segments/a.warc.gz\n/crawl-data/CC/b.warc.gz\n# a comment\n\ns3://other/c.warc.gz\n"
    )
    server.files["/crawl-data/CC/warc.paths.gz"] = gzip.compress(listing.encode())
    server.script("/crawl-data/CC/warc.paths.gz", Status(503), Cut(20))
    expected = [
        server.url("/crawl-data/CC/b.warc.gz"),
        server.url("/crawl-data/CC/segments/a.warc.gz"),
        "s3://other/c.warc.gz",
    ]
    # another bucket is read only when the operator allows it (see the host confinement tests below)
    assert resolve_inputs(server.url("/crawl-data/CC/warc.paths.gz"), "other") == sorted(expected)
    # a remote WARC given directly is taken as it is; it is read (or counted missing) by the job
    assert resolve_inputs(server.url("/x.warc.gz")) == [server.url("/x.warc.gz")]


def test_remote_paths_file_errors_are_input_errors(server, tmp_path):
    with pytest.raises(InputError, match=r"paths file .*/nope/warc\.paths\.gz' does not exist"):
        resolve_inputs(server.url("/nope/warc.paths.gz"))
    with pytest.raises(InputError, match="remote folders cannot be listed"):
        resolve_inputs(server.url("/crawl-data/"))
    paths = tmp_path / "warc.paths"
    paths.write_text("https://data.commoncrawl.org/a.warc.gz\ngs://bucket/b.warc.gz\n")
    with pytest.raises(InputError, match=r"gs:// inputs are not supported \(remote inputs can be s3://"):
        resolve_inputs(str(paths))


# ---------------------------------------------------------------- least privilege: a listing names its own host


def test_a_remote_paths_file_may_name_only_its_own_host(server):
    """A third-party listing naming the metadata endpoint, localhost and a private bucket is refused before
    anything it names is read, with the hosts counted and the flag that would admit them."""
    own = server.url("/crawl-data/CC-MAIN-2026-00/segments/0/warc/a.warc.gz")
    listing = [
        own,
        "crawl-data/CC-MAIN-2026-00/segments/0/warc/b.warc.gz",  # relative: resolves against this host
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/role.warc.gz",
        "http://localhost:8080/admin/c.warc.gz",
        "http://localhost:8080/admin/d.warc.gz",
        "s3://private-bucket/e.warc.gz",
    ]
    server.files["/lists/warc.paths"] = "\n".join(listing).encode()
    paths = server.url("/lists/warc.paths")
    with pytest.raises(InputError) as refused:
        resolve_inputs(paths)
    message = str(refused.value)
    assert "4 of its 6 entries name hosts or buckets other than its own (127.0.0.1:" in message
    assert "http://169.254.169.254 (1), http://localhost:8080 (2), s3://private-bucket (1)" in message
    assert message.endswith("--allow-hosts 169.254.169.254,localhost:8080,private-bucket")
    assert [path for _, path, _ in server.requests] == ["/lists/warc.paths"]  # only the listing was read

    # one host not allowed still refuses the whole listing; allowed ones (names, host:port, URLs) are read
    with pytest.raises(InputError, match=r"1 of its 6 entries .*: s3://private-bucket \(1\)"):
        resolve_inputs(paths, "169.254.169.254, LOCALHOST:8080")
    found = resolve_inputs(paths, "169.254.169.254,http://localhost:8080/,private-bucket")
    assert len(found) == 6 and server.url("/crawl-data/CC-MAIN-2026-00/segments/0/warc/b.warc.gz") in found
    # locations given directly (and local listings) are the operator's own: taken as they are
    assert resolve_inputs(f"{own},http://localhost:8080/x.warc.gz") == sorted(
        [own, "http://localhost:8080/x.warc.gz"]
    )


def test_host_confinement_names_the_host_the_reader_connects_to(server):
    """A listing entry that Python's `urlsplit` and urllib3 (what `crawl.remote` connects with) read as
    different hosts (`http://evil\\@own/`: urlsplit says own, urllib3 connects to evil) is judged by the
    host the reader would reach, so it is refused and nothing it names is requested."""
    own = server.url("/x.warc.gz").split("://", 1)[1].split("/", 1)[0]
    tricky = [
        f"http://169.254.169.254\\@{own}/a.warc.gz",
        f"http://169.254.169.254\\\\@{own}/b.warc.gz",
        f"http://169.254.169.254\\:80@{own}/c.warc.gz",
    ]
    for entry in tricky:
        assert location_host(entry) == remote.http_origin(entry)[1] == "169.254.169.254", entry
    server.files["/lists/warc.paths"] = "\n".join(tricky).encode()
    with pytest.raises(InputError, match=r"3 of its 3 entries .*: http://169\.254\.169\.254 \(3\)"):
        resolve_inputs(server.url("/lists/warc.paths"))
    assert [path for _, path, _ in server.requests] == ["/lists/warc.paths"]
    # the ordinary forms still name their host as before (userinfo dropped, default ports folded)
    assert location_host("https://u:p@H.Example:443/x") == "h.example"
    assert location_host("http://h.example:8080/x") == "h.example:8080"
    # an unreadable port: kept visible, so it matches nothing
    assert location_host("https://h.example:notaport/x") == "h.example:notaport"


def test_host_confinement_refuses_the_run_before_spark_starts(server):
    """Through the job launcher: the preflight raises; the job (and Spark) never starts."""
    from jobs.config import CorpusBuildConfig
    from jobs.spark import run_job

    server.files["/lists/warc.paths"] = b"http://169.254.169.254/latest/x.warc.gz\n"
    config = CorpusBuildConfig(input=server.url("/lists/warc.paths"), output="never-written")
    started = []
    with pytest.raises(InputError, match=r"--allow-hosts 169\.254\.169\.254"):
        run_job(lambda spark, cfg: started.append(spark), config, "never")
    assert started == [] and not Path("never-written").exists()
    config.allow_hosts = "169.254.169.254"
    assert config.warc_locations() == ["http://169.254.169.254/latest/x.warc.gz"]


def test_a_crawl_under_a_remote_base_names_only_that_host(server):
    """--crawl-base https://...: keys (and `/abs` paths, which name no local file there) resolve against the
    base; a listed URL of another host is refused unless allowed."""
    key = "crawl-data/CC-MAIN-2026-00/segments/0/warc/a.warc.gz"
    listing = f"{key}\n/etc/passwd\nhttp://127.0.0.1:1/x.warc.gz\n"
    server.files["/mirror/crawl-data/CC-MAIN-2026-00/warc.paths.gz"] = gzip.compress(listing.encode())
    base = server.url("/mirror/")
    with pytest.raises(InputError, match=r"1 of its 3 entries.*http://127\.0\.0\.1:1 \(1\)"):
        crawl_locations("CC-MAIN-2026-00", base)
    assert crawl_locations("CC-MAIN-2026-00", base, "127.0.0.1:1") == sorted(
        [server.url(f"/mirror/{key}"), server.url("/mirror/etc/passwd"), "http://127.0.0.1:1/x.warc.gz"]
    )


def test_redirects_are_followed_on_the_same_host_only(server):
    # same host: followed, on the first request and on a Range resume alike
    server.script("/moved.bin", Redirect("/data.bin", 301), Redirect(server.url("/data.bin"), 307))
    server.script("/data.bin", Cut(1_000))
    assert open_remote(server.url("/moved.bin"), Counter(), FAST).read() == DATA
    assert server.gets("/moved.bin") == [None, "bytes=1000-"]
    assert server.gets("/data.bin") == [None, "bytes=1000-"]

    with FaultServer({"/secret.bin": b"internal"}) as other:
        port = server.base.rsplit(":", 1)[1]
        for target in (
            other.url("/secret.bin"),  # another port
            f"http://localhost:{port}/data.bin",  # another host name, even if it is the same machine
            "http://169.254.169.254/latest/meta-data/",
        ):
            server.script("/data.bin", Redirect(target))
            with pytest.raises(RemoteError, match=r"redirect to another host .* refused") as refused:
                open_remote(server.url("/data.bin"), Counter(), FAST)
            assert not isinstance(refused.value, FileNotFoundError)
        assert other.requests == []

    server.script("/data.bin", *[Redirect("/data.bin")] * 6)
    with pytest.raises(RemoteError, match="more than 5 redirects"):
        open_remote(server.url("/data.bin"), Counter(), FAST)

    # a listing redirected elsewhere is an input error, not a listing of the other host
    server.files["/lists/warc.paths"] = b"a.warc.gz\n"
    server.script("/lists/warc.paths", Redirect("http://169.254.169.254/warc.paths"))
    with pytest.raises(InputError, match=r"warc\.paths' cannot be read: .*redirect to another host"):
        resolve_inputs(server.url("/lists/warc.paths"))


def test_a_redirect_upgrading_to_https_on_the_same_host_is_the_only_scheme_change():
    assert remote.same_host_redirect("http://h.example/a", "https://h.example/b")
    assert remote.same_host_redirect("https://h.example:8443/a", "https://H.EXAMPLE:8443/b")
    assert not remote.same_host_redirect("https://h.example/a", "http://h.example/a")  # no downgrade
    assert not remote.same_host_redirect("http://h.example:8080/a", "https://h.example/a")
    assert not remote.same_host_redirect("https://h.example/a", "https://evil.example/a")
    assert not remote.same_host_redirect("https://h.example/a", "file:///etc/passwd")


def test_userinfo_is_sent_as_basic_auth_and_redacted_from_messages(server):
    url = server.base.replace("http://", "http://reader:PASSWORD789@") + "/data.bin"
    assert open_remote(url, Counter(), FAST).read() == DATA
    assert server.authorizations == [("/data.bin", "Basic cmVhZGVyOlBBU1NXT1JENzg5")]  # reader:PASSWORD789
    with pytest.raises(FileNotFoundError) as missing:
        open_remote(url.replace("data.bin", "gone.bin"), Counter(), FAST)
    assert "PASSWORD789" not in str(missing.value) and "http://REDACTED@127.0.0.1:" in str(missing.value)


def test_errors_and_logs_of_the_remote_layer_carry_no_credentials(server, sample_crawl, caplog):
    """A presigned URL and a SAS-style URL that fail, retry and resume: every message and log line names
    them readably (host, path, other parameters) with the secrets replaced."""
    local = sample_crawl[0]
    server.files[f"/{local.name}"] = local.read_bytes()
    presigned = server.url(
        f"/{local.name}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIASECRETCRED%2F20260101"
        "&X-Amz-Security-Token=TOKEN000&X-Amz-Signature=SECRET123"
    )
    sas = server.base.replace("http://", "http://u:PASSWORD789@") + "/gone.warc.gz?sv=2024&sig=SECRET456"
    server.script(f"/{local.name}", Status(503, retry_after="0"), Cut(1_000))
    counters: Counter = Counter()
    with caplog.at_level(logging.DEBUG):
        assert list(read_html_responses(presigned, counters))
        assert list(read_html_responses(sas, counters)) == []
        with pytest.raises(FileNotFoundError) as missing:
            open_input(sas)
        server.script("/data.bin", *[Status(500)] * 2)
        with pytest.raises(RemoteRetriesExhausted) as exhausted:
            open_remote(
                server.url("/data.bin?token=SECRET000"), Counter(), dataclasses.replace(FAST, attempts=2)
            )
    assert counters["error:input_missing"] == 1 and _remote_counts(counters) == (1, 1, 1)
    said = "\n".join([caplog.text, str(missing.value), str(exhausted.value)])
    for secret in ("SECRET123", "SECRET456", "SECRET000", "TOKEN000", "AKIASECRETCRED", "PASSWORD789"):
        assert secret not in said
    assert f"/{local.name}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=REDACTED" in caplog.text
    assert "retrying" in caplog.text and "resuming" in caplog.text and "input missing" in caplog.text
    assert "gone.warc.gz?sv=2024&sig=REDACTED" in str(missing.value)


# ---------------------------------------------------------------- S3 through moto


def test_s3_objects_are_read_through_boto3(moto_url, aws_env, monkeypatch, caplog):
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)
    counters: Counter = Counter()
    with caplog.at_level(logging.INFO, logger="crawl.remote"):
        assert open_remote(f"s3://{BUCKET}/data.bin", counters, FAST).read() == DATA
        assert open_remote(f"s3a://{BUCKET}/data.bin", counters, FAST).read() == DATA
    assert counters == Counter({"remote:bytes": 2 * len(DATA)})
    assert [r.message for r in caplog.records if "S3 reads" in r.message] == [
        "S3 reads are signed with AWS credentials from env"  # once per process: one client
    ]
    for missing in (f"s3://{BUCKET}/nope.warc.gz", "s3://no-such-bucket/a.warc.gz"):
        with pytest.raises(FileNotFoundError, match=rf"no such object: {missing} \(HTTP 404"):
            open_input(missing)


@pytest.mark.parametrize("why", ["MATHFORGE_S3_ANONYMOUS=1", "no AWS credentials found"])
def test_s3_reads_anonymously(moto_url, aws_env, monkeypatch, caplog, why):
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)
    if why.startswith("MATHFORGE"):
        monkeypatch.setenv("MATHFORGE_S3_ANONYMOUS", "1")
    else:
        monkeypatch.delenv("AWS_ACCESS_KEY_ID")
        monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with caplog.at_level(logging.INFO, logger="crawl.remote"):
        assert open_remote(f"s3://{BUCKET}/data.bin", Counter(), FAST).read() == DATA
    assert f"S3 reads are anonymous (unsigned requests): {why}" in caplog.messages


def test_s3_faults_are_retried_and_resumed_by_our_loop_alone(moto_url, aws_env, monkeypatch):
    """SlowDown, a cut body and a Range answered with 200 on the way from moto: one request per attempt
    (botocore's own retries are off), exact counts, exact bytes."""
    with FaultServer(upstream=moto_url) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.base)
        key = f"/{BUCKET}/data.bin"
        proxy.script(key, Status(503), Cut(1_000), IgnoreRange())
        counters: Counter = Counter()
        assert open_remote(f"s3://{BUCKET}/data.bin", counters, FAST).read() == DATA
        assert _remote_counts(counters) == (1, 1, 1) and counters["remote:bytes"] == len(DATA)
        assert proxy.gets(key) == [None, None, "bytes=1000-"]


def test_an_s3_object_replaced_mid_read_is_never_spliced(moto_url, aws_env, monkeypatch):
    import boto3

    s3 = boto3.client("s3", endpoint_url=moto_url)
    s3.put_object(Bucket=BUCKET, Key="changing.bin", Body=DATA, ACL="public-read")
    with FaultServer(upstream=moto_url) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.base)
        proxy.script(f"/{BUCKET}/changing.bin", Cut(1_000))
        stream = open_remote(f"s3://{BUCKET}/changing.bin", Counter(), FAST)
        assert stream.read(500) == DATA[:500]
        s3.put_object(Bucket=BUCKET, Key="changing.bin", Body=DATA[::-1], ACL="public-read")
        with pytest.raises(
            RemoteChangedError, match=r"changing\.bin changed while it was read \(at byte 1000"
        ):
            stream.read()


def test_an_s3_paths_file_lists_keys_from_the_bucket(moto_url, aws_env, monkeypatch, sample_crawl):
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)
    found = resolve_inputs(f"s3://{BUCKET}/crawl-data/CC-MAIN-2026-00/warc.paths.gz")
    assert found == [
        f"s3://{BUCKET}/crawl-data/CC-MAIN-2026-00/segments/0/warc/{p.name}" for p in sample_crawl
    ]


def test_an_s3_paths_file_may_name_only_its_own_bucket(moto_url, aws_env, monkeypatch):
    """A listing in bucket A naming s3://B/... is refused (the job's credentials may reach B); s3a:// of the
    same bucket is the same bucket; --allow-hosts B admits it."""
    import boto3

    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)
    s3 = boto3.client("s3", endpoint_url=moto_url)
    s3.create_bucket(Bucket="private-bucket")
    s3.put_object(Bucket="private-bucket", Key="payroll.warc.gz", Body=b"secret")
    listing = f"s3a://{BUCKET}/a.warc.gz\ns3://private-bucket/payroll.warc.gz\nb.warc.gz\n"
    s3.put_object(Bucket=BUCKET, Key="lists/warc.paths", Body=listing.encode(), ACL="public-read")
    with pytest.raises(InputError) as refused:
        resolve_inputs(f"s3://{BUCKET}/lists/warc.paths")
    assert (
        f"1 of its 3 entries name hosts or buckets other than its own ({BUCKET}): s3://private-bucket (1)"
        in (str(refused.value))
    )
    assert resolve_inputs(f"s3://{BUCKET}/lists/warc.paths", ["private-bucket"]) == sorted(
        [f"s3a://{BUCKET}/a.warc.gz", "s3://private-bucket/payroll.warc.gz", f"s3://{BUCKET}/b.warc.gz"]
    )


# ---------------------------------------------------------------- the corpus job over both


def _rows(out: Path) -> list[dict]:
    rows = ds.dataset(out / "data", format="parquet").to_table().to_pylist()
    return sorted(({k: v for k, v in r.items() if k != "warc_path"} for r in rows), key=lambda r: r["id"])


@pytest.mark.spark
def test_corpus_build_over_faulty_https_and_s3_equals_the_local_build(
    spark, sample_crawl, moto_url, aws_env, monkeypatch, tmp_path
):
    """The issue's check: the same two WARC files, read locally, over a misbehaving HTTP server, and from S3
    (moto behind the same misbehaving server), give the same rows; the stats count the injected faults."""
    from jobs.build_corpus import build_corpus
    from jobs.config import CorpusBuildConfig

    def build(spec: str, name: str) -> dict:
        config = CorpusBuildConfig(
            input=spec,
            output=str(tmp_path / name),
            langs="all",
            min_math_score=0.0,
            exact_dedup=False,  # the reading is under test; the Spark stages of cleaning would only add time
            near_dedup=False,
            decontaminate=False,
        )
        return build_corpus(spark, config)

    local_paths = tmp_path / "local.paths"
    local_paths.write_text("".join(f"{p}\n" for p in sample_crawl))
    local = build(str(local_paths), "local")
    sizes = [p.stat().st_size for p in sample_crawl]
    assert local["kept"] > 5 and "warn:resynced" not in local["counters"]  # each file is read once

    files = {f"/crawl-data/CC-MAIN-2026-00/{p.name}": p.read_bytes() for p in sample_crawl}
    first, second = files
    sc = spark.sparkContext
    saved = dict(sc.environment)
    with FaultServer(files) as http_server, FaultServer(upstream=moto_url) as s3_proxy:
        # Python workers get their environment from the SparkContext (the JVM started before this test)
        env = {**FAST_ENV, **DUMMY_AWS, **NO_AWS_LOOKUPS, "AWS_ENDPOINT_URL": s3_proxy.base}
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        sc.environment.update(env)
        try:
            http_server.script(first, Status(503, retry_after="0"), Cut(sizes[0] // 2))
            http_server.script(second, Status(429), Cut(sizes[1] // 3, reset=True))
            http_paths = tmp_path / "http.paths"
            http_paths.write_text("".join(f"{http_server.url(path)}\n" for path in files))
            over_http = build(str(http_paths), "http")

            key = f"/{BUCKET}/crawl-data/CC-MAIN-2026-00/segments/0/warc/{sample_crawl[0].name}"
            s3_proxy.script(key, Status(503), Cut(sizes[0] // 4), Status(500))
            over_s3 = build(f"s3://{BUCKET}/crawl-data/CC-MAIN-2026-00/warc.paths.gz", "s3")
        finally:
            sc.environment.clear()
            sc.environment.update(saved)

    expected_rows = _rows(tmp_path / "local")
    assert _rows(tmp_path / "http") == expected_rows
    assert _rows(tmp_path / "s3") == expected_rows
    for stats in (over_http, over_s3):
        plain = {k: v for k, v in stats["counters"].items() if not k.startswith("remote:")}
        assert plain == local["counters"]
        assert stats["counters"]["remote:bytes"] == sum(sizes)
    # per file: the one GET meets the throttling answer and retries; the read is cut and resumed
    assert _remote_counts(Counter(over_http["counters"])) == (2, 2, 2)
    assert _remote_counts(Counter(over_s3["counters"])) == (2, 1, 1)  # SlowDown; cut; a 500 on the resume
    assert all(f["path"].startswith("s3://") for f in over_s3["per_file"])


SECRETS = ("SECRET123", "SECRET456", "SECRET789", "SECRET000", "AKIASECRETCRED", "PASSWORD789")


def _every_byte_and_cell(root: Path) -> Iterator[tuple[Path, str]]:
    """(file, what it holds) for every file under `root`: its raw bytes (as latin-1 text), and for Parquet
    files their decoded rows too (compressed pages would hide a string from a byte search)."""
    import pyarrow.parquet as pq

    for folder, _, names in os.walk(root):
        for name in names:
            path = Path(folder) / name
            yield path, path.read_bytes().decode("latin-1")
            if name.endswith(".parquet"):
                yield path, str(pq.read_table(path).to_pylist())


@pytest.mark.spark
def test_no_credential_reaches_the_corpus_or_the_logs(spark, sample_crawl, tmp_path, caplog):
    """Issue 21, item 5: a build and a refresh over presigned-looking URLs and userinfo, read from the real
    local server; no secret appears in any file of the corpus (Parquet cells included) or in the logs, the
    locations stay readable, and the refresh still knows the files by their redacted manifest entries."""
    from crawl.redact import redact_url
    from jobs.build_corpus import build_corpus
    from jobs.config import CorpusBuildConfig, CorpusRefreshConfig
    from jobs.corpus_output import render_stats_markdown
    from jobs.refresh_corpus import refresh_corpus

    cc_key = f"/crawl-data/CC-MAIN-2026-00/segments/0/warc/{sample_crawl[0].name}"
    plain_key = f"/mirror/{sample_crawl[1].name}"  # not Common Crawl's layout: known by its whole location
    files = {cc_key: sample_crawl[0].read_bytes(), plain_key: sample_crawl[1].read_bytes()}
    with FaultServer(files) as server:
        with_user = server.base.replace("http://", "http://reader:PASSWORD789@")
        listed = [
            f"{with_user}{cc_key}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIASECRETCRED%2F20260101"
            "&X-Amz-Signature=SECRET123",
            f"{server.base}{plain_key}?sv=2024-05-04&sig=SECRET456",
            f"{server.base}/gone.warc.gz?token=SECRET789",  # missing: among the failed and unfinished inputs
        ]
        server.files["/lists/warc.paths"] = "\n".join(listed).encode()
        spec = f"{with_user}/lists/warc.paths?X-Amz-Signature=SECRET000"
        out = tmp_path / "corpus"
        config = CorpusBuildConfig(
            input=spec,
            output=str(out),
            langs="all",
            min_math_score=0.0,
            exact_dedup=False,
            near_dedup=False,
            decontaminate=False,
        )
        with caplog.at_level(logging.DEBUG):
            built = build_corpus(spark, config)
            reads = {key: len(server.gets(key)) for key in files}
            refreshed = refresh_corpus(spark, CorpusRefreshConfig(corpus=str(out), input=spec))
    assert built["kept"] > 5 and built["counters"]["error:input_missing"] == 1
    assert ("/lists/warc.paths", "Basic cmVhZGVyOlBBU1NXT1JENzg5") in server.authorizations
    assert (cc_key, "Basic cmVhZGVyOlBBU1NXT1JENzg5") in server.authorizations  # userinfo still authenticates
    # the refresh knew both read files from their redacted entries and retried only the missing one
    assert {key: len(server.gets(key)) for key in files} == reads
    assert refreshed["inputs"]["total"] == 1 and refreshed["run_id"] != built["run_id"]

    shown = [redact_url(location) for location in listed]
    assert shown[0].startswith("http://REDACTED@127.0.0.1:") and shown[0].endswith(
        f"{cc_key}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=REDACTED&X-Amz-Signature=REDACTED"
    )
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(manifest["inputs"]) == sorted(shown[:2]) and manifest["inputs_unfinished"] == [shown[2]]
    assert manifest["config"]["input"].endswith("/lists/warc.paths?X-Amz-Signature=REDACTED")
    rows = ds.dataset(out / "data", format="parquet").to_table(columns=["warc_path"]).to_pylist()
    assert {row["warc_path"] for row in rows} == set(shown[:2])  # readable, and without the secrets
    assert f"`{shown[2]}`: input_missing=1" in (out / "STATS.md").read_text()
    assert shown[2].replace("&", "&amp;") in (out / "report.html").read_text()

    searched = list(_every_byte_and_cell(tmp_path))
    assert len(searched) > 10 and any(p.name == "report.html" for p, _ in searched)
    said = [
        ("logs", caplog.text),
        ("printed", render_stats_markdown(built) + render_stats_markdown(refreshed)),
    ]
    for where, text in [*((str(p), t) for p, t in searched), *said]:
        for secret in SECRETS:
            assert secret not in text, f"{secret} in {where}"
