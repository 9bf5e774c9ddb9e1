"""`mathforge classifier annotate`: a stratified sample of a corpus, scored 0-5 for math-educational value by an
LLM at an OpenAI-compatible server (FineMath's recipe, issue 25); docs/quality.md.

1. Sample, in Spark (only the sample reaches disk, the driver sees counts and keys): strata are math-score
   bucket x domain. Within a bucket each domain gives at most `--max-per-domain` pages (its first ones in a
   stable hash order), and the bucket's quota is filled one domain round at a time (every domain's first page,
   then every domain's second, ...), ordered across domains by a second, independent hash, so no site dominates
   and big sites are not favoured. Quotas are equal across buckets (a crawl is mostly low-score pages; the
   model must see the rare high ones), an under-full bucket's share going to the others. The same corpus,
   size and seed give the same sample. It is written to OUT/sample/ in annotation order, so an interrupted
   run has annotated a uniform sub-sample.
2. Annotate, on the driver: the rows go to the server in batches (the engine keeps `--concurrency` requests in
   flight); answers are read strictly (`classifiers.quality_prompt`), an unparseable one is asked once more with
   another seed (at `--retry-temperature`), and one still unparseable is written with a null score, its raw
   answer and the reason: counted, never guessed. A request that fails for good is counted and its row not
   written, so a rerun asks again. Each batch is one Parquet part written atomically; a rerun skips ids already
   annotated with the same prompt version.

The engine is passed in (`ChatEngine`: training's `OpenAIChat` from the command line) because `jobs` sits below
`training` in the layering; this module only needs "answer these conversations with these seeds".
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from classifiers.quality_prompt import parse_quality_answer, prompt_for, quality_messages
from crawl.redact import redact_record
from jobs.config import QualityAnnotateConfig
from jobs.corpus_output import DATA_DIR
from jobs.spark import job_phase

log = logging.getLogger("mathforge.annotate_quality")

SAMPLE_DIR, ANNOTATIONS_DIR = "sample", "annotations"
NEEDED_COLUMNS = ("id", "url", "domain", "math_score", "text")
KEY_MARGIN = 1.25  # keys collected per row wanted at a partly taken level (a binomial draw falls short)

ANNOTATION_SCHEMA = pa.schema([
    ("id", pa.string()), ("url", pa.string()), ("domain", pa.string()), ("math_score", pa.float32()),
    ("math_bucket", pa.int32()), ("n_chars", pa.int32()), ("text", pa.string()),
    ("status", pa.string()),  # "ok" or "unparseable"
    ("score", pa.int8()), ("reason", pa.string()), ("raw_answer", pa.string()), ("problem", pa.string()),
    ("attempts", pa.int8()), ("finish_reason", pa.string()), ("prompt_version", pa.string()),
    ("model", pa.string()), ("temperature", pa.float32()), ("top_p", pa.float32()), ("max_tokens", pa.int32()),
    ("seed", pa.int64()), ("annotated_at", pa.timestamp("us", tz="UTC")),
])  # fmt: skip


class ChatReply(Protocol):
    text: str
    finish_reason: str  # "stop", "length" or "error"
    error: str | None


class ChatEngine(Protocol):
    """What the annotator asks of an engine (training.sampling.openai_chat.OpenAIChat answers it)."""

    model: str
    stats: Mapping[str, int]

    def chat(
        self, conversations: Sequence[Sequence[Mapping[str, str]]], seeds: Sequence[int | None], *,
        max_tokens: int, temperature: float, top_p: float,
    ) -> Sequence[ChatReply]: ...  # fmt: skip


# -- the sample ----------------------------------------------------------------------------------------------


def read_corpus(spark: SparkSession, path: str) -> DataFrame:
    """A corpus directory's rows (its data/), or any Parquet holding the needed columns."""
    root = Path(path)
    df = spark.read.parquet(str(root / DATA_DIR if (root / DATA_DIR).is_dir() else root))
    missing = [c for c in NEEDED_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path} lacks the columns {missing} (needs {list(NEEDED_COLUMNS)})")
    return df


def hash_fraction(column: str, salt: str) -> Column:
    """A stable number in [0, 1) per value of `column`, the same on every run and cluster."""
    return F.pmod(F.xxhash64(F.lit(salt), F.col(column)), F.lit(1 << 53)).cast("double") / float(1 << 53)


def allocate_quotas(available: Mapping[int, int], total: int) -> dict[int, int]:
    """Equal shares of `total` per bucket, each capped by what the bucket holds, the rest to the others."""
    quotas, remaining = {}, total
    ordered = sorted(available, key=lambda b: (available[b], b))
    for i, bucket in enumerate(ordered):
        share = -(-remaining // (len(ordered) - i))  # ceil
        quotas[bucket] = min(available[bucket], share)
        remaining -= quotas[bucket]
    return quotas


@dataclass(frozen=True)
class BucketCut:
    """Rows of a bucket taken: every domain rank up to `full_rank`, and the first `partial` rows (second-hash
    order) of rank `full_rank + 1`."""

    full_rank: int
    partial: int


def bucket_cuts(levels: Mapping[tuple[int, int], int], quotas: Mapping[int, int]) -> dict[int, BucketCut]:
    """Where each bucket's quota ends among its domain-rank levels ({(bucket, rank): rows})."""
    cuts = {}
    for bucket, quota in quotas.items():
        taken, rank = 0, 0
        while taken + levels.get((bucket, rank + 1), 0) <= quota and levels.get((bucket, rank + 1), 0):
            rank += 1
            taken += levels[(bucket, rank)]
        cuts[bucket] = BucketCut(rank, quota - taken)
    return cuts


def _partial_keys(
    ranked: DataFrame, cuts: Mapping[int, BucketCut], levels: Mapping[tuple[int, int], int]
) -> dict:
    """The last (order, id) key taken at each partly taken level: about `KEY_MARGIN` x the rows wanted reach
    the driver (thresholds on the uniform order hash, doubled where they fell short)."""
    wanted = {b: c for b, c in cuts.items() if c.partial > 0}
    thresholds = {
        b: min(1.0, (KEY_MARGIN * c.partial + 16) / levels[(b, c.full_rank + 1)]) for b, c in wanted.items()
    }
    last: dict[int, tuple[float, str]] = {}
    while wanted:
        condition = None
        for b, c in wanted.items():
            clause = (
                (F.col("bucket") == b)
                & (F.col("domain_rank") == c.full_rank + 1)
                & (F.col("order") < thresholds[b])
            )
            condition = clause if condition is None else condition | clause
        keys: dict[int, list[tuple[float, str]]] = {b: [] for b in wanted}
        for row in ranked.where(condition).select("bucket", "order", "id").collect():
            keys[row.bucket].append((row.order, row.id))
        for b in list(wanted):
            if len(keys[b]) >= wanted[b].partial or thresholds[b] >= 1.0:
                last[b] = sorted(keys[b])[wanted[b].partial - 1]
                del wanted[b]
            else:
                thresholds[b] = min(1.0, thresholds[b] * 2)
    return last


def rank_in_domains(df: DataFrame, buckets: int, per_domain: int, seed: int) -> DataFrame:
    """id, bucket, domain_rank (1 = the domain's first page in the bucket, by a stable hash) and the order key,
    for the pages within their domain's cap: the light table the sample is chosen from (ids are unique in a
    corpus; a duplicate id is dropped from the sample itself)."""
    light = (
        df.where(F.col("id").isNotNull() & F.col("math_score").isNotNull() & (F.length("text") > 0))
        .select("id", F.coalesce(F.col("domain"), F.lit("")).alias("domain"), "math_score")
        .withColumn("bucket", F.least(F.greatest(F.floor(F.col("math_score") * buckets), F.lit(0)), F.lit(buckets - 1)).cast("int"))
        .withColumn("in_domain", hash_fraction("id", f"mathforge-quality-domain-{seed}"))
        .withColumn("order", hash_fraction("id", f"mathforge-quality-order-{seed}"))
    )  # fmt: skip
    window = Window.partitionBy("bucket", "domain").orderBy("in_domain", "id")
    ranked = light.withColumn("domain_rank", F.row_number().over(window))
    return ranked.where(F.col("domain_rank") <= per_domain).select("id", "bucket", "domain_rank", "order")


def choose_sample(ranked: DataFrame, size: int) -> tuple[DataFrame, dict]:
    """The sample's id, bucket and order key from `rank_in_domains`'s table (persist it: it is read three
    times), and the strata counts. The driver gets one count per (bucket, rank) and the keys of partly taken
    levels."""
    counted = ranked.groupBy("bucket", "domain_rank").count().collect()
    levels = {(r.bucket, r.domain_rank): r["count"] for r in counted}
    available: Counter = Counter()
    for (bucket, _), count in levels.items():
        available[bucket] += count
    quotas = allocate_quotas(available, size)
    cuts = bucket_cuts(levels, quotas)
    last = _partial_keys(ranked, cuts, levels)
    condition = F.lit(False)
    for b, cut in cuts.items():
        clause = F.col("domain_rank") <= cut.full_rank
        if b in last:
            order, id_ = last[b]
            at_level = F.col("domain_rank") == cut.full_rank + 1
            clause = clause | (
                at_level & ((F.col("order") < order) | ((F.col("order") == order) & (F.col("id") <= id_)))
            )
        condition = condition | ((F.col("bucket") == b) & clause)
    strata = {"available": dict(sorted(available.items())), "quotas": dict(sorted(quotas.items()))}
    return ranked.where(condition).select("id", "bucket", "order"), strata


def draw_sample(spark: SparkSession, config: QualityAnnotateConfig, out: Path) -> dict:
    """OUT/sample/ (Parquet in annotation order) and OUT/sample.json; an existing sample drawn with the same
    settings is kept, so a rerun only annotates."""
    settings = {
        k: getattr(config, k)
        for k in ("corpus", "sample_size", "score_buckets", "max_per_domain", "seed", "max_chars")
    }
    meta_path, sample_dir = out / "sample.json", out / SAMPLE_DIR
    if meta_path.is_file() and sample_dir.is_dir():
        meta = json.loads(meta_path.read_text())
        if meta.get("settings") == settings:
            log.info("reusing the sample in %s (%d rows)", sample_dir, meta["rows"])
            return meta
    corpus = read_corpus(spark, config.corpus)
    with job_phase(spark, "annotate: stratified sample"):
        ranked = rank_in_domains(corpus, config.score_buckets, config.max_per_domain, config.seed).persist()
        try:
            chosen, strata = choose_sample(ranked, config.sample_size)
            rows = (
                corpus.join(chosen, "id")
                .select("id", "url", "domain", F.col("math_score").cast("float").alias("math_score"),
                        F.col("bucket").alias("math_bucket"), F.length("text").cast("int").alias("n_chars"),
                        F.substring("text", 1, config.max_chars).alias("text"), "order")
                .dropDuplicates(["id"])
                .orderBy("order", "id")
            )  # fmt: skip
            tmp = out / f".{SAMPLE_DIR}.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            rows.write.parquet(str(tmp))
        finally:
            ranked.unpersist()
    shutil.rmtree(sample_dir, ignore_errors=True)
    os.replace(tmp, sample_dir)
    n = pq.ParquetDataset(str(sample_dir)).read(columns=["id"]).num_rows
    meta = {"settings": settings, "rows": n, "strata": strata}
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    log.info("sampled %d pages (quotas per math-score bucket %s)", n, strata["quotas"])
    return meta


# -- annotation ----------------------------------------------------------------------------------------------


def row_seed(doc_id: str, seed: int, attempt: int) -> int:
    """The request seed of one row's attempt: reproducible per row, different for the retry."""
    return int(hashlib.sha1(f"{seed}:{attempt}:{doc_id}".encode()).hexdigest()[:8], 16) % 2**31


def parquet_files(folder: Path) -> list[Path]:
    """Data files in name order (Spark's part numbers, our parts' run and batch numbers)."""
    return (
        sorted(p for p in folder.glob("*.parquet") if not p.name.startswith((".", "_")))
        if folder.is_dir()
        else []
    )


def read_annotations(folder: Path, columns: Sequence[str], prompt_version: str | None = None) -> pa.Table:
    """The annotation parts (of one prompt version, if given) as one table."""
    files = parquet_files(folder)
    if not files:
        return ANNOTATION_SCHEMA.empty_table().select(list(columns))
    wanted = list(dict.fromkeys([*columns, "prompt_version"]))
    table = pa.concat_tables([pq.read_table(f, columns=wanted) for f in files])
    if prompt_version is not None:
        table = table.filter(pc.equal(table["prompt_version"], prompt_version))
    return table.select(list(columns))


def pending_batches(sample_dir: Path, done: set[str], size: int) -> Iterator[list[dict[str, Any]]]:
    """The sample's rows not yet annotated, in sample order, `size` at a time (streamed from disk)."""
    batch: list[dict[str, Any]] = []
    for path in parquet_files(sample_dir):
        for record in pq.ParquetFile(path).iter_batches(batch_size=1024):
            for row in record.to_pylist():
                if row["id"] not in done:
                    batch.append(row)
                    if len(batch) == size:
                        yield batch
                        batch = []
    if batch:
        yield batch


@dataclass(frozen=True)
class Asking:
    """The sampling settings of one attempt (stored with each row)."""

    temperature: float
    top_p: float
    max_tokens: int


def annotate_batch(
    rows: Sequence[dict[str, Any]],
    engine: ChatEngine,
    config: QualityAnnotateConfig,
    counts: Counter,
    failures: Counter,
) -> list[dict[str, Any]]:
    """Ask, read, retry the unparseable once; the rows to write (failed requests are left out, counted)."""
    first = Asking(config.temperature, config.top_p, config.max_tokens)
    retry = Asking(max(config.temperature, config.retry_temperature), config.top_p, config.max_tokens)
    conversations = [quality_messages(row["text"] or "", config.prompt_version) for row in rows]
    out: list[dict[str, Any]] = []
    pending = list(range(len(rows)))
    for attempt, asking in ((1, first), (2, retry)):
        seeds = [row_seed(rows[i]["id"], config.seed, attempt - 1) for i in pending]
        replies = engine.chat([conversations[i] for i in pending], seeds, **asdict(asking))
        unread = []
        for i, seed, reply in zip(pending, seeds, replies, strict=True):
            if reply.finish_reason == "error":
                counts["failed"] += 1
                failures[(reply.error or "unknown error")[:200]] += 1
                continue
            parsed = parse_quality_answer(reply.text)
            if not parsed.ok and attempt == 1:
                counts["retried"] += 1
                unread.append(i)
                continue
            counts["ok" if parsed.ok else "unparseable"] += 1
            counts["ok_on_retry"] += int(parsed.ok and attempt == 2)
            out.append({
                **{k: rows[i][k] for k in ("id", "url", "domain", "math_score", "math_bucket", "n_chars", "text")},
                "status": "ok" if parsed.ok else "unparseable", "score": parsed.score, "reason": parsed.reason,
                "raw_answer": reply.text, "problem": parsed.problem, "attempts": attempt,
                "finish_reason": reply.finish_reason, "prompt_version": config.prompt_version, "model": engine.model,
                **asdict(asking), "seed": seed, "annotated_at": dt.datetime.now(dt.UTC),
            })  # fmt: skip
        pending = unread
        if not pending:
            break
    return out


def write_part(folder: Path, name: str, rows: list[dict[str, Any]]) -> None:
    """One Parquet part, written under a hidden name and renamed: a crash never leaves half a part."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{name}.tmp"
    pq.write_table(pa.Table.from_pylist(rows, schema=ANNOTATION_SCHEMA), tmp, compression="zstd")
    os.replace(tmp, folder / name)


def summarise(folder: Path, prompt_version: str) -> dict[str, Any]:
    """Counts over every annotation of this prompt version (this run's and earlier ones)."""
    table = read_annotations(folder, ["status", "score"], prompt_version).to_pydict()
    statuses = Counter(table["status"])
    histogram = Counter(s for s in table["score"] if s is not None)
    return {"annotated": len(table["status"]), "ok": statuses["ok"], "unparseable": statuses["unparseable"],
            "score_histogram": {str(k): histogram[k] for k in range(6)}}  # fmt: skip


def annotate_quality(
    spark: SparkSession, config: QualityAnnotateConfig, *, engine: ChatEngine
) -> dict[str, Any]:
    """Sample (or reuse the sample), annotate what is not annotated yet, write summary.json; returns it."""
    started = time.time()
    prompt_for(config.prompt_version)  # an unknown version fails before any work
    out = Path(config.output)
    out.mkdir(parents=True, exist_ok=True)
    sample = draw_sample(spark, config, out)
    folder = out / ANNOTATIONS_DIR
    done = set(read_annotations(folder, ["id"], config.prompt_version)["id"].to_pylist())
    counts, failures = Counter(sample_rows=sample["rows"]), Counter()
    counts["already_annotated"] = len(done & _sample_ids(out / SAMPLE_DIR))
    run_id = f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    log.info("annotating %d of %d sampled pages with %s (%s)", sample["rows"] - counts["already_annotated"],
             sample["rows"], engine.model, config.prompt_version)  # fmt: skip
    for n, batch in enumerate(pending_batches(out / SAMPLE_DIR, done, config.batch_size)):
        counts["asked"] += len(batch)
        rows = annotate_batch(batch, engine, config, counts, failures)
        if rows:
            write_part(folder, f"part-{run_id}-{n:05d}.parquet", rows)
        log.info("batch %d: %d asked so far; ok %d, unparseable %d, failed %d", n, counts["asked"], counts["ok"],
                 counts["unparseable"], counts["failed"])  # fmt: skip
    summary = {
        "prompt_version": config.prompt_version,
        "model": engine.model,
        "sampling": {
            "temperature": config.temperature,
            "retry_temperature": config.retry_temperature,
            "top_p": config.top_p,
            "max_tokens": config.max_tokens,
        },
        "this_run": {
            k: counts[k]
            for k in (
                "sample_rows",
                "already_annotated",
                "asked",
                "ok",
                "ok_on_retry",
                "retried",
                "unparseable",
                "failed",
            )
        },
        "failure_reasons": dict(failures.most_common(20)),
        "engine": dict(engine.stats),
        "total": summarise(folder, config.prompt_version),
        "strata": sample["strata"],
        "seconds": round(time.time() - started, 2),
        "config": redact_record(asdict(config)),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return summary


def _sample_ids(sample_dir: Path) -> set[str]:
    return {i for f in parquet_files(sample_dir) for i in pq.read_table(f, columns=["id"])["id"].to_pylist()}
