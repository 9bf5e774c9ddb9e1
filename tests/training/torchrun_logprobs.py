"""Run under torchrun by test_torchrun.py: log-probabilities and generation through the DDP/FSDP2 wrapper.

Every rank scores its own completions with `completion_logprobs` on the wrapped model, backpropagates, and
writes the gathered gradients' digest, whether they equal the mean of the per-rank gradients (recomputed
locally on a plain copy of the model), and greedy samples made through the wrapper next to the plain model's.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from training.config import model_config
from training.distributed import leave_distributed, param_digest, setup_distributed, wrap_model
from training.models.generation import completion_logprobs, generate
from training.models.transformer import Transformer


def rank_data(rank: int) -> tuple[list[list[int]], list[list[int]]]:
    g = torch.Generator().manual_seed(100 + rank)
    prompts = [torch.randint(3, 200, (n,), generator=g).tolist() for n in (3 + rank, 7, 2)]
    completions = [torch.randint(3, 200, (n,), generator=g).tolist() for n in (5, 1 + 3 * rank, 4)]
    return prompts, completions


def loss_of(model: torch.nn.Module, rank: int) -> torch.Tensor:
    prompts, completions = rank_data(rank)
    logprobs, mask = completion_logprobs(model, prompts, completions)
    return -(logprobs * mask).sum() / mask.sum()


def grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    out = {}
    for name, param in model.named_parameters():
        grad = param.grad
        grad = grad.full_tensor() if hasattr(grad, "full_tensor") else grad
        out[name] = grad.detach().clone()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--parallel", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    d = setup_distributed("cpu")
    cfg = model_config("tiny", 200, max_seq_len=64, mtp_depth=0)
    plain = Transformer(cfg, seed=4)
    wrapped = wrap_model(Transformer(cfg, seed=4), args.parallel, d)

    loss_of(wrapped, d.rank).backward()
    synced = grads(wrapped)
    expected: dict[str, torch.Tensor] = {}
    for rank in range(d.world_size):  # DDP and FSDP2 average the ranks' gradients
        plain.zero_grad()
        loss_of(plain, rank).backward()
        for name, grad in grads(plain).items():
            expected[name] = expected.get(name, 0) + grad / d.world_size
    names = [n.removeprefix("module.") for n in synced]
    matches = all(torch.allclose(synced[n], expected[n.removeprefix("module.")], atol=1e-6) for n in synced)
    digest = torch.cat([g.flatten() for g in synced.values()])
    prompts, _ = rank_data(d.rank)
    # different batch sizes per rank; the same max_new_tokens (under FSDP2 each forward is a collective)
    through_wrapper = generate(wrapped, prompts[: 1 + d.rank], 8, temperature=0)
    record = {
        "rank": d.rank,
        "grad_digest": param_digest(torch.nn.ParameterList([torch.nn.Parameter(digest)])),
        "grads_are_the_rank_mean": matches,
        "params": sorted(names),
        "wrapped_greedy": through_wrapper.tokens,
        "plain_greedy": generate(plain, prompts[: 1 + d.rank], 8, temperature=0).tokens,
    }
    Path(args.out, f"rank{d.rank}.json").write_text(json.dumps(record))
    leave_distributed()


if __name__ == "__main__":
    main()
