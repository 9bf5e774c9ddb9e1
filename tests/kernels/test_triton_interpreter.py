"""Triton kernels against the PyTorch references, values and gradients, relative error < 1e-4 in fp32.

Without a GPU the kernels run in the Triton interpreter on CPU tensors: tests/conftest.py sets
TRITON_INTERPRET=1 before anything imports `kernels.triton_ops`. With a GPU the same tests run compiled.
"""

from __future__ import annotations

import pytest
import torch

from kernels import fused_linear_cross_entropy, rms_norm, token_logprobs
from kernels.backend import triton_ops
from kernels.ce_rows import RowOptions, ce_rows_torch

pytest.importorskip("triton")

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
TOL = 1e-4
H, V = 48, 1003


@pytest.fixture(scope="module", autouse=True)
def _kernels_can_run() -> None:
    if DEVICE == "cpu":
        assert triton_ops().INTERPRETED, "kernels.triton_ops was imported before TRITON_INTERPRET=1 was set"


def rel_err(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got - want).detach().norm() / want.detach().norm().clamp_min(1e-30))


def make_inputs(n: int, v: int = V, ignored=(), seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, H, generator=g)
    weight = torch.randn(v, H, generator=g) / H**0.5
    targets = torch.randint(0, v, (n,), generator=g)
    targets[list(ignored)] = -100
    return hidden.to(DEVICE), weight.to(DEVICE), targets.to(DEVICE)


def run_both(fn, hidden, weight, *args, **kwargs):
    """(value, grad_hidden, grad_weight) from each backend, under the same random upstream gradient."""
    results = {}
    for backend in ("triton", "torch"):
        h = hidden.clone().requires_grad_()
        w = weight.clone().requires_grad_()
        out = fn(h, w, *args, backend=backend, **kwargs)
        upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(1)).to(DEVICE)
        results[backend] = (out.detach(), *torch.autograd.grad(out, (h, w), upstream))
    return results["triton"], results["torch"]


OPTIONS = [
    {},
    {"label_smoothing": 0.1},
    {"z_loss": 1e-3},
    {"softcap": 3.0},
    {"label_smoothing": 0.05, "z_loss": 1e-4, "softcap": 5.0},
]


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "+".join(o) or "plain")
@pytest.mark.parametrize("block_v", [None, 128])  # 128: several vocabulary tiles and a ragged last one
def test_row_op_matches_reference(options, block_v):
    opts = RowOptions(**options)
    g = torch.Generator().manual_seed(2)
    logits = (torch.randn(9, V, generator=g) * 4).to(DEVICE)
    targets = torch.randint(0, V, (9,), generator=g).to(DEVICE)
    targets[[0, 4]] = -100
    grad_scale = torch.randn(9, generator=g).to(DEVICE)
    got_logits, want_logits = logits.clone(), logits.clone()
    got = triton_ops().ce_rows_triton(got_logits, targets, opts, grad_scale, block_v=block_v)
    want = ce_rows_torch(want_logits, targets, opts, grad_scale)
    assert rel_err(got[0], want[0]) < TOL and rel_err(got[1], want[1]) < TOL
    assert rel_err(got_logits, want_logits) < TOL
    assert bool((got_logits[[0, 4]] == 0).all())
    loss_only = triton_ops().ce_rows_triton(logits.clone(), targets, opts, block_v=block_v)
    assert rel_err(loss_only[0], want[0]) < TOL


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("options", OPTIONS[:2] + OPTIONS[-1:], ids=lambda o: "+".join(o) or "plain")
def test_fused_linear_cross_entropy(reduction, options):
    hidden, weight, targets = make_inputs(37, ignored=(3, 5, 6))
    got, want = run_both(
        fused_linear_cross_entropy, hidden, weight, targets, reduction=reduction, chunk_size=16, **options
    )
    for a, b in zip(got, want, strict=True):
        assert rel_err(a, b) < TOL


@pytest.mark.parametrize(
    ("n", "v", "ignored"),
    [(1, V, ()), (1, 777, (0,)), (5, 2049, (0, 1, 2, 3, 4)), (13, 4099, (12,))],
    ids=["single-row", "single-ignored-row", "all-ignored", "multi-tile-vocab"],
)
def test_fused_linear_cross_entropy_edge_shapes(n, v, ignored):
    hidden, weight, targets = make_inputs(n, v=v, ignored=ignored)
    got, want = run_both(fused_linear_cross_entropy, hidden, weight, targets, reduction="sum")
    if len(ignored) == n:
        assert all(float(t.abs().max()) == 0.0 for t in got)
        return
    for a, b in zip(got, want, strict=True):
        assert rel_err(a, b) < TOL


@pytest.mark.parametrize("temperature", [1.0, 0.6])
def test_token_logprobs(temperature):
    hidden, weight, tokens = make_inputs(37, ignored=(0, 1))
    got, want = run_both(token_logprobs, hidden, weight, tokens, temperature=temperature, chunk_size=10)
    for a, b in zip(got, want, strict=True):
        assert rel_err(a, b) < TOL
    assert bool((got[0][:2] == 0).all())


@pytest.mark.parametrize("shape", [(37, 48), (1, 130), (2, 3, 1000), (64, 7)])
def test_rms_norm(shape):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(shape, generator=g).to(DEVICE)
    weight = torch.randn(shape[-1], generator=g).to(DEVICE)
    got, want = run_both(rms_norm, x, weight, eps=1e-5)
    assert got[0].shape == x.shape
    for a, b in zip(got, want, strict=True):
        assert rel_err(a, b) < TOL
