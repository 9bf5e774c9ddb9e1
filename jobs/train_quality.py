"""`mathforge classifier train-quality`: the math-educational quality model from `classifier annotate`'s rows.

No Spark: annotations are a sample (thousands to a million rows), read with pyarrow on one machine. Rows whose
answer was unparseable are left out (they have no score). The held-out split is a stable hash of the id, so a
page stays on its side when annotations are added and the model retrained. The default model is fastText over
the six score buckets (`classifiers.quality`); `--encoder DIR` trains FineMath's frozen encoder + regression head
instead (`classifiers.quality_encoder`).

The report (`<model>.report.json` and `.report.md`) measures the model and, beside it, the DeepSeekMath relevance
score (`math_score`, stored with each annotation) against the same held-out annotations: Spearman, precision /
recall / F1 at the `--threshold` (FineMath's 3+), exact agreement and the 6 x 6 confusion matrix
(`classifiers.quality_metrics`; the relevance score is put on the 0-5 scale by rank for the last three).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

from classifiers.quality import QualityFastTextOptions, quality_scorer_for, train_fasttext_quality
from classifiers.quality_metrics import agreement, labels_by_rank, to_label
from crawl.redact import redact_record
from jobs.annotate_quality import ANNOTATIONS_DIR, read_annotations
from jobs.config import QualityTrainConfig

log = logging.getLogger("mathforge.train_quality")

MIN_ANNOTATIONS = 10


def is_heldout(doc_id: str, fraction: float, seed: int) -> bool:
    """Whether a page is held out: a stable hash of its id below `fraction`."""
    digest = hashlib.sha1(f"quality-split:{seed}:{doc_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def load_scored(config: QualityTrainConfig) -> tuple[dict[str, list], str]:
    """The parsed annotations (one prompt version) as columns, and that version."""
    root = Path(config.annotations)
    folder = root / ANNOTATIONS_DIR if (root / ANNOTATIONS_DIR).is_dir() else root
    columns = ["id", "text", "score", "math_score", "status"]
    versions = Counter(read_annotations(folder, ["prompt_version"])["prompt_version"].to_pylist())
    if not versions:
        raise FileNotFoundError(f"no annotations in {folder} (run `mathforge classifier annotate` first)")
    version = config.prompt_version
    if version is None:
        if len(versions) > 1:
            raise ValueError(
                f"{folder} holds several prompt versions {dict(versions)}: choose --prompt-version"
            )
        (version,) = versions
    elif version not in versions:
        raise ValueError(f"no annotations of prompt version {version!r} in {folder} (found {dict(versions)})")
    table = read_annotations(folder, columns, version).to_pydict()
    keep = [i for i, status in enumerate(table["status"]) if status == "ok"]
    rows = {c: [table[c][i] for i in keep] for c in columns}
    log.info(
        "%d annotations of %s (%d unparseable left out)", len(keep), version, len(table["id"]) - len(keep)
    )
    return rows, version


def train_quality(config: QualityTrainConfig) -> dict[str, Any]:
    """Train, score the held-out pages, write the report; returns it."""
    rows, version = load_scored(config)
    held = [is_heldout(i, config.heldout_fraction, config.seed) for i in rows["id"]]
    train = [i for i, h in enumerate(held) if not h]
    test = [i for i, h in enumerate(held) if h]
    if len(train) < MIN_ANNOTATIONS or not test:
        raise ValueError(
            f"{len(train)} training and {len(test)} held-out annotations: need at least {MIN_ANNOTATIONS} and 1"
        )
    texts, scores = [rows["text"][i] or "" for i in train], [rows["score"][i] for i in train]
    extra = {"prompt_version": version, "heldout_fraction": config.heldout_fraction}
    if config.encoder:
        from classifiers.quality_encoder import EncoderOptions, train_encoder_quality

        options = EncoderOptions(
            max_tokens=config.encoder_max_tokens,
            epochs=config.encoder_epochs,
            lr=config.encoder_lr,
            seed=config.seed,
        )
        metadata = train_encoder_quality(texts, scores, config.encoder, config.output, options, extra)
    else:
        options = QualityFastTextOptions(
            dim=config.dim,
            lr=config.lr,
            word_ngrams=config.word_ngrams,
            epoch=config.epoch,
            bucket=config.bucket,
            threads=config.threads,
            seed=config.seed,
        )
        metadata = train_fasttext_quality(texts, scores, config.output, options, extra)
    scorer = quality_scorer_for(config.output)
    truth = [int(rows["score"][i]) for i in test]
    predicted = scorer.score_batch([rows["text"][i] or "" for i in test])
    relevance = [float(rows["math_score"][i] or 0.0) for i in test]
    report = {
        "model": str(config.output),
        "kind": metadata["kind"],
        "version": metadata["version"],
        "prompt_version": version,
        "counts": {"train": len(train), "heldout": len(test)},
        "heldout_labels": [truth.count(k) for k in range(6)],
        "quality_model": agreement(truth, predicted, [to_label(p) for p in predicted], config.threshold),
        "relevance_score": agreement(truth, relevance, labels_by_rank(relevance, scores), config.threshold),
        "config": redact_record(asdict(config)),
    }
    out = Path(config.output)
    out.with_suffix(".report.json").write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".report.md").write_text(render_report(report, config.threshold))
    return report


def render_report(report: dict[str, Any], threshold: int) -> str:
    """report.md: the two scorers side by side, then each confusion matrix."""
    q, r = report["quality_model"], report["relevance_score"]
    f1 = f"f1_at_{threshold}"

    def fmt(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    lines = [
        f"# Quality model {report['version']} ({report['kind']})",
        "",
        f"Annotations: prompt `{report['prompt_version']}`; {report['counts']['train']} training, "
        f"{report['counts']['heldout']} held out (labels 0-5: {report['heldout_labels']}).",
        "",
        "| held-out agreement | quality model | DeepSeekMath relevance (math_score) |",
        "| --- | --- | --- |",
        f"| Spearman | {fmt(q['spearman'])} | {fmt(r['spearman'])} |",
        f"| precision at {threshold}+ | {fmt(q[f1]['precision'])} | {fmt(r[f1]['precision'])} |",
        f"| recall at {threshold}+ | {fmt(q[f1]['recall'])} | {fmt(r[f1]['recall'])} |",
        f"| F1 at {threshold}+ | {fmt(q[f1]['f1'])} | {fmt(r[f1]['f1'])} |",
        f"| exact label | {fmt(q['exact'])} | {fmt(r['exact'])} |",
        "",
        "The relevance score is mapped to 0-5 by rank (the training annotations' label histogram) for the rows "
        "below Spearman; Spearman itself uses the raw scores.",
    ]
    for title, part in (("quality model", q), ("relevance score", r)):
        lines += ["", f"## Confusion matrix, {title} (rows: annotated, columns: predicted)", "",
                  "| | " + " | ".join(map(str, range(6))) + " |", "| --- " * 7 + "|"]  # fmt: skip
        lines += [
            f"| **{k}** | " + " | ".join(map(str, row)) + " |" for k, row in enumerate(part["confusion"])
        ]
    return "\n".join(lines) + "\n"
