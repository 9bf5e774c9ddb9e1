"""Spark job: train the fastText math classifier (DeepSeekMath's settings) from a crawl.

    spark-submit jobs/train_math_classifier.py --input warc.paths.gz --output models/math.bin [--positives seeds.parquet]
    mathforge classifier train --input DIR --output models/math.bin

Positives are the user's seed texts (Parquet with a `text` column, or JSONL with a `text` field) or, without
seeds, pages bootstrapped from high-precision markup (several real TeX/MathML formulas after math-aware
extraction). Negatives are pages of the crawl with no formula and almost no math vocabulary. Pages are read
and labelled in parallel, one task per WARC file; the sampled texts stream to the driver, which trains the
single-machine fastText model and writes it with its JSON sidecar (version, params, held-out metrics).
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

from classifiers.math_classifier import TrainingOptions, train_math_classifier
from crawl.redact import redact_record
from jobs.classifier_seeds import SeedSampler, read_seed_texts, stable_fraction
from jobs.config import ClassifierTrainConfig
from jobs.spark import CounterParam, job_main, ship_code

log = logging.getLogger("mathforge.train_math_classifier")


def sample_partition(paths: Iterable[str], sampler: SeedSampler, counters_acc) -> Iterator[tuple[str, str]]:
    for path in paths:
        counters: Counter = Counter()
        try:
            yield from sampler.labelled_texts(path, counters)
        finally:
            counters_acc.add(dict(counters))


def train_classifier(spark, config: ClassifierTrainConfig) -> dict[str, Any]:
    inputs = config.warc_locations()
    user_positives = read_seed_texts(config.positives) if config.positives else None
    sampler = SeedSampler(
        want_positives=user_positives is None, negative_fraction=config.negative_fraction, seed=config.seed
    )
    sc = spark.sparkContext
    ship_code(spark)
    counters_acc = sc.accumulator({}, CounterParam())
    rdd = sc.parallelize(inputs, max(1, len(inputs))).mapPartitions(
        lambda paths: sample_partition(paths, sampler, counters_acc)
    )
    positives: list[str] = list(user_positives or [])[: config.max_per_class]
    negatives: list[str] = []
    # Stream to the driver in a stable order (by a hash of the text) so the sample does not depend on timing.
    for label, text in sorted(rdd.toLocalIterator(), key=lambda lt: (lt[0], stable_fraction(lt[1]))):
        if label == "math" and user_positives is None and len(positives) < config.max_per_class:
            positives.append(text)
        elif label == "other" and len(negatives) < config.max_per_class:
            negatives.append(text)
    log.info("training on %d positives and %d negatives", len(positives), len(negatives))
    options = TrainingOptions(
        epoch=config.epoch, bucket=config.bucket, threads=config.threads, seed=config.seed
    )
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
