"""Tiny random Hugging Face models in the real architectures (Llama, Qwen2; tied or untied; a padded
vocabulary; a Qwen2-style byte-level BPE with a ChatML template), built with transformers for the tests that
import, train and export them."""

from __future__ import annotations

import json

import torch
import transformers
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from training.models.hf import QWEN2_PRETOKENIZE_REGEX

CHATML = (
    "{% for m in messages %}{{ '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
SHAPE = {
    "hidden_size": 48,
    "num_attention_heads": 6,
    "num_key_value_heads": 2,
    "intermediate_size": 100,
    "vocab_size": 307,
    "max_position_embeddings": 64,
    "rope_theta": 5000.0,
    "rms_norm_eps": 1e-5,
    "initializer_range": 0.2,  # logits with clear winners, so greedy decoding has no near-ties
    "bos_token_id": 0,
    "eos_token_id": 1,
}
# Qwen2's pre-tokenizer: under transformers 5, AutoTokenizer rebuilds any qwen2 model's tokenizer as a
# Qwen2Tokenizer from the vocabulary and merges, so the test tokenizer must be a BPE with this pipeline.
TEXTS = [
    f"Let x = {i}. Then x^2 = {i * i} and \\frac{{x}}{{2}} = {i / 2}, so the answer is {i + 1}."
    for i in range(60)
]


def qwen_style_tokenizer(vocab_size: int = 290) -> Tokenizer:
    """A byte-level BPE with Qwen2's pipeline and specials (none of which a word contains); fewer tokens than
    the model's embedding rows, as in Qwen2.5."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_PRETOKENIZE_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(TEXTS, trainer=trainer)
    return tokenizer


def hf_model(arch: str, tied: bool, n_layers: int = 2):
    """A random transformers model whose norms (and Qwen2 biases) are not at their initial values."""
    if arch == "llama":
        config = transformers.LlamaConfig(num_hidden_layers=n_layers, tie_word_embeddings=tied, **SHAPE)
        model = transformers.LlamaForCausalLM(config)
    else:
        config = transformers.Qwen2Config(num_hidden_layers=n_layers, tie_word_embeddings=tied, **SHAPE)
        model = transformers.Qwen2ForCausalLM(config)
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(("norm.weight", ".bias")):
                param.copy_(
                    1.0 * (name.endswith("norm.weight")) + 0.3 * torch.randn(param.shape, generator=generator)
                )
    return model.eval()


def save_hf(model, path, sharded: bool, chat_template: str | None) -> None:
    model.save_pretrained(path, **({"max_shard_size": "20KB"} if sharded else {}))
    qwen_style_tokenizer().save(str(path / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
    }
    if chat_template:
        config["chat_template"] = chat_template
    (path / "tokenizer_config.json").write_text(json.dumps(config))
