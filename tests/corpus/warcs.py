"""Small WARC files written with warcio for tests: one HTML response per (url, html)."""

from __future__ import annotations

import io
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
