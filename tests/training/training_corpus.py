"""Real-looking math text written to Parquet shards with pyarrow, as the corpus job lays them out."""

from __future__ import annotations

import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

_NAMES = ("Ada", "Emmy", "Carl", "Sofia", "Kurt", "Maryam", "Srinivasa", "Hypatia")


def math_text(rng: random.Random) -> str:
    """A short worked solution in the style of a math forum post, with numbers that are actually right."""
    parts = []
    for _ in range(rng.randint(2, 6)):
        a, b, c = rng.randint(2, 9), rng.randint(1, 30), rng.randint(31, 99)
        name = rng.choice(_NAMES)
        parts.append(
            rng.choice(
                [
                    f"Solve ${a}x + {b} = {c}$. Subtracting {b} from both sides gives ${a}x = {c - b}$, "
                    f"so $x = \\frac{{{c - b}}}{{{a}}}$.",
                    f"A rectangle has sides {a} cm and {b} cm, so its area is {a * b} square centimetres "
                    f"and its perimeter is {2 * (a + b)} cm.",
                    f"Let $f(x) = {a}x^2 + {b}$. Then $f'(x) = {2 * a}x$ and $f({c % 10}) = {a * (c % 10) ** 2 + b}$.",
                    f"{name} buys {a} notebooks at {b} dollars each and pays {a * b} dollars in total.",
                    f"The sum of the first {c} positive integers is $\\frac{{{c}({c}+1)}}{{2}} = {c * (c + 1) // 2}$.",
                    f"Since {a} and {b} have greatest common divisor {__import__('math').gcd(a, b)}, "
                    f"the fraction $\\frac{{{a}}}{{{b}}}$ is {'already reduced' if __import__('math').gcd(a, b) == 1 else 'not reduced'}.",
                ]
            )
        )
    return " ".join(parts)


def write_corpus(
    root: Path, n_docs: int = 240, n_shards: int = 3, row_group_size: int = 20, seed: int = 0
) -> list[str]:
    """Shards in nested directories (as a Spark job writes them) plus files that readers must ignore."""
    rng = random.Random(seed)
    texts = [f"Document {i}. " + math_text(rng) for i in range(n_docs)]
    per_shard = -(-n_docs // n_shards)
    for s in range(n_shards):
        shard_dir = root / f"crawl=demo/part{s % 2}"
        shard_dir.mkdir(parents=True, exist_ok=True)
        chunk = texts[s * per_shard : (s + 1) * per_shard]
        table = pa.table({"id": [f"doc-{s}-{i}" for i in range(len(chunk))], "text": chunk})
        pq.write_table(table, shard_dir / f"part-{s:05d}.parquet", row_group_size=row_group_size)
    (root / "_SUCCESS").write_text("")
    (root / "_temporary").mkdir(exist_ok=True)
    pq.write_table(pa.table({"text": ["must not be read"]}), root / "_temporary" / "part-9.parquet")
    return texts


def repeated_pattern_batch(pattern, batch_size: int, seq_len: int, generator):
    """Rows cut at random offsets from an endlessly repeated token sequence, plus next-token targets."""
    import torch

    period = len(pattern)
    offsets = torch.randint(0, period, (batch_size, 1), generator=generator)
    index = (offsets + torch.arange(seq_len + 1)) % period
    tokens = pattern[index]
    return tokens[:, :-1], tokens[:, 1:], torch.zeros(batch_size, seq_len, dtype=torch.long)


def pretrained_tiny(out: Path, steps: int = 30) -> Path:
    """The tiny preset pretrained briefly on `write_corpus` text (its tokenizer learns the digits): the
    starting point of the post-training benchmark and of the GRPO learning test."""
    from training.config import DataConfig, OptimConfig, PretrainConfig, RunConfig
    from training.objectives.pretrain import run

    write_corpus(out / "corpus", n_docs=600)
    run(
        PretrainConfig(
            run=RunConfig(out=str(out / "pretrained"), max_steps=steps, log_every=10, device="cpu"),
            data=DataConfig(data=str(out / "corpus"), vocab_size=512, seq_len=256, batch_size=4),
            optim=OptimConfig(lr=3e-3),
        )
    )
    return out / "pretrained"
