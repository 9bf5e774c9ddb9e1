"""Parquet corpus → tokens → packed fixed-length sequences with a document mask, sharded by row group.

The unit of work is a Parquet row group: every rank reads all footers (cheap) but only the row groups assigned
to it, so ranks see disjoint data without reading everything. Documents are framed as BOS ... EOS and packed
back to back; each position carries a per-row document id so that attention and (MTP) targets can stay inside
their document. The position of the first token not yet handed out (epoch, row group, row, token) is the whole
loader state: resuming re-reads that row group and re-tokenises that one document, so it is exact and small.
"""

from __future__ import annotations

import logging
import random
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from tokenizers import Tokenizer

from training.config import IGNORE_INDEX
from training.models.tokenizer import special_ids

log = logging.getLogger(__name__)

_READ_ROWS = 256  # rows tokenised per encode_batch call


def list_shards(root: str | Path) -> list[Path]:
    """Every `*.parquet` under root, sorted, skipping files and directories named `_*` or `.*`.

    A mathforge corpus directory (a `manifest.json` next to `data/`) means its `data/` shards only, not the
    `removed/` and `dedup_index/` tables that sit beside them.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data directory not found: {root}")
    if (root / "manifest.json").is_file() and (root / "data").is_dir():
        root = root / "data"
    return sorted(
        path
        for path in root.rglob("*.parquet")
        if path.is_file() and not any(part.startswith(("_", ".")) for part in path.relative_to(root).parts)
    )


@dataclass(frozen=True)
class RowGroup:
    shard: int
    index: int
    num_rows: int


@dataclass
class Corpus:
    """The shards under a directory and their non-empty row groups, from the footers alone."""

    root: Path
    shards: list[Path]
    row_groups: list[RowGroup]
    text_column: str
    skipped: list[str] = field(default_factory=list)

    def shard_name(self, unit: RowGroup) -> str:
        return str(self.shards[unit.shard].relative_to(self.root))


def index_corpus(root: str | Path, text_column: str = "text") -> Corpus:
    """Read the footers; unreadable or empty shards are logged and skipped, a corpus with no rows is an error."""
    root = Path(root)
    shards = list_shards(root)
    if not shards:
        raise FileNotFoundError(f"no *.parquet files under {root}")
    kept: list[Path] = []
    units: list[RowGroup] = []
    skipped: list[str] = []
    for path in shards:
        try:
            meta = pq.ParquetFile(path)
            schema = meta.schema_arrow
        except (OSError, pa.ArrowException) as err:
            skipped.append(f"{path}: unreadable ({err})")
            log.warning("skipping unreadable Parquet shard %s: %s", path, err)
            continue
        if text_column not in schema.names:
            raise ValueError(f"{path} has no column {text_column!r} (columns: {schema.names})")
        column_type = schema.field(text_column).type
        if not (pa.types.is_string(column_type) or pa.types.is_large_string(column_type)):
            raise ValueError(f"{path}: column {text_column!r} has type {column_type}, expected a string")
        shard_units = [
            RowGroup(len(kept), i, meta.metadata.row_group(i).num_rows)
            for i in range(meta.metadata.num_row_groups)
            if meta.metadata.row_group(i).num_rows > 0
        ]
        if not shard_units:
            skipped.append(f"{path}: no rows")
            log.warning("skipping empty Parquet shard %s", path)
            continue
        kept.append(path)
        units.extend(shard_units)
    if not units:
        raise ValueError(f"no rows in any of the {len(shards)} Parquet shard(s) under {root}")
    return Corpus(root, kept, units, text_column, skipped)


def iter_texts(corpus: Corpus, limit: int) -> Iterator[str]:
    """The first `limit` non-empty texts in shard order (for training a tokenizer)."""
    seen = 0
    for path in corpus.shards:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=_READ_ROWS, columns=[corpus.text_column]):
            for text in batch.column(0).to_pylist():
                if text and not text.isspace():
                    yield text
                    seen += 1
                    if seen >= limit:
                        return


def rank_units(n_units: int, rank: int, world_size: int, epoch: int, seed: int, shuffle: bool) -> list[int]:
    """This rank's row groups for an epoch: one (seeded) permutation shared by all ranks, dealt round-robin."""
    if n_units < world_size:
        raise ValueError(
            f"the corpus has {n_units} non-empty row group(s) for {world_size} ranks; "
            "write smaller row groups or train on fewer ranks"
        )
    order = list(range(n_units))
    if shuffle:
        random.Random(seed * 1_000_003 + epoch).shuffle(order)
    return order[rank::world_size]


def shift_targets(tokens: np.ndarray, docs: np.ndarray) -> np.ndarray:
    """Next-token targets for tokens[..., :-1]; a target in another document than its input is ignored."""
    same_doc = docs[..., 1:] == docs[..., :-1]
    return np.where(same_doc, tokens[..., 1:], IGNORE_INDEX)


@dataclass
class Batch:
    input_ids: torch.Tensor  # (B, T) int64
    targets: torch.Tensor  # (B, T) int64, IGNORE_INDEX where the next token is in another document
    doc_ids: torch.Tensor  # (B, T) int64, document number within each row, from 0

    def to(self, device: torch.device | str) -> Batch:
        return Batch(*(t.to(device, non_blocking=True) for t in (self.input_ids, self.targets, self.doc_ids)))


@dataclass
class LoaderState:
    """Where the first token not yet handed out lives; shard and row_group are stored to catch a changed corpus."""

    epoch: int = 0
    unit: int = 0  # position in this rank's row-group list for the epoch
    row: int = 0  # row inside that row group
    token: int = 0  # token offset inside that row's framed document
    shard: str = ""
    row_group: int = -1


@dataclass
class _Doc:
    epoch: int
    unit: int
    row: int
    tokens: np.ndarray
    start: int = 0  # tokens before this are consumed


class PackedLoader:
    """Infinite iterator of packed `Batch`es for one rank, resumable from `state_dict()`."""

    def __init__(
        self,
        corpus: Corpus,
        tokenizer: Tokenizer,
        seq_len: int,
        batch_size: int,
        *,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        shuffle: bool = True,
    ) -> None:
        if seq_len < 1 or batch_size < 1:
            raise ValueError(f"seq_len and batch_size must be positive, got {seq_len} and {batch_size}")
        self.corpus = corpus
        self.tokenizer = tokenizer
        self.seq_len = seq_len
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self.shuffle = shuffle
        self.specials = special_ids(tokenizer)
        self.stats: Counter[str] = Counter()
        rank_units(len(corpus.row_groups), rank, world_size, 0, seed, shuffle)  # validate early
        self._pending: deque[_Doc] = deque()  # documents (partly) not yet handed out
        self._read: deque[_Doc] = deque()  # tokenised documents from the current row group
        self._cursor = (0, 0, 0)  # (epoch, unit, row) of the next row to read
        self._reader: Iterator[list[str | None]] = iter(())
        self._reader_at: tuple[int, int, int] | None = None  # the cursor at which _reader continues
        self._docs_in_unit = False
        self._empty_units = 0  # row groups in a row that held no document: a whole epoch of them is an error

    # -- reading ----------------------------------------------------------------------------------------

    def _units(self, epoch: int) -> list[int]:
        return rank_units(
            len(self.corpus.row_groups), self.rank, self.world_size, epoch, self.seed, self.shuffle
        )

    def _unit(self, epoch: int, unit: int) -> RowGroup:
        return self.corpus.row_groups[self._units(epoch)[unit]]

    def _read_rows(self) -> None:
        """Tokenise the next slice of rows at the cursor, moving to the next row group (and epoch) as needed."""
        epoch, unit, row = self._cursor
        units = self._units(epoch)
        if unit >= len(units):
            self._cursor = (epoch + 1, 0, 0)
            return
        texts = self._next_texts(epoch, unit, row)
        if texts is None:  # end of this row group
            self._empty_units = 0 if self._docs_in_unit else self._empty_units + 1
            self._docs_in_unit = False
            if self._empty_units >= len(units):
                raise RuntimeError(
                    f"rank {self.rank}: a whole pass over its {len(units)} row group(s) produced no document "
                    f"with text in column {self.corpus.text_column!r} ({dict(self.stats)})"
                )
            self._cursor = (epoch, unit + 1, 0)
            return
        encodings = iter(self.tokenizer.encode_batch([t for t in texts if t], add_special_tokens=False))
        for offset, text in enumerate(texts):
            if text is None:
                self.stats["skipped_null_text"] += 1
            elif not text:
                self.stats["skipped_empty_text"] += 1
            else:
                tokens = np.array(
                    [self.specials.bos, *next(encodings).ids, self.specials.eos], dtype=np.int64
                )
                self._read.append(_Doc(epoch, unit, row + offset, tokens))
                self.stats["documents"] += 1
                self._docs_in_unit = True
        self._cursor = (epoch, unit, row + len(texts))

    def _next_texts(self, epoch: int, unit: int, row: int) -> list[str | None] | None:
        """The next rows of the text column from `row` on, or None past the end of the row group.

        One open reader per row group, reopened (and skipped forward) only after a seek; whitespace-only text
        counts as empty.
        """
        if self._reader_at != (epoch, unit, row):
            self._reader = self._row_slices(self._unit(epoch, unit), row)
        texts = next(self._reader, None)
        if texts is None:
            self._reader_at = None
            return None
        self._reader_at = (epoch, unit, row + len(texts))
        return [t if t is None or not t.isspace() else "" for t in texts]

    def _row_slices(self, group: RowGroup, start: int) -> Iterator[list[str | None]]:
        parquet = pq.ParquetFile(self.corpus.shards[group.shard])
        seen = 0
        for batch in parquet.iter_batches(
            batch_size=_READ_ROWS, row_groups=[group.index], columns=[self.corpus.text_column]
        ):
            skip = max(start - seen, 0)
            seen += batch.num_rows
            if skip < batch.num_rows:
                yield batch.column(0).slice(skip).to_pylist()

    def _next_doc(self) -> _Doc:
        while not self._read:
            self._read_rows()
        return self._read.popleft()

    # -- packing ----------------------------------------------------------------------------------------

    def _next_row(self) -> tuple[np.ndarray, np.ndarray]:
        """seq_len + 1 tokens and their document numbers; advances by seq_len so the last token is reused."""
        need = self.seq_len + 1
        while sum(len(d.tokens) - d.start for d in self._pending) < need:
            self._pending.append(self._next_doc())
        tokens = np.empty(need, dtype=np.int64)
        docs = np.empty(need, dtype=np.int64)
        filled = 0
        for number, doc in enumerate(self._pending):
            take = min(len(doc.tokens) - doc.start, need - filled)
            tokens[filled : filled + take] = doc.tokens[doc.start : doc.start + take]
            docs[filled : filled + take] = number
            filled += take
            if filled == need:
                break
        advance = self.seq_len
        while advance:
            doc = self._pending[0]
            step = min(len(doc.tokens) - doc.start, advance)
            doc.start += step
            advance -= step
            if doc.start == len(doc.tokens):
                self._pending.popleft()
        return tokens, docs

    def __iter__(self) -> PackedLoader:
        return self

    def __next__(self) -> Batch:
        rows = [self._next_row() for _ in range(self.batch_size)]
        tokens = np.stack([r[0] for r in rows])
        docs = np.stack([r[1] for r in rows])
        self.stats["tokens"] += tokens.shape[0] * self.seq_len
        return Batch(
            input_ids=torch.from_numpy(tokens[:, :-1].copy()),
            targets=torch.from_numpy(shift_targets(tokens, docs)),
            doc_ids=torch.from_numpy(docs[:, :-1].copy()),
        )

    # -- state ------------------------------------------------------------------------------------------

    def state(self) -> LoaderState:
        head = self._pending[0] if self._pending else (self._read[0] if self._read else None)
        if head is not None:
            epoch, unit, row, token = head.epoch, head.unit, head.row, head.start
        else:
            (epoch, unit, row), token = self._cursor, 0
        units = self._units(epoch)
        if unit >= len(units):
            epoch, unit, row = epoch + 1, 0, 0
        group = self._unit(epoch, unit)
        return LoaderState(epoch, unit, row, token, self.corpus.shard_name(group), group.index)

    def state_dict(self) -> dict:
        return {
            **asdict(self.state()),
            "rank": self.rank,
            "world_size": self.world_size,
            "stats": dict(self.stats),
        }

    def load_state_dict(self, saved: dict) -> None:
        if (saved["rank"], saved["world_size"]) != (self.rank, self.world_size):
            raise ValueError(
                f"loader state is for rank {saved['rank']} of {saved['world_size']}, "
                f"this is rank {self.rank} of {self.world_size}: resume with the same number of processes"
            )
        state = LoaderState(**{k: saved[k] for k in LoaderState.__dataclass_fields__})
        group = self._unit(state.epoch, state.unit)
        if (self.corpus.shard_name(group), group.index) != (state.shard, state.row_group):
            raise ValueError(
                f"the corpus under {self.corpus.root} changed since the checkpoint: position "
                f"{state.epoch}/{state.unit} was {state.shard} row group {state.row_group}, "
                f"now {self.corpus.shard_name(group)} row group {group.index}"
            )
        self._pending.clear()
        self._read.clear()
        self._cursor = (state.epoch, state.unit, state.row)
        self._reader_at = None
        self._docs_in_unit = state.row > 0  # unknown after a seek; assume so rather than raise too early
        self._empty_units = 0
        self.stats = Counter(saved.get("stats", {}))
        if state.token:
            doc = self._next_doc()
            doc.start = state.token
            self._pending.append(doc)
