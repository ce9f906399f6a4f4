"""The DiT block's hot ops behind one backend switch.

backend "torch" runs the references in :mod:`replicate.kernels.reference` (also the CPU path and the
test oracle); "triton" runs the Triton kernels; "auto" picks Triton for CUDA tensors and torch otherwise.
"""

from __future__ import annotations

import torch

from replicate.errors import ConfigError
from replicate.kernels import reference

BACKENDS = ("auto", "torch", "triton")


def check_backend(backend: str) -> str:
    """`backend` if it names a backend, else a ValueError."""
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    return backend


def resolve_backend(backend: str, x: torch.Tensor) -> str:
    """The implementation ("torch" or "triton") that `backend` selects for tensor x."""
    if check_backend(backend) == "triton":
        raise NotImplementedError("the triton backend is not implemented yet: use backend 'torch' or 'auto'")
    return "torch"


def layernorm_modulate(
    x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor, eps: float = 1e-6, backend: str = "auto"
) -> torch.Tensor:
    """LN(x) * (1 + scale) + shift (LayerNorm without affine). x (B, S, D); shift, scale (B, D)."""
    resolve_backend(backend, x)
    return reference.layernorm_modulate(x, shift, scale, eps)


def gated_residual(x: torch.Tensor, gate: torch.Tensor, y: torch.Tensor, backend: str = "auto") -> torch.Tensor:
    """x + gate[:, None, :] * y. x, y (B, S, D); gate (B, D)."""
    resolve_backend(backend, x)
    return reference.gated_residual(x, gate, y)


def gelu_tanh(x: torch.Tensor, backend: str = "auto") -> torch.Tensor:
    """GELU, tanh approximation."""
    resolve_backend(backend, x)
    return reference.gelu_tanh(x)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, backend: str = "auto") -> torch.Tensor:
    """Non-causal softmax attention. q, k, v (B, H, S, Dh) -> (B, H, S, Dh)."""
    resolve_backend(backend, q)
    return reference.attention(q, k, v)
