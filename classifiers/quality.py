"""The math-educational quality model: fastText over the six score buckets, its scorer, its versioned files.

FineMath scores a crawl with a frozen encoder and a regression head; a whole Common Crawl on CPU in Spark wants
something a hundred times cheaper, so the default here is fastText trained as a classifier over the labels
`__label__0` .. `__label__5` (annotations rounded), and the score of a page is the expected value of the
predicted label distribution (all six probabilities, k = -1): a real number in [0, 5] that ranks pages, not
just a bucket. The text is normalised as the math classifier's (`normalize_for_classifier`).

The artefact is the math classifier's shape: `<out>.bin` plus a JSON sidecar `<out>.json` (format, version,
prompt version of the annotations, params, counts); `FastTextQualityScorer` loads lazily and pickles as its
path, so a Spark executor loads the model once per worker. `quality_scorer_for` opens any quality model
(fastText or the encoder model of `classifiers.quality_encoder`) from its sidecar, and `cached_quality_scorer`
keeps one per process.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import os
import random
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from classifiers.fasttext_model import LazyFastText, check_fasttext_file, read_sidecar, sidecar_path_for
from classifiers.math_classifier import (
    TrainingOptions,
    _train_isolated,  # fresh-process training with NaN retries, shared with the math classifier
    normalize_for_classifier,
)
from classifiers.quality_metrics import N_LABELS

FORMAT = "mathforge-quality-classifier"
FORMAT_VERSION = 1
LABEL_PREFIX = "__label__"


class QualityScorer(Protocol):
    """Rates a page's math-educational value on FineMath's 0-5 scale; what the corpus job calls per page."""

    name: str
    version: str

    def score(self, text: str) -> float: ...

    def score_batch(self, texts: Sequence[str]) -> list[float]: ...


@dataclass(frozen=True)
class QualityFastTextOptions:
    """fastText settings of the quality model (small: six labels, a few hundred thousand annotations)."""

    dim: int = 64
    lr: float = 0.5
    word_ngrams: int = 2
    min_count: int = 2
    epoch: int = 10
    bucket: int = 200_000
    threads: int = 2
    seed: int = 0
    max_chars: int = 20_000


def label_of(score: float) -> str:
    """The fastText label of an annotated score (rounded half up, clipped to 0-5)."""
    return f"{LABEL_PREFIX}{int(min(max(score, 0), N_LABELS - 1) + 0.5)}"


def expected_scores(model: Any, lines: Sequence[str]) -> list[float]:
    """E[label] under fastText's predicted distribution over all its labels, per normalised line."""
    if not lines:
        return []
    labels, probs = model.predict(list(lines), k=-1)
    out = []
    for labs, ps in zip(labels, probs, strict=True):
        total = float(sum(ps)) or 1.0
        value = sum(int(lab[len(LABEL_PREFIX) :]) * float(p) for lab, p in zip(labs, ps, strict=True)) / total
        out.append(min(max(value, 0.0), float(N_LABELS - 1)))
    return out


def write_sidecar(model_path: Path, metadata: dict) -> Path:
    """`<model>.json`, written atomically (the pair is the versioned artefact)."""
    sidecar = sidecar_path_for(model_path)
    tmp = sidecar.with_name(sidecar.name + ".tmp")
    tmp.write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, sidecar)
    return sidecar


def model_version(path: Path) -> tuple[str, str, str]:
    """(version, sha256, created) of a freshly written model file."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    created = dt.datetime.now(dt.UTC)
    return f"{created:%Y%m%d%H%M%S}-{digest[:8]}", digest, created.isoformat(timespec="seconds")


def train_fasttext_quality(
    texts: Sequence[str],
    scores: Sequence[float],
    out_path: str | os.PathLike[str],
    options: QualityFastTextOptions | None = None,
    extra: dict | None = None,
) -> dict:
    """Train on (text, 0-5 score) pairs, write `<out>` and its sidecar; returns the sidecar's metadata."""
    options = options or QualityFastTextOptions()
    rows = [
        (label_of(s), normalize_for_classifier(t, options.max_chars))
        for t, s in zip(texts, scores, strict=True)
    ]
    rows = [(label, line) for label, line in rows if line]
    if len({label for label, _ in rows}) < 2:
        raise ValueError(
            f"need annotations of at least two different scores, got {len(rows)} non-empty texts"
        )
    random.Random(options.seed).shuffle(rows)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    params = {"dim": options.dim, "lr": options.lr, "wordNgrams": options.word_ngrams,
              "minCount": options.min_count, "epoch": options.epoch, "bucket": options.bucket}  # fmt: skip
    tmp_model = out.with_name(out.name + ".tmp")
    with tempfile.TemporaryDirectory(prefix="mathforge-quality-") as tmp:
        train_file = Path(tmp) / "train.txt"
        train_file.write_text("".join(f"{label} {line}\n" for label, line in rows), encoding="utf-8")
        attempts = _train_isolated(
            train_file, tmp_model, TrainingOptions(threads=options.threads, seed=options.seed), params
        )
    version, digest, created = model_version(tmp_model)
    os.replace(tmp_model, out)
    histogram = [sum(1 for label, _ in rows if label == f"{LABEL_PREFIX}{i}") for i in range(N_LABELS)]
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": "fasttext",
        "version": version,
        "created": created,
        "sha256": digest,
        "max_chars": options.max_chars,
        "params": params,
        "seed": options.seed,
        "training_attempts": attempts,
        "counts": {"train": len(rows), "train_labels": histogram},
        **(extra or {}),
    }
    write_sidecar(out, metadata)
    return metadata


def read_quality_metadata(model_path: str | os.PathLike[str]) -> dict:
    """The sidecar of a quality model, checked to be ours and of a format this code reads."""
    return read_sidecar(
        model_path, FORMAT, FORMAT_VERSION, "quality model", "train with classifier train-quality"
    )


class FastTextQualityScorer:
    """`QualityScorer` over a trained fastText quality model; lazy, and pickles as its path (Spark executors)."""

    name = "fasttext-quality"

    def __init__(self, model_path: str | os.PathLike[str]):
        self.model_path = str(model_path)
        self.metadata = read_quality_metadata(self.model_path)
        if self.metadata.get("kind") != "fasttext":
            raise ValueError(f"{model_path} is a {self.metadata.get('kind')} quality model, not fastText")
        check_fasttext_file(self.model_path, "quality model")
        self.version: str = self.metadata["version"]
        self.max_chars = int(self.metadata.get("max_chars", 20_000))
        self._model = LazyFastText(self.model_path)

    def __getstate__(self) -> dict:
        return {"model_path": self.model_path}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["model_path"])

    def score(self, text: str) -> float:
        """Expected 0-5 score of one text."""
        return self.score_batch([text])[0]

    def score_batch(self, texts: Iterable[str]) -> list[float]:
        """Expected 0-5 scores, in order; an empty text scores 0."""
        lines = [normalize_for_classifier(t or "", self.max_chars) for t in texts]
        nonempty = [i for i, line in enumerate(lines) if line]
        values = expected_scores(self._model.get(), [lines[i] for i in nonempty])
        scores = [0.0] * len(lines)
        for i, value in zip(nonempty, values, strict=True):
            scores[i] = value
        return scores


def quality_scorer_for(model_path: str | os.PathLike[str]) -> QualityScorer:
    """The scorer of a quality model file, whichever kind its sidecar says it is."""
    kind = read_quality_metadata(model_path).get("kind")
    if kind == "fasttext":
        return FastTextQualityScorer(model_path)
    if kind == "encoder":
        from classifiers.quality_encoder import EncoderQualityScorer

        return EncoderQualityScorer(model_path)
    raise ValueError(f"{model_path}: unknown quality model kind {kind!r}")


@functools.lru_cache(maxsize=4)
def cached_quality_scorer(model_path: str, version: str) -> QualityScorer:
    """One scorer per (model, version) per process: what a Spark executor calls, so a Python worker loads the
    model once however many tasks it runs (the version in the key: a retrained file is not served stale)."""
    scorer = quality_scorer_for(model_path)
    if scorer.version != version:
        raise ValueError(f"{model_path} is version {scorer.version}, the job was started with {version}")
    return scorer
