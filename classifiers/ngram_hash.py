"""Hashes of word n-grams, computed for all n-grams of a document at once with numpy.

MinHash (32-bit, datasketch-compatible) and benchmark decontamination (64-bit, so that a lookup of a
document's hundreds of n-grams in an index of millions stays free of false hits) both need a hash per word
n-gram. Building each n-gram string and hashing it costs more than everything else; instead each word is
hashed once (xxhash) and the n-gram hash is a polynomial in the word hashes, mod 2**32 or 2**64, finished
with the MurmurHash3 mixer. All arithmetic is fixed-width unsigned numpy arithmetic: the same values in
every process and on every machine, so they can be stored.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xxhash

_U32, _U64 = np.uint32, np.uint64
_FMIX = {
    np.dtype(_U32): (_U32(16), _U32(0x85EBCA6B), _U32(13), _U32(0xC2B2AE35), _U32(16)),
    np.dtype(_U64): (_U64(33), _U64(0xFF51AFD7ED558CCD), _U64(33), _U64(0xC4CEB9FE1A85EC53), _U64(33)),
}
# Odd multipliers combining consecutive word hashes (FNV primes).
_POLY = {np.dtype(_U32): _U32(0x01000193), np.dtype(_U64): _U64(0x00000100000001B3)}


def fmix(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's finalizer for the array's width (uint32 or uint64): an avalanching bijection."""
    s1, m1, s2, m2, s3 = _FMIX[h.dtype]
    h = h ^ (h >> s1)
    h = h * m1
    h = h ^ (h >> s2)
    h = h * m2
    return h ^ (h >> s3)


def word_hashes32(tokens: Sequence[bytes]) -> np.ndarray:
    """xxh32 (seed 0) of each word."""
    return np.fromiter(map(xxhash.xxh32_intdigest, tokens), dtype=_U32, count=len(tokens))


def word_hashes64(tokens: Sequence[bytes]) -> np.ndarray:
    """xxh3-64 (seed 0) of each word."""
    return np.fromiter(map(xxhash.xxh3_64_intdigest, tokens), dtype=_U64, count=len(tokens))


def ngram_hashes(word_hashes: np.ndarray, n: int) -> np.ndarray:
    """Hashes of all n-grams of a word-hash sequence, same dtype: fmix(sum_j w[i+j] * P**(n-1-j)).

    Fewer than n words give one hash of all of them (so a short text is one "n-gram"); no words, none.
    """
    if len(word_hashes) == 0:
        return word_hashes[:0].copy()
    k = min(n, len(word_hashes))
    m = len(word_hashes) - k + 1
    poly = _POLY[word_hashes.dtype]
    acc = word_hashes[:m].copy()
    for j in range(1, k):
        acc *= poly
        acc += word_hashes[j : j + m]
    return fmix(acc)
