"""The DiT block's hot ops behind one backend switch.

backend "torch" runs the references in :mod:`replicate.kernels.reference` (also the CPU path and the test
oracle); "triton" runs the Triton kernels, one module per op (``modulate``, ``gelu``, ``flash_attention``);
"auto" picks Triton for CUDA tensors and torch otherwise. ``catalog.OPS`` lists every op with its reference,
an independent formulation, example inputs and its cost. "triton" on CPU tensors runs on Triton's interpreter
(TRITON_INTERPRET=1, as the tests do) and is refused otherwise. The Triton ops are differentiable once;
double backward (the noise-scale measurements) needs backend "torch".

The kernel modules are imported on first use: importing this package compiles nothing, queries no driver,
and reads TRITON_INTERPRET (which @triton.jit reads when a kernel module is imported) as late as possible.
"""

from __future__ import annotations

import torch

from replicate.errors import ConfigError
from replicate.kernels import reference

BACKENDS = ("auto", "torch", "triton")
ATTENTION_HEAD_DIMS = (16, 32, 64, 128)  # the Triton kernel's; "auto" falls back to torch for others


def check_backend(backend: str) -> str:
    """`backend` if it names a backend, else a ConfigError."""
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    return backend


def resolve_backend(backend: str, x: torch.Tensor) -> str:
    """The implementation ("torch" or "triton") that `backend` selects for tensor x."""
    if check_backend(backend) == "auto":
        return "triton" if x.is_cuda else "torch"
    if backend == "triton":
        from replicate.kernels._triton import check_device

        check_device(x)
    return backend


def layernorm_modulate(
    x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor, eps: float = 1e-6, backend: str = "auto"
) -> torch.Tensor:
    """LN(x) * (1 + scale) + shift (LayerNorm without affine). x (B, S, D); shift, scale (B, D)."""
    if resolve_backend(backend, x) == "triton":
        from replicate.kernels import modulate

        return modulate.layernorm_modulate(x, shift, scale, eps)
    return reference.layernorm_modulate(x, shift, scale, eps)


def gated_residual_layernorm_modulate(
    x: torch.Tensor,
    gate: torch.Tensor,
    y: torch.Tensor,
    shift: torch.Tensor,
    scale: torch.Tensor,
    eps: float = 1e-6,
    backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """(r, LN(r) * (1 + scale) + shift) with r = x + gate[:, None, :] * y: the residual stream and the next
    op's input, in one pass on Triton. Under CUDA autocast the second output is in the autocast dtype (it
    only feeds a matmul)."""
    if resolve_backend(backend, x) == "triton":
        from replicate.kernels import modulate

        return modulate.gated_residual_layernorm_modulate(x, gate, y, shift, scale, eps)
    return reference.gated_residual_layernorm_modulate(x, gate, y, shift, scale, eps)


def gelu_tanh(x: torch.Tensor, backend: str = "auto") -> torch.Tensor:
    """GELU, tanh approximation."""
    if resolve_backend(backend, x) == "triton":
        from replicate.kernels import gelu

        return gelu.gelu_tanh(x)
    return reference.gelu_tanh(x)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, backend: str = "auto") -> torch.Tensor:
    """Non-causal softmax attention. q, k, v (B, H, S, Dh) -> (B, H, S, Dh); Triton takes Dh in
    ATTENTION_HEAD_DIMS, and "auto" uses torch for other head dims."""
    if resolve_backend(backend, q) == "triton" and (backend == "triton" or q.shape[-1] in ATTENTION_HEAD_DIMS):
        from replicate.kernels import flash_attention

        return flash_attention.attention(q, k, v)
    return reference.attention(q, k, v)
