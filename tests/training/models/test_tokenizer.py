"""Byte-level BPE: trained on the corpus with fixed special tokens, saved and reloaded, or brought along."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from training.models.tokenizer import SPECIAL_TOKENS, load_tokenizer, special_ids, train_tokenizer


def test_special_tokens_have_fixed_ids_and_stay_single_tokens(tokenizer) -> None:
    for expected_id, token in enumerate(SPECIAL_TOKENS):
        assert tokenizer.token_to_id(token) == expected_id
        assert tokenizer.encode(token).ids == [expected_id]
    ids = special_ids(tokenizer)
    assert (ids.bos, ids.eos, ids.pad) == (0, 1, 2)


def test_vocabulary_size_is_respected_and_merges_were_learned(tokenizer, corpus_texts) -> None:
    assert tokenizer.get_vocab_size() <= 512
    sample = corpus_texts[0]
    assert len(tokenizer.encode(sample).ids) < len(sample.encode()) / 2


@pytest.mark.parametrize(
    "text",
    [
        "Let $\\int_0^1 x^2\\,dx = \\frac{1}{3}$.",
        "Ünïcödé, 中文数学, émoji 🧮",
        "tabs\tand\nnewlines  ",
        "\x00\x7f",
    ],
)
def test_any_text_round_trips_even_characters_never_seen_in_training(tokenizer, text) -> None:
    assert tokenizer.decode(tokenizer.encode(text).ids) == text


def test_saved_tokenizer_json_loads_back_identical(tokenizer, tmp_path, corpus_texts) -> None:
    path = tmp_path / "tokenizer.json"
    tokenizer.save(str(path))
    loaded = load_tokenizer(path)
    assert loaded.encode(corpus_texts[3]).ids == tokenizer.encode(corpus_texts[3]).ids


def test_existing_tokenizer_with_other_special_names_is_usable(tmp_path, corpus_texts) -> None:
    other = Tokenizer(models.BPE())
    other.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    other.train_from_iterator(
        corpus_texts, trainers.BpeTrainer(vocab_size=300, special_tokens=["<s>", "</s>"])
    )
    path = tmp_path / "other.json"
    other.save(str(path))
    ids = special_ids(load_tokenizer(path))
    assert (ids.bos, ids.eos) == (other.token_to_id("<s>"), other.token_to_id("</s>"))
    assert ids.pad == ids.eos  # no padding token: padding falls back to EOS


def test_tokenizer_without_document_tokens_is_rejected(tmp_path, corpus_texts) -> None:
    bare = Tokenizer(models.BPE())
    bare.train_from_iterator(corpus_texts, trainers.BpeTrainer(vocab_size=300))
    path = tmp_path / "bare.json"
    bare.save(str(path))
    with pytest.raises(ValueError, match="bos"):
        load_tokenizer(path)


def test_bad_arguments_are_clear_errors(tmp_path) -> None:
    with pytest.raises(FileNotFoundError):
        load_tokenizer(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="too small"):
        train_tokenizer(["text"], vocab_size=100)
