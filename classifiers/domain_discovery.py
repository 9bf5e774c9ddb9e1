"""The decisions of DeepSeekMath's recall loop, as pure functions over scored pages (no Spark, no models).

One round of `mathforge corpus iterate` scores every page of the pool with that round's classifier; what
it then decides is here:

* `collect`: the top pages by score, at or above a score floor, up to a token budget;
* `overlap`: how much of this round's collection the previous round had already collected (the loop stops
  at 98%, DeepSeekMath's criterion);
* `domain_shares`: each domain's share of pages collected; domains above `--domain-share` (10% in
  DeepSeekMath) are math-domain candidates;
* `propose_prefixes`: under those domains, the URL-path prefixes (`/questions/`) with their page counts,
  collected counts and sample URLs; `auto_accept` marks the ones whose own collected share and count clear
  a bar, `read_accept_file` reads the ones a person accepted instead; `guarded_accept` adds the guards that
  keep automatic acceptance from running away (the prefix's collected pages score like held-out seeds, its
  quality, a cap on the seeds a round adds), each proposal with its decision's reason;
* `split_heldout`, `quantile`, `seed_warnings`: the held-out seeds whose scores are the reference, and the
  warnings for a seed set too small or too unlike the pool to train on;
* `prefix_seeds`: the uncollected pages under accepted prefixes, which join the next round's seeds;
* `label_metrics`: recall and precision of a collection against page labels, when the input has them.

A page is a `ScoredPage`; ties in score are broken by id, so every decision is the same on every run.

These are the decisions' definitions, over pages in memory. `jobs/iterate_corpus.py` takes the same
decisions as Spark aggregations over a pool of any size (calling `url_prefix`, `under_prefix` and
`label_metrics_from_counts` inside them); the tests check that both agree.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

CHARS_PER_TOKEN = 4  # token budgets count ~4 characters per token (no tokenizer is trained at this point)


def approx_tokens(n_chars: int) -> int:
    """Tokens of a text of `n_chars` characters, as the token budget counts them."""
    return max(1, math.ceil(n_chars / CHARS_PER_TOKEN)) if n_chars > 0 else 0


@dataclass(frozen=True)
class ScoredPage:
    """What the loop knows about one pool page in one round (the text stays in the pool)."""

    id: str
    url: str
    domain: str
    n_chars: int
    score: float
    label: bool | None = None  # True: math, False: not math, None: unlabelled
    quality: float | None = None  # the quality score (0-5), when the pool has one


def url_prefix(url: str, depth: int = 1) -> str:
    """The first `depth` path segments of `url` as a prefix (`/questions/`); pages directly under the root
    (or with fewer segments) fall under `/`."""
    try:
        path = urlsplit(url).path or "/"
    except ValueError:
        return "/"
    segments = [s for s in path.split("/") if s]
    if len(segments) <= depth:  # a leaf at this depth: the page itself is not a folder
        segments = segments[: max(0, len(segments) - 1)]
    segments = segments[:depth]
    return "/" + "".join(f"{s}/" for s in segments)


def under_prefix(url: str, prefix: str) -> bool:
    """Whether `url`'s path starts with `prefix` (`/` holds every page of the domain)."""
    try:
        path = urlsplit(url).path or "/"
    except ValueError:
        return False
    return path.startswith(prefix)


def collect(
    pages: Iterable[ScoredPage], min_score: float, token_budget: int | None = None
) -> list[ScoredPage]:
    """Pages scoring at least `min_score`, best first (ties by id), cut when the next page would pass the
    token budget (None: no budget). The budget is a cap: a page that does not fit ends the collection."""
    ranked = sorted((p for p in pages if p.score >= min_score), key=lambda p: (-p.score, p.id))
    if token_budget is None:
        return ranked
    out: list[ScoredPage] = []
    used = 0
    for page in ranked:
        tokens = approx_tokens(page.n_chars)
        if used + tokens > token_budget:
            break
        out.append(page)
        used += tokens
    return out


def overlap(current: Iterable[str], previous: Iterable[str] | None) -> float | None:
    """Share of this round's collected ids that the previous round had collected (None in round 1); an
    empty collection overlaps fully."""
    if previous is None:
        return None
    cur = set(current)
    if not cur:
        return 1.0
    return len(cur & set(previous)) / len(cur)


@dataclass(frozen=True)
class DomainShare:
    domain: str
    pages: int
    collected: int

    @property
    def share(self) -> float:
        return self.collected / self.pages if self.pages else 0.0


def domain_shares(pages: Iterable[ScoredPage], collected_ids: set[str]) -> dict[str, DomainShare]:
    """Per domain: pool pages, collected pages."""
    total: Counter[str] = Counter()
    hit: Counter[str] = Counter()
    for page in pages:
        total[page.domain] += 1
        hit[page.domain] += page.id in collected_ids
    return {d: DomainShare(d, total[d], hit[d]) for d in sorted(total)}


@dataclass(frozen=True)
class PrefixProposal:
    """A URL-path prefix under a math-domain candidate, with what a person needs to judge it."""

    domain: str
    prefix: str
    pages: int
    collected: int
    domain_share: float
    sample_urls: tuple[str, ...]
    accepted: bool = False
    median_score: float | None = None  # median score of its collected pages
    mean_quality: float | None = None  # mean quality score of its pages (None: no quality scores)
    decision: str = ""  # why it was accepted or not

    @property
    def key(self) -> str:
        """`domain/prefix`, the form a person writes in an accept file."""
        return f"{self.domain}{self.prefix}"

    @property
    def share(self) -> float:
        return self.collected / self.pages if self.pages else 0.0

    def to_dict(self) -> dict:
        return {
            **asdict(self),
            "key": self.key,
            "share": round(self.share, 4),
            "sample_urls": list(self.sample_urls),
        }


def propose_prefixes(
    pages: Sequence[ScoredPage],
    collected_ids: set[str],
    shares: Mapping[str, DomainShare],
    min_domain_share: float,
    depth: int = 1,
    samples: int = 3,
) -> list[PrefixProposal]:
    """Prefixes holding at least one collected page, under every domain whose collected share exceeds
    `min_domain_share`; sample URLs are collected ones first, then uncollected, each sorted. Each carries
    the median score of its collected pages and the mean quality score of its pages (None without one)."""
    candidates = {d for d, s in shares.items() if s.share > min_domain_share}
    groups: dict[tuple[str, str], list[ScoredPage]] = defaultdict(list)
    for page in pages:
        if page.domain in candidates:
            groups[(page.domain, url_prefix(page.url, depth))].append(page)
    proposals = []
    for (domain, prefix), members in sorted(groups.items()):
        hits = sorted(p.url for p in members if p.id in collected_ids)
        if not hits:
            continue
        misses = sorted(p.url for p in members if p.id not in collected_ids)
        qualities = [p.quality for p in members if p.quality is not None]
        proposals.append(
            PrefixProposal(
                domain=domain,
                prefix=prefix,
                pages=len(members),
                collected=len(hits),
                domain_share=round(shares[domain].share, 4),
                sample_urls=tuple((hits + misses)[:samples]),
                median_score=round(quantile([p.score for p in members if p.id in collected_ids], 0.5), 4),
                mean_quality=round(sum(qualities) / len(qualities), 4) if qualities else None,
            )
        )
    return proposals


def auto_accept(
    proposals: Iterable[PrefixProposal], min_share: float, min_collected: int
) -> list[PrefixProposal]:
    """Accept the prefixes whose own collected share reaches `min_share` with at least `min_collected`
    collected pages (a stray false positive in a domain's `/blog/` does not open it)."""
    return [
        PrefixProposal(**{**asdict(p), "accepted": p.collected >= min_collected and p.share >= min_share})
        for p in proposals
    ]


# the reasons a proposal row gives for its decision, checked in this order
ACCEPTED = "accepted"
FEW_PAGES = "rejected: too few collected pages"
LOW_SHARE = "rejected: low collected share"
LOW_SCORE = "rejected: collected pages score below the held-out seeds"
LOW_QUALITY = "rejected: low quality"
CAPPED = "deferred: seed cap reached this round"
EARLIER = "accepted in an earlier round"


def quantile(values: Sequence[float], q: float) -> float:
    """The `q` quantile of `values` by linear interpolation (Spark's `percentile`, numpy's default); 0.0 for
    none."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    pos = q * (len(ordered) - 1)
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def guarded_accept(
    proposals: Iterable[PrefixProposal],
    min_share: float,
    min_collected: int,
    seed_score: float | None,
    score_tolerance: float,
    min_quality: float | None = None,
    max_new_seeds: int | None = None,
    earlier: Iterable[str] = (),
) -> list[PrefixProposal]:
    """`auto_accept` with guards, every proposal given its decision's reason. Besides the collected share
    and count, a prefix is accepted only if its collected pages' median score reaches `seed_score` (the
    held-out seeds' reference score; None: no reference) less `score_tolerance`, and its pages' mean
    quality reaches `min_quality` (when given). Of the prefixes passing, best median score first (ties by
    key), those whose uncollected pages (the seeds they add) fit in `max_new_seeds` together are accepted;
    the first that does not fit ends the round's acceptances, the rest are deferred. A prefix accepted in
    an `earlier` round stays accepted and adds no seeds."""
    earlier = set(earlier)
    decided = []
    for p in proposals:
        if p.key in earlier:
            reason = EARLIER
        elif p.collected < min_collected:
            reason = FEW_PAGES
        elif p.share < min_share:
            reason = LOW_SHARE
        elif seed_score is not None and (p.median_score or 0.0) < seed_score - score_tolerance:
            reason = LOW_SCORE
        elif min_quality is not None and (p.mean_quality is None or p.mean_quality < min_quality):
            reason = LOW_QUALITY
        else:
            reason = ACCEPTED
        decided.append(PrefixProposal(**{**asdict(p), "decision": reason}))
    if max_new_seeds is not None:
        passing = sorted(
            (p for p in decided if p.decision == ACCEPTED), key=lambda p: (-(p.median_score or 0), p.key)
        )
        used, capped = 0, set()
        for p in passing:
            used += p.pages - p.collected
            if used > max_new_seeds:
                capped.add(p.key)
        decided = [
            PrefixProposal(**{**asdict(p), "decision": CAPPED}) if p.key in capped else p for p in decided
        ]
    return [PrefixProposal(**{**asdict(p), "accepted": p.decision in (ACCEPTED, EARLIER)}) for p in decided]


def split_heldout(
    texts: Sequence[str], fraction: float, minimum: int, seed: int = 0
) -> tuple[list[str], list[str]]:
    """(training, held-out) seeds: the held-out ones are the `fraction` of texts first in a stable hash
    order (at least `minimum`, and none when fewer than twice `minimum` + 1 texts are given: too few to spare
    any), each list in the given order."""
    import xxhash

    k = max(minimum, round(fraction * len(texts))) if len(texts) > 2 * minimum and fraction > 0 else 0
    order = sorted(
        range(len(texts)),
        key=lambda i: (xxhash.xxh64_intdigest(texts[i].encode("utf-8", "replace"), seed=seed), i),
    )
    held = set(order[:k])
    return [t for i, t in enumerate(texts) if i not in held], [t for i, t in enumerate(texts) if i in held]


LENGTH_RATIO = (
    5.0  # seeds whose median length is this many times longer or shorter than the pool's: unlike it
)


def seed_warnings(
    given: int,
    min_seeds: int,
    heldout: int,
    seedlike_share: float | None,
    min_seedlike_share: float,
    seed_median_chars: float,
    pool_median_chars: float,
) -> list[str]:
    """Warnings for a seed set too small or too unlike the pool to train on: fewer than `min_seeds` given;
    no held-out seeds (no reference score, no score guard); under `min_seedlike_share` of the pool scoring
    at least the held-out seeds' reference score (the classifier tells the seeds apart from the pool, not
    math from the rest); the seeds' median length `LENGTH_RATIO` times the pool's or less than its
    1/`LENGTH_RATIO` (solutions without their page: the classifier learns length)."""
    out = []
    if given < min_seeds:
        out.append(
            f"only {given} seeds given, fewer than --min-seeds {min_seeds}: too few to train a classifier on"
        )
    if heldout == 0:
        out.append(
            "no seeds held out (too few given): no reference score, prefixes are accepted unguarded by it"
        )
    if seedlike_share is not None and seedlike_share < min_seedlike_share:
        out.append(
            f"seeds unlike the pool: {seedlike_share:.4f} of the pool scores like the held-out seeds "
            f"(under --min-seedlike-share {min_seedlike_share})"
        )
    if pool_median_chars > 0 and seed_median_chars > 0:
        ratio = seed_median_chars / pool_median_chars
        if ratio > LENGTH_RATIO or ratio < 1 / LENGTH_RATIO:
            out.append(
                f"seeds unlike the pool: median length {seed_median_chars:.0f} characters against the pool's "
                f"{pool_median_chars:.0f}"
            )
    return out


def read_accept_file(path: str | Path) -> set[str]:
    """Prefix keys (`domain/prefix`, e.g. `math.stackexchange.com/questions/`) a person accepted: one per
    line, `#` starts a comment. A missing file accepts nothing yet (the person has not written it)."""
    p = Path(path)
    if not p.is_file():
        return set()
    keys = set()
    for line in p.read_text(encoding="utf-8").splitlines():
        key = line.split("#", 1)[0].strip()
        if key:
            keys.add(key if "/" in key else key + "/")
    return keys


def accept_listed(proposals: Iterable[PrefixProposal], keys: set[str]) -> list[PrefixProposal]:
    """Mark the proposals a person listed as accepted."""
    return [PrefixProposal(**{**asdict(p), "accepted": p.key in keys}) for p in proposals]


def split_key(key: str) -> tuple[str, str]:
    """`domain/prefix` → (domain, `/prefix`)."""
    domain, _, rest = key.partition("/")
    return domain, "/" + rest


def prefix_seeds(
    pages: Iterable[ScoredPage], accepted_keys: Iterable[str], collected_ids: set[str]
) -> list[ScoredPage]:
    """Uncollected pages under accepted prefixes, sorted by id: the next round's new seeds."""
    by_domain: dict[str, list[str]] = defaultdict(list)
    for key in accepted_keys:
        domain, prefix = split_key(key)
        by_domain[domain].append(prefix)
    out = [
        p
        for p in pages
        if p.id not in collected_ids
        and p.domain in by_domain
        and any(under_prefix(p.url, prefix) for prefix in by_domain[p.domain])
    ]
    return sorted(out, key=lambda p: p.id)


def label_metrics(pages: Iterable[ScoredPage], collected_ids: set[str]) -> dict[str, float | int] | None:
    """Recall and precision of the collection over labelled pages (None when no page is labelled)."""
    counts: Counter[tuple[bool | None, bool]] = Counter((p.label, p.id in collected_ids) for p in pages)
    return label_metrics_from_counts(counts)


def label_metrics_from_counts(
    counts: Mapping[tuple[bool | None, bool], int],
) -> dict[str, float | int] | None:
    """`label_metrics` from page counts per (label, collected): what a Spark aggregation gives."""
    tp = counts.get((True, True), 0)
    fp = counts.get((False, True), 0)
    fn = counts.get((True, False), 0)
    labelled = sum(c for (label, _), c in counts.items() if label is not None)
    if not labelled:
        return None
    return {
        "labelled": labelled,
        "math": tp + fn,
        "true_positives": tp,
        "false_positives": fp,
        "recall": round(tp / (tp + fn), 4) if tp + fn else 1.0,
        "precision": round(tp / (tp + fp), 4) if tp + fp else 1.0,
    }
