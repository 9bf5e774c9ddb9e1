"""FineMath's quality classifier architecture: a frozen Hugging Face encoder, mean-pooled, and a linear
regression head trained on the 0-5 annotations.

The user supplies the encoder directory (e.g. a local copy of multilingual-e5-small); nothing is downloaded.
The encoder stays frozen as in FineMath, so each text is embedded once and only the head (hidden + 1 numbers)
is trained, with MSE on the annotated scores. The head goes to `<out>` (a `torch.save` state dict read back
with `weights_only`), its sidecar `<out>.json` names the encoder directory, pooling and token limit.

torch and transformers are imported on first use: the fastText path and the rest of `classifiers` never need
them, and a missing transformers is a clear error naming the optional extra (`pip install mathforge[encoder]`).
Executors that score with this model need both installed and the encoder directory at the same path.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from classifiers.quality import FORMAT, FORMAT_VERSION, model_version, read_quality_metadata, write_sidecar
from classifiers.quality_metrics import N_LABELS


def _import_encoder_stack() -> tuple[Any, Any]:
    try:
        import torch
        import transformers
    except ImportError as err:
        raise ImportError(
            f"the encoder quality model needs torch and transformers ({err}); install them with "
            "`pip install 'mathforge[encoder]'` or use the fastText default (no --encoder)"
        ) from err
    return torch, transformers


@dataclass(frozen=True)
class EncoderOptions:
    """How texts are embedded and the head trained."""

    max_tokens: int = 512
    batch_size: int = 16
    epochs: int = 200
    lr: float = 0.01
    seed: int = 0
    max_chars: int = 20_000


class FrozenEncoder:
    """A Hugging Face encoder (AutoModel + AutoTokenizer from a directory), mean-pooled, gradients off."""

    def __init__(self, directory: str | os.PathLike[str], max_tokens: int = 512, batch_size: int = 16):
        torch, transformers = _import_encoder_stack()
        if not Path(directory, "config.json").is_file():
            raise FileNotFoundError(f"{directory} is not a Hugging Face model directory (no config.json)")
        self.directory, self.max_tokens, self.batch_size = str(directory), max_tokens, batch_size
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(self.directory)
        self.model = transformers.AutoModel.from_pretrained(self.directory).eval()
        self.model.requires_grad_(False)
        self.hidden = int(self.model.config.hidden_size)
        self._torch = torch

    def embed(self, texts: Sequence[str]) -> Any:
        """[len(texts), hidden] float32 mean-pooled last hidden states (padding masked out)."""
        torch = self._torch
        chunks = []
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                batch = self.tokenizer(
                    [t or "" for t in texts[start : start + self.batch_size]],
                    truncation=True,
                    max_length=self.max_tokens,
                    padding=True,
                    return_tensors="pt",
                )
                states = self.model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
                chunks.append((states * mask).sum(1) / mask.sum(1).clamp(min=1.0))
        return torch.cat(chunks).float() if chunks else torch.zeros(0, self.hidden)


def train_encoder_quality(
    texts: Sequence[str],
    scores: Sequence[float],
    encoder_dir: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    options: EncoderOptions | None = None,
    extra: dict | None = None,
) -> dict:
    """Embed the texts once with the frozen encoder, fit the linear head (MSE, Adam, full batch), write the
    head and its sidecar; returns the sidecar's metadata."""
    options = options or EncoderOptions()
    encoder = FrozenEncoder(encoder_dir, options.max_tokens, options.batch_size)
    torch = encoder._torch
    torch.manual_seed(options.seed)
    x = encoder.embed([t[: options.max_chars] for t in texts])
    y = torch.tensor([float(s) for s in scores], dtype=torch.float32)
    mean, std = x.mean(0), x.std(0).clamp(min=1e-6)  # standardised features: one lr fits every encoder
    head = torch.nn.Linear(encoder.hidden, 1)
    optimiser = torch.optim.Adam(head.parameters(), lr=options.lr)
    losses = []
    for _ in range(options.epochs):
        optimiser.zero_grad()
        loss = torch.nn.functional.mse_loss(head((x - mean) / std).squeeze(-1), y)
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    torch.save({"weight": head.weight.detach(), "bias": head.bias.detach(), "mean": mean, "std": std}, tmp)
    version, digest, created = model_version(tmp)
    os.replace(tmp, out)
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": "encoder",
        "version": version,
        "created": created,
        "sha256": digest,
        "encoder": str(Path(encoder_dir).resolve()),
        "pooling": "mean",
        "max_tokens": options.max_tokens,
        "max_chars": options.max_chars,
        "params": {"epochs": options.epochs, "lr": options.lr, "batch_size": options.batch_size},
        "seed": options.seed,
        "train_mse": {"first": losses[0], "last": losses[-1]} if losses else None,
        "counts": {"train": len(texts)},
        **(extra or {}),
    }
    write_sidecar(out, metadata)
    return metadata


class EncoderQualityScorer:
    """`QualityScorer` over a trained head and its frozen encoder; loads on first use, pickles as its path."""

    name = "encoder-quality"

    def __init__(self, model_path: str | os.PathLike[str]):
        self.model_path = str(model_path)
        self.metadata = read_quality_metadata(self.model_path)
        if self.metadata.get("kind") != "encoder":
            raise ValueError(f"{model_path} is a {self.metadata.get('kind')} quality model, not an encoder")
        self.version: str = self.metadata["version"]
        self.max_chars = int(self.metadata.get("max_chars", 20_000))
        self._loaded: tuple[FrozenEncoder, dict] | None = None

    def __getstate__(self) -> dict:
        return {"model_path": self.model_path}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["model_path"])

    def _get(self) -> tuple[FrozenEncoder, dict]:
        if self._loaded is None:
            encoder = FrozenEncoder(self.metadata["encoder"], int(self.metadata["max_tokens"]))
            head = encoder._torch.load(self.model_path, weights_only=True)
            self._loaded = (encoder, head)
        return self._loaded

    def score(self, text: str) -> float:
        return self.score_batch([text])[0]

    def score_batch(self, texts: Iterable[str]) -> list[float]:
        """Head outputs clipped to [0, 5], in order."""
        encoder, head = self._get()
        x = encoder.embed([(t or "")[: self.max_chars] for t in texts])
        values = ((x - head["mean"]) / head["std"]) @ head["weight"].T + head["bias"]
        return [min(max(float(v), 0.0), float(N_LABELS - 1)) for v in values.reshape(-1).tolist()]
