"""`make demo`: the whole path on one machine, offline, on a crawl the project generates itself.

    sample crawl (WARC) → corpus build (Spark local[*]) → Parquet corpus + stats → tiny MTP pretraining run

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


def run_demo(out: Path, *, files: int, records: int, train_steps: int) -> None:
    if out.exists():
        shutil.rmtree(out)
    crawl, corpus, run = out / "crawl", out / "corpus", out / "run"
    _step(
        "1/3 generate the sample crawl",
        ["sample-crawl", "--out", str(crawl), "--files", str(files), "--records", str(records)],
    )
    _step(
        "2/3 build the math corpus (Spark local[*])",
        ["corpus", "build", "--input", str(crawl / "warc.paths"), "--output", str(corpus)],
    )
    _step(
        "3/3 pretrain the tiny model with MTP",
        [
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
        ],
    )
    print("\nDemo finished. Look at:")
    for path in (
        corpus / "STATS.md",
        corpus / "manifest.json",
        corpus / "data",
        run / "metrics.jsonl",
        run / "loss_curve.png",
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
    args = parser.parse_args(argv)
    run_demo(Path(args.out), files=args.files, records=args.records, train_steps=args.train_steps)


if __name__ == "__main__":
    sys.exit(main())
