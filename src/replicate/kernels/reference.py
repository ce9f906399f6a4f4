"""Pure-PyTorch reference ops: the CPU path, the torch backend and the test oracle for the Triton kernels.

Every function here is twice differentiable (the theory module takes Hessian-vector products through them).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def layernorm_modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """LN(x) * (1 + scale) + shift, LayerNorm without affine. x (B, S, D); shift, scale (B, D)."""
    return torch.addcmul(shift[:, None, :], F.layer_norm(x, x.shape[-1:], eps=eps), 1 + scale[:, None, :])


def gated_residual(x: torch.Tensor, gate: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """x + gate * y with gate (B, D) broadcast over the sequence. x, y (B, S, D)."""
    return torch.addcmul(x, gate[:, None, :], y)


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    """GELU with the tanh approximation (as in DiT's MLP)."""
    return F.gelu(x, approximate="tanh")


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Non-causal softmax attention, softmax(q k^T / sqrt(Dh)) v. q, k, v (B, H, S, Dh) -> (B, H, S, Dh).

    Written out (not SDPA) so that it has a double backward on every device; the tests compare it with
    F.scaled_dot_product_attention.
    """
    scores = (q * (1.0 / math.sqrt(q.shape[-1]))) @ k.transpose(-2, -1)  # (B, H, S, S); scaling q is cheaper
    return torch.softmax(scores, dim=-1) @ v
