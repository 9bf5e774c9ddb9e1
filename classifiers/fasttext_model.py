"""A fastText model that loads on first use and pickles as its path.

Spark ships classifier objects to executors by pickling them; the model itself (tens to hundreds of MB) must
not travel that way, and each executor process should load it once, from its own disk.
"""

from __future__ import annotations

import os
import threading
from typing import Any


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
