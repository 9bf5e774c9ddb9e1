"""One way to name a model: every command that takes `--model` or `--init` accepts any of

- a run directory (its latest checkpoint, the run's tokenizer and prompt template),
- a checkpoint directory inside a run (`RUN/checkpoints/step_N`; safetensors, or the shards of a DCP one),
- a mathforge model directory (`model.json` + `model.safetensors`, from `mathforge model import`),
- a Hugging Face Llama/Qwen2 directory (`config.json` + safetensors + `tokenizer.json`).

and gets back the model, its tokenizer and its prompt template, so that no command has its own loading rules.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer

from training.config import model_config_from_dict
from training.models.checkpoint import DCP, latest_checkpoint, load_checkpoint, load_dcp_model
from training.models.prompts import PromptTemplate, chat_template_of, read_tokenizer_config, resolve_template
from training.models.tokenizer import load_tokenizer, special_ids
from training.models.transformer import Transformer

CHECKPOINT_DIR = "checkpoints"
TOKENIZER_FILE = "tokenizer.json"


@dataclass
class LoadedModel:
    model: Transformer  # eval mode, on the requested device
    tokenizer: Tokenizer
    tokenizer_path: Path
    template: PromptTemplate
    kind: str  # run, checkpoint, model_dir or hf
    path: Path


def _find_run_dir(checkpoint: Path) -> Path:
    run_dir = checkpoint.parent.parent if checkpoint.parent.name == CHECKPOINT_DIR else checkpoint.parent
    if not (run_dir / TOKENIZER_FILE).is_file():
        raise FileNotFoundError(f"{checkpoint}: no {TOKENIZER_FILE} in its run directory {run_dir}")
    return run_dir


def template_for(
    tokenizer: Tokenizer, stored: Any, tokenizer_config: dict[str, Any] | None
) -> PromptTemplate:
    """The stored template (a run's dict, or a model directory's chat template string), else the tokenizer's
    own chat template, else mathforge's r1 default; special token strings from the tokenizer."""
    if isinstance(stored, dict):
        return PromptTemplate.from_dict(stored)
    config = dict(tokenizer_config or {})
    if isinstance(stored, str) and stored:
        config["chat_template"] = stored
    ids = special_ids(tokenizer)
    eos = None if config.get("eos_token") else tokenizer.id_to_token(ids.eos)
    bos = None if config.get("bos_token") or chat_template_of(config) else tokenizer.id_to_token(ids.bos)
    return resolve_template("auto", config, eos_token=eos, bos_token=bos)


def _state_from_checkpoint(checkpoint: Path) -> tuple[Transformer, dict[str, Any]]:
    ckpt = load_checkpoint(checkpoint)
    cfg = model_config_from_dict(ckpt.meta["model_config"])
    model = Transformer(cfg)
    if ckpt.meta.get("storage") == DCP:  # the shards of every rank, gathered into one model here
        load_dcp_model(checkpoint, model, ckpt.meta)
    else:
        model.load_state_dict(ckpt.model)
    return model, ckpt.meta


@dataclass
class ModelText:
    """A model's text side without its weights: what a command that samples through a server needs."""

    tokenizer: Tokenizer
    tokenizer_path: Path
    template: PromptTemplate
    kind: str
    path: Path


@dataclass
class _Located:
    kind: str
    tokenizer_path: Path
    tokenizer_config: dict[str, Any] | None
    stored: Any  # the stored prompt template (a dict, a chat template string) or None
    weights: Callable[[], Transformer]


def _locate(path: Path) -> _Located:
    """Where the model named by `path` keeps its tokenizer and template; its weights are read on demand."""
    from training.models import hf

    if not path.exists():
        raise FileNotFoundError(f"model not found: {path}")
    if (path / CHECKPOINT_DIR).is_dir() or (path / "meta.json").is_file():
        checkpoint = latest_checkpoint(path / CHECKPOINT_DIR) if (path / CHECKPOINT_DIR).is_dir() else path
        if checkpoint is None:
            raise FileNotFoundError(f"{path}: a run directory without a complete checkpoint")
        run_dir = _find_run_dir(checkpoint)
        meta = json.loads((checkpoint / "meta.json").read_text())
        return _Located(
            "run" if checkpoint != path else "checkpoint", run_dir / TOKENIZER_FILE,
            read_tokenizer_config(run_dir), meta.get("template"), lambda: _state_from_checkpoint(checkpoint)[0],
        )  # fmt: skip
    if (path / "model.json").is_file():
        info = json.loads((path / "model.json").read_text())
        return _Located(
            "model_dir", path / TOKENIZER_FILE, read_tokenizer_config(path), info.get("template"),
            lambda: hf.load_model_dir(path)[0],
        )  # fmt: skip
    if (path / "config.json").is_file():
        config = json.loads((path / "config.json").read_text())
        if "model_type" not in config:
            raise ValueError(f"{path}/config.json is neither a Hugging Face model config nor a mathforge run")
        return _Located(
            "hf", path / TOKENIZER_FILE, read_tokenizer_config(path), None, lambda: hf.load_hf(path)
        )
    raise ValueError(
        f"{path} is not a model: expected a run directory (checkpoints/), a checkpoint (meta.json), "
        "a mathforge model directory (model.json) or a Hugging Face directory (config.json)"
    )


def _template(located: _Located, tokenizer: Tokenizer, template: str | None) -> PromptTemplate:
    if template is not None and template != "stored":
        resolved = template_for(tokenizer, None, located.tokenizer_config)
        if template != "auto":
            resolved = resolve_template(
                template, located.tokenizer_config, eos_token=resolved.eos_token, bos_token=resolved.bos_token
            )
        return resolved
    return template_for(tokenizer, located.stored, located.tokenizer_config)


def load_model_text(path: str | Path, template: str | None = None) -> ModelText:
    """The tokenizer and prompt template of the model named by `path`, without reading its weights (a Hugging
    Face directory with config.json, tokenizer.json and tokenizer_config.json is enough)."""
    located = _locate(Path(path))
    tokenizer = load_tokenizer(located.tokenizer_path)
    return ModelText(
        tokenizer, located.tokenizer_path, _template(located, tokenizer, template), located.kind, Path(path)
    )


def load_model(
    path: str | Path,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    fused_kernels: bool | None = None,
    template: str | None = None,
) -> LoadedModel:
    """The model named by `path` (see the module docstring). `template` overrides the stored prompt template
    ("r1", "plain", "auto" or a .jinja path); `fused_kernels` overrides the stored model setting."""
    path = Path(path)
    located = _locate(path)
    model = located.weights()
    tokenizer = load_tokenizer(located.tokenizer_path)
    if fused_kernels is not None and fused_kernels != model.cfg.fused_kernels:
        model.cfg = replace(model.cfg, fused_kernels=fused_kernels)
        for module in model.modules():
            if hasattr(module, "fused"):
                module.fused = fused_kernels
    resolved = _template(located, tokenizer, template)
    model = model.to(device=device, dtype=dtype) if dtype is not None else model.to(device)
    return LoadedModel(model.eval(), tokenizer, located.tokenizer_path, resolved, located.kind, path)


def convert_to_model_dir(source: str | Path, out: str | Path) -> Path:
    """Any model `load_model` names (above all a sharded DCP checkpoint, which only a torchrun job could read
    before) → a mathforge model directory with its tokenizer and prompt template, gathered in this process."""
    from training.models.hf import save_model_dir

    loaded = load_model(source)
    return save_model_dir(loaded.model, loaded.tokenizer_path, out, {"template": loaded.template.to_dict()})
