"""The corpus table's columns, declared once (DESIGN.md: the contract between the data and training halves).

Spark and pyarrow schemas are both derived from `CORPUS_COLUMNS`, so the job's output and any pyarrow
reader agree by construction.

Columns are only ever appended, and every one is nullable: a snapshot written before a column existed simply
lacks it, and the snapshots of one corpus may differ in that way after a refresh (`quality_score` came later).
Spark and pyarrow infer a folder's schema from one of its files, so a reader that needs the newer columns
over every snapshot reads with `spark_schema()` / `arrow_schema()` (a missing column reads as null), and code
that may meet an older table checks `column in df.columns` (`jobs.corpus_summary`).
"""

from __future__ import annotations

from typing import Any

# (name, type, description). The first eleven are required by DESIGN.md; the rest are extras.
CORPUS_COLUMNS: tuple[tuple[str, str, str], ...] = (
    (
        "id",
        "string",
        "stable document id: sha1 of the WARC record id (or URL + payload digest), 20 hex chars",
    ),
    ("url", "string", "WARC-Target-URI"),
    ("domain", "string", "host of the URL, lower-cased, without port"),
    ("crawl", "string", "crawl name, e.g. CC-MAIN-2024-22 (from the path or the warcinfo isPartOf)"),
    ("warc_path", "string", "WARC file the record came from"),
    ("warc_record_id", "string", "WARC-Record-ID"),
    ("fetch_time", "timestamp", "WARC-Date in UTC (null if malformed)"),
    ("lang", "string", "lid.176 language code"),
    ("lang_score", "float", "lid.176 probability of `lang`"),
    ("math_score", "float", "math score in [0, 1] (see `math_scorer` in the manifest)"),
    ("text", "string", "extracted main text"),
    ("is_math", "bool", "the two-stage math decision (prefilter + score, see pipeline/math_decision.py)"),
    (
        "extractor",
        "string",
        "main-content extraction that gave `text`: trafilatura, resiliparse or whole_page (crawl/main_content.py)",
    ),
    ("n_chars", "int", "characters in `text`"),
    (
        "content_digest",
        "string",
        "digest of the normalised text (classifiers.text_norm.text_digest), for exact dedup",
    ),
    ("charset", "string", "codec the HTML was decoded with"),
    ("charset_source", "string", "where the charset came from: http-header, meta, bom, detected, fallback"),
    (
        "quality_score",
        "float",
        "math-educational value on FineMath's 0-5 scale, from `corpus build --quality-model` (see "
        "`quality_model` in the manifest); null without a quality model, and in snapshots written before "
        "the column existed",
    ),
)

COLUMN_NAMES: tuple[str, ...] = tuple(name for name, _, _ in CORPUS_COLUMNS)
REQUIRED_COLUMNS: tuple[str, ...] = COLUMN_NAMES[:11]  # every reader and `corpus dedup` may rely on these
_COLUMN_SET = frozenset(COLUMN_NAMES)


def row_from(values: dict[str, Any]) -> tuple:
    """The one place a row becomes positional: `values` keyed by column name, in `COLUMN_NAMES` order.
    A missing or unknown column is an error here, not a silently shifted row."""
    if values.keys() != _COLUMN_SET:
        missing, unknown = _COLUMN_SET - values.keys(), values.keys() - _COLUMN_SET
        raise ValueError(
            f"row columns differ from the schema: missing {sorted(missing)}, unknown {sorted(unknown)}"
        )
    return tuple(values[name] for name in COLUMN_NAMES)


def spark_schema() -> Any:
    from pyspark.sql import types as T

    kinds = {
        "string": T.StringType(),
        "float": T.FloatType(),
        "int": T.IntegerType(),
        "timestamp": T.TimestampType(),
        "bool": T.BooleanType(),
    }
    return T.StructType([T.StructField(name, kinds[kind], nullable=True) for name, kind, _ in CORPUS_COLUMNS])


def arrow_schema() -> Any:
    import pyarrow as pa

    kinds = {
        "string": pa.string(),
        "float": pa.float32(),
        "int": pa.int32(),
        "timestamp": pa.timestamp("us", tz="UTC"),
        "bool": pa.bool_(),
    }
    return pa.schema([pa.field(name, kinds[kind]) for name, kind, _ in CORPUS_COLUMNS])
