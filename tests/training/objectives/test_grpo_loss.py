"""GRPO arithmetic against hand-computed values: advantages, clipping, k3, GSPO's ratio, the aggregations."""

from __future__ import annotations

import math

import pytest
import torch

from training.objectives.grpo_loss import (
    aggregate,
    group_advantages,
    k3_kl,
    kl_clamped,
    policy_terms,
    zero_spread,
)


def test_advantages_for_each_reward_scale() -> None:
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0], [2.0, 2.0, 2.0, 2.0]], dtype=torch.float64)
    none = group_advantages(rewards, "none")
    assert none.tolist() == [[0.5, -0.5, -0.5, 0.5], [0.0, 0.0, 0.0, 0.0]]
    group_std = math.sqrt(1.0 / 3.0)  # sample std of (1, 0, 0, 1)
    group = group_advantages(rewards, "group", eps=0.0)
    assert group[0].tolist() == pytest.approx(
        [0.5 / group_std, -0.5 / group_std, -0.5 / group_std, 0.5 / group_std]
    )
    assert group_advantages(rewards, "group")[1].tolist() == [0.0] * 4  # zero spread: eps keeps it finite
    batch_std = rewards.std().item()
    assert group_advantages(rewards, "batch", eps=0.0)[0, 0].item() == pytest.approx(0.5 / batch_std)
    assert zero_spread(rewards).tolist() == [False, True]
    with pytest.raises(ValueError, match="scale_rewards"):
        group_advantages(rewards, "groups")


def test_k3_is_zero_for_identical_policies_and_matches_its_formula() -> None:
    logp = torch.tensor([-1.0, -2.0, -0.5])
    assert torch.equal(k3_kl(logp, logp), torch.zeros(3))
    ref = torch.tensor([-1.5, -1.0, -0.5])
    expected = [math.exp(r - p) - (r - p) - 1 for p, r in zip(logp.tolist(), ref.tolist(), strict=True)]
    assert k3_kl(logp, ref).tolist() == pytest.approx(expected)
    assert (k3_kl(logp, ref) >= 0).all()


def test_clipping_on_both_sides() -> None:
    """ratios 1.5 and 0.5 with ε = 0.2, ε_high = 0.28: a positive advantage is capped at 1.28·A (high clip),
    a negative one at 0.8·A (low clip); inside the range the plain ratio counts."""
    old = torch.zeros(4, 1)
    logp = torch.log(torch.tensor([[1.5], [0.5], [1.1], [0.5]]))
    adv = torch.tensor([1.0, -1.0, 1.0, 1.0])
    mask = torch.ones(4, 1, dtype=torch.bool)
    terms = policy_terms(logp, old, adv, mask, epsilon=0.2, epsilon_high=0.28)
    assert terms.per_token[:, 0].tolist() == pytest.approx([-1.28, 0.8, -1.1, -0.5])
    assert terms.clipped_high[:, 0].tolist() == [True, False, False, False]
    assert terms.clipped_low[:, 0].tolist() == [
        False,
        True,
        False,
        False,
    ]  # ratio 0.5 with A > 0 is not clipped
    # gradients: none through a clipped term, the ratio's through an unclipped one
    logp = logp.clone().requires_grad_(True)
    policy_terms(logp, old, adv, mask, epsilon=0.2, epsilon_high=0.28).per_token.sum().backward()
    assert logp.grad[:, 0].tolist() == pytest.approx([0.0, 0.0, -1.1, -0.5])


def test_gspo_uses_the_length_normalised_sequence_ratio() -> None:
    logp = torch.tensor([[-1.0, -2.0, 0.0], [-0.5, 0.0, 0.0]])
    old = torch.tensor([[-1.2, -1.9, 0.0], [-0.4, 0.0, 0.0]])
    mask = torch.tensor([[True, True, False], [True, False, False]])
    terms = policy_terms(logp, old, torch.tensor([1.0, 1.0]), mask, epsilon=10.0, epsilon_high=10.0,
                         importance="sequence")  # fmt: skip
    s0 = math.exp(((-1.0 + 1.2) + (-2.0 + 1.9)) / 2)
    s1 = math.exp(-0.5 + 0.4)
    assert terms.ratio[0, :2].tolist() == pytest.approx([s0, s0])
    assert terms.ratio[1, 0].item() == pytest.approx(s1)
    assert terms.per_token[0].tolist() == pytest.approx([-s0, -s0, 0.0])


def test_kl_term_is_added_with_beta() -> None:
    logp, ref = torch.tensor([[-1.0]]), torch.tensor([[-2.0]])
    mask = torch.ones(1, 1, dtype=torch.bool)
    plain = policy_terms(logp, logp, torch.tensor([0.0]), mask, epsilon=0.2, epsilon_high=0.2)
    with_kl = policy_terms(logp, logp, torch.tensor([0.0]), mask, epsilon=0.2, epsilon_high=0.2, beta=0.5,
                           ref_logp=ref)  # fmt: skip
    assert plain.per_token.item() == 0.0
    assert with_kl.per_token.item() == pytest.approx(0.5 * (math.exp(-1.0) + 1.0 - 1.0))


def test_each_loss_aggregation() -> None:
    per_token = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, True], [True, False, False]])
    total, norm = aggregate(per_token, mask, "grpo", max_completion_len=8)
    assert (total.item(), norm) == (pytest.approx(2.0 + 4.0), 2.0)  # per-sequence means, then their mean
    total, norm = aggregate(per_token, mask, "dr_grpo", max_completion_len=8)
    assert (total.item(), norm) == (pytest.approx(10.0 / 8), 2.0)
    total, norm = aggregate(per_token, mask, "dapo", max_completion_len=8)
    assert (total.item(), norm) == (10.0, 4.0)  # token mean over the whole (global) batch
    total, norm = aggregate(per_token, mask, "bnpo", max_completion_len=8)
    assert (total.item(), norm) == (2.5, 1.0)
    with pytest.raises(ValueError, match="loss_type"):
        aggregate(per_token, mask, "ppo", 8)


def test_k3_is_clamped_like_verl() -> None:
    """The issue's token: log-prob -25 under the policy, -2 under the reference. Unclamped k3 is e^23 - 24;
    clamped it is 10, with no gradient through it; small differences are untouched."""
    logp = torch.tensor([-25.0, -2.1, -2.0, -30.0], requires_grad=True)
    ref = torch.tensor([-2.0, -2.0, -25.0, -2.0])
    raw = k3_kl(logp.detach(), ref)
    assert raw[0].item() == pytest.approx(math.exp(23) - 24, rel=1e-4)
    clamped = k3_kl(logp, ref, clamp=True)
    assert clamped[0].item() == 10.0 and clamped[3].item() == 10.0
    assert clamped[1].item() == pytest.approx(raw[1].item())  # within bounds: the same value
    assert raw[2].item() == pytest.approx(22.0) and clamped[2].item() == 10.0  # r = -23: k3 ≈ 22 > 10
    clamped.sum().backward()
    assert logp.grad is not None and logp.grad[0] == 0 and logp.grad[1] != 0
    assert kl_clamped(logp.detach(), ref).tolist() == [True, False, True, True]


def test_policy_terms_clamp_kl_by_default_and_report_where() -> None:
    logp = torch.tensor([[-25.0, -2.1, -1.0]])
    ref = torch.tensor([[-2.0, -2.0, -1.0]])
    mask = torch.tensor([[True, True, False]])
    args = {"epsilon": 0.2, "epsilon_high": 0.2, "beta": 0.1, "ref_logp": ref}
    terms = policy_terms(logp, logp, torch.tensor([0.0]), mask, **args)
    assert terms.kl[0, 0].item() == 10.0 and terms.per_token[0, 0].item() == pytest.approx(1.0)
    assert terms.kl_clamped.tolist() == [[True, False, False]]  # a masked position is never counted
    loose = policy_terms(logp, logp, torch.tensor([0.0]), mask, kl_clamp=False, **args)
    assert loose.kl[0, 0].item() > 1e9 and not loose.kl_clamped.any()
