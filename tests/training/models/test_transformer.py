"""The decoder and its MTP modules: document isolation, MTP targets, λ = 0, learning a pattern."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from training.config import IGNORE_INDEX, PRESETS, model_config
from training.data.packing import PackedLoader, index_corpus, shift_targets
from training.metrics import matmul_params
from training.models.transformer import Transformer, document_causal_mask, mtp_targets


def _model(**overrides) -> Transformer:
    return Transformer(model_config("tiny", 300, max_seq_len=64, **overrides), seed=3)


def test_attention_never_crosses_a_document_boundary() -> None:
    model = _model()
    ids = torch.randint(3, 300, (2, 24), generator=torch.Generator().manual_seed(1))
    docs = torch.tensor([[0] * 10 + [1] * 14, [0] * 5 + [1] * 9 + [2] * 10])
    changed = ids.clone()
    changed[0, :10] = torch.randint(3, 300, (10,))  # rewrite the first document of row 0
    changed[1, 5:14] = torch.randint(3, 300, (9,))  # and the middle document of row 1
    mask = document_causal_mask(docs)
    with torch.no_grad():
        before, after = model.trunk(ids, mask=mask), model.trunk(changed, mask=mask)
        leaky_before, leaky_after = model.trunk(ids), model.trunk(changed)
    assert torch.allclose(before[0, 10:], after[0, 10:], atol=1e-6)
    assert torch.allclose(before[1, 14:], after[1, 14:], atol=1e-6)
    assert torch.allclose(before[1, :5], after[1, :5], atol=1e-6)
    assert not torch.allclose(leaky_before[0, 10:], leaky_after[0, 10:], atol=1e-3)  # the mask is what helps


def _naive_mtp_targets(tokens: np.ndarray, docs: np.ndarray, k: int) -> np.ndarray:
    """From the definition: position i of depth k predicts token i+k+1 if it is in i's document."""
    length = tokens.shape[1] - 1
    out = np.full((tokens.shape[0], length), IGNORE_INDEX)
    for row in range(tokens.shape[0]):
        for i in range(length):
            j = i + k + 1
            if j <= length and docs[row, j] == docs[row, i]:
                out[row, i] = tokens[row, j]
    return out


@pytest.mark.parametrize("k", [1, 2, 3])
def test_mtp_targets_follow_the_definition_and_stay_inside_documents(k) -> None:
    rng = np.random.default_rng(k)
    tokens = rng.integers(3, 300, (4, 21))
    docs = np.sort(rng.integers(0, 5, (4, 21)), axis=1)
    targets = torch.from_numpy(shift_targets(tokens, docs))
    got = mtp_targets(targets, torch.from_numpy(docs[:, :-1]), k)
    assert got.tolist() == _naive_mtp_targets(tokens, docs, k).tolist()


def test_mtp_targets_on_packed_batches_never_cross_documents(corpus_dir, tokenizer) -> None:
    loader = PackedLoader(index_corpus(corpus_dir), tokenizer, seq_len=48, batch_size=4, shuffle=False)
    for _ in range(5):
        batch = next(loader)
        for k in (1, 2):
            targets = mtp_targets(batch.targets, batch.doc_ids, k)
            rows, cols = torch.nonzero(targets != IGNORE_INDEX, as_tuple=True)
            assert len(rows) > 0
            assert torch.equal(batch.doc_ids[rows, cols + k], batch.doc_ids[rows, cols])
            inside = cols + k + 1 < batch.input_ids.shape[1]
            assert torch.equal(
                targets[rows[inside], cols[inside]], batch.input_ids[rows[inside], cols[inside] + k + 1]
            )


def test_with_zero_mtp_weight_the_main_loss_matches_a_model_without_mtp(corpus_dir, tokenizer) -> None:
    cfg = {"vocab_size": tokenizer.get_vocab_size()}
    with_mtp = Transformer(model_config("tiny", max_seq_len=48, mtp_depth=1, **cfg), seed=5)
    without = Transformer(model_config("tiny", max_seq_len=48, mtp_depth=0, **cfg), seed=5)
    for name, param in without.named_parameters():
        assert torch.equal(param, with_mtp.get_parameter(name))
    loaders = [PackedLoader(index_corpus(corpus_dir), tokenizer, 48, 4, shuffle=False) for _ in range(2)]
    optimisers = [torch.optim.AdamW(m.parameters(), lr=3e-3) for m in (with_mtp, without)]
    for step in range(6):
        losses = []
        for model, opt, loader in zip((with_mtp, without), optimisers, loaders, strict=True):
            batch = next(loader)
            out = model(batch.input_ids, batch.targets, batch.doc_ids, mtp_weight=0.0)
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad()
            losses.append(out.main_loss.detach())
        assert torch.allclose(losses[0], losses[1], rtol=1e-6, atol=0), step
    assert len(with_mtp(batch.input_ids, batch.targets, batch.doc_ids).mtp_losses) == 1


def test_mtp_losses_drop_on_a_learnable_pattern(pattern_model) -> None:
    _, _, history = pattern_model
    first, last = np.mean(history[:5], axis=0), np.mean(history[-5:], axis=0)
    for depth in (1, 2):
        assert last[depth] < 0.2 * first[depth], (depth, first, last)
    assert last[0] < 0.2 * first[0]


def test_dropping_mtp_keeps_the_main_model(pattern_model) -> None:
    trained, pattern, _ = pattern_model
    model = copy.deepcopy(trained)
    ids = pattern[torch.arange(30) % len(pattern)][None]
    with torch.no_grad():
        before = model.logits(model.trunk(ids))
        model.drop_mtp()
        assert torch.equal(before, model.logits(model.trunk(ids)))
    state = model.state_dict()
    assert not any(k.startswith("mtp.") for k in state) and model.cfg.mtp_depth == 0
    plain = Transformer(model.cfg)
    plain.load_state_dict(state)  # loads into a model built without MTP modules


def test_loss_is_finite_when_no_target_is_valid() -> None:
    model = _model(mtp_depth=2)
    ids = torch.randint(3, 300, (1, 2))
    out = model(ids, torch.full((1, 2), IGNORE_INDEX), torch.zeros(1, 2, dtype=torch.long), mtp_weight=0.3)
    assert torch.isfinite(out.loss) and out.loss.item() == 0.0


def test_sequences_longer_than_max_seq_len_are_rejected() -> None:
    with pytest.raises(ValueError, match="max_seq_len"):
        _model().trunk(torch.zeros(1, 65, dtype=torch.long))


@pytest.mark.parametrize("preset", list(PRESETS))
def test_presets_are_valid_and_flop_count_matches_the_modules(preset) -> None:
    cfg = model_config(preset, 1000, mtp_depth=1)
    with torch.device("meta"):
        original = Transformer.init_weights
        try:
            Transformer.init_weights = lambda self, seed: None  # shapes only; no memory for 1b
            model = Transformer(cfg)
        finally:
            Transformer.init_weights = original
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))
    assert matmul_params(cfg) == linear + cfg.mtp_depth * model.head.weight.numel()  # the head runs per depth
    main_linear = linear - sum(m.weight.numel() for m in model.mtp.modules() if isinstance(m, nn.Linear))
    assert matmul_params(cfg, with_mtp=False) == main_linear


def test_explicit_causal_mask_equals_plain_causal_attention() -> None:
    model = _model()  # grouped-query: 4 query heads share 2 KV heads
    ids = torch.randint(3, 300, (2, 20), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        implicit = model.trunk(ids)
        explicit = model.trunk(ids, mask=document_causal_mask(torch.zeros(2, 20, dtype=torch.long)))
    assert torch.allclose(implicit, explicit, atol=1e-5)
