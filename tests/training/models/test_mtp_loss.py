"""The MTP training loss against a hand computation from the model's submodules (DeepSeek-V3's definition).

Main loss: mean cross-entropy of token i+1 at position i over the targets inside position i's document.
Depth k (1-based): h^k = block_k(eh_proj_k([enorm_k(emb(t_{i+k})); hnorm_k(h^{k-1}_i)])), h^0 the trunk's
last hidden state (before the final norm); its logits are head(norm_k(h^k)) and its target is token i+k+1,
counted only if it is in position i's document. Total: main + λ · mean over depths of the depth losses.
The submodules the hand computation trusts (RMSNorm, RoPE) and the initial weights are checked against their
own definitions below.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from training.config import IGNORE_INDEX, model_config
from training.models.transformer import Logits, RMSNorm, TokenLogprobs, Transformer, apply_rope, rope_tables

V, T = 64, 8
# tokens 0..T (T + 1 of them: inputs are 0..T-1, the last one is only a target) and their documents
TOKENS = torch.tensor(
    [[5, 17, 9, 33, 2, 41, 8, 60, 11], [7, 7, 19, 54, 23, 1, 38, 12, 29]],
)
DOCS = torch.tensor([[0, 0, 0, 0, 0, 1, 1, 1, 1], [2, 2, 2, 2, 2, 2, 2, 2, 2]])
# targets counted per depth (main, k=1, k=2), worked out by hand from DOCS:
#   row 0, main: i = 0..3 and 5..7 (i = 4 would predict doc 1's first token)  -> 7
#          k=1:  i = 0..2 and 5..6                                            -> 5
#          k=2:  i = 0..1 and 5                                               -> 3
#   row 1: 8, 7, 6 (one document: only the end of the row limits them)
COUNTS = [15, 12, 9]


def _model(seed: int = 0) -> Transformer:
    """A tiny two-depth model with every weight, norm gains included, far from its initial values: with the
    default init all logits are near zero and every loss is near log V whatever the wiring."""
    model = Transformer(model_config("tiny", V, max_seq_len=16, mtp_depth=2), seed=seed)
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            param.copy_(1.0 + 0.3 * noise if name.endswith("norm.weight") else 0.3 * noise)
    return model.eval()


def _inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    ids, docs = TOKENS[:, :-1], DOCS[:, :-1]
    targets = torch.where(DOCS[:, 1:] == DOCS[:, :-1], TOKENS[:, 1:], IGNORE_INDEX)
    return ids, targets, docs


def _hand_ce(logits: torch.Tensor, depth: int) -> tuple[torch.Tensor, int]:
    """Mean of -log p(token i+depth+1) over the positions i whose target stays in i's document."""
    logprobs = F.log_softmax(logits.double(), dim=-1)
    terms = []
    for row in range(TOKENS.shape[0]):
        for i in range(T):
            j = i + depth + 1
            if j <= T and DOCS[row, j] == DOCS[row, i]:
                terms.append(-logprobs[row, i, TOKENS[row, j]])
    return torch.stack(terms).mean(), len(terms)


def _hand_losses(
    model: Transformer, chain: bool = True
) -> tuple[torch.Tensor, list[torch.Tensor], list[int]]:
    """Main loss, the depth losses and their target counts, from the submodules. chain=False feeds every
    depth the trunk's hidden state (the bug this file must catch)."""
    ids, _, docs = _inputs()
    same_doc = docs[:, :, None] == docs[:, None, :]
    mask = (same_doc & torch.ones(T, T, dtype=torch.bool).tril())[:, None]
    rope = (model.rope_cos[:T][None, None], model.rope_sin[:T][None, None])
    h = model.embed(ids)
    for block in model.layers:
        h = block(h, rope, mask)
    main, main_count = _hand_ce(model.head(model.norm(h)), 0)
    trunk, losses, counts = h, [], [main_count]
    for k, mtp in enumerate(model.mtp, start=1):
        # emb(t_{i+k}) at position i; past the end of the row: token 0 (its targets are never counted)
        ahead = torch.cat((ids[:, k:], torch.zeros(ids.shape[0], k, dtype=ids.dtype)), dim=1)
        previous = h if chain else trunk
        x = mtp.eh_proj(torch.cat((mtp.enorm(model.embed(ahead)), mtp.hnorm(previous)), dim=-1))
        h = mtp.block(x, rope, mask)
        loss, count = _hand_ce(model.head(mtp.norm(h)), k)
        losses.append(loss)
        counts.append(count)
    return main, losses, counts


@pytest.mark.parametrize("weight", [0.3, 1.0])
def test_mtp_loss_matches_the_hand_computation(weight) -> None:
    model = _model()
    ids, targets, docs = _inputs()
    with torch.no_grad():
        out = model(ids, targets, docs, mtp_weight=weight)
        main, losses, counts = _hand_losses(model)
    assert counts == COUNTS
    assert [int(c) for c in out.counts] == COUNTS
    assert len(out.mtp_losses) == 2
    assert out.main_loss.item() == pytest.approx(main.item(), rel=1e-5)
    for got, want in zip(out.mtp_losses, losses, strict=True):
        assert got.item() == pytest.approx(want.item(), rel=1e-5)
    total = main + weight * (losses[0] + losses[1]) / 2
    assert out.loss.item() == pytest.approx(total.item(), rel=1e-5)


def test_the_hand_computation_tells_the_known_bugs_apart() -> None:
    """The comparison above has teeth: summing the depth losses, or feeding depth 2 the trunk's hidden state
    instead of depth 1's, moves the values far beyond its tolerance."""
    model = _model()
    with torch.no_grad():
        main, chained, _ = _hand_losses(model)
        _, unchained, _ = _hand_losses(model, chain=False)
    assert chained[0].item() == pytest.approx(unchained[0].item(), rel=1e-12)  # depth 1 reads the trunk
    assert abs(chained[1].item() - unchained[1].item()) > 0.05 * chained[1].item()
    summed, averaged = main + 0.3 * sum(chained), main + 0.3 * sum(chained) / 2
    assert abs(summed.item() - averaged.item()) > 0.1
    # and every depth predicts something other than the next token: a depth reading the wrong target differs
    assert len({round(loss.item(), 3) for loss in (main, *chained)}) == 3


def test_without_mtp_weight_the_loss_is_the_main_loss_and_depths_still_report() -> None:
    model = _model(seed=4)
    ids, targets, docs = _inputs()
    with torch.no_grad():
        out = model(ids, targets, docs, mtp_weight=0.0)
        main, losses, _ = _hand_losses(model)
    assert out.loss.item() == pytest.approx(main.item(), rel=1e-5)
    assert [loss.item() for loss in out.mtp_losses] == pytest.approx(
        [loss.item() for loss in losses], rel=1e-5
    )


def test_mtp_loss_gradients_reach_each_depth_only_through_its_own_and_later_losses() -> None:
    """Depth 1's module gets gradient from depth 2's loss (depth 2 reads h^1); depth 2's gets none from
    depth 1's. With the weight on, the trunk gets gradient from every loss."""
    model = _model(seed=2)
    ids, targets, docs = _inputs()
    out = model(ids, targets, docs, mtp_weight=0.3)
    grads = torch.autograd.grad(
        out.mtp_losses[1], [model.mtp[0].eh_proj.weight, model.layers[-1].ffn.w2.weight], allow_unused=True
    )
    assert all(g is not None and g.abs().sum() > 0 for g in grads)
    grad = torch.autograd.grad(out.mtp_losses[0], [model.mtp[1].eh_proj.weight], allow_unused=True)[0]
    assert grad is None or grad.abs().sum() == 0


# -- the submodules the hand computation above trusts, against their own definitions ----------------------


def test_rms_norm_matches_its_definition() -> None:
    generator = torch.Generator().manual_seed(5)
    x = torch.randn(2, 3, 64, generator=generator) * 3
    weight = 1 + torch.randn(64, generator=generator)
    norm = RMSNorm(64, eps=1e-6, fused=False)
    with torch.no_grad():
        norm.weight.copy_(weight)
        got = norm(x)
    want = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * weight
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-6)
    assert torch.allclose(got, F.rms_norm(x, (64,), weight, eps=1e-6), rtol=1e-5, atol=1e-6)


def test_rope_tables_and_rotation_match_the_definition() -> None:
    """RoPE (rotate-half layout): pair (x_j, x_{j+d/2}) at position p turns by p · θ^(-2j/d)."""
    head_dim, theta = 8, 500.0
    cos, sin = rope_tables(head_dim, max_len=6, theta=theta)
    assert cos.shape == sin.shape == (6, head_dim // 2) and cos.dtype == torch.float32
    for p in range(6):
        for j in range(head_dim // 2):
            angle = p * theta ** (-2 * j / head_dim)
            assert cos[p, j].item() == pytest.approx(math.cos(angle), abs=1e-6)
            assert sin[p, j].item() == pytest.approx(math.sin(angle), abs=1e-6)
    x = torch.randn(1, 1, 6, head_dim, generator=torch.Generator().manual_seed(2))
    rotated = apply_rope(x, cos[None, None], sin[None, None])
    half = head_dim // 2
    first, second = x[..., :half], x[..., half:]
    assert torch.allclose(rotated[..., :half], first * cos - second * sin, atol=1e-6)
    assert torch.allclose(rotated[..., half:], first * sin + second * cos, atol=1e-6)
    # what RoPE is for: a query-key product depends on the positions' difference only
    q, k = torch.randn(2, head_dim, generator=torch.Generator().manual_seed(3))
    q_at = apply_rope(q.expand(1, 1, 6, head_dim), cos[None, None], sin[None, None])[0, 0]
    k_at = apply_rope(k.expand(1, 1, 6, head_dim), cos[None, None], sin[None, None])[0, 0]
    assert (q_at[3] @ k_at[1]).item() == pytest.approx((q_at[5] @ k_at[3]).item(), rel=1e-5)
    assert (q_at[3] @ k_at[1]).item() != pytest.approx((q_at[3] @ k_at[2]).item(), rel=1e-3)


def test_rope_tables_are_not_saved_with_the_weights() -> None:
    """They are recomputed from the config: checkpoints and exported models hold weights only."""
    assert not [name for name in _model().state_dict() if "rope" in name]


@pytest.mark.parametrize("temperature", [None, 1.0, 0.5, 2.0])
def test_token_logprobs_readout_is_log_softmax_of_the_logits_over_the_temperature(temperature) -> None:
    model = _model(seed=6)
    ids, _, _ = _inputs()
    targets = TOKENS[:, 1:]
    readout = (
        TokenLogprobs(targets) if temperature is None else TokenLogprobs(targets, temperature=temperature)
    )
    with torch.no_grad():
        got = model(ids, readout=readout)
        logits = model.head(model.norm(model.trunk(ids))).double()
    want = F.log_softmax(logits / (temperature or 1.0), dim=-1).gather(-1, targets[..., None])[..., 0]
    assert torch.allclose(got.double(), want, atol=1e-4)


def test_initial_weights_follow_the_documented_scales() -> None:
    """Norm gains 1, biases 0, matrices N(0, init_std²), the residual-branch outputs (wo, w2) scaled by
    1/sqrt(2 · n_layers) (GPT-2's depth scaling): a wrong scale trains silently worse, so pin it."""
    cfg = model_config("tiny", 512, max_seq_len=16, mtp_depth=1, qkv_bias=True, init_std=0.02)
    model = Transformer(cfg, seed=7)
    residual_std = 0.02 / (2 * cfg.n_layers) ** 0.5  # 0.01 for the two-layer tiny preset
    pooled: dict[str, list[torch.Tensor]] = {"residual": [], "other": []}
    for name, param in model.named_parameters():
        if name.endswith("norm.weight"):
            assert torch.equal(param, torch.ones_like(param)), name
        elif name.endswith(".bias"):
            assert torch.equal(param, torch.zeros_like(param)), name
        else:
            pooled["residual" if name.endswith(("wo.weight", "w2.weight")) else "other"].append(
                param.flatten()
            )
    residual, other = (torch.cat(pooled[k]) for k in ("residual", "other"))
    assert residual.std().item() == pytest.approx(residual_std, rel=0.03)
    assert other.std().item() == pytest.approx(0.02, rel=0.03)
    assert abs(residual.mean().item()) < 0.001 and abs(other.mean().item()) < 0.001


def test_last_only_logits_are_the_last_position_of_the_full_logits() -> None:
    model = _model(seed=8)
    ids, _, _ = _inputs()
    with torch.no_grad():
        last = model(ids, readout=Logits(last_only=True))
        full = model(ids, readout=Logits())
    assert last.shape == (2, 1, V) and full.shape == (2, T, V)
    assert torch.allclose(last, full[:, -1:], atol=1e-6)
