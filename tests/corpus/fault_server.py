"""A real HTTP server on 127.0.0.1 that serves files with Range support and misbehaves on cue.

Each URL path has a script: a list of faults, one used up per GET of that path, in order (the GETs after the
script is used up are answered normally). With `upstream` set it is a proxy instead (to a moto S3 server, say):
requests are forwarded there and the scripted GETs are spoiled on the way back, so boto3 meets the same
faults as urllib3. Faults only pause on the server's side; tests never sleep to synchronise.
"""

from __future__ import annotations

import hashlib
import http.client
import socket
import struct
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

S3_SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)


@dataclass(frozen=True)
class Normal:
    """Answer this request as if nothing were wrong (a placeholder in a script)."""


@dataclass(frozen=True)
class Status:
    """Answer with this status and a short body instead of the file (503 in S3's SlowDown form on a proxy)."""

    code: int
    retry_after: str | None = None


@dataclass(frozen=True)
class Cut:
    """Send the headers (full Content-Length) and `after` bytes of the body, then close the connection; with
    `reset`, abort it (RST) instead of closing it cleanly."""

    after: int
    reset: bool = False


@dataclass(frozen=True)
class Slow:
    """Send the body `chunk` bytes at a time with `pause` seconds between chunks."""

    chunk: int = 4096
    pause: float = 0.001


@dataclass(frozen=True)
class Stall:
    """Send `after` bytes, then nothing for `seconds` (longer than the client's read timeout), then close."""

    after: int
    seconds: float


@dataclass(frozen=True)
class ChangedEtag:
    """Answer normally, but under another ETag (the object changed)."""


@dataclass(frozen=True)
class IgnoreRange:
    """Answer a Range request with 200 and the whole object."""


@dataclass(frozen=True)
class Redirect:
    """Answer with a redirect (`code`) to `to`: an absolute URL, or a path on this server."""

    to: str
    code: int = 302


Fault = Normal | Status | Cut | Slow | Stall | ChangedEtag | IgnoreRange | Redirect


def etag_of(data: bytes) -> str:
    return f'"{hashlib.md5(data).hexdigest()}"'


class FaultServer:
    """`with FaultServer(files) as server:` serve `files` ({url path: bytes}) at `server.url(path)`."""

    def __init__(self, files: dict[str, bytes] | None = None, upstream: str | None = None):
        self.files = dict(files or {})
        self.upstream = upstream
        self.scripts: dict[str, list[Fault]] = defaultdict(list)
        self.requests: list[tuple[str, str, str | None]] = []  # (method, path, Range header)
        self.authorizations: list[tuple[str, str | None]] = []  # (path, Authorization header) per request
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self._httpd.handle_error = lambda request, address: None  # clients that hang up are part of the test
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def base(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str) -> str:
        return self.base + path

    def script(self, path: str, *faults: Fault) -> None:
        with self._lock:
            self.scripts[path].extend(faults)

    def gets(self, path: str) -> list[str | None]:
        """The Range header of every GET of `path` so far."""
        return [rng for method, p, rng in self.requests if method == "GET" and p == path]

    def next_fault(self, method: str, path: str, range_header: str | None) -> Fault | None:
        with self._lock:
            self.requests.append((method, path, range_header))
            if method == "GET" and self.scripts.get(path):
                return self.scripts[path].pop(0)
        return None

    def __enter__(self) -> FaultServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()


def _parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) byte of `bytes=a-` / `bytes=a-b`; None for no or an unreadable Range header."""
    if not header or not header.startswith("bytes="):
        return None
    first, _, last = header[len("bytes=") :].partition("-")
    if not first.isdigit():
        return None
    return int(first), min(int(last), size - 1) if last.isdigit() else size - 1


def _handler_for(server: FaultServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args) -> None:  # quiet
            pass

        def do_GET(self) -> None:
            self._serve("GET")

        def do_HEAD(self) -> None:
            self._serve("HEAD")

        def do_PUT(self) -> None:
            self._serve("PUT")

        def do_POST(self) -> None:
            self._serve("POST")

        def do_DELETE(self) -> None:
            self._serve("DELETE")

        def _serve(self, method: str) -> None:
            path = urlsplit(self.path).path
            range_header = self.headers.get("Range")
            with server._lock:
                server.authorizations.append((path, self.headers.get("Authorization")))
            fault = server.next_fault(method, path, range_header)
            if isinstance(fault, Status):
                self._status(fault)
                return
            if isinstance(fault, Redirect):
                self.send_response(fault.code)
                self.send_header("Location", fault.to)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if isinstance(fault, IgnoreRange):
                range_header = None
            if server.upstream:
                status, headers, body = self._forward(method, range_header)
            else:
                status, headers, body = self._local(path, range_header)
            if isinstance(fault, ChangedEtag):
                headers = [(k, '"changed"' if k.lower() == "etag" else v) for k, v in headers]
            self.send_response(status)
            for key, value in headers:
                self.send_header(key, value)
            self.end_headers()
            if method == "HEAD":
                return
            self._body(body, fault)

        def _status(self, fault: Status) -> None:
            body = (
                S3_SLOW_DOWN if server.upstream and fault.code == 503 else f"status {fault.code}\n".encode()
            )
            self.send_response(fault.code)
            if fault.retry_after is not None:
                self.send_header("Retry-After", fault.retry_after)
            self.send_header("Content-Type", "application/xml" if server.upstream else "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _local(self, path: str, range_header: str | None) -> tuple[int, list, bytes]:
            if path.endswith("/forbidden"):
                return 403, [("Content-Length", "10")], b"forbidden\n"
            data = server.files.get(path)
            if data is None:
                return 404, [("Content-Length", "10")], b"not found\n"
            headers = [
                ("ETag", etag_of(data)),
                ("Last-Modified", "Tue, 01 Apr 2025 00:00:00 GMT"),
                ("Accept-Ranges", "bytes"),
                ("Content-Type", "application/octet-stream"),
            ]
            wanted = _parse_range(range_header, len(data))
            if wanted is None:
                return 200, [*headers, ("Content-Length", str(len(data)))], data
            first, last = wanted
            if first >= len(data):
                return 416, [("Content-Range", f"bytes */{len(data)}"), ("Content-Length", "0")], b""
            body = data[first : last + 1]
            return (
                206,
                [
                    *headers,
                    ("Content-Range", f"bytes {first}-{last}/{len(data)}"),
                    ("Content-Length", str(len(body))),
                ],
                body,
            )

        def _forward(self, method: str, range_header: str | None) -> tuple[int, list, bytes]:
            target = urlsplit(server.upstream)
            length = int(self.headers.get("Content-Length") or 0)
            payload = self.rfile.read(length) if length else None
            skip = {"host", "range", "connection", "content-length"}
            headers = {k: v for k, v in self.headers.items() if k.lower() not in skip}
            headers["Host"] = target.netloc
            if range_header:
                headers["Range"] = range_header
            if payload is not None:
                headers["Content-Length"] = str(len(payload))
            connection = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
            try:
                connection.request(method, self.path, body=payload, headers=headers)
                answer = connection.getresponse()
                body = answer.read()
                drop = {"connection", "transfer-encoding", "content-length", "keep-alive", "server", "date"}
                kept = [(k, v) for k, v in answer.getheaders() if k.lower() not in drop]
                return answer.status, [*kept, ("Content-Length", str(len(body)))], body
            finally:
                connection.close()

        def _body(self, body: bytes, fault: Fault | None) -> None:
            if isinstance(fault, Cut):
                self.wfile.write(body[: fault.after])
                self.wfile.flush()
                self._hang_up(reset=fault.reset)
            elif isinstance(fault, Stall):
                self.wfile.write(body[: fault.after])
                self.wfile.flush()
                time.sleep(fault.seconds)  # server side: the client's read timeout fires meanwhile
                self._hang_up(reset=False)
            elif isinstance(fault, Slow):
                for at in range(0, len(body), fault.chunk):
                    self.wfile.write(body[at : at + fault.chunk])
                    self.wfile.flush()
                    time.sleep(fault.pause)
            else:
                self.wfile.write(body)

        def _hang_up(self, *, reset: bool) -> None:
            self.close_connection = True
            if reset:  # SO_LINGER 0: close() sends RST instead of FIN
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:
                self.connection.shutdown(socket.SHUT_RDWR)

    return Handler
