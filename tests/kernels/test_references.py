"""The PyTorch references against naive full-logits PyTorch: values, gradients, options and bad input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from kernels import fused_linear_cross_entropy, resolve_backend, rms_norm, rms_norm_torch, token_logprobs
from kernels.chunked import CHUNK_ELEMENTS, chunk_rows

REPO = Path(__file__).resolve().parents[2]
N, H, V = 37, 48, 1003  # odd on purpose: no power of two anywhere


def rel_err(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got - want).detach().norm() / want.detach().norm().clamp_min(1e-30))


def make_inputs(n=N, h=H, v=V, dtype=torch.float64, seed=0, ignored=(3, 5, 6)):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, h, generator=g, dtype=dtype).requires_grad_()
    weight = (torch.randn(v, h, generator=g, dtype=dtype) / h**0.5).requires_grad_()
    targets = torch.randint(0, v, (n,), generator=g)
    targets[[i for i in ignored if i < n]] = -100
    return hidden, weight, targets


def value_and_grads(loss: torch.Tensor, inputs, seed=1):
    """The loss and its input gradients for a random upstream gradient (uneven rows for 'none')."""
    upstream = torch.randn(loss.shape, generator=torch.Generator().manual_seed(seed), dtype=loss.dtype)
    return (loss.detach(), *torch.autograd.grad(loss, inputs, upstream))


def naive_loss(hidden, weight, targets, reduction="mean", label_smoothing=0.0, z_loss=0.0, softcap=None):
    """Full logits, written the obvious way."""
    logits = hidden @ weight.T
    if softcap is not None:
        logits = softcap * torch.tanh(logits / softcap)
    rows = F.cross_entropy(logits, targets, reduction="none", label_smoothing=label_smoothing)
    valid = targets != -100
    rows = torch.where(valid, rows + z_loss * torch.logsumexp(logits, dim=1) ** 2, 0.0)
    if reduction == "none":
        return rows
    return rows.sum() / valid.sum() if reduction == "mean" else rows.sum()


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("chunk_size", [1, 7, None])
def test_cross_entropy_matches_f_cross_entropy(reduction, label_smoothing, chunk_size):
    hidden, weight, targets = make_inputs()
    got = fused_linear_cross_entropy(
        hidden, weight, targets, reduction=reduction, label_smoothing=label_smoothing, chunk_size=chunk_size
    )
    want = F.cross_entropy(hidden @ weight.T, targets, reduction=reduction, label_smoothing=label_smoothing)
    for a, b in zip(
        value_and_grads(got, (hidden, weight)), value_and_grads(want, (hidden, weight)), strict=True
    ):
        assert rel_err(a, b) < 1e-10


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_z_loss_and_softcap_match_naive(reduction):
    hidden, weight, targets = make_inputs()
    options = {"label_smoothing": 0.05, "z_loss": 1e-3, "softcap": 2.5}
    got = fused_linear_cross_entropy(hidden, weight, targets, reduction=reduction, chunk_size=10, **options)
    want = naive_loss(hidden, weight, targets, reduction, **options)
    for a, b in zip(
        value_and_grads(got, (hidden, weight)), value_and_grads(want, (hidden, weight)), strict=True
    ):
        assert rel_err(a, b) < 1e-10


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_gradcheck_with_every_option(reduction):
    hidden, weight, targets = make_inputs(n=9, h=6, v=23, ignored=(2,))
    torch.autograd.gradcheck(
        lambda h, w: fused_linear_cross_entropy(
            h, w, targets, reduction=reduction, label_smoothing=0.1, z_loss=1e-2, softcap=3.0, chunk_size=4
        ),
        (hidden, weight),
    )


def test_cross_entropy_custom_ignore_index_and_int32_targets():
    hidden, weight, targets = make_inputs()
    targets = torch.where(targets == -100, 7, targets).to(torch.int32)
    got = fused_linear_cross_entropy(hidden, weight, targets, ignore_index=7)
    want = F.cross_entropy(hidden @ weight.T, targets.long(), ignore_index=7)
    assert rel_err(got, want) < 1e-12


def test_all_ignored_rows_give_zero_loss_and_zero_gradients():
    hidden, weight, targets = make_inputs(n=4)
    targets[:] = -100
    for reduction in ("mean", "sum"):
        loss = fused_linear_cross_entropy(hidden, weight, targets, reduction=reduction)
        grads = torch.autograd.grad(loss, (hidden, weight))
        assert loss.item() == 0.0
        assert all(bool((g == 0).all()) for g in grads)


def test_non_contiguous_hidden():
    hidden, weight, targets = make_inputs()
    leaf = hidden.detach().T.contiguous().requires_grad_()  # [H, N]: its transpose is a strided view
    got = fused_linear_cross_entropy(leaf.T, weight, targets, chunk_size=5)
    want = F.cross_entropy(leaf.T @ weight.T, targets)
    for a, b in zip(value_and_grads(got, (leaf, weight)), value_and_grads(want, (leaf, weight)), strict=True):
        assert rel_err(a, b) < 1e-10


def test_empty_batch_gives_zero_loss_and_zero_gradients():
    hidden, weight, targets = make_inputs(n=0)
    for reduction in ("mean", "sum"):
        loss = fused_linear_cross_entropy(hidden, weight, targets, reduction=reduction)
        grads = torch.autograd.grad(loss, (hidden, weight))
        assert loss.item() == 0.0 and grads[0].shape == (0, H)
        assert bool((grads[1] == 0).all())
    assert token_logprobs(hidden, weight, targets).shape == (0,)


def test_no_grad_and_frozen_weight_paths():
    hidden, weight, targets = make_inputs()
    want = F.cross_entropy(hidden @ weight.T, targets)
    with torch.no_grad():
        loss = fused_linear_cross_entropy(hidden, weight, targets)
    assert loss.grad_fn is None and rel_err(loss, want) < 1e-12
    frozen = weight.detach()
    loss = fused_linear_cross_entropy(hidden, frozen, targets)
    (grad_hidden,) = torch.autograd.grad(loss, hidden)
    (want_hidden,) = torch.autograd.grad(F.cross_entropy(hidden @ frozen.T, targets), hidden)
    assert rel_err(grad_hidden, want_hidden) < 1e-10


def test_upstream_gradient_scales_the_precomputed_gradients():
    hidden, weight, targets = make_inputs()
    got = torch.autograd.grad(3.5 * fused_linear_cross_entropy(hidden, weight, targets), (hidden, weight))
    want = torch.autograd.grad(3.5 * F.cross_entropy(hidden @ weight.T, targets), (hidden, weight))
    assert all(rel_err(a, b) < 1e-10 for a, b in zip(got, want, strict=True))


def test_bf16_inputs_keep_their_dtype_and_stay_close_to_fp32():
    hidden, weight, targets = make_inputs(dtype=torch.float32)
    hb, wb = hidden.detach().bfloat16().requires_grad_(), weight.detach().bfloat16().requires_grad_()
    loss = fused_linear_cross_entropy(hb, wb, targets)
    grad_h, grad_w = torch.autograd.grad(loss, (hb, wb))
    want = F.cross_entropy(hidden @ weight.T, targets)
    want_h, want_w = torch.autograd.grad(want, (hidden, weight))
    assert loss.dtype == torch.float32 and grad_h.dtype == grad_w.dtype == torch.bfloat16
    assert rel_err(loss, want) < 2e-2
    assert rel_err(grad_h.float(), want_h) < 5e-2 and rel_err(grad_w.float(), want_w) < 5e-2


@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("softcap", [None, 4.0])
def test_token_logprobs_match_log_softmax(temperature, softcap):
    hidden, weight, tokens = make_inputs()
    got = token_logprobs(hidden, weight, tokens, temperature=temperature, softcap=softcap, chunk_size=8)
    logits = hidden @ weight.T
    if softcap is not None:
        logits = softcap * torch.tanh(logits / softcap)
    valid = tokens != -100
    picked = torch.log_softmax(logits / temperature, dim=1).gather(1, tokens.clamp_min(0)[:, None])[:, 0]
    want = torch.where(valid, picked, 0.0)
    assert bool((got[~valid] == 0).all())
    for a, b in zip(
        value_and_grads(got, (hidden, weight)), value_and_grads(want, (hidden, weight)), strict=True
    ):
        assert rel_err(a, b) < 1e-10


def test_token_logprobs_gradcheck():
    hidden, weight, tokens = make_inputs(n=7, h=5, v=19, ignored=(0,))
    torch.autograd.gradcheck(
        lambda h, w: token_logprobs(h, w, tokens, temperature=0.6, softcap=3.0, chunk_size=3),
        (hidden, weight),
    )


@pytest.mark.parametrize("shape", [(37, 48), (1, 130), (2, 5, 48)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rms_norm_matches_f_rms_norm(shape, dtype):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g, dtype=dtype).requires_grad_()
    weight = torch.randn(shape[-1], generator=g, dtype=dtype).requires_grad_()
    got = rms_norm(x, weight, eps=1e-5)
    want = F.rms_norm(x, (shape[-1],), weight, eps=1e-5)
    tol = 1e-6 if dtype == torch.float32 else 1e-12
    for a, b in zip(value_and_grads(got, (x, weight)), value_and_grads(want, (x, weight)), strict=True):
        assert rel_err(a, b) < tol


def test_rms_norm_bf16_computes_in_fp32():
    x = torch.randn(4, 64, dtype=torch.bfloat16) * 50
    weight = torch.rand(64, dtype=torch.bfloat16)
    got = rms_norm_torch(x, weight)
    want = F.rms_norm(x.float(), (64,), weight.float(), eps=1e-6)
    assert got.dtype == torch.bfloat16 and rel_err(got.float(), want) < 1e-2


def test_chunks_are_balanced_and_within_budget():
    for n, v in [(8192, 128256), (37, 1003), (1, 7), (100_000, 32000)]:
        rows = chunk_rows(n, v, "torch", None)
        n_chunks = -(-n // rows)
        assert rows * v <= max(CHUNK_ELEMENTS["torch"], v)
        assert n_chunks * rows - n < n_chunks  # the last chunk is short by less than one row per chunk
    assert chunk_rows(50, 10, "torch", 3) == 3


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda h, w, t: fused_linear_cross_entropy(h, w, torch.full_like(t, V)), "outside"),
        (lambda h, w, t: fused_linear_cross_entropy(h, w, torch.full_like(t, -3)), "outside"),
        (lambda h, w, t: fused_linear_cross_entropy(h, w[:, :5], t), "mismatch"),
        (lambda h, w, t: fused_linear_cross_entropy(h, w.float(), t), "dtypes differ"),
        (lambda h, w, t: fused_linear_cross_entropy(h, w, t[:5]), "targets must be"),
        (lambda h, w, t: fused_linear_cross_entropy(h, w, t.float()), "int32 or int64"),
        (lambda h, w, t: fused_linear_cross_entropy(h, w, t, reduction="avg"), "reduction"),
        (lambda h, w, t: fused_linear_cross_entropy(h, w, t, label_smoothing=1.5), "label_smoothing"),
        (lambda h, w, t: fused_linear_cross_entropy(h, w, t, softcap=0.0), "softcap"),
        (lambda h, w, t: fused_linear_cross_entropy(h, w, t, chunk_size=0), "chunk_size"),
        (lambda h, w, t: fused_linear_cross_entropy(h, w, t, backend="cuda"), "backend"),
        (lambda h, w, t: token_logprobs(h, w, t, temperature=0.0), "temperature"),
        (lambda h, w, t: rms_norm(h, w[0, :5]), "weight must be"),
    ],
)
def test_bad_input_gets_a_clear_error(call, message):
    hidden, weight, targets = make_inputs()
    with pytest.raises(ValueError, match=message):
        call(hidden, weight, targets)


def test_cpu_tensors_default_to_the_torch_reference():
    hidden, weight, targets = make_inputs()
    assert resolve_backend(None, hidden, weight, targets) == "torch"
    assert resolve_backend("torch", hidden) == "torch"


def test_forcing_triton_on_cpu_without_the_interpreter_is_a_clear_error():
    pytest.importorskip("triton")
    script = (
        "import torch, kernels\n"
        "try:\n"
        "    kernels.rms_norm(torch.ones(2, 3), torch.ones(3), backend='triton')\n"
        "except RuntimeError as err:\n"
        "    print(err)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = str(REPO)
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "TRITON_INTERPRET=1" in out.stdout
