"""Metrics of a binary decision about documents, computed one way for every caller.

A metric measures a classifier's verdicts against labels, so it lives with the classifiers: the math
classifier's held-out report, the prefilter and decision tests and `bench/math_extraction.py` all report
precision and recall through this function, so a figure a test asserts and a figure a model sidecar or
benchmark reports cannot drift apart.
"""

from __future__ import annotations


def precision_recall(truth: list[bool], predicted: list[bool]) -> tuple[float, float]:
    """Precision and recall of the positive class (0.0 where a denominator is empty)."""
    tp = sum(1 for t, p in zip(truth, predicted, strict=True) if t and p)
    fp = sum(1 for t, p in zip(truth, predicted, strict=True) if not t and p)
    fn = sum(1 for t, p in zip(truth, predicted, strict=True) if t and not p)
    return (tp / (tp + fp) if tp + fp else 0.0), (tp / (tp + fn) if tp + fn else 0.0)
