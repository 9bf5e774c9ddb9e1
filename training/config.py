"""Training configuration: model presets and the run, data and optimiser settings.

Plain dataclasses without torch imports, so that the CLI can build its flags (via typedconfig) without
paying for `import torch`. A run's config is a few sections (the trainer's `run` and `optim`, then the
objective's own); field names are unique across the sections of one run config because they share one flat
parser.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, TypeVar

from typedconfig import add_dataclass_args, dataclass_from_args

# Shapes of the named presets; vocab_size comes from the tokenizer and max_seq_len from the run.
# Parameters with a 32k vocabulary, without MTP: tiny 4M, small 56M, 125m 125M, 350m 350M, 1b 0.89B
# (one MTP module adds a block and a projection: +55M for 1b).
PRESETS: dict[str, dict[str, int]] = {
    "tiny": {"dim": 64, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "ffn_dim": 176},
    "small": {"dim": 512, "n_layers": 8, "n_heads": 8, "n_kv_heads": 4, "ffn_dim": 1408},
    "125m": {"dim": 768, "n_layers": 12, "n_heads": 12, "n_kv_heads": 4, "ffn_dim": 2048},
    "350m": {"dim": 1024, "n_layers": 24, "n_heads": 16, "n_kv_heads": 8, "ffn_dim": 2816},
    "1b": {"dim": 2048, "n_layers": 16, "n_heads": 16, "n_kv_heads": 8, "ffn_dim": 5632},
}

C = TypeVar("C")

# Target value that no loss counts (PyTorch's cross_entropy default, and the kernels' too).
IGNORE_INDEX = -100

# Attention backends of document-masked (packed) rows; see training/models/transformer.py.
ATTENTION_BACKENDS = ("auto", "sdpa", "flex", "dense")
TRACKER_NAMES = ("tensorboard", "wandb")  # training.metrics.TRACKERS: where metrics.jsonl is mirrored

# Embedding rows are padded to a multiple of this so that matmuls keep tensor-core friendly shapes.
VOCAB_MULTIPLE = 64


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the decoder and its MTP modules; saved next to every checkpoint."""

    vocab_size: int
    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    ffn_dim: int
    max_seq_len: int = 2048
    rope_theta: float = 10000.0
    norm_eps: float = 1e-6
    mtp_depth: int = 1
    fused_kernels: bool = False
    init_std: float = 0.02
    qkv_bias: bool = False  # Qwen2 has biases on the query, key and value projections
    tie_embeddings: bool = False  # the output head reuses the embedding matrix

    def __post_init__(self) -> None:
        if self.dim % self.n_heads:
            raise ValueError(f"dim {self.dim} is not divisible by n_heads {self.n_heads}")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads {self.n_heads} is not divisible by n_kv_heads {self.n_kv_heads}")
        if self.head_dim % 2:
            raise ValueError(f"head_dim {self.head_dim} must be even for RoPE")
        if self.mtp_depth < 0:
            raise ValueError(f"mtp_depth must be >= 0, got {self.mtp_depth}")

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads


def padded_vocab_size(n_tokens: int) -> int:
    return -(-n_tokens // VOCAB_MULTIPLE) * VOCAB_MULTIPLE


def model_config(preset: str, vocab_size: int, **overrides: Any) -> ModelConfig:
    """The named preset with the tokenizer's vocabulary (padded) and any field overridden."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    return ModelConfig(vocab_size=padded_vocab_size(vocab_size), **{**PRESETS[preset], **overrides})


def model_config_from_dict(values: dict[str, Any]) -> ModelConfig:
    known = {f.name for f in dataclasses.fields(ModelConfig)}
    return ModelConfig(**{k: v for k, v in values.items() if k in known})


@dataclass
class DataConfig:
    data: str = field(
        metadata={"help": "directory of Parquet shards (searched recursively) with a text column"}
    )
    tokenizer: str = field(
        default="",
        metadata={"help": "existing tokenizer.json; empty: train one on the data into the run dir"},
    )
    vocab_size: int = field(default=8192, metadata={"help": "vocabulary size when training the tokenizer"})
    tokenizer_docs: int = field(default=20000, metadata={"help": "documents read to train the tokenizer"})
    text_column: str = field(default="text", metadata={"help": "Parquet column holding the document text"})
    seq_len: int = field(default=256, metadata={"help": "tokens per packed training sequence"})
    batch_size: int = field(default=8, metadata={"help": "sequences per micro-batch on each rank"})
    shuffle: bool = field(default=True, metadata={"help": "shuffle the row-group order every epoch"})
    doc_mask: bool = field(
        default=True, metadata={"help": "keep attention inside documents (off: plain causal attention)"}
    )


@dataclass
class OptimConfig:
    """AdamW and its schedule, with pretraining's defaults (a model trained from scratch). The fine-tuning
    objectives use the subclasses below, whose defaults suit a pretrained model; `--help` shows each one's."""

    lr: float = field(default=1e-3, metadata={"help": "peak learning rate"})
    min_lr_ratio: float = field(
        default=0.1, metadata={"help": "final learning rate as a fraction of the peak"}
    )
    warmup_frac: float = field(
        default=0.05, metadata={"help": "fraction of max_steps spent in linear warmup"}
    )
    weight_decay: float = field(
        default=0.1,
        metadata={"help": "AdamW weight decay on weight matrices (never on embeddings, norms or biases)"},
    )
    beta1: float = field(default=0.9, metadata={"help": "AdamW beta1"})
    beta2: float = field(default=0.95, metadata={"help": "AdamW beta2"})
    grad_clip: float = field(default=1.0, metadata={"help": "max global gradient norm (0: no clipping)"})
    grad_accum: int = field(default=1, metadata={"help": "micro-batches per optimiser step"})


# Fine-tuning a pretrained model: TRL's defaults (transformers' TrainingArguments: weight_decay 0.0,
# adam_beta2 0.999; SFTConfig learning_rate 2e-5, GRPOConfig 1e-6). Pretraining's lr 1e-3 would wreck a
# pretrained model in a few steps, and β2 0.95 is a large-batch pretraining choice.
_FINE_TUNE_DECAY = "AdamW weight decay on weight matrices (never on embeddings, norms or biases); TRL: 0"


@dataclass
class SFTOptimConfig(OptimConfig):
    lr: float = field(default=2e-5, metadata={"help": "peak learning rate (TRL SFTConfig: 2e-5)"})
    weight_decay: float = field(default=0.0, metadata={"help": _FINE_TUNE_DECAY})
    beta2: float = field(default=0.999, metadata={"help": "AdamW beta2 (TRL: 0.999)"})


@dataclass
class GRPOOptimConfig(OptimConfig):
    lr: float = field(
        default=1e-6, metadata={"help": "peak learning rate (TRL GRPOConfig and DeepSeekMath: 1e-6)"}
    )
    weight_decay: float = field(default=0.0, metadata={"help": _FINE_TUNE_DECAY})
    beta2: float = field(default=0.999, metadata={"help": "AdamW beta2 (TRL: 0.999)"})


@dataclass
class DistillOptimConfig(OptimConfig):
    lr: float = field(
        default=2e-5, metadata={"help": "peak learning rate (TRL GKDConfig, inheriting SFTConfig's: 2e-5)"}
    )
    weight_decay: float = field(default=0.0, metadata={"help": _FINE_TUNE_DECAY})
    beta2: float = field(default=0.999, metadata={"help": "AdamW beta2 (TRL: 0.999)"})


@dataclass
class RunConfig:
    """What the trainer needs whatever the objective: where, how long, on what, how often to log and save."""

    out: str = field(metadata={"help": "run directory (checkpoints, logs, tokenizer, loss curve)"})
    max_steps: int = field(
        default=1000, metadata={"help": "optimiser steps to train for (sets the schedules)"}
    )
    stop_at: int = field(
        default=0,
        metadata={"help": "end this invocation after this step, keeping max_steps' schedules (0: off)"},
    )
    resume: bool = field(default=False, metadata={"help": "continue from the latest checkpoint in --out"})
    seed: int = 0
    fused_kernels: bool = field(default=False, metadata={"help": "route norms and losses through kernels/"})
    parallel: str = field(default="ddp", metadata={"help": "data parallelism under torchrun: ddp or fsdp"})
    device: str = field(default="auto", metadata={"help": "auto, cpu or cuda"})
    log_every: int = field(default=10, metadata={"help": "steps between log lines"})
    log_to: tuple[str, ...] = field(
        default=("tensorboard",),
        metadata={"help": "trackers mirroring metrics.jsonl: tensorboard, wandb (WANDB_PROJECT, WANDB_MODE="
                  "offline apply), or none"},
    )  # fmt: skip
    ckpt_every: int = field(
        default=500, metadata={"help": "steps between checkpoints (one is always written at the end)"}
    )
    keep_checkpoints: int = field(default=2, metadata={"help": "checkpoints kept on disk"})
    rank_logs: bool = field(
        default=False, metadata={"help": "every rank writes rank<r>.jsonl with a parameter digest per step"}
    )
    mixed_precision: str = field(
        default="off",
        metadata={"help": "FSDP2 policy: off, or bf16 (bf16 compute and all-gathers, fp32 master weights, "
                  "Adam state and gradient reduction)"},
    )  # fmt: skip
    ref_dtype: str = field(
        default="auto",
        metadata={"help": "dtype of a frozen reference/teacher: auto (bf16 on GPU, fp32 on CPU), fp32, bf16"},
    )
    ckpt_format: str = field(
        default="auto",
        metadata={"help": "checkpoints: safetensors (full state, rank 0 writes), dcp (torch.distributed."
                  "checkpoint, each rank writes its shards), auto (dcp under torchrun FSDP2)"},
    )  # fmt: skip
    activation_checkpointing: bool = field(
        default=False,
        metadata={"help": "recompute each block's activations in backward: less memory, ~1/3 more compute"},
    )
    attention: str = field(
        default="auto",
        metadata={"help": "attention of packed rows: auto (flex on GPU, else sdpa), sdpa (causal kernel for "
                  "one-document batches, else a dense mask), flex (FlexAttention BlockMask; CPU: no backward) "
                  "or dense (the T x T mask always)"},
    )  # fmt: skip

    def __post_init__(self) -> None:
        if self.attention not in ATTENTION_BACKENDS:
            raise ValueError(
                f"attention must be one of {', '.join(ATTENTION_BACKENDS)}, got {self.attention!r}"
            )
        if self.parallel not in ("ddp", "fsdp"):
            raise ValueError(f"parallel must be ddp or fsdp, got {self.parallel!r}")
        if self.mixed_precision not in ("off", "bf16"):
            raise ValueError(f"mixed_precision must be off or bf16, got {self.mixed_precision!r}")
        if self.mixed_precision != "off" and self.parallel != "fsdp":
            raise ValueError("--mixed-precision is FSDP2's policy: use it with --parallel fsdp")
        if self.ref_dtype not in ("auto", "fp32", "bf16"):
            raise ValueError(f"ref_dtype must be auto, fp32 or bf16, got {self.ref_dtype!r}")
        if self.ckpt_format not in ("auto", "safetensors", "dcp"):
            raise ValueError(f"ckpt_format must be auto, safetensors or dcp, got {self.ckpt_format!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, got {self.device!r}")
        self.log_to = tuple(name for name in self.log_to if name != "none")
        unknown = sorted(set(self.log_to) - set(TRACKER_NAMES))
        if unknown:
            raise ValueError(f"log_to takes {', '.join(TRACKER_NAMES)} or none, got {', '.join(unknown)}")
        if self.max_steps < 1 or self.log_every < 1 or self.ckpt_every < 1:
            raise ValueError("max_steps, log_every and ckpt_every must be positive")


@dataclass
class PretrainModelConfig:
    """The model pretraining builds from scratch, and its multi-token prediction."""

    preset: str = field(default="tiny", metadata={"help": f"model size: {', '.join(PRESETS)}"})
    mtp_depth: int = field(default=1, metadata={"help": "multi-token prediction depth D (0: none)"})
    mtp_lambda: float = field(default=0.3, metadata={"help": "MTP loss weight early in training"})
    mtp_lambda_late: float = field(default=0.1, metadata={"help": "MTP loss weight after the switch"})
    mtp_lambda_switch: float = field(
        default=0.7, metadata={"help": "fraction of max_steps after which mtp_lambda_late applies"}
    )

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; choose one of {sorted(PRESETS)}")


@dataclass
class PretrainConfig:
    run: RunConfig
    data: DataConfig
    optim: OptimConfig = field(default_factory=OptimConfig)
    model: PretrainModelConfig = field(default_factory=PretrainModelConfig)


@dataclass
class SFTDataConfig:
    data: str = field(
        metadata={"help": "JSONL or Parquet file (or directory) of prompt/completion or messages rows"}
    )
    init: str = field(
        metadata={
            "help": "model to start from: a run or checkpoint directory, a mathforge or Hugging Face model"
        }
    )
    template: str = field(
        default="stored",
        metadata={
            "help": "prompt template: stored (the model's own, else auto), auto, r1, plain or a .jinja file"
        },
    )
    prompt_column: str = field(default="prompt", metadata={"help": "column with the prompt (or question)"})
    completion_column: str = field(
        default="completion", metadata={"help": "column with the target completion"}
    )
    messages_column: str = field(
        default="messages", metadata={"help": "column with a chat conversation, used when present"}
    )
    seq_len: int = field(default=0, metadata={"help": "tokens per packed row (0: the model's max_seq_len)"})
    batch_size: int = field(default=8, metadata={"help": "packed rows per micro-batch on each rank"})
    shuffle: bool = field(default=True, metadata={"help": "shuffle the examples every epoch"})


@dataclass
class SFTConfig:
    run: RunConfig
    sft: SFTDataConfig
    optim: SFTOptimConfig = field(default_factory=SFTOptimConfig)


@dataclass
class GRPODataConfig:
    """GRPO's prompts, rollouts, rewards and policy objective (TRL's GRPOTrainer names where they exist)."""

    prompts: str = field(
        metadata={"help": "JSONL/Parquet with a prompt (or question/problem) column and an answer column"}
    )
    init: str = field(
        metadata={
            "help": "policy to start from: a run or checkpoint directory, a mathforge or Hugging Face model"
        }
    )
    template: str = field(
        default="stored", metadata={"help": "prompt template: stored, auto, r1, plain or a .jinja file"}
    )
    prompt_column: str = field(default="prompt", metadata={"help": "prompt column (else question, problem)"})
    reward: tuple[str, ...] = field(
        default=("accuracy",),
        metadata={
            "help": "rewards NAME_OR_MODULE:FUNCTION[=WEIGHT], comma-separated: accuracy, format, overlong"
        },
    )
    num_generations: int = field(default=8, metadata={"help": "completions per prompt, G"})
    prompts_per_step: int = field(default=4, metadata={"help": "prompts per optimiser step on each rank"})
    max_new_tokens: int = field(default=256, metadata={"help": "completion length limit"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature of the rollouts"})
    top_p: float = field(default=1.0, metadata={"help": "nucleus sampling mass of the rollouts"})
    scale_rewards: str = field(default="group", metadata={"help": "advantage scale: group, batch or none"})
    loss_type: str = field(default="dapo", metadata={"help": "aggregation: grpo, dr_grpo, dapo or bnpo"})
    importance: str = field(default="token", metadata={"help": "ratio: token (GRPO) or sequence (GSPO)"})
    epsilon: float = field(default=0.2, metadata={"help": "lower clip range"})
    epsilon_high: float = field(default=0.0, metadata={"help": "upper clip range (0: epsilon; DAPO 0.28)"})
    beta: float = field(
        default=0.0, metadata={"help": "k3 KL weight to the reference (0: no reference model)"}
    )
    iterations: int = field(default=1, metadata={"help": "optimiser steps per rollout batch, μ"})
    ref_sync_every: int = field(
        default=0, metadata={"help": "copy the policy into the reference every N steps"}
    )
    dynamic_sampling: bool = field(
        default=False, metadata={"help": "drop zero-spread groups and sample more prompts (DAPO)"}
    )
    max_resample_rounds: int = field(default=3, metadata={"help": "extra sampling rounds to refill a batch"})
    truncated: str = field(
        default="zero",
        metadata={
            "help": "a completion cut off by the length limit earns no accuracy: zero (kept in the loss), "
            "mask (also left out of the loss, DAPO) or penalty (accuracy -1)"
        },
    )
    kl_clamp: bool = field(
        default=True, metadata={"help": "clamp the k3 log-ratio to ±20 and its value to ±10 (verl)"}
    )
    overlong_buffer: int = field(
        default=0, metadata={"help": "DAPO soft overlong buffer in tokens (overlong)"}
    )
    reward_timeout: float = field(default=30.0, metadata={"help": "seconds one reward call may take"})
    verify_workers: int = field(default=2, metadata={"help": "answer-checking worker processes"})
    samples_every: int = field(
        default=10, metadata={"help": "steps between samples.jsonl entries (0: never)"}
    )

    def __post_init__(self) -> None:
        if self.num_generations < 2:
            raise ValueError("num_generations must be >= 2: advantages are relative to the group")
        if self.prompts_per_step < 1 or self.max_new_tokens < 1 or self.iterations < 1:
            raise ValueError("prompts_per_step, max_new_tokens and iterations must be positive")
        if not self.reward:
            raise ValueError("name at least one --reward")
        if self.truncated not in ("zero", "mask", "penalty"):
            raise ValueError(f"truncated must be zero, mask or penalty, got {self.truncated!r}")


@dataclass
class GRPOConfig:
    run: RunConfig
    grpo: GRPODataConfig
    optim: GRPOOptimConfig = field(default_factory=GRPOOptimConfig)


DIVERGENCES = ("forward_kl", "reverse_kl", "jsd")


@dataclass
class DistillOptions:
    """Logit distillation: the teacher and the divergence (TRL GKDTrainer's names where they exist)."""

    teacher: str = field(
        default="",
        metadata={
            "help": "teacher model (run, checkpoint, mathforge or Hugging Face directory); not with --offline"
        },
    )
    loss: str = field(default="forward_kl", metadata={"help": "divergence: forward_kl, reverse_kl or jsd"})
    beta: float = field(
        default=0.5,
        metadata={
            "help": "generalised JSD weight: 0 is forward KL(teacher‖student), 1 reverse KL (jsd only)"
        },
    )
    temperature: float = field(
        default=1.0, metadata={"help": "both distributions are softmax(logits / temperature)"}
    )
    lmbda: float = field(
        default=0.0,
        metadata={"help": "share of steps on the student's own samples, scored by the teacher (on-policy)"},
    )
    ce_weight: float = field(
        default=0.0,
        metadata={"help": "weight of a cross-entropy term on the data's tokens (0: divergence only)"},
    )
    offline: bool = field(
        default=False,
        metadata={"help": "read the teacher's stored top-K log-probs (distill traces --top-k-logprobs)"},
    )
    max_new_tokens: int = field(default=256, metadata={"help": "on-policy completion length limit"})
    top_p: float = field(default=1.0, metadata={"help": "nucleus sampling mass of on-policy samples"})

    def __post_init__(self) -> None:
        if self.loss not in DIVERGENCES:
            raise ValueError(f"loss must be one of {', '.join(DIVERGENCES)}, got {self.loss!r}")
        if not 0.0 <= self.beta <= 1.0 or not 0.0 <= self.lmbda <= 1.0:
            raise ValueError(f"beta and lmbda must be in [0, 1], got {self.beta} and {self.lmbda}")
        if not self.temperature > 0.0 or self.ce_weight < 0.0 or self.max_new_tokens < 1:
            raise ValueError("temperature and max_new_tokens must be positive, ce_weight >= 0")
        if self.offline and self.teacher:
            raise ValueError("--offline reads the teacher's stored log-probs: give no --teacher")
        if not self.offline and not self.teacher:
            raise ValueError("name a --teacher model (or pass --offline to read stored teacher log-probs)")
        if self.offline and self.lmbda > 0:
            raise ValueError("on-policy steps (--lmbda > 0) need a live --teacher to score the samples")


@dataclass
class DistillConfig:
    """`train distill`: SFT's data section (the rows and how they are packed), the distillation options."""

    run: RunConfig
    data: SFTDataConfig
    distill: DistillOptions
    optim: DistillOptimConfig = field(default_factory=DistillOptimConfig)


@dataclass
class EngineConfig:
    """Where a command that only reads a model samples: in process (default) or at an OpenAI-compatible server
    (vLLM, SGLang, TGI, `mathforge serve`); see training/sampling/."""

    server: str = field(
        default="",
        metadata={"help": "OpenAI-compatible server URL (e.g. http://host:8000/v1): sample there; the model "
                  "flag then only names the tokenizer and prompt template (its weights are not read)"},
    )  # fmt: skip
    server_model: str = field(
        default="", metadata={"help": "model name at the server (default: the only one it serves)"}
    )
    concurrency: int = field(default=8, metadata={"help": "requests in flight at the server"})
    request_timeout: float = field(default=600.0, metadata={"help": "seconds one request attempt may take"})
    max_retries: int = field(
        default=6, metadata={"help": "retries of a request on 429, 5xx, timeouts and connection errors"}
    )
    retry_backoff: float = field(
        default=1.0, metadata={"help": "first retry delay in seconds (doubles each retry, with jitter)"}
    )

    def __post_init__(self) -> None:
        if self.concurrency < 1 or self.max_retries < 0:
            raise ValueError("concurrency must be >= 1 and max_retries >= 0")
        if not self.request_timeout > 0 or self.retry_backoff < 0:
            raise ValueError("request_timeout must be > 0 and retry_backoff >= 0")


@dataclass
class TracesConfig:
    """`distill traces`: K teacher samples per prompt, scored by the reward functions, the accepted ones kept."""

    teacher: str = field(
        metadata={"help": "teacher model (run, checkpoint, mathforge or Hugging Face directory)"}
    )
    prompts: str = field(
        metadata={"help": "JSONL/Parquet with a prompt (or question/problem) column and an answer column"}
    )
    out: str = field(metadata={"help": "output directory: Parquet part files, _config.json, _summary.json"})
    samples: int = field(default=8, metadata={"help": "completions per prompt, K"})
    reward: tuple[str, ...] = field(
        default=("accuracy",),
        metadata={
            "help": "rewards NAME_OR_MODULE:FUNCTION[=WEIGHT], comma-separated: accuracy, format, overlong"
        },
    )
    min_reward: float = field(
        default=1.0, metadata={"help": "a completion is accepted when its total reward reaches this"}
    )
    keep: str = field(
        default="all", metadata={"help": "all: every accepted completion; best: the best one (best-of-K)"}
    )
    max_per_prompt: int = field(default=0, metadata={"help": "accepted completions kept per prompt (0: all)"})
    top_k_logprobs: int = field(
        default=0, metadata={"help": "store the teacher's top-N log-probs per completion token (0: none)"}
    )
    max_new_tokens: int = field(default=512, metadata={"help": "completion length limit"})
    temperature: float = field(default=0.7, metadata={"help": "sampling temperature"})
    top_p: float = field(default=0.95, metadata={"help": "nucleus sampling mass"})
    logprob_temperature: float = field(
        default=1.0, metadata={"help": "stored log-probs are of softmax(logits / this) (train distill's)"}
    )
    template: str = field(
        default="stored", metadata={"help": "prompt template: stored, auto, r1, plain or a .jinja file"}
    )
    prompt_column: str = field(default="prompt", metadata={"help": "prompt column (else question, problem)"})
    chunk_prompts: int = field(
        default=64, metadata={"help": "prompts per part file (the unit of resumption)"}
    )
    batch_size: int = field(default=8, metadata={"help": "prompts generated together (× samples rows)"})
    limit: int = field(default=0, metadata={"help": "first N prompts only (0: all)"})
    seed: int = 0
    device: str = field(default="auto", metadata={"help": "auto, cpu or cuda"})
    reward_timeout: float = field(default=30.0, metadata={"help": "seconds one reward call may take"})
    verify_workers: int = field(default=2, metadata={"help": "answer-checking worker processes"})
    overlong_buffer: int = field(
        default=0, metadata={"help": "DAPO soft overlong buffer in tokens (overlong)"}
    )
    engine: EngineConfig = field(default_factory=EngineConfig)

    def __post_init__(self) -> None:
        if self.samples < 1 or self.max_new_tokens < 1 or self.chunk_prompts < 1 or self.batch_size < 1:
            raise ValueError("samples, max_new_tokens, chunk_prompts and batch_size must be positive")
        if self.keep not in ("all", "best"):
            raise ValueError(f"keep must be all or best, got {self.keep!r}")
        if self.max_per_prompt < 0 or self.top_k_logprobs < 0 or self.limit < 0:
            raise ValueError("max_per_prompt, top_k_logprobs and limit must be >= 0")
        if not self.reward:
            raise ValueError("name at least one --reward")
        if not self.logprob_temperature > 0.0:
            raise ValueError("logprob_temperature must be > 0")


@dataclass
class EvalConfig:
    """`mathforge eval`: a model on benchmark files."""

    model: str = field(metadata={"help": "a run or checkpoint directory, a mathforge or Hugging Face model"})
    benchmark: tuple[str, ...] = field(metadata={"help": "benchmark files (JSONL, JSONL.gz or Parquet)"})
    out: str = field(
        metadata={"help": "directory for summary.json and one JSONL of completions per benchmark"}
    )
    samples: int = field(default=1, metadata={"help": "completions per question, K (1: greedy)"})
    max_new_tokens: int = field(default=512, metadata={"help": "new tokens per completion at most"})
    temperature: float = field(default=0.6, metadata={"help": "sampling temperature when K > 1"})
    top_p: float = field(default=0.95, metadata={"help": "nucleus sampling mass when K > 1"})
    limit: int = field(default=0, metadata={"help": "first N questions of each benchmark (0: all)"})
    batch_size: int = field(default=16, metadata={"help": "questions generated together"})
    template: str = field(
        default="stored", metadata={"help": "prompt template: stored, auto, r1, plain or a .jinja file"}
    )
    seed: int = 0
    device: str = field(default="auto", metadata={"help": "auto, cpu or cuda"})
    verify_timeout: float = field(default=5.0, metadata={"help": "seconds one answer check may take"})
    verify_workers: int = field(default=2, metadata={"help": "answer-checking worker processes"})
    answer_match: str = field(
        default="strict",
        metadata={
            "help": "answer extraction of the headline scores: strict (the final closed \\boxed{}) or lenient "
            "(fallbacks down to the last number); both are reported"
        },
    )
    engine: EngineConfig = field(default_factory=EngineConfig)

    def __post_init__(self) -> None:
        if self.answer_match not in ("strict", "lenient"):
            raise ValueError(f"answer_match must be strict or lenient, got {self.answer_match!r}")
        if self.samples < 1 or self.batch_size < 1 or self.max_new_tokens < 1:
            raise ValueError("samples, batch_size and max_new_tokens must be positive")
        if not self.benchmark:
            raise ValueError("name at least one --benchmark file")


@dataclass
class GenerateConfig:
    """`mathforge generate`: a quick look at what a model writes."""

    model: str = field(metadata={"help": "a run or checkpoint directory, a mathforge or Hugging Face model"})
    prompt: str = field(metadata={"help": "prompt text (raw, unless --chat)"})
    max_new_tokens: int = field(default=128, metadata={"help": "new tokens at most"})
    temperature: float = field(default=0.0, metadata={"help": "sampling temperature (0: greedy)"})
    top_p: float = field(default=1.0, metadata={"help": "nucleus sampling mass"})
    chat: bool = field(default=False, metadata={"help": "render the prompt with the model's prompt template"})
    template: str = field(
        default="stored", metadata={"help": "with --chat: stored, auto, r1, plain or a .jinja file"}
    )
    speculative: bool = field(
        default=False, metadata={"help": "greedy decoding with the model's MTP modules drafting tokens"}
    )
    seed: int = 0
    device: str = field(default="auto", metadata={"help": "auto, cpu or cuda"})
    engine: EngineConfig = field(default_factory=EngineConfig)


@dataclass
class ServeConfig:
    """`mathforge serve`: an OpenAI-compatible server for any model mathforge loads."""

    model: str = field(metadata={"help": "a run or checkpoint directory, a mathforge or Hugging Face model"})
    host: str = field(default="127.0.0.1", metadata={"help": "address to listen on (0.0.0.0: every one)"})
    port: int = field(default=8000, metadata={"help": "port to listen on (0: any free one)"})
    served_model_name: str = field(
        default="", metadata={"help": "the model's name in the API (default: the model directory's name)"}
    )
    template: str = field(
        default="stored", metadata={"help": "chat template: stored, auto, r1, plain or a .jinja file"}
    )
    device: str = field(default="auto", metadata={"help": "auto, cpu or cuda"})
    max_batch_rows: int = field(
        default=64, metadata={"help": "rows (prompts × n) generated together in one batch at most"}
    )
    batch_window_ms: float = field(
        default=10.0,
        metadata={"help": "how long the first waiting request waits for others to join its batch"},
    )
    max_logprobs: int = field(default=20, metadata={"help": "largest logprobs / top_logprobs accepted"})
    max_n: int = field(default=64, metadata={"help": "largest n accepted"})

    def __post_init__(self) -> None:
        if self.max_batch_rows < 1 or self.batch_window_ms < 0 or self.max_logprobs < 0 or self.max_n < 1:
            raise ValueError(
                "max_batch_rows and max_n must be positive, batch_window_ms and max_logprobs >= 0"
            )
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, got {self.device!r}")


def add_config_args(parser: argparse.ArgumentParser, config_cls: type) -> None:
    """One flag per field of every section of a run config (field names are unique across its sections)."""
    for section in dataclasses.fields(config_cls):
        add_dataclass_args(parser, _section_type(config_cls, section.name))


def config_from_args(config_cls: type[C], ns: argparse.Namespace) -> C:
    return config_cls(
        **{
            section.name: dataclass_from_args(_section_type(config_cls, section.name), ns)
            for section in dataclasses.fields(config_cls)
        }
    )


def config_from_dict(config_cls: type[C], values: dict[str, dict[str, Any]]) -> C:
    """Inverse of typedconfig.to_dict for a run config (as stored in a run directory)."""
    return config_cls(
        **{
            section.name: _section_type(config_cls, section.name)(**values[section.name])
            for section in dataclasses.fields(config_cls)
        }
    )


def _section_type(config_cls: type, name: str) -> type:
    return typing.get_type_hints(config_cls)[name]
