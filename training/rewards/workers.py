"""Starting checker processes (answer verification, user reward functions) that a parent can kill on a hard
timeout: one place for the multiprocessing details both pools need. Torch-free."""

from __future__ import annotations

import sys
import types
from multiprocessing.connection import Connection
from typing import Any


def start_worker(ctx: Any, target: Any, args: tuple[Any, ...], name: str) -> tuple[Any, Connection]:
    """A daemon process running target(child_conn, *args), and the parent's end of its pipe.

    multiprocessing re-imports the parent's __main__ in every spawned or forkserver child; for a trainer
    (`torchrun -m training.objectives.grpo`) that would import torch into each worker. __main__ is hidden for the
    start: workers need nothing from it (which is also why their functions may not live in __main__). The
    child's end is closed here, so that the worker's death reads as EOF in the parent.
    """
    parent_conn, child_conn = ctx.Pipe(duplex=True)
    process = ctx.Process(target=target, args=(child_conn, *args), name=name, daemon=True)
    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        process.start()
    finally:
        if main is not None:
            sys.modules["__main__"] = main
    child_conn.close()
    return process, parent_conn
