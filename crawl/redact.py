"""Keep credentials out of everything mathforge writes: manifests, stats, reports, logs and error messages.

Input locations often carry secrets: presigned S3 URLs (`X-Amz-Signature`, `X-Amz-Credential`,
`X-Amz-Security-Token`), Azure SAS tokens (`sig`), GCS signed URLs (`X-Goog-Signature`), CloudFront
(`Signature`, `Policy`, `Key-Pair-Id`), API tokens (`token=`, `access_token=`, `key=`) and userinfo
(`https://user:pass@host/`). A corpus directory is meant to be shared, and logs end up in many places, so
every location is written through `redact_url` (one location) or `redact_text` (free text that may hold
locations, such as an exception message). What is kept is everything a person needs to recognise the input:
scheme, host, path and the values of the other query parameters; each secret value becomes `REDACTED`.

Redaction is idempotent and keeps parameter names, so a redacted location still names the same object
(`crawl.inputs.input_key` of a location and of its redacted form are equal). `RedactingFilter` applies
`redact_text` to log records (message and traceback) of the loggers it is attached to (`redact_logs`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_plus

REDACTED = "REDACTED"

# query/fragment parameters whose value is a secret (compared lowercased)
SECRET_PARAMS = frozenset(
    {
        "sig",  # Azure SAS
        "signature",  # S3 SigV2 presigned, CloudFront
        "policy",  # CloudFront signed URLs
        "key-pair-id",
        "awsaccesskeyid",
        "googleaccessid",
        "x-amz-signature",
        "x-amz-credential",
        "x-amz-security-token",
        "x-goog-signature",
        "x-goog-credential",
        "token",
        "access_token",
        "id_token",
        "refresh_token",
        "auth",
        "key",  # Google API keys
        "api_key",
        "apikey",
        "api-key",
        "password",
        "passwd",
        "pwd",
        "secret",
        "client_secret",
    }
)
# ...and any parameter whose name contains one of these
SECRET_WORDS = ("signature", "token", "secret", "password", "credential", "apikey", "api_key", "api-key")
# ...and any dotted Hadoop/Spark setting with one of these as a component (`--conf` reaches manifest.json's
# config): `fs.azure.account.key.<account>...`, `fs.gs.auth.service.account.private.key`, `fs.azure.sas.<...>`
SECRET_COMPONENTS = frozenset({"key", "sas"})

_URL_CHAR = (
    r"(?:(?!,[A-Za-z][A-Za-z0-9+.-]*://)[^\s'\"<>\\`])"  # `--input a,b`: a comma before a scheme ends it
)
_URL = re.compile(rf"\b[A-Za-z][A-Za-z0-9+.-]*://{_URL_CHAR}*(?<![.,;:!?)\]])")  # not the final comma either
_PARAM = re.compile(r"(?<![\w.%-])([\w.%-]+)=([^&\s'\"<>#,;)\]]*)")


def is_secret_param(name: str) -> bool:
    """Whether a query parameter of this name carries a credential (its value is never written)."""
    lowered = unquote_plus(name).strip().lower()
    if lowered in SECRET_PARAMS or any(word in lowered for word in SECRET_WORDS):
        return True
    return "." in lowered and not SECRET_COMPONENTS.isdisjoint(lowered.split("."))


def _redact_params(params: str) -> str:
    """`a=1&sig=x` → `a=1&sig=REDACTED`: secret values replaced, everything else byte for byte."""
    parts = []
    for part in params.split("&"):
        name, eq, _value = part.partition("=")
        parts.append(f"{name}={REDACTED}" if eq and is_secret_param(name) else part)
    return "&".join(parts)


def redact_url(location: str) -> str:
    """`location` with its userinfo and the values of secret query (or fragment) parameters replaced by
    `REDACTED`; scheme, host, path and other parameters kept as they are. A local path is returned as is."""
    scheme, sep, rest = location.partition("://")
    if not sep or not scheme or not scheme.replace("+", "").replace(".", "").replace("-", "").isalnum():
        return location
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority, tail = rest[:end], rest[end:]
    if "@" in authority:
        authority = f"{REDACTED}@{authority.rsplit('@', 1)[1]}"
    tail, hash_, fragment = tail.partition("#")
    path, question, query = tail.partition("?")
    if question:
        query = _redact_params(query)
    if hash_ and "=" in fragment:  # OAuth's implicit flow puts access_token in the fragment
        fragment = _redact_params(fragment)
    return f"{scheme}://{authority}{path}{question}{query}{hash_}{fragment}"


def redact_text(text: str) -> str:
    """Free text (a log line, an exception message) with every URL in it redacted (`redact_url`), and any
    stray `secret_name=value` outside a URL too (urllib3 quotes request paths without their host)."""
    text = _URL.sub(lambda m: redact_url(m.group(0)), text)
    return _PARAM.sub(
        lambda m: f"{m.group(1)}={REDACTED}" if is_secret_param(m.group(1)) else m.group(0), text
    )


def redact_record(value: Any) -> Any:
    """A JSON-like value (dicts, lists, strings, numbers) with `redact_text` applied to every string in it:
    for configs and summaries written whole (manifest.json's `config`, a report's `inputs`)."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {key: redact_record(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact_record(item) for item in value)
    return value


class RedactingFilter(logging.Filter):
    """Redacts a record's message and traceback before any handler formats it."""

    def __init__(self, redact: Callable[[str], str] = redact_text):
        super().__init__()
        self.redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = self.redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
        return True


def redact_logs(logger: logging.Logger | str) -> logging.Logger:
    """Attach one `RedactingFilter` to `logger` (a logger's filters see only its own records, so each module
    that logs locations attaches it to its logger); returns the logger."""
    if isinstance(logger, str):
        logger = logging.getLogger(logger)
    if not any(isinstance(f, RedactingFilter) for f in logger.filters):
        logger.addFilter(RedactingFilter())
    return logger
