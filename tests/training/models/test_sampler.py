"""The sampler's speed levers change nothing that is sampled: rows that leave the batch, chunked prefill, the
host-check cadence, the compiled decode step and the oneDNN-packed CPU linears give the tokens of the plain
paths (each row alone, the no-cache path, transformers' greedy `generate`), and the KV cache holds rows x
(prompt + budget) slots, never max_seq_len."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import transformers
from hf_fixtures import SHAPE

from training.config import model_config
from training.models.generation import draw, generate, row_argmax, sample_next
from training.models.hf import load_hf
from training.models.packed_linears import available, prepacked_linears
from training.models.transformer import KVCache, Transformer

PROMPTS = [[0, 17, 42, 99, 5], [0, 8], [0, 250, 3, 3, 3, 7, 1, 90, 45], [0, 3], [0, 9, 9, 9, 9, 9, 9, 9, 200]]
BUDGET = 24


@pytest.fixture(scope="module")
def model() -> Transformer:
    # a long context: the cache must follow the prompts and budgets, not this
    return Transformer(model_config("tiny", 300, max_seq_len=4096, mtp_depth=0), seed=11).eval()


@pytest.fixture(scope="module")
def stops(model) -> set[int]:
    """Stop ids that end rows 0 and 3 early (and maybe others), while some row runs its whole budget."""
    free = generate(model, PROMPTS, BUDGET, temperature=0).tokens
    chosen = {free[0][3], free[3][6]}
    lengths = [next((i + 1 for i, t in enumerate(row) if t in chosen), BUDGET) for row in free]
    assert sum(n < BUDGET // 2 for n in lengths) >= 2 and max(lengths) == BUDGET  # the premise
    return chosen


def _cut(rows: list[list[int]], stops: set[int]) -> list[list[int]]:
    return [row[: next((i + 1 for i, t in enumerate(row) if t in stops), len(row))] for row in rows]


def test_rows_leaving_the_batch_sample_what_each_row_samples_alone(model, stops) -> None:
    out = generate(model, PROMPTS, BUDGET, temperature=0, stop_ids=stops)
    assert out.stats is not None and out.stats.compactions >= 1
    alone = [generate(model, [p], BUDGET, temperature=0, stop_ids=stops).tokens[0] for p in PROMPTS]
    assert out.tokens == alone
    assert (
        out.tokens == generate(model, PROMPTS, BUDGET, temperature=0, stop_ids=stops, use_cache=False).tokens
    )
    assert out.tokens == _cut(generate(model, PROMPTS, BUDGET, temperature=0).tokens, stops)
    assert out.truncated == [len(t) == BUDGET and t[-1] not in stops for t in out.tokens]
    # a host check every 5 steps (the GPU cadence) and never compacting sample the same
    for options in ({"check_every": 5}, {"compact_below": 0.0}):
        again = generate(model, PROMPTS, BUDGET, temperature=0, stop_ids=stops, **options)
        assert again.tokens == out.tokens and again.truncated == out.truncated
    assert again.stats is not None and again.stats.compactions == 0


def test_sampling_with_rows_leaving_is_reproducible_and_its_logprobs_are_the_models(model, stops) -> None:
    def run(seed: int, **options):
        gen = torch.Generator().manual_seed(seed)
        return generate(model, PROMPTS, BUDGET, temperature=0.8, generator=gen, stop_ids=stops, **options)

    first = run(5)
    assert first.tokens == run(5).tokens and first.tokens != run(6).tokens
    with torch.no_grad():
        for prompt, tokens, values in zip(PROMPTS, first.tokens, first.logprobs, strict=True):
            logits = model.logits(model.trunk(torch.tensor([prompt + tokens])))[0] / 0.8
            expected = torch.log_softmax(logits.float(), -1)[len(prompt) - 1 : -1]
            expected = expected.gather(-1, torch.tensor(tokens)[:, None])[:, 0]
            assert torch.allclose(torch.tensor(values), expected, atol=1e-4)


def test_chunked_prefill_equals_one_prefill_forward(model) -> None:
    whole = generate(model, PROMPTS, 10, temperature=0, top_k_logprobs=3, prefill_chunk=512)
    for chunk in (1, 2, 4):
        chunked = generate(model, PROMPTS, 10, temperature=0, top_k_logprobs=3, prefill_chunk=chunk)
        assert chunked.tokens == whole.tokens
        assert chunked.stats is not None and chunked.stats.forwards == -(-9 // chunk) + 9
        for a, b, c, d in zip(
            chunked.top_ids, whole.top_ids, chunked.top_logprobs, whole.top_logprobs, strict=True
        ):
            assert np.array_equal(a, b) and np.allclose(c, d, atol=1e-5)


def test_top_k_logprobs_and_truncation_equal_the_uncached_path(model, stops) -> None:
    options = {"temperature": 0, "stop_ids": stops, "top_k_logprobs": 4, "vocab_size": 250}
    cached = generate(model, PROMPTS, 12, **options)
    plain = generate(model, PROMPTS, 12, use_cache=False, **options)
    assert cached.tokens == plain.tokens and cached.truncated == plain.truncated
    assert cached.top_ids is not None and plain.top_ids is not None
    for tokens, ids, values, ids2, values2 in zip(
        cached.tokens, cached.top_ids, cached.top_logprobs, plain.top_ids, plain.top_logprobs, strict=True
    ):
        assert ids.shape == (len(tokens), 4) and np.array_equal(ids, ids2)
        assert np.allclose(values, values2, atol=1e-5)
        assert ids[:, 0].tolist() == tokens and int(ids.max()) < 250  # greedy picks the top id


def test_kv_cache_holds_rows_times_prompt_plus_budget_and_shrinks_as_rows_leave(model, stops) -> None:
    cfg = model.cfg
    per_slot = 2 * cfg.n_layers * cfg.n_kv_heads * cfg.head_dim
    width = max(len(p) for p in PROMPTS)
    out = generate(model, PROMPTS, BUDGET, temperature=0, stop_ids=stops)
    assert out.stats is not None
    sizes = out.stats.cache_elements
    assert sizes[0] == per_slot * len(PROMPTS) * (width + BUDGET - 1)
    assert sizes[0] * 100 < per_slot * len(PROMPTS) * cfg.max_seq_len
    assert len(sizes) == out.stats.compactions + 1 and sizes == sorted(sizes, reverse=True)
    assert sizes[-1] < sizes[0] and all(s % per_slot == 0 for s in sizes)
    # the last compaction keeps the rows that ran longest, and only the slots their prompts and budgets use
    longest = [p for p, t in zip(PROMPTS, out.tokens, strict=True) if len(t) == BUDGET]
    assert sizes[-1] >= per_slot * len(longest) * (max(map(len, longest)) + BUDGET - 1)


def test_cache_keep_drops_rows_and_slots_and_keeps_the_rest() -> None:
    cache = KVCache(1, 10)
    k = torch.arange(3 * 2 * 6 * 4, dtype=torch.float32).view(3, 2, 6, 4)
    cache.update(0, k, -k)
    cache.length = 6  # the model's trunk moves it after every layer wrote
    cache.keep(torch.tensor([2, 0]), start=2, end=8)
    assert cache.length == 4 and cache.max_len == 6 and cache.elements() == 2 * 2 * 2 * 6 * 4
    kept_k, kept_v = cache.update(0, torch.ones(2, 2, 1, 4), torch.ones(2, 2, 1, 4))
    assert torch.equal(kept_k[:, :, :4], k[[2, 0], :, 2:6]) and torch.equal(
        kept_v[:, :, :4], -k[[2, 0], :, 2:6]
    )
    assert bool((kept_k[:, :, 4] == 1).all()) and kept_k.shape[2] == 5
    with pytest.raises(ValueError, match="cannot keep"):
        cache.keep(torch.tensor([0]), start=6)


def test_compiled_decode_step_equals_the_eager_one(model, stops, caplog) -> None:
    """Dynamo traces the static-shape decode step (backend "eager": no C++ compiler needed) once per shape, not
    per step; rows leaving the batch change its shapes, not what is sampled. compile_decode=True on CPU stays
    eager (inductor decode is for CUDA)."""
    eager = generate(model, PROMPTS, BUDGET, temperature=0, stop_ids=stops)
    compiled = generate(model, PROMPTS, BUDGET, temperature=0, stop_ids=stops, compile_decode="eager")
    assert compiled.tokens == eager.tokens and compiled.stats.compactions == eager.stats.compactions
    with caplog.at_level("INFO", logger="training.models.generation"):
        on_cpu = generate(model, PROMPTS, 6, temperature=0, compile_decode=True)
    assert on_cpu.tokens == [t[:6] for t in generate(model, PROMPTS, 6, temperature=0).tokens]
    assert "compile_decode ignored on cpu" in caplog.text


@pytest.mark.skipif(not available(), reason="this torch build has no oneDNN")
def test_packed_linears_equal_f_linear_and_leave_autograd_alone() -> None:
    linear = torch.nn.Linear(64, 1000)
    x = torch.randn(16, 64)
    with torch.no_grad():
        expected = F.linear(x, linear.weight, linear.bias)
        with prepacked_linears(linear, rows=16) as packed:
            got = linear(x)
            sliced = linear(torch.randn(16, 3, 64)[:, -1:])  # a non-contiguous 3-d input
    assert packed and torch.allclose(got, expected, atol=1e-5) and sliced.shape == (16, 1, 1000)
    with prepacked_linears(linear, rows=16):
        y = linear(x)  # gradients on: the plain linear
    assert y.grad_fn is not None and torch.equal(y.detach(), expected)


def test_row_argmax_is_argmax_with_its_first_of_equal_maxima() -> None:
    g = torch.Generator().manual_seed(0)
    for vocab in (32000, 2051):
        logits = torch.randn(16, vocab, generator=g)
        logits[3, [7, 900, 1500]] = 9.0  # ties inside one block and across blocks: the first wins
        logits[4, :] = float("-inf")
        logits[5, 2047:] = 10.0  # ties in the padded last block
        assert torch.equal(row_argmax(logits), logits.argmax(dim=-1))


def test_draw_follows_the_distribution_and_never_draws_a_zero() -> None:
    """The CPU inverse-CDF draw over 1,000 ids (several blocks, a padded last one), a seventh of them at
    probability 0: 100k draws land within a few standard deviations of every expected count."""
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(1000, generator=g) * 2, -1)
    probs[::7] = 0.0
    probs[999] = 0.0
    rows = probs.expand(10_000, 1000).contiguous()
    counts = sum(torch.bincount(draw(rows, g), minlength=1000) for _ in range(10)).double()
    expected = probs.double() / probs.sum() * 100_000
    assert counts[probs == 0].sum() == 0
    z = ((counts - expected) / expected.sqrt())[expected > 20]
    assert len(z) > 200 and float(z.abs().max()) < 5.0 and abs(float(z.mean())) < 0.2


def test_top_p_on_many_ids_keeps_the_smallest_set_reaching_p() -> None:
    """Peaked rows (the nucleus within the 1,024 most likely ids: the partial sort) and flat ones (the full
    sort): every draw lies in the set the sorted reference keeps, and its log-prob is the renormalised one."""
    g = torch.Generator().manual_seed(1)
    logits = torch.cat((torch.randn(8, 32000, generator=g) * 6, torch.randn(8, 32000, generator=g) * 0.1))
    probs = torch.softmax(logits, -1)
    ordered, order = probs.sort(-1, descending=True)
    keep = torch.zeros_like(probs, dtype=torch.bool).scatter(-1, order, ordered.cumsum(-1) - ordered < 0.9)
    assert int(keep[:8].sum(-1).max()) < 1024 < int(keep[8:].sum(-1).min())  # the premise
    kept_mass = (probs * keep).sum(-1)
    for _ in range(20):
        token, logprob = sample_next(logits, 1.0, 0.9, g, with_logprobs=True)
        assert bool(keep.gather(-1, token[:, None]).all())
        expected = (probs.gather(-1, token[:, None])[:, 0] / kept_mass).log()
        assert torch.allclose(logprob, expected, atol=1e-5)


def test_batched_greedy_equals_transformers_on_an_imported_qwen2(tmp_path) -> None:
    """Mixed-length, left-padded prompts on a random Qwen2 (grouped-query heads, 2051 ids: the blocked argmax
    with a padded last block) give transformers' greedy tokens through the cache, compaction and packing."""
    config = transformers.Qwen2Config(
        num_hidden_layers=2, tie_word_embeddings=False, **{**SHAPE, "vocab_size": 2051}
    )
    torch.manual_seed(3)
    reference = transformers.Qwen2ForCausalLM(config).eval()
    reference.save_pretrained(tmp_path)
    ours = load_hf(tmp_path)
    prompts = [[5, 17, 42, 99, 5, 1000], [7, 8], [250, 3, 3, 3, 7, 1, 90, 45, 2000, 31], [11, 3, 1500]]
    width = max(map(len, prompts))
    ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    with torch.no_grad():
        theirs = reference.generate(
            ids, attention_mask=mask, max_new_tokens=16, do_sample=False, eos_token_id=None, pad_token_id=0
        )[:, width:].tolist()
    assert generate(ours, prompts, 16, temperature=0).tokens == theirs
    stop = theirs[1][2]
    stopped = generate(ours, prompts, 16, temperature=0, stop_ids={stop})
    assert stopped.tokens == _cut(theirs, {stop})
