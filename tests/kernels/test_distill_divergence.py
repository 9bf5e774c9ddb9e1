"""The chunked distillation divergences against a plain full-logits implementation (values and student gradients,
fp32, relative error < 1e-4, odd sizes, temperature), JSD's endpoints, padded head rows, self-distillation,
the offline top-K form, and the Triton row op under the interpreter."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from kernels import distill_divergence, divergence_from_logits, topk_divergence
from kernels.backend import triton_installed, triton_ops
from kernels.distill import DivergenceOptions, bucket_logprobs, divergence_rows_torch

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
TOL = 1e-4
N, HS, HT, V = 37, 24, 40, 1003  # odd everywhere; the teacher is wider than the student
LOSSES = [("forward_kl", 0.5), ("reverse_kl", 0.5), ("jsd", 0.5), ("jsd", 0.1), ("jsd", 0.9)]
BACKENDS = [
    "torch",
    pytest.param("triton", marks=pytest.mark.skipif(not triton_installed(), reason="no triton")),
]


def rel_err(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got - want).detach().norm() / want.detach().norm().clamp_min(1e-30))


def make_inputs(n=N, pad_student=5, pad_teacher=9, seed=0, sharp=2.0):
    """Student and teacher hidden states and heads; both heads padded beyond the V real rows, differently."""
    g = torch.Generator().manual_seed(seed)
    s_hidden = torch.randn(n, HS, generator=g)
    s_weight = torch.randn(V + pad_student, HS, generator=g) / HS**0.5
    t_hidden = torch.randn(n, HT, generator=g)
    t_weight = torch.randn(V + pad_teacher, HT, generator=g) * sharp / HT**0.5
    return [t.to(DEVICE) for t in (s_hidden, s_weight, t_hidden, t_weight)]


def plain(s_hidden, s_weight, t_hidden, t_weight, loss, beta, temperature):
    """What users write: both full logits over the real vocabulary, the divergence per row."""
    return divergence_from_logits(
        s_hidden @ s_weight[:V].T, t_hidden @ t_weight[:V].T, loss, beta, temperature
    )


def value_and_grads(fn, s_hidden, s_weight, seed=1):
    h, w = s_hidden.clone().requires_grad_(), s_weight.clone().requires_grad_()
    out = fn(h, w)
    upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed)).to(out.device)
    return (out.detach(), *torch.autograd.grad(out, (h, w), upstream))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("loss", "beta"), LOSSES, ids=lambda v: str(v))
@pytest.mark.parametrize("reduction", ["sum", "none"])
def test_chunked_divergence_matches_full_logits(backend, loss, beta, reduction) -> None:
    s_hidden, s_weight, t_hidden, t_weight = make_inputs()
    temperature = 0.7

    def chunked(h, w):
        return distill_divergence(
            h, w, t_hidden, t_weight, loss, beta=beta, temperature=temperature, reduction=reduction,
            vocab_size=V, backend=backend, chunk_size=10,
        )  # fmt: skip

    def reference(h, w):
        rows = plain(h, w, t_hidden, t_weight, loss, beta, temperature)
        return rows.sum() if reduction == "sum" else rows

    got, want = value_and_grads(chunked, s_hidden, s_weight), value_and_grads(reference, s_hidden, s_weight)
    for a, b in zip(got, want, strict=True):
        assert rel_err(a, b) < TOL
    assert float(got[2][V:].abs().max()) == 0.0  # padded head rows: outside every distribution, no gradient


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_default_chunking_and_mean(reduction) -> None:
    s_hidden, s_weight, t_hidden, t_weight = make_inputs(n=130)

    def chunked(h, w):
        return distill_divergence(
            h, w, t_hidden, t_weight, "jsd", temperature=1.3, reduction=reduction, vocab_size=V
        )

    def reference(h, w):
        rows = plain(h, w, t_hidden, t_weight, "jsd", 0.5, 1.3)
        return rows.mean() if reduction == "mean" else rows.sum()

    for a, b in zip(value_and_grads(chunked, s_hidden, s_weight), value_and_grads(reference, s_hidden, s_weight), strict=True):  # fmt: skip
        assert rel_err(a, b) < TOL


def test_jsd_endpoints_are_the_two_kls() -> None:
    """β = 0 is forward KL(teacher ‖ student), β = 1 reverse KL(student ‖ teacher) (GKD/TRL's convention), and
    the mixture formula tends to β·KL(T‖S) and (1 − β)·KL(S‖T) next to them."""
    s_hidden, s_weight, t_hidden, t_weight = make_inputs()
    s_logits, t_logits = s_hidden @ s_weight[:V].T, t_hidden @ t_weight[:V].T
    log_s, log_t = F.log_softmax(s_logits.double(), -1), F.log_softmax(t_logits.double(), -1)
    forward = (log_t.exp() * (log_t - log_s)).sum(-1)  # written out by hand, in fp64
    reverse = (log_s.exp() * (log_s - log_t)).sum(-1)
    args = (s_hidden, s_weight, t_hidden, t_weight)
    for beta, want in ((0.0, forward), (1.0, reverse)):
        got = distill_divergence(*args, "jsd", beta=beta, reduction="none", vocab_size=V)
        assert rel_err(got.double(), want) < TOL
    assert (
        rel_err(distill_divergence(*args, "forward_kl", reduction="none", vocab_size=V).double(), forward)
        < TOL
    )
    assert (
        rel_err(distill_divergence(*args, "reverse_kl", reduction="none", vocab_size=V).double(), reverse)
        < TOL
    )
    eps = 1e-7
    near0 = divergence_from_logits(s_logits.double(), t_logits.double(), "jsd", eps) / eps
    near1 = divergence_from_logits(s_logits.double(), t_logits.double(), "jsd", 1 - eps) / eps
    assert rel_err(near0, forward) < 1e-3 and rel_err(near1, reverse) < 1e-3


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("loss", "beta"), LOSSES[:3], ids=lambda v: str(v))
def test_self_distillation_has_zero_loss_and_zero_gradient(backend, loss, beta) -> None:
    s_hidden, s_weight, _, _ = make_inputs()
    h, w = s_hidden.clone().requires_grad_(), s_weight.clone().requires_grad_()
    out = distill_divergence(h, w, s_hidden, s_weight, loss, beta=beta, temperature=0.8, backend=backend)
    out.backward()
    assert abs(float(out.detach())) < 1e-5
    assert float(h.grad.abs().max()) < 1e-6 and float(w.grad.abs().max()) < 1e-6


def test_bad_inputs_are_refused_with_clear_messages() -> None:
    s_hidden, s_weight, t_hidden, t_weight = make_inputs()
    with pytest.raises(ValueError, match="pass vocab_size"):
        distill_divergence(s_hidden, s_weight, t_hidden, t_weight)  # heads of different sizes
    with pytest.raises(ValueError, match="vocab_size"):
        distill_divergence(s_hidden, s_weight, t_hidden, t_weight, vocab_size=V + 7)
    with pytest.raises(ValueError, match="rows"):
        distill_divergence(s_hidden[:3], s_weight, t_hidden, t_weight, vocab_size=V)
    with pytest.raises(ValueError, match="loss must be one of"):
        distill_divergence(s_hidden, s_weight, t_hidden, t_weight, "kl", vocab_size=V)
    with pytest.raises(ValueError, match="beta"):
        distill_divergence(s_hidden, s_weight, t_hidden, t_weight, "jsd", beta=1.5, vocab_size=V)


@pytest.mark.parametrize(("loss", "beta"), LOSSES[:3], ids=lambda v: str(v))
def test_topk_divergence_is_the_divergence_over_k_tokens_and_a_tail(loss, beta) -> None:
    """With K = V the tail is empty and the offline form equals the full divergence; with K < V it equals the
    divergence of both distributions collapsed to K tokens plus one tail bucket, written by hand."""
    s_hidden, s_weight, t_hidden, t_weight = make_inputs()
    t_logprobs = F.log_softmax(t_hidden @ t_weight[:V].T, dim=-1)
    full_values, full_ids = t_logprobs.topk(V)
    got = topk_divergence(
        s_hidden, s_weight, full_ids, full_values, loss, beta=beta, reduction="none", vocab_size=V
    )
    want = plain(s_hidden, s_weight, t_hidden, t_weight, loss, beta, 1.0)
    assert rel_err(got, want) < TOL

    k = 17
    values, ids = t_logprobs.topk(k)

    def offline(h, w):
        return topk_divergence(
            h, w, ids, values, loss, beta=beta, reduction="none", vocab_size=V, chunk_size=8
        )

    def by_hand(h, w):
        log_s = F.log_softmax(h @ w[:V].T, dim=-1)
        s_top = log_s.gather(1, ids)
        s_buckets = torch.cat((s_top, torch.log1p(-s_top.exp().sum(-1, keepdim=True))), dim=-1)
        t_buckets = torch.cat((values, torch.log1p(-values.exp().sum(-1, keepdim=True))), dim=-1)
        opts = DivergenceOptions(loss, beta)
        from kernels.distill import divergence_from_logprobs

        return divergence_from_logprobs(s_buckets, t_buckets, opts)

    for a, b in zip(value_and_grads(offline, s_hidden, s_weight), value_and_grads(by_hand, s_hidden, s_weight), strict=True):  # fmt: skip
        assert rel_err(a, b) < TOL
    buckets = bucket_logprobs(values)
    assert torch.allclose(buckets.exp().sum(-1), torch.ones(N, device=DEVICE), atol=1e-5)


@pytest.mark.skipif(not triton_installed(), reason="no triton")
@pytest.mark.parametrize(
    ("loss", "beta", "block_v"),  # block_v 128: several vocabulary tiles and a ragged last one
    [("forward_kl", 0.5, None), ("reverse_kl", 0.5, None), ("jsd", 0.3, None), ("jsd", 0.7, 128)],
    ids=lambda v: str(v),
)
def test_triton_row_op_matches_torch_row_op(loss, beta, block_v) -> None:
    if DEVICE == "cpu":
        assert triton_ops().INTERPRETED, "kernels.triton_ops was imported before TRITON_INTERPRET=1 was set"
    g = torch.Generator().manual_seed(2)
    s_logits = (torch.randn(9, V, generator=g) * 3).to(DEVICE)
    t_logits = (torch.randn(9, V, generator=g) * 5).to(DEVICE)
    grad_scale = torch.randn(9, generator=g).to(DEVICE)
    opts = DivergenceOptions(loss, beta, temperature=0.6)
    got_s, want_s = s_logits.clone(), s_logits.clone()
    got = triton_ops().divergence_rows_triton(got_s, t_logits, opts, grad_scale, block_v=block_v)
    want = divergence_rows_torch(want_s, t_logits, opts, grad_scale)
    assert rel_err(got, want) < TOL and rel_err(got_s, want_s) < TOL
    loss_only = triton_ops().divergence_rows_triton(s_logits.clone(), t_logits, opts, block_v=block_v)
    assert rel_err(loss_only, want) < TOL
