"""Spark job: DeepSeekMath's loop — train, recall, discover math domains, grow the seeds, repeat.

    spark-submit jobs/iterate_corpus.py --input warc.paths.gz --seeds seeds.jsonl --rounds 4 --output DIR
    mathforge corpus iterate --input DIR --seeds seeds.jsonl --rounds 4 --output DIR   # Spark local[*]

The WARC files are read once: the pool pass is the corpus job keeping every page with main text
(`--min-math-score 0`: extraction, language ID, exact and near dedup) into `DIR/pool`. Each round then only
trains and scores:

1. train fastText (DeepSeekMath's settings) on the round's seeds against pool pages sampled by a stable
   hash (never a seed, never a page the previous round collected);
2. score every pool page (Spark, one task per pool shard) and collect the best pages at or above
   `--min-score`, up to `--token-budget`;
3. compute each domain's collected share, propose the URL-path prefixes under domains above
   `--domain-share`, accept them (`--accept auto`, or the prefixes a person listed in a file);
4. the uncollected pages under accepted prefixes join the next round's seeds.

The loop stops after `--rounds` rounds, or when a round's collection overlaps the previous one by
`--converge-overlap` (98%). Each round is committed atomically as `DIR/rounds/<n>/` (model, seeds,
scores, collection, proposals, report.json/report.md, score histogram); a re-run resumes at the first
uncommitted round. The final corpus (`DIR/data`, manifest, stats, `REPORT.md`) is the last round's
collection in the corpus schema, plus `first_round` and `first_score`: the round that first collected
each page and its score there.

Driver memory: the per-round decisions run on the driver over (id, url, domain, n_chars, score, label) of
every pool page, without text; training texts are collected to the driver, as in the classifier job.
"""

from __future__ import annotations

if __name__ == "__main__" and __package__ in (None, ""):  # run as a script by spark-submit
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dataclasses
import json
import logging
import os
import shutil
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from classifiers.domain_discovery import (
    ScoredPage,
    accept_listed,
    approx_tokens,
    auto_accept,
    collect,
    domain_shares,
    label_metrics,
    overlap,
    prefix_seeds,
    propose_prefixes,
    read_accept_file,
)
from classifiers.math_classifier import TrainingOptions, train_math_classifier
from crawl.redact import redact_record
from jobs.build_corpus import build_corpus
from jobs.classifier_seeds import read_seed_texts, stable_fraction
from jobs.config import IterateConfig
from jobs.corpus_output import DATA_DIR, StagedOutput, new_run_id, package_versions
from jobs.corpus_schema import COLUMN_NAMES, CORPUS_COLUMNS
from jobs.corpus_writers import (
    CorpusLock,
    clean_staging,
    fsync_path,
    fsync_tree,
    make_staging,
    run_over,
    stale_hours_default,
    write_json,
)
from jobs.spark import ship_code

log = logging.getLogger("mathforge.iterate_corpus")

POOL_DIR = "pool"
ROUNDS_DIR = "rounds"
STATE_FILE = "iterate.json"
# Settings that decide what a committed round holds: a re-run with other values would mix two loops.
_FIXED_SETTINGS = (
    "input",
    "seeds",
    "token_budget",
    "min_score",
    "domain_share",
    "accept_share",
    "min_prefix_pages",
    "prefix_depth",
    "labels",
    "negative_ratio",
    "max_per_class",
    "epoch",
    "bucket",
    "seed",
)
EXTRA_COLUMNS = (
    ("first_round", "int", "the round of `corpus iterate` that first collected the page"),
    ("first_score", "float", "the page's math score in that round"),
)


# ---------------------------------------------------------------- the pool


def read_labels(path: str) -> dict[str, bool]:
    """url → is_math from a JSONL file of {url, is_math}."""
    labels = {}
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                labels[record["url"]] = bool(record["is_math"])
            except (json.JSONDecodeError, KeyError) as exc:
                raise ValueError(
                    f"{path}:{number}: expected a JSON object with url and is_math ({exc!r})"
                ) from exc
    return labels


def build_pool(spark, config: IterateConfig, out: Path) -> None:
    """The pool pass (once): `corpus build` keeping every page into DIR/pool, plus `labels.parquet`."""
    pool = out / POOL_DIR
    if (pool / "manifest.json").is_file():
        log.info("pool already built at %s", pool)
        return
    build_corpus(spark, config.pool_config(str(pool)))  # staged: committed only when complete
    if config.labels:
        labels = read_labels(config.labels)
        table = ds.dataset(pool / DATA_DIR, format="parquet").to_table(columns=["id", "url"])
        ids, urls = table.column("id").to_pylist(), table.column("url").to_pylist()
        values = [labels.get(u) for u in urls]
        write_table(pa.table({"id": ids, "label": pa.array(values, pa.bool_())}), pool / "labels.parquet")


def write_table(table: pa.Table, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def read_pool_pages(out: Path) -> list[dict[str, Any]]:
    """(id, url, domain, n_chars, label) of every pool page, sorted by id: the driver's view of the pool."""
    pool = out / POOL_DIR
    table = ds.dataset(pool / DATA_DIR, format="parquet").to_table(columns=["id", "url", "domain", "n_chars"])
    rows = table.to_pylist()
    labels_file = pool / "labels.parquet"
    labels = {}
    if labels_file.is_file():
        lt = pq.read_table(labels_file)
        labels = dict(zip(lt.column("id").to_pylist(), lt.column("label").to_pylist(), strict=True))
    for row in rows:
        row["label"] = labels.get(row["id"])
    return sorted(rows, key=lambda r: r["id"])


def pool_texts(out: Path, ids: Iterable[str]) -> dict[str, str]:
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    dataset = ds.dataset(out / POOL_DIR / DATA_DIR, format="parquet")
    table = dataset.to_table(columns=["id", "text"], filter=pc.field("id").isin(wanted))
    return dict(zip(table.column("id").to_pylist(), table.column("text").to_pylist(), strict=True))


# ---------------------------------------------------------------- one round


def score_pool(spark, out: Path, model_path: Path, dest: Path) -> dict[str, float]:
    """Every pool page's P(math) under `model_path` (Spark: one task per pool shard), written to `dest`."""
    from pyspark.sql import types as T

    model = str(model_path)

    def score_partition(rows: Iterable) -> Iterator[tuple[str, float]]:
        from classifiers.math_classifier import FastTextMathScorer

        scorer = FastTextMathScorer(model)
        batch: list = []
        for row in rows:
            batch.append(row)
            if len(batch) >= 512:
                yield from zip((r.id for r in batch), scorer.score_batch(r.text for r in batch), strict=True)
                batch = []
        if batch:
            yield from zip((r.id for r in batch), scorer.score_batch(r.text for r in batch), strict=True)

    pool = spark.read.parquet(str(out / POOL_DIR / DATA_DIR)).select("id", "text")
    schema = T.StructType([T.StructField("id", T.StringType()), T.StructField("score", T.DoubleType())])
    scores = spark.createDataFrame(pool.rdd.mapPartitions(score_partition), schema)
    scores.coalesce(1).write.parquet(str(dest))
    table = ds.dataset(dest, format="parquet").to_table()
    return {
        i: round(s, 6)
        for i, s in zip(table.column("id").to_pylist(), table.column("score").to_pylist(), strict=True)
    }


def committed_rounds(out: Path) -> list[int]:
    root = out / ROUNDS_DIR
    if not root.is_dir():
        return []
    return sorted(int(p.name) for p in root.iterdir() if p.name.isdigit() and (p / "report.json").is_file())


def load_round(out: Path, n: int) -> dict[str, Any]:
    """What later rounds need from a committed round: its report, collection, seeds and accepted keys."""
    folder = out / ROUNDS_DIR / str(n)
    report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    collection = pq.read_table(folder / "collection.parquet")
    seeds = pq.read_table(folder / "seeds.parquet")
    return {
        "report": report,
        "collected": dict(
            zip(collection.column("id").to_pylist(), collection.column("score").to_pylist(), strict=True)
        ),
        "seed_ids": {i for i in seeds.column("id").to_pylist() if i},
        "accepted": report["accepted_prefixes"],
    }


def sample_negatives(pool: list[dict[str, Any]], excluded: set[str], n: int, seed: int) -> list[str]:
    """`n` pool ids outside `excluded`, the ones with the smallest stable hash (the same on every run)."""
    candidates = [p["id"] for p in pool if p["id"] not in excluded]
    return sorted(candidates, key=lambda i: (stable_fraction(i, seed), i))[:n]


def fail_point(round_number: int, stage: str) -> None:
    """Called between a round's stages; tests replace it to kill a run in the middle of a round."""


def run_round(
    spark,
    config: IterateConfig,
    out: Path,
    n: int,
    pool: list[dict],
    previous: dict | None,
    given_seeds: list[str],
) -> None:
    """Run round `n` into a staging folder owned by this run; once complete (report.json written last,
    everything fsynced) rename it to `rounds/<n>`. Earlier attempts' staging folders go only when their run
    is provably over (`jobs.corpus_writers.clean_staging`)."""
    rounds_root = out / ROUNDS_DIR
    rounds_root.mkdir(parents=True, exist_ok=True)
    clean_staging(rounds_root.glob(f".staging-{n}-*"), stale_hours_default())
    run_id = new_run_id()
    staging = make_staging(rounds_root / f".staging-{n}-{run_id}", run_id)
    try:
        collected = _write_round(spark, config, out, n, pool, previous, given_seeds, staging)
        fail_point(n, "written")
    except BaseException:
        run_over(run_id)  # left for the next attempt, which may now remove it
        raise
    run_over(run_id)
    fsync_tree(staging)
    os.rename(staging, rounds_root / str(n))
    fsync_path(rounds_root, directory=True)
    log.info("round %d committed: %d pages collected", n, collected)


def _write_round(
    spark,
    config: IterateConfig,
    out: Path,
    n: int,
    pool: list[dict],
    previous: dict | None,
    given_seeds: list[str],
    staging: Path,
) -> int:
    """Round `n`'s files into `staging`, report.json last; returns the number of pages collected."""
    started = time.time()

    # seeds: the given texts, the earlier rounds' prefix seeds, the previous round's new prefix seeds
    by_id = {p["id"]: p for p in pool}
    pages_prev = None
    seed_ids: set[str] = set()
    new_seed_ids: list[str] = []
    if previous is not None:
        prev_collected = set(previous["collected"])
        pages_prev = [
            ScoredPage(p["id"], p["url"], p["domain"], p["n_chars"], previous["collected"].get(p["id"], 0.0))
            for p in pool
        ]
        seed_ids = set(previous["seed_ids"])
        new_seed_ids = [
            p.id
            for p in prefix_seeds(pages_prev, previous["accepted"], prev_collected)
            if p.id not in seed_ids
        ]
        seed_ids |= set(new_seed_ids)
    else:
        prev_collected = set()
    texts = pool_texts(out, seed_ids)
    positives = (
        given_seeds[: config.max_per_class]
        + [texts[i] for i in sorted(seed_ids)][: max(0, config.max_per_class - len(given_seeds))]
    )
    n_neg = min(config.max_per_class, max(1, round(config.negative_ratio * len(positives))))
    negative_ids = sample_negatives(pool, seed_ids | prev_collected, n_neg, config.seed + n)
    negative_texts = pool_texts(out, negative_ids)
    negatives = [negative_texts[i] for i in negative_ids]
    write_table(
        pa.table(
            {
                "id": [None] * len(given_seeds) + sorted(seed_ids),
                "source": ["given"] * len(given_seeds)
                + ["prefix:new" if i in set(new_seed_ids) else "prefix" for i in sorted(seed_ids)],
                "url": [None] * len(given_seeds) + [by_id[i]["url"] for i in sorted(seed_ids)],
            },
            schema=pa.schema([("id", pa.string()), ("source", pa.string()), ("url", pa.string())]),
        ),
        staging / "seeds.parquet",
    )
    log.info("round %d: training on %d positives and %d negatives", n, len(positives), len(negatives))
    options = TrainingOptions(
        epoch=config.epoch, bucket=config.bucket, threads=config.threads, seed=config.seed
    )
    trained = train_math_classifier(positives, negatives, staging / "model.bin", options)
    fail_point(n, "trained")

    scores = score_pool(spark, out, staging / "model.bin", staging / "scores")
    fail_point(n, "scored")
    pages = [
        ScoredPage(p["id"], p["url"], p["domain"], p["n_chars"], scores.get(p["id"], 0.0), p["label"])
        for p in pool
    ]
    collected = collect(pages, config.min_score, config.token_budget)
    collected_ids = {p.id for p in collected}
    shares = domain_shares(pages, collected_ids)
    proposals = propose_prefixes(pages, collected_ids, shares, config.domain_share, config.prefix_depth)
    if config.accept == "auto":
        proposals = auto_accept(proposals, config.accept_share, config.min_prefix_pages)
    else:
        proposals = accept_listed(proposals, read_accept_file(config.accept))
    earlier_accepted = list(previous["accepted"]) if previous else []
    accepted = sorted(set(earlier_accepted) | {p.key for p in proposals if p.accepted})
    earlier_domains = set(previous["report"]["math_domains"]) if previous else set()
    math_domains = sorted(earlier_domains | {p.domain for p in proposals if p.accepted})
    write_table(
        pa.table(
            {
                "id": [p.id for p in collected],
                "url": [p.url for p in collected],
                "domain": [p.domain for p in collected],
                "score": [p.score for p in collected],
                "tokens": [approx_tokens(p.n_chars) for p in collected],
                "label": pa.array([p.label for p in collected], pa.bool_()),
                "new": [p.id not in prev_collected for p in collected],
            }
        ),
        staging / "collection.parquet",
    )
    report = {
        "round": n,
        "seconds": round(time.time() - started, 2),
        "model": {"version": trained.metadata["version"], "heldout": trained.metadata["heldout"]},
        "seeds": {"given": len(given_seeds), "prefix": len(seed_ids), "new_prefix": len(new_seed_ids)},
        "negatives": len(negatives),
        "pool_pages": len(pages),
        "collected_pages": len(collected),
        "collected_tokens": sum(approx_tokens(p.n_chars) for p in collected),
        "new_pages": sum(p.id not in prev_collected for p in collected),
        "overlap": overlap(collected_ids, set(previous["collected"]) if previous else None),
        "candidate_domains": [
            {"domain": s.domain, "pages": s.pages, "collected": s.collected, "share": round(s.share, 4)}
            for s in shares.values()
            if s.share > config.domain_share
        ],
        "proposals": [p.to_dict() for p in proposals],
        "new_prefixes": sorted(set(accepted) - set(earlier_accepted)),
        "accepted_prefixes": accepted,
        "new_domains": sorted(set(math_domains) - earlier_domains),
        "math_domains": math_domains,
        "labels": label_metrics(pages, collected_ids),
        "score_histogram": _histogram([p.score for p in pages]),
    }
    write_json(staging / "proposals.json", [p.to_dict() for p in proposals])
    (staging / "proposals.md").write_text(render_proposals(n, proposals), encoding="utf-8")
    _plot_histogram(pages, collected_ids, config.min_score, staging / "score_histogram.png", n)
    (staging / "report.md").write_text(render_round_markdown(report), encoding="utf-8")
    write_json(staging / "report.json", report)  # last: its presence marks a complete round
    return len(collected)


def _histogram(scores: list[float], bins: int = 10) -> list[list[float | int]]:
    counts = [0] * bins
    for s in scores:
        counts[min(bins - 1, int(s * bins))] += 1
    return [[round(b / bins, 2), c] for b, c in enumerate(counts)]


def _plot_histogram(
    pages: list[ScoredPage], collected: set[str], min_score: float, path: Path, n: int
) -> None:
    """Score histogram of the pool (PNG): by label when the pool is labelled, else collected vs not."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    bins = [i / 20 for i in range(21)]
    if any(p.label is not None for p in pages):
        groups = {
            "math (label)": [p.score for p in pages if p.label],
            "not math (label)": [p.score for p in pages if p.label is False],
            "unlabelled": [p.score for p in pages if p.label is None],
        }
    else:
        groups = {
            "collected": [p.score for p in pages if p.id in collected],
            "not collected": [p.score for p in pages if p.id not in collected],
        }
    ax.hist([v for v in groups.values()], bins=bins, stacked=True, label=list(groups))
    ax.axvline(min_score, color="black", linestyle="--", linewidth=1)
    ax.set(xlabel="math score", ylabel="pool pages", title=f"round {n}: scores of the pool", yscale="log")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def render_proposals(n: int, proposals: list) -> str:
    lines = [
        f"# Round {n}: proposed math URL prefixes",
        "",
        "Copy the keys you accept into the file given to `--accept` (one per line), then re-run.",
        "",
        "| key | pages | collected | share | domain share | accepted | sample URLs |",
        "| --- | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for p in proposals:
        lines.append(
            f"| `{p.key}` | {p.pages} | {p.collected} | {p.share:.2f} | {p.domain_share:.2f} | "
            f"{'yes' if p.accepted else 'no'} | {' '.join(p.sample_urls)} |"
        )
    return "\n".join(lines) + "\n"


def render_round_markdown(report: dict[str, Any]) -> str:
    ov = report["overlap"]
    lines = [
        f"# Round {report['round']}",
        "",
        f"- seeds: {report['seeds']['given']} given + {report['seeds']['prefix']} from accepted prefixes "
        f"({report['seeds']['new_prefix']} new); negatives: {report['negatives']}",
        f"- collected: {report['collected_pages']} of {report['pool_pages']} pool pages, "
        f"~{report['collected_tokens']} tokens; new this round: {report['new_pages']}",
        f"- overlap with the previous round: {'—' if ov is None else f'{ov:.3f}'}",
        f"- new math domains: {', '.join(report['new_domains']) or 'none'}",
        f"- new prefixes: {', '.join(report['new_prefixes']) or 'none'}",
    ]
    if report["labels"]:
        lab = report["labels"]
        lines.append(
            f"- against labels: recall {lab['recall']:.3f}, precision {lab['precision']:.3f} "
            f"({lab['true_positives']} math pages collected of {lab['math']}, {lab['false_positives']} not math)"
        )
    lines += ["", "![scores](score_histogram.png)", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------- the loop


def check_state(out: Path, config: IterateConfig) -> None:
    """Refuse to resume a loop whose settings differ; record them on the first run."""
    state_path = out / STATE_FILE
    settings = redact_record({k: getattr(config, k) for k in _FIXED_SETTINGS})  # no credentials written
    if state_path.is_file():
        recorded = json.loads(state_path.read_text(encoding="utf-8"))["settings"]
        changed = sorted(k for k in settings if recorded.get(k) != settings[k])
        if changed:
            raise ValueError(
                f"{out} holds a loop run with other settings ({', '.join(changed)}); use a new --output"
            )
        return
    out.mkdir(parents=True, exist_ok=True)
    write_json(state_path, {"settings": settings})


def iterate_corpus(spark, config: IterateConfig) -> dict[str, Any]:
    """Run (or resume) the loop; returns the summary also written to DIR/stats.json."""
    started = time.time()
    out = Path(config.output).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    lock = CorpusLock(out)  # `<DIR>.lock`: one loop at a time writes DIR (its rounds and its corpus)
    lock.acquire(new_run_id())
    try:
        return _iterate_locked(spark, config, out, started)
    finally:
        lock.release()


def _iterate_locked(spark, config: IterateConfig, out: Path, started: float) -> dict[str, Any]:
    check_state(out, config)
    ship_code(spark)
    build_pool(spark, config, out)
    pool = read_pool_pages(out)
    given = read_seed_texts(config.seeds)
    previous: dict | None = None
    reports = []
    for n in range(1, config.rounds + 1):
        if n not in committed_rounds(out):
            fail_point(n, "start")
            run_round(spark, config, out, n, pool, previous, given)
        previous = load_round(out, n)
        reports.append(previous["report"])
        ov = previous["report"]["overlap"]
        if ov is not None and ov >= config.converge_overlap:
            log.info("round %d overlaps the previous one by %.3f: converged", n, ov)
            break
    return write_final_corpus(spark, config, out, reports, time.time() - started)


def first_collections(out: Path, rounds: list[int]) -> dict[str, tuple[int, float]]:
    """id → (round that first collected it, its score there)."""
    first: dict[str, tuple[int, float]] = {}
    for n in rounds:
        table = pq.read_table(out / ROUNDS_DIR / str(n) / "collection.parquet", columns=["id", "score"])
        for i, s in zip(table.column("id").to_pylist(), table.column("score").to_pylist(), strict=True):
            first.setdefault(i, (n, s))
    return first


def write_final_corpus(spark, config: IterateConfig, out: Path, reports: list[dict], seconds: float) -> dict:
    """The last round's collection as a corpus (schema + first_round/first_score) in DIR/data, with
    manifest.json, stats.json and REPORT.md. `DIR/data` is a versioned corpus link (`StagedOutput`): the
    shards are fsynced, marked complete and swapped in with one rename, the previous data kept."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    last = reports[-1]["round"]
    final = load_round(out, last)["collected"]
    first = first_collections(out, [r["round"] for r in reports])
    rows = [(i, float(final[i]), first[i][0], float(first[i][1])) for i in sorted(final)]
    schema = T.StructType(
        [
            T.StructField("id", T.StringType()),
            T.StructField("final_score", T.DoubleType()),
            T.StructField("first_round", T.IntegerType()),
            T.StructField("first_score", T.DoubleType()),
        ]
    )
    chosen = spark.createDataFrame(rows, schema)
    pool = spark.read.parquet(str(out / POOL_DIR / DATA_DIR))
    df = (
        pool.join(F.broadcast(chosen), "id")
        .withColumn("math_score", F.col("final_score").cast("float"))
        .withColumn("is_math", F.lit(True))
        .withColumn("first_score", F.col("first_score").cast("float"))
        .select(*COLUMN_NAMES, *(name for name, _, _ in EXTRA_COLUMNS))
    )
    with StagedOutput(out / DATA_DIR, overwrite=True) as staging:  # DIR/data: a link swapped in one rename
        written = staging / ".spark-output"
        df.repartition(1).sortWithinPartitions("id").write.parquet(str(written))
        for shard in written.glob("part-*"):
            os.rename(shard, staging / shard.name)
        shutil.rmtree(written)
    per_round = [
        {
            k: r[k]
            for k in (
                "round",
                "collected_pages",
                "collected_tokens",
                "new_pages",
                "overlap",
                "new_domains",
                "new_prefixes",
                "labels",
            )
        }
        for r in reports
    ]
    converged = reports[-1]["overlap"] is not None and reports[-1]["overlap"] >= config.converge_overlap
    stats = {
        "rounds": per_round,
        "rounds_run": len(reports),
        "converged": converged,
        "documents": len(rows),
        "math_domains": reports[-1]["math_domains"],
        "accepted_prefixes": reports[-1]["accepted_prefixes"],
        "seconds": round(seconds, 2),
    }
    manifest = {
        "config": redact_record(dataclasses.asdict(config)),
        "versions": package_versions(),
        "spark": {"master": spark.sparkContext.master, "version": spark.version},
        "pool": str(out / POOL_DIR),
        "math_scorer": {
            "name": "fasttext",
            "version": reports[-1]["model"]["version"],
            "model": str(out / ROUNDS_DIR / str(last) / "model.bin"),
        },
        "schema": [{"name": n, "type": t, "description": d} for n, t, d in (*CORPUS_COLUMNS, *EXTRA_COLUMNS)],
        "counts": {"documents": len(rows)},
    }
    write_json(out / "stats.json", stats)
    (out / "REPORT.md").write_text(render_loop_markdown(stats), encoding="utf-8")
    write_json(out / "manifest.json", manifest)
    return stats


def render_loop_markdown(stats: dict[str, Any]) -> str:
    lines = [
        "# corpus iterate",
        "",
        f"- rounds run: {stats['rounds_run']}; converged: {'yes' if stats['converged'] else 'no'}",
        f"- documents in the final corpus: {stats['documents']}",
        f"- math domains discovered: {', '.join(stats['math_domains']) or 'none'}",
        "",
        "| round | pages | tokens | new | overlap | recall | precision | new domains |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in stats["rounds"]:
        lab = r["labels"] or {}
        ov = "—" if r["overlap"] is None else f"{r['overlap']:.3f}"
        lines.append(
            f"| {r['round']} | {r['collected_pages']} | {r['collected_tokens']} | {r['new_pages']} | {ov} | "
            f"{lab.get('recall', '—')} | {lab.get('precision', '—')} | {', '.join(r['new_domains']) or '—'} |"
        )
    lines += ["", "Per round: `rounds/<n>/report.md`, `proposals.md`, `score_histogram.png`.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    from jobs.spark import job_main

    job_main(
        argv,
        prog="iterate_corpus.py",
        doc=__doc__,
        config_cls=IterateConfig,
        job=iterate_corpus,
        render=render_loop_markdown,
    )


if __name__ == "__main__":
    main()
