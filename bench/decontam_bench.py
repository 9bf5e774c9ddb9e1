"""Decontamination throughput: our hashed n-gram index against the textbook set-of-strings check.

Both check the same documents against the same benchmark questions (every file in
../shared/data/math_benchmarks) with 13-word n-grams of the same normalised words; the baseline joins each
document n-gram into a string and looks it up in a Python set of the benchmark n-gram strings (what a
straightforward implementation does). Documents are synthetic ~2 KB texts, a share of them quoting a
question. Reports documents per CPU-second (one process, one core), the ratio to the baseline, and that
both flag the same documents.

    .venv/bin/python bench/decontam_bench.py [--docs 20000 --quote-share 0.01]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from classifiers.decontaminate import ContaminationIndex, load_benchmark_items  # noqa: E402
from classifiers.text_norm import words  # noqa: E402
from typedconfig import add_dataclass_args, dataclass_from_args  # noqa: E402

BENCHMARKS = REPO.parent / "shared" / "data" / "math_benchmarks"


@dataclass
class DecontamBenchConfig:
    docs: int = field(default=20000, metadata={"help": "documents to check"})
    quote_share: float = field(
        default=0.01, metadata={"help": "share of documents quoting a benchmark question"}
    )
    ngram: int = field(default=13, metadata={"help": "n-gram length"})
    seed: int = field(default=0, metadata={"help": "RNG seed"})


def _documents(cfg: DecontamBenchConfig, questions: list[str]) -> list[str]:
    rng = random.Random(cfg.seed)
    vocab = sorted({w for q in questions for w in words(q)} | {f"word{i}" for i in range(20000)})
    docs = []
    for _ in range(cfg.docs):
        body = " ".join(rng.choices(vocab, k=330))
        if rng.random() < cfg.quote_share:
            cut = rng.randrange(len(body))
            body = body[:cut] + " " + rng.choice(questions).upper() + " " + body[cut:]
        docs.append(body)
    return docs


def _baseline(questions: list[str], n: int):
    grams: set[str] = set()
    for q in questions:
        w = words(q)
        grams.update(" ".join(w[i : i + n]) for i in range(len(w) - n + 1))

    def contaminated(text: str) -> bool:
        w = words(text)
        return any(" ".join(w[i : i + n]) in grams for i in range(len(w) - n + 1))

    return contaminated


def run(cfg: DecontamBenchConfig) -> dict:
    items = load_benchmark_items([BENCHMARKS])
    questions = [i.text for i in items]
    docs = _documents(cfg, questions)
    t = time.process_time()
    index = ContaminationIndex(items)
    build_ours = time.process_time() - t
    t = time.process_time()
    baseline = _baseline(questions, cfg.ngram)
    build_base = time.process_time() - t
    t = time.process_time()
    ours_flags = [index.is_contaminated(d) for d in docs]
    ours_s = time.process_time() - t
    t = time.process_time()
    base_flags = [baseline(d) for d in docs]
    base_s = time.process_time() - t
    # Items shorter than n words are only matched (whole) by ours; compare on the baseline's definition.
    disagree = sum(o != b for o, b in zip(ours_flags, base_flags, strict=True) if b)
    return {
        "config": asdict(cfg),
        "benchmark_items": len(items),
        "index_ngrams": index.stats["ngrams"],
        "build_seconds": {"ours": round(build_ours, 2), "baseline": round(build_base, 2)},
        "docs_per_cpu_s": {"ours": round(len(docs) / ours_s), "baseline": round(len(docs) / base_s)},
        "speed_vs_baseline": round(base_s / ours_s, 2),
        "flagged": {"ours": sum(ours_flags), "baseline": sum(base_flags)},
        "baseline_flags_missed_by_ours": disagree,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_dataclass_args(parser, DecontamBenchConfig)
    if not BENCHMARKS.is_dir():
        sys.exit(f"benchmark files not found at {BENCHMARKS}")
    print(json.dumps(run(dataclass_from_args(DecontamBenchConfig, parser.parse_args(argv))), indent=2))


if __name__ == "__main__":
    main()
