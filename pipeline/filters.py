"""The corpus's keep rules, one small class each, applied in order to every routed page.

A filter has one decision: `reason(page)` returns None to keep the page, or the drop reason the job counts
in its stats ("drop:lang", ...). Each reads its own setting from `PageFilterConfig`, whose fields are
`corpus build` flags. Adding a filter is one class here, its field in `PageFilterConfig` and its place in
`FILTERS`; the job neither changes nor learns its name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field

from pipeline.math_decision import keeps_math
from pipeline.route import PageAnalysis

ALL_LANGS = "all"


@dataclass(kw_only=True)
class PageFilterConfig:
    """Settings of the keep rules (one field per filter); `CorpusBuildConfig` is one."""

    langs: str = field(
        default=ALL_LANGS, metadata={"help": "comma-separated lid.176 codes to keep, or 'all'"}
    )
    min_lang_score: float = field(
        default=0.0, metadata={"help": "drop pages whose language probability is lower"}
    )
    min_math_score: float | None = field(
        default=None,
        metadata={
            "help": "drop pages whose math score is lower (0 keeps all); default: the two-stage decision "
            "(score >= 0.5, or >= 0.3 for pages with strong math markup)"
        },
    )
    min_chars: int = field(default=1, metadata={"help": "drop pages whose extracted text is shorter"})

    def lang_set(self) -> frozenset[str] | None:
        """Languages to keep, or None for every language."""
        if self.langs.strip().lower() == ALL_LANGS:
            return None
        return frozenset(code.strip() for code in self.langs.split(",") if code.strip())


class PageFilter(ABC):
    """One keep rule, built from the config."""

    def __init__(self, config: PageFilterConfig):
        self.config = config

    @abstractmethod
    def reason(self, page: PageAnalysis) -> str | None:
        """None to keep the page, else the drop reason counted in the stats."""


class TextLength(PageFilter):
    """Pages without text, or with less than `min_chars` of it."""

    def reason(self, page: PageAnalysis) -> str | None:
        if page.n_chars >= max(1, self.config.min_chars):
            return None
        return "drop:empty_text" if page.n_chars == 0 else "drop:too_short"


class LanguageSet(PageFilter):
    """Pages in a language outside `langs`."""

    def __init__(self, config: PageFilterConfig):
        super().__init__(config)
        self.langs = config.lang_set()

    def reason(self, page: PageAnalysis) -> str | None:
        return None if self.langs is None or page.lang in self.langs else "drop:lang"


class LanguageScore(PageFilter):
    """Pages whose language ID is less sure than `min_lang_score`."""

    def reason(self, page: PageAnalysis) -> str | None:
        return None if page.lang_score >= self.config.min_lang_score else "drop:lang_score"


class MathBar(PageFilter):
    """Pages that are not math (the two-stage verdict), or score under `min_math_score` when it is set.
    A page whose text did not come from math extraction (main content) never passes: its text is the fast
    pass's whole-page text, scored only (`pipeline.route`)."""

    def reason(self, page: PageAnalysis) -> str | None:
        floor = self.config.min_math_score
        if keeps_math(page.decision, floor):
            return None
        return "drop:not_math" if floor is None else "drop:math_score"


# In this order. The math bar comes before the language rules: the route identifies the language of the pages
# the math bar keeps only (lid.176 on every page cost a sixth of the route), so a page that is not math is
# counted "drop:not_math" whatever its language.
FILTERS: tuple[type[PageFilter], ...] = (TextLength, MathBar, LanguageSet, LanguageScore)


def page_filters(config: PageFilterConfig) -> list[PageFilter]:
    """Every keep rule, built from `config`, in the order they apply."""
    return [kind(config) for kind in FILTERS]


def drop_reason(filters: Iterable[PageFilter], page: PageAnalysis) -> str | None:
    """The first filter's drop reason, or None when every filter keeps the page."""
    for page_filter in filters:
        if (reason := page_filter.reason(page)) is not None:
            return reason
    return None
