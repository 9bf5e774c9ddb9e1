"""`mathforge generate`: print what a model writes after a prompt (greedy, sampled, or MTP-speculative), in
process or, with `--server`, at an OpenAI-compatible server."""

from __future__ import annotations

import torch

from training.config import GenerateConfig
from training.models.generation import speculative_generate
from training.models.model_io import load_model, load_model_text
from training.models.tokenizer import encode_prompt, n_token_ids, stop_token_ids
from training.sampling.builtin import BuiltinSampler
from training.sampling.interface import Sampler, SamplingParams


def generate_text(cfg: GenerateConfig) -> str:
    """The continuation of cfg.prompt, decoded (the stop token left out)."""
    if cfg.engine.server:
        from training.sampling.openai_engine import server_sampler

        if cfg.speculative:
            raise ValueError("--speculative decodes in process: leave out --server")
        text = load_model_text(cfg.model, template=cfg.template)
        sampler: Sampler = server_sampler(cfg.engine, text.tokenizer, text.template, seed=cfg.seed)
        tokenizer, template = text.tokenizer, text.template
        context = sampler.max_context
    else:
        device = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        loaded = load_model(cfg.model, device=device, template=cfg.template)
        tokenizer, template, model = loaded.tokenizer, loaded.template, loaded.model
        sampler = BuiltinSampler(model, tokenizer, template, seed=cfg.seed)
        context = model.cfg.max_seq_len
    if cfg.chat:
        prompt = template.render_prompt(cfg.prompt)
        ids = encode_prompt(tokenizer, prompt, template.renders_special_tokens)
    else:
        prompt = cfg.prompt
        ids = encode_prompt(tokenizer, cfg.prompt, renders_special_tokens=False)
    max_new = cfg.max_new_tokens if context is None else min(cfg.max_new_tokens, context + 1 - len(ids))
    if max_new < 1:
        raise ValueError(f"the prompt has {len(ids)} tokens; the model's max_seq_len is {context}")
    with sampler:
        if cfg.speculative:
            if cfg.temperature > 0:
                raise ValueError("--speculative decodes greedily: use --temperature 0")
            stops = stop_token_ids(tokenizer, template.stop_strings())
            tokens, stats = speculative_generate(
                model, ids, max_new, stop_ids=stops, vocab_size=n_token_ids(tokenizer)
            )
            print(
                f"# speculative: {stats.accepted}/{stats.drafted} drafts accepted, "
                f"{stats.main_forwards} main forwards"
            )
            return tokenizer.decode([t for t in tokens if t not in stops], skip_special_tokens=False)
        asked = ids if sampler.accepts_token_ids else prompt
        params = SamplingParams(max_new, temperature=cfg.temperature, top_p=cfg.top_p)
        (completion,) = sampler.sample([asked], params)[0]
    if completion.failed:
        raise ValueError(f"generation failed: {completion.error}")
    return completion.text
