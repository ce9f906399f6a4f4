"""The PyTorch reference ops against independent formulations, values and gradients, including the double
backward that the noise-scale measurements need."""

import math

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from replicate.kernels import reference


def _explicit_attention(q, k, v):
    return torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1) @ v


def _manual_layernorm_modulate(x, shift, scale, eps=1e-6):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * (1 + scale[:, None]) + shift[:, None]


def _check(fn, oracle, *shapes):
    gen = torch.Generator().manual_seed(0)
    args = [torch.randn(*s, generator=gen, dtype=torch.float64, requires_grad=True) for s in shapes]
    out, want = fn(*args), oracle(*args)
    torch.testing.assert_close(out, want)
    w = torch.randn(out.shape, generator=gen, dtype=torch.float64)
    got = torch.autograd.grad((out * w).sum(), args)
    exp = torch.autograd.grad((want * w).sum(), args)
    for g, e in zip(got, exp, strict=True):
        torch.testing.assert_close(g, e)


def test_attention_matches_explicit_softmax():
    _check(reference.attention, _explicit_attention, (2, 3, 17, 16), (2, 3, 17, 16), (2, 3, 17, 16))


def test_layernorm_modulate_matches_manual():
    _check(reference.layernorm_modulate, _manual_layernorm_modulate, (2, 5, 48), (2, 48), (2, 48))


def test_gated_residual_and_gelu():
    _check(reference.gated_residual, lambda x, g, y: x + g[:, None] * y, (2, 5, 48), (2, 48), (2, 5, 48))
    _check(reference.gelu_tanh,
           lambda x: 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3))), (7, 33))


def test_attention_has_a_double_backward_under_the_math_backend():
    q, k, v = (torch.randn(1, 2, 9, 16, dtype=torch.float64, requires_grad=True) for _ in range(3))
    with sdpa_kernel(SDPBackend.MATH):
        (g,) = torch.autograd.grad(reference.attention(q, k, v).pow(2).sum(), q, create_graph=True)
        (hv,) = torch.autograd.grad(g.sum(), q)
    (g2,) = torch.autograd.grad(_explicit_attention(q, k, v).pow(2).sum(), q, create_graph=True)
    (hv2,) = torch.autograd.grad(g2.sum(), q)
    torch.testing.assert_close(hv, hv2)
