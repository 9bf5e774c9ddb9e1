"""`make demo`: the whole path on one machine, offline, on a crawl the project generates itself.

    sample crawl (WARC) → math classifier (fastText, seeds bootstrapped from math markup; Spark)
      → corpus build with that classifier (Spark local[*]) → Parquet corpus + stats → tiny MTP pretraining run
      → the reasoning half on a verifiable synthetic task: eval → short SFT → eval → short GRPO → eval

Each step goes through the `mathforge` command line, exactly as a user would type it.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from mathforge.cli import main as mathforge


def _step(title: str, argv: list[str]) -> None:
    print(f"\n=== {title}\n$ mathforge {' '.join(argv)}", flush=True)
    started = time.monotonic()
    code = mathforge(argv)
    if code != 0:
        raise SystemExit(f"demo step failed ({title}), exit code {code}")
    print(f"--- {title}: {time.monotonic() - started:.1f} s", flush=True)


def report_against_labels(corpus: Path, manifest: Path) -> str:
    """The corpus against the sample crawl's own labels: precision of the kept pages, and recall of the math
    pages counted once per duplicate cluster (dedup keeps one page of each, by design)."""
    import json

    import pyarrow.dataset as ds

    records = [r for r in json.loads(manifest.read_text())["records"] if r["warc_type"] == "response"]
    math = {
        r["record_id"]: r["duplicate_of"] or r["record_id"]
        for r in records
        if r["is_math"] and r["http_status"] == 200 and not r["broken"]
    }
    kept = set(
        ds.dataset(corpus / "data", format="parquet")
        .to_table(columns=["warc_record_id"])
        .column("warc_record_id")
        .to_pylist()
    )
    clusters = set(math.values())
    found = {math[rid] for rid in kept if rid in math}
    precision = len(kept & set(math)) / len(kept) if kept else 0.0
    recall = len(found) / len(clusters) if clusters else 0.0
    return (
        f"against the generator's labels: {len(kept)} pages kept, precision {precision:.2f}; "
        f"{len(clusters)} distinct math pages ({len(math)} with duplicates), recall {recall:.2f}"
    )


def _accuracy(eval_dir: Path) -> float:
    import json

    return json.loads((eval_dir / "summary.json").read_text())["test"]["pass@1"]


# The reasoning half's recipe (bench/post_training.py measures it): SFT on a few examples teaches the answer
# format but not the skill; GRPO on all the prompts, rewarded by the verifier, teaches the skill. Single-digit
# numbers, so that each is one token in the question and in the answer.
TASK = {"n_train": 2000, "low": 1, "high": 9, "worked": False, "n_sft": 32}
# A tiny model pretrained for seconds is fine-tuned like a model in pretraining (the fine-tuning defaults, lr
# 2e-5 / 1e-6 without decay, are for real pretrained models): every optimiser setting is given here.
TINY_OPTIM = ["--weight-decay", "0.1", "--beta2", "0.95"]
SFT = ["--template", "plain", "--lr", "5e-3", "--warmup-frac", "0.1", "--batch-size", "8", *TINY_OPTIM]
GRPO = ["--lr", "1e-3", "--warmup-frac", "0.05", "--num-generations", "8", "--prompts-per-step", "16",
        "--max-new-tokens", "24", "--samples-every", "10", *TINY_OPTIM]  # fmt: skip
EVAL_SAMPLES = (
    8  # pass@1 is estimated from 8 samples per question at the eval's temperature (DeepSeek-R1's way)
)


def post_train(
    out: Path, pretrained: Path, *, sft_steps: int, grpo_steps: int, eval_items: int = 100
) -> dict[str, float]:
    """SFT then GRPO on the "last number" task (training.data.synthetic), `mathforge eval` before and after each;
    returns held-out pass@1 of the pretrained, SFT and GRPO models."""
    from training.data.synthetic import write_last_number_task

    task = write_last_number_task(out / "task", n_test=eval_items, **TASK)
    common = ["--device", "cpu", "--log-every", "10"]
    evaluate = ["--benchmark", str(task["test"]), "--max-new-tokens", "24", "--device", "cpu",
                "--samples", str(EVAL_SAMPLES)]  # fmt: skip
    _step("5/8 eval the pretrained model", ["eval", "--model", str(pretrained), "--template", "plain",
                                            "--out", str(out / "eval_pretrained"), *evaluate])  # fmt: skip
    sft = ["train", "sft", "--data", str(task["sft"]), "--init", str(pretrained), "--out", str(out / "sft"),
           "--max-steps", str(sft_steps), *SFT, *common]  # fmt: skip
    _step(f"6/8 SFT on {TASK['n_sft']} examples: learn the answer format", sft)
    _step(
        "7/8 eval after SFT", ["eval", "--model", str(out / "sft"), "--out", str(out / "eval_sft"), *evaluate]
    )
    grpo = ["train", "grpo", "--prompts", str(task["train"]), "--init", str(out / "sft"), "--out",
            str(out / "grpo"), "--max-steps", str(grpo_steps), *GRPO, *common]  # fmt: skip
    _step(f"8/8 GRPO on {TASK['n_train']} prompts: reinforce verified answers", grpo)
    _step(
        "eval after GRPO", ["eval", "--model", str(out / "grpo"), "--out", str(out / "eval_grpo"), *evaluate]
    )
    return {name: _accuracy(out / f"eval_{name}") for name in ("pretrained", "sft", "grpo")}


def run_demo(
    out: Path,
    *,
    files: int,
    records: int,
    train_steps: int,
    sft_steps: int,
    grpo_steps: int,
    eval_items: int = 100,
) -> None:
    if out.exists():
        shutil.rmtree(out)
    crawl, corpus, run = out / "crawl", out / "corpus", out / "run"
    model = out / "models" / "math_classifier.bin"
    paths = str(crawl / "warc.paths")
    sample = ["sample-crawl", "--out", str(crawl), "--files", str(files), "--records", str(records)]
    _step("1/8 generate the sample crawl", sample)
    # DeepSeekMath's settings, except more epochs (its 3 were for ~1M seed pages; the demo bootstraps a few
    # dozen) and fewer hash buckets (a 20 MB model instead of 200 MB).
    train = [
        "classifier",
        "train",
        "--input",
        paths,
        "--output",
        str(model),
        "--epoch",
        "15",
        "--bucket",
        "20000",
    ]
    _step("2/8 train the math classifier (Spark)", train)
    build = ["corpus", "build", "--input", paths, "--output", str(corpus), "--math-model", str(model)]
    _step("3/8 build the math corpus with it (Spark)", build)
    print(report_against_labels(corpus, crawl / "sample_manifest.json"))
    pretrain = [
        "train",
        "pretrain",
        "--data",
        str(corpus),
        "--out",
        str(run),
        "--preset",
        "tiny",
        "--max-steps",
        str(train_steps),
    ]
    _step("4/8 pretrain the tiny model with MTP", pretrain)
    accuracy = post_train(out, run, sft_steps=sft_steps, grpo_steps=grpo_steps, eval_items=eval_items)
    print("\nheld-out pass@1 on the last-number task (mathforge eval, verified answers):")
    for name, value in accuracy.items():
        print(f"  {name:<11} {value:.2f}")
    print("\nDemo finished. Look at:")
    for path in (
        corpus / "STATS.md",
        corpus / "manifest.json",
        corpus / "data",
        model.with_suffix(".json"),
        run / "metrics.jsonl",
        run / "loss_curve.png",
        out / "sft" / "loss_curve.png",
        out / "grpo" / "reward_curve.png",
        out / "grpo" / "samples.jsonl",
        out / "eval_grpo" / "test.jsonl",
    ):
        print(f"  {path}{'' if path.exists() else '  (missing!)'}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mathforge.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out", default="demo_out", help="output directory, replaced if present (default: demo_out)"
    )
    parser.add_argument("--files", type=int, default=4, help="WARC files in the sample crawl (default: 4)")
    parser.add_argument("--records", type=int, default=60, help="captures per WARC file (default: 60)")
    parser.add_argument("--train-steps", type=int, default=60, help="pretraining steps (default: 60)")
    parser.add_argument("--sft-steps", type=int, default=75, help="SFT steps (default: 75)")
    parser.add_argument("--grpo-steps", type=int, default=150, help="GRPO steps (default: 150)")
    parser.add_argument(
        "--eval-items", type=int, default=100, help="held-out questions evaluated (default: 100)"
    )
    args = parser.parse_args(argv)
    run_demo(
        Path(args.out),
        files=args.files,
        records=args.records,
        train_steps=args.train_steps,
        sft_steps=args.sft_steps,
        grpo_steps=args.grpo_steps,
        eval_items=args.eval_items,
    )


if __name__ == "__main__":
    sys.exit(main())
