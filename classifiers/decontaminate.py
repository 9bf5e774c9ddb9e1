"""Benchmark decontamination: find documents that quote a benchmark question.

A test question left in the pretraining corpus turns the benchmark into a memory test. A document is
contaminated when it contains any word n-gram (default 13 words, as in GPT-3's decontamination; DeepSeekMath
used 10) of a benchmark question, after `classifiers.text_norm` normalisation, so changed case, spacing,
punctuation and TeX delimiters do not hide a quote. Questions shorter than n words are matched whole (a
3-word MATH item like "Simplify $\\sqrt{242}$." is as specific as a long one); questions shorter than
`min_words` are skipped and counted, because they would match ordinary prose.

The index holds 64-bit hashes of the benchmark n-grams in a sorted array: checking a document costs one
hash per document word and one vectorised binary search, so millions of documents are cheap, and the index
pickles to Spark executors as a few numpy arrays.
"""

from __future__ import annotations

import gzip
import json
import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from classifiers.ngram_hash import ngram_hashes, word_hashes64
from classifiers.text_norm import normalized_utf8

log = logging.getLogger(__name__)

QUESTION_FIELDS = ("question", "problem", "prompt", "query", "input")
ID_FIELDS = ("id", "unique_id", "idx", "problem_id", "task_id")
BENCHMARK_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz")


@dataclass(frozen=True)
class DecontaminationConfig:
    """Settings of benchmark decontamination."""

    ngram: int = field(default=13, metadata={"help": "words per n-gram shared with a benchmark question"})
    min_words: int = field(default=3, metadata={"help": "questions with fewer words are not indexed"})
    fields: tuple[str, ...] = field(
        default=QUESTION_FIELDS, metadata={"help": "JSON fields holding the question"}
    )

    def __post_init__(self) -> None:
        if self.ngram < 1 or self.min_words < 1:
            raise ValueError("ngram and min_words must be positive")


@dataclass(frozen=True)
class BenchmarkItem:
    benchmark: str  # file name without suffix, e.g. "gsm8k_test"
    item_id: str  # the item's id field, else "line N"
    text: str


@dataclass(frozen=True)
class Match:
    """Why a document is contaminated: which benchmark item, how, and the words that matched."""

    benchmark: str
    item_id: str
    kind: str  # "ngram": an n-gram of the question occurs; "whole": the whole (short) question occurs
    matched: str  # the normalised words found in the document
    position: int  # word offset of the match in the normalised document

    @property
    def reason(self) -> str:
        what = "quotes" if self.kind == "whole" else "shares an n-gram with"
        return f"{what} {self.benchmark}:{self.item_id}: '{self.matched}'"


def benchmark_name(path: Path) -> str:
    name = path.name
    for suffix in sorted(BENCHMARK_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _benchmark_files(paths: Iterable[str | Path]) -> Iterator[Path]:
    for p in map(Path, paths):
        if p.is_dir():
            yield from sorted(f for f in p.iterdir() if f.name.endswith(BENCHMARK_SUFFIXES))
        elif p.is_file():
            yield p
        else:
            raise FileNotFoundError(f"benchmark file or folder not found: {p}")


def _open_text(path: Path):
    return (
        gzip.open(path, "rt", encoding="utf-8") if path.name.endswith(".gz") else path.open(encoding="utf-8")
    )


def load_benchmark_items(
    paths: Iterable[str | Path], fields: tuple[str, ...] = QUESTION_FIELDS, counters: Counter | None = None
) -> list[BenchmarkItem]:
    """Questions from JSONL files (also gzipped) or folders of them, one item per question-like field.

    Every question-like field present is taken (some sets carry both `question` and `problem`), once per
    distinct text. A line that is not JSON, has no question field or an empty one is counted in `counters`
    (`skip:bad_json`, `skip:no_question`) and logged; the rest of the file is still read.
    """
    counters = counters if counters is not None else Counter()
    items: list[BenchmarkItem] = []
    for path in _benchmark_files(paths):
        name = benchmark_name(path)
        with _open_text(path) as fh:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    counters["skip:bad_json"] += 1
                    log.warning("%s:%d: not JSON (%s), skipped", path, lineno, exc.msg)
                    continue
                texts = dict.fromkeys(
                    row[f].strip()
                    for f in fields
                    if isinstance(row, dict) and isinstance(row.get(f), str) and row[f].strip()
                )
                if not texts:
                    counters["skip:no_question"] += 1
                    log.warning("%s:%d: no question field among %s, skipped", path, lineno, fields)
                    continue
                ident = next((str(row[f]) for f in ID_FIELDS if row.get(f) is not None), f"line {lineno}")
                items += [BenchmarkItem(name, ident, t) for t in texts]
                counters[f"items:{name}"] += len(texts)
    return items


def _tokens(text: str) -> list[bytes]:
    return normalized_utf8(text).split()


class ContaminationIndex:
    """Hashed n-grams of benchmark questions; `find_contamination(text)` says which questions a text quotes.

    Questions of at least n words contribute all their n-grams (hash -> owning items). Shorter questions
    are keyed by the hash of their first `min_words` words, a trigger; a triggered candidate is confirmed by
    comparing the words, so one extra pass covers questions of every short length.
    """

    def __init__(self, items: Iterable[BenchmarkItem], config: DecontaminationConfig | None = None) -> None:
        self.config = config or DecontaminationConfig()
        n, k = self.config.ngram, self.config.min_words
        self.items: list[tuple[str, str]] = []
        self.stats: Counter = Counter()
        self._ngrams: dict[int, tuple[int, ...]] = {}  # n-gram hash -> items
        self._short: dict[int, tuple[tuple[int, tuple[bytes, ...]], ...]] = {}  # prefix hash -> (item, words)
        for item in items:
            tokens = _tokens(item.text)
            if len(tokens) < k:
                self.stats["skipped_short_items"] += 1
                continue
            index = len(self.items)
            self.items.append((item.benchmark, item.item_id))
            hashes = word_hashes64(tokens)
            if len(tokens) >= n:
                for h in set(ngram_hashes(hashes, n).tolist()):
                    self._ngrams[h] = (*self._ngrams.get(h, ()), index)
                self.stats["ngram_items"] += 1
            else:
                h = int(ngram_hashes(hashes[:k], k)[0])
                self._short[h] = (*self._short.get(h, ()), (index, tuple(tokens)))
                self.stats["whole_items"] += 1
        self.stats["indexed_items"] = len(self.items)
        self.stats["ngrams"] = len(self._ngrams)

    @classmethod
    def from_files(
        cls, paths: Iterable[str | Path], config: DecontaminationConfig | None = None
    ) -> ContaminationIndex:
        config = config or DecontaminationConfig()
        counters: Counter = Counter()
        index = cls(load_benchmark_items(paths, config.fields, counters), config)
        index.stats.update(counters)
        return index

    def find_contamination(self, text: str) -> list[Match]:
        """One `Match` per benchmark item the text quotes (its first occurrence), in document order."""
        tokens = _tokens(text)
        if not tokens:
            return []
        n, k = self.config.ngram, self.config.min_words
        word_hashes = word_hashes64(tokens)
        found: dict[int, Match] = {}

        def record(item: int, kind: str, at: int, length: int) -> None:
            if item not in found or found[item].position > at:
                benchmark, item_id = self.items[item]
                matched = b" ".join(tokens[at : at + length]).decode("utf-8")
                found[item] = Match(benchmark, item_id, kind, matched, at)

        if self._ngrams and len(tokens) >= n:
            hashes = ngram_hashes(word_hashes, n)
            for h in {h for h in hashes.tolist() if h in self._ngrams}:
                at = int(np.flatnonzero(hashes == np.uint64(h))[0])
                for item in self._ngrams[h]:
                    record(item, "ngram", at, n)
        if self._short and len(tokens) >= k:
            hashes = ngram_hashes(word_hashes, k)
            for h in {h for h in hashes.tolist() if h in self._short}:
                for at in np.flatnonzero(hashes == np.uint64(h)).tolist():
                    for item, item_tokens in self._short[h]:
                        if tuple(tokens[at : at + len(item_tokens)]) == item_tokens:
                            record(item, "whole", at, len(item_tokens))
        return sorted(found.values(), key=lambda m: (m.position, m.benchmark, m.item_id))

    def is_contaminated(self, text: str) -> bool:
        return bool(self.find_contamination(text))

    def __len__(self) -> int:
        return len(self.items)
