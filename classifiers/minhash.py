"""MinHash signatures, LSH banding parameters and band hashes for near-duplicate detection.

Signatures are bit-for-bit those of datasketch 2.0's `MinHash` with its current default scheme,
`"affine32"` (not `"legacy"`): 32-bit shingle hashes are pre-mixed with the MurmurHash3 finalizer, then
permuted by `a * h + b mod 2**32` with odd `a`, and `a`, `b` are drawn from `numpy.random.RandomState(seed)`
exactly as datasketch draws them. So, for the same `num_perm`, `seed` and hash function,

    MinHash(num_perm=P, seed=S, hashfunc=HASH).update_batch(shingles(text, n))

holds the same `hashvalues` as `MinHasher(MinHashConfig(num_perm=P, seed=S, ...)).signature(text)`, and our
signatures can be loaded into datasketch (`MinHash(..., hashvalues=sig, scheme="affine32")`) and its LSH
indexes. Two shingle hash functions are offered:

- `"xxh32-words"` (default, `ngram_hash32`): each word is hashed once with xxh32 and the n words of a
  shingle are combined by a polynomial mod 2**32, which numpy computes for all shingles of a document at
  once; no shingle string is ever built. Pass `hashfunc=ngram_hash32` to datasketch for equal signatures.
- `"sha1"` (`sha1_hash32`): datasketch's default hash of the shingle bytes; slower, but equal to a plain
  `MinHash(num_perm, seed)` without any argument about hashing.

Shingles are word n-grams of `classifiers.text_norm` words, joined by single spaces, UTF-8 encoded. The
default n = 5 follows FineWeb/datatrove (word 5-grams): short enough that a handful of edited words leaves
most shingles of a long page intact (near-duplicates keep a high Jaccard), long enough that unrelated pages
sharing stock phrases ("let x be the", "the solution of the") do not look alike. A document shorter than n
words is one shingle of all its words; an empty document has no shingles and the all-ones signature
datasketch gives an empty `MinHash` (drop empty texts before near-dedup, or they all collide).

`bucket_links` checks an LSH bucket too large for all its pairs (boilerplate shared by thousands of pages)
against bounded representatives, so every duplicate family in it is found in linear work.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from classifiers.ngram_hash import fmix, ngram_hashes, word_hashes32
from classifiers.text_norm import normalized_utf8

DEFAULT_NGRAM = 5
DEFAULT_NUM_PERM = 128
DEFAULT_SEED = 1  # datasketch's default seed
HASH_FUNCS = ("xxh32-words", "sha1")
EMPTY = np.uint32(0xFFFFFFFF)  # value of every slot of an empty signature (datasketch's max hash)

_U32, _U64 = np.uint32, np.uint64
_GOLDEN64 = _U64(0x9E3779B97F4A7C15)


@dataclass(frozen=True)
class MinHashConfig:
    """MinHash settings; a signature is only comparable with signatures made with the same values."""

    num_perm: int = field(
        default=DEFAULT_NUM_PERM, metadata={"help": "MinHash permutations (signature length)"}
    )
    seed: int = field(
        default=DEFAULT_SEED, metadata={"help": "seed of the permutations (datasketch's `seed`)"}
    )
    ngram: int = field(default=DEFAULT_NGRAM, metadata={"help": "words per shingle"})
    hash_func: str = field(default="xxh32-words", metadata={"help": f"shingle hash, one of {HASH_FUNCS}"})

    def __post_init__(self) -> None:
        if self.num_perm < 1:
            raise ValueError(f"num_perm must be positive, got {self.num_perm}")
        if self.ngram < 1:
            raise ValueError(f"ngram must be positive, got {self.ngram}")
        if self.hash_func not in HASH_FUNCS:
            raise ValueError(f"hash_func must be one of {HASH_FUNCS}, got {self.hash_func!r}")


# ---------------------------------------------------------------- hashing primitives


def sha1_hash32(data: bytes) -> int:
    """datasketch's default shingle hash: the first 4 bytes of SHA-1, little-endian."""
    return int.from_bytes(hashlib.sha1(data).digest()[:4], "little")


def ngram_hash32(shingle: bytes) -> int:
    """The `"xxh32-words"` hash of one shingle (words separated by single spaces).

    Usable as datasketch's `hashfunc`; `MinHasher` computes the same values vectorised over a document.
    """
    tokens = shingle.split(b" ")
    return int(ngram_hashes(word_hashes32(tokens), len(tokens))[0])


def affine32_permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The permutation parameters (a, b) datasketch's `"affine32"` scheme draws for `seed`: a odd, b any."""
    gen = np.random.RandomState(seed)
    a = gen.randint(0, 1 << 31, num_perm, dtype=_U32) * _U32(2) + _U32(1)
    b = gen.randint(0, 1 << 32, num_perm, dtype=_U32)
    return a, b


# ---------------------------------------------------------------- shingles


def _encoded_words(text: str) -> tuple[bytes, np.ndarray]:
    """UTF-8 of the normalised text and the byte offsets where its words start (plus the end sentinel)."""
    data = normalized_utf8(text)
    if not data:
        return data, np.zeros(1, dtype=np.int64)
    spaces = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 0x20)
    starts = np.concatenate(([0], spaces + 1, [len(data) + 1]))
    return data, starts


def shingles(text: str, n: int = DEFAULT_NGRAM) -> list[bytes]:
    """Word n-grams of the normalised text as UTF-8 bytes (one shingle of all words if fewer than n)."""
    data, starts = _encoded_words(text)
    n_words = len(starts) - 1
    if n_words == 0:
        return []
    k = min(n, n_words)
    begin = starts[: n_words - k + 1].tolist()
    end = (starts[k:] - 1).tolist()
    return [data[s:e] for s, e in zip(begin, end, strict=True)]


def shingle_set(text: str, n: int = DEFAULT_NGRAM) -> set[bytes]:
    """The set of shingles, for exact Jaccard similarity."""
    return set(shingles(text, n))


def jaccard(a: set, b: set) -> float:
    """Exact Jaccard similarity of two sets (1.0 for two empty sets)."""
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def estimate_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> float:
    """Jaccard similarity estimated from two signatures of the same configuration."""
    return float(np.count_nonzero(sig_a == sig_b)) / len(sig_a)


# ---------------------------------------------------------------- signatures


class MinHasher:
    """Computes MinHash signatures for one configuration (permutations drawn once)."""

    def __init__(self, config: MinHashConfig | None = None) -> None:
        self.config = config or MinHashConfig()
        self.a, self.b = affine32_permutations(self.config.num_perm, self.config.seed)

    def shingle_hashes(self, text: str) -> np.ndarray:
        """32-bit hashes of the document's shingles (before datasketch's pre-mix and permutations)."""
        n = self.config.ngram
        data, starts = _encoded_words(text)
        n_words = len(starts) - 1
        if n_words == 0:
            return np.empty(0, dtype=_U32)
        if self.config.hash_func == "sha1":
            k = min(n, n_words)
            ends = (starts[k:] - 1).tolist()
            digests = b"".join(
                hashlib.sha1(data[s:e]).digest()[:4]
                for s, e in zip(starts[: n_words - k + 1].tolist(), ends, strict=True)
            )
            return np.frombuffer(digests, dtype="<u4").astype(_U32)
        return ngram_hashes(word_hashes32(data.split(b" ")), n)

    def signature_of_hashes(self, hashes: np.ndarray) -> np.ndarray:
        """Signature (uint32[num_perm]) of a set given as shingle hashes."""
        if len(hashes) == 0:
            return np.full(self.config.num_perm, EMPTY, dtype=_U32)
        permuted = np.multiply.outer(fmix(hashes.astype(_U32, copy=False)), self.a)
        permuted += self.b
        return permuted.min(axis=0)

    def signature(self, text: str) -> np.ndarray:
        """Signature (uint32[num_perm]) of one document."""
        return self.signature_of_hashes(self.shingle_hashes(text))

    def signatures(self, texts: Iterable[str]) -> np.ndarray:
        """Signatures of many documents as a (n_docs, num_perm) uint32 matrix."""
        rows = [self.signature(t) for t in texts]
        if not rows:
            return np.empty((0, self.config.num_perm), dtype=_U32)
        return np.stack(rows)


# ---------------------------------------------------------------- LSH


def _candidate_params(num_perm: int) -> tuple[np.ndarray, np.ndarray]:
    """All (bands, rows) with bands * rows <= num_perm, in datasketch's search order."""
    pairs = [(b, r) for b in range(1, num_perm + 1) for r in range(1, num_perm // b + 1)]
    arr = np.array(pairs, dtype=np.float64)
    return arr[:, 0], arr[:, 1]


def lsh_params(
    threshold: float, num_perm: int, fp_weight: float = 0.5, fn_weight: float = 0.5
) -> tuple[int, int]:
    """Bands and rows minimising the weighted false-positive and false-negative areas (as datasketch).

    A pair of Jaccard s becomes a candidate with probability P(s) = 1 - (1 - s**r)**b. The false-positive
    area is the integral of P over [0, threshold], the false-negative area that of 1 - P over
    [threshold, 1]; the (b, r) with b * r <= num_perm minimising fp_weight * FP + fn_weight * FN wins, the
    first in datasketch's (b, then r) order on ties. P is a polynomial of degree b * r <= num_perm, so
    Gauss-Legendre quadrature with num_perm // 2 + 1 nodes integrates it exactly (datasketch uses scipy's
    adaptive quadrature, which agrees to ~1e-10; no scipy needed here).
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    if num_perm < 2:
        raise ValueError(f"num_perm must be at least 2, got {num_perm}")
    if min(fp_weight, fn_weight) < 0.0:
        raise ValueError("weights must be non-negative")
    bands, rows = _candidate_params(num_perm)
    nodes, weights = np.polynomial.legendre.leggauss(num_perm // 2 + 1)

    def integral(lo: float, hi: float, false_negative: bool) -> np.ndarray:
        s = (hi - lo) / 2 * nodes + (hi + lo) / 2  # nodes mapped from [-1, 1] to [lo, hi]
        p = 1.0 - (1.0 - s[None, :] ** rows[:, None]) ** bands[:, None]
        values = 1.0 - p if false_negative else p
        return (hi - lo) / 2 * (values @ weights)

    error = fp_weight * integral(0.0, threshold, False) + fn_weight * integral(threshold, 1.0, True)
    best = int(np.argmin(error))
    return int(bands[best]), int(rows[best])


def band_hash_matrix(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """64-bit hashes of each band of each signature: int64 matrix (n_docs, bands).

    Two documents share a value in column i exactly when their band i agrees (up to 64-bit collisions).
    The band index is mixed in, so equal values in different columns do not mean anything and one column
    of (band, hash) pairs can be keyed by the hash alone. Plain uint64 arithmetic (fmix64 chaining), so the
    values are the same in every process, on every machine and in every later run: they can be stored in an
    index next to a corpus. Signed int64 because that is what Spark and Parquet call a long.
    """
    sigs = np.atleast_2d(np.asarray(signatures, dtype=_U32))
    if bands * rows > sigs.shape[1]:
        raise ValueError(
            f"{bands} bands x {rows} rows need {bands * rows} values, signature has {sigs.shape[1]}"
        )
    blocks = sigs[:, : bands * rows].reshape(len(sigs), bands, rows).astype(_U64)
    with np.errstate(over="ignore"):
        h = fmix(np.arange(1, bands + 1, dtype=_U64) * _GOLDEN64)
        h = np.broadcast_to(h, (len(sigs), bands)).copy()
        for j in range(rows):
            h = fmix(h * _GOLDEN64 + blocks[:, :, j])
    return h.view(np.int64)


def band_hashes(signature: np.ndarray, bands: int, rows: int) -> list[int]:
    """The `bands` band hashes of one signature, as Python ints (see `band_hash_matrix`)."""
    return band_hash_matrix(signature, bands, rows)[0].tolist()


def candidate_pairs(band_matrix: np.ndarray) -> set[tuple[int, int]]:
    """Pairs (i < j) of rows sharing at least one band hash: single-machine banding, a dict of band -> rows.

    The reference for small corpora, tests and benchmarks; the corpus job does the same grouping in Spark.
    """
    buckets: dict[int, list[int]] = {}
    for row, values in enumerate(np.asarray(band_matrix).tolist()):
        for value in values:
            buckets.setdefault(value, []).append(row)
    pairs: set[tuple[int, int]] = set()
    for rows in buckets.values():
        if len(rows) > 1:
            pairs.update((a, b) for i, a in enumerate(rows) for b in rows[i + 1 :])
    return pairs


# ---------------------------------------------------------------- large LSH buckets


def sorted_jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Exact Jaccard of two sorted arrays of distinct shingle hashes (1.0 for two empty sets)."""
    if len(a) == 0 and len(b) == 0:
        return 1.0
    common = len(np.intersect1d(a, b, assume_unique=True))
    return common / (len(a) + len(b) - common)


def bucket_links(
    members: Iterable[tuple[str, np.ndarray, np.ndarray]],
    threshold: float,
    max_representatives: int,
    estimate_floor: float = 0.0,
) -> Iterator[tuple[str, str | None, float]]:
    """Near-duplicate links inside one LSH bucket too large to check all its pairs, in bounded work.

    `members` are (id, signature, sorted distinct shingle hashes), streamed in id order. Each document is
    checked against the bucket's representatives, the first document of each duplicate family met so far,
    and linked to every one whose exact Jaccard reaches `threshold` (yielded as (a, b, similarity), a < b).
    A document linked to none becomes a representative itself while fewer than `max_representatives` exist;
    past that it is yielded as (id, None, 0.0), unchecked, for the caller to count. So every family in the
    bucket is found, however many there are up to the cap, and a bucket of n documents costs at most
    n * max_representatives checks (n - 1 for a bucket of copies of one page), never n**2 / 2.
    Representatives whose signature estimate is below `estimate_floor` are not checked exactly (the LSH
    margin: an estimate that far below a true duplicate's Jaccard is many standard deviations off).
    Missed, as with any leader clustering: a pair whose two documents duplicate different representatives
    and not each other's representative (two families bridged by non-representatives).
    """
    rep_ids: list[str] = []
    rep_sigs: np.ndarray | None = None
    rep_shingles: list[np.ndarray] = []
    for doc_id, sig, doc_shingles in members:
        linked = False
        if rep_ids:
            assert rep_sigs is not None
            estimates = np.count_nonzero(rep_sigs[: len(rep_ids)] == sig, axis=1) / len(sig)
            for i in np.flatnonzero(estimates >= estimate_floor).tolist():
                similarity = sorted_jaccard(rep_shingles[i], doc_shingles)
                if similarity >= threshold:
                    a, b = sorted((rep_ids[i], doc_id))
                    yield a, b, similarity
                    linked = True
        if linked:
            continue
        if len(rep_ids) >= max_representatives:
            yield doc_id, None, 0.0
            continue
        if rep_sigs is None:
            rep_sigs = np.empty((max_representatives, len(sig)), dtype=sig.dtype)
        rep_sigs[len(rep_ids)] = sig
        rep_ids.append(doc_id)
        rep_shingles.append(doc_shingles)
