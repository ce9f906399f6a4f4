"""The op catalog: every op the model calls through the backend switch, with its PyTorch reference, a
formulation written out from its definition (the float64 truth of the tests and of chapter 2's accuracy
table), example inputs at the block's shapes, and the memory traffic or FLOPs its forward and backward
need (what benchmarks/kernels.py divides by the time). Tests, the benchmark and chapter 2 iterate `OPS`, so
none of them can list an op the model does not use or miss one it does.

Adding an op: its module (jit kernels, launcher, autograd.Function), its reference in reference.py, its
dispatcher in __init__.py and an entry here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from replicate import kernels
from replicate.kernels import reference


class ExampleInputs:
    """Inputs at the block's shapes, each tensor made by make(shape): (B, S, D) tokens; (B, D) rows as chunks of
    one (B, n D) tensor, as the adaLN projection hands them to the block; q, k, v as views of one packed
    (B, S, 3, H, D / H) projection, as the attention receives them. Strided views on purpose: the kernels'
    stride handling is part of what the tests check."""

    def __init__(
        self, make: Callable[[tuple[int, ...]], torch.Tensor], batch: int, seq: int, width: int, heads: int
    ) -> None:
        self.make, self.batch, self.seq, self.width, self.heads = make, batch, seq, width, heads

    def tokens(self, multiple: int = 1) -> torch.Tensor:
        return self.make((self.batch, self.seq, multiple * self.width))

    def rows(self, n: int) -> list[torch.Tensor]:
        return list(self.make((self.batch, n * self.width)).chunk(n, dim=1))

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


def _layernorm_modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * (1 + scale[:, None]) + shift[:, None]


def _gated_residual_layernorm_modulate(
    x: torch.Tensor, gate: torch.Tensor, y: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    r = x + gate[:, None] * y
    return r, _layernorm_modulate(r, shift, scale)


def _gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


def _attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1) @ v


def _fused_example(i: ExampleInputs) -> list[torch.Tensor]:
    gate, shift, scale = i.rows(3)
    return [i.tokens(), gate, i.tokens(), shift, scale]


OPS: dict[str, Op] = {
    "layernorm_modulate": Op(
        kernels.layernorm_modulate,
        reference.layernorm_modulate,
        _layernorm_modulate,
        lambda i: [i.tokens(), *i.rows(2)],
        lambda b, s, d, h, es: (5 * b * s * d * es, None),
    ),
    "gated_residual_layernorm_modulate": Op(
        kernels.gated_residual_layernorm_modulate,
        reference.gated_residual_layernorm_modulate,
        _gated_residual_layernorm_modulate,
        _fused_example,
        lambda b, s, d, h, es: (10 * b * s * d * es, None),
    ),
    "gelu_tanh": Op(
        kernels.gelu_tanh,
        reference.gelu_tanh,
        _gelu_tanh,
        lambda i: [i.tokens(4)],
        lambda b, s, d, h, es: (5 * 4 * b * s * d * es, None),
    ),
    "attention": Op(
        kernels.attention,
        reference.attention,
        _attention,
        lambda i: i.qkv(),
        lambda b, s, d, h, es: (None, 3.5 * 4 * b * s * s * d),
    ),  # 4 B H S^2 Dh forward, 2.5x that backward
}
