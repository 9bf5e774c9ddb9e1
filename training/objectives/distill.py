"""Logit distillation (forward KL, reverse KL, generalised JSD; off- or on-policy) as an objective of the
shared trainer.

The data are SFT's: prompt/completion rows (teacher traces from `mathforge distill traces`, or any SFT set),
rendered by the run's prompt template and packed the same way. At every completion position the student's
next-token distribution is pulled towards the teacher's; the divergence comes from both models' final hidden
states and output heads through `kernels.distill_divergence`, chunk by chunk, so neither model's full logits
ever exist. The trainer normalises by the number of distilled positions.

- The teacher is frozen (no gradients, eval mode), held in bf16 on GPU (`--ref-dtype`), and under torchrun
  FSDP2 sharded like the student (each rank holds 1/world of it; its head is gathered for each micro-batch's
  divergence); it runs outside the trainer's wrapper. Its tokenizer must equal the student's (ids compared token by token), and
  head rows beyond the tokenizer (Hugging Face padding) are left out of both distributions.
- `--lmbda λ`: each step is on-policy with probability λ (drawn from the run seed and the step, so a resumed
  run draws the same): `--batch-size` prompts per micro-batch are completed by the student itself (through the
  wrapped model, at `--temperature`), one sample per row, and the teacher scores those samples (GKD).
- `--ce-weight w` adds w × cross-entropy on the data's completion tokens; it is 0 by default, so the logged
  `loss` is the divergence alone.
- `--offline`: no teacher model; the rows carry the teacher's top-K log-probs per completion token (written by
  `distill traces --top-k-logprobs K`), and the divergence is taken over those K tokens plus a tail bucket.

`python -m training.objectives.distill` is the torchrun entry point.
"""

from __future__ import annotations

import logging
import random
import shutil
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

import kernels
from training.config import IGNORE_INDEX, DistillConfig
from training.data.records import read_records
from training.distributed import full_tensor, prepare_frozen
from training.models.model_io import TOKENIZER_FILE, load_model
from training.models.prompts import PromptTemplate
from training.models.tokenizer import (
    check_same_vocabulary,
    n_token_ids,
    special_ids,
    vocabulary_digest,
)
from training.models.transformer import Transformer
from training.objectives.sft import Example, SFTLoader, example_texts, tokenize_examples
from training.objectives.traces import trace_examples
from training.sampling.builtin import BuiltinSampler
from training.sampling.interface import SamplingParams
from training.trainer import LoaderObjective, Metrics, TrainContext, command_line, metric, train

log = logging.getLogger(__name__)


@dataclass
class DistillBatch:
    """A packed SFT batch (input ids, targets on completion tokens, document ids) and, offline, the teacher's
    stored top-K at each target position."""

    input_ids: torch.Tensor
    targets: torch.Tensor
    doc_ids: torch.Tensor
    top_ids: torch.Tensor | None = None  # [B, T, K] int64
    top_logprobs: torch.Tensor | None = None  # [B, T, K] float32
    on_policy: bool = False

    def to(self, device: torch.device) -> DistillBatch:
        move = lambda t: None if t is None else t.to(device, non_blocking=True)  # noqa: E731
        return DistillBatch(
            move(self.input_ids), move(self.targets), move(self.doc_ids), move(self.top_ids),
            move(self.top_logprobs), self.on_policy,
        )  # fmt: skip


class DistillLoader(SFTLoader):
    """SFT's packing, plus the stored teacher top-K placed at the positions that predict each completion token."""

    top_k: int = 0

    def pack_distill(self, rows: list[list[Example]], on_policy: bool = False) -> DistillBatch:
        batch = self.pack(rows)
        if not self.top_k:
            return DistillBatch(batch.input_ids, batch.targets, batch.doc_ids, on_policy=on_policy)
        shape = (len(rows), self.seq_len, self.top_k)
        ids, values = np.zeros(shape, dtype=np.int64), np.zeros(shape, dtype=np.float32)
        for r, chosen in enumerate(rows):
            at = 0
            for ex in chosen:
                assert ex.top_ids is not None and ex.top_logprobs is not None
                first = at + ex.prompt_len - 1  # the position that predicts the first completion token
                n = len(ex.tokens) - ex.prompt_len
                ids[r, first : first + n] = ex.top_ids[:n]
                values[r, first : first + n] = ex.top_logprobs[:n]
                at += len(ex.tokens)
        return DistillBatch(
            batch.input_ids, batch.targets, batch.doc_ids, torch.from_numpy(ids), torch.from_numpy(values)
        )


@dataclass(frozen=True)
class NormedAt:
    """Readout: the final-normed hidden states at the `rows` positions ([B, T] mask) → [M, H]."""

    rows: torch.Tensor

    def __call__(self, model: Transformer, normed: torch.Tensor) -> torch.Tensor:
        return normed[self.rows]


@dataclass(frozen=True)
class DistillReadout:
    """Readout of the student: the divergence summed over the `rows` positions, from the teacher's normed
    hidden states and head (or its stored top-K), and the summed cross-entropy on `targets` when `ce` is on.
    Inside the student's forward, so DDP and FSDP2 see (and synchronise) every use of the head."""

    rows: torch.Tensor
    loss: str
    beta: float
    temperature: float
    vocab_size: int
    targets: torch.Tensor  # [M], the data's next tokens at the rows
    ce: bool = False
    teacher_hidden: torch.Tensor | None = None  # [M, Ht]
    teacher_weight: torch.Tensor | None = None  # [Vt, Ht]
    top_ids: torch.Tensor | None = None  # [M, K]
    top_logprobs: torch.Tensor | None = None  # [M, K]

    def __call__(self, model: Transformer, normed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        hidden, weight = model.head_inputs(normed[self.rows])
        options = {"beta": self.beta, "temperature": self.temperature, "vocab_size": self.vocab_size}
        if self.top_ids is not None:
            assert self.top_logprobs is not None
            divergence = kernels.topk_divergence(
                hidden, weight, self.top_ids, self.top_logprobs, self.loss, **options
            )
        else:
            assert self.teacher_hidden is not None and self.teacher_weight is not None
            divergence = kernels.distill_divergence(
                hidden, weight, self.teacher_hidden, self.teacher_weight, self.loss, **options
            )
        ce = None
        if self.ce:
            ce = kernels.fused_linear_cross_entropy(
                hidden, weight[: self.vocab_size], self.targets, reduction="sum"
            )
        return divergence, ce


class DistillObjective(LoaderObjective):
    """Divergence to a frozen teacher at every completion position, summed (the trainer divides by their number)."""

    name = "distill"

    def __init__(self, cfg: DistillConfig) -> None:
        self.cfg = cfg
        self.opts = cfg.distill
        self.seq_len = cfg.data.seq_len
        self.loader: DistillLoader | None = None
        self.template: PromptTemplate | None = None
        self.teacher: Transformer | None = None
        self.pending: list[DistillBatch] = []
        self.device = torch.device("cpu")

    # -- set-up -----------------------------------------------------------------------------------------

    def setup(self, ctx: TrainContext) -> Transformer:
        data, opts = self.cfg.data, self.opts
        loaded = load_model(data.init, fused_kernels=ctx.run.fused_kernels, template=data.template)
        student, tokenizer, self.template = loaded.model, loaded.tokenizer, loaded.template
        student.drop_mtp()
        student.train()
        self.tokenizer = tokenizer
        self.vocab_size = n_token_ids(tokenizer)
        self.device = ctx.d.device
        if student.cfg.vocab_size < self.vocab_size:
            raise ValueError(
                f"the student's head has {student.cfg.vocab_size} rows for a tokenizer of {self.vocab_size} ids"
            )
        if not opts.offline:
            self.teacher = self._load_teacher(ctx, tokenizer)
        self.seq_len = data.seq_len or min(student.cfg.max_seq_len, 2048)
        if self.seq_len > student.cfg.max_seq_len or (
            self.teacher and self.seq_len > self.teacher.cfg.max_seq_len
        ):
            raise ValueError(f"seq_len {self.seq_len} exceeds the student's or the teacher's max_seq_len")
        if ctx.d.is_main:
            shutil.copyfile(loaded.tokenizer_path, ctx.run_dir / TOKENIZER_FILE)
            config = loaded.tokenizer_path.with_name("tokenizer_config.json")
            if config.is_file():
                shutil.copyfile(config, ctx.run_dir / config.name)
        rows = read_records(data.data)
        if opts.offline:
            examples = trace_examples(rows, vocabulary_digest(tokenizer), opts.temperature, data.data)
        else:
            examples = tokenize_examples(example_texts(rows, data, self.template), tokenizer, self.template)
        log.info(
            "distill (%s%s): %d examples from %s, teacher %s, template %s", opts.loss,
            f", β {opts.beta}" if opts.loss == "jsd" else "", len(examples), data.data,
            opts.teacher or "offline top-K", self.template.kind,
        )  # fmt: skip
        self.pad_id = special_ids(tokenizer).pad
        self.loader = DistillLoader(
            examples, self.seq_len, data.batch_size, self.pad_id, rank=ctx.d.rank,
            world_size=ctx.d.world_size, seed=ctx.run.seed, shuffle=data.shuffle,
        )  # fmt: skip
        self.loader.top_k = (
            examples[0].top_ids.shape[1] if opts.offline and examples[0].top_ids is not None else 0
        )
        self.generator = torch.Generator(device=self.device).manual_seed(
            ctx.run.seed * 1_000_003 + ctx.d.rank
        )
        return student

    def _load_teacher(self, ctx: TrainContext, tokenizer: Any) -> Transformer:
        """The teacher: frozen, eval mode, in --ref-dtype, sharded under FSDP2; its tokenizer checked against
        the student's. It is read on the CPU and cast before it is sharded or moved."""
        loaded = load_model(self.opts.teacher)
        check_same_vocabulary(loaded.tokenizer, tokenizer)
        teacher = loaded.model
        teacher.drop_mtp()
        teacher = prepare_frozen(teacher, ctx.run.parallel, ctx.d, ctx.run.ref_dtype)
        if teacher.cfg.vocab_size < self.vocab_size:
            raise ValueError(
                f"the teacher's head has {teacher.cfg.vocab_size} rows for a tokenizer of {self.vocab_size} ids"
            )
        return teacher

    def meta(self) -> dict[str, Any]:
        assert self.template is not None
        return {
            "template": self.template.to_dict(),
            "init": self.cfg.data.init,
            "teacher": self.opts.teacher,
            "tokenizer": TOKENIZER_FILE,
        }

    # -- batches ----------------------------------------------------------------------------------------

    def on_policy(self, step: int) -> bool:
        """Whether `step` trains on the student's own samples: a draw from (seed, step), the same on every rank
        and after a resume."""
        if self.opts.lmbda <= 0:
            return False
        return random.Random(self.cfg.run.seed * 1_000_003 + step).random() < self.opts.lmbda

    def begin_step(self, step: int, model: nn.Module) -> dict[str, float]:
        assert self.loader is not None
        on_policy = self.on_policy(step)
        self.pending = []
        for _ in range(self.cfg.optim.grad_accum):
            if on_policy:  # batch_size prompts: a sample may fill its row, so one sample per row
                examples = self.loader.next_examples(self.cfg.data.batch_size)
                self.pending.append(self._student_samples(model, examples))
            else:
                self.pending.append(self.loader.pack_distill(self.loader.next_rows()))
        return {}

    def next_batch(self) -> DistillBatch:
        return self.pending.pop(0)

    @torch.no_grad()
    def _student_samples(self, model: nn.Module, examples: list[Example]) -> DistillBatch:
        """The examples' prompts completed by the student (through the wrapped model), one per row: at most
        batch_size rows of seq_len, the same bound as an off-policy batch (taking every prompt of packed rows
        would give one full-length row per example, tens of them for short examples)."""
        assert self.loader is not None
        prompts = [ex.tokens[: ex.prompt_len].tolist() for ex in examples]
        room = self.seq_len - max(len(p) for p in prompts)
        if room < 1:
            raise ValueError(
                f"a prompt of {self.seq_len - room} tokens leaves no room in seq_len {self.seq_len}"
            )
        was_training = model.training
        model.eval()
        assert self.template is not None
        sampler = BuiltinSampler(model, self.tokenizer, self.template, generator=self.generator)
        params = SamplingParams(
            min(self.opts.max_new_tokens, room), temperature=self.opts.temperature, top_p=self.opts.top_p
        )
        out = [group[0].token_ids or [] for group in sampler.sample(prompts, params)]
        if was_training:
            model.train()
        examples = [
            Example(np.array(p + c, dtype=np.int64), len(p)) for p, c in zip(prompts, out, strict=True) if c
        ]
        return self.loader.pack_distill([[ex] for ex in examples], on_policy=True)

    def loss_tokens(self, batch: DistillBatch) -> int:
        return int((batch.targets != IGNORE_INDEX).sum())

    def input_tokens(self, batch: DistillBatch) -> int:
        return batch.input_ids.numel()

    # -- the loss ---------------------------------------------------------------------------------------

    def loss(self, model: nn.Module, batch: DistillBatch) -> tuple[torch.Tensor, Metrics]:
        batch = batch.to(self.device)
        rows = batch.targets != IGNORE_INDEX
        opts = self.opts
        settings: dict[str, Any] = {
            "rows": rows, "loss": opts.loss, "beta": opts.beta, "temperature": opts.temperature,
            "vocab_size": self.vocab_size, "targets": batch.targets[rows], "ce": opts.ce_weight > 0,
        }  # fmt: skip
        if self.teacher is not None:
            with torch.no_grad():
                teacher_hidden = self.teacher(batch.input_ids, doc_ids=batch.doc_ids, readout=NormedAt(rows))
            weight = full_tensor(self.teacher.head.weight)  # sharded teacher: gathered (a collective)
            settings.update(teacher_hidden=teacher_hidden.to(weight.dtype), teacher_weight=weight)
        else:
            assert batch.top_ids is not None and batch.top_logprobs is not None
            settings.update(top_ids=batch.top_ids[rows], top_logprobs=batch.top_logprobs[rows])
        divergence, ce = model(batch.input_ids, doc_ids=batch.doc_ids, readout=DistillReadout(**settings))
        count = rows.sum()
        metrics: Metrics = {
            "divergence": metric(divergence, count),
            "on_policy": metric(float(batch.on_policy), 1.0),
            "distilled_tokens": metric(count, batch.input_ids.shape[0]),
        }
        if ce is None:
            return divergence, metrics
        metrics["ce"] = metric(ce, count)
        return divergence + opts.ce_weight * ce, metrics

    # -- state ------------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        assert self.loader is not None
        return {**self.loader.state_dict(), "generator": self.generator.get_state().tolist()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        assert self.loader is not None
        self.loader.load_state_dict(state)
        self.generator.set_state(torch.tensor(state["generator"], dtype=torch.uint8))

    def position(self) -> dict[str, Any]:
        assert self.loader is not None
        return {"epoch": self.loader.position.epoch, "index": self.loader.position.index}

    def curves(self) -> dict[str, list[str]]:
        return {"loss_curve.png": ["loss", "divergence"]}


def run(cfg: DistillConfig) -> dict[str, Any]:
    """Distil as configured (in this process, or as one torchrun rank); returns a short summary."""
    return train(cfg.run, cfg.optim, DistillObjective(cfg), cfg)


def main(argv: list[str] | None = None) -> int:
    return command_line(DistillConfig, run, "python -m training.objectives.distill", __doc__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
