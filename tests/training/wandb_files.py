"""Read what W&B wrote offline (`WANDB_MODE=offline`): the run records of each `run-<id>.wandb` file.

The file is a LevelDB-style log (a 7-byte header, 32 KiB blocks of records, each with a 7-byte header: CRC,
length, kind 1 full / 2 first / 3 middle / 4 last) of `wandb_internal_pb2.Record` messages. Reading it back
lets a test check what a tracker really received, with no W&B server.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

BLOCK = 32 * 1024
HEADER = 7  # b":W&B", a 2-byte magic and a version byte


def _payloads(path: Path) -> Iterator[bytes]:
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    pos, pending = HEADER, b""
    while pos + 7 <= len(data):
        if BLOCK - pos % BLOCK < 7:  # a block's tail too short for a record header is padding
            pos += BLOCK - pos % BLOCK
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 0 and length == 0:
            break
        if kind == 1:
            yield chunk
        elif kind == 2:
            pending = chunk
        elif kind == 3:
            pending += chunk
        elif kind == 4:
            yield pending + chunk


def read_offline_runs(run_dir: Path) -> list[dict[str, Any]]:
    """Every offline W&B run file under run_dir/wandb, oldest first: its run id, config and history rows."""
    from wandb.proto import wandb_internal_pb2 as pb

    runs = []
    for path in sorted((run_dir / "wandb").glob("offline-run-*/run-*.wandb")):
        run: dict[str, Any] = {"id": None, "config": {}, "history": []}
        for payload in _payloads(path):
            record = pb.Record()
            record.ParseFromString(payload)
            kind = record.WhichOneof("record_type")
            if kind == "run":
                run["id"] = record.run.run_id
                run["config"] = {item.key: json.loads(item.value_json) for item in record.run.config.update}
            elif kind == "history":
                items = {
                    item.key or "/".join(item.nested_key): item.value_json for item in record.history.item
                }
                run["history"].append({k: json.loads(v) for k, v in items.items() if not k.startswith("_")})
                run["history"][-1]["step"] = json.loads(items["_step"])
        runs.append(run)
    return runs
