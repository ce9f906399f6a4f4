"""GELU with the tanh approximation, 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), elementwise over a
flat view. tanh is written with exp(-2|u|), which runs compiled and interpreted alike (libdevice's tanh is
CUDA-only). The backward recomputes tanh from the saved input rather than saving it (one tensor less to keep)."""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch.autograd.function import once_differentiable

from replicate.kernels._triton import check_device

BLOCK = 4096  # elements per program: 16 per thread at 8 warps, in 128-bit vectors
NUM_WARPS = 8


@triton.jit
def tanh_terms(x):
    """(tanh(u), du/dx) with u = sqrt(2/pi) (x + 0.044715 x^3); sqrt(2/pi) = 0.7978845608028654."""
    x2 = x * x
    u = x * (1.0 + x2 * 0.044715) * 0.7978845608028654
    e = tl.exp(-2.0 * tl.abs(u))  # in (0, 1]: no overflow
    t = (1.0 - e) / (1.0 + e)
    return tl.where(u < 0, -t, t), (1.0 + x2 * 0.134145) * 0.7978845608028654


@triton.jit
def _gelu_fwd(X, OUT, N, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    x = tl.load(X + offs, mask=mask, other=0.0).to(tl.float32)
    t, _ = tanh_terms(x)
    tl.store(OUT + offs, (0.5 * x * (1.0 + t)).to(OUT.dtype.element_ty), mask=mask)


@triton.jit
def gelu_bwd(DOUT, X, DX, N, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    x = tl.load(X + offs, mask=mask, other=0.0).to(tl.float32)
    dout = tl.load(DOUT + offs, mask=mask, other=0.0).to(tl.float32)
    t, du = tanh_terms(x)
    dx = dout * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du)
    tl.store(DX + offs, dx.to(DX.dtype.element_ty), mask=mask)


def launch_elementwise(kernel: triton.JITFunction, *tensors: torch.Tensor) -> None:
    """kernel(*tensors, n) over the first tensor's n elements, BLOCK per program (linear_gelu's backward too)."""
    n = tensors[0].numel()
    kernel[(triton.cdiv(n, BLOCK),)](*tensors, n, BLOCK=BLOCK, num_warps=NUM_WARPS)


class GeluTanhFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        check_device(x)
        x = x.contiguous()
        out = torch.empty_like(x)
        launch_elementwise(_gelu_fwd, x, out)
        ctx.save_for_backward(x)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, dout):
        (x,) = ctx.saved_tensors
        dx = torch.empty_like(x)
        launch_elementwise(gelu_bwd, dout.contiguous(), x, dx)
        return dx


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    """GELU, tanh approximation, any shape."""
    return GeluTanhFunction.apply(x)
