"""Parquet streaming, packing with document framing, rank sharding by row group, and exact resume."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from training_corpus import write_corpus

from training.config import IGNORE_INDEX
from training.data.packing import PackedLoader, index_corpus, list_shards, rank_units, shift_targets
from training.models.tokenizer import special_ids


def _loader(corpus_dir, tokenizer, **kwargs) -> PackedLoader:
    options = {"seq_len": 32, "batch_size": 2, "shuffle": False, **kwargs}
    return PackedLoader(index_corpus(corpus_dir), tokenizer, **options)


def _stream(batches: list) -> list[int]:
    """The token stream the loader handed out: rows advance by seq_len, so inputs concatenate exactly."""
    return [t for b in batches for row in b.input_ids.tolist() for t in row]


def _complete_docs(stream: list[int], tokenizer) -> list[str]:
    """Texts of the documents that appear in full (BOS ... EOS) in a token stream."""
    ids = special_ids(tokenizer)
    docs, current = [], None
    for token in stream:
        if token == ids.bos:
            current = []
        elif token == ids.eos and current is not None:
            docs.append(tokenizer.decode(current))
            current = None
        elif current is not None:
            current.append(token)
    return docs


def test_list_shards_finds_nested_parquet_sorted_and_skips_hidden(corpus_dir: Path) -> None:
    shards = list_shards(corpus_dir)
    assert shards == sorted(shards)
    assert len(shards) == 3
    assert not any("_temporary" in p.parts for p in shards)


def test_packed_stream_reproduces_the_corpus_in_order(corpus_dir, corpus_texts, tokenizer) -> None:
    loader = _loader(corpus_dir, tokenizer)
    batches = [next(loader) for _ in range(40)]
    docs = _complete_docs(_stream(batches), tokenizer)
    assert len(docs) > 10
    assert docs == corpus_texts[: len(docs)]


def test_every_document_starts_with_bos_and_targets_stay_inside_documents(corpus_dir, tokenizer) -> None:
    bos = special_ids(tokenizer).bos
    loader = _loader(corpus_dir, tokenizer)
    for _ in range(20):
        batch = next(loader)
        ids, targets, docs = batch.input_ids, batch.targets, batch.doc_ids
        starts = docs[:, 1:] != docs[:, :-1]
        assert bool((ids[:, 1:][starts] == bos).all())
        assert bool((targets[:, :-1][starts] == IGNORE_INDEX).all())
        inside = ~starts
        assert torch.equal(targets[:, :-1][inside], ids[:, 1:][inside])
        assert int(docs[:, 0].max()) == 0  # document numbers restart in every row


def test_shift_targets_ignores_the_token_after_a_boundary() -> None:
    tokens = np.array([[1, 5, 6, 2, 1, 7, 2]])
    docs = np.array([[0, 0, 0, 0, 1, 1, 1]])
    targets = shift_targets(tokens, docs)
    assert targets.tolist() == [[5, 6, 2, IGNORE_INDEX, 7, 2]]


def test_ranks_read_disjoint_row_groups_that_cover_the_corpus(corpus_dir, corpus_texts, tokenizer) -> None:
    world = 3
    per_rank: list[set[int]] = []
    for rank in range(world):
        loader = _loader(corpus_dir, tokenizer, rank=rank, world_size=world, shuffle=True, seed=7)
        batches = []
        while loader.state().epoch == 0:
            batches.append(next(loader))
        docs = _complete_docs(_stream(batches), tokenizer)
        numbers = [int(re.match(r"Document (\d+)\.", d).group(1)) for d in docs]
        assert len(numbers) == len(set(numbers))
        per_rank.append(set(numbers))
    for a in range(world):
        for b in range(a + 1, world):
            assert not per_rank[a] & per_rank[b]
    assert set().union(*per_rank) == set(range(len(corpus_texts)))


def test_rank_units_partition_each_epoch_and_reshuffle_between_epochs() -> None:
    for epoch in range(3):
        dealt = [rank_units(10, r, 4, epoch, seed=1, shuffle=True) for r in range(4)]
        assert sorted(u for units in dealt for u in units) == list(range(10))
    assert rank_units(10, 0, 4, 0, 1, True) != rank_units(10, 0, 4, 1, 1, True)
    with pytest.raises(ValueError, match="row group"):
        rank_units(1, 0, 2, 0, 0, True)


def test_resume_from_any_batch_continues_exactly_across_epochs(tmp_path, tokenizer) -> None:
    write_corpus(tmp_path, n_docs=8, n_shards=2, row_group_size=2)
    loader = _loader(tmp_path, tokenizer, shuffle=True, seed=3)
    states, batches = [], []
    for _ in range(50):
        states.append(json.loads(json.dumps(loader.state_dict())))
        batches.append(next(loader))
    assert loader.state().epoch >= 1, "the run should cross an epoch boundary"
    for k in (0, 1, 7, 23, 49):
        resumed = _loader(tmp_path, tokenizer, shuffle=True, seed=3)
        resumed.load_state_dict(states[k])
        for expected in batches[k:]:
            got = next(resumed)
            assert torch.equal(got.input_ids, expected.input_ids)
            assert torch.equal(got.targets, expected.targets)
            assert torch.equal(got.doc_ids, expected.doc_ids)


def test_state_names_shard_row_group_and_offset(corpus_dir, tokenizer) -> None:
    loader = _loader(corpus_dir, tokenizer)
    next(loader)
    state = loader.state_dict()
    assert state["shard"].endswith(".parquet") and state["row_group"] >= 0
    assert state["token"] > 0  # the first document is longer than one row and is cut mid-way


def test_resume_refuses_another_world_size_or_a_changed_corpus(tmp_path, tokenizer) -> None:
    write_corpus(tmp_path, n_docs=40, n_shards=2, row_group_size=5)
    loader = _loader(tmp_path, tokenizer, rank=0, world_size=2)
    next(loader)
    state = loader.state_dict()
    with pytest.raises(ValueError, match="same number of processes"):
        _loader(tmp_path, tokenizer).load_state_dict(state)
    state = {**state, "shard": "other.parquet"}
    with pytest.raises(ValueError, match="changed"):
        _loader(tmp_path, tokenizer, rank=0, world_size=2).load_state_dict(state)


def test_missing_or_empty_data_gives_clear_errors(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="not found"):
        index_corpus(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match=r"no \*\.parquet"):
        index_corpus(tmp_path)
    pq.write_table(pa.table({"text": pa.array([], pa.string())}), tmp_path / "empty.parquet")
    with pytest.raises(ValueError, match="no rows"):
        index_corpus(tmp_path)
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(ValueError, match="no rows"):
        index_corpus(tmp_path)


def test_empty_and_corrupt_shards_are_skipped_beside_good_ones(tmp_path, tokenizer, caplog) -> None:
    texts = write_corpus(tmp_path / "good", n_docs=10, n_shards=1)
    pq.write_table(pa.table({"text": pa.array([], pa.string())}), tmp_path / "a_empty.parquet")
    (tmp_path / "b_corrupt.parquet").write_bytes(b"garbage")
    corpus = index_corpus(tmp_path)
    assert len(corpus.shards) == 1 and len(corpus.skipped) == 2
    assert "b_corrupt.parquet" in caplog.text
    loader = PackedLoader(corpus, tokenizer, seq_len=64, batch_size=4, shuffle=False)
    docs = _complete_docs(_stream([next(loader) for _ in range(4)]), tokenizer)
    assert docs == texts[: len(docs)] and docs


def test_null_and_blank_texts_are_counted_and_skipped(tmp_path, tokenizer) -> None:
    rows = ["First real document about $x^2$.", None, "", "   \n", "Second real document, $\\pi r^2$."]
    pq.write_table(pa.table({"text": pa.array(rows, pa.string())}), tmp_path / "mixed.parquet")
    loader = _loader(tmp_path, tokenizer, seq_len=16)
    docs = _complete_docs(_stream([next(loader) for _ in range(4)]), tokenizer)
    assert docs[:2] == [rows[0], rows[4]]
    assert loader.stats["skipped_null_text"] >= 1 and loader.stats["skipped_empty_text"] >= 2


@pytest.mark.timeout(60)
def test_corpus_without_any_text_raises_instead_of_hanging(tmp_path, tokenizer) -> None:
    pq.write_table(pa.table({"text": pa.array([None, "", " "] * 5, pa.string())}), tmp_path / "blank.parquet")
    loader = _loader(tmp_path, tokenizer)
    with pytest.raises(RuntimeError, match="no document"):
        next(loader)


def test_wrong_text_column_is_a_clear_error(tmp_path) -> None:
    pq.write_table(pa.table({"body": ["x"]}), tmp_path / "a.parquet")
    with pytest.raises(ValueError, match="no column 'text'"):
        index_corpus(tmp_path)
    pq.write_table(pa.table({"text": [1, 2]}), tmp_path / "a.parquet")
    with pytest.raises(ValueError, match="expected a string"):
        index_corpus(tmp_path)


def test_fewer_row_groups_than_ranks_is_a_clear_error(tmp_path, tokenizer) -> None:
    pq.write_table(pa.table({"text": ["only one row group"]}), tmp_path / "a.parquet")
    with pytest.raises(ValueError, match="fewer ranks"):
        _loader(tmp_path, tokenizer, rank=0, world_size=2)


def test_a_mathforge_corpus_directory_means_its_data_shards(tmp_path: Path) -> None:
    data = tmp_path / "corpus" / "data"
    data.mkdir(parents=True)
    pq.write_table(pa.table({"text": ["a document"]}), data / "part-0.parquet")
    for side_table in ("removed", "dedup_index/bands"):
        (tmp_path / "corpus" / side_table).mkdir(parents=True)
        pq.write_table(pa.table({"id": ["x"]}), tmp_path / "corpus" / side_table / "part-0.parquet")
    (tmp_path / "corpus" / "manifest.json").write_text("{}")
    assert list_shards(tmp_path / "corpus") == [data / "part-0.parquet"]
