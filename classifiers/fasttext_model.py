"""A fastText model that loads on first use and pickles as its path.

Spark ships classifier objects to executors by pickling them; the model itself (tens to hundreds of MB) must
not travel that way, and each executor process should load it once, from its own disk.
"""

from __future__ import annotations

import json
import os
import struct
import threading
from pathlib import Path
from typing import Any

FASTTEXT_MAGIC = 793712314  # first int32 of every fastText .bin/.ftz file, followed by the format version


def check_fasttext_file(path: str | os.PathLike[str], what: str = "fastText model") -> None:
    """Raise a clear error unless `path` starts like a fastText model file.

    Reading 8 bytes lets a driver refuse a wrong or damaged file (an HTML error page, a Git LFS pointer)
    before it creates any output or starts a Spark task, instead of every executor failing on it later.
    """
    with open(path, "rb") as fh:
        header = fh.read(8)
    if len(header) < 8 or struct.unpack("<i", header[:4])[0] != FASTTEXT_MAGIC:
        raise ValueError(f"{what} {path} is not a fastText model file (bad header)")


class LazyFastText:
    def __init__(self, path: str | os.PathLike[str]):
        self.path = str(path)
        self._model: Any = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict:
        return {"path": self.path}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"])

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def get(self) -> Any:
        """The `fasttext` model, loaded once per process (thread-safe)."""
        if self._model is None:
            with self._lock:
                if self._model is None:
                    import fasttext

                    self._model = fasttext.load_model(self.path)
        return self._model


def sidecar_path_for(model_path: str | os.PathLike[str]) -> Path:
    """`model.bin` → `model.json`."""
    return Path(model_path).with_suffix(".json")


def read_sidecar(
    model_path: str | os.PathLike[str], fmt: str, version: int, what: str, train_hint: str
) -> dict:
    """The JSON sidecar of a trained model, checked to be of format `fmt` v`version` (`what` names the model
    in errors; `train_hint` says how to make one)."""
    sidecar = sidecar_path_for(model_path)
    if not Path(model_path).is_file():
        raise FileNotFoundError(f"{what} not found: {model_path}")
    if not sidecar.is_file():
        raise FileNotFoundError(f"{what} sidecar not found: {sidecar} ({train_hint})")
    metadata = json.loads(sidecar.read_text(encoding="utf-8"))
    if metadata.get("format") != fmt or metadata.get("format_version") != version:
        raise ValueError(f"{sidecar}: not a {fmt} v{version} sidecar")
    return metadata
