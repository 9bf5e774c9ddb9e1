"""Supervised fine-tuning (the R1 cold start, and trace distillation) as an objective of the shared trainer.

Rows come as `prompt`/`completion` columns (or `question`/`answer`-style names given on the command line) or
as a `messages` conversation; the run's prompt template turns each into prompt text and completion text, so
that SFT, evaluation and GRPO see one format. Examples are packed back to back into fixed-length rows with a
document mask; only completion tokens are targets, and the trainer weights the loss by those tokens across
micro-batches and ranks. `python -m training.objectives.sft` is the torchrun entry point.
"""

from __future__ import annotations

import logging
import random
import shutil
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer
from torch import nn

from training.config import IGNORE_INDEX, SFTConfig, SFTDataConfig
from training.data.packing import Batch
from training.data.records import read_records
from training.models.model_io import TOKENIZER_FILE, load_model
from training.models.prompts import PromptTemplate
from training.models.tokenizer import encode_prompt, special_ids
from training.models.transformer import ModelOutput, Transformer
from training.trainer import LoaderObjective, Metrics, TrainContext, command_line, metric, train

log = logging.getLogger(__name__)


def example_texts(
    rows: list[dict[str, Any]], cfg: SFTDataConfig, template: PromptTemplate
) -> list[tuple[str, str]]:
    """(prompt text, completion text) per row, the completion ending with the template's end of turn."""
    out = []
    for number, row in enumerate(rows):
        messages = row.get(cfg.messages_column)
        if messages is None:
            prompt = row.get(cfg.prompt_column, row.get("question"))
            completion = row.get(cfg.completion_column)
            if prompt is None or completion is None:
                raise ValueError(
                    f"row {number} has neither {cfg.messages_column!r} nor {cfg.prompt_column!r} and "
                    f"{cfg.completion_column!r} (columns: {sorted(row)})"
                )
            messages = [
                {"role": "user", "content": str(prompt)},
                {"role": "assistant", "content": str(completion)},
            ]
        out.append(template.split_conversation(messages))
    return out


@dataclass
class Example:
    tokens: np.ndarray  # prompt then completion
    prompt_len: int
    # distillation from stored teacher log-probs: top-K ids and log-probs per completion token, [completion, K]
    top_ids: np.ndarray | None = None
    top_logprobs: np.ndarray | None = None


def tokenize_examples(
    texts: list[tuple[str, str]], tokenizer: Tokenizer, template: PromptTemplate
) -> list[Example]:
    completions = tokenizer.encode_batch([c for _, c in texts], add_special_tokens=False)
    out = []
    for (prompt, _), completion in zip(texts, completions, strict=True):
        prompt_ids = encode_prompt(tokenizer, prompt, template.renders_special_tokens)
        out.append(Example(np.array(prompt_ids + completion.ids, dtype=np.int64), len(prompt_ids)))
    return out


def pack_row(examples: list[Example], seq_len: int, pad_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """input ids, targets (completion tokens only, never across examples) and document ids of one row."""
    ids = np.full(seq_len, pad_id, dtype=np.int64)
    targets = np.full(seq_len, IGNORE_INDEX, dtype=np.int64)
    docs = np.full(seq_len, len(examples), dtype=np.int64)  # padding is a document of its own
    at = 0
    for number, ex in enumerate(examples):
        n = len(ex.tokens)
        ids[at : at + n] = ex.tokens
        docs[at : at + n] = number
        # position i predicts token i+1; a target only where token i+1 is a completion token
        nxt = np.arange(1, n)
        targets[at : at + n - 1] = np.where(nxt >= ex.prompt_len, ex.tokens[1:], IGNORE_INDEX)
        at += n
    return ids, targets, docs


@dataclass
class SFTPosition:
    epoch: int = 0
    index: int = 0  # next example in this rank's order for the epoch


class SFTLoader:
    """Infinite iterator of packed SFT `Batch`es for one rank (examples dealt round-robin after a seeded
    per-epoch shuffle), resumable from `state_dict()`."""

    def __init__(
        self,
        examples: list[Example],
        seq_len: int,
        batch_size: int,
        pad_id: int,
        *,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        shuffle: bool = True,
    ) -> None:
        self.examples, self.seq_len, self.batch_size, self.pad_id = examples, seq_len, batch_size, pad_id
        self.rank, self.world_size, self.seed, self.shuffle = rank, world_size, seed, shuffle
        self.position = SFTPosition()
        self.stats: Counter[str] = Counter()
        if len(examples) < world_size:
            raise ValueError(f"{len(examples)} SFT examples for {world_size} ranks")
        if not any(len(e.tokens) <= seq_len and len(e.tokens) > e.prompt_len for e in examples):
            raise ValueError(f"no SFT example fits in seq_len {seq_len} with a non-empty completion")

    def _order(self, epoch: int) -> list[int]:
        order = list(range(len(self.examples)))
        if self.shuffle:
            random.Random(self.seed * 1_000_003 + epoch).shuffle(order)
        return order[self.rank :: self.world_size]

    def _peek(self) -> Example:
        """The example at the current position, skipping (and counting) those that cannot be trained on."""
        while True:
            order = self._order(self.position.epoch)
            if self.position.index >= len(order):
                self.position = SFTPosition(self.position.epoch + 1, 0)
                continue
            ex = self.examples[order[self.position.index]]
            if len(ex.tokens) > self.seq_len:
                reason = "skipped_too_long"
            elif len(ex.tokens) <= ex.prompt_len:
                reason = "skipped_empty_completion"
            else:
                return ex
            if self.position.epoch == 0:
                self.stats[reason] += 1
            self.position.index += 1

    def __iter__(self) -> SFTLoader:
        return self

    def __next__(self) -> Batch:
        return self.pack(self.next_rows())

    def next_rows(self) -> list[list[Example]]:
        """The next micro-batch's examples, row by row, each row filled greedily up to seq_len."""
        rows = []
        for _ in range(self.batch_size):
            chosen: list[Example] = []
            used = 0
            while True:
                ex = self._peek()
                if used + len(ex.tokens) > self.seq_len:
                    break
                chosen.append(ex)
                used += len(ex.tokens)
                self.position.index += 1
                self.stats["examples"] += 1
            rows.append(chosen)
        return rows

    def next_examples(self, n: int) -> list[Example]:
        """The next `n` trainable examples, one for each row (on-policy distillation completes their prompts
        itself, and a completion may take a whole row)."""
        out = []
        for _ in range(n):
            out.append(self._peek())
            self.position.index += 1
            self.stats["examples"] += 1
        return out

    def pack(self, rows: list[list[Example]]) -> Batch:
        packed = [pack_row(chosen, self.seq_len, self.pad_id) for chosen in rows]
        ids, targets, docs = (torch.from_numpy(np.stack(parts)) for parts in zip(*packed, strict=True))
        return Batch(ids, targets, docs)

    def state_dict(self) -> dict[str, Any]:
        return {
            **asdict(self.position),
            "rank": self.rank,
            "world_size": self.world_size,
            "n_examples": len(self.examples),
            "stats": dict(self.stats),
        }

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        if (saved["rank"], saved["world_size"]) != (self.rank, self.world_size):
            raise ValueError(
                f"SFT data state is for rank {saved['rank']} of {saved['world_size']}, this is rank "
                f"{self.rank} of {self.world_size}: resume with the same number of processes"
            )
        if saved["n_examples"] != len(self.examples):
            raise ValueError(
                f"the SFT data changed since the checkpoint: {saved['n_examples']} examples then, "
                f"{len(self.examples)} now"
            )
        self.position = SFTPosition(saved["epoch"], saved["index"])
        self.stats = Counter(saved.get("stats", {}))


class SFTObjective(LoaderObjective):
    """Cross-entropy on completion tokens only, summed (the trainer divides by all completion tokens)."""

    name = "sft"

    def __init__(self, cfg: SFTConfig) -> None:
        self.cfg = cfg
        self.seq_len = cfg.sft.seq_len
        self.loader: SFTLoader | None = None
        self.template: PromptTemplate | None = None
        self.device = torch.device("cpu")

    def setup(self, ctx: TrainContext) -> Transformer:
        cfg = self.cfg.sft
        loaded = load_model(cfg.init, fused_kernels=ctx.run.fused_kernels, template=cfg.template)
        model, tokenizer, self.template = loaded.model, loaded.tokenizer, loaded.template
        model.drop_mtp()  # DeepSeek-V3 keeps MTP for pretraining only (and DDP needs every parameter used)
        model.train()
        self.seq_len = cfg.seq_len or min(model.cfg.max_seq_len, 2048)
        if self.seq_len > model.cfg.max_seq_len:
            raise ValueError(
                f"seq_len {self.seq_len} exceeds the model's max_seq_len {model.cfg.max_seq_len}"
            )
        if ctx.d.is_main:
            shutil.copyfile(loaded.tokenizer_path, ctx.run_dir / TOKENIZER_FILE)
            config = loaded.tokenizer_path.with_name("tokenizer_config.json")
            if config.is_file():
                shutil.copyfile(config, ctx.run_dir / config.name)
        texts = example_texts(read_records(cfg.data), cfg, self.template)
        examples = tokenize_examples(texts, tokenizer, self.template)
        log.info("SFT: %d examples from %s, template %s", len(examples), cfg.data, self.template.kind)
        self.loader = SFTLoader(
            examples,
            self.seq_len,
            cfg.batch_size,
            special_ids(tokenizer).pad,
            rank=ctx.d.rank,
            world_size=ctx.d.world_size,
            seed=ctx.run.seed,
            shuffle=cfg.shuffle,
        )
        self.device = ctx.d.device
        return model

    def meta(self) -> dict[str, Any]:
        assert self.template is not None
        return {"template": self.template.to_dict(), "init": self.cfg.sft.init, "tokenizer": TOKENIZER_FILE}

    def begin_step(self, step: int, model: nn.Module) -> dict[str, float]:
        return {}

    def loss_tokens(self, batch: Batch) -> int:
        return int((batch.targets != IGNORE_INDEX).sum())

    def input_tokens(self, batch: Batch) -> int:
        return batch.input_ids.numel()  # padding included: it is computed too

    def loss(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, Metrics]:
        batch = batch.to(self.device)
        out: ModelOutput = model(batch.input_ids, batch.targets, batch.doc_ids)
        count = out.counts[0]
        return out.main_loss * count, {"completion_tokens": metric(count, batch.input_ids.shape[0])}

    def position(self) -> dict[str, Any]:
        assert self.loader is not None
        return {"epoch": self.loader.position.epoch, "index": self.loader.position.index}

    def curves(self) -> dict[str, list[str]]:
        return {"loss_curve.png": ["loss"]}


def run(cfg: SFTConfig) -> dict[str, Any]:
    """Fine-tune as configured (in this process, or as one torchrun rank); returns a short summary."""
    return train(cfg.run, cfg.optim, SFTObjective(cfg), cfg)


def main(argv: list[str] | None = None) -> int:
    return command_line(SFTConfig, run, "python -m training.objectives.sft", __doc__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
