"""A per-page time budget that the page's own loops enforce.

One hostile page (a hundred thousand formulas, a megabyte table) must not stall a Spark task. Signal-based
timeouts are no answer there: `signal.alarm` works only in the main thread, and Spark runs tasks in worker
threads. So the budget is cooperative: the per-page loops (latexify's passes, the stages of the math
decision) call `Deadline.check()`, which raises `PageTimeout` once the page has used its time; the job
counts the page and goes on with the next one. Work that runs in one uninterruptible call (trafilatura,
resiliparse, a regex over one text node) is checked before and after, so a page can overrun its budget by
at most one such step, whose cost is linear in the page's size.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass


class PageTimeout(Exception):
    """A page used up its time budget; the job counts it as `error:page_timeout` and skips it."""


@dataclass(frozen=True)
class Deadline:
    """The monotonic-clock time by which a page must be done (infinite: no budget)."""

    expires_at: float = math.inf

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        """A deadline `seconds` from now; 0 or less means no budget at all."""
        return cls(time.monotonic() + seconds) if seconds > 0 else NO_DEADLINE

    def check(self) -> None:
        """Raise `PageTimeout` if the deadline has passed (cheap enough to call once per element)."""
        if self.expires_at != math.inf and time.monotonic() > self.expires_at:
            raise PageTimeout("page exceeded its time budget")


NO_DEADLINE = Deadline()
