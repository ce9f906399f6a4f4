"""Pure-PyTorch reference ops: the CPU path, the torch backend and the test oracle for the Triton kernels; and
each op written out from its definition (`formula_*`), independent of the reference: the float64 truth that
the tests and chapter 2 hold both the reference and the kernels to.

Every function here is twice differentiable; for attention that needs SDPA's math backend
(``torch.nn.attention.sdpa_kernel(SDPBackend.MATH)``), as its fused CPU and GPU kernels have no double backward.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def layernorm_modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """LN(x) * (1 + scale) + shift, LayerNorm without affine. x (B, S, D); shift, scale (B, D)."""
    return torch.addcmul(shift[:, None, :], F.layer_norm(x, x.shape[-1:], eps=eps), 1 + scale[:, None, :])


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    """GELU with the tanh approximation (as in DiT's MLP)."""
    return F.gelu(x, approximate="tanh")


def linear_gelu(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """gelu_tanh(x @ w + b) per member: x (E, M, K), w (E, K, N), b (E, N) -> (E, M, N) (the ensemble's fc1)."""
    return gelu_tanh(torch.baddbmm(b[:, None, :], x, w))


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Non-causal softmax attention, softmax(q k^T / sqrt(Dh)) v. q, k, v (B, H, S, Dh) -> (B, H, S, Dh).

    PyTorch's SDPA: its fused CPU kernel keeps the (S, S) scores out of memory (faster on the CPU than the
    written-out softmax, formula_attention below, the tests' independent formulation).
    """
    return F.scaled_dot_product_attention(q, k, v)


def gated_residual_layernorm_modulate(
    x: torch.Tensor, gate: torch.Tensor, y: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor, eps: float = 1e-6
) -> tuple[torch.Tensor, torch.Tensor]:
    """(r, LN-modulate(r)) with r = x + gate * y (gate (B, D) broadcast over the sequence): the residual stream
    and the next op's normalised input."""
    r = torch.addcmul(x, gate[:, None, :], y)
    return r, layernorm_modulate(r, shift, scale, eps)


# Written out from the definitions, independent of the references above (the tests' float64 truth)


def formula_layernorm_modulate(
    x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor, eps: float = 1e-6
) -> torch.Tensor:
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * (1 + scale[:, None]) + shift[:, None]


def formula_gated_residual_layernorm_modulate(
    x: torch.Tensor, gate: torch.Tensor, y: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    r = x + gate[:, None] * y
    return r, formula_layernorm_modulate(r, shift, scale)


def formula_gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


def formula_linear_gelu(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return formula_gelu_tanh(torch.einsum("emk,ekn->emn", x, w) + b[:, None, :])


def formula_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1) @ v
