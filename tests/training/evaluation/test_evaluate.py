"""`mathforge eval`'s batch handling and scoring: padded vocabulary rows never sampled, an over-long prompt skipped
and counted without shortening its batch-mates, strict and lenient answers scored side by side."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from training.config import EvalConfig, model_config
from training.data.benchmarks import BenchmarkItem
from training.evaluation.evaluate import Evaluator, format_summary, verify_matches
from training.models.generation import generate
from training.models.model_io import LoadedModel
from training.models.prompts import PromptTemplate
from training.models.tokenizer import encode_prompt, n_token_ids, special_ids
from training.models.transformer import Transformer
from training.rewards.verify import Verifier

MAX_SEQ_LEN = 64


@pytest.fixture(scope="module")
def verifier():
    with Verifier(workers=1, timeout_s=5.0) as v:
        yield v


@pytest.fixture(scope="module")
def loaded(tokenizer, tmp_path_factory) -> LoadedModel:
    """A tiny model with 64 head rows past the tokenizer, rigged so that one of two padded rows always wins
    the argmax unless the padded rows are masked (the final norm keeps one hidden dimension, d; the two rows
    read +d and -d with a large weight)."""
    n = n_token_ids(tokenizer)
    model = Transformer(model_config("tiny", n + 64, max_seq_len=MAX_SEQ_LEN, mtp_depth=0), seed=2).eval()
    assert model.head.weight.shape[0] >= n + 2
    with torch.no_grad():
        model.norm.weight.zero_()
        model.norm.weight[0] = 1.0
        model.head.weight[n:] = 0.0
        model.head.weight[n, 0] = 1e4
        model.head.weight[n + 1, 0] = -1e4
    root = tmp_path_factory.mktemp("eval_model")
    tokenizer.save(str(root / "tokenizer.json"))
    template = PromptTemplate("plain", eos_token="<|endoftext|>")
    return LoadedModel(model, tokenizer, root / "tokenizer.json", template, "model_dir", root)


def _cfg(tmp_path: Path, **overrides) -> EvalConfig:
    values = {"model": "-", "benchmark": ("-",), "out": str(tmp_path), "max_new_tokens": 6, "batch_size": 3}
    return EvalConfig(**{**values, **overrides})


def _question_of_length(loaded: LoadedModel, tokens: int) -> str:
    """A question whose prompt has between `tokens` and `tokens` + 3 tokens."""
    words = []
    while len(encode_prompt(loaded.tokenizer, " ".join(words), False)) < tokens:
        words.append("x")
    return " ".join(words)


def _prompt(evaluator: Evaluator, question: str) -> list[int]:
    return evaluator.prompt_ids(BenchmarkItem(id="q", question=question, answer="0"))


def test_eval_samples_only_the_tokenizers_vocabulary(loaded, verifier, tmp_path) -> None:
    evaluator = Evaluator(loaded, _cfg(tmp_path), verifier)
    prompt = _prompt(evaluator, "What is 2 + 3?")
    n = n_token_ids(loaded.tokenizer)
    pad = special_ids(loaded.tokenizer).pad
    unmasked = generate(loaded.model, [prompt], 6, temperature=0, pad_id=pad).tokens[0]
    assert all(t >= n for t in unmasked)  # the rig works: without masking, only padded rows are picked
    masked = generate(loaded.model, [prompt], 6, temperature=0, pad_id=pad, vocab_size=n).tokens[0]
    assert all(t < n for t in masked)
    texts, _ = evaluator.completions([prompt])
    expected = loaded.tokenizer.decode(
        [t for t in masked if t not in evaluator.stop_ids], skip_special_tokens=False
    )
    assert texts == [[expected]]


def test_an_over_long_prompt_is_skipped_and_counted_not_its_batch(loaded, verifier, tmp_path) -> None:
    """One question too long for the model and one that leaves 2 tokens of room share a batch with two short
    ones: the first is skipped and counted, the second is cut at the context end, and the short ones are
    generated exactly as they are alone, with their whole budget."""
    near = _question_of_length(loaded, MAX_SEQ_LEN - 4)
    rows = [
        {"question": "What is 2 + 3?", "answer": "5"},
        {"question": _question_of_length(loaded, MAX_SEQ_LEN + 5), "answer": "1"},
        {"question": near, "answer": "1"},
        {"question": "What is 4 + 4?", "answer": "8"},
    ]
    bench = tmp_path / "bench" / "mini.jsonl"
    bench.parent.mkdir()
    bench.write_text("".join(json.dumps(r) + "\n" for r in rows))
    evaluator = Evaluator(loaded, _cfg(tmp_path, batch_size=4, max_new_tokens=12), verifier)
    assert MAX_SEQ_LEN - 4 <= len(_prompt(evaluator, near)) <= MAX_SEQ_LEN - 1  # room for 2 to 5 tokens
    summary = evaluator.run_benchmark(bench, tmp_path)
    assert summary["n"] == 3 and summary["prompt_too_long"] == 1
    lines = [json.loads(line) for line in (tmp_path / "mini.jsonl").read_text().splitlines()]
    assert [line.get("skipped") for line in lines] == ["prompt_too_long", None, None, None]
    by_question = {line["question"]: line for line in lines}
    alone = {
        q: evaluator.completions([_prompt(evaluator, q)])[0][0][0]
        for q in ("What is 2 + 3?", "What is 4 + 4?")
    }
    for question, text in alone.items():
        assert by_question[question]["completions"] == [text]
        assert len(loaded.tokenizer.encode(text).ids) >= 8  # the whole budget, not the long prompt's room
    assert by_question[near]["finish"] == ["length"]
    assert summary["truncated"] >= 1
    assert set(summary["strict"]) == set(summary["lenient"]) == {"pass@1", "pass@k", "maj@k", "no_answer"}


def test_strict_and_lenient_scores_side_by_side(verifier) -> None:
    texts = ["so \\boxed{5}", "The answer is 5", "\\boxed{4}, no: 5 > > >", "\\boxed{5"]
    verdicts = verify_matches(verifier, texts, ["5"] * 4)
    assert [v.correct for v in verdicts["strict"]] == [True, False, False, False]
    assert [v.correct for v in verdicts["lenient"]] == [True, True, False, True]
    assert [v.prediction for v in verdicts["strict"]] == ["5", None, "4", None]
    with_think = verify_matches(verifier, ["\\boxed{5}", "</think> \\boxed{5}"], ["5", "5"], after="</think>")
    assert [v.correct for v in with_think["strict"]] == [False, True]
    figures = {"pass@1": 0.25, "pass@k": 0.25, "maj@k": 0.25, "no_answer": 2}
    table = format_summary(
        {
            "gsm8k": {
                "n": 4,
                "samples": 1,
                "strict": figures,
                "lenient": {**figures, "pass@1": 0.75},
                "prompt_too_long": 1,
                "truncated": 0,
            }
        }
    )
    strict_row, lenient_row = table.splitlines()[1:]
    assert strict_row.split()[:5] == ["gsm8k", "4", "1", "strict", "0.250"]
    assert lenient_row.split()[:2] == ["lenient", "0.750"]
