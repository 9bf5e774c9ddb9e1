"""Small WARC files written with warcio for tests: one HTML response per (url, html)."""

from __future__ import annotations

import io
import zlib
from pathlib import Path

from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter


def html_warc_bytes(pages: list[tuple[str, str | bytes]], *, gzip: bool = True) -> bytes:
    buffer = io.BytesIO()
    writer = WARCWriter(buffer, gzip=gzip)
    for url, html in pages:
        body = html.encode("utf-8") if isinstance(html, str) else html
        headers = StatusAndHeaders(
            "200 OK", [("Content-Type", "text/html; charset=utf-8")], protocol="HTTP/1.1"
        )
        writer.write_record(
            writer.create_warc_record(url, "response", payload=io.BytesIO(body), http_headers=headers)
        )
    return buffer.getvalue()


def write_html_warc(path: Path, pages: list[tuple[str, str | bytes]], *, gzip: bool = True) -> Path:
    path.write_bytes(html_warc_bytes(pages, gzip=gzip))
    return path


def article_html(text: str) -> str:
    """A minimal page whose article holds `text`, one paragraph per line."""
    paragraphs = "".join(f"<p>{line}</p>" for line in text.split("\n") if line.strip())
    return f"<html><head><title>t</title></head><body><article>{paragraphs}</article></body></html>"


def write_response_warc(path: Path, responses: list[tuple[str, bytes, str]]) -> Path:
    """One HTTP 200 response per (url, body bytes as served, Content-Type header)."""
    buffer = io.BytesIO()
    writer = WARCWriter(buffer, gzip=True)
    for url, body, content_type in responses:
        headers = StatusAndHeaders("200 OK", [("Content-Type", content_type)], protocol="HTTP/1.1")
        writer.write_record(
            writer.create_warc_record(url, "response", payload=io.BytesIO(body), http_headers=headers)
        )
    path.write_bytes(buffer.getvalue())
    return path


def response_warc_bytes(pages: list[tuple[str, bytes, list[tuple[str, str]]]], *, gzip: bool = True) -> bytes:
    """HTTP 200 responses whose payload is written exactly as given (already chunked or content-encoded)."""
    buffer = io.BytesIO()
    writer = WARCWriter(buffer, gzip=gzip)
    for url, payload, headers in pages:
        http = StatusAndHeaders("200 OK", headers, protocol="HTTP/1.1")
        writer.write_record(
            writer.create_warc_record(url, "response", payload=io.BytesIO(payload), http_headers=http)
        )
    return buffer.getvalue()


def gzip_member(parts: list[bytes], *, zeros: int = 0) -> bytes:
    """One gzip member of `parts` followed by `zeros` zero bytes, compressed as it streams (a bomb when
    `zeros` is large: 64 MiB of zeros compress to about 64 KB)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    out = [compressor.compress(part) for part in parts]
    block = bytes(1 << 20)
    for start in range(0, zeros, len(block)):
        out.append(compressor.compress(block[: min(len(block), zeros - start)]))
    out.append(compressor.flush())
    return b"".join(out)


def warc_response_head(url: str, content_length: int, record_id: str) -> bytes:
    """The WARC header block of a response record that claims `content_length` bytes (HTTP head included)."""
    return (
        "WARC/1.0\r\nWARC-Type: response\r\n"
        f"WARC-Record-ID: <urn:uuid:{record_id}>\r\nWARC-Date: 2024-05-01T00:00:00Z\r\n"
        f"WARC-Target-URI: {url}\r\nContent-Type: application/http; msgtype=response\r\n"
        f"Content-Length: {content_length}\r\n\r\n"
    ).encode()
