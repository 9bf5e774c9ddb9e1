"""A synthetic corpus with planted near-duplicates at known Jaccard similarity, for dedup quality checks.

Unrelated documents are word sequences drawn from a Zipf-distributed invented vocabulary (long-tailed like
real text, so common words repeat but word 5-grams of unrelated documents practically never do). A share of
documents belongs to planted clusters: a base document plus variants made by random word edits (replace,
insert, delete), the number of edits chosen so the variant's shingle Jaccard with the base lands near a
target drawn uniformly from `jaccard_range`. Targets are only aims: every pair inside a cluster carries its
exact Jaccard, computed on the same shingles the dedup uses, and that exact value is the ground truth.

Used by tests (small sizes) and by bench/dedup_bench.py (20,000+ documents).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from classifiers.minhash import DEFAULT_NGRAM, jaccard, shingle_set

_SYLLABLES = [c + v for c in "bcdfghjklmnprstvwz" for v in "aeiou"] + ["qu", "th", "sh", "ch", "st"]


@dataclass(frozen=True)
class PlantedPair:
    a: int
    b: int
    jaccard: float  # exact Jaccard of the two documents' shingle sets
    target: float  # the similarity the generator aimed at (for the base-variant pairs; else the pair's own)


@dataclass
class NearDupCorpus:
    docs: list[str]
    pairs: list[PlantedPair]  # every pair inside every planted cluster
    clusters: list[list[int]]  # document ids of each planted cluster (base first)
    ngram: int

    def true_pairs(self, threshold: float) -> set[tuple[int, int]]:
        """Planted pairs whose exact Jaccard reaches `threshold` (i < j)."""
        return {(p.a, p.b) for p in self.pairs if p.jaccard >= threshold}


def _vocabulary(size: int, rng: np.random.Generator) -> list[str]:
    words: set[str] = set()
    while len(words) < size:
        syllables = rng.integers(0, len(_SYLLABLES), (size, 3)).tolist()
        lengths = rng.integers(1, 4, size).tolist()
        words.update(
            "".join(_SYLLABLES[i] for i in row[:k]) for row, k in zip(syllables, lengths, strict=True)
        )
    ordered = sorted(words)
    return [ordered[i] for i in rng.permutation(len(ordered))[:size].tolist()]


def _render(tokens: list[str], rng: np.random.Generator) -> str:
    """Words as prose: sentences with capitals and full stops, paragraphs; normalisation strips all that."""
    breaks = np.flatnonzero(rng.random(len(tokens)) < 0.1).tolist()
    paragraph_ends = rng.random(len(breaks) + 1) < 0.15
    parts, last = [], 0
    for k, end in enumerate([*breaks, len(tokens) - 1]):
        if end < last:
            continue
        parts.append(" ".join(tokens[last : end + 1]).capitalize() + ("\n\n" if paragraph_ends[k] else "."))
        last = end + 1
    return " ".join(parts)


def _edits_for(target: float, n_shingles: int, ngram: int) -> int:
    """Edits that destroy about the shingles a target Jaccard allows (each edit touches ~ngram shingles)."""
    if target >= 1.0:
        return 0
    destroyed = n_shingles * (1.0 - target) / (1.0 + target)
    share = min(destroyed / n_shingles, 0.999)
    per_edit = min(ngram / n_shingles, 0.999)
    return max(1, round(math.log1p(-share) / math.log1p(-per_edit)))


def _edit(tokens: list[str], n_edits: int, vocab: list[str], rng: np.random.Generator) -> list[str]:
    out = list(tokens)
    for _ in range(n_edits):
        op, at = rng.integers(0, 3), int(rng.integers(0, len(out)))
        word = vocab[int(rng.integers(0, len(vocab)))]
        if op == 0:
            out[at] = word
        elif op == 1:
            out.insert(at, word)
        elif len(out) > 1:
            del out[at]
    return out


def make_near_dup_corpus(
    n_docs: int,
    seed: int = 0,
    *,
    dup_share: float = 0.3,
    jaccard_range: tuple[float, float] = (0.5, 1.0),
    max_cluster: int = 4,
    words_range: tuple[int, int] = (80, 500),
    vocab_size: int = 30000,
    ngram: int = DEFAULT_NGRAM,
) -> NearDupCorpus:
    """`n_docs` documents, about `dup_share` of them in planted clusters of 2..`max_cluster`, shuffled."""
    rng = np.random.default_rng(seed)
    vocab = _vocabulary(vocab_size, rng)
    cdf = np.cumsum(1.0 / np.arange(1, vocab_size + 1) ** 1.05)
    cdf /= cdf[-1]

    def fresh() -> list[str]:
        length = int(rng.integers(words_range[0], words_range[1] + 1))
        picks = np.minimum(np.searchsorted(cdf, rng.random(length)), vocab_size - 1)
        return [vocab[i] for i in picks.tolist()]

    token_docs: list[list[str]] = []
    groups: list[list[int]] = []
    targets: dict[tuple[int, int], float] = {}
    planted, planted_budget = 0, int(n_docs * dup_share)
    while len(token_docs) < n_docs:
        size = int(rng.integers(2, max_cluster + 1))
        if planted + size > planted_budget or len(token_docs) + size > n_docs:
            token_docs.append(fresh())
            continue
        base = fresh()
        group = [len(token_docs)]
        token_docs.append(base)
        n_shingles = max(1, len(base) - ngram + 1)
        for _ in range(size - 1):
            target = float(rng.uniform(*jaccard_range))
            variant = _edit(base, _edits_for(target, n_shingles, ngram), vocab, rng)
            targets[(group[0], len(token_docs))] = target
            group.append(len(token_docs))
            token_docs.append(variant)
        groups.append(group)
        planted += size

    order = rng.permutation(n_docs)  # planted documents scattered through the corpus
    new_id = {int(old): new for new, old in enumerate(order)}
    docs = [""] * n_docs
    for old, tokens in enumerate(token_docs):
        docs[new_id[old]] = _render(tokens, rng)
    pairs: list[PlantedPair] = []
    clusters: list[list[int]] = []
    for group in groups:
        shingles = {i: shingle_set(docs[new_id[i]], ngram) for i in group}
        for x in range(len(group)):
            for y in range(x + 1, len(group)):
                i, j = group[x], group[y]
                exact = jaccard(shingles[i], shingles[j])
                a, b = sorted((new_id[i], new_id[j]))
                pairs.append(PlantedPair(a, b, exact, targets.get((i, j), exact)))
        clusters.append([new_id[i] for i in group])
    return NearDupCorpus(docs, pairs, clusters, ngram)
