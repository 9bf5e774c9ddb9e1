"""MinHash: bit-for-bit datasketch signatures, datasketch's LSH parameters, stable band hashes, dedup quality."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from datasketch import MinHash, MinHashLSH

from classifiers.minhash import (
    EMPTY,
    MinHashConfig,
    MinHasher,
    band_hash_matrix,
    band_hashes,
    candidate_pairs,
    estimate_jaccard,
    jaccard,
    lsh_params,
    ngram_hash32,
    shingle_set,
    shingles,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.near_dup_data import make_near_dup_corpus

_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGH0123456789äöüßéабвгдё数学题"


def _random_text(rng: random.Random) -> str:
    chars = _ALPHABET
    n_words = rng.choice([0, 1, 2, 4, 5, 6, 30, 200])
    seps = [" ", "  ", "\n", ", ", ". ", "$", "\\("]
    return "".join(
        "".join(rng.choice(chars) for _ in range(rng.randint(1, 7))) + rng.choice(seps)
        for _ in range(n_words)
    )


@pytest.mark.parametrize("hash_func", ["xxh32-words", "sha1"])
def test_signatures_equal_datasketch_bit_for_bit(hash_func):
    rng = random.Random(len(hash_func))
    datasketch_hash = ngram_hash32 if hash_func == "xxh32-words" else None  # None: datasketch's sha1 default
    for trial in range(60):
        config = MinHashConfig(
            num_perm=rng.choice([16, 64, 128, 256]), seed=rng.randint(0, 2**31), ngram=rng.choice([1, 3, 5, 13]),
            hash_func=hash_func,
        )  # fmt: skip
        text = _random_text(rng)
        ours = MinHasher(config).signature(text)
        theirs = MinHash(num_perm=config.num_perm, seed=config.seed, hashfunc=datasketch_hash)
        theirs.update_batch(shingles(text, config.ngram))
        assert ours.dtype == theirs.hashvalues.dtype == np.uint32
        assert np.array_equal(ours, theirs.hashvalues), (trial, config, text[:80])


def test_empty_text_has_the_empty_signature():
    sig = MinHasher(MinHashConfig(num_perm=32)).signature(" ,;  \n")
    assert np.array_equal(sig, MinHash(num_perm=32).hashvalues) and (sig == EMPTY).all()


def test_signatures_matrix_matches_single_documents():
    texts = ["one two three four five six", "", "alpha beta", "one two three four five seven"]
    hasher = MinHasher()
    matrix = hasher.signatures(texts)
    assert matrix.shape == (4, 128)
    for row, text in zip(matrix, texts, strict=True):
        assert np.array_equal(row, hasher.signature(text))
    assert hasher.signatures([]).shape == (0, 128)


def test_shingles_are_word_ngrams_of_normalised_text():
    assert shingles("The cat, the HAT; the bat.", 3) == [
        b"the cat the",
        b"cat the hat",
        b"the hat the",
        b"hat the bat",
    ]
    assert shingles("Only two", 5) == [b"only two"]
    assert shingles("  ", 5) == []
    assert shingle_set("a b a b a b", 2) == {b"a b", b"b a"}


def test_estimate_tracks_exact_jaccard():
    rng = random.Random(3)
    vocab = [f"w{i}" for i in range(3000)]
    base = [rng.choice(vocab) for _ in range(400)]
    hasher = MinHasher(MinHashConfig(num_perm=256))
    for edits in (0, 5, 20, 60, 400):
        other = list(base)
        for _ in range(edits):
            other[rng.randrange(len(other))] = rng.choice(vocab)
        a, b = " ".join(base), " ".join(other)
        exact = jaccard(shingle_set(a), shingle_set(b))
        assert abs(estimate_jaccard(hasher.signature(a), hasher.signature(b)) - exact) < 0.1, edits


def test_lsh_params_equal_datasketch():
    checked = 0
    for num_perm in (16, 64, 128):
        for threshold in np.round(np.arange(0.1, 0.96, 0.05), 2):
            for weights in ((0.5, 0.5), (0.3, 0.7), (0.7, 0.3), (0.1, 0.9)):
                try:
                    lsh = MinHashLSH(threshold=float(threshold), num_perm=num_perm, weights=weights)
                except ValueError:  # datasketch refuses an optimum with fewer than 2 bands
                    continue
                assert lsh_params(float(threshold), num_perm, *weights) == (lsh.b, lsh.r), (
                    num_perm,
                    threshold,
                    weights,
                )
                checked += 1
    assert checked > 150
    with pytest.raises(ValueError):
        lsh_params(1.5, 128)


def test_band_hashes_agree_exactly_where_bands_agree():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 2**32, 128, dtype=np.uint64).astype(np.uint32)
    b = rng.integers(0, 2**32, 128, dtype=np.uint64).astype(np.uint32)
    b[16:32] = a[16:32]  # only band 1 of 8 x 16 is shared
    ha, hb = band_hashes(a, 8, 16), band_hashes(b, 8, 16)
    assert [x == y for x, y in zip(ha, hb, strict=True)] == [i == 1 for i in range(8)]
    assert all(isinstance(x, int) and -(2**63) <= x < 2**63 for x in ha)
    # Equal band contents in different band positions do not collide (the band index is mixed in).
    c = a.copy()
    c[0:16] = a[16:32]
    assert band_hashes(c, 8, 16)[0] != ha[1]
    assert np.array_equal(band_hash_matrix(np.stack([a, b]), 8, 16)[1], np.array(hb, dtype=np.int64))
    with pytest.raises(ValueError):
        band_hash_matrix(a, 9, 16)


def test_band_hashes_are_stable_across_processes():
    code = (
        "from classifiers.minhash import MinHasher, band_hashes; "
        "print(band_hashes(MinHasher().signature('the same text in every process'), 9, 13))"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed},
        ).stdout.strip()
        for seed in ("0", "12345")
    }
    assert outputs == {str(band_hashes(MinHasher().signature("the same text in every process"), 9, 13))}


def test_candidate_pairs_from_shared_bands():
    matrix = np.array([[1, 2], [3, 2], [5, 6], [1, 7], [8, 9]])
    assert candidate_pairs(matrix) == {(0, 1), (0, 3)}


def test_planted_near_duplicates_found_with_precision_and_recall_at_least_095():
    threshold = 0.8
    corpus = make_near_dup_corpus(2000, seed=1)
    truth = corpus.true_pairs(threshold)
    assert len(truth) > 50
    sigs = MinHasher().signatures(corpus.docs)
    # Bands tuned for recall (optimum for threshold - 0.1), candidates confirmed by exact Jaccard.
    candidates = candidate_pairs(band_hash_matrix(sigs, *lsh_params(threshold - 0.1, 128)))
    sets: dict[int, set[bytes]] = {}

    def exact(i: int, j: int) -> float:
        for k in (i, j):
            if k not in sets:
                sets[k] = shingle_set(corpus.docs[k])
        return jaccard(sets[i], sets[j])

    planted = {(p.a, p.b) for p in corpus.pairs}
    truth |= {p for p in candidates - planted if exact(*p) >= threshold}  # unplanted true pairs count too
    kept = {p for p in candidates if exact(*p) >= threshold}
    precision = len(kept & truth) / len(kept)
    recall = len(kept & truth) / len(truth)
    assert precision >= 0.95 and recall >= 0.95, (precision, recall)


def test_planted_corpus_reports_exact_jaccard_near_its_targets():
    corpus = make_near_dup_corpus(600, seed=2, dup_share=0.5)
    assert len(corpus.docs) == 600 and corpus.clusters
    for pair in corpus.pairs[:40]:
        assert pair.jaccard == jaccard(shingle_set(corpus.docs[pair.a]), shingle_set(corpus.docs[pair.b]))
    base_pairs = [p for p in corpus.pairs if p.target != p.jaccard]
    errors = [abs(p.jaccard - p.target) for p in base_pairs]
    assert np.mean(errors) < 0.05
    spread = [p.jaccard for p in base_pairs]
    assert min(spread) < 0.6 and max(spread) > 0.95  # the whole range is planted, not just easy pairs
