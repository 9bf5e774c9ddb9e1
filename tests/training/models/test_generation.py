"""KV-cache generation, sampling controls, log-probabilities of completions, MTP speculative decoding."""

from __future__ import annotations

import pytest
import torch

from training.config import model_config
from training.models.generation import completion_logprobs, generate, sample_next, speculative_generate
from training.models.transformer import Transformer

PROMPTS = [[0, 17, 42, 99, 5], [0, 8], [0, 250, 3, 3, 3, 7, 1, 90, 45]]


@pytest.fixture(scope="module")
def model() -> Transformer:
    return Transformer(model_config("tiny", 300, max_seq_len=96, mtp_depth=2), seed=11).eval()


def test_kv_cache_greedy_equals_recomputing_everything(model) -> None:
    cached = generate(model, PROMPTS, 20, temperature=0).tokens
    recomputed = generate(model, PROMPTS, 20, temperature=0, use_cache=False).tokens
    assert cached == recomputed
    assert all(len(c) == 20 for c in cached)


def test_batched_prompts_of_different_lengths_equal_one_at_a_time(model) -> None:
    batched = generate(model, PROMPTS, 16, temperature=0).tokens
    assert batched == [generate(model, [p], 16, temperature=0).tokens[0] for p in PROMPTS]


def test_generation_stops_at_a_stop_token_and_keeps_it(model) -> None:
    free = generate(model, PROMPTS, 12, temperature=0).tokens
    stop = free[0][4]
    stopped = generate(model, PROMPTS, 12, temperature=0, stop_ids={stop}).tokens
    first = free[0].index(stop)
    assert stopped[0] == free[0][: first + 1]
    for full, cut in zip(free[1:], stopped[1:], strict=True):
        assert cut == (full[: full.index(stop) + 1] if stop in full else full)


def test_sampling_is_reproducible_with_a_seeded_generator(model) -> None:
    def run(seed: int) -> list[list[int]]:
        gen = torch.Generator().manual_seed(seed)
        return generate(model, PROMPTS, 15, temperature=1.0, top_p=0.9, generator=gen).tokens

    assert run(1) == run(1)
    assert run(1) != run(2)


def test_tiny_top_p_is_greedy(model) -> None:
    gen = torch.Generator().manual_seed(0)
    sampled = generate(model, PROMPTS, 10, temperature=1.0, top_p=1e-6, generator=gen).tokens
    assert sampled == generate(model, PROMPTS, 10, temperature=0).tokens


def test_top_p_keeps_the_smallest_set_reaching_p() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).expand(4000, 4)
    gen = torch.Generator().manual_seed(0)
    counts = torch.bincount(sample_next(logits, 1.0, 0.7, gen), minlength=4)
    assert counts[2] == 0 and counts[3] == 0
    assert abs(counts[0] / counts[:2].sum() - 0.5 / 0.8) < 0.05
    counts = torch.bincount(sample_next(logits, 1.0, 1.0, gen), minlength=4)
    assert (counts > 0).all()


def test_completion_logprobs_equal_a_full_forward_pass(model) -> None:
    completions = generate(model, PROMPTS, 9, temperature=0).tokens
    completions[1] = completions[1][:3]  # ragged completions
    logprobs, mask = completion_logprobs(model, PROMPTS, completions)
    assert mask.sum(1).tolist() == [len(c) for c in completions]
    with torch.no_grad():
        for row, (prompt, completion) in enumerate(zip(PROMPTS, completions, strict=True)):
            ids = torch.tensor([prompt + completion])
            full = torch.log_softmax(model.logits(model.trunk(ids)).float(), -1)[0]
            expected = full[len(prompt) - 1 : -1].gather(-1, torch.tensor(completion)[:, None])[:, 0]
            assert torch.allclose(logprobs[row, : len(completion)], expected, atol=1e-5)
            assert (logprobs[row, len(completion) :] == 0).all()


def test_completion_logprobs_are_differentiable(model) -> None:
    logprobs, mask = completion_logprobs(model, PROMPTS, [[4, 5], [6], [7, 8, 9]])
    (logprobs * mask).sum().backward()
    assert model.head.weight.grad is not None and model.head.weight.grad.abs().sum() > 0
    model.zero_grad()


def test_speculative_decoding_equals_greedy_and_accepts_drafts_after_training(pattern_model) -> None:
    trained, pattern, _ = pattern_model
    prompt = pattern[:5].tolist()
    greedy = generate(trained, [prompt], 40, temperature=0).tokens[0]
    speculative, stats = speculative_generate(trained, prompt, 40)
    assert speculative == greedy
    assert stats.accepted / stats.drafted > 0.5
    assert stats.main_forwards < 40  # several tokens per main forward pass


def test_speculative_decoding_equals_greedy_on_an_untrained_model(model) -> None:
    for prompt in PROMPTS:
        tokens, stats = speculative_generate(model, prompt, 15)
        assert tokens == generate(model, [prompt], 15, temperature=0).tokens[0]
        assert stats.drafted == 2 * (stats.main_forwards - 1)


def test_speculative_decoding_runs_up_to_max_seq_len_like_plain_generation() -> None:
    """Prompt 20 tokens + 13 new = 32 positions = max_seq_len: drafts past the end are not made."""
    short = Transformer(model_config("tiny", 300, max_seq_len=32, mtp_depth=2), seed=5).eval()
    prompt = list(range(3, 23))
    greedy = generate(short, [prompt], 13, temperature=0).tokens[0]
    speculative, stats = speculative_generate(short, prompt, 13)
    assert speculative == greedy and len(speculative) == 13
    assert stats.drafted < 2 * (stats.main_forwards - 1)  # the last forwards drafted fewer than D tokens
    with pytest.raises(ValueError, match="max_seq_len"):
        speculative_generate(short, prompt, 14)


def test_sampled_logprobs_are_those_of_the_sampling_distribution(model) -> None:
    gen = torch.Generator().manual_seed(3)
    out = generate(model, PROMPTS, 6, temperature=0.7, top_p=1.0, generator=gen)
    with torch.no_grad():
        for row, (prompt, completion) in enumerate(zip(PROMPTS, out.tokens, strict=True)):
            ids = torch.tensor([prompt + completion])
            scaled = torch.log_softmax(model.logits(model.trunk(ids)).float() / 0.7, -1)[0]
            expected = scaled[len(prompt) - 1 : -1].gather(-1, torch.tensor(completion)[:, None])[:, 0]
            assert torch.allclose(torch.tensor(out.logprobs[row]), expected, atol=1e-4)
    # at temperature 1 they are the model's own log-probabilities, which GRPO recomputes with gradients
    out = generate(model, PROMPTS, 6, temperature=1.0, generator=gen)
    logprobs, _ = completion_logprobs(model, PROMPTS, out.tokens)
    for row, values in enumerate(out.logprobs):
        assert torch.allclose(torch.tensor(values), logprobs[row, : len(values)], atol=1e-4)
    greedy = generate(model, PROMPTS, 4, temperature=0)
    assert all(v == 0.0 for row in greedy.logprobs for v in row)


def test_bad_generation_arguments_are_clear_errors(model) -> None:
    with pytest.raises(ValueError, match="at least one token"):
        generate(model, [[]], 3)
    with pytest.raises(ValueError, match="top_p"):
        generate(model, PROMPTS, 3, temperature=1.0, top_p=0.0)
    with pytest.raises(ValueError, match="a prompt of 97 tokens exceeds the model's max_seq_len 96"):
        generate(model, [[1] * 97, [1]], 3, temperature=0)


def test_padded_vocabulary_rows_are_never_sampled() -> None:
    """With a zero head every id is equally likely: unmasked, most samples land on rows past a 50-token
    vocabulary; with vocab_size=50, none does (greedy and top-k log-probs included)."""
    uniform = Transformer(model_config("tiny", 300, max_seq_len=96), seed=3).eval()
    with torch.no_grad():
        uniform.head.weight.zero_()
    gen = torch.Generator().manual_seed(0)
    unmasked = generate(uniform, PROMPTS, 10, temperature=1.0, generator=gen).tokens
    assert sum(t >= 50 for row in unmasked for t in row) > 15
    masked = generate(uniform, PROMPTS, 10, temperature=1.0, generator=gen, vocab_size=50, top_k_logprobs=3)
    assert all(t < 50 for row in masked.tokens for t in row)
    assert masked.top_ids is not None and all(int(ids.max()) < 50 for ids in masked.top_ids)
    greedy = generate(uniform, PROMPTS, 4, temperature=0.0, vocab_size=50).tokens
    assert all(t < 50 for row in greedy for t in row)


def test_speculative_decoding_masks_padded_rows_too(model) -> None:
    """Rig one padded row (id 299 of 300 with vocab_size 299) to win every argmax: masked, speculative decoding
    still equals masked plain greedy decoding and never emits it."""
    rigged = Transformer(model_config("tiny", 300, max_seq_len=96, mtp_depth=2), seed=11).eval()
    with torch.no_grad():
        rigged.norm.weight.zero_()
        rigged.norm.weight[0] = 1.0
        rigged.head.weight[298:] = 0.0
        rigged.head.weight[298, 0], rigged.head.weight[299, 0] = -1e4, 1e4
    prompt = PROMPTS[0]
    plain = generate(rigged, [prompt], 8, temperature=0, vocab_size=298).tokens[0]
    speculative, _ = speculative_generate(rigged, prompt, 8, vocab_size=298)
    assert speculative == plain and all(t < 298 for t in plain)
    unmasked, _ = speculative_generate(rigged, prompt, 8)
    assert all(t >= 298 for t in unmasked)


def test_each_row_stops_at_its_own_context_end() -> None:
    """A prompt near max_seq_len gets only the room it has (finish reason "length"); its batch-mates keep their
    whole budget and sample what they would alone. Old code refused the batch (or the caller shrank every
    row's budget to the longest prompt's room)."""
    short = Transformer(model_config("tiny", 300, max_seq_len=32), seed=5).eval()
    long_prompt, prompt = list(range(3, 33)), [0, 17, 42]  # 30 tokens: room for 3 new ones
    out = generate(short, [long_prompt, prompt], 10, temperature=0)
    assert out.tokens == [
        generate(short, [long_prompt], 3, temperature=0).tokens[0],
        generate(short, [prompt], 10, temperature=0).tokens[0],
    ]
    assert [len(t) for t in out.tokens] == [3, 10] and out.truncated == [True, True]
    # the long row filled the context (30 + 3 = max_seq_len + 1): its log-probs are still computable
    logprobs, mask = completion_logprobs(short, [long_prompt, prompt], out.tokens)
    assert mask.sum(dim=1).tolist() == [3, 10] and bool(torch.isfinite(logprobs).all())
    stop = out.tokens[1][4]
    stopped = generate(short, [long_prompt, prompt], 10, temperature=0, stop_ids={stop})
    assert stopped.tokens[1] == out.tokens[1][: out.tokens[1].index(stop) + 1]
    assert stopped.truncated == [stop not in out.tokens[0], False]
