"""Answer verification with math-verify behind hard timeouts: the reward of GRPO and the score of evaluation.

math-verify's own timeouts are signal alarms: they only work in a process's main thread, and they cannot
interrupt sympy while it sits in one long C call (comparing `9^{9^{9}}` with a number computes a
370-million-digit integer inside one `pow`). So the checks run in a pool of worker processes with math-verify's
timeouts switched off (`parsing_timeout=None`, `timeout_seconds=None`), and the parent enforces a wall-clock
limit per item: a worker past it is killed and replaced, and the item's verdict is `timeout`. A worker that
dies gives `error` for its item only; the rest of the batch is scored. Timeouts and errors are counted and
logged, never folded into "wrong" here: callers decide what a `timeout` is worth (see DESIGN.md, "Known
traps": verl once turned every such failure silently into reward 0).

Nothing here imports torch; math-verify is imported by the workers (and by `check_equal` when called directly).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import multiprocessing as mp
import os
import re
import signal
import time
import weakref
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, Literal

from training.rewards.answers import extract_answer, gold_answer, normalize_answer
from training.rewards.workers import start_worker

__all__ = ["Status", "Verdict", "Verifier", "check_equal"]

logger = logging.getLogger(__name__)

Status = Literal["ok", "no_answer", "timeout", "error"]
Checker = Callable[[str, str], bool]

_LOG_CHARS = 300
_PLAIN_NUMBER_RE = re.compile(r"^-?\d+(?:\.\d+)?$")
_WORDS_RE = re.compile(r"^[A-Za-z]{3,}(?:[ \-][A-Za-z]+)*$")


@dataclass(frozen=True)
class Verdict:
    """One item's result. `correct` is None when nothing was decided (`timeout`, `error`); a prediction with no
    extractable answer (`no_answer`) is decided: wrong. `prediction` and `gold` are the extracted answer
    strings that were compared; `detail` says what went wrong for `timeout` and `error`."""

    correct: bool | None
    status: Status
    prediction: str | None
    gold: str | None
    detail: str = ""


# --- the check itself (runs inside the workers) ----------------------------------------------------------------

_CONFIGS: tuple[Any, ...] | None = None


def _configs() -> tuple[Any, ...]:
    global _CONFIGS
    if _CONFIGS is None:
        from math_verify import ExprExtractionConfig, LatexExtractionConfig

        # Boxed first: the inputs are single answers, so a box (if any survived extraction) is the answer.
        _CONFIGS = (LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig())
    return _CONFIGS


def _as_math(answer: str) -> str:
    """An answer string as math-verify input: wrapped in $...$ unless it is a bare number or already has math
    delimiters, and plain words ("Evelyn", "no solution") as \\text{...}, not products of variables."""
    s = answer.strip()
    if "$" in s or "\\(" in s or "\\[" in s or _PLAIN_NUMBER_RE.match(s):
        return s  # a bare number goes through the plain-expression parser: same value, far cheaper than LaTeX
    if _WORDS_RE.match(s):
        s = f"\\text{{{s}}}"
    return f"${s}$"


def check_equal(pred: str, gold: str) -> bool:
    """Whether the answer `pred` equals the reference `gold`, by math-verify, in this process, with no timeout.

    Both are answer strings (see `training.rewards.answers`), parsed leniently with the LaTeX and plain-expression
    extraction configs; when either side does not parse, the normalised strings are compared. This can hang on
    pathological input: outside a `Verifier` worker, call it only on trusted strings.
    """
    from math_verify import parse, verify

    configs = _configs()
    gold_parsed = parse(_as_math(gold), configs, parsing_timeout=None)
    pred_parsed = parse(_as_math(pred), configs, parsing_timeout=None)
    if not gold_parsed or not pred_parsed:
        return normalize_answer(pred) == normalize_answer(gold) != ""
    return bool(verify(gold_parsed, pred_parsed, timeout_seconds=None))


def _resolve_checker(spec: Checker | str | None) -> Checker:
    if spec is None:
        return check_equal
    if callable(spec):
        return spec
    module, _, name = spec.partition(":")
    obj: Any = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def _worker_main(conn: Connection, checker_spec: Checker | str | None, memory_limit_mb: int | None) -> None:
    """Worker loop: import math-verify once, say "ready", then answer (key, pred, gold) → (key, status, value)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and shuts the pool down
    if memory_limit_mb:
        import resource

        limit = memory_limit_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    # The parent enforces the timeouts: math-verify's "timeout is disabled" warning is expected here.
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    checker = _resolve_checker(checker_spec)
    check_equal("\\frac{1}{2}", "0.5")  # warm up (LaTeX parser, regexes, sympy) before the first timed item
    conn.send(("ready", os.getpid()))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        key, pred, gold = message
        try:
            reply = (key, "ok", bool(checker(pred, gold)))
        except (
            BaseException
        ) as exc:  # MemoryError and RecursionError included: the item fails, the worker lives
            reply = (key, "error", f"{type(exc).__name__}: {exc}"[:_LOG_CHARS])
        conn.send(reply)


# --- the pool (parent side) ------------------------------------------------------------------------------------


class _Worker:
    __slots__ = ("conn", "deadline", "item", "process", "ready", "started")

    def __init__(self, process: Any, conn: Connection) -> None:
        self.process = process
        self.conn = conn
        self.ready = False
        self.started = time.monotonic()
        self.item: tuple[int, str, str] | None = None
        self.deadline = 0.0


def _stop_worker(worker: _Worker) -> None:
    if worker.process.is_alive():
        worker.process.kill()
    worker.process.join(timeout=5.0)
    worker.conn.close()


def _shutdown(workers: list[_Worker]) -> None:
    """Ask every worker to exit, give them two seconds together, then kill what is left."""
    for worker in workers:
        with contextlib.suppress(OSError, ValueError):
            worker.conn.send(None)
    deadline = time.monotonic() + 2.0
    for worker in workers:
        worker.process.join(timeout=max(0.0, deadline - time.monotonic()))
        _stop_worker(worker)
    workers.clear()


def _short(s: str | None) -> str:
    if s is None:
        return "None"
    return repr(s if len(s) <= _LOG_CHARS else s[:_LOG_CHARS] + "...")


class Verifier:
    """A pool of math-verify worker processes with a hard wall-clock timeout per item.

    Use it as a context manager (or call `close()`); workers start in the constructor, import math-verify once,
    and are reused across batches. `stats` counts verdict statuses over the verifier's life; `restarts` counts
    workers killed (timeout) or lost (crash) and replaced. Not thread-safe: one batch at a time.

    `start_method` "forkserver" (default) preloads math-verify in the fork server, so replacing a killed
    worker costs a fork rather than a fresh import (the forkserver preload list is process-wide); "spawn"
    works too. Unlike plain multiprocessing, workers do not re-import the parent's `__main__` (a trainer's
    main module would drag torch into every worker).
    `memory_limit_mb` caps each worker's address space (RLIMIT_AS; off by default): a runaway allocation then
    gives `error` instead of pressure on the machine.

    Test hook: `checker` replaces `check_equal` inside the workers. It is a picklable module-level callable
    (pred, gold) -> bool, or its "module:function" name; tests use it to make one item hang or crash for real.
    """

    def __init__(
        self,
        workers: int | None = None,
        timeout_s: float = 5.0,
        *,
        start_method: str = "forkserver",
        checker: Checker | str | None = None,
        memory_limit_mb: int | None = None,
        startup_timeout_s: float = 120.0,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self.n_workers = workers if workers is not None else max(1, min(4, os.cpu_count() or 1))
        if self.n_workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.timeout_s = float(timeout_s)
        self.startup_timeout_s = float(startup_timeout_s)
        self.stats: Counter[str] = Counter()
        self.restarts = 0
        self._checker = checker
        self._memory_limit_mb = memory_limit_mb
        self._ctx = mp.get_context(start_method)
        if start_method == "forkserver":
            self._ctx.set_forkserver_preload(["math_verify", "training.rewards.verify"])
        self._workers: list[_Worker] = []
        self._finalizer = weakref.finalize(self, _shutdown, self._workers)
        self._failed_starts = 0
        for _ in range(self.n_workers):
            self._workers.append(self._start_worker())

    # -- public API -------------------------------------------------------------------------------------------

    def verify_batch(
        self,
        predictions: Sequence[str],
        golds: Sequence[Any],
        extract: Callable[[str], str | None] = extract_answer,
    ) -> list[Verdict]:
        """Verdicts for (model output, gold answer) pairs, in order.

        Predictions are full model outputs (their final answer is found by `extract`: lenient `extract_answer`
        unless told, e.g. `training.rewards.answers.extractor("strict")`); golds are reference answers (a string
        as `gold_answer` returns, or a raw GSM8K/boxed solution, or a number).
        """
        return self.verify_answers([extract(text) for text in predictions], golds)

    def verify_answers(self, answers: Sequence[str | None], golds: Sequence[Any]) -> list[Verdict]:
        """`verify_batch` for answers already extracted (None: the output had none, a decided `no_answer`)."""
        if not self._finalizer.alive:
            raise RuntimeError("Verifier is closed")
        if len(answers) != len(golds):
            raise ValueError(f"{len(answers)} predictions but {len(golds)} gold answers")
        verdicts: list[Verdict | None] = [None] * len(answers)
        pending: deque[tuple[int, str, str]] = deque()
        for i, (pred, raw_gold) in enumerate(zip(answers, golds, strict=True)):
            try:
                gold = gold_answer({"answer": raw_gold})
            except ValueError:
                self._finish(verdicts, i, Verdict(None, "error", pred, None, "empty gold answer"))
                continue
            if pred is None:
                self._finish(verdicts, i, Verdict(False, "no_answer", None, gold))
            else:
                pending.append((i, pred, gold))
        try:
            self._run(pending, verdicts)
        except BaseException:
            # Interrupted mid-batch: workers still busy hold stale items; replace them before the next batch.
            for idx, worker in enumerate(self._workers):
                if worker.item is not None:
                    self._replace(idx)
            raise
        assert all(v is not None for v in verdicts)
        return verdicts  # type: ignore[return-value]

    def verify_one(self, prediction: str, gold: Any) -> Verdict:
        """`verify_batch` for a single pair."""
        return self.verify_batch([prediction], [gold])[0]

    def close(self) -> None:
        """Stop the workers (idempotent)."""
        self._finalizer()

    def __enter__(self) -> Verifier:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- internals --------------------------------------------------------------------------------------------

    def _start_worker(self) -> _Worker:
        process, parent_conn = start_worker(
            self._ctx, _worker_main, (self._checker, self._memory_limit_mb), "mathforge-verify"
        )
        return _Worker(process, parent_conn)

    def _replace(self, idx: int) -> None:
        _stop_worker(self._workers[idx])
        self.restarts += 1
        self._workers[idx] = self._start_worker()

    def _finish(self, verdicts: list[Verdict | None], i: int, verdict: Verdict) -> None:
        verdicts[i] = verdict
        self.stats[verdict.status] += 1
        if verdict.status in ("timeout", "error"):
            logger.warning(
                "verify %s on item %d: %s; prediction=%s gold=%s",
                verdict.status,
                i,
                verdict.detail,
                _short(verdict.prediction),
                _short(verdict.gold),
            )

    def _run(self, pending: deque[tuple[int, str, str]], verdicts: list[Verdict | None]) -> None:
        workers = self._workers
        while pending or any(w.item is not None for w in workers):
            now = time.monotonic()
            for idx, w in enumerate(list(workers)):
                if pending and w.ready and w.item is None:
                    item = pending.popleft()
                    try:
                        if not w.process.is_alive():
                            raise BrokenPipeError
                        w.conn.send(item)
                    except OSError:  # died while idle (between batches): replace it, the item waits
                        pending.appendleft(item)
                        self._lost(idx, verdicts)
                        continue
                    w.item, w.deadline = item, now + self.timeout_s

            waiting = [w for w in workers if w.item is not None or not w.ready]
            deadlines = [w.deadline for w in waiting if w.item is not None]
            deadlines += [w.started + self.startup_timeout_s for w in waiting if not w.ready]
            timeout = max(0.0, min(deadlines) - now) if deadlines else 0.0
            handles: list[Any] = [w.conn for w in waiting] + [w.process.sentinel for w in waiting]
            fired = set(wait(handles, timeout=timeout)) if handles else set()

            for idx, w in enumerate(list(workers)):
                if w.conn not in fired and w.process.sentinel not in fired:
                    continue
                message = None
                with contextlib.suppress(EOFError, OSError):
                    if w.conn.poll():
                        message = w.conn.recv()
                if message is None:
                    self._lost(idx, verdicts)
                elif message[0] == "ready":
                    w.ready = True
                    self._failed_starts = 0
                elif w.item is not None and message[0] == w.item[0]:
                    i, pred, gold = w.item
                    _, status, value = message
                    if status == "ok":
                        self._finish(verdicts, i, Verdict(bool(value), "ok", pred, gold))
                    else:
                        self._finish(verdicts, i, Verdict(None, "error", pred, gold, str(value)))
                    w.item = None

            now = time.monotonic()
            for idx, w in enumerate(list(workers)):
                if w.item is not None and now >= w.deadline:
                    i, pred, gold = w.item
                    detail = f"no verdict within {self.timeout_s:g} s; worker killed"
                    self._finish(verdicts, i, Verdict(None, "timeout", pred, gold, detail))
                    w.item = None
                    self._replace(idx)
                elif not w.ready and now - w.started > self.startup_timeout_s:
                    raise RuntimeError(f"verifier worker not ready after {self.startup_timeout_s:g} s")

    def _lost(self, idx: int, verdicts: list[Verdict | None]) -> None:
        """A worker exited (crash, os._exit, OOM kill): its item fails, the worker is replaced."""
        w = self._workers[idx]
        w.process.join(timeout=5.0)
        code = w.process.exitcode
        if w.item is not None:
            i, pred, gold = w.item
            detail = f"worker died (exit code {code})"
            self._finish(verdicts, i, Verdict(None, "error", pred, gold, detail))
            w.item = None
        elif not w.ready:
            self._failed_starts += 1
            if self._failed_starts >= 3:
                raise RuntimeError(
                    f"verifier workers die before they are ready (last exit code {code}): is math-verify "
                    f"installed, is the checker importable, is memory_limit_mb ({self._memory_limit_mb}) too low?"
                )
        self._replace(idx)
