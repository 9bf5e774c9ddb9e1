"""The keep rules (`pipeline.filters`): one class per rule, each with its drop reason, applied in order."""

from __future__ import annotations

import dataclasses

import pytest

from crawl.prefilter import PrefilterResult
from pipeline.filters import (
    FILTERS,
    LanguageScore,
    LanguageSet,
    MathBar,
    PageFilter,
    PageFilterConfig,
    TextLength,
    drop_reason,
    page_filters,
)
from pipeline.math_decision import MathDecision
from pipeline.route import PageAnalysis

TEXT = "Solve $x^2 = 4$: the roots are $x = 2$ and $x = -2$, since both square to four."


def routed(
    text: str = TEXT,
    *,
    lang: str = "en",
    lang_score: float = 0.9,
    extracted: bool = True,
    score: float = 0.8,
    is_math: bool = True,
) -> PageAnalysis:
    decision = MathDecision(PrefilterResult(True, ("tex_commands",)), 0.5, extracted, score, is_math, text)
    return PageAnalysis("https://a.example/p", "utf-8", "http-header", decision, lang, lang_score)


def test_each_rule_has_its_reason():
    config = PageFilterConfig(langs="en,de", min_lang_score=0.5, min_chars=20)
    cases = {
        "drop:empty_text": routed(""),
        "drop:too_short": routed("x = 2"),
        "drop:lang": routed(lang="fr"),
        "drop:lang_score": routed(lang_score=0.4),
        "drop:not_math": routed(is_math=False, score=0.2),
    }
    filters = page_filters(config)
    for reason, page in cases.items():
        assert drop_reason(filters, page) == reason
    assert drop_reason(filters, routed()) is None
    assert drop_reason(filters, routed(lang="de")) is None
    floor = page_filters(dataclasses.replace(config, min_math_score=0.6))
    assert drop_reason(floor, routed(score=0.59, is_math=True)) == "drop:math_score"
    assert drop_reason(floor, routed(score=0.6, is_math=False)) is None  # the floor replaces the verdict


def test_rules_apply_in_order_and_the_first_reason_counts():
    assert (TextLength, MathBar, LanguageSet, LanguageScore) == FILTERS
    config = PageFilterConfig(langs="de", min_lang_score=0.95, min_chars=20)
    assert drop_reason(page_filters(config), routed("x = 2", lang="fr", lang_score=0.1)) == "drop:too_short"
    assert drop_reason(page_filters(config), routed(lang="fr", lang_score=0.1)) == "drop:lang"
    # the route identifies languages of math pages only: a page that is not math is counted as such
    not_math = routed(lang="unknown", lang_score=0.0, is_math=False, score=0.1)
    assert drop_reason(page_filters(config), not_math) == "drop:not_math"


def test_all_languages_and_no_text_at_all():
    config = PageFilterConfig(min_chars=0)  # 0 still drops pages without any text
    assert config.lang_set() is None and PageFilterConfig(langs=" en , zh,").lang_set() == {"en", "zh"}
    assert drop_reason(page_filters(config), routed("")) == "drop:empty_text"
    assert drop_reason(page_filters(config), routed(lang="xx")) is None


@pytest.mark.parametrize("floor", [None, 0.0])
def test_a_page_without_main_text_is_never_kept(floor):
    """A page the route did not send to math extraction has the fast pass's whole-page text: scored, never
    published, whatever its scores say."""
    bar = MathBar(PageFilterConfig(min_math_score=floor))
    assert bar.reason(routed(extracted=True)) is None
    assert bar.reason(routed(extracted=False)) == ("drop:not_math" if floor is None else "drop:math_score")


def test_a_new_rule_is_one_class():
    class NoShouting(PageFilter):
        def reason(self, page: PageAnalysis) -> str | None:
            return "drop:shouting" if page.text.isupper() else None

    config = PageFilterConfig()
    filters = [*page_filters(config), NoShouting(config)]
    assert drop_reason(filters, routed("SOLVE $X^2 = 4$ NOW, IT IS EASY AND QUICK")) == "drop:shouting"
    assert drop_reason(filters, routed()) is None
