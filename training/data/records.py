"""Row files that post-training reads: JSONL (optionally gzipped) or Parquet, a file or a directory of them.

SFT data, distillation traces, prompt sets and benchmark files all come as rows of named fields; this module
reads them into plain dicts once, so that every reader agrees on what a path may be. Torch-free.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".parquet")


def row_files(path: str | Path) -> list[Path]:
    """The file itself, or every JSONL/Parquet file under a directory (sorted; `_*` and `.*` skipped)."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"no such file or directory: {path}")
    files = sorted(
        p
        for p in path.rglob("*")
        if p.is_file()
        and p.name.endswith(_SUFFIXES)
        and not any(part.startswith(("_", ".")) for part in p.relative_to(path).parts)
    )
    if not files:
        raise FileNotFoundError(f"no {', '.join(_SUFFIXES)} files under {path}")
    return files


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """All rows of a JSONL/Parquet file or directory, in file order. A malformed JSON line is an error that
    names the file and line (silently dropping training rows would skew the data)."""
    rows: list[dict[str, Any]] = []
    for file in row_files(path):
        if file.name.endswith(".parquet"):
            rows.extend(pq.read_table(file).to_pylist())
            continue
        opener = gzip.open if file.name.endswith(".gz") else open
        with opener(file, "rt", encoding="utf-8") as fh:
            for number, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as err:
                    raise ValueError(f"{file}: line {number} is not valid JSON: {err}") from err
                if not isinstance(row, dict):
                    raise ValueError(f"{file}: line {number} is a JSON {type(row).__name__}, not an object")
                rows.append(row)
    return rows


def dataset_name(path: str | Path) -> str:
    """A file's name without its data suffixes: `gsm8k_test.jsonl.gz` → `gsm8k_test`."""
    name = Path(path).name
    for suffix in (".gz", ".jsonl", ".json", ".parquet"):
        name = name.removesuffix(suffix)
    return name
