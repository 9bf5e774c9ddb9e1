"""Labelled texts for training the math classifier: user seed files, and seeds bootstrapped from a crawl.

Pure Python (no Spark): `SeedSampler.labelled_texts` is what one Spark task of the training job runs on one
WARC file. Each page takes the corpus job's route (`pipeline.route`, without language ID): the pages it sends
to math extraction are labelled on their math-aware text and become positives when they carry real formulas;
the others give clean negatives from the fast text they were scored on, sampled by a stable hash so a re-run
picks the same pages.
"""

from __future__ import annotations

import gzip
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import xxhash

from classifiers.math_classifier import bootstrap_label
from classifiers.math_score import RuleMathScorer
from crawl.warc import read_html_responses
from pipeline.route import route_page


def stable_fraction(text: str, seed: int = 0) -> float:
    """A number in [0, 1) fixed by the text and seed (same on every machine and Python process)."""
    return xxhash.xxh64_intdigest(text.encode("utf-8", "replace"), seed=seed) / 2**64


def read_seed_texts(path: str) -> list[str]:
    """Texts from a Parquet file/directory (`text` column) or a JSONL(.gz) file (`text` field per line)."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"seed file not found: {path}")
    if p.is_dir() or p.suffix == ".parquet":
        import pyarrow.dataset as ds

        dataset = ds.dataset(p, format="parquet", exclude_invalid_files=True)
        if "text" not in dataset.schema.names:
            raise ValueError(f"{path}: no 'text' column (columns: {dataset.schema.names})")
        texts = [t for t in dataset.to_table(columns=["text"]).column("text").to_pylist() if t]
    else:
        opener = gzip.open if p.name.endswith(".gz") else open
        texts = []
        with opener(p, "rt", encoding="utf-8") as fh:
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{number}: not JSON ({exc})") from exc
                if record.get("text"):
                    texts.append(record["text"])
    if not texts:
        raise ValueError(f"{path}: no seed texts")
    return texts


@dataclass(frozen=True)
class SeedSampler:
    want_positives: bool = True
    negative_fraction: float = 1.0
    seed: int = 0

    def labelled_texts(self, location: str, counters: Counter) -> Iterator[tuple[str, str]]:
        """("math" | "other", text) pairs from one WARC file; ambiguous pages are skipped and counted."""
        scorer = RuleMathScorer()  # routes pages only: the labels come from `bootstrap_label`
        for response in read_html_responses(location, counters):
            page = route_page(response.body, response.content_type, response.url, scorer=scorer)
            text = page.text
            label = bootstrap_label(text)
            if label == "math" and self.want_positives:
                counters["seed:math"] += 1
                yield "math", text
            elif label == "other" and stable_fraction(text, self.seed) < self.negative_fraction:
                counters["seed:other"] += 1
                yield "other", text
            else:
                counters["seed:ambiguous"] += 1
