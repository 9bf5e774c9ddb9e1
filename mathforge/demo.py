"""`make demo`: the whole path on one machine, offline, on a crawl the project generates itself.

    sample crawl (WARC) → math classifier (fastText, seeds bootstrapped from math markup; Spark)
      → corpus build with that classifier (Spark local[*]) → Parquet corpus + stats → tiny MTP pretraining run

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


def run_demo(out: Path, *, files: int, records: int, train_steps: int) -> None:
    if out.exists():
        shutil.rmtree(out)
    crawl, corpus, run = out / "crawl", out / "corpus", out / "run"
    model = out / "models" / "math_classifier.bin"
    paths = str(crawl / "warc.paths")
    sample = ["sample-crawl", "--out", str(crawl), "--files", str(files), "--records", str(records)]
    _step("1/4 generate the sample crawl", sample)
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
    _step("2/4 train the math classifier (Spark)", train)
    build = ["corpus", "build", "--input", paths, "--output", str(corpus), "--math-model", str(model)]
    _step("3/4 build the math corpus with it (Spark)", build)
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
    _step("4/4 pretrain the tiny model with MTP", pretrain)
    print("\nDemo finished. Look at:")
    for path in (
        corpus / "STATS.md",
        corpus / "manifest.json",
        corpus / "data",
        model.with_suffix(".json"),
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
