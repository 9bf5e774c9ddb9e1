"""Objectives of the one trainer (`training.trainer`): pretraining with MTP, SFT, GRPO and distillation. Each
supplies its batches, its loss (summed, with the number of loss tokens), its metrics and its data state for
checkpoints; none owns a loop; each is also a torchrun entry point (`torchrun -m training.objectives.sft`).
`traces` is distillation's first half: `mathforge distill traces` writes the verified teacher samples that
`train sft` and `train distill` read."""
