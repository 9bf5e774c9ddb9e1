"""Hugging Face checkpoints in and out: Llama and Qwen2 `config.json` + safetensors + `tokenizer.json`.

Post-training starts from public models and ends with checkpoints others load with `transformers`, so this
module converts both ways without importing `transformers`: it reads config.json and the safetensors files
itself (tensor by tensor, sharded or not) and maps names through one table (`_GLOBAL_NAMES`,
`_LAYER_NAMES`). Our model is the same Llama-style decoder as theirs: RMSNorm in fp32 times the weight,
RoPE on the two halves of each head dimension (their `rotate_half`), SwiGLU, GQA, and Qwen2's biases on the
query/key/value projections; anything a config asks for beyond that (RoPE scaling, sliding windows, other
activations, MLP biases) is refused with an error naming the field, never silently approximated.

An imported model lives in a mathforge model directory: `model.safetensors` (our names; with tied
embeddings only `embed.weight`), `model.json` (format, model_config, source, chat template) and the
tokenizer files. The vocabulary is never re-padded: embedding rows beyond the tokenizer survive both ways.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from training.config import ModelConfig, model_config_from_dict
from training.models.prompts import PromptTemplate, chat_template_of, read_tokenizer_config
from training.models.transformer import Transformer

log = logging.getLogger(__name__)

MODEL_FORMAT = "mathforge-model"
MODEL_FORMAT_VERSION = 1
SUPPORTED_MODEL_TYPES = ("llama", "qwen2")

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

# The one name table (mathforge → Hugging Face), used by import and export alike.
_GLOBAL_NAMES = {
    "embed.weight": "model.embed_tokens.weight",
    "norm.weight": "model.norm.weight",
    "head.weight": "lm_head.weight",
}
_LAYER_NAMES = {
    "attn_norm.weight": "input_layernorm.weight",
    "attn.wq.weight": "self_attn.q_proj.weight",
    "attn.wk.weight": "self_attn.k_proj.weight",
    "attn.wv.weight": "self_attn.v_proj.weight",
    "attn.wo.weight": "self_attn.o_proj.weight",
    "attn.wq.bias": "self_attn.q_proj.bias",
    "attn.wk.bias": "self_attn.k_proj.bias",
    "attn.wv.bias": "self_attn.v_proj.bias",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "ffn.w1.weight": "mlp.gate_proj.weight",
    "ffn.w3.weight": "mlp.up_proj.weight",
    "ffn.w2.weight": "mlp.down_proj.weight",
}
# Tensors some checkpoints carry that hold nothing we need (RoPE frequencies are recomputed).
_IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


def weight_names(cfg: ModelConfig) -> dict[str, str]:
    """Our parameter name → the Hugging Face tensor name, for exactly the tensors a checkpoint of `cfg` holds
    (no head with tied embeddings, q/k/v biases only with qkv_bias, never the MTP modules)."""
    names = {ours: theirs for ours, theirs in _GLOBAL_NAMES.items()}
    if cfg.tie_embeddings:
        del names["head.weight"]
    for i in range(cfg.n_layers):
        for ours, theirs in _LAYER_NAMES.items():
            if ours.endswith(".bias") and not cfg.qkv_bias:
                continue
            names[f"layers.{i}.{ours}"] = f"model.layers.{i}.{theirs}"
    return names


# -- config.json ---------------------------------------------------------------------------------------------


def _rope_theta(config: Mapping[str, Any]) -> float:
    """rope_theta from the top level, transformers-5 `rope_parameters` or a (default-type) `rope_scaling`."""
    theta = config.get("rope_theta")
    for key in ("rope_scaling", "rope_parameters"):
        params = config.get(key)
        if params is None:
            continue
        if not isinstance(params, Mapping) or any(isinstance(v, Mapping) for v in params.values()):
            raise ValueError(f"{key} {params!r}: only a single default RoPE is supported")
        rope_type = params.get("rope_type", params.get("type", "default"))
        if rope_type != "default":
            raise ValueError(
                f"{key}: rope_type {rope_type!r} is not supported (only default RoPE, no scaling)"
            )
        if params.get("partial_rotary_factor", 1.0) != 1.0:
            raise ValueError(
                f"{key}: partial_rotary_factor {params['partial_rotary_factor']} is not supported"
            )
        theta = params.get("rope_theta", theta)
    if config.get("partial_rotary_factor", 1.0) != 1.0:
        raise ValueError(f"partial_rotary_factor {config['partial_rotary_factor']} is not supported")
    return float(theta if theta is not None else 10000.0)


def hf_model_config(config: Mapping[str, Any]) -> ModelConfig:
    """Our ModelConfig for a Hugging Face config.json (model_type llama or qwen2); ValueError naming the field
    for anything the model cannot represent."""
    model_type = config.get("model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ValueError(
            f"model_type {model_type!r} is not supported (only {', '.join(SUPPORTED_MODEL_TYPES)})"
        )

    def need(key: str) -> Any:
        if config.get(key) is None:
            raise ValueError(f"config.json has no {key!r}")
        return config[key]

    dim, n_heads = int(need("hidden_size")), int(need("num_attention_heads"))
    n_kv_heads = int(config.get("num_key_value_heads") or n_heads)
    if dim % n_heads:
        raise ValueError(f"hidden_size {dim} is not divisible by num_attention_heads {n_heads}")
    head_dim = config.get("head_dim")
    if head_dim is not None and int(head_dim) != dim // n_heads:
        raise ValueError(
            f"head_dim {head_dim} differs from hidden_size / num_attention_heads = {dim // n_heads}; "
            "only head_dim = hidden_size / num_attention_heads is supported"
        )
    if config.get("hidden_act", "silu") != "silu":
        raise ValueError(f"hidden_act {config['hidden_act']!r} is not supported (only silu: SwiGLU)")
    if config.get("mlp_bias"):
        raise ValueError("mlp_bias true is not supported (the feed-forward layers have no biases)")
    if model_type == "qwen2":
        if config.get("use_sliding_window"):
            raise ValueError("use_sliding_window true is not supported (only full attention)")
        layer_types = config.get("layer_types") or []
        if any(kind != "full_attention" for kind in layer_types):
            raise ValueError(f"layer_types {sorted(set(layer_types))}: only full_attention is supported")
        qkv_bias = True
    else:
        if config.get("attention_bias"):
            raise ValueError(
                "attention_bias true is not supported for llama (it adds an o_proj bias, which this model lacks)"
            )
        qkv_bias = False
    return ModelConfig(
        vocab_size=int(need("vocab_size")),
        dim=dim,
        n_layers=int(need("num_hidden_layers")),
        n_heads=n_heads,
        n_kv_heads=n_kv_heads,
        ffn_dim=int(need("intermediate_size")),
        max_seq_len=int(config.get("max_position_embeddings") or 2048),
        rope_theta=_rope_theta(config),
        norm_eps=float(config.get("rms_norm_eps", 1e-6)),
        mtp_depth=0,
        qkv_bias=qkv_bias,
        tie_embeddings=bool(config.get("tie_word_embeddings", False)),
    )


def hf_config_dict(
    cfg: ModelConfig, dtype: torch.dtype, token_ids: Mapping[str, int | list[int] | None]
) -> dict[str, Any]:
    """config.json for `cfg`: LlamaForCausalLM, or Qwen2ForCausalLM when the q/k/v projections have biases."""
    dtype_name = {v: k for k, v in _DTYPES.items()}[dtype]
    qwen2 = cfg.qkv_bias
    config: dict[str, Any] = {
        "architectures": ["Qwen2ForCausalLM" if qwen2 else "LlamaForCausalLM"],
        "model_type": "qwen2" if qwen2 else "llama",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.dim,
        "intermediate_size": cfg.ffn_dim,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.n_kv_heads,
        "head_dim": cfg.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": cfg.max_seq_len,
        "rms_norm_eps": cfg.norm_eps,
        # rope_theta for transformers 4, rope_parameters for transformers 5
        "rope_theta": cfg.rope_theta,
        "rope_scaling": None,
        "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta},
        "tie_word_embeddings": cfg.tie_embeddings,
        "initializer_range": cfg.init_std,
        "attention_dropout": 0.0,
        "use_cache": True,
        "bos_token_id": token_ids.get("bos"),
        "eos_token_id": token_ids.get("eos"),
        "pad_token_id": token_ids.get("pad"),
        "torch_dtype": dtype_name,
        "dtype": dtype_name,
    }
    if qwen2:
        config.update(use_sliding_window=False, sliding_window=None, max_window_layers=cfg.n_layers)
    else:
        config.update(attention_bias=False, mlp_bias=False)
    return config


# -- reading safetensors -------------------------------------------------------------------------------------


def _checkpoint_files(hf_dir: Path) -> dict[str, Path]:
    """Tensor name → file, from model.safetensors or a sharded model.safetensors.index.json."""
    single, index = hf_dir / "model.safetensors", hf_dir / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text())["weight_map"]
        return {name: hf_dir / file for name, file in weight_map.items()}
    if single.is_file():
        with safe_open(single, framework="pt") as fh:
            return dict.fromkeys(fh.keys(), single)
    raise FileNotFoundError(f"{hf_dir}: no model.safetensors or model.safetensors.index.json")


def _resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    """None keeps the stored dtype ("auto" or None), else the named one."""
    if isinstance(dtype, torch.dtype) or dtype is None:
        return dtype
    if dtype == "auto":
        return None
    if dtype not in _DTYPES:
        raise ValueError(f"dtype {dtype!r}: choose one of {sorted(_DTYPES)} or auto")
    return _DTYPES[dtype]


def _expected_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Shapes of every parameter, from a model built on the meta device (no memory, no initialisation)."""
    with torch.device("meta"):
        model = Transformer(cfg)
    return {name: tuple(t.shape) for name, t in model.state_dict().items()}


def _read_tensors(
    files: Mapping[str, Path], wanted: Mapping[str, str], dtype: torch.dtype | None, where: str
) -> Iterator[tuple[str, torch.Tensor]]:
    """(wanted key, tensor) for every stored tensor named in `wanted` (stored name → key), file by file."""
    by_file: dict[Path, list[str]] = {}
    for stored in wanted:
        by_file.setdefault(files[stored], []).append(stored)
    for path, names in by_file.items():
        if not path.is_file():
            raise FileNotFoundError(f"{where}: shard {path.name} named in the index is missing")
        with safe_open(path, framework="pt") as fh:
            for stored in names:
                tensor = fh.get_tensor(stored)
                yield wanted[stored], tensor if dtype is None else tensor.to(dtype)


def _check_names(found: set[str], expected: set[str], ignorable: set[str], where: str) -> None:
    missing = sorted(expected - found)
    unexpected = sorted(found - expected - ignorable)
    if missing or unexpected:
        raise ValueError(
            f"{where}: tensors do not match the config: missing {missing}, unexpected {unexpected}"
        )


def _check_shapes(state: Mapping[str, torch.Tensor], cfg: ModelConfig, where: str) -> None:
    shapes = _expected_shapes(cfg)
    wrong = [f"{k} {tuple(v.shape)} != {shapes[k]}" for k, v in state.items() if tuple(v.shape) != shapes[k]]
    if wrong:
        raise ValueError(f"{where}: tensor shapes do not match the config: {wrong}")


def read_hf_state(
    hf_dir: str | Path, cfg: ModelConfig, dtype: str | torch.dtype | None = "float32"
) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors under our names (tied: no head.weight), checked against `cfg`."""
    hf_dir = Path(hf_dir)
    files = _checkpoint_files(hf_dir)
    names = weight_names(cfg)
    ignorable = {n for n in files if n.endswith(_IGNORED_SUFFIXES)}
    if cfg.tie_embeddings:
        ignorable.add(_GLOBAL_NAMES["head.weight"])  # some tied checkpoints store the shared matrix twice
    _check_names(set(files), set(names.values()), ignorable, str(hf_dir))
    wanted = {theirs: ours for ours, theirs in names.items()}
    state = dict(_read_tensors(files, wanted, _resolve_dtype(dtype), str(hf_dir)))
    _check_shapes(state, cfg, str(hf_dir))
    return state


# -- mathforge model directories -------------------------------------------------------------------------


def _materialise(
    cfg: ModelConfig, state: dict[str, torch.Tensor], device: str | torch.device = "cpu"
) -> Transformer:
    """A model holding `state` (our names; tied: no head.weight) without random initialisation: built on the
    meta device, the tensors assigned, non-persistent buffers (RoPE tables) taken from a one-layer twin."""
    with torch.device("meta"):
        model = Transformer(cfg)
    full = {name: tensor.to(device) for name, tensor in state.items()}
    if cfg.tie_embeddings:
        full["head.weight"] = full["embed.weight"]
    model.load_state_dict(full, strict=True, assign=True)
    if cfg.tie_embeddings:
        model.head.weight = model.embed.weight
    pending = {name for name, buf in model.named_buffers() if buf.is_meta}
    if pending:
        twin_cfg = dataclasses.replace(
            cfg, vocab_size=1, n_layers=1, n_heads=1, n_kv_heads=1, dim=cfg.head_dim, ffn_dim=1, mtp_depth=0
        )
        twin = dict(Transformer(twin_cfg).named_buffers())
        for name in sorted(pending):
            module_name, _, attr = name.rpartition(".")
            module = model.get_submodule(module_name) if module_name else model
            if name not in twin:
                raise RuntimeError(f"cannot rebuild buffer {name} without initialising the whole model")
            setattr(module, attr, twin[name].to(device))
    return model.eval()


def _state_for_saving(model: Transformer, keep_mtp: bool) -> dict[str, torch.Tensor]:
    state = {}
    for name, tensor in model.state_dict().items():
        if model.cfg.tie_embeddings and name == "head.weight":
            continue  # the same matrix as embed.weight
        if not keep_mtp and name.startswith("mtp."):
            continue
        state[name] = tensor.detach().to("cpu", copy=True).contiguous()
    return state


def _tokenizer_json(path: str | Path) -> Path:
    path = Path(path)
    path = path / "tokenizer.json" if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no tokenizer.json (only fast tokenizers are supported)")
    return path


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n")


def _publish(tmp: Path, out_dir: Path, last: str) -> Path:
    """Move the files of `tmp` into out_dir, `last` at the end, so that its presence means complete."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in sorted(tmp.iterdir(), key=lambda p: p.name == last):
        os.replace(path, out_dir / path.name)
    tmp.rmdir()
    return out_dir


def _staging(out_dir: Path) -> Path:
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".tmp-{out_dir.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    return tmp


def _write_model_dir(
    state: Mapping[str, torch.Tensor],
    cfg: ModelConfig,
    tokenizer_json_path: str | Path,
    out_dir: str | Path,
    meta: Mapping[str, Any],
) -> Path:
    tokenizer_json = _tokenizer_json(tokenizer_json_path)
    out_dir = Path(out_dir)
    tmp = _staging(out_dir)
    save_file(dict(state), tmp / "model.safetensors", metadata={"format": "pt"})
    shutil.copyfile(tokenizer_json, tmp / "tokenizer.json")
    tokenizer_config = read_tokenizer_config(tokenizer_json.parent)
    if tokenizer_config is not None:
        _write_json(tmp / "tokenizer_config.json", tokenizer_config)
    reserved = {"format", "version", "model_config"}
    info = {
        "format": MODEL_FORMAT,
        "version": MODEL_FORMAT_VERSION,
        "model_config": dataclasses.asdict(cfg),
        **{k: v for k, v in meta.items() if k not in reserved},
    }
    info.setdefault("template", chat_template_of(tokenizer_config))
    _write_json(tmp / "model.json", info)
    return _publish(tmp, out_dir, last="model.json")


def save_model_dir(
    model: Transformer, tokenizer_json_path: str | Path, out_dir: str | Path, meta: Mapping[str, Any]
) -> Path:
    """Write `model` as a mathforge model directory: model.safetensors (MTP modules kept; tied: no head),
    model.json ({format, version, model_config, **meta}; "template" defaults to the tokenizer's chat
    template), tokenizer.json and, when it sits next to it, tokenizer_config.json. model.json is written last."""
    return _write_model_dir(
        _state_for_saving(model, keep_mtp=True), model.cfg, tokenizer_json_path, out_dir, meta
    )


def load_model_dir(
    model_dir: str | Path, dtype: str | torch.dtype | None = None, device: str | torch.device = "cpu"
) -> tuple[Transformer, dict[str, Any]]:
    """(model in eval mode, the contents of model.json) from a mathforge model directory; dtype None keeps the
    stored one."""
    model_dir = Path(model_dir)
    info_path = model_dir / "model.json"
    if not info_path.is_file():
        raise FileNotFoundError(f"{model_dir}: no model.json (not a mathforge model directory)")
    info = json.loads(info_path.read_text())
    if info.get("format") != MODEL_FORMAT or info.get("version") != MODEL_FORMAT_VERSION:
        raise ValueError(
            f"{model_dir}: format {info.get('format')!r} version {info.get('version')!r}, "
            f"this code reads {MODEL_FORMAT!r} version {MODEL_FORMAT_VERSION}"
        )
    cfg = model_config_from_dict(info["model_config"])
    path = model_dir / "model.safetensors"
    with safe_open(path, framework="pt") as fh:
        stored = set(fh.keys())
    expected = set(_expected_shapes(cfg))
    if cfg.tie_embeddings:
        expected.discard("head.weight")
    _check_names(stored, expected, set(), str(path))
    state = dict(
        _read_tensors(dict.fromkeys(stored, path), {n: n for n in stored}, _resolve_dtype(dtype), str(path))
    )
    _check_shapes(state, cfg, str(path))
    return _materialise(cfg, state, device), info


def import_hf(hf_dir: str | Path, out_dir: str | Path, dtype: str = "float32") -> Path:
    """Convert a Hugging Face Llama/Qwen2 checkpoint directory into a mathforge model directory."""
    hf_dir = Path(hf_dir)
    config = json.loads((hf_dir / "config.json").read_text())
    cfg = hf_model_config(config)
    state = read_hf_state(hf_dir, cfg, dtype)
    tokenizer_config = read_tokenizer_config(hf_dir)
    meta = {
        "source": {
            "hf_dir": str(hf_dir.resolve()),
            "model_type": config.get("model_type"),
            "architectures": config.get("architectures"),
        },
        "template": chat_template_of(tokenizer_config),
    }
    return _write_model_dir(state, cfg, hf_dir / "tokenizer.json", out_dir, meta)


def load_hf(hf_dir: str | Path, dtype: str = "float32") -> Transformer:
    """A Hugging Face Llama/Qwen2 checkpoint straight into our model (eval mode), without a model directory."""
    hf_dir = Path(hf_dir)
    cfg = hf_model_config(json.loads((hf_dir / "config.json").read_text()))
    return _materialise(cfg, read_hf_state(hf_dir, cfg, dtype))


# -- export ----------------------------------------------------------------------------------------------


_ROLES = ("bos", "eos", "pad", "unk")

# transformers 5 loads the tokenizer of any qwen2 model as a Qwen2Tokenizer rebuilt from the vocabulary and
# merges with this pre-tokenizer (and NFC), whatever tokenizer.json says; other pipelines tokenize differently.
QWEN2_PRETOKENIZE_REGEX = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""


def _qwen2_compatible(tokenizer_json: Path) -> bool:
    spec = json.loads(tokenizer_json.read_text())
    pre = json.dumps(spec.get("pre_tokenizer"))
    return (spec.get("model") or {}).get("type") == "BPE" and json.dumps(QWEN2_PRETOKENIZE_REGEX)[1:-1] in pre


def _special_token_strings(tokenizer: Any, given: Mapping[str, str] | None) -> dict[str, str]:
    """role → token string: those given (keys "bos" or "bos_token"), the rest found by our tokenizer's aliases."""
    from training.models.tokenizer import special_ids

    tokens = {}
    for key, value in (given or {}).items():
        role = key.removesuffix("_token")
        if role not in _ROLES:
            raise ValueError(f"special token role {key!r}: choose from {[f'{r}_token' for r in _ROLES]}")
        if value is not None:
            tokens[role] = value
    try:
        found = dataclasses.asdict(special_ids(tokenizer))
    except ValueError:
        found = {}
    for role, token_id in found.items():
        tokens.setdefault(role, tokenizer.id_to_token(token_id))
    for role, token in tokens.items():
        if tokenizer.token_to_id(token) is None:
            raise ValueError(f"{role} token {token!r} is not in the tokenizer")
    return tokens


def export_hf(
    model: Transformer,
    tokenizer_path: str | Path,
    out_dir: str | Path,
    chat_template: str | None = None,
    special_tokens: Mapping[str, str] | None = None,
) -> Path:
    """Write `model` (without its MTP modules) as a Hugging Face checkpoint that `AutoModelForCausalLM` and
    `AutoTokenizer.from_pretrained` load unchanged. `tokenizer_path` is a tokenizer.json (or its directory);
    special_tokens maps roles (bos, eos, pad, unk; with or without "_token") to token strings, the rest are
    found by the usual names. With a chat template its end-of-turn token also stops generation."""
    from tokenizers import Tokenizer

    tokenizer_json = _tokenizer_json(tokenizer_path)
    tokenizer = Tokenizer.from_file(str(tokenizer_json))
    tokens = _special_token_strings(tokenizer, special_tokens)
    ids: dict[str, Any] = {
        role: tokenizer.token_to_id(tokens[role]) if role in tokens else None for role in _ROLES
    }
    stop_ids = [ids["eos"]] if ids["eos"] is not None else []
    if chat_template:
        template = PromptTemplate(
            kind="chat", chat_template=chat_template, bos_token=tokens.get("bos"), eos_token=tokens.get("eos")
        )
        end_of_turn = tokenizer.token_to_id(template.completion_suffix)
        if end_of_turn is not None and end_of_turn not in stop_ids:
            stop_ids.append(end_of_turn)

    if model.cfg.qkv_bias and not _qwen2_compatible(tokenizer_json):
        log.warning(
            "export_hf: a Qwen2 model with a tokenizer that is not a Qwen2-style BPE: transformers 5 rebuilds "
            "qwen2 tokenizers as Qwen2Tokenizer, which will tokenize differently from %s",
            tokenizer_json,
        )
    state = _state_for_saving(model, keep_mtp=False)
    names = weight_names(model.cfg)
    _check_names(set(state), set(names), set(), "export_hf")
    dtype = state["embed.weight"].dtype
    if dtype not in _DTYPES.values():
        raise ValueError(f"export_hf: weights in {dtype}, expected one of {sorted(_DTYPES)}")
    hf_state = {names[name]: tensor.to(dtype) for name, tensor in state.items()}

    out_dir = Path(out_dir)
    tmp = _staging(out_dir)
    save_file(hf_state, tmp / "model.safetensors", metadata={"format": "pt"})
    config_ids = {"bos": ids["bos"], "eos": ids["eos"], "pad": ids["pad"]}
    _write_json(tmp / "config.json", hf_config_dict(model.cfg, dtype, config_ids))
    generation = {
        "bos_token_id": ids["bos"],
        "eos_token_id": stop_ids[0] if len(stop_ids) == 1 else stop_ids or None,
        "pad_token_id": ids["pad"],
    }
    _write_json(tmp / "generation_config.json", generation)
    shutil.copyfile(tokenizer_json, tmp / "tokenizer.json")
    tokenizer_config: dict[str, Any] = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        **{f"{role}_token": tokens[role] for role in _ROLES if role in tokens},
        "model_max_length": model.cfg.max_seq_len,
        "clean_up_tokenization_spaces": False,
    }
    if chat_template:
        tokenizer_config["chat_template"] = chat_template
    _write_json(tmp / "tokenizer_config.json", tokenizer_config)
    return _publish(tmp, out_dir, last="config.json")
