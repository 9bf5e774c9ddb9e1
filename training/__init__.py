"""Training: Parquet corpus → byte-level BPE → packed, document-masked batches → decoder-only transformer with
DeepSeek-V3 multi-token prediction; then SFT, GRPO with verifiable rewards, distillation (verified teacher traces,
logit distillation), evaluation on math benchmarks, and Hugging Face checkpoints in and out. One trainer owns
the loop; each objective plugs into it.

    mathforge train pretrain --data DIR --out RUN --preset tiny --max-steps 200
    mathforge train sft --data traces.jsonl --init RUN --out SFT_RUN
    mathforge train grpo --prompts prompts.jsonl --init SFT_RUN --out RL_RUN --reward accuracy
    mathforge distill traces --teacher BIG --prompts prompts.jsonl --samples 8 --out TRACES
    mathforge train distill --teacher BIG --init SMALL --data TRACES --out KD_RUN --loss jsd
    mathforge eval --model RL_RUN --benchmark gsm8k_test.jsonl --out EVAL_DIR
    torchrun --nproc-per-node 8 -m training.objectives.<pretrain|sft|grpo|distill> ... --parallel fsdp

Grouped by what a newcomer looks for:
- here: the loop and what every objective shares: trainer (devices, DDP/FSDP2, optimiser, accumulation,
  checkpoints, metrics), config (torch-free dataclasses), distributed, schedule, metrics; cli for
  `mathforge train|eval|generate|model|distill`;
- `objectives/`: pretrain (MTP), sft, grpo (+ grpo_loss, its arithmetic), distill (+ traces: `distill traces`,
  verified teacher samples → Parquet, resumable); each objective plugs into the trainer;
- `evaluation/`: evaluate (`mathforge eval`) and sampling_cli (`mathforge generate`);
- `models/`: the model and its files: transformer (+ MTP, readouts), generation (KV cache, log-probs,
  speculative), tokenizer, prompts (templates), checkpoint, model_io (any model path → model, tokenizer,
  template), hf (Llama/Qwen2 import and export);
- `data/`: packing (Parquet corpus → packed batches), records (JSONL/Parquet rows), benchmarks, synthetic (a
  task for demos);
- `rewards/`, torch-free: functions (GRPO's reward functions), answers (extraction), verify (math-verify in a
  pool with hard timeouts), workers (their processes).

Imports go down: rewards/ imports no other part of training; models/ only config and distributed; data/ adds
models/ and rewards/; evaluation/ adds data/; objectives/ and the trainer sit above them all, and nothing below
imports an objective or the trainer (tests/test_layers.py checks this).
"""
