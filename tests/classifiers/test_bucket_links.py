"""Near-dup links inside an LSH bucket too large for all pairs: every family found, work bounded, cap counted."""

from __future__ import annotations

import itertools

import numpy as np

from classifiers.minhash import MinHasher, bucket_links, jaccard, shingle_set, sorted_jaccard

HASHER = MinHasher()
BOILERPLATE = "cookie notice accept all cookies privacy policy terms of use site map contact us"


def _page(topic: int, variant: int = 0, words: int = 80) -> str:
    """A page on the shared boilerplate: `topic` decides the body, `variant` edits its last two words."""
    body = [f"w{topic}x{i}" for i in range(words)]
    if variant:
        body[-2:] = [f"edit{variant}a", f"edit{variant}b"]
    return BOILERPLATE + " " + " ".join(body)


def _members(texts: dict[str, str]) -> list[tuple[str, np.ndarray, np.ndarray]]:
    rows = []
    for doc_id in sorted(texts):
        shingles = np.unique(HASHER.shingle_hashes(texts[doc_id]))
        rows.append((doc_id, HASHER.signature_of_hashes(shingles), shingles))
    return rows


def _true_pairs(texts: dict[str, str], threshold: float) -> set[tuple[str, str]]:
    sets = {k: shingle_set(v) for k, v in texts.items()}
    return {
        (a, b) for a, b in itertools.combinations(sorted(texts), 2) if jaccard(sets[a], sets[b]) >= threshold
    }


def _components(links: list[tuple[str, str | None, float]]) -> list[set[str]]:
    groups: list[set[str]] = []
    for a, b, _ in links:
        if b is None:
            continue
        touching = [g for g in groups if a in g or b in g]
        merged = {a, b}.union(*touching)
        groups = [g for g in groups if g not in touching] + [merged]
    return groups


def test_every_duplicate_family_of_a_large_bucket_is_found():
    # two families of near copies and unrelated pages, all in one bucket (they share the boilerplate);
    # the ids put the unrelated pages first, so a star from the smallest id would find no family at all
    texts = {f"a-{i}": _page(1, i) for i in range(4)}
    texts |= {f"b-{i}": _page(2, i) for i in range(3)}
    texts |= {f"0-unrelated-{i}": _page(10 + i) for i in range(5)}
    truth = _true_pairs(texts, 0.8)
    assert truth == {p for p in itertools.combinations(sorted(texts), 2) if p[0][0] == p[1][0] != "0"}
    links = list(bucket_links(_members(texts), 0.8, max_representatives=10))
    groups = _components(links)
    assert sorted(map(sorted, groups)) == [
        sorted(f"a-{i}" for i in range(4)),
        sorted(f"b-{i}" for i in range(3)),
    ]
    for a, b, similarity in links:  # each link is a verified pair, reported a < b with its exact Jaccard
        assert a < b and (a, b) in truth and similarity >= 0.8
    assert not any(b is None for _, b, _ in links)


def test_documents_past_the_representative_cap_are_reported_unchecked():
    texts = {f"0-unrelated-{i}": _page(10 + i) for i in range(3)}  # three representatives fill the cap
    texts |= {"a-0": _page(1), "a-1": _page(1, 1), "b-0": _page(2)}
    links = list(bucket_links(_members(texts), 0.8, max_representatives=3))
    assert {(a, b) for a, b, _ in links} == {("a-0", None), ("a-1", None), ("b-0", None)}


def test_a_huge_bucket_of_copies_costs_linear_work():
    texts = {f"d{i:05d}": _page(1, i % 3) for i in range(3000)}  # three variants of one page, 3000 times
    links = list(bucket_links(_members(texts), 0.8, max_representatives=50))
    # one representative (d00000), every other page linked to it once: n - 1 links and checks, where all
    # pairs would be ~n**2 / 2 checks and ~n**2 / 6 links between identical variants
    assert len(links) == 2999 and {a for a, _, _ in links} == {"d00000"}


def test_signature_floor_gates_the_exact_check():
    members = _members({"a-0": _page(1), "a-1": _page(1, 1)})
    assert [(a, b) for a, b, _ in bucket_links(members, 0.8, 5, estimate_floor=0.7)] == [("a-0", "a-1")]
    assert list(bucket_links(members, 0.8, 5, estimate_floor=1.01)) == []  # no estimate reaches it


def test_sorted_jaccard_is_the_set_jaccard():
    a, b = np.array([1, 3, 5, 7], dtype=np.uint32), np.array([3, 4, 5], dtype=np.uint32)
    assert sorted_jaccard(a, b) == jaccard({1, 3, 5, 7}, {3, 4, 5}) == 2 / 5
    assert sorted_jaccard(a[:0], b[:0]) == 1.0
