"""The PyTorch reference ops against the catalog's independent formulations, values and gradients in fp64,
including the double backward that the noise-scale measurements need."""

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from replicate.kernels import OPS, ExampleInputs, reference


@pytest.mark.parametrize("name", sorted(OPS))
def test_reference_matches_the_formula(name):
    op, gen = OPS[name], torch.Generator().manual_seed(0)
    args = [
        a.detach().clone().requires_grad_()
        for a in op.example(
            ExampleInputs(lambda shape: torch.randn(*shape, generator=gen, dtype=torch.float64), 2, 17, 48, 3)
        )
    ]
    out, want = op.reference(*args), op.formula(*args)
    outs, wants = (out, want) if isinstance(out, tuple) else ((out,), (want,))
    weights = [torch.randn(o.shape, generator=gen, dtype=torch.float64) for o in outs]
    for o, w in zip(outs, wants, strict=True):
        torch.testing.assert_close(o, w)
    got = torch.autograd.grad(sum((o * w).sum() for o, w in zip(outs, weights, strict=True)), args)
    exp = torch.autograd.grad(sum((o * w).sum() for o, w in zip(wants, weights, strict=True)), args)
    for g, e in zip(got, exp, strict=True):
        torch.testing.assert_close(g, e)


def test_attention_has_a_double_backward_under_the_math_backend():
    q, k, v = (torch.randn(1, 2, 9, 16, dtype=torch.float64, requires_grad=True) for _ in range(3))
    with sdpa_kernel(SDPBackend.MATH):
        (g,) = torch.autograd.grad(reference.attention(q, k, v).pow(2).sum(), q, create_graph=True)
        (hv,) = torch.autograd.grad(g.sum(), q)
    (g2,) = torch.autograd.grad(OPS["attention"].formula(q, k, v).pow(2).sum(), q, create_graph=True)
    (hv2,) = torch.autograd.grad(g2.sum(), q)
    torch.testing.assert_close(hv, hv2)
