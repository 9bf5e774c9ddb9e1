"""Credentials in input locations (issue 21, item 5): what `crawl.redact` hides and what it keeps readable."""

from __future__ import annotations

import logging

import pytest

from crawl.redact import REDACTED, redact_logs, redact_record, redact_text, redact_url


@pytest.mark.parametrize(
    ("location", "redacted"),
    [
        (
            "https://b.s3.amazonaws.com/k.warc.gz?X-Amz-Algorithm=AWS4-HMAC-SHA256"
            "&X-Amz-Credential=AKIA%2F20260101%2Fus-east-1&X-Amz-Date=20260101T000000Z&X-Amz-Expires=3600"
            "&X-Amz-SignedHeaders=host&X-Amz-Security-Token=FwoG&X-Amz-Signature=abc123",
            "https://b.s3.amazonaws.com/k.warc.gz?X-Amz-Algorithm=AWS4-HMAC-SHA256"
            "&X-Amz-Credential=REDACTED&X-Amz-Date=20260101T000000Z&X-Amz-Expires=3600"
            "&X-Amz-SignedHeaders=host&X-Amz-Security-Token=REDACTED&X-Amz-Signature=REDACTED",
        ),
        (  # Azure SAS
            "https://acct.blob.core.windows.net/c/x.warc.gz?sv=2024-05-04&se=2026-01-01&sp=r&sig=a%2Bb%3D",
            "https://acct.blob.core.windows.net/c/x.warc.gz?sv=2024-05-04&se=2026-01-01&sp=r&sig=REDACTED",
        ),
        (  # GCS V4 signed URL
            "https://storage.googleapis.com/b/x?X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Credential=sa%40p"
            "&X-Goog-Signature=0a1b",
            "https://storage.googleapis.com/b/x?X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Credential=REDACTED"
            "&X-Goog-Signature=REDACTED",
        ),
        (  # S3 SigV2 / CloudFront
            "https://d.cloudfront.net/x?Expires=1&Signature=s&Key-Pair-Id=K&Policy=p&AWSAccessKeyId=AK",
            "https://d.cloudfront.net/x?Expires=1&Signature=REDACTED&Key-Pair-Id=REDACTED&Policy=REDACTED"
            "&AWSAccessKeyId=REDACTED",
        ),
        (
            "https://h/x?token=t&access_token=a&api_key=k&page=2",
            "https://h/x?token=REDACTED&access_token=REDACTED&api_key=REDACTED&page=2",
        ),
        ("https://user:pa%40ss@h.example:8443/p?a=1", "https://REDACTED@h.example:8443/p?a=1"),
        ("ftp://user@h/p", "ftp://REDACTED@h/p"),
        ("https://h/cb#access_token=t&state=s", "https://h/cb#access_token=REDACTED&state=s"),
        ("https://h/a@b/c?sigma=1&design=2", "https://h/a@b/c?sigma=1&design=2"),  # nothing secret here
        ("s3://commoncrawl/crawl-data/x.warc.gz", "s3://commoncrawl/crawl-data/x.warc.gz"),
        ("/data/x?sig=1.warc.gz", "/data/x?sig=1.warc.gz"),  # a local file name is not a URL
    ],
)
def test_redact_url_hides_secrets_and_keeps_the_rest(location, redacted):
    assert redact_url(location) == redacted
    assert redact_url(redacted) == redacted  # idempotent: a manifest's inputs stay as they are


def test_redact_text_finds_urls_and_stray_parameters_in_messages():
    message = (
        "HTTPConnectionPool(host='h', port=80): Max retries exceeded with url: /x.warc.gz?X-Amz-Signature=s1"
        " (Caused by ...); no such object: 'https://u:p@h/y?sig=s2&v=1' (HTTP 404)\n"
        "  next: https://h/z?token=s3, kept=3 key=s4"
    )
    said = redact_text(message)
    assert not any(secret in said for secret in ("s1", "s2", "s3", "s4", "u:p"))
    assert "/x.warc.gz?X-Amz-Signature=REDACTED (Caused by" in said
    assert "'https://REDACTED@h/y?sig=REDACTED&v=1' (HTTP 404)" in said
    assert "https://h/z?token=REDACTED, kept=3" in said
    assert redact_text("nothing to hide: s3://b/k, 12 pages") == "nothing to hide: s3://b/k, 12 pages"


def test_redact_record_walks_configs():
    config = {"input": "https://h/p.paths?sig=x,s3://b/k", "limit": 3, "langs": ["en"], "index": None}
    assert redact_record(config) == {
        "input": f"https://h/p.paths?sig={REDACTED},s3://b/k",
        "limit": 3,
        "langs": ["en"],
        "index": None,
    }


def test_credentials_in_spark_settings_are_redacted_and_other_settings_kept():
    """`--conf` settings are part of the config written to manifest.json: Hadoop's credential settings (an
    Azure account key, a GCS private key, a SAS token, S3A keys) lose their values, others are kept."""
    conf = (
        "spark.hadoop.fs.azure.account.key.acct.dfs.core.windows.net=AZKEY1",
        "spark.hadoop.fs.gs.auth.service.account.private.key=GSKEY2",
        "spark.hadoop.fs.azure.sas.c.acct.blob.core.windows.net=SAS3",
        "spark.hadoop.fs.s3a.secret.key=S3KEY4",
        "spark.hadoop.fs.s3a.session.token=TOKEN5",
        "spark.executor.memory=4g",
        "spark.hadoop.google.cloud.auth.service.account.json.keyfile=/etc/gcs.json",
        "spark.sql.shuffle.partitions=64",
    )
    redacted = redact_record({"conf": conf})["conf"]
    assert redacted[:5] == tuple(f"{setting.split('=')[0]}={REDACTED}" for setting in conf[:5])
    assert redacted[5:] == conf[5:]
    said = redact_text(" ".join(conf))
    assert not any(secret in said for secret in ("AZKEY1", "GSKEY2", "SAS3", "S3KEY4", "TOKEN5"))


def test_a_redacting_logger_redacts_messages_arguments_and_tracebacks(caplog):
    logger = redact_logs(logging.getLogger("tests.redact"))
    assert redact_logs(logger) is logger and len(logger.filters) == 1  # attached once
    with caplog.at_level(logging.INFO, logger="tests.redact"):
        logger.info("reading %s", "https://u:pw1@h/x?sig=abc")
        try:
            raise ValueError("failed: https://h/y?X-Amz-Signature=def")
        except ValueError:
            logger.exception("giving up on %r", "https://h/y?X-Amz-Signature=def")
    assert "pw1" not in caplog.text and "abc" not in caplog.text and "def" not in caplog.text
    assert "reading https://REDACTED@h/x?sig=REDACTED" in caplog.text
    assert "ValueError: failed: https://h/y?X-Amz-Signature=REDACTED" in caplog.text
