"""Byte-level BPE tokenizer: trained on the corpus, or loaded from an existing tokenizer.json.

Byte-level so that any text (LaTeX, CJK, stray control bytes) round-trips without unknown tokens. The special
tokens cover document framing (BOS/EOS/padding) and the chat and reasoning tags that SFT and GRPO will use;
they are added at fixed ids right after training so that every tokenizer we train agrees on them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

BOS, EOS, PAD = "<|bos|>", "<|eos|>", "<|pad|>"
CHAT_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>", "<|end_of_turn|>")
REASONING_TOKENS = ("<think>", "</think>", "<answer>", "</answer>")
SPECIAL_TOKENS = (BOS, EOS, PAD, *CHAT_TOKENS, *REASONING_TOKENS)

# Names other tokenizers use for the same roles, so that an existing tokenizer.json can be used as is.
_ALIASES = {
    "bos": (BOS, "<s>", "<|begin_of_text|>", "<|startoftext|>", "<|endoftext|>"),
    "eos": (EOS, "</s>", "<|end_of_text|>", "<|endoftext|>", "<|im_end|>"),
    "pad": (PAD, "<pad>", "<|padding|>"),
}


@dataclass(frozen=True)
class SpecialIds:
    bos: int
    eos: int
    pad: int


def train_tokenizer(texts: Iterable[str], vocab_size: int, min_frequency: int = 2) -> Tokenizer:
    """Train a byte-level BPE with our special tokens at ids 0..len(SPECIAL_TOKENS)-1."""
    if vocab_size < len(SPECIAL_TOKENS) + 256:
        raise ValueError(
            f"vocab_size {vocab_size} is too small: a byte-level BPE needs at least 256 + specials"
        )
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def load_tokenizer(path: str | Path) -> Tokenizer:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"tokenizer file not found: {path}")
    tokenizer = Tokenizer.from_file(str(path))
    special_ids(tokenizer)  # fail now, not in the middle of packing
    return tokenizer


def special_ids(tokenizer: Tokenizer) -> SpecialIds:
    """Ids of BOS, EOS and padding; padding falls back to EOS (it is never a training target)."""
    found: dict[str, int] = {}
    for role, names in _ALIASES.items():
        for name in names:
            token_id = tokenizer.token_to_id(name)
            if token_id is not None:
                found[role] = token_id
                break
    if "pad" not in found and "eos" in found:
        found["pad"] = found["eos"]
    missing = [role for role in _ALIASES if role not in found]
    if missing:
        raise ValueError(
            f"tokenizer has no token for {missing}; expected one of "
            + "; ".join(f"{role}: {_ALIASES[role]}" for role in missing)
        )
    return SpecialIds(**found)


def encode_prompt(tokenizer: Tokenizer, text: str, renders_special_tokens: bool) -> list[int]:
    """Token ids of a prompt framed as the model saw text in training: as rendered when the template writes
    its own special tokens (chat templates); else with the tokenizer's post-processor when it has one (a
    Llama tokenizer adds its BOS); else after our BOS, as pretraining framed every document."""
    if renders_special_tokens:
        return tokenizer.encode(text, add_special_tokens=False).ids
    if tokenizer.post_processor is not None:
        return tokenizer.encode(text, add_special_tokens=True).ids
    bos = tokenizer.token_to_id(BOS)
    return ([bos] if bos is not None else []) + tokenizer.encode(text, add_special_tokens=False).ids


def stop_token_ids(tokenizer: Tokenizer, stop_strings: Iterable[str]) -> set[int]:
    """Ids that end generation: the EOS id, and every stop string that is a single token."""
    ids = {special_ids(tokenizer).eos}
    for text in stop_strings:
        token_id = tokenizer.token_to_id(text)
        if token_id is not None:
            ids.add(token_id)
    return ids


def vocabulary(tokenizer: Tokenizer) -> dict[str, int]:
    """token string → id, added (special) tokens included."""
    return tokenizer.get_vocab(with_added_tokens=True)


def n_token_ids(tokenizer: Tokenizer) -> int:
    """Ids a model can be asked for: one past the largest id (embedding rows beyond it are padding)."""
    return max(vocabulary(tokenizer).values()) + 1


def vocabulary_digest(tokenizer: Tokenizer) -> str:
    """sha256 of the (token, id) pairs: equal digests mean two tokenizers map every token to the same id."""
    pairs = sorted(vocabulary(tokenizer).items(), key=lambda item: item[1])
    return hashlib.sha256(json.dumps(pairs, ensure_ascii=False).encode()).hexdigest()


def check_same_vocabulary(
    teacher: Tokenizer, student: Tokenizer, names: tuple[str, str] = ("teacher", "student")
) -> None:
    """Raise ValueError, saying what differs, unless both tokenizers map the same tokens to the same ids.

    Distillation compares two distributions id by id; equal sizes are not enough (a reordered or extended
    vocabulary would silently misalign them)."""
    a, b = vocabulary(teacher), vocabulary(student)
    if a == b:
        return
    only_a = sorted(set(a) - set(b), key=a.__getitem__)
    only_b = sorted(set(b) - set(a), key=b.__getitem__)
    moved = sorted((t for t in set(a) & set(b) if a[t] != b[t]), key=a.__getitem__)
    parts = [f"{names[0]} has {len(a)} tokens, {names[1]} {len(b)}"]
    if only_a:
        parts.append(f"{len(only_a)} only in the {names[0]}'s (e.g. {only_a[:3]})")
    if only_b:
        parts.append(f"{len(only_b)} only in the {names[1]}'s (e.g. {only_b[:3]})")
    if moved:
        examples = ", ".join(f"{t!r}: {a[t]} vs {b[t]}" for t in moved[:3])
        parts.append(f"{len(moved)} with different ids ({examples})")
    raise ValueError(
        f"the {names[0]} and {names[1]} tokenizers differ: {'; '.join(parts)}. Distillation compares the two "
        "next-token distributions id by id, so both models must share one tokenizer"
    )
