"""Activation checkpointing and the document-attention backends change memory, never the numbers.

Checkpointing: the same loss and gradients, each block (and MTP module) run again in backward, fewer bytes
kept for backward. Attention: `sdpa` and `flex` give the dense mask's outputs on rows of several documents and
of one, without calling the function that builds the T×T mask.
"""

from __future__ import annotations

import pytest
import torch
from torch.nn.attention.flex_attention import create_mask

import training.models.transformer as model_module
from training.config import RunConfig, model_config
from training.models.transformer import Transformer, doc_block_mask, document_causal_mask, resolve_attention

T = 50


def _model(mtp_depth: int = 1) -> Transformer:
    return Transformer(model_config("tiny", 256, max_seq_len=T, mtp_depth=mtp_depth), seed=3).float()


def _batch(several_docs: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 256, (3, T), generator=g)
    if several_docs:  # row 0: three documents, row 1: one, row 2: a document change at every block edge
        docs = torch.tensor([[0] * 7 + [1] * 30 + [2] * 13, [0] * T, [0] * 16 + [1] * 16 + [2] * 18])
    else:
        docs = torch.zeros(3, T, dtype=torch.long)
    targets = ids.roll(-1, dims=1)
    targets[:, -1] = -100
    return ids, targets, docs


def _loss_and_grads(model: Transformer, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.zero_grad()
    out = model(*batch, mtp_weight=0.3)
    out.loss.backward()
    return out.loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _saved_bytes(model: Transformer, batch) -> int:
    """Bytes autograd keeps for backward from one forward (tensors saved inside checkpointed regions are
    held by the checkpoint's own hooks, so they do not reach these)."""
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(*batch, mtp_weight=0.3).loss.backward()
    return total


def test_activation_checkpointing_keeps_gradients_and_recomputes_every_block() -> None:
    model, batch = _model(), _batch(several_docs=True)
    loss, grads = _loss_and_grads(model, batch)
    plain_bytes = _saved_bytes(model, batch)

    calls: list[str] = []
    for name, module in [*((f"layer{i}", b) for i, b in enumerate(model.layers)), ("mtp0", model.mtp[0])]:
        module.register_forward_pre_hook(lambda *_, name=name: calls.append(name))
    model.configure(activation_checkpointing=True)
    model.zero_grad()
    out = model(*batch, mtp_weight=0.3)
    forward_calls = list(calls)
    out.loss.backward()
    assert forward_calls == ["layer0", "layer1", "mtp0"]
    assert sorted(calls[len(forward_calls) :]) == ["layer0", "layer1", "mtp0"]  # recomputed in backward

    ckpt_loss, ckpt_grads = _loss_and_grads(model, batch)
    torch.testing.assert_close(ckpt_loss, loss, rtol=0, atol=0)
    assert ckpt_grads.keys() == grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(ckpt_grads[name], grad, rtol=1e-6, atol=1e-7, msg=name)
    assert _saved_bytes(model, batch) < plain_bytes / 2

    calls.clear()
    with torch.no_grad():  # no gradients recorded: nothing to recompute, so no checkpoint
        model(*batch, mtp_weight=0.3)
    assert calls == ["layer0", "layer1", "mtp0"]


@pytest.fixture
def dense_mask_calls(monkeypatch) -> list[tuple[int, ...]]:
    """Shapes passed to the dense-mask builder (the real one still runs)."""
    calls: list[tuple[int, ...]] = []

    def recording(doc_ids: torch.Tensor) -> torch.Tensor:
        calls.append(tuple(doc_ids.shape))
        return document_causal_mask(doc_ids)

    monkeypatch.setattr(model_module, "document_causal_mask", recording)
    return calls


@pytest.mark.parametrize("several_docs", [True, False])
def test_sdpa_backend_matches_dense_and_skips_the_mask_for_one_document_rows(
    several_docs: bool, dense_mask_calls
) -> None:
    model, batch = _model(), _batch(several_docs)
    model.configure(attention="dense")
    loss, grads = _loss_and_grads(model, batch)
    assert dense_mask_calls == [(3, T)]
    dense_mask_calls.clear()

    model.configure(attention="sdpa")
    sdpa_loss, sdpa_grads = _loss_and_grads(model, batch)
    torch.testing.assert_close(sdpa_loss, loss)
    for name, grad in grads.items():
        torch.testing.assert_close(sdpa_grads[name], grad, rtol=1e-5, atol=1e-6, msg=name)
    assert dense_mask_calls == ([(3, T)] if several_docs else [])
    if not several_docs:  # the causal kernel keeps nothing of T×T size for backward
        shapes: list[tuple[int, ...]] = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: shapes.append(t.shape) or t, lambda t: t):
            model(*batch)
        assert shapes and not any(tuple(s[-2:]) == (T, T) for s in shapes)


@pytest.mark.parametrize("several_docs", [True, False])
def test_flex_backend_matches_dense_without_building_the_dense_mask(
    several_docs: bool, dense_mask_calls
) -> None:
    """Forward only: torch has no CPU backward for FlexAttention (its GPU backward is the bench's to run)."""
    model, batch = _model(), _batch(several_docs)
    ids, _, docs = batch
    with torch.no_grad():
        model.configure(attention="dense")
        hidden = model(ids, doc_ids=docs, readout=lambda m, normed: normed)
        dense_mask_calls.clear()
        model.configure(attention="flex")
        flex_hidden = model(ids, doc_ids=docs, readout=lambda m, normed: normed)
        flex_loss = model(*batch, mtp_weight=0.3).loss
        model.configure(attention="dense")
        dense_loss = model(*batch, mtp_weight=0.3).loss
    torch.testing.assert_close(flex_hidden, hidden, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(flex_loss, dense_loss, rtol=1e-5, atol=1e-5)
    assert dense_mask_calls == [(3, T)]  # only the dense reference's own loss built it


@pytest.mark.parametrize("block_size", [8, 16, 64])
def test_block_mask_from_document_ranges_is_the_document_causal_mask(block_size: int) -> None:
    _, _, docs = _batch(several_docs=True)
    docs = torch.cat((docs, torch.tensor([[0, 1, 1, 2, 5, 5] * 8 + [6, 6]])))  # short documents, gaps in ids
    block_mask = doc_block_mask(docs, block_size=block_size)
    dense = document_causal_mask(docs)
    assert torch.equal(create_mask(block_mask.mask_mod, docs.shape[0], 1, T, T, device="cpu"), dense)
    # Blocks marked full skip the mask function, so they must be all-True in the dense mask; blocks left out
    # must be all-False; flex attention through this mask equals SDPA with the dense one.
    n = -(-T // block_size)
    pad = (0, n * block_size - T, 0, n * block_size - T)  # positions past T are no one's: neutral padding
    per_block = lambda fill: torch.nn.functional.pad(dense, pad, value=fill).view(  # noqa: E731
        docs.shape[0], 1, n, block_size, n, block_size
    )
    any_true, all_true = per_block(False).any(dim=(3, 5)), per_block(True).all(dim=(3, 5))
    listed = block_mask.to_dense().bool()
    assert torch.equal(listed | ~any_true, torch.ones_like(listed))  # every block with a True is listed
    full = torch.zeros_like(listed)
    for b in range(docs.shape[0]):
        for q in range(n):
            count = int(block_mask.full_kv_num_blocks[b, 0, q])
            full[b, 0, q, block_mask.full_kv_indices[b, 0, q, :count].long()] = True
    assert torch.equal(full & ~all_true, torch.zeros_like(full))
    assert full.any() == (n > 1)  # one block (T < 64) sits on the diagonal, which is never full
    q, k, v = (torch.randn(docs.shape[0], h, T, 16) for h in (4, 2, 2))
    flex = model_module.flex_attention_call(q, k, v, block_mask, enable_gqa=True)
    dense_out = torch.nn.functional.scaled_dot_product_attention(
        q, k.repeat_interleave(2, 1), v.repeat_interleave(2, 1), attn_mask=dense
    )
    torch.testing.assert_close(flex, dense_out, rtol=1e-5, atol=1e-5)


def test_backend_choice_and_validation() -> None:
    assert resolve_attention("auto", torch.device("cuda")) == "flex"
    assert resolve_attention("auto", torch.device("cpu")) == "sdpa"
    assert resolve_attention("dense", torch.device("cuda")) == "dense"
    with pytest.raises(ValueError, match="attention must be one of"):
        _model().configure(attention="paged")
    with pytest.raises(ValueError, match="attention must be one of"):
        RunConfig(out="x", attention="paged")
