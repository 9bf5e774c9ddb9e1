"""Run under torchrun by test_torchrun.py: FSDP2 generation with very different prompts and budgets per rank.

Rank 0 has short prompts and a long budget; rank 1 has a prompt that leaves 4 tokens of context, and in the
first call also asks for only those 4 tokens (what callers that capped the budget by their own longest prompt
did). Under FSDP2 every forward is a collective, so ranks that ran different numbers of forwards hung; ranks
must now agree on the steps and step on with dummy forwards. Each rank writes what the wrapped model sampled
next to what the plain model samples from the same prompts, settings and seed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from training.config import model_config
from training.distributed import leave_distributed, setup_distributed, wrap_model
from training.models.generation import generate
from training.models.transformer import Transformer

MAX_SEQ_LEN = 32


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    d = setup_distributed("cpu")
    cfg = model_config("tiny", 200, max_seq_len=MAX_SEQ_LEN, mtp_depth=0)
    plain = Transformer(cfg, seed=4).eval()
    wrapped = wrap_model(Transformer(cfg, seed=4).eval(), "fsdp", d)
    if d.rank == 0:
        prompts = [[5, 6, 7], [9, 10]]
        calls = [(prompts, 20, {}), (prompts, 20, {}), (prompts, 20, {"temperature": 1.0})]
        stop = generate(plain, prompts, 3, temperature=0).tokens[0][2]  # rank 0 stops early in call 2
        calls[1] = (prompts, 20, {"stop_ids": {stop}})
    else:
        prompts = [list(range(3, 3 + MAX_SEQ_LEN - 3))]  # room for 4 new tokens
        calls = [(prompts, 4, {}), (prompts, 20, {}), (prompts, 20, {"temperature": 1.0})]
    record: dict[str, list] = {"wrapped": [], "plain": [], "truncated": [], "forwards": []}
    for prompts, budget, options in calls:
        options = {"temperature": 0.0, **options}
        seeded = {"generator": torch.Generator().manual_seed(7)} if options["temperature"] > 0 else {}
        # small prefill chunks: rank 1 prefills its long prompt in 8 forwards, rank 0 in 1 (and steps on with
        # dummies); host checks every 3 steps: the ranks must still agree on when all are done
        out = generate(wrapped, prompts, budget, **options, **seeded, prefill_chunk=4, check_every=3)
        seeded = {"generator": torch.Generator().manual_seed(7)} if options["temperature"] > 0 else {}
        record["wrapped"].append(out.tokens)
        record["truncated"].append(out.truncated)
        record["forwards"].append(out.stats.forwards + out.stats.dummy_forwards)
        record["plain"].append(generate(plain, prompts, budget, **options, **seeded).tokens)
    Path(args.out, f"rank{d.rank}.json").write_text(json.dumps(record))
    leave_distributed()


if __name__ == "__main__":
    main()
