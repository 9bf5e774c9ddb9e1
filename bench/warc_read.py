"""The WARC read stage, old and new in one process: records per second of `read_html_responses` on one core.

Reads each file with the reader of git revision `--old` (default a269445, before issue 26's fast path), with
today's reader (the fast path: FastWARC inflating, records framed strictly, see `crawl.warc`) and with
today's robust reader alone (`fast=False`, what a damaged file is handed to), alternating, `--repeat` times,
and reports the best process CPU time of each. Before timing, it checks that the three give the same pages
(every HtmlResponse field) and the same counters.

    .venv/bin/python bench/warc_read.py [--old a269445] [--repeat 5] /tmp/bc/bench-0000*.warc.gz

Measured (2 shared cores, the 2 x 1,000-record benchmark crawl of ../shared/tools/make_bench_crawl.py in
/tmp/bc, best of 5): old 1.471 s (1,360 records/s), new 0.736 s (2,718 records/s, 2.00x), robust alone
1.466 s (1.00x). FastWARC's inflater alone takes ~0.26 s of the new path's ~0.37 s per file.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from crawl.warc import read_html_responses  # noqa: E402


def _old_reader(revision: str, tmp: str):
    source = subprocess.run(
        ["git", "show", f"{revision}:crawl/warc.py"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    path = Path(tmp) / "old_warc.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("old_warc", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules["old_warc"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module.read_html_responses


def _pages(reader, path: str, **kwargs) -> tuple[list[tuple], Counter]:
    counters: Counter = Counter()
    return [dataclasses.astuple(r) for r in reader(path, counters, **kwargs)], counters


def _seconds(reader, paths: list[str], **kwargs) -> float:
    started = time.process_time()
    for path in paths:
        for _ in reader(path, Counter(), **kwargs):
            pass
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("paths", nargs="+")
    parser.add_argument("--old", default="a269445", help="git revision of the reader to compare with")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        readers = {
            "old": (_old_reader(args.old, tmp), {}),
            "new": (read_html_responses, {}),
            "robust": (read_html_responses, {"fast": False}),
        }
        records = 0
        for path in args.paths:
            seen = {name: _pages(reader, path, **kwargs) for name, (reader, kwargs) in readers.items()}
            assert seen["new"] == seen["old"] == seen["robust"], f"readers differ on {path}"
            records += seen["new"][1]["records"]
        best = dict.fromkeys(readers, float("inf"))
        for _ in range(args.repeat):
            for name, (reader, kwargs) in readers.items():
                best[name] = min(best[name], _seconds(reader, args.paths, **kwargs))
    print(
        f"{records} records in {len(args.paths)} files, same pages and counters; best of {args.repeat}, CPU s:"
    )
    for name, seconds in best.items():
        print(
            f"  {name:<7}{seconds:8.3f} s {records / seconds:9.0f} records/s {best['old'] / seconds:6.2f}x old"
        )


if __name__ == "__main__":
    main()
