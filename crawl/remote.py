"""Read WARC files (and paths files) over HTTP(S) and S3 as streams that survive a flaky network.

A Common Crawl WARC file is about a gigabyte and a crawl has tens of thousands: over that many transfers
connections reset, servers throttle and reads time out. `open_remote` returns a plain readable stream whose
bytes are exactly the object's bytes, streamed (nothing is kept beyond the read in progress):

- a body that breaks off in the middle is resumed with `Range: bytes=<delivered>-`, after checking that the
  answer starts at that byte and that the object is still the same one (ETag, else Last-Modified, and size),
  so two versions of an object are never spliced (`RemoteChangedError`); a server that ignores the Range and
  answers 200 is read past the bytes already delivered;
- a request that fails (HTTP 429, 503, S3 SlowDown, 408, other 5xx, no connection, a timeout) is sent again
  after a full-jitter exponential backoff (`uniform(0, min(max, base * 2**n))`, AWS's "full jitter"), or after
  the server's Retry-After (capped at the maximum) when a throttling answer gives one;
- other 4xx answers fail at once: 404/410 as `RemoteNotFoundError` (a `FileNotFoundError`, which the job
  counts as a missing input), the rest as `RemoteError` (an `OSError`: an unreadable input);
- `attempts` counts failures in a row without progress: a transfer that breaks now and then but moves on is
  never given up, one that fails `attempts` times in a row raises `RemoteRetriesExhausted`, naming the
  location, the attempts and the last cause.

What happened is counted in the per-file Counter the job already passes down, so it reaches the corpus stats:
`remote:retries` (requests sent again after a failed one), `remote:resumes` (Range requests after a broken
body), `remote:throttled` (429 / 503 / SlowDown answers), `remote:bytes` (bytes delivered).

Redirects are followed by this module, not by urllib3, and only within the host (the same host name and
port, or http upgraded to https on the default ports): a redirect elsewhere is refused (`RemoteError`), so a
location can never send the job's requests (and the Basic credentials of a `https://user:pass@host/`
location) to another host, such as a cloud metadata endpoint. Error messages and log lines name locations
through `crawl.redact`: signatures, tokens and userinfo never appear in them.

S3 (`s3://bucket/key`, `s3a://` alike) goes through boto3 with botocore's own retries off, so that the loop
and its counters here are the only ones. Credentials come from boto3's usual chain (environment, profile,
instance role); requests are unsigned (anonymous) when `MATHFORGE_S3_ANONYMOUS=1` or when no credentials are
found. The endpoint is boto3's own `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL`. HTTP(S) goes through urllib3.

Settings come from the environment (`RetryPolicy.from_env`), so that Spark executors use what the driver
uses; `settings_env()` lists the ones set, for `spark.executorEnv.*` on a cluster:

    MATHFORGE_REMOTE_RETRIES          attempts in a row before giving up (10)
    MATHFORGE_REMOTE_BACKOFF          backoff base, seconds (0.5)
    MATHFORGE_REMOTE_MAX_BACKOFF      backoff cap, seconds; also caps Retry-After (30)
    MATHFORGE_REMOTE_READ_TIMEOUT     seconds without a byte before a read counts as failed (60)
    MATHFORGE_REMOTE_CONNECT_TIMEOUT  seconds to connect (10)
    MATHFORGE_S3_ANONYMOUS            1: unsigned S3 requests

Only location strings travel to executors; clients and connection pools are made there, one per process.
"""

from __future__ import annotations

import contextlib
import email.utils
import http.client
import io
import logging
import os
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import urljoin

import urllib3

from crawl.redact import redact_logs, redact_text, redact_url

log = redact_logs(logging.getLogger(__name__))
for _name in ("urllib3.connectionpool", "urllib3.poolmanager"):  # their DEBUG lines quote request paths
    redact_logs(_name)

HTTP_SCHEMES = ("https://", "http://")
S3_SCHEMES = ("s3://", "s3a://")
SUPPORTED_SCHEMES = S3_SCHEMES + HTTP_SCHEMES
ENV_PREFIX = "MATHFORGE_REMOTE_"
ANONYMOUS_ENV = "MATHFORGE_S3_ANONYMOUS"
_SETTINGS_ENV = (ANONYMOUS_ENV, "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_DEFAULT_REGION", "AWS_REGION")
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
_UNSATISFIED_RANGE = re.compile(r"bytes\s+\*/(\d+)")
_THROTTLE_CODES = ("SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequests")
_MISSING_CODES = ("NoSuchKey", "NoSuchBucket", "NotFound", "404")
_REDIRECTS = (301, 302, 303, 307, 308)
MAX_REDIRECTS = 5
_DEFAULT_PORTS = {"http": 80, "https": 443}


class RemoteError(OSError):
    """A remote object cannot be read: a refusal (4xx), a bad answer, or retries used up. Its message is
    redacted (`crawl.redact.redact_text`) whatever the raiser put in it."""

    def __init__(self, *args: object):
        super().__init__(*(redact_text(a) if isinstance(a, str) else a for a in args))


class RemoteNotFoundError(RemoteError, FileNotFoundError):
    """The object is not there (HTTP 404/410, S3 NoSuchKey/NoSuchBucket)."""


class RemoteChangedError(RemoteError):
    """The object changed between the first answer and a resume: its bytes must not be spliced."""


class RemoteRetriesExhausted(RemoteError):
    """Every attempt failed in a row."""


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: attempts in a row without progress, full-jitter backoff, and the socket timeouts."""

    attempts: int = 10
    backoff: float = 0.5
    max_backoff: float = 30.0
    read_timeout: float = 60.0
    connect_timeout: float = 10.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be at least 1, got {self.attempts}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RetryPolicy:
        """The policy the `MATHFORGE_REMOTE_*` variables describe (defaults for the unset ones)."""
        env = os.environ if environ is None else environ
        fields = {
            "attempts": ("RETRIES", int),
            "backoff": ("BACKOFF", float),
            "max_backoff": ("MAX_BACKOFF", float),
            "read_timeout": ("READ_TIMEOUT", float),
            "connect_timeout": ("CONNECT_TIMEOUT", float),
        }
        values: dict[str, Any] = {}
        for name, (suffix, kind) in fields.items():
            raw = env.get(ENV_PREFIX + suffix, "").strip()
            if raw:
                try:
                    values[name] = kind(raw)
                except ValueError:
                    raise ValueError(f"{ENV_PREFIX}{suffix}={raw!r} is not a number") from None
        return cls(**values)

    def delay(self, failures: int, retry_after: float | None = None) -> float:
        """Seconds to wait after `failures` failures in a row (1 for the first): the server's Retry-After
        when it gave one, else full jitter; both capped at `max_backoff`."""
        if retry_after is not None:
            return min(self.max_backoff, max(0.0, retry_after))
        return random.uniform(0.0, min(self.max_backoff, self.backoff * 2 ** max(0, failures - 1)))


def settings_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The remote-reading settings set in this environment (no credentials): what executors should get too."""
    env = os.environ if environ is None else environ
    return {k: v for k, v in env.items() if k.startswith(ENV_PREFIX) or k in _SETTINGS_ENV}


def is_supported_remote(location: str) -> bool:
    return location.startswith(SUPPORTED_SCHEMES)


def location_root(location: str) -> str:
    """Scheme and host (or bucket) of a location, with a trailing slash: `s3://commoncrawl/`,
    `https://data.commoncrawl.org/`. Common Crawl's paths files list keys relative to this root."""
    scheme, _, rest = location.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}/"


def http_origin(url: str) -> tuple[str, str, int]:
    """(scheme, host name, port) of an http(s) URL, the port defaulted by scheme; no userinfo."""
    parsed = urllib3.util.parse_url(url)
    scheme = (parsed.scheme or "http").lower()
    return scheme, (parsed.host or "").lower(), parsed.port or _DEFAULT_PORTS.get(scheme, 0)


def same_host_redirect(source: str, target: str) -> bool:
    """Whether a redirect from `source` to `target` stays on the host: the same host name and port, or http
    upgraded to https on the default ports. Nothing else is followed (not even https → http)."""
    (s_scheme, s_host, s_port), (t_scheme, t_host, t_port) = http_origin(source), http_origin(target)
    if not s_host or s_host != t_host or t_scheme not in _DEFAULT_PORTS:
        return False
    if (s_scheme, s_port) == (t_scheme, t_port):
        return True
    return (s_scheme, s_port, t_scheme, t_port) == ("http", 80, "https", 443)


def split_s3(location: str) -> tuple[str, str]:
    """`s3://bucket/key` (or `s3a://`) → (bucket, key)."""
    rest = location.split("://", 1)[1]
    bucket, _, key = rest.partition("/")
    if not bucket or not key:
        raise RemoteError(f"not an S3 object location (s3://bucket/key): {location}")
    return bucket, key


def _sleep(seconds: float) -> None:  # a seam for tests that check the waits without waiting
    time.sleep(seconds)


def _retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: delta-seconds or an HTTP date; None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


class _Failed(Exception):
    """A request that may succeed if sent again (throttled, 5xx, 408, no connection, timeout)."""

    def __init__(self, cause: str, *, throttled: bool = False, retry_after: float | None = None):
        super().__init__(cause)
        self.throttled = throttled
        self.retry_after = retry_after


class _Broken(Exception):
    """A body that broke off in the middle: resume it."""


@dataclass
class _Answer:
    """One successful answer: its body, where in the object the body starts, and what identifies the object."""

    body: Any
    start: int
    size: int | None
    validator: str | None
    eof: bool = False  # an empty answer: the request started at the object's end


def _answer_range(
    location: str, status: int, content_range: str | None, content_length: str | None
) -> tuple[int, int | None]:
    """(start, size) of a 200/206 answer: 206 says where it starts in Content-Range; 200 is the whole object."""
    if status == 206:
        match = _CONTENT_RANGE.match(content_range or "")
        if not match:
            raise RemoteError(f"{location}: 206 answer without a usable Content-Range ({content_range!r})")
        total = match.group(3)
        return int(match.group(1)), None if total == "*" else int(total)
    size = int(content_length) if content_length and content_length.isdigit() else None
    return 0, size


class _Http:
    """HTTP(S) through one urllib3 pool manager per process; urllib3's own retries and redirects off (the
    loop here retries; `_get` follows same-host redirects only). Userinfo becomes a Basic Authorization
    header and never goes into a request line."""

    _pools: ClassVar[dict[tuple, urllib3.PoolManager]] = {}
    _lock = threading.Lock()

    def __init__(self, location: str, policy: RetryPolicy):
        self.location = location
        self.shown = redact_url(location)
        self.policy = policy
        parsed = urllib3.util.parse_url(location)
        self.url = parsed._replace(auth=None).url if parsed.auth else location
        self.auth = urllib3.util.make_headers(basic_auth=parsed.auth) if parsed.auth else {}
        key = (os.getpid(),)
        with self._lock:
            if key not in self._pools:
                self._pools[key] = urllib3.PoolManager(num_pools=32, maxsize=8)
            self.pool = self._pools[key]

    def _get(self, headers: dict[str, str]) -> Any:
        """The answer to a GET of the location, after same-host redirects (refused elsewhere)."""
        url = self.url
        for _ in range(MAX_REDIRECTS + 1):
            try:
                response = self.pool.request(
                    "GET",
                    url,
                    headers={**headers, **self.auth},
                    preload_content=False,
                    decode_content=False,
                    redirect=False,
                    retries=urllib3.Retry(total=None, connect=0, read=0, status=0, other=0, redirect=0),
                    timeout=urllib3.Timeout(
                        connect=self.policy.connect_timeout, read=self.policy.read_timeout
                    ),
                )
            except urllib3.exceptions.MaxRetryError as exc:
                raise _Failed(redact_text(f"{type(exc.reason).__name__}: {exc.reason}")) from exc
            except (urllib3.exceptions.HTTPError, http.client.HTTPException, OSError) as exc:
                raise _Failed(redact_text(f"{type(exc).__name__}: {exc}")) from exc
            target = response.headers.get("Location") if response.status in _REDIRECTS else None
            if not target:
                return response
            _discard(response)
            target = urllib3.util.parse_url(urljoin(url, target)).url
            if not same_host_redirect(url, target):
                raise RemoteError(
                    f"{self.shown}: HTTP {response.status} redirect to another host ({redact_url(target)}) "
                    "refused: remote inputs are read from the host they name only"
                )
            url = target
        raise RemoteError(f"{self.shown}: more than {MAX_REDIRECTS} redirects")

    def open(self, offset: int) -> _Answer:
        headers = {"Accept-Encoding": "identity"}  # ranges count bytes of the object as stored
        if offset:
            headers["Range"] = f"bytes={offset}-"
        response = self._get(headers)
        status = response.status
        if status in (200, 206):
            start, size = _answer_range(
                self.location,
                status,
                response.headers.get("Content-Range"),
                response.headers.get("Content-Length"),
            )
            validator = response.headers.get("ETag") or response.headers.get("Last-Modified")
            return _Answer(response, start, size, validator)
        reason = f"HTTP {status} {response.reason or ''}".strip()
        content_range = response.headers.get("Content-Range")
        retry_after = _retry_after(response.headers.get("Retry-After"))
        _discard(response)
        if status == 416:
            match = _UNSATISFIED_RANGE.match(content_range or "")
            if match and int(match.group(1)) == offset:  # asked from the very end: nothing more to read
                return _Answer(None, offset, offset, None, eof=True)
            raise RemoteError(
                f"{self.location}: {reason} for bytes={offset}- (Content-Range {content_range!r})"
            )
        if status in (404, 410):
            raise RemoteNotFoundError(f"no such object: {self.location} ({reason})")
        if status in (429, 503):
            raise _Failed(reason, throttled=True, retry_after=retry_after)
        if status == 408 or status >= 500:
            raise _Failed(reason)
        raise RemoteError(f"{self.location}: {reason}")

    def read(self, body: Any, size: int) -> bytes:
        try:
            return body.read1(size)
        except (urllib3.exceptions.HTTPError, http.client.HTTPException, OSError) as exc:
            raise _Broken(f"{type(exc).__name__}: {exc}") from exc

    def close(self, body: Any) -> None:
        _discard(body)


def _discard(response: Any) -> None:
    """Close an answer without reading the rest of it (its connection is dropped, not drained)."""
    with contextlib.suppress(Exception):  # closing a broken connection may raise; it is gone anyway
        response.close()
        response.release_conn()


class _S3:
    """S3 through one boto3 client per process and setting (clients are thread-safe)."""

    _clients: ClassVar[dict[tuple, Any]] = {}
    _lock = threading.Lock()

    def __init__(self, location: str, policy: RetryPolicy):
        self.location = location
        self.bucket, self.key = split_s3(location)
        self.client = self._client(policy)

    @classmethod
    def _client(cls, policy: RetryPolicy) -> Any:
        anonymous = os.environ.get(ANONYMOUS_ENV, "").strip().lower() in ("1", "true", "yes")
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        key = (os.getpid(), anonymous, endpoint, policy.connect_timeout, policy.read_timeout)
        with cls._lock:
            if key not in cls._clients:
                cls._clients[key] = _make_s3_client(anonymous, policy)
            return cls._clients[key]

    def open(self, offset: int) -> _Answer:
        from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
        from botocore.exceptions import ConnectionError as BotoConnectionError

        kwargs = {"Bucket": self.bucket, "Key": self.key}
        if offset:
            kwargs["Range"] = f"bytes={offset}-"
        try:
            answer = self.client.get_object(**kwargs)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            meta = exc.response.get("ResponseMetadata", {})
            status = int(meta.get("HTTPStatusCode") or 0)
            words = [f"HTTP {status}", "" if code == str(status) else code]
            message = error.get("Message") or ""
            reason = " ".join(w for w in words if w) + (f": {message}" if message else "")
            if status == 416 or code == "InvalidRange":
                return _Answer(None, offset, None, None, eof=True)  # asked from the very end
            if status in (404, 410) or code in _MISSING_CODES:
                raise RemoteNotFoundError(f"no such object: {self.location} ({reason})") from exc
            if status in (429, 503) or code in _THROTTLE_CODES:
                retry_after = _retry_after(meta.get("HTTPHeaders", {}).get("retry-after"))
                raise _Failed(reason, throttled=True, retry_after=retry_after) from exc
            if status == 408 or status >= 500 or code in ("RequestTimeout", "InternalError"):
                raise _Failed(reason) from exc
            raise RemoteError(f"{self.location}: {reason}") from exc
        except (BotoConnectionError, HTTPClientError) as exc:
            raise _Failed(f"{type(exc).__name__}: {exc}") from exc
        except BotoCoreError as exc:  # bad parameters, no usable configuration: trying again will not help
            raise RemoteError(f"{self.location}: {type(exc).__name__}: {exc}") from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise _Failed(f"{type(exc).__name__}: {exc}") from exc
        status = int(answer["ResponseMetadata"].get("HTTPStatusCode") or 200)
        length = answer.get("ContentLength")
        start, size = _answer_range(
            self.location, status, answer.get("ContentRange"), None if length is None else str(length)
        )
        modified = answer.get("LastModified")
        validator = answer.get("ETag") or (modified.isoformat() if modified else None)
        return _Answer(answer["Body"], start, size, validator)

    def read(self, body: Any, size: int) -> bytes:
        from botocore.exceptions import BotoCoreError

        try:
            return body.read(size)
        except (BotoCoreError, urllib3.exceptions.HTTPError, http.client.HTTPException, OSError) as exc:
            raise _Broken(f"{type(exc).__name__}: {exc}") from exc

    def close(self, body: Any) -> None:
        with contextlib.suppress(Exception):  # a broken connection may raise on close; it is gone anyway
            body.close()


def _make_s3_client(anonymous: bool, policy: RetryPolicy) -> Any:
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config

    session = boto3.session.Session()
    credentials = None if anonymous else session.get_credentials()
    config = Config(
        retries={"total_max_attempts": 1, "mode": "standard"},  # the retry loop (and its counters) is ours
        connect_timeout=policy.connect_timeout,
        read_timeout=policy.read_timeout,
        max_pool_connections=32,
        signature_version=UNSIGNED if credentials is None else None,
    )
    if credentials is None:
        why = f"{ANONYMOUS_ENV}=1" if anonymous else "no AWS credentials found"
        log.info("S3 reads are anonymous (unsigned requests): %s", why)
    else:
        log.info("S3 reads are signed with AWS credentials from %s", credentials.method)
    return session.client("s3", config=config)


class RemoteStream(io.RawIOBase):
    """The bytes of one remote object, exactly once each, whatever breaks on the way (see the module
    docstring). Not seekable; `tell()` is the number of bytes delivered. The first request is sent when the
    stream is made, so a missing object fails there."""

    def __init__(self, location: str, counters: Counter | None = None, policy: RetryPolicy | None = None):
        super().__init__()
        self.location = location
        self.shown = redact_url(location)  # what messages and logs name
        self.counters = counters if counters is not None else Counter()
        self.policy = policy or RetryPolicy.from_env()
        self._position = 0
        self._failures = 0  # failures in a row since bytes last came through
        self._size: int | None = None
        self._validator: str | None = None
        self._body: Any = None
        self._eof = True  # until the first answer is in
        backend: _Http | _S3
        if location.startswith(S3_SCHEMES):
            backend = _S3(location, self.policy)
        elif location.startswith(HTTP_SCHEMES):
            backend = _Http(location, self.policy)
        else:
            raise RemoteError(f"not a remote location this reader supports ({SUPPORTED_SCHEMES}): {location}")
        self._backend = backend
        self._eof = False
        self._request(resume=False)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        return self._position

    def readinto(self, buffer: Any) -> int:  # type: ignore[override]
        if self.closed:
            raise ValueError("read from a closed remote stream")
        want = len(buffer)
        while want and not self._eof:
            try:
                data = self._backend.read(self._body, want)
            except _Broken as exc:
                self._resume(str(exc))
                continue
            if not data:
                if self._size is not None and self._position < self._size:
                    self._resume(f"the body ended at byte {self._position} of {self._size}")
                    continue
                self._end()
                break
            n = len(data)
            buffer[:n] = data
            self._position += n
            self._failures = 0
            self.counters["remote:bytes"] += n
            return n
        return 0

    def close(self) -> None:
        if not self.closed:
            self._end()
        super().close()

    def _end(self) -> None:
        self._eof = True
        if self._body is not None:
            self._backend.close(self._body)
            self._body = None

    def _resume(self, cause: str) -> None:
        """The body broke off: ask for the rest, from the first byte not delivered yet."""
        self._backend.close(self._body)
        self._body = None
        self._fail(cause)
        log.info("resuming %s at byte %d after: %s", self.shown, self._position, cause)
        self._request(resume=True)

    def _fail(self, cause: str) -> None:
        self._failures += 1
        if self._failures >= self.policy.attempts:
            raise RemoteRetriesExhausted(
                f"{self.location}: gave up after {self._failures} attempts in a row at byte {self._position};"
                f" last cause: {cause}"
            )

    def _request(self, *, resume: bool) -> None:
        """Send the request for bytes from `_position` on, again until it succeeds or the attempts run out."""
        if resume:
            self.counters["remote:resumes"] += 1
            _sleep(self.policy.delay(self._failures))
        while True:
            try:
                answer = self._backend.open(self._position)
            except _Failed as exc:
                if exc.throttled:
                    self.counters["remote:throttled"] += 1
                self._fail(str(exc))
                self.counters["remote:retries"] += 1
                log.info("retrying %s (attempt %d): %s", self.shown, self._failures + 1, exc)
                _sleep(self.policy.delay(self._failures, exc.retry_after))
                continue
            self._accept(answer, first=not resume)
            return

    def _accept(self, answer: _Answer, *, first: bool) -> None:
        if answer.eof:
            if self._size is not None and self._position < self._size:
                raise RemoteChangedError(
                    f"{self.location}: the object ends at byte {self._position} now, not {self._size}"
                )
            self._eof = True
            return
        if not first:
            self._check_same_object(answer)
        self._validator = self._validator or answer.validator
        self._size = self._size if self._size is not None else answer.size
        self._body = answer.body
        if answer.start == self._position:
            return
        if answer.start == 0:  # the server ignored the Range: read past what was delivered already
            self._skip(self._position)
            return
        self._backend.close(answer.body)
        self._body = None
        raise RemoteError(
            f"{self.location}: asked for bytes from {self._position}, the answer starts at {answer.start}"
        )

    def _check_same_object(self, answer: _Answer) -> None:
        changed = (
            self._validator is not None
            and answer.validator is not None
            and answer.validator != self._validator
        ) or (self._size is not None and answer.size is not None and answer.size != self._size)
        if changed:
            self._backend.close(answer.body)
            raise RemoteChangedError(
                f"{self.location} changed while it was read (at byte {self._position}: "
                f"{self._validator!r}, size {self._size} then {answer.validator!r}, size {answer.size}); "
                "refusing to splice two versions"
            )

    def _skip(self, count: int) -> None:
        """Read and drop the first `count` bytes of a whole-object answer to a Range request."""
        left = count
        while left:
            try:
                data = self._backend.read(self._body, min(left, 1 << 20))
            except _Broken as exc:
                self._resume(str(exc))  # asks again from `_position`, which skipping leaves unchanged
                return
            if not data:
                self._resume(f"the body ended {left} bytes before byte {count}")
                return
            left -= len(data)


def open_remote(
    location: str, counters: Counter | None = None, policy: RetryPolicy | None = None
) -> RemoteStream:
    """A readable, non-seekable stream of the object at an `https://`, `http://` or `s3://` location.

    The first request is sent at once: a missing object raises `RemoteNotFoundError` here. Retries and
    resumes are counted in `counters`; the policy defaults to `RetryPolicy.from_env()`.
    """
    return RemoteStream(location, counters, policy)
