"""The fastText math classifier: DeepSeekMath's recipe, trained here, shipped as a versioned model file.

DeepSeekMath trains a fastText supervised model on normalised page text (dim 256, lr 0.1, wordNgrams 3,
minCount 3, 3 epochs) from a positive seed set and negatives sampled from the crawl. We keep those
settings (`TrainingOptions` defaults) and add what a pipeline needs around them:

* `normalize_for_classifier`: one line, lower-cased, TeX and punctuation split into tokens, CJK split
  into characters (fastText only splits on whitespace), digits folded, cut to a prefix;
* `train_math_classifier(positives, negatives, out_path)`: plain Python iterables in, so the Spark job
  can call it on collected samples; it writes its own train/held-out files in a temp dir, trains, measures
  held-out precision/recall and saves `<out>.bin` plus a JSON sidecar `<out>.json` (version, params,
  counts, held-out metrics) — the pair is the versioned artefact `corpus build --math-model` takes;
* `FastTextMathScorer`: the `MathScorer` over such a file (lazy, picklable for Spark executors);
* `bootstrap_seed_labels`: high-precision seeds from texts whose formulas came from real TeX/MathML
  markup, and clean negatives, for when the user gives no seed set.

fastText's single-string `predict` breaks under NumPy 2; only the batch (list) form is used here.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import random
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from classifiers.fasttext_model import LazyFastText, check_fasttext_file, read_sidecar, sidecar_path_for
from classifiers.math_score import RuleMathScorer
from classifiers.metrics import precision_recall

log = logging.getLogger(__name__)

FORMAT = "mathforge-math-classifier"
FORMAT_VERSION = 1
NORMALIZATION_VERSION = 1
MATH_LABEL = "__label__math"
OTHER_LABEL = "__label__other"

_WS_RE = re.compile(r"\s+")
_TEX_COMMAND_RE = re.compile(r"(\\[A-Za-z]+)")
_PUNCT_RE = re.compile(r"([$^_{}()\[\]=+\-*/<>|,.;:!?\"'`~&%#@])")
_CJK_RE = re.compile(r"([\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff])")
_DIGITS_RE = re.compile(r"\d")
_FORMULA_RE = re.compile(r"\$\$(.+?)\$\$|(?<![\\$])\$(?!\$)([^$\n]+?)(?<!\\)\$", re.DOTALL)
_TEX_SYNTAX_RE = re.compile(r"\\[A-Za-z]+|[\^_]\{?[\w\\]")


def normalize_for_classifier(text: str, max_chars: int = 20_000) -> str:
    """One lower-cased line of tokens: TeX commands and punctuation separated, CJK per character, digits as 0."""
    text = text[:max_chars].lower()
    text = _TEX_COMMAND_RE.sub(r" \1 ", text)
    text = _PUNCT_RE.sub(r" \1 ", text)
    text = _CJK_RE.sub(r" \1 ", text)
    text = _DIGITS_RE.sub("0", text)
    return _WS_RE.sub(" ", text).strip()


@dataclass(frozen=True)
class TrainingResult:
    """Where the model went and what its sidecar says."""

    model_path: Path
    sidecar_path: Path
    metadata: dict


@dataclass(frozen=True)
class TrainingOptions:
    """fastText settings and the held-out split; the defaults of the first five are DeepSeekMath's."""

    dim: int = 256
    lr: float = 0.1
    word_ngrams: int = 3
    min_count: int = 3
    epoch: int = 3
    bucket: int = field(
        default=200_000, metadata={"help": "hash buckets for n-grams (model size: bucket x dim floats)"}
    )
    heldout_fraction: float = 0.1
    threshold: float = 0.5
    threads: int = 1
    seed: int = 0
    max_chars: int = 20_000
    # fastText takes one gradient step per line: whole pages give a few hundred steps on a small crawl,
    # so training lines are chunks of this many tokens (scoring still sees the whole normalised text).
    chunk_tokens: int = 64


def _write_split(rows: Sequence[tuple[str, str]], path: Path) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for label, text in rows:
            fh.write(f"{label} {text}\n")


def _chunks(line: str, size: int) -> list[str]:
    tokens = line.split(" ")
    return [" ".join(tokens[i : i + size]) for i in range(0, len(tokens), size)] if size > 0 else [line]


def _stratified_split(
    rows: list[tuple[str, str]], fraction: float
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(held-out, train): the same fraction of each class held out, none for a class with < 10 texts."""
    heldout: list[tuple[str, str]] = []
    train: list[tuple[str, str]] = []
    for label in (MATH_LABEL, OTHER_LABEL):
        items = [r for r in rows if r[0] == label]
        n = int(len(items) * fraction) if len(items) >= 10 else 0
        heldout += items[:n]
        train += items[n:]
    return heldout, train


def _balanced(lines: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Repeat the minority class's lines until both classes weigh about the same (DeepSeekMath seeds 1:1)."""
    pos = [x for x in lines if x[0] == MATH_LABEL]
    neg = [x for x in lines if x[0] == OTHER_LABEL]
    small, large = (pos, neg) if len(pos) < len(neg) else (neg, pos)
    if not small:
        return lines
    repeats = max(1, round(len(large) / len(small)))
    return large + small * repeats


def _binary_metrics(
    labels: Sequence[bool], scores: Sequence[float], threshold: float
) -> dict[str, float | int]:
    precision, recall = precision_recall(list(labels), [score >= threshold for score in scores])
    return {
        "n": len(labels),
        "positives": sum(labels),
        "precision": precision,
        "recall": recall,
        "threshold": threshold,
    }


def _math_probabilities(model, lines: Sequence[str]) -> list[float]:
    """P(math) per normalised line, from fastText's batch predict (k=2 gives both labels)."""
    if not lines:
        return []
    labels, probs = model.predict(list(lines), k=2)
    out = []
    for labs, ps in zip(labels, probs, strict=True):
        p = dict(zip(labs, (float(x) for x in ps), strict=True))
        if MATH_LABEL in p:
            out.append(min(max(p[MATH_LABEL], 0.0), 1.0))
        else:
            out.append(min(max(1.0 - p.get(OTHER_LABEL, 1.0), 0.0), 1.0))
    return out


def train_math_classifier(
    positives: Iterable[str],
    negatives: Iterable[str],
    out_path: str | os.PathLike[str],
    options: TrainingOptions | None = None,
) -> TrainingResult:
    """Train on math/other texts, evaluate on a held-out split, write `<out>.bin` and its JSON sidecar."""
    options = options or TrainingOptions()
    rows = [(MATH_LABEL, normalize_for_classifier(t, options.max_chars)) for t in positives]
    n_pos = len(rows)
    rows += [(OTHER_LABEL, normalize_for_classifier(t, options.max_chars)) for t in negatives]
    rows = [(label, text) for label, text in rows if text]
    n_pos_kept = sum(1 for label, _ in rows if label == MATH_LABEL)
    n_neg_kept = len(rows) - n_pos_kept
    if n_pos_kept == 0 or n_neg_kept == 0:
        raise ValueError(f"need texts of both classes, got {n_pos_kept} positives and {n_neg_kept} negatives")
    rng = random.Random(options.seed)
    rng.shuffle(rows)
    heldout, train = _stratified_split(rows, options.heldout_fraction)

    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    params = {
        "dim": options.dim,
        "lr": options.lr,
        "wordNgrams": options.word_ngrams,
        "minCount": options.min_count,
        "epoch": options.epoch,
        "bucket": options.bucket,
    }
    train_lines = _balanced(
        [(label, chunk) for label, text in train for chunk in _chunks(text, options.chunk_tokens)]
    )
    rng.shuffle(train_lines)
    import fasttext

    # Save under a temporary name and rename, so a half-written model never looks like a finished one.
    tmp_model = out.with_name(out.name + ".tmp")
    with tempfile.TemporaryDirectory(prefix="mathforge-ft-") as tmp:
        train_file = Path(tmp) / "train.txt"
        _write_split(train_lines, train_file)
        attempts = _train_isolated(train_file, tmp_model, options, params)
    model = fasttext.load_model(str(tmp_model))
    metrics = None
    if heldout:
        scores = _math_probabilities(model, [text for _, text in heldout])
        metrics = _binary_metrics([label == MATH_LABEL for label, _ in heldout], scores, options.threshold)

    digest = hashlib.sha256(tmp_model.read_bytes()).hexdigest()
    created = dt.datetime.now(dt.UTC)
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "version": f"{created:%Y%m%d%H%M%S}-{digest[:8]}",
        "created": created.isoformat(timespec="seconds"),
        "sha256": digest,
        "normalization_version": NORMALIZATION_VERSION,
        "max_chars": options.max_chars,
        "params": params,
        "training_attempts": attempts,
        "seed": options.seed,
        "counts": {
            "positives_given": n_pos,
            "positives": n_pos_kept,
            "negatives": n_neg_kept,
            "train": len(train),
            "train_lines": len(train_lines),
            "heldout": len(heldout),
        },
        "heldout": metrics,
        "labels": {"math": MATH_LABEL, "other": OTHER_LABEL},
    }
    os.replace(tmp_model, out)
    sidecar = sidecar_path_for(out)
    tmp_sidecar = sidecar.with_name(sidecar.name + ".tmp")
    tmp_sidecar.write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp_sidecar, sidecar)
    return TrainingResult(model_path=out, sidecar_path=sidecar, metadata=metadata)


_MAX_TRAIN_ATTEMPTS = 4
# The child only needs fastText: a `python -c` program, so no caller module is re-imported (as
# multiprocessing's spawn would do with an unguarded script or a Spark job's main file).
_TRAIN_PROGRAM = """
import json, sys
import fasttext
spec = json.loads(sys.argv[1])
model = fasttext.train_supervised(input=spec["input"], verbose=0, **spec["args"])
model.save_model(spec["output"])
"""


def _train_isolated(train_file: Path, model_file: Path, options: TrainingOptions, params: dict) -> int:
    """Train in a fresh interpreter, retrying there if fastText reports NaN; returns the attempts used.

    With the installed fastText build, training identical data with identical seeds sometimes aborts
    with "Encountered NaN", more often the more work the process has done before (several trainings in
    a row, or after extracting hundreds of pages) and independently of the learning rate. A fresh
    process per attempt makes training reliable and keeps the caller's process (a Spark driver) clean.
    """
    spec = {
        "input": str(train_file),
        "output": str(model_file),
        "args": {**params, "thread": options.threads, "seed": options.seed},
    }
    for attempt in range(1, _MAX_TRAIN_ATTEMPTS + 1):
        proc = subprocess.run(
            [sys.executable, "-c", _TRAIN_PROGRAM, json.dumps(spec)],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode == 0:
            return attempt
        if "NaN" not in proc.stderr or attempt == _MAX_TRAIN_ATTEMPTS:
            raise RuntimeError(f"fastText training failed: {proc.stderr.strip()[-2000:]}")
        log.warning("fastText training hit NaN (attempt %d); retrying in a fresh process", attempt)
    raise AssertionError("unreachable")


def read_model_metadata(model_path: str | os.PathLike[str]) -> dict:
    """The sidecar of a trained model, checked to be ours and of a format this code reads."""
    return read_sidecar(model_path, FORMAT, FORMAT_VERSION, "math model", "train with train_math_classifier")


class FastTextMathScorer:
    """`MathScorer` over a trained model file; loads lazily and pickles as its path (for Spark executors)."""

    name = "fasttext"

    def __init__(self, model_path: str | os.PathLike[str]):
        self.model_path = str(model_path)
        self.metadata = read_model_metadata(self.model_path)
        check_fasttext_file(self.model_path, "math model")
        self.version: str = self.metadata["version"]
        self.max_chars: int = int(self.metadata.get("max_chars", 20_000))
        self._model = LazyFastText(self.model_path)

    def __getstate__(self) -> dict:
        return {"model_path": self.model_path}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["model_path"])

    @property
    def model(self):
        return self._model.get()

    def score(self, text: str) -> float:
        """P(math) for one text."""
        return self.score_batch([text])[0]

    def score_batch(self, texts: Iterable[str]) -> list[float]:
        """P(math) for many texts, in order; empty texts score 0."""
        lines = [normalize_for_classifier(t or "", self.max_chars) for t in texts]
        nonempty = [i for i, line in enumerate(lines) if line]
        probs = _math_probabilities(self.model, [lines[i] for i in nonempty])
        scores = [0.0] * len(lines)
        for i, p in zip(nonempty, probs, strict=True):
            scores[i] = p
        return scores


@dataclass(frozen=True)
class SeedRules:
    """What makes a bootstrapped seed: real formulas for positives, no math evidence at all for negatives."""

    min_formulas: int = 3  # $..$ / $$..$$ spans with TeX syntax, i.e. formulas that came from markup
    min_chars: int = 200
    max_negative_score: float = 0.1  # rule score below which a page without formulas is a clean negative


def count_tex_formulas(text: str) -> int:
    """Formulas in latexified text that contain real TeX syntax (a command, a sub- or superscript)."""
    return sum(1 for m in _FORMULA_RE.finditer(text) if _TEX_SYNTAX_RE.search(m.group(1) or m.group(2) or ""))


def bootstrap_label(
    text: str, rules: SeedRules | None = None, scorer: RuleMathScorer | None = None
) -> str | None:
    """'math', 'other', or None (ambiguous: not used as a seed) for one math-aware extracted text."""
    rules = rules or SeedRules()
    if len(text) < rules.min_chars:
        return None
    if count_tex_formulas(text) >= rules.min_formulas:
        return "math"
    if "$" not in text and (scorer or RuleMathScorer()).score(text) < rules.max_negative_score:
        return "other"
    return None


def bootstrap_seed_labels(
    texts: Iterable[str], rules: SeedRules | None = None, max_per_class: int | None = None
) -> tuple[list[str], list[str]]:
    """(positives, negatives) from math-aware extracted texts, when no seed set is given.

    Positives carry at least `min_formulas` formulas with TeX syntax, which only real TeX/MathML markup
    produces after `latexify`; negatives have no formula and almost no math vocabulary. Everything in
    between is left out, which is what keeps the seeds' precision high.
    """
    rules = rules or SeedRules()
    scorer = RuleMathScorer()
    positives: list[str] = []
    negatives: list[str] = []
    for text in texts:
        label = bootstrap_label(text or "", rules, scorer)
        if label == "math" and (max_per_class is None or len(positives) < max_per_class):
            positives.append(text)
        elif label == "other" and (max_per_class is None or len(negatives) < max_per_class):
            negatives.append(text)
    return positives, negatives
