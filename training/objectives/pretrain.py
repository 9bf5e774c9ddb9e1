"""Pretraining with multi-token prediction, as an objective of the shared trainer.

The data are packed, document-masked sequences from the Parquet corpus (`training.data.packing.PackedLoader`);
the loss is DeepSeek-V3's: next-token cross-entropy plus λ times the mean of the MTP depths' losses, λ switching from
0.3 to 0.1 late in training. `python -m training.objectives.pretrain` is the torchrun entry point.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from tokenizers import Tokenizer
from torch import nn

from training.config import PretrainConfig, model_config
from training.data.packing import Batch, Corpus, PackedLoader, index_corpus, iter_texts
from training.distributed import barrier
from training.models.tokenizer import load_tokenizer, train_tokenizer
from training.models.transformer import ModelOutput, Transformer
from training.schedule import mtp_lambda_at
from training.trainer import LoaderObjective, Metrics, TrainContext, command_line, metric, train

log = logging.getLogger(__name__)

TOKENIZER_FILE = "tokenizer.json"


def prepare_tokenizer(cfg: PretrainConfig, corpus: Corpus, ctx: TrainContext) -> Tokenizer:
    """The given tokenizer.json, the run's own (when resuming), or one trained on the corpus by rank 0."""
    if cfg.data.tokenizer:
        return load_tokenizer(cfg.data.tokenizer)
    path = ctx.run_dir / TOKENIZER_FILE
    if not (ctx.resuming and path.is_file()):
        if ctx.d.is_main:
            log.info(
                "training a %d-token BPE on up to %d documents", cfg.data.vocab_size, cfg.data.tokenizer_docs
            )
            tokenizer = train_tokenizer(iter_texts(corpus, cfg.data.tokenizer_docs), cfg.data.vocab_size)
            tmp = path.with_name(f".{path.name}.tmp")
            tokenizer.save(str(tmp))
            os.replace(tmp, path)
        barrier(ctx.d)
    return load_tokenizer(path)


class PretrainObjective(LoaderObjective):
    """Next-token + MTP cross-entropy on packed corpus sequences."""

    name = "pretrain"

    def __init__(self, cfg: PretrainConfig) -> None:
        self.cfg = cfg
        self.seq_len = cfg.data.seq_len
        self.loader: PackedLoader | None = None
        self.mtp_weight = cfg.model.mtp_lambda
        self.depth = cfg.model.mtp_depth
        self.device = None

    def setup(self, ctx: TrainContext) -> Transformer:
        cfg = self.cfg
        corpus = index_corpus(cfg.data.data, cfg.data.text_column)
        tokenizer = prepare_tokenizer(cfg, corpus, ctx)
        if cfg.data.tokenizer and ctx.d.is_main:  # the run directory always holds the tokenizer it used
            tokenizer.save(str(ctx.run_dir / TOKENIZER_FILE))
        mcfg = model_config(
            cfg.model.preset,
            tokenizer.get_vocab_size(),
            max_seq_len=cfg.data.seq_len,
            mtp_depth=cfg.model.mtp_depth,
            fused_kernels=ctx.run.fused_kernels,
        )
        self.device = ctx.d.device
        self.loader = PackedLoader(
            corpus,
            tokenizer,
            cfg.data.seq_len,
            cfg.data.batch_size,
            rank=ctx.d.rank,
            world_size=ctx.d.world_size,
            seed=ctx.run.seed,
            shuffle=cfg.data.shuffle,
        )
        return Transformer(mcfg, seed=ctx.run.seed)

    def meta(self) -> dict[str, Any]:
        return {"tokenizer": TOKENIZER_FILE}

    def begin_step(self, step: int, model: nn.Module) -> dict[str, float]:
        self.mtp_weight = mtp_lambda_at(step, self.cfg.model, self.cfg.run.max_steps)
        return {"mtp_weight": self.mtp_weight}

    def loss_tokens(self, batch: Batch) -> int:
        return int((batch.targets != -100).sum())

    def input_tokens(self, batch: Batch) -> int:
        return batch.input_ids.numel()

    def loss(self, model: nn.Module, batch: Batch) -> tuple[Any, Metrics]:
        """N · (main + λ · mean of the MTP depths' means), N the main targets: token-weighted across
        micro-batches, and exactly DeepSeek-V3's loss within one."""
        batch = batch.to(self.device)
        out: ModelOutput = model(
            batch.input_ids, batch.targets, batch.doc_ids, self.mtp_weight, self.cfg.data.doc_mask
        )
        metrics = {"main_loss": metric(out.main_loss * out.counts[0], out.counts[0])}
        for k, (loss_k, count_k) in enumerate(zip(out.mtp_losses, out.counts[1:], strict=True), start=1):
            metrics[f"mtp_loss_{k}"] = metric(loss_k * count_k, count_k)
        return out.loss * out.counts[0], metrics

    def position(self) -> dict[str, Any]:
        assert self.loader is not None
        where = self.loader.state()
        return {"shard": where.shard, "row_group": where.row_group, "epoch": where.epoch}

    def curves(self) -> dict[str, list[str]]:
        return {"loss_curve.png": ["loss", "main_loss", *(f"mtp_loss_{k}" for k in range(1, self.depth + 1))]}


def run(cfg: PretrainConfig) -> dict[str, Any]:
    """Pretrain as configured (in this process, or as one torchrun rank); returns a short summary."""
    return train(cfg.run, cfg.optim, PretrainObjective(cfg), cfg)


def main(argv: list[str] | None = None) -> int:
    return command_line(PretrainConfig, run, "python -m training.objectives.pretrain", __doc__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
