"""Hugging Face checkpoints in and out: tiny random Llama and Qwen2 models built with transformers give the same
logits and greedy continuations after import, export loads unchanged in transformers, padded vocabularies and
tied heads survive the round trip, and configurations the model cannot represent are refused by name."""

from __future__ import annotations

import json

import pytest
import torch
import transformers
from hf_fixtures import CHATML, SHAPE, TEXTS, hf_model, qwen_style_tokenizer, save_hf
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer

from training.config import model_config
from training.models.generation import generate
from training.models.hf import (
    export_hf,
    hf_model_config,
    import_hf,
    load_hf,
    load_model_dir,
    save_model_dir,
)
from training.models.prompts import read_tokenizer_config, resolve_template
from training.models.tokenizer import train_tokenizer
from training.models.transformer import Logits, Transformer

IDS = torch.tensor(
    [[0, 17, 42, 99, 5, 160, 7, 7, 31, 200, 3, 8, 64], [0, 150, 2, 9, 9, 111, 80, 4, 13, 56, 77, 1, 6]]
)


def stored(path) -> set[str]:
    with safe_open(path, framework="pt") as fh:
        return set(fh.keys())


def hf_logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(ids).logits.float()


def our_logits(model: Transformer, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(ids, readout=Logits())


@pytest.mark.parametrize(
    ("arch", "tied", "sharded"),
    [("llama", True, True), ("llama", False, False), ("qwen2", False, True), ("qwen2", True, False)],
)
def test_import_and_export_match_transformers(tmp_path, arch: str, tied: bool, sharded: bool) -> None:
    reference = hf_model(arch, tied, n_layers=3 if arch == "qwen2" else 2)
    save_hf(reference, tmp_path / "hf", sharded, CHATML if arch == "qwen2" else None)
    if sharded:
        assert (tmp_path / "hf" / "model.safetensors.index.json").is_file()
    expected = hf_logits(reference, IDS)

    import_hf(tmp_path / "hf", tmp_path / "ours")
    model, meta = load_model_dir(tmp_path / "ours")
    assert meta["format"] == "mathforge-model" and meta["source"]["model_type"] == arch
    assert meta["template"] == (CHATML if arch == "qwen2" else None)
    assert model.cfg.qkv_bias == (arch == "qwen2") and model.cfg.tie_embeddings == tied
    assert model.cfg.rope_theta == 5000.0 and model.cfg.norm_eps == 1e-5 and model.cfg.vocab_size == 307
    assert (model.head.weight is model.embed.weight) == tied
    assert ("head.weight" in stored(tmp_path / "ours" / "model.safetensors")) != tied
    assert (our_logits(model, IDS) - expected).abs().max().item() <= 1e-4

    prompt = IDS[0, :6]
    ours = generate(model, [prompt.tolist()], 10, temperature=0).tokens[0]
    theirs = reference.generate(
        prompt[None],
        attention_mask=torch.ones(1, 6, dtype=torch.long),
        max_new_tokens=10,
        do_sample=False,
        eos_token_id=None,
        pad_token_id=0,
    )[0, 6:]
    assert ours == theirs.tolist()

    export_hf(
        model,
        tmp_path / "ours" / "tokenizer.json",
        tmp_path / "export",
        meta["template"],
        {"eos": "<|im_end|>"},
    )
    config = json.loads((tmp_path / "export" / "config.json").read_text())
    assert config["architectures"] == ["Qwen2ForCausalLM" if arch == "qwen2" else "LlamaForCausalLM"]
    assert config["tie_word_embeddings"] == tied and config["dtype"] == "float32"
    assert ("lm_head.weight" in stored(tmp_path / "export" / "model.safetensors")) != tied
    loaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "export").eval()
    assert type(loaded) is type(reference)
    assert (hf_logits(loaded, IDS) - expected).abs().max().item() <= 1e-4
    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "export")
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.convert_tokens_to_ids("<|im_end|>") == 2
    backend = Tokenizer.from_file(str(tmp_path / "hf" / "tokenizer.json"))
    assert tokenizer(TEXTS[7])["input_ids"] == backend.encode(TEXTS[7]).ids


def test_load_hf_without_a_model_directory(tmp_path) -> None:
    reference = hf_model("qwen2", tied=False)
    save_hf(reference, tmp_path, sharded=False, chat_template=None)
    model = load_hf(tmp_path)
    assert (our_logits(model, IDS) - hf_logits(reference, IDS)).abs().max().item() <= 1e-4
    assert all(p.requires_grad for p in model.parameters())  # trainable after import
    bf16 = load_hf(tmp_path, dtype="bfloat16")
    assert bf16.embed.weight.dtype == torch.bfloat16 and bf16.rope_cos.dtype == torch.float32


@pytest.mark.parametrize("tied", [False, True])
def test_mathforge_model_exports_with_its_padded_vocabulary(tmp_path, tied: bool) -> None:
    texts = TEXTS
    tokenizer = train_tokenizer(texts, vocab_size=300, min_frequency=1)
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    n_tokens = tokenizer.get_vocab_size()
    model = Transformer(
        model_config("tiny", n_tokens, max_seq_len=64, mtp_depth=1, tie_embeddings=tied), seed=3
    )
    model.eval()
    assert model.cfg.vocab_size == 320 > n_tokens  # padded rows beyond the tokenizer
    with torch.no_grad():
        model.embed.weight[n_tokens:] = torch.randn(320 - n_tokens, model.cfg.dim)  # make the padding visible
    ids = torch.tensor([tokenizer.encode(texts[5]).ids[:20]])

    chat = (
        "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}<|end_of_turn|>{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )
    export_hf(
        model, tmp_path / "tokenizer.json", tmp_path / "export", chat, special_tokens={"pad_token": "<|pad|>"}
    )
    config = json.loads((tmp_path / "export" / "config.json").read_text())
    assert config["vocab_size"] == 320 and config["eos_token_id"] == tokenizer.token_to_id("<|eos|>")
    generation = json.loads((tmp_path / "export" / "generation_config.json").read_text())
    # generation stops at EOS and at the chat template's end of turn
    assert generation["eos_token_id"] == [tokenizer.token_to_id(t) for t in ("<|eos|>", "<|end_of_turn|>")]
    assert generation["pad_token_id"] == config["pad_token_id"] == tokenizer.token_to_id("<|pad|>")
    assert not any("mtp" in name for name in stored(tmp_path / "export" / "model.safetensors"))
    loaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "export").eval()
    assert type(loaded).__name__ == "LlamaForCausalLM"
    assert (hf_logits(loaded, ids) - our_logits(model, ids)).abs().max().item() <= 1e-4
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "export")
    assert hf_tokenizer(texts[5], add_special_tokens=False)["input_ids"] == tokenizer.encode(texts[5]).ids
    assert hf_tokenizer.bos_token == "<|bos|>" and hf_tokenizer.eos_token == "<|eos|>"
    assert hf_tokenizer.pad_token == "<|pad|>" and hf_tokenizer.model_max_length == 64
    rendered = hf_tokenizer.apply_chat_template(
        [{"role": "user", "content": "2+2?"}], tokenize=False, add_generation_prompt=True
    )
    template = resolve_template("auto", read_tokenizer_config(tmp_path / "export"))
    assert rendered == template.render_prompt("2+2?") == "<|user|>2+2?<|end_of_turn|><|assistant|>"

    import_hf(tmp_path / "export", tmp_path / "back")
    back, meta = load_model_dir(tmp_path / "back")
    assert meta["template"] == chat and back.cfg.mtp_depth == 0 and back.cfg.tie_embeddings == tied
    assert torch.equal(back.embed.weight, model.embed.weight)  # every padded row survives
    assert torch.equal(back.head.weight, model.head.weight)
    assert torch.equal(our_logits(back, ids), our_logits(model, ids))


def test_bfloat16_export_and_model_directory_round_trip(tmp_path, caplog) -> None:
    qwen_style_tokenizer().save(str(tmp_path / "tokenizer.json"))
    model = Transformer(model_config("tiny", 290, max_seq_len=32, mtp_depth=1, qkv_bias=True), seed=5).eval()
    with torch.no_grad():
        for layer in model.layers:
            layer.attn.wq.bias.normal_()
    save_model_dir(model, tmp_path / "tokenizer.json", tmp_path / "run", {"note": "sft step 3"})
    again, meta = load_model_dir(tmp_path / "run")
    assert meta["note"] == "sft step 3" and meta["template"] is None and again.cfg == model.cfg
    ids = torch.tensor([[0, 5, 9, 33, 12]])
    assert torch.equal(our_logits(again, ids), our_logits(model, ids))
    assert torch.equal(again.mtp[0].eh_proj.weight, model.mtp[0].eh_proj.weight)  # MTP kept in our format

    export_hf(
        model.to(torch.bfloat16),
        tmp_path / "tokenizer.json",
        tmp_path / "export",
        None,
        {"eos": "<|im_end|>"},
    )
    config = json.loads((tmp_path / "export" / "config.json").read_text())
    assert config["dtype"] == config["torch_dtype"] == "bfloat16"
    assert config["architectures"] == ["Qwen2ForCausalLM"]  # q/k/v biases and no o_proj bias: Qwen2
    state = load_file(tmp_path / "export" / "model.safetensors")
    assert {t.dtype for t in state.values()} == {torch.bfloat16}
    assert all(t.is_contiguous() for t in state.values())
    bf16 = load_hf(tmp_path / "export", dtype="auto")
    assert torch.equal(bf16.layers[0].attn.wq.bias, model.layers[0].attn.wq.bias)
    assert "not a Qwen2-style BPE" not in caplog.text

    train_tokenizer(TEXTS, vocab_size=290, min_frequency=1).save(str(tmp_path / "ours.json"))
    export_hf(model, tmp_path / "ours.json", tmp_path / "export2")
    assert "not a Qwen2-style BPE" in caplog.text  # transformers would re-tokenize it as Qwen2


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"model_type": "mistral"}, "model_type"),
        ({"rope_scaling": {"rope_type": "llama3", "factor": 8.0}}, "rope_scaling"),
        ({"rope_parameters": {"rope_type": "yarn", "rope_theta": 1e4, "factor": 4.0}}, "rope_parameters"),
        ({"head_dim": 16}, "head_dim"),
        ({"hidden_act": "gelu"}, "hidden_act"),
        ({"mlp_bias": True}, "mlp_bias"),
        ({"attention_bias": True}, "attention_bias"),
        ({"model_type": "qwen2", "use_sliding_window": True}, "use_sliding_window"),
        ({"model_type": "qwen2", "layer_types": ["full_attention", "sliding_attention"]}, "layer_types"),
        ({"hidden_size": None}, "hidden_size"),
    ],
)
def test_unsupported_configs_are_refused_by_name(change: dict, field: str) -> None:
    config = {"model_type": "llama", "num_hidden_layers": 2, **SHAPE, **change}
    with pytest.raises(ValueError, match=field):
        hf_model_config(config)


def test_config_fields_and_rope_theta_spellings() -> None:
    v4 = {
        "model_type": "llama",
        "num_hidden_layers": 2,
        **SHAPE,
        "rope_scaling": None,
        "num_key_value_heads": None,
    }
    cfg = hf_model_config(v4)
    assert (cfg.dim, cfg.n_layers, cfg.n_heads, cfg.n_kv_heads, cfg.ffn_dim) == (48, 2, 6, 6, 100)
    assert (cfg.max_seq_len, cfg.rope_theta, cfg.norm_eps, cfg.mtp_depth) == (64, 5000.0, 1e-5, 0)
    assert not cfg.qkv_bias and not cfg.tie_embeddings and cfg.vocab_size == 307  # never re-padded
    v5 = {**v4, "rope_theta": None, "rope_parameters": {"rope_theta": 1e6, "rope_type": "default"}}
    assert hf_model_config(v5).rope_theta == 1e6
    assert hf_model_config({**v4, "model_type": "qwen2", "tie_word_embeddings": True}).qkv_bias


def test_missing_and_unexpected_tensors_are_listed(tmp_path) -> None:
    reference = hf_model("llama", tied=False)
    save_hf(reference, tmp_path, sharded=False, chat_template=None)
    state = load_file(tmp_path / "model.safetensors")
    del state["model.layers.1.mlp.up_proj.weight"]
    state["model.layers.1.mlp.extra.weight"] = torch.zeros(3)
    save_file(state, tmp_path / "model.safetensors")
    with pytest.raises(
        ValueError,
        match=r"missing \['model.layers.1.mlp.up_proj.weight'\], unexpected \['model.layers.1.mlp.extra.weight'\]",
    ):
        import_hf(tmp_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()
