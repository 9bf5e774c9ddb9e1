"""Training: Parquet corpus → byte-level BPE → packed, document-masked batches → decoder-only transformer with
DeepSeek-V3 multi-token prediction; then SFT, GRPO with verifiable rewards, distillation (verified teacher traces,
logit distillation), evaluation on math benchmarks, and Hugging Face checkpoints in and out. One trainer owns the loop; each objective plugs into it.

    mathforge train pretrain --data DIR --out RUN --preset tiny --max-steps 200
    mathforge train sft --data traces.jsonl --init RUN --out SFT_RUN
    mathforge train grpo --prompts prompts.jsonl --init SFT_RUN --out RL_RUN --reward accuracy
    mathforge distill traces --teacher BIG --prompts prompts.jsonl --samples 8 --out TRACES
    mathforge train distill --teacher BIG --init SMALL --data TRACES --out KD_RUN --loss jsd
    mathforge eval --model RL_RUN --benchmark gsm8k_test.jsonl --out EVAL_DIR
    torchrun --nproc-per-node 8 -m training.<pretrain|sft|grpo|distill> ... --parallel fsdp

Modules:
- the loop and its objectives: trainer, pretrain, sft, grpo (+ grpo_loss: its arithmetic), distill, config,
  schedule, checkpoint, metrics, distributed;
- the model and its use: model (readouts for the wrapped forward), generate (KV cache, log-probs, speculative),
  model_io (any model path → model, tokenizer, template), hf (Llama/Qwen2 import and export), prompts
  (templates), tokenizer;
- data: data (packed corpus loader), records (JSONL/Parquet rows), benchmarks, synthetic (a task for demos);
- answers and rewards, torch-free: answers (extraction), verify (math-verify in a pool with hard timeouts),
  rewards (GRPO's reward functions), workers (their processes);
- commands: cli (`mathforge train|eval|generate|model|distill`), evaluate, sampling_cli, traces (`distill
  traces`: verified teacher samples → Parquet, resumable).
"""
