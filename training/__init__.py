"""Training: Parquet corpus → byte-level BPE → packed, document-masked batches → decoder-only transformer with
DeepSeek-V3 multi-token prediction, pretrained under torchrun (DDP or FSDP2), plus KV-cache generation and
per-token log-probabilities for GRPO and distillation.

    mathforge train pretrain --data DIR --out RUN_DIR --preset tiny --max-steps 200
    torchrun --nproc-per-node 8 -m training.pretrain --data DIR --out RUN_DIR --preset 1b --resume

Modules: config (dataclasses, presets), tokenizer, data (streaming and packing), model, generate, checkpoint,
metrics, schedule, pretrain (the loop), cli (`mathforge train`).
"""
