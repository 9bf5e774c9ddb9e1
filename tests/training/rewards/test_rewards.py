"""GRPO rewards: spec parsing, the builtins on real answers, weighting, and user functions that hang, spin,
raise, crash or return garbage inside their worker processes (reward_fixtures.py)."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from pathlib import Path

import pytest

from training.rewards.functions import (
    Rewards,
    RewardSpec,
    format_reward,
    overlong_reward,
    parse_reward_specs,
)

REPO = Path(__file__).resolve().parents[3]
TIMEOUT_S = 3.0  # generous: a starved worker on a loaded CI machine must not read as hung
MISBEHAVE = "reward_fixtures:misbehave"
SPIN = "reward_fixtures:spin"
GOOD = "reasoning ...</think> so \\boxed{1}"  # format 1.0


def score(rewards: Rewards, completions: list[str], truncated: list[bool] | None = None, **columns):
    n = len(completions)
    columns.setdefault("answer", ["1"] * n)
    cut = truncated if truncated is not None else [False] * n
    return rewards.score([f"prompt {i}" for i in range(n)], completions, columns, [10] * n, cut)


# --- specs -----------------------------------------------------------------------------------------------------


def test_parse_reward_specs() -> None:
    specs = parse_reward_specs(
        ["accuracy", "format=0.2", "my_pkg.rewards:length_bonus=0.5", " overlong = -1 "]
    )
    assert specs == [
        RewardSpec("accuracy", "accuracy", 1.0),
        RewardSpec("format", "format", 0.2),
        RewardSpec("my_pkg.rewards:length_bonus", "my_pkg.rewards:length_bonus", 0.5),
        RewardSpec("overlong", "overlong", -1.0),
    ]
    assert parse_reward_specs(["pkg:Class.method=1e-1"]) == [
        RewardSpec("pkg:Class.method", "pkg:Class.method", 0.1)
    ]
    assert parse_reward_specs([]) == []


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        ([""], "empty reward spec"),
        (["acuracy"], "unknown builtin reward 'acuracy'"),
        (["accuracy=", "format"], "weight '' is not a number"),
        (["format=abc"], "weight 'abc' is not a number"),
        (["format=nan"], "weight must be finite"),
        (["format=inf"], "weight must be finite"),
        (["my_pkg:"], "is not MODULE:FUNCTION"),
        ([":fn"], "is not MODULE:FUNCTION"),
        (["a:b:c"], "is not MODULE:FUNCTION"),
        (["my-pkg.rewards:fn"], "is not MODULE:FUNCTION"),
        (["format", "accuracy", "format=2"], "given more than once: format"),
        (["m:f", "m:f=0.1"], "given more than once: m:f"),
    ],
)
def test_parse_reward_specs_errors(specs: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_reward_specs(specs)


def test_rewards_rejects_bad_specs() -> None:
    with pytest.raises(ValueError, match="no reward functions"):
        Rewards([])
    with pytest.raises(ValueError, match="unknown builtin"):
        Rewards([RewardSpec("accurcy", "accurcy", 1.0)])
    with pytest.raises(ValueError, match="unique"):
        Rewards([RewardSpec("format", "format", 1.0)] * 2)


# --- builtins --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("First, 3 * 6 = 18.\n</think>\nThe answer is $\\boxed{18}$.", 1.0),
        ("</think>\\boxed{\\frac{1}{2}}", 1.0),
        ("think</think> \\fbox{x = {3}}", 1.0),
        ("reasoning \\boxed{18}", 0.0),  # never closed the reasoning
        ("reasoning \\boxed{18} </think> so 18", 0.0),  # the box is inside the reasoning
        ("a</think>b</think>\\boxed{18}", 0.0),  # two closings
        ("a</think> \\boxed{}", 0.0),  # empty box
        ("a</think> \\boxed{18", 0.0),  # truncated box
        ("a</think> The answer is 18.", 0.0),  # no box
        ("", 0.0),
    ],
)
def test_format(completion: str, expected: float) -> None:
    assert format_reward([completion]) == [expected]
    with Rewards(parse_reward_specs(["format"])) as rewards:
        batch = score(rewards, [completion])
    assert batch.per_function == {"format": [expected]}
    assert batch.total == [expected]


def test_overlong_boundaries() -> None:
    # L_max = 100, L_cache = 20: 0 up to 80 tokens, then (80 − len) / 20, −1 beyond 100.
    lengths = [0, 79, 80, 81, 90, 99, 100, 101, 5000]
    expected = [0.0, 0.0, 0.0, -0.05, -0.5, -0.95, -1.0, -1.0, -1.0]
    assert overlong_reward(lengths, 100, 20) == pytest.approx(expected)
    assert overlong_reward([0, 1, 50, 100, 101], 100, 100) == pytest.approx([0.0, -0.01, -0.5, -1.0, -1.0])
    with Rewards(
        parse_reward_specs(["overlong=0.5"]), max_completion_tokens=100, overlong_buffer=20
    ) as rewards:
        batch = rewards.score(
            ["p"] * len(lengths),
            ["c"] * len(lengths),
            {"answer": ["1"] * len(lengths)},
            lengths,
            [n > 100 for n in lengths],
        )
    assert batch.per_function["overlong"] == pytest.approx(expected)
    assert batch.total == pytest.approx([0.5 * v for v in expected])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "needs max_completion_tokens"),
        ({"max_completion_tokens": 100}, "0 < overlong_buffer <= max_completion_tokens"),
        ({"max_completion_tokens": 100, "overlong_buffer": -5}, "0 < overlong_buffer"),
        ({"max_completion_tokens": 100, "overlong_buffer": 101}, "0 < overlong_buffer"),
        ({"max_completion_tokens": 0, "overlong_buffer": 1}, "max_completion_tokens must be >= 1"),
    ],
)
def test_overlong_needs_valid_lengths(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Rewards(parse_reward_specs(["overlong"]), **kwargs)
    Rewards(parse_reward_specs(["format"]), **kwargs).close()  # only the overlong reward needs them


@pytest.fixture(scope="module")
def accuracy_rewards():
    # A 3 s verifier timeout: far above what these answers need, far below 9^(9^9).
    with Rewards(parse_reward_specs(["accuracy", "format=0.2"]), verify_workers=1, verify_timeout_s=3.0) as r:
        yield r


def test_accuracy_on_real_answers(accuracy_rewards: Rewards) -> None:
    completions = [
        "3 bags of 6 apples: 3 * 6 = 18.</think> The answer is \\boxed{18}.",
        "</think> \\boxed{\\frac{1}{2}}",
        "3 * 6 = 17</think> \\boxed{17}",
        "I do not know.",
        "</think> so she has $\\boxed{18}$ apples",
        "They pay \\boxed{1,234} dollars.",
    ]
    golds = ["18", "0.5", "18", "18", "Natalia sold 48/2 = 24 clips.\n#### 18", "1234"]
    batch = score(accuracy_rewards, completions, answer=golds)
    assert batch.per_function["accuracy"] == [1.0, 1.0, 0.0, 0.0, 1.0, 1.0]
    assert batch.per_function["format"] == [1.0, 1.0, 1.0, 0.0, 1.0, 0.0]
    assert batch.total == pytest.approx([1.2, 1.2, 0.2, 0.0, 1.2, 1.0])
    assert batch.timeouts == {"accuracy": 0, "format": 0}
    assert batch.errors == {"accuracy": 0, "format": 0}


# What the tiny-model GRPO run learned to write (issue 22): the answer, then filler up to the length limit.
GAMED = [
    "82 > > > > > > > > > > > > > > > >",  # the answer as "a last number", no box
    "71 >boxed{71 >boxed{71 >boxed{71 >",  # never a box at all
    "\\boxed{71} then \\boxed{71 and on",  # a closed box, but the final box is cut off
    "The answer is 71. So 71, 71, 71, 71",  # "the answer is" / last number
]


def test_accuracy_counts_only_the_final_closed_box(accuracy_rewards: Rewards) -> None:
    """Each of these scored 1.0 under the old fallbacks ("the answer is", the last number, an earlier box)."""
    golds = ["82", "71", "71", "71"]
    assert score(accuracy_rewards, GAMED, answer=golds).per_function["accuracy"] == [0.0] * 4
    finished = ["so \\boxed{82}", "\\boxed{70} no, \\boxed{71}", "\\boxed{71}.", "\\boxed{ 71 }"]
    assert score(accuracy_rewards, finished, answer=golds).per_function["accuracy"] == [1.0] * 4


def test_truncated_completions_earn_no_accuracy_credit(accuracy_rewards: Rewards) -> None:
    """A correct, closed box in a completion cut off by the length limit is not credited (nor its format);
    the same text ended by the stop token is. "penalty" scores it below a finished wrong answer."""
    text = "</think> \\boxed{82} > > > > > > >"
    batch = score(
        accuracy_rewards, [text, text, "</think> \\boxed{9}"], [True, False, False], answer=["82"] * 3
    )
    assert batch.per_function == {"accuracy": [0.0, 1.0, 0.0], "format": [0.0, 1.0, 1.0]}
    with Rewards(parse_reward_specs(["accuracy"]), verify_workers=1, truncated="penalty") as penalty:
        batch = score(penalty, [text, text, "</think> \\boxed{9}"], [True, False, False], answer=["82"] * 3)
    assert batch.per_function["accuracy"] == [-1.0, 1.0, 0.0]
    with pytest.raises(ValueError, match="truncated must be one of"):
        Rewards(parse_reward_specs(["format"]), truncated="drop")


def test_answer_must_follow_the_templates_end_of_reasoning() -> None:
    """With the r1 template's `</think>`, a box inside the reasoning is not the answer."""
    with Rewards(parse_reward_specs(["accuracy"]), verify_workers=1, answer_after="</think>") as rewards:
        batch = score(
            rewards,
            ["\\boxed{5}", "\\boxed{5}</think> so 5", "try \\boxed{4}</think> \\boxed{5}"],
            answer=["5"] * 3,
        )
    assert batch.per_function["accuracy"] == [0.0, 0.0, 1.0]


def test_accuracy_timeout_and_error_are_none_not_zero(accuracy_rewards: Rewards) -> None:
    before = accuracy_rewards.stats.copy()
    completions = ["</think> \\boxed{9^{9^{9}}}", "</think> \\boxed{18}", "</think> \\boxed{18}"]
    batch = score(accuracy_rewards, completions, answer=["18", "", "18"])  # "" : no gold answer → error
    assert batch.per_function["accuracy"] == [None, None, 1.0]
    assert batch.timeouts["accuracy"] == 1
    assert batch.errors["accuracy"] == 1
    assert batch.total == pytest.approx([0.2, 0.2, 1.2])  # a None contributes nothing
    assert accuracy_rewards.stats["accuracy_timeouts"] - before["accuracy_timeouts"] == 1
    assert accuracy_rewards.stats["accuracy_errors"] - before["accuracy_errors"] == 1
    assert score(accuracy_rewards, ["</think> \\boxed{18}"], answer=["18"]).per_function["accuracy"] == [1.0]


def test_accuracy_needs_answer_column(accuracy_rewards: Rewards) -> None:
    with pytest.raises(ValueError, match="'answer' column"):
        accuracy_rewards.score(["p"], ["c"], {"question": ["q"]}, [1], [False])


# --- user functions in worker processes ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def user_rewards():
    specs = parse_reward_specs(["format=0.5", f"{MISBEHAVE}=2", SPIN])
    with Rewards(specs, timeout_s=TIMEOUT_S) as r:
        yield r


def test_weighted_total_with_none(user_rewards: Rewards) -> None:
    batch = score(user_rewards, [GOOD, "SKIP " + GOOD, "no format", "SKIP"])
    assert batch.per_function == {
        "format": [1.0, 1.0, 0.0, 0.0],
        MISBEHAVE: [0.5, None, 0.5, None],
        SPIN: [1.0, 1.0, 1.0, 1.0],
    }
    # 0.5·format + 2·misbehave + 1·spin, a None adding nothing; a None is no error and no timeout.
    assert batch.total == pytest.approx([2.5, 1.5, 2.0, 1.0])
    assert batch.timeouts == dict.fromkeys(user_rewards.names, 0)
    assert batch.errors == dict.fromkeys(user_rewards.names, 0)


@pytest.mark.parametrize(("marker", "name"), [("HANG", MISBEHAVE), ("SPIN", SPIN)])
def test_hung_function_is_cut_and_recovers(user_rewards: Rewards, caplog, marker: str, name: str) -> None:
    other = SPIN if name == MISBEHAVE else MISBEHAVE
    before = user_rewards.stats.copy()
    completions = [GOOD, f"{marker} {GOOD}", "no format"]
    with caplog.at_level(logging.WARNING, logger="training.rewards.functions"):
        start = time.monotonic()
        batch = score(user_rewards, completions)
        elapsed = time.monotonic() - start
    assert TIMEOUT_S <= elapsed < TIMEOUT_S + 10
    assert batch.per_function[name] == [None, None, None]
    assert batch.timeouts == {"format": 0, name: 3, other: 0}
    assert batch.errors == dict.fromkeys(user_rewards.names, 0)
    assert user_rewards.stats[f"{name}_timeouts"] - before[f"{name}_timeouts"] == 3
    # The other functions' values are unaffected.
    assert batch.per_function["format"] == [1.0, 1.0, 0.0]
    assert batch.per_function[other] == ([0.5] * 3 if other == MISBEHAVE else [1.0] * 3)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and name in warnings[0] and "no result within" in warnings[0], warnings
    # The worker was killed and restarted: the next batch is scored normally.
    again = score(user_rewards, [GOOD, "no format"])
    assert again.per_function[name] == ([0.5, 0.5] if name == MISBEHAVE else [1.0, 1.0])
    assert again.timeouts == dict.fromkeys(user_rewards.names, 0)


def test_raising_function_counts_errors(user_rewards: Rewards, caplog) -> None:
    before = user_rewards.stats.copy()
    with caplog.at_level(logging.WARNING, logger="training.rewards.functions"):
        batch = score(user_rewards, [GOOD, "RAISE"])
    assert batch.per_function == {"format": [1.0, 0.0], MISBEHAVE: [None, None], SPIN: [1.0, 1.0]}
    assert batch.errors == {"format": 0, MISBEHAVE: 2, SPIN: 0}
    assert batch.timeouts == dict.fromkeys(user_rewards.names, 0)
    assert batch.total == pytest.approx([1.5, 1.0])
    assert user_rewards.stats[f"{MISBEHAVE}_errors"] - before[f"{MISBEHAVE}_errors"] == 2
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "ZeroDivisionError: reward failed on purpose" in warnings[0], warnings
    assert score(user_rewards, [GOOD]).per_function[MISBEHAVE] == [0.5]


def test_crashing_worker_counts_errors_and_restarts(user_rewards: Rewards) -> None:
    batch = score(user_rewards, ["CRASH", GOOD])
    assert batch.per_function[MISBEHAVE] == [None, None]
    assert batch.errors[MISBEHAVE] == 2
    assert batch.per_function[SPIN] == [1.0, 1.0]
    assert score(user_rewards, [GOOD]).per_function[MISBEHAVE] == [0.5]


def test_malformed_return_values_stop_the_run() -> None:
    names = [f"reward_fixtures:{f}" for f in ("one_too_many", "not_a_list", "strings", "nan")]
    with Rewards(parse_reward_specs([*names, "format"]), timeout_s=30.0) as rewards:
        with pytest.raises(ValueError) as info:
            score(rewards, ["a", "b", "c"])
        message = str(info.value)
        assert "reward reward_fixtures:one_too_many returned 4 values for 3 completions" in message
        assert "reward reward_fixtures:not_a_list returned a dict" in message
        assert "reward reward_fixtures:strings returned a non-numeric value at index 0: str '1.0'" in message
        assert "reward reward_fixtures:nan returned a non-finite value" in message


def test_columns_prompts_and_lengths_reach_user_functions() -> None:
    specs = parse_reward_specs(
        [
            "reward_fixtures:echo",
            "reward_fixtures:prompt_lengths",
            "reward_fixtures:torch_free",
            "reward_fixtures:truncated_flags",
        ]
    )
    with Rewards(specs) as rewards:
        batch = rewards.score(
            ["p", "prompt"],
            ["c1", "c2"],
            {"answer": ["1", "2"], "difficulty": [3, 0.5]},
            completion_lengths=[7, 250],
            truncated=[False, True],
        )
        assert batch.per_function["reward_fixtures:echo"] == pytest.approx([103.007, 100.75])
        assert batch.per_function["reward_fixtures:prompt_lengths"] == [1.0, 6.0]
        assert batch.per_function["reward_fixtures:truncated_flags"] == [0.0, 1.0]
        # The worker did not re-import this process's __main__ or anything that imports torch.
        assert "torch" in sys.modules
        assert batch.per_function["reward_fixtures:torch_free"] == [1.0, 1.0]
        empty = rewards.score([], [], {"answer": [], "difficulty": []}, [], [])
        assert empty.total == [] and empty.per_function["reward_fixtures:echo"] == []


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("reward_fixtures:missing", "AttributeError"),
        ("no_such_module_for_rewards:fn", "ModuleNotFoundError"),
        ("reward_fixtures:NOT_CALLABLE", "not a function"),
    ],
)
def test_unloadable_function_fails_at_construction(target: str, message: str) -> None:
    with pytest.raises(ValueError, match=f"reward {target}: cannot load the function: .*{message}"):
        Rewards(parse_reward_specs([target]))


def test_inconsistent_inputs_are_rejected() -> None:
    with Rewards(parse_reward_specs(["format"])) as rewards:
        with pytest.raises(ValueError, match="column 'answer' has 1 values for 2 completions"):
            rewards.score(["p", "p"], ["a", "b"], {"answer": ["1"]}, [1, 1], [False, False])
        with pytest.raises(ValueError, match="reserved"):
            rewards.score(["p"], ["a"], {"answer": ["1"], "truncated": [True]}, [1], [False])
        with pytest.raises(ValueError, match="1 prompts, 2 completion lengths and 2 truncation flags for 2"):
            rewards.score(["p"], ["a", "b"], {"answer": ["1", "2"]}, [1, 1], [False, False])
        with pytest.raises(ValueError, match="1 truncation flags for 2"):
            rewards.score(["p", "p"], ["a", "b"], {"answer": ["1", "2"]}, [1, 1], [False])


def test_close_stops_workers() -> None:
    rewards = Rewards(parse_reward_specs([SPIN]))
    process = rewards._workers[SPIN].process
    assert process.is_alive()
    rewards.close()
    assert not process.is_alive()
    rewards.close()
    with pytest.raises(RuntimeError, match="closed"):
        score(rewards, ["a"])


def test_module_is_torch_free() -> None:
    code = "import sys, training.rewards.functions; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60)
