"""WARC-level damage: what a gzip bomb, a long header line or a damaged member costs one file, as it grows.

Each kind is generated at growing sizes and read with `read_html_responses` on one core:

- bomb: a member that inflates to N MiB of zeros after a response header that claims them (issue 21: the
  gunzip kept its output in one growing buffer and sliced it per read, quadratic; there was no cap);
- trailing_zeros: a good record whose member goes on with N MiB of zeros (warcio reads them as one line);
- long_line: an N MiB WARC header line with no newline in a plain file (warcio's line reader is quadratic);
- damaged: N corrupt members among 2N good ones (issue 21: each reopened the file from byte 0).

For each size: the file's compressed MB, the seconds, and the ratio to the smallest size's seconds. With the
cap (`--cap`, MiB; the reader's default is 64) the bomb kinds stay flat past the cap; a linear reader doubles
at most when N doubles. With --old REV, the same files are read by crawl/warc.py as of git revision REV too.

    .venv/bin/python bench/warc_damage.py [--scales 16,32,64] [--cap 64] [--old 94b75b4] [--timeout 120]

Measured (2 shared cores, --scales 8,16,32 --old 94b75b4), new / old seconds at 32 MiB and the ratio to 8 MiB:
bomb 0.14 (2.3x) / 3.58 (12.3x); trailing_zeros 0.09 (1.7x) / 10.60 (20.1x); long_line 0.05 / 23.49 (87.5x).
With the default 64 MiB cap, bombs of 64 and 256 MiB both read in about 0.2 s.
"""

from __future__ import annotations

import argparse
import importlib.util
import multiprocessing
import subprocess
import sys
import tempfile
import time
import zlib
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from crawl.warc import read_html_responses  # noqa: E402
from tests.corpus.warcs import gzip_member, html_warc_bytes, warc_response_head  # noqa: E402

PAGE = [("https://bench.example/p", "<html><body><p>a good page</p></body></html>")]


def _corrupt(member: bytes) -> bytes:
    damaged = bytearray(member)
    for i in range(len(member) // 2 - 16, len(member) // 2 + 16):
        damaged[i] ^= 0xFF
    return bytes(damaged)


def make(kind: str, n: int) -> tuple[bytes, str]:
    good = html_warc_bytes(PAGE * 4, gzip=True)
    mib = n << 20
    if kind == "bomb":
        head = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n"
        bomb = gzip_member([warc_response_head("https://b.example/", len(head) + mib, "b"), head], zeros=mib)
        return good + bomb + good, ".warc.gz"
    if kind == "trailing_zeros":
        return good + gzip_member([html_warc_bytes(PAGE, gzip=False)], zeros=mib) + good, ".warc.gz"
    if kind == "long_line":
        plain = html_warc_bytes(PAGE, gzip=False)
        return plain + b"WARC-X: " + b"y" * mib + b"\r\n\r\n" + plain, ".warc"
    if kind == "damaged":
        member = zlib.compress(
            html_warc_bytes([("https://d.example/", "<p>" + "x" * 2000 + "</p>")], gzip=False), wbits=31
        )
        return b"".join(member + _corrupt(member) + member for _ in range(n)), ".warc.gz"
    raise ValueError(kind)


def _read(module_path: str | None, path: str, cap: int | None, queue) -> None:
    try:
        if module_path:
            spec = importlib.util.spec_from_file_location("old_warc", module_path)
            module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
            sys.modules["old_warc"] = module  # dataclasses look their module up
            spec.loader.exec_module(module)  # type: ignore[union-attr]
            reader = module.read_html_responses
        else:
            reader = read_html_responses
        kwargs = {"max_inflated_bytes": cap} if cap is not None and not module_path else {}
        started = time.perf_counter()
        pages = sum(1 for _ in reader(path, Counter(), **kwargs))
        queue.put((time.perf_counter() - started, pages))
    except BaseException as exc:
        queue.put((None, repr(exc)))
        raise


def timed(module_path: str | None, path: str, cap: int | None, timeout: float) -> tuple[float | None, object]:
    """Seconds and pages of one read in a fresh process (None after `timeout` or on an error)."""
    queue: multiprocessing.Queue = multiprocessing.Queue()
    proc = multiprocessing.Process(target=_read, args=(module_path, path, cap, queue))
    proc.start()
    try:
        result = queue.get(timeout=timeout)
    except Exception:
        result = (None, "timeout")
    if proc.is_alive():
        proc.kill()
    proc.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scales", default="16,32,64")
    parser.add_argument("--kinds", default="bomb,trailing_zeros,long_line,damaged")
    parser.add_argument("--cap", type=int, default=64, help="MiB a member may inflate per record")
    parser.add_argument("--old", default=None, help="also read with crawl/warc.py of this git revision")
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()
    scales = [int(s) for s in args.scales.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        old = None
        if args.old:
            old = str(Path(tmp) / "old_warc.py")
            source = subprocess.run(
                ["git", "show", f"{args.old}:crawl/warc.py"],
                cwd=ROOT,
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            Path(old).write_text(source)
        readers = [("new", None)] + ([("old", old)] if old else [])
        print(
            f"{'kind':<15}{'N':>5}{'MB':>8}"
            + "".join(f"{name + ' s':>10}{'ratio':>7}" for name, _ in readers)
        )
        for kind in args.kinds.split(","):
            first: dict[str, float] = {}
            for n in scales:
                data, suffix = make(kind, n)
                path = str(Path(tmp) / f"{kind}-{n}{suffix}")
                Path(path).write_bytes(data)
                row = f"{kind:<15}{n:>5}{len(data) / 1e6:>8.2f}"
                for name, module in readers:
                    seconds, pages = timed(module, path, args.cap << 20, args.timeout)
                    if seconds is None:
                        shown = f">{int(args.timeout)}" if pages == "timeout" else "error"
                        row += f"{shown:>10}{'':>7}"
                        if pages != "timeout":
                            print(f"  {name}: {pages}", file=sys.stderr)
                        continue
                    first.setdefault(name, seconds)
                    row += f"{seconds:>10.2f}{seconds / first[name]:>7.1f}"
                print(row, flush=True)


if __name__ == "__main__":
    main()
