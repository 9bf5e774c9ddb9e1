"""Two CPU processes under torchrun (gloo): identical weights after every step, disjoint data, resume, FSDP."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from torchrun_launch import pretrain_ranks
from torchrun_launch import torchrun as torchrun_ranks
from training_corpus import write_corpus

from training.metrics import read_metrics


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("torchrun_corpus")
    write_corpus(root, n_docs=60, n_shards=3, row_group_size=5)
    return root


@pytest.fixture(scope="module")
def straight(data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ddp") / "run"
    pretrain_ranks(data, out)
    return out


def _rank_logs(out: Path) -> list[list[dict]]:
    return [read_metrics(out / f"rank{rank}.jsonl") for rank in (0, 1)]


@pytest.mark.timeout(300)
def test_ranks_hold_identical_weights_after_every_step_and_read_different_data(straight) -> None:
    rank0, rank1 = _rank_logs(straight)
    assert [r["step"] for r in rank0] == [r["step"] for r in rank1] == [1, 2, 3, 4]
    digests = [r["param_digest"] for r in rank0]
    assert digests == [r["param_digest"] for r in rank1]
    assert len(set(digests)) == 4  # and the weights did change every step
    assert all(a["batch_digest"] != b["batch_digest"] for a, b in zip(rank0, rank1, strict=True))
    row_groups = [{(r["shard"], r["row_group"]) for r in log if r["epoch"] == 0} for log in (rank0, rank1)]
    assert row_groups[0] and row_groups[1] and not row_groups[0] & row_groups[1]
    losses = read_metrics(straight / "metrics.jsonl")
    assert [r["step"] for r in losses] == [1, 2, 3, 4] and all(r["loss"] > 0 for r in losses)


@pytest.mark.timeout(300)
def test_resume_under_torchrun_matches_the_uninterrupted_run(data, straight, tmp_path) -> None:
    out = tmp_path / "run"
    pretrain_ranks(data, out, "--stop-at 2")
    pretrain_ranks(data, out, "--resume")
    assert read_metrics(out / "metrics.jsonl") == [
        {**r, "tokens_per_s": r2["tokens_per_s"], "mfu": r2["mfu"]}
        for r, r2 in zip(
            read_metrics(straight / "metrics.jsonl"), read_metrics(out / "metrics.jsonl"), strict=True
        )
    ]
    assert [r["param_digest"] for r in _rank_logs(out)[1]] == [
        r["param_digest"] for r in _rank_logs(straight)[1]
    ]


@pytest.mark.timeout(300)
def test_fsdp_trains_like_ddp(data, straight, tmp_path) -> None:
    pretrain_ranks(data, tmp_path / "run", "--parallel fsdp")
    fsdp, ddp = read_metrics(tmp_path / "run" / "metrics.jsonl"), read_metrics(straight / "metrics.jsonl")
    for a, b in zip(fsdp, ddp, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
    rank0, rank1 = _rank_logs(tmp_path / "run")
    assert [r["param_digest"] for r in rank0] == [r["param_digest"] for r in rank1]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_logprob_gradients_through_the_wrapper_are_synchronised(parallel, tmp_path) -> None:
    """A loss built from `completion_logprobs` on the wrapped model: after backward both ranks hold the same
    gradients, and they are the mean of the two ranks' own gradients (so they were really all-reduced, not
    merely equal by chance); greedy sampling through the wrapper equals the plain model's."""
    torchrun_ranks(
        [
            str(Path(__file__).with_name("torchrun_logprobs.py")),
            "--parallel",
            parallel,
            "--out",
            str(tmp_path),
        ]
    )
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["grad_digest"] == ranks[1]["grad_digest"]
    assert ranks[0]["grads_are_the_rank_mean"] and ranks[1]["grads_are_the_rank_mean"]
    assert "head.weight" in ranks[0]["params"] and "embed.weight" in ranks[0]["params"]
    for record in ranks:
        assert record["wrapped_greedy"] == record["plain_greedy"]
        assert len(record["wrapped_greedy"]) == 1 + record["rank"]


@pytest.mark.timeout(300)
def test_fsdp_generation_keeps_ranks_in_step_whatever_their_prompts(tmp_path) -> None:
    """Rank 1's prompt leaves 4 tokens of context while rank 0 samples 20 (and, once, stops early): under FSDP2
    both finish (a hang is cut by the launcher's timeout) and sample exactly what the plain model does."""
    torchrun_ranks(
        [str(Path(__file__).with_name("torchrun_generate.py")), "--out", str(tmp_path)], timeout=180
    )
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for record in ranks:
        assert record["wrapped"] == record["plain"]
    assert [len(t) for call in ranks[0]["wrapped"] for t in call] == [20, 20, 3, 20, 20, 20]
    assert [len(t) for call in ranks[1]["wrapped"] for t in call] == [4, 4, 4]
    assert ranks[0]["truncated"][1][0] is False and ranks[1]["truncated"] == [[True]] * 3
    assert ranks[0]["forwards"] == ranks[1]["forwards"]  # every forward is a collective: the same count
