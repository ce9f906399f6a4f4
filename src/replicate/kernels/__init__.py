"""The DiT block's hot ops behind one backend switch.

backend "torch" runs the references in :mod:`replicate.kernels.reference` (also the CPU path and the test
oracle); "triton" runs the Triton kernels, one module per op (``modulate``, ``gelu``, ``linear`` for
linear_gelu, ``clip_attention`` for clips of at most 64 tokens, ``flash_attention`` with its backward kernels
in ``flash_attention_bwd``; the two attention kernels' shared host pieces in ``_attention``);
"auto" picks Triton for an op on CUDA tensors only where the kernel benchmark measured it faster than eager
PyTorch on a GPU (TRITON_FASTER), and torch otherwise. ``OPS`` (below) lists every op with its reference,
an independent formulation, example inputs and its cost. "triton" on CPU tensors runs on Triton's interpreter
(TRITON_INTERPRET=1, as the tests do) and is refused otherwise. The Triton ops are differentiable once;
double backward (the noise-scale measurements) needs backend "torch".

The kernel modules are imported on first use: importing this package compiles nothing, queries no driver,
and reads TRITON_INTERPRET (which @triton.jit reads when a kernel module is imported) as late as possible.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from replicate.config import BACKENDS
from replicate.errors import ConfigError
from replicate.kernels import reference

ATTENTION_HEAD_DIMS = (16, 32, 64, 128)  # the Triton kernel's; "auto" falls back to torch for others
# Ops whose Triton kernel ran faster than eager PyTorch at every shape benchmarks/kernels.py measured on a GPU
# whose device call's preflight verified it against its reference (results/benchmarks/kernels.csv and
# device_steps.jsonl; test_kernels holds this set to them): "auto" takes PyTorch's ops for the others.
TRITON_FASTER: frozenset[str] = frozenset()


def check_backend(backend: str) -> str:
    """`backend` if it names a backend, else a ConfigError."""
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    return backend


def resolve_backend(backend: str, x: torch.Tensor, op: str) -> str:
    """The implementation ("torch" or "triton") that `backend` selects for op `op` on tensor x."""
    if check_backend(backend) == "auto":
        return "triton" if x.is_cuda and op in TRITON_FASTER else "torch"
    if backend == "triton":
        from replicate.kernels._triton import check_device

        check_device(x)
    return backend


def layernorm_modulate(
    x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor, eps: float = 1e-6, backend: str = "auto"
) -> torch.Tensor:
    """LN(x) * (1 + scale) + shift (LayerNorm without affine). x (B, S, D); shift, scale (B, D)."""
    if resolve_backend(backend, x, "layernorm_modulate") == "triton":
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
    if resolve_backend(backend, x, "gated_residual_layernorm_modulate") == "triton":
        from replicate.kernels import modulate

        return modulate.gated_residual_layernorm_modulate(x, gate, y, shift, scale, eps)
    return reference.gated_residual_layernorm_modulate(x, gate, y, shift, scale, eps)


def gelu_tanh(x: torch.Tensor, backend: str = "auto") -> torch.Tensor:
    """GELU, tanh approximation."""
    if resolve_backend(backend, x, "gelu_tanh") == "triton":
        from replicate.kernels import gelu

        return gelu.gelu_tanh(x)
    return reference.gelu_tanh(x)


def linear_gelu(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, backend: str = "auto") -> torch.Tensor:
    """gelu_tanh(x @ w + b) for E stacked linear layers: x (E, M, K), w (E, K, N), b (E, N) -> (E, M, N); on
    Triton one kernel with the bias and GELU in the matmul's epilogue."""
    if resolve_backend(backend, x, "linear_gelu") == "triton":
        from replicate.kernels import linear

        return linear.linear_gelu(x, w, b)
    return reference.linear_gelu(x, w, b)


def linear_gelu_layer(x: torch.Tensor, layer: torch.nn.Module, backend: str = "auto") -> torch.Tensor:
    """gelu_tanh(layer(x)) for an nn.Linear, or an ensemble's stacked layer (replicate.training.ensemble.
    EnsembleLinear), x (B, S, K): on Triton linear_gelu's one kernel, the bias and GELU in the matmul's epilogue;
    on torch the layer's own matmul, then gelu_tanh."""
    if resolve_backend(backend, x, "linear_gelu") == "triton":
        w, b = stacked_linear(layer)
        h = linear_gelu(x.reshape(w.shape[0], -1, x.shape[-1]), w, b, backend="triton")
        return h.reshape(*x.shape[:-1], -1)
    return gelu_tanh(layer(x), backend=backend)


def stacked_linear(layer: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """A linear layer as E stacked ones: the (E, in, out) weight and (E, out) bias of an ensemble's layer
    (EnsembleLinear, whose members multiply consecutive row blocks), nn.Linear's as E = 1."""
    if isinstance(layer, torch.nn.Linear):
        return layer.weight.t()[None], layer.bias[None]
    return layer.weight, layer.bias


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, backend: str = "auto") -> torch.Tensor:
    """Non-causal softmax attention. q, k, v (B, H, S, Dh) -> (B, H, S, Dh); Triton takes Dh in
    ATTENTION_HEAD_DIMS (and "auto" uses torch for other head dims): a whole clip per program up to
    clip_attention.CLIP_MAX_SEQ tokens, flash attention beyond."""
    if resolve_backend(backend, q, "attention") == "triton" and (
        backend == "triton" or q.shape[-1] in ATTENTION_HEAD_DIMS
    ):
        from replicate.kernels import clip_attention, flash_attention

        short = q.shape[2] <= clip_attention.CLIP_MAX_SEQ
        return (clip_attention if short else flash_attention).attention(q, k, v)
    return reference.attention(q, k, v)


# The op catalog: every op the model calls through the switch (linear_gelu through linear_gelu_layer), and the
# gated residual fused with the next LayerNorm-modulate, a fusion the model would take only where the kernel
# benchmark measured it faster than the two ops apart; each with its reference, its written-out formulation,
# example inputs at the block's shapes and its cost. Tests, benchmarks/kernels.py and chapter 2 iterate OPS, so
# none of them can miss an op. Adding an op: its module (jit kernels, launcher, autograd.Function), its
# reference and formula in reference.py, its dispatcher and entry here.


class ExampleInputs:
    """Inputs at the block's shapes, each tensor made by make(shape): (B, S, D) tokens; (B, D) rows as chunks of
    one (B, n D) tensor, as the adaLN projection hands them to the block; q, k, v as views of one packed
    (B, S, 3, H, D / H) projection, as the attention receives them. Strided views on purpose: the kernels'
    stride handling is part of what the tests check."""

    def __init__(
        self,
        make: Callable[[tuple[int, ...]], torch.Tensor],
        batch: int,
        seq: int,
        width: int,
        heads: int,
        members: int | None = None,
    ) -> None:
        self.make, self.batch, self.seq, self.width, self.heads = make, batch, seq, width, heads
        self.members = members or (2 if batch % 2 == 0 else 1)  # ensemble members among the batch's samples

    def tokens(self, multiple: int = 1) -> torch.Tensor:
        return self.make((self.batch, self.seq, multiple * self.width))

    def rows(self, n: int) -> list[torch.Tensor]:
        return list(self.make((self.batch, n * self.width)).chunk(n, dim=1))

    def linear(self, out_multiple: int = 4) -> list[torch.Tensor]:
        """x (E, rows, D), w (E, D, out_multiple D), b (E, out_multiple D): the ensemble's stacked layers, each
        member's samples as its rows."""
        e = self.members
        x = self.make((e, self.batch // e * self.seq, self.width))
        return [x, self.make((e, self.width, out_multiple * self.width)), self.make((e, out_multiple * self.width))]

    def qkv(self) -> list[torch.Tensor]:
        packed = self.make((self.batch, self.seq, 3, self.heads, self.width // self.heads))
        return list(packed.permute(2, 0, 3, 1, 4).unbind(0))


@dataclass(frozen=True)
class Op:
    fn: Callable  # the dispatcher: fn(*inputs, backend=...)
    reference: Callable  # the PyTorch path (CPU, backend "torch") and the tests' oracle
    formula: Callable  # written out from the definition, independent of `reference`
    example: Callable[[ExampleInputs], list[torch.Tensor]]
    # (bytes a fused forward + backward must move, FLOPs) at (batch, seq, width, heads, bytes per element)
    cost: Callable[[int, int, int, int, int], tuple[float | None, float | None]]


def _fused_example(i: ExampleInputs) -> list[torch.Tensor]:
    gate, shift, scale = i.rows(3)
    return [i.tokens(), gate, i.tokens(), shift, scale]


OPS: dict[str, Op] = {
    "layernorm_modulate": Op(
        layernorm_modulate,
        reference.layernorm_modulate,
        reference.formula_layernorm_modulate,
        lambda i: [i.tokens(), *i.rows(2)],
        lambda b, s, d, h, es: (5 * b * s * d * es, None),
    ),
    "gated_residual_layernorm_modulate": Op(
        gated_residual_layernorm_modulate,
        reference.gated_residual_layernorm_modulate,
        reference.formula_gated_residual_layernorm_modulate,
        _fused_example,
        lambda b, s, d, h, es: (10 * b * s * d * es, None),
    ),
    "gelu_tanh": Op(
        gelu_tanh,
        reference.gelu_tanh,
        reference.formula_gelu_tanh,
        lambda i: [i.tokens(4)],
        lambda b, s, d, h, es: (5 * 4 * b * s * d * es, None),
    ),
    "linear_gelu": Op(
        linear_gelu,
        reference.linear_gelu,
        reference.formula_linear_gelu,
        lambda i: i.linear(4),
        lambda b, s, d, h, es: (None, 3 * 2 * b * s * d * 4 * d),
    ),  # a forward matmul and two backward ones
    "attention": Op(
        attention,
        reference.attention,
        reference.formula_attention,
        lambda i: i.qkv(),
        lambda b, s, d, h, es: (None, 3.5 * 4 * b * s * s * d),
    ),  # 4 B H S^2 Dh forward, 2.5x that backward
}
