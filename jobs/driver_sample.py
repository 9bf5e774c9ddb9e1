"""A bounded, reproducible sample of a DataFrame for the driver: the first `cap` rows in a stable-hash order.

fastText trains on one machine, so the classifier job and `corpus iterate` must bring training texts to the
driver; how many must not depend on the crawl. `take_first` draws the sample in Spark and hands the driver
`cap` rows at most, whatever the size of the input: it counts the rows, collects only the sort keys of the
rows under a hash threshold that holds about `cap` of them, and then the rows up to the `cap`-th key. The
order key is unique and starts with a number in [0, 1) spread evenly (a stable hash of the row), so the
sample is the same on every run and every cluster, and is a uniform sample of the input.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pyspark.sql import Column, DataFrame, Row
from pyspark.sql import functions as F

MARGIN = 1.25  # keys collected per wanted row (a binomial draw falls short of its mean now and then)


def take_first(df: DataFrame, order: Sequence[str], cap: int, columns: Sequence[str]) -> list[Row]:
    """The first `cap` rows of `df` in the order of `order` (unique; its first column a fraction in [0, 1)
    spread evenly), with `order` and `columns`, sorted by `order`. The driver receives per-task counts,
    about `MARGIN * cap` keys and `cap` rows, however large `df` is. `df` is read two or three times:
    persist it if it is costly to compute."""
    if cap <= 0:
        return []
    wanted = [*order, *(c for c in columns if c not in order)]
    total = df.count()
    if total <= cap:
        return _sorted(df.select(*wanted).collect(), order)
    fraction = F.col(order[0])
    threshold = min(1.0, (MARGIN * cap + 16) / total)
    while True:
        keys = df.where(fraction < threshold).select(*order).collect()
        if len(keys) >= cap or threshold >= 1.0:
            break
        threshold = min(1.0, threshold * 2)
    first = _sorted(keys, order)[:cap]
    if len(wanted) == len(order):  # the keys are the rows
        return first
    rows = df.where(at_most(order, [first[-1][c] for c in order])).select(*wanted).collect()
    return _sorted(rows, order)


def at_most(columns: Sequence[str], values: Sequence[Any]) -> Column:
    """`(columns) <= (values)` in lexicographic order, as a Spark condition."""
    head, value = F.col(columns[0]), F.lit(values[0])
    if len(columns) == 1:
        return head <= value
    return (head < value) | ((head == value) & at_most(columns[1:], values[1:]))


def _sorted(rows: list[Row], order: Sequence[str]) -> list[Row]:
    return sorted(rows, key=lambda r: tuple(r[c] for c in order))
