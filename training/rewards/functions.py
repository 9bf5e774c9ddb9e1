"""GRPO rewards: named reward functions, weighted and summed per completion, with hard timeouts.

    specs = parse_reward_specs(["accuracy", "format=0.2", "my_pkg.rewards:length_bonus=0.5"])
    with Rewards(specs, timeout_s=30.0, max_completion_tokens=1024) as rewards:
        batch = rewards.score(prompts, completions, columns, completion_lengths, truncated)
        batch.total  # Σ weight·reward per completion

A reward function is `fn(prompts, completions, completion_lengths=..., truncated=..., **columns)
-> list[float | None]`: one value per completion, None for "no reward". `truncated[i]` is True when completion
i was cut off by the length limit (finish reason "length": no stop token). `columns` are the dataset's columns,
aligned with the completions (always with "answer", the gold answer).

Builtins run in the trainer process (they are trusted and cheap), except `accuracy`, which checks answers with
math-verify in `training.rewards.verify.Verifier`'s process pool:

- `accuracy`: 1.0 when the completion's answer equals the gold answer, 0.0 when it differs or there is no
  answer; None when the verifier timed out or failed on it (counted as that function's timeout / error).
  The answer is found strictly (`training.rewards.answers.extract_strict`): only in the final, closed `\\boxed{}`,
  after `answer_after` (the template's `</think>`) when given; no "last number" fallback, which a policy
  learns to game ("82 > > > ..." until the length limit). A truncated completion earns no accuracy credit,
  whatever it wrote: 0.0 under `truncated="zero"` (the default: it stays in the loss and is pushed down against
  the group's finished answers) and "mask" (GRPO also leaves it out of the loss, DAPO's overlong filtering),
  -1.0 under "penalty" (worse than a finished wrong answer).
- `format`: 1.0 when the completion closes the reasoning with exactly one `</think>` (the prompt opened
  `<think>`) and gives a final answer in a complete, non-empty `\\boxed{...}` after it; else 0.0, and 0.0
  for a truncated completion (it never ended).
- `overlong`: DAPO's soft overlong punishment (L_max = max_completion_tokens, L_cache = overlong_buffer):
  0 up to L_max − L_cache tokens, then linear down to −1 at L_max, −1 beyond.

User functions ("module:function") are untrusted code: each runs in its own persistent worker process (spawned,
without re-importing the trainer's `__main__`), which imports the function once. The parent enforces a hard
wall-clock timeout per call (one call per batch): a worker past it is killed and restarted, and the function's
values for that batch are all None. A function that raises (or whose worker dies) gives None for the batch as
well. Both are counted and logged, never turned into 0.0 (see DESIGN.md, "Known traps"). A function that
returns the wrong number of values, or something that is not a list of finite numbers and Nones, is a bug:
`score` raises ValueError, which stops the run.

Torch-free.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import math
import multiprocessing as mp
import numbers
import os
import re
import signal
import time
import traceback
import weakref
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from training.rewards.answers import extract_boxed, extract_strict
from training.rewards.verify import Verifier
from training.rewards.workers import start_worker

__all__ = [
    "BUILTINS",
    "TRUNCATED",
    "RewardBatch",
    "RewardFn",
    "RewardSpec",
    "Rewards",
    "format_reward",
    "overlong_reward",
    "parse_reward_specs",
]

logger = logging.getLogger(__name__)

RewardFn = Callable[..., list[float | None]]

BUILTINS = ("accuracy", "format", "overlong")
THINK_CLOSE = "</think>"
# Keyword names the call itself uses: a dataset column may not take them.
RESERVED_COLUMNS = ("prompts", "completions", "completion_lengths", "truncated")
# What a completion cut off by the length limit earns from `accuracy` (see the module docstring).
TRUNCATED = ("zero", "mask", "penalty")

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_TARGET_RE = re.compile(rf"^{_IDENT}(?:\.{_IDENT})*:{_IDENT}(?:\.{_IDENT})*$")
_LOG_CHARS = 300


# --- specs -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RewardSpec:
    """One weighted reward: `name` is the builtin name or the user's "module:function" (then equal to
    `target`); `target` is what is run."""

    name: str
    target: str
    weight: float

    @property
    def builtin(self) -> bool:
        return self.target in BUILTINS


def _parse_one(spec: str) -> RewardSpec:
    text = spec.strip()
    if not text:
        raise ValueError(f"empty reward spec {spec!r}; expected NAME or MODULE:FUNCTION, optionally =WEIGHT")
    target, eq, weight_text = text.partition("=")
    target = target.strip()
    weight = 1.0
    if eq:
        try:
            weight = float(weight_text.strip())
        except ValueError:
            raise ValueError(
                f"reward spec {spec!r}: weight {weight_text.strip()!r} is not a number "
                "(expected NAME[=WEIGHT] or MODULE:FUNCTION[=WEIGHT], e.g. 'format=0.2')"
            ) from None
        if not math.isfinite(weight):
            raise ValueError(f"reward spec {spec!r}: weight must be finite, got {weight}")
    if ":" in target:
        if not _TARGET_RE.match(target):
            raise ValueError(
                f"reward spec {spec!r}: {target!r} is not MODULE:FUNCTION "
                "(dotted module path, a colon, a function name; e.g. 'my_pkg.rewards:length_bonus')"
            )
    elif target not in BUILTINS:
        raise ValueError(
            f"reward spec {spec!r}: unknown builtin reward {target!r}; builtins are {', '.join(BUILTINS)}, "
            "and user functions are given as MODULE:FUNCTION"
        )
    return RewardSpec(name=target, target=target, weight=weight)


def parse_reward_specs(specs: Sequence[str]) -> list[RewardSpec]:
    """Parse "NAME_OR_MODULE:FUNCTION[=WEIGHT]" strings ("accuracy", "format=0.2",
    "my_pkg.rewards:length_bonus=0.5"); the weight defaults to 1.0. Raises ValueError on an unknown builtin,
    a malformed spec or weight, or a name given twice."""
    if isinstance(specs, str):
        raise TypeError("parse_reward_specs takes a sequence of spec strings, not one string")
    parsed = [_parse_one(s) for s in specs]
    seen: Counter[str] = Counter(p.name for p in parsed)
    duplicates = sorted(name for name, count in seen.items() if count > 1)
    if duplicates:
        raise ValueError(f"reward given more than once: {', '.join(duplicates)} (specs: {list(specs)})")
    return parsed


# --- builtins (in-process) -------------------------------------------------------------------------------------


def format_reward(completions: Sequence[str], truncated: Sequence[bool] | None = None) -> list[float]:
    """1.0 per completion that has exactly one `</think>` and a complete, non-empty `\\boxed{...}` after it,
    and was not truncated (a completion cut off by the length limit never finished its format)."""
    cut = truncated if truncated is not None else [False] * len(completions)
    out = []
    for text, was_cut in zip(completions, cut, strict=True):
        ok = text.count(THINK_CLOSE) == 1 and extract_boxed(text.split(THINK_CLOSE, 1)[1]) is not None
        out.append(1.0 if ok and not was_cut else 0.0)
    return out


def _check_overlong(max_completion_tokens: int | None, overlong_buffer: int) -> None:
    if max_completion_tokens is None:
        raise ValueError("the overlong reward needs max_completion_tokens (L_max)")
    if max_completion_tokens < 1:
        raise ValueError(f"max_completion_tokens must be >= 1, got {max_completion_tokens}")
    if not 0 < overlong_buffer <= max_completion_tokens:
        raise ValueError(
            f"the overlong reward needs 0 < overlong_buffer <= max_completion_tokens, got overlong_buffer="
            f"{overlong_buffer}, max_completion_tokens={max_completion_tokens} (with no buffer, completions "
            "capped at max_completion_tokens are never punished)"
        )


def overlong_reward(completion_lengths: Sequence[int], max_tokens: int, buffer: int) -> list[float]:
    """DAPO's soft overlong punishment per completion length (tokens): 0 when len <= L_max − L_cache;
    (L_max − L_cache − len) / L_cache when L_max − L_cache < len <= L_max; −1 when len > L_max."""
    _check_overlong(max_tokens, buffer)
    soft_start = max_tokens - buffer
    out = []
    for length in completion_lengths:
        if length <= soft_start:
            out.append(0.0)
        elif length <= max_tokens:
            out.append((soft_start - length) / buffer)
        else:
            out.append(-1.0)
    return out


# --- user functions: worker side -------------------------------------------------------------------------------


def _resolve(target: str) -> Any:
    module, _, name = target.partition(":")
    obj: Any = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"{target} is a {type(obj).__name__}, not a function")
    return obj


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:60] + "..."


def _as_values(result: Any) -> tuple[str, Any]:
    """("ok", list of float | None) or ("bad", what is wrong) for a reward function's return value."""
    if not isinstance(result, (list, tuple)):
        return "bad", f"returned a {type(result).__name__} ({_describe(result)}), not a list"
    values: list[float | None] = []
    for i, v in enumerate(result):
        if v is None:
            values.append(None)
            continue
        if not isinstance(v, numbers.Real):
            return "bad", f"returned a non-numeric value at index {i}: {type(v).__name__} {_describe(v)}"
        f = float(v)
        if not math.isfinite(f):
            return "bad", f"returned a non-finite value at index {i}: {f}"
        values.append(f)
    return "ok", values


def _worker_main(conn: Connection, target: str) -> None:
    """Import the function once, say "ready", then answer (seq, prompts, completions, lengths, columns)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops the workers
    try:
        fn = _resolve(target)
    except BaseException as exc:
        conn.send(("import_error", f"{type(exc).__name__}: {exc}"[:_LOG_CHARS]))
        return
    conn.send(("ready", os.getpid()))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        seq, prompts, completions, lengths, truncated, columns = message
        try:
            result = fn(prompts, completions, completion_lengths=lengths, truncated=truncated, **columns)
        except BaseException as exc:  # SystemExit included: the batch fails, the worker lives
            last = traceback.format_exception_only(type(exc), exc)[-1].strip()
            conn.send((seq, "error", last[:_LOG_CHARS], traceback.format_exc()))
            continue
        try:
            status, payload = _as_values(result)
        except BaseException as exc:  # a hostile __iter__ / __float__
            status, payload = "bad", f"returned a value that could not be read: {type(exc).__name__}: {exc}"
        conn.send((seq, status, payload, ""))


# --- user functions: parent side -------------------------------------------------------------------------------


class _Worker:
    """One persistent worker process for one user function."""

    def __init__(self, ctx: Any, target: str, startup_timeout_s: float) -> None:
        self.ctx = ctx
        self.target = target
        self.startup_timeout_s = startup_timeout_s
        self.restarts = 0
        self.process: Any = None
        self.conn: Connection | None = None
        self.ready = False
        self.started = 0.0
        self.busy_seq: int | None = None
        self.start()

    def start(self) -> None:
        process, parent_conn = start_worker(
            self.ctx, _worker_main, (self.target,), f"mathforge-reward {self.target}"
        )
        self.process, self.conn = process, parent_conn
        self.ready, self.busy_seq, self.started = False, None, time.monotonic()

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=5.0)
        assert self.conn is not None
        self.conn.close()
        self.process = self.conn = None

    def restart(self) -> None:
        self.stop()
        self.restarts += 1
        self.start()

    def wait_ready(self) -> None:
        """Block until the worker has imported the function; raise ValueError if it cannot."""
        if self.ready:
            return
        assert self.conn is not None
        deadline = self.started + self.startup_timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError(
                    f"reward {self.target}: worker not ready after {self.startup_timeout_s:g} s"
                )
            wait([self.conn, self.process.sentinel], timeout=remaining)
            message = None
            with contextlib.suppress(EOFError, OSError):
                if self.conn.poll():
                    message = self.conn.recv()
            if message is not None and message[0] == "ready":
                self.ready = True
                return
            if message is not None and message[0] == "import_error":
                raise ValueError(f"reward {self.target}: cannot load the function: {message[1]}")
            if message is None and not self.process.is_alive():
                self.process.join(timeout=5.0)
                raise RuntimeError(
                    f"reward {self.target}: worker died while starting (exit code {self.process.exitcode})"
                )

    def send(self, seq: int, message: tuple[Any, ...]) -> None:
        """Hand the batch to the worker; a worker that died while idle is replaced first."""
        for attempt in range(2):
            self.wait_ready()
            assert self.conn is not None
            try:
                if not self.process.is_alive():
                    raise BrokenPipeError
                self.conn.send((seq, *message))
            except OSError:
                if attempt:
                    raise
                logger.warning("reward %s: worker died between batches; restarting it", self.target)
                self.restart()
                continue
            self.busy_seq = seq
            return


def _shutdown(workers: dict[str, _Worker], verifier: list[Verifier]) -> None:
    """Ask every worker to exit, give them two seconds together, then kill what is left; close the verifier."""
    for worker in workers.values():
        if worker.conn is not None:
            with contextlib.suppress(OSError, ValueError):
                worker.conn.send(None)
    deadline = time.monotonic() + 2.0
    for worker in workers.values():
        if worker.process is not None:
            worker.process.join(timeout=max(0.0, deadline - time.monotonic()))
        worker.stop()
    workers.clear()
    for v in verifier:
        v.close()
    verifier.clear()


# --- the scorer ------------------------------------------------------------------------------------------------


@dataclass
class RewardBatch:
    """One batch's rewards. `total[i]` = Σ weight·value over the functions whose value for completion i is not
    None; `per_function` holds the raw (unweighted) values; `timeouts` / `errors` count, per function, the
    completions of this batch that got None for that reason."""

    total: list[float]
    per_function: dict[str, list[float | None]]
    timeouts: dict[str, int]
    errors: dict[str, int]


class Rewards:
    """Scores batches of completions with weighted reward functions (see the module docstring).

    A context manager: `close()` stops the worker processes (user functions' and the verifier's). Workers start
    in the constructor, which raises if a user function cannot be imported. `stats` counts, over the object's
    life, f"{name}_timeouts" and f"{name}_errors" (completions affected). Not thread-safe: one batch at a time.

    `start_method` is the multiprocessing context of the user-function workers ("spawn" or "forkserver");
    `startup_timeout_s` bounds a worker's start (importing the function), which is not part of `timeout_s`.
    `truncated` is what a truncated completion earns from `accuracy` (TRUNCATED); `answer_after` is the
    template's end of reasoning (`PromptTemplate.reasoning_close`), behind which the answer must stand.
    """

    def __init__(
        self,
        specs: Sequence[RewardSpec],
        *,
        timeout_s: float = 30.0,
        verify_workers: int = 2,
        verify_timeout_s: float = 5.0,
        max_completion_tokens: int | None = None,
        overlong_buffer: int = 0,
        start_method: str = "spawn",
        startup_timeout_s: float = 120.0,
        truncated: str = "zero",
        answer_after: str | None = None,
    ) -> None:
        self.specs = list(specs)
        if not self.specs:
            raise ValueError("no reward functions given")
        names = [s.name for s in self.specs]
        if len(set(names)) != len(names):
            raise ValueError(f"reward names must be unique, got {names}")
        for s in self.specs:
            if ":" not in s.target and s.target not in BUILTINS:
                raise ValueError(f"unknown builtin reward {s.target!r}; builtins are {', '.join(BUILTINS)}")
            if not math.isfinite(s.weight):
                raise ValueError(f"reward {s.name}: weight must be finite, got {s.weight}")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        if start_method not in ("spawn", "forkserver"):
            raise ValueError(f"start_method must be 'spawn' or 'forkserver', got {start_method!r}")
        if truncated not in TRUNCATED:
            raise ValueError(f"truncated must be one of {TRUNCATED}, got {truncated!r}")
        self.truncated = truncated
        self.answer_after = answer_after
        if any(s.target == "overlong" for s in self.specs):
            _check_overlong(max_completion_tokens, overlong_buffer)
        self.timeout_s = float(timeout_s)
        self.max_completion_tokens = max_completion_tokens
        self.overlong_buffer = overlong_buffer
        self.stats: Counter[str] = Counter()
        self._seq = 0
        self._workers: dict[str, _Worker] = {}
        self._verifier_box: list[Verifier] = []
        self._finalizer = weakref.finalize(self, _shutdown, self._workers, self._verifier_box)
        try:
            if any(s.target == "accuracy" for s in self.specs):
                self._verifier_box.append(Verifier(workers=verify_workers, timeout_s=verify_timeout_s))
            ctx = mp.get_context(start_method)
            for s in self.specs:
                if not s.builtin:
                    self._workers[s.name] = _Worker(ctx, s.target, float(startup_timeout_s))
            for worker in self._workers.values():
                worker.wait_ready()
        except BaseException:
            self.close()
            raise

    @property
    def verifier(self) -> Verifier | None:
        """The math-verify pool behind `accuracy` (None when accuracy is not used)."""
        return self._verifier_box[0] if self._verifier_box else None

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.specs]

    def close(self) -> None:
        """Stop every worker process (idempotent)."""
        self._finalizer()

    def __enter__(self) -> Rewards:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- scoring ----------------------------------------------------------------------------------------------

    def score(
        self,
        prompts: list[str],
        completions: list[str],
        columns: dict[str, list[Any]],
        completion_lengths: list[int],
        truncated: list[bool],
    ) -> RewardBatch:
        """Every reward function on the batch, and the weighted total per completion; `truncated[i]`: completion
        i was cut off by the length limit (no stop token).

        User functions run in their workers while the builtins (and the verifier) run here; each user call is
        cut at `timeout_s` from when it was sent. Raises ValueError for inconsistent inputs and for a function
        whose return value is malformed (wrong count, not a list, a non-numeric or non-finite value).
        """
        if not self._finalizer.alive:
            raise RuntimeError("Rewards is closed")
        n = len(completions)
        self._check_inputs(prompts, completions, columns, completion_lengths, truncated)
        per_function: dict[str, list[float | None]] = {}
        timeouts = dict.fromkeys(self.names, 0)
        errors = dict.fromkeys(self.names, 0)
        if n == 0:
            return RewardBatch([], {name: [] for name in self.names}, timeouts, errors)

        self._seq += 1
        seq = self._seq
        message = (
            list(prompts),
            list(completions),
            list(completion_lengths),
            [bool(t) for t in truncated],
            {k: list(v) for k, v in columns.items()},
        )
        bad: list[str] = []
        try:
            sent_at = time.monotonic()
            for worker in self._workers.values():
                worker.send(seq, message)
            for s in self.specs:
                if s.builtin:
                    per_function[s.name] = self._builtin(
                        s, completions, columns, completion_lengths, truncated, timeouts, errors
                    )
            replies = self._collect(seq, sent_at + self.timeout_s, n)
        except BaseException:
            # Interrupted (or a worker failed to restart): busy workers hold a stale call; replace them.
            for worker in self._workers.values():
                if worker.busy_seq is not None:
                    worker.restart()
            raise

        for name, reply in replies.items():
            status, payload = reply
            if status == "ok":
                if len(payload) != n:
                    bad.append(f"reward {name} returned {len(payload)} values for {n} completions")
                per_function[name] = payload
            elif status == "bad":
                bad.append(f"reward {name} {payload} (batch of {n} completions)")
                per_function[name] = [None] * n
            else:  # timeout / error: logged where it happened
                (timeouts if status == "timeout" else errors)[name] = n
                per_function[name] = [None] * n
        for name in self.names:
            self.stats[f"{name}_timeouts"] += timeouts[name]
            self.stats[f"{name}_errors"] += errors[name]
        if bad:
            raise ValueError("; ".join(bad))

        per_function = {name: per_function[name] for name in self.names}
        total = [0.0] * n
        for s in self.specs:
            for i, value in enumerate(per_function[s.name]):
                if value is not None:
                    total[i] += s.weight * value
        return RewardBatch(total, per_function, timeouts, errors)

    def _check_inputs(
        self,
        prompts: Sequence[str],
        completions: Sequence[str],
        columns: dict[str, Sequence[Any]],
        completion_lengths: Sequence[int],
        truncated: Sequence[bool],
    ) -> None:
        n = len(completions)
        if len(prompts) != n or len(completion_lengths) != n or len(truncated) != n:
            raise ValueError(
                f"{len(prompts)} prompts, {len(completion_lengths)} completion lengths and {len(truncated)} "
                f"truncation flags for {n} completions"
            )
        for key, values in columns.items():
            if key in RESERVED_COLUMNS:
                raise ValueError(
                    f"column name {key!r} is reserved for the reward call itself ({RESERVED_COLUMNS})"
                )
            if len(values) != n:
                raise ValueError(f"column {key!r} has {len(values)} values for {n} completions")
        if "answer" not in columns and any(s.target == "accuracy" for s in self.specs):
            raise ValueError(f"the accuracy reward needs an 'answer' column; columns are {sorted(columns)}")

    def _builtin(
        self,
        spec: RewardSpec,
        completions: Sequence[str],
        columns: dict[str, Sequence[Any]],
        completion_lengths: Sequence[int],
        truncated: Sequence[bool],
        timeouts: dict[str, int],
        errors: dict[str, int],
    ) -> list[float | None]:
        if spec.target == "format":
            return list(format_reward(completions, truncated))
        if spec.target == "overlong":
            assert self.max_completion_tokens is not None
            return list(overlong_reward(completion_lengths, self.max_completion_tokens, self.overlong_buffer))
        assert spec.target == "accuracy" and self.verifier is not None
        cut_value = -1.0 if self.truncated == "penalty" else 0.0
        values: list[float | None] = [cut_value if cut else None for cut in truncated]
        finished = [i for i, cut in enumerate(truncated) if not cut]  # a truncated answer is never checked
        verdicts = self.verifier.verify_answers(
            [extract_strict(completions[i], self.answer_after) for i in finished],
            [columns["answer"][i] for i in finished],
        )
        for i, verdict in zip(finished, verdicts, strict=True):
            if verdict.correct is None:  # timeout / error: the verifier logged it
                (timeouts if verdict.status == "timeout" else errors)[spec.name] += 1
            else:
                values[i] = 1.0 if verdict.correct else 0.0
        return values

    def _collect(self, seq: int, deadline: float, n: int) -> dict[str, tuple[str, Any]]:
        """Each busy worker's reply for call `seq` by `deadline`: (status, payload), where status is
        "ok" / "bad" / "error" / "timeout". A late worker is killed and restarted; a dead one restarted."""
        replies: dict[str, tuple[str, Any]] = {}
        pending = {name: w for name, w in self._workers.items() if w.busy_seq == seq}
        while pending:
            remaining = deadline - time.monotonic()
            handles: list[Any] = [w.conn for w in pending.values()] + [
                w.process.sentinel for w in pending.values()
            ]
            wait(handles, timeout=max(0.0, remaining))
            for name, w in list(pending.items()):
                assert w.conn is not None
                message = None
                with contextlib.suppress(EOFError, OSError):
                    if w.conn.poll():
                        message = w.conn.recv()
                if message is not None:
                    if message[0] != seq:  # a reply to an earlier, abandoned call
                        continue
                    _, status, payload, detail = message
                    w.busy_seq = None
                    del pending[name]
                    if status == "error":
                        logger.warning(
                            "reward %s raised on a batch of %d: %s (values None)", name, n, payload
                        )
                        logger.debug("reward %s traceback:\n%s", name, detail)
                    replies[name] = (status, payload)
                elif not w.process.is_alive():
                    w.process.join(timeout=5.0)
                    code = w.process.exitcode
                    logger.warning(
                        "reward %s: worker died (exit code %s) on a batch of %d; restarted (values None)",
                        name,
                        code,
                        n,
                    )
                    del pending[name]
                    w.restart()
                    replies[name] = ("error", f"worker died (exit code {code})")
            if pending and time.monotonic() >= deadline:
                for name, w in pending.items():
                    logger.warning(
                        "reward %s: no result within %g s on a batch of %d; worker killed and restarted (values None)",
                        name,
                        self.timeout_s,
                        n,
                    )
                    w.restart()
                    replies[name] = ("timeout", "")
                pending.clear()
        return replies
