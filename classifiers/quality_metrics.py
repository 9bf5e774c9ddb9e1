"""Agreement of a score with 0-5 annotations: Spearman, F1 at a threshold, the confusion matrix.

The quality model and the DeepSeekMath relevance score are measured against the same held-out annotations with
the same functions, so the two columns of `train-quality`'s report compare like with like. The relevance score
lives on another scale ([0, 1], "is this math?"): Spearman needs no common scale, and for F1 and the confusion
matrix `labels_by_rank` puts it on the 0-5 scale by rank, giving it the label histogram of the training
annotations (quantile matching), the most favourable mapping a monotone score can get without seeing the
held-out labels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from classifiers.metrics import precision_recall

N_LABELS = 6  # scores 0..5


def average_ranks(values: Sequence[float]) -> list[float]:
    """Ranks 1..n, tied values sharing their average rank (Spearman's convention)."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Spearman's rank correlation (None where either side is constant or there are fewer than 2 items)."""
    if len(a) != len(b):
        raise ValueError(f"spearman needs equal lengths, got {len(a)} and {len(b)}")
    if len(a) < 2:
        return None
    ra, rb = average_ranks(a), average_ranks(b)
    ma, mb = sum(ra) / len(ra), sum(rb) / len(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb, strict=True))
    va = sum((x - ma) ** 2 for x in ra)
    vb = sum((y - mb) ** 2 for y in rb)
    if va == 0 or vb == 0:
        return None
    return cov / math.sqrt(va * vb)


def to_label(score: float) -> int:
    """A model's real-valued score as a 0-5 label: clipped, rounded half up (2.5 counts as 3)."""
    return math.floor(min(max(score, 0.0), N_LABELS - 1) + 0.5)


def confusion_matrix(truth: Sequence[int], predicted: Sequence[int]) -> list[list[int]]:
    """6 x 6 counts: row = annotated label, column = predicted label."""
    matrix = [[0] * N_LABELS for _ in range(N_LABELS)]
    for t, p in zip(truth, predicted, strict=True):
        matrix[t][p] += 1
    return matrix


def f1_at(truth: Sequence[int], predicted: Sequence[int], threshold: int) -> dict[str, float]:
    """Precision, recall and F1 of "label >= threshold" (FineMath's 3+ and 4+ subsets)."""
    precision, recall = precision_recall([t >= threshold for t in truth], [p >= threshold for p in predicted])
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def labels_by_rank(values: Sequence[float], reference: Sequence[int]) -> list[int]:
    """0-5 labels for `values` by rank, so that their histogram matches `reference`'s proportions."""
    if not reference:
        raise ValueError("labels_by_rank needs a non-empty reference histogram")
    counts = [0] * N_LABELS
    for label in reference:
        counts[label] += 1
    bounds, cumulative = [], 0
    for count in counts:
        cumulative += count
        bounds.append(cumulative / len(reference) * len(values))
    labels = [0] * len(values)
    for position, index in enumerate(sorted(range(len(values)), key=lambda i: values[i])):
        labels[index] = next(label for label, bound in enumerate(bounds) if position < bound)
    return labels


def agreement(truth: Sequence[int], scores: Sequence[float], labels: Sequence[int], threshold: int) -> dict:
    """Everything the report says about one scorer: `scores` for Spearman, `labels` (0-5) for the rest."""
    return {
        "n": len(truth),
        "spearman": spearman([float(t) for t in truth], list(scores)),
        f"f1_at_{threshold}": f1_at(truth, labels, threshold),
        "exact": sum(1 for t, p in zip(truth, labels, strict=True) if t == p) / len(truth) if truth else 0.0,
        "confusion": confusion_matrix(truth, labels),
    }
