"""Main-content selection that keeps the math: trafilatura's text unless it demonstrably lost part of the page.

trafilatura is the most precise main-content extractor we have (it drops navigation, sidebars and comment
chrome best), but on the pages where web math lives it sometimes keeps the wrong block: a forum thread
reduced to the site's announcement banner, a long textbook chapter cut to its first sections, a Q&A page
without its answers. resiliparse's main-content mode removes boilerplate by element names and roles
instead, so it keeps every post of a thread, at the cost of some chrome.

Both run on the same tree, after the formulas were rewritten as LaTeX (`crawl.math_markup`), so the
page's formulas can be counted in each text. trafilatura's text is kept unless either
- the resiliparse text holds formulas that trafilatura's lacks, more than the other way round: a formula
  lost is content lost, whatever the block it sat in; or
- trafilatura found no main content, or its text is less than `1 / MIN_LENGTH_RATIO` of resiliparse's:
  it kept a fragment of the page (measured on magic-html's forum threads: the length rule alone lifts
  gold-line recall from 0.63 to 0.84 while trafilatura-eval's must-not snippets lose 2 of 413).
Formulas inside code (marked by `crawl.code_markup`) are not counted: a `$` in a shell prompt is no
formula. The choice and its evidence are recorded (`MainText`), so a page's `stages` say which extractor was used.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass

from lxml import etree
from resiliparse.extract.html2text import extract_plain_text

from crawl.code_markup import NO_CODE, CodeMarks
from crawl.deadline import NO_DEADLINE, Deadline
from crawl.extract import drop_unread_scripts, trafilatura_text, whole_page_text

log = logging.getLogger(__name__)

TRAFILATURA = "trafilatura"
RESILIPARSE = "resiliparse"
WHOLE_PAGE = "whole_page"  # neither found main content: tiny or unusual pages keep all their text

# trafilatura's text shorter than resiliparse's by this factor means it kept a fragment of the page.
MIN_LENGTH_RATIO = 2.0

# A formula as it appears in extracted text: $$..$$, $..$, \(..\), \[..\], \begin{env}..\end{env}.
# Inline $..$ follows pandoc's tex_math_dollars rule, which keeps prices out ("$5 and $10"): no space
# inside either delimiter, and no digit right after the closing one. No body may contain its own opening or
# closing delimiter, so each scan from an opening delimiter stops at the next one: linear in the text, even
# with thousands of unclosed delimiters.
_FORMULA_RE = re.compile(
    r"\$\$[^$]{1,4000}\$\$"
    r"|\$(?=[^\s$])[^$\n]{0,1000}?(?<=\S)\$(?!\d)"
    r"|\\\((?:(?!\\[()]).){1,1000}\\\)"
    r"|\\\[(?:(?!\\[\[\]]).){1,4000}\\\]"
    r"|\\begin\{([a-zA-Z]+\*?)\}(?:(?!\\(?:begin|end)\{).){1,8000}\\end\{\1\}",
    re.S,
)
_WS_RE = re.compile(r"\s+")


def formula_counts(text: str) -> Counter[str]:
    """The formulas in `text` as a multiset of their whitespace-free source."""
    return Counter(_WS_RE.sub("", m.group(0)) for m in _FORMULA_RE.finditer(text))


@dataclass(frozen=True)
class MainText:
    """A page's main text and how it was chosen."""

    text: str
    extractor: str  # TRAFILATURA, RESILIPARSE or WHOLE_PAGE
    reason: str  # why this extractor: "default", "formulas", "coverage", "no_main_content"
    formulas: int  # formulas in `text`


def resiliparse_text(root: etree._Element) -> str:
    """resiliparse main-content text of a parsed tree ('' when it fails or finds nothing)."""
    try:
        html = etree.tostring(root, encoding="unicode", method="html")
        return extract_plain_text(html, main_content=True, alt_texts=False, preserve_formatting=True).strip()
    except Exception as exc:  # serialisation or the C++ parser on pathological trees
        log.debug("resiliparse main content failed: %s", exc)
        return ""


def choose_main_text(trafilatura: str | None, resiliparse: str, code: CodeMarks = NO_CODE) -> MainText:
    """Pick between the two extractions of one page (`trafilatura` None: it found no main content). Texts
    with marked code (`crawl.code_markup`) are compared without it and returned with it restored."""
    res_formulas = formula_counts(code.without_code(resiliparse))
    if not trafilatura:
        return MainText(code.restore(resiliparse), RESILIPARSE, "no_main_content", sum(res_formulas.values()))
    traf_formulas = formula_counts(code.without_code(trafilatura))
    lost = sum((res_formulas - traf_formulas).values())
    gained = sum((traf_formulas - res_formulas).values())
    if lost > gained:
        return MainText(code.restore(resiliparse), RESILIPARSE, "formulas", sum(res_formulas.values()))
    if len(resiliparse) >= MIN_LENGTH_RATIO * len(trafilatura):
        return MainText(code.restore(resiliparse), RESILIPARSE, "coverage", sum(res_formulas.values()))
    return MainText(code.restore(trafilatura), TRAFILATURA, "default", sum(traf_formulas.values()))


def select_main_text(
    root: etree._Element, url: str | None = None, deadline: Deadline = NO_DEADLINE, code: CodeMarks = NO_CODE
) -> MainText:
    """Main text of an (already math-rewritten) tree: trafilatura's, or resiliparse's where it keeps more;
    `code`: the marks `crawl.code_markup.mark_code` left in the tree, restored in the text."""
    resiliparse = resiliparse_text(root)  # serialised before trafilatura sees the tree
    deadline.check()
    drop_unread_scripts(root)  # not before resiliparse, whose main-content choice changes without them
    trafilatura = trafilatura_text(root, url)
    deadline.check()
    if not trafilatura and not resiliparse:
        text = whole_page_text(root)
        deadline.check()
        formulas = sum(formula_counts(code.without_code(text)).values())
        return MainText(code.restore(text), WHOLE_PAGE, "no_main_content", formulas)
    return choose_main_text(trafilatura, resiliparse, code)
