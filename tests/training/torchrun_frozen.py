"""Run under torchrun by test_memory_levers.py: a frozen reference/teacher sharded with FSDP2 next to a
sharded policy. Each rank writes how many parameter elements its reference holds, the log-probs the sharded
reference gives next to the plain model's, those of a bf16 reference, and whether a reference synced from
the policy (shard to shard) and a gathered head equal the policy's full weights."""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import torch

from training.config import model_config
from training.distributed import (
    full_tensor,
    leave_distributed,
    local_numel,
    prepare_frozen,
    setup_distributed,
    wrap_model,
)
from training.models.generation import completion_logprobs
from training.models.transformer import Transformer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    d = setup_distributed("cpu")
    cfg = model_config("tiny", 200, max_seq_len=64, mtp_depth=0)
    plain = Transformer(cfg, seed=4).eval()
    ref = prepare_frozen(copy.deepcopy(plain), "fsdp", d, "fp32")
    ref_bf16 = prepare_frozen(copy.deepcopy(plain), "fsdp", d, "bf16")
    g = torch.Generator().manual_seed(100 + d.rank)  # each rank scores its own completions
    prompts = [torch.randint(3, 200, (n,), generator=g).tolist() for n in (3, 7)]
    completions = [torch.randint(3, 200, (n,), generator=g).tolist() for n in (5, 2 + 3 * d.rank)]
    with torch.no_grad():
        expected, mask = completion_logprobs(plain, prompts, completions)
        sharded, _ = completion_logprobs(ref, prompts, completions)
        half, _ = completion_logprobs(ref_bf16, prompts, completions)
        head = full_tensor(ref.head.weight)  # after a forward: the root resharded, the head is a DTensor
        # a reference synced from a sharded policy that trained away from it: shard to shard, no gathering
        policy = wrap_model(Transformer(cfg, seed=5), "fsdp", d)
        for name, param in ref.named_parameters():
            param.copy_(dict(policy.named_parameters())[name].detach())
        synced = all(
            torch.equal(full_tensor(a), full_tensor(b))
            for a, b in zip(ref.parameters(), policy.parameters(), strict=True)
        )
    record = {
        "rank": d.rank,
        "full_numel": sum(p.numel() for p in plain.parameters()),
        "ref_numel": local_numel(ref),
        "ref_dtypes": sorted({str(p.dtype) for p in ref_bf16.parameters()}),
        "root_resharded": hasattr(ref.head.weight, "to_local"),
        "max_diff": float(((sharded - expected) * mask).abs().max()),
        "max_diff_bf16": float(((half.float() - expected) * mask).abs().max()),
        "head_equal": torch.equal(head, plain.head.weight),
        "synced_equal": synced,
    }
    Path(args.out, f"rank{d.rank}.json").write_text(json.dumps(record))
    leave_distributed()


if __name__ == "__main__":
    main()
