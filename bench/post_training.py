"""SFT and GRPO learn: held-out pass@1 on the synthetic "last number" task before training, after SFT and after
GRPO, with the GRPO reward curve — every step through the `mathforge` command line, as a user runs it.

The starting point is the tiny preset, pretrained briefly on generated math text (its tokenizer learns the
digits); SFT is kept short on purpose so that GRPO has room to improve on it.

    python bench/post_training.py                       # about 5 minutes on 2 cores
    python bench/post_training.py --sft-steps 400       # SFT alone to convergence
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mathforge.demo import post_train
from training.pretrain import run as pretrain


def _pretrained(out: Path, steps: int) -> Path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "training"))
    from training_corpus import write_corpus

    from training.config import DataConfig, OptimConfig, PretrainConfig, RunConfig

    write_corpus(out / "corpus", n_docs=600)
    pretrain(
        PretrainConfig(
            run=RunConfig(out=str(out / "pretrained"), max_steps=steps, log_every=10, device="cpu"),
            data=DataConfig(data=str(out / "corpus"), vocab_size=512, seq_len=256, batch_size=4),
            optim=OptimConfig(lr=3e-3),
        )
    )
    return out / "pretrained"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench_out/post_training", help="work directory (replaced)")
    parser.add_argument("--pretrain-steps", type=int, default=30)
    parser.add_argument("--sft-steps", type=int, default=200)
    parser.add_argument("--grpo-steps", type=int, default=40)
    args = parser.parse_args(argv)
    out = Path(args.out)
    started = time.monotonic()
    accuracy = post_train(out, _pretrained(out, args.pretrain_steps), sft_steps=args.sft_steps,
                          grpo_steps=args.grpo_steps)  # fmt: skip
    rewards = [json.loads(line) for line in (out / "grpo" / "metrics.jsonl").open()]
    print("\nGRPO reward curve (step: reward_mean / accuracy of the rollouts):")
    for record in rewards:
        print(
            f"  {record['step']:>4}: {record['reward_mean']:.3f} / {record.get('accuracy', float('nan')):.3f}"
        )
    print("\nheld-out pass@1 (mathforge eval, greedy, verified):")
    for name, value in accuracy.items():
        print(f"  {name:<11} {value:.2f}")
    print(
        f"GRPO over SFT: {100 * (accuracy['grpo'] - accuracy['sft']):+.0f} points; {time.monotonic() - started:.0f} s"
    )


if __name__ == "__main__":
    main()
