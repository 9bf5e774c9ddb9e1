"""Rewards and answer verification, torch-free: GRPO's reward functions, final-answer extraction, and
math-verify in worker processes with hard timeouts. Evaluation and GRPO's accuracy reward use the same code."""
