"""Spark job: train the fastText math classifier (DeepSeekMath's settings) from a crawl.

    spark-submit jobs/train_math_classifier.py --input warc.paths.gz --output models/math.bin [--positives seeds.parquet]
    mathforge classifier train --input DIR --output models/math.bin

Positives are the user's seed texts (Parquet with a `text` column, or JSONL with a `text` field) or, without
seeds, pages bootstrapped from high-precision markup (several real TeX/MathML formulas after math-aware
extraction). Negatives are pages of the crawl with no formula and almost no math vocabulary. Pages are read
and labelled in parallel, one task per WARC file, and kept by the executors (memory, spilling to disk); each
class's training sample is drawn there (`jobs.driver_sample`: the `--max-per-class` texts first in a stable
hash order, each cut to the classifier's 20,000 characters), so the driver receives at most that many texts
per class however large the crawl. It trains the single-machine fastText model and writes it with its JSON
sidecar (version, params, held-out metrics). At crawl scale, `--negative-fraction` thins what the executors
keep.
"""

from __future__ import annotations

if __name__ == "__main__" and __package__ in (None, ""):  # run as a script by spark-submit
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import json
import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pyspark.sql import functions as F

from classifiers.math_classifier import TrainingOptions, train_math_classifier
from crawl.redact import redact_record
from jobs.classifier_seeds import SeedSampler, read_seed_texts, stable_fraction
from jobs.config import ClassifierTrainConfig
from jobs.driver_sample import take_first
from jobs.spark import CounterParam, job_main, ship_code

log = logging.getLogger("mathforge.train_math_classifier")


LABELLED_SCHEMA = "label string, fraction double, file int, ordinal int, text string"
ORDER = ("fraction", "file", "ordinal")  # a stable hash of the text, then where the page was: unique


def sample_partition(
    files: Iterable[tuple[int, str]], sampler: SeedSampler, counters_acc, max_chars: int
) -> Iterator[tuple[str, float, int, int, str]]:
    """(label, stable hash of the text, file number, page number, text cut to `max_chars`) per labelled
    page of the task's WARC files; the counters go to the accumulator once per file."""
    for number, path in files:
        counters: Counter = Counter()
        try:
            for ordinal, (label, text) in enumerate(sampler.labelled_texts(path, counters)):
                yield label, stable_fraction(text, sampler.seed), number, ordinal, text[:max_chars]
        finally:
            counters_acc.add(dict(counters))


def train_classifier(spark, config: ClassifierTrainConfig) -> dict[str, Any]:
    from pyspark import StorageLevel

    inputs = config.warc_locations()
    user_positives = read_seed_texts(config.positives) if config.positives else None
    sampler = SeedSampler(
        want_positives=user_positives is None, negative_fraction=config.negative_fraction, seed=config.seed
    )
    options = TrainingOptions(
        epoch=config.epoch, bucket=config.bucket, threads=config.threads, seed=config.seed
    )
    sc = spark.sparkContext
    ship_code(spark)
    counters_acc = sc.accumulator({}, CounterParam())
    max_chars = options.max_chars  # training reads no further into a text
    rdd = sc.parallelize(list(enumerate(inputs)), max(1, len(inputs))).mapPartitions(
        lambda files: sample_partition(files, sampler, counters_acc, max_chars)
    )
    labelled = spark.createDataFrame(rdd, LABELLED_SCHEMA).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        if user_positives is None:
            math = take_first(labelled.where(F.col("label") == "math"), ORDER, config.max_per_class, ["text"])
            positives = [r.text for r in math]
        else:
            positives = list(user_positives)[: config.max_per_class]
        other = take_first(labelled.where(F.col("label") == "other"), ORDER, config.max_per_class, ["text"])
        negatives = [r.text for r in other]
    finally:
        labelled.unpersist()
    log.info("training on %d positives and %d negatives", len(positives), len(negatives))
    result = train_math_classifier(positives, negatives, config.output, options)
    report = {
        "model": str(result.model_path),
        "sidecar": str(result.sidecar_path),
        "seed_source": "user" if user_positives is not None else "bootstrap",
        "counters": dict(sorted(counters_acc.value.items())),
        "config": redact_record(asdict(config)),  # no credentials in the report
        **{k: result.metadata[k] for k in ("version", "counts", "heldout", "params")},
    }
    Path(result.model_path).with_suffix(".report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def main(argv: list[str] | None = None) -> None:
    job_main(
        argv,
        prog="train_math_classifier.py",
        doc=__doc__,
        config_cls=ClassifierTrainConfig,
        job=train_classifier,
        render=lambda report: json.dumps(report, indent=2),
    )


if __name__ == "__main__":
    main()
