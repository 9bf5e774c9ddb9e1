"""`mathforge generate`: print what a model writes after a prompt (greedy, sampled, or MTP-speculative)."""

from __future__ import annotations

import torch

from training.config import GenerateConfig
from training.models.generation import generate, speculative_generate
from training.models.model_io import load_model
from training.models.tokenizer import encode_prompt, n_token_ids, special_ids, stop_token_ids


def generate_text(cfg: GenerateConfig) -> str:
    """The continuation of cfg.prompt, decoded (the stop token left out)."""
    device = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    loaded = load_model(cfg.model, device=device, template=cfg.template)
    tokenizer, template, model = loaded.tokenizer, loaded.template, loaded.model
    if cfg.chat:
        ids = encode_prompt(tokenizer, template.render_prompt(cfg.prompt), template.renders_special_tokens)
    else:
        ids = encode_prompt(tokenizer, cfg.prompt, renders_special_tokens=False)
    stops = stop_token_ids(tokenizer, template.stop_strings())
    max_new = min(cfg.max_new_tokens, model.cfg.max_seq_len + 1 - len(ids))
    if max_new < 1:
        raise ValueError(
            f"the prompt has {len(ids)} tokens; the model's max_seq_len is {model.cfg.max_seq_len}"
        )
    if cfg.speculative:
        if cfg.temperature > 0:
            raise ValueError("--speculative decodes greedily: use --temperature 0")
        tokens, stats = speculative_generate(
            model, ids, max_new, stop_ids=stops, vocab_size=n_token_ids(tokenizer)
        )
        print(
            f"# speculative: {stats.accepted}/{stats.drafted} drafts accepted, {stats.main_forwards} main forwards"
        )
    else:
        generator = torch.Generator(device=model.embed.weight.device).manual_seed(cfg.seed)
        out = generate(
            model,
            [ids],
            max_new,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            stop_ids=stops,
            pad_id=special_ids(tokenizer).pad,
            generator=generator,
            vocab_size=n_token_ids(tokenizer),
        )
        tokens = out.tokens[0]
    return tokenizer.decode([t for t in tokens if t not in stops], skip_special_tokens=False)
