"""A stack of E linear layers with their bias and GELU (tanh) fused into the matmul's epilogue:
gelu(x @ w + b) for x (E, M, K), w (E, K, N), b (E, N) -> (E, M, N). It is the MLP's first layer: in an
ensemble (replicate.training.ensemble) E members each multiply their own rows; the plain model is E = 1.

Forward: a program owns a BLOCK_M x BLOCK_N tile of one member's output, accumulates x @ w over K in BLOCK_K
steps (fp32 accumulation; tensor cores for fp16/bf16 inputs, exact fp32 products for fp32 ones, as the
attention kernels), and in its epilogue adds the bias and applies GELU before the one store of each output.
It also stores the pre-activation h = x @ w + b, which the backward needs (the unfused path keeps it too, as
GELU's saved input). Unfused, the forward writes h, reads it back and writes gelu(h); fused it writes both
once and launches one kernel instead of two.

Backward: dh = dout * gelu'(h) by the GELU kernel's backward, then dx = dh w^T and dw = x^T dh as batched
matmuls (cuBLAS) and db = the sum of dh over rows.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch.autograd.function import once_differentiable

from replicate.kernels._triton import Tunable, check_device, check_same_dtype, matmul_input_dtype
from replicate.kernels.gelu import gelu_bwd, launch_elementwise, tanh_terms


@triton.jit
def _linear_gelu_fwd(
    X,
    W,
    BIAS,
    H,
    OUT,
    M,
    N,
    K,
    stride_xe,
    stride_xm,
    stride_xk,
    stride_we,
    stride_wk,
    stride_wn,
    stride_be,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    PRECISION: tl.constexpr,
):
    e = tl.program_id(2).to(tl.int64)
    offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    mmask, nmask = offs_m < M, offs_n < N
    x_ptrs = X + e * stride_xe + offs_m[:, None].to(tl.int64) * stride_xm + offs_k[None, :] * stride_xk
    w_ptrs = W + e * stride_we + offs_k[:, None] * stride_wk + offs_n[None, :] * stride_wn
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        kmask = offs_k < K - k0
        x = tl.load(x_ptrs, mask=mmask[:, None] & kmask[None, :], other=0.0)
        w = tl.load(w_ptrs, mask=kmask[:, None] & nmask[None, :], other=0.0)
        acc = tl.dot(x, w, acc, input_precision=PRECISION)
        x_ptrs += BLOCK_K * stride_xk
        w_ptrs += BLOCK_K * stride_wk
    h = acc + tl.load(BIAS + e * stride_be + offs_n, mask=nmask, other=0.0).to(tl.float32)[None, :]
    t, _ = tanh_terms(h)
    # H and OUT are contiguous (E, M, N)
    offs = e * M * N + offs_m[:, None].to(tl.int64) * N + offs_n[None, :]
    mask = mmask[:, None] & nmask[None, :]
    tl.store(H + offs, h.to(H.dtype.element_ty), mask=mask)
    tl.store(OUT + offs, (0.5 * h * (1.0 + t)).to(OUT.dtype.element_ty), mask=mask)


# (BLOCK_M, BLOCK_N, BLOCK_K, warps, stages): the study's layers are small (K = 48-384, N = 4K) with many rows.
# Tiles of 128 rows or columns spill registers on sm_90 in bf16 and fp32 alike, so none is offered; each launch
# tries the configs whose accumulator and operand tiles fit the registers (Tunable.prune: in fp32 the K = 64
# config does not).
_fwd = Tunable(
    _linear_gelu_fwd,
    [
        triton.Config({"BLOCK_M": m, "BLOCK_N": n, "BLOCK_K": k}, num_warps=w, num_stages=s)
        for m, n, k, w, s in ((64, 64, 32, 4, 3), (64, 64, 64, 4, 4), (32, 64, 32, 4, 2))
    ],
    ["M", "N", "K", "PRECISION"],
    {"BLOCK_M": 32, "BLOCK_N": 32, "BLOCK_K": 32},  # several tiles and tails at the tests' shapes
    lambda m: m["BLOCK_M"] * m["BLOCK_N"] + m["BLOCK_K"] * (m["BLOCK_M"] + m["BLOCK_N"]),
)


def check_linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> None:
    """x (E, M, K), w (E, K, N), b (E, N) of one dtype (ValueError otherwise)."""
    if x.dim() != 3 or w.dim() != 3 or b.dim() != 2 or w.shape[:2] != (x.shape[0], x.shape[2]):
        raise ValueError(
            f"expected x (E, M, K), w (E, K, N), b (E, N), got {tuple(x.shape)}, {tuple(w.shape)}, {tuple(b.shape)}"
        )
    if b.shape != (w.shape[0], w.shape[2]):
        raise ValueError(f"bias {tuple(b.shape)} does not match w {tuple(w.shape)}")
    check_same_dtype("x, w, b", x, w, b)


class LinearGeluFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, b):
        check_linear(x, w, b)
        check_device(x, w, b)
        E, M, K = x.shape
        N = w.shape[2]
        h = x.new_empty((E, M, N))
        out = torch.empty_like(h)
        precision = "ieee" if x.dtype == torch.float32 else "tf32"
        _fwd[lambda m: (triton.cdiv(M, m["BLOCK_M"]), triton.cdiv(N, m["BLOCK_N"]), E)](
            x, w, b, h, out, M, N, K, *x.stride(), *w.stride(), b.stride(0), PRECISION=precision
        )
        ctx.save_for_backward(x, w, h)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, dout):
        x, w, h = ctx.saved_tensors
        dh = torch.empty_like(h)
        launch_elementwise(gelu_bwd, dout.contiguous(), h, dh)
        return torch.bmm(dh, w.transpose(1, 2)), torch.bmm(x.transpose(1, 2), dh), dh.sum(1)


def linear_gelu(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """gelu_tanh(x @ w + b) per member: x (E, M, K), w (E, K, N), b (E, N) -> (E, M, N). Under CUDA autocast
    the inputs are cast to the autocast dtype first, as the batched matmul would."""
    dtype = matmul_input_dtype(x, w, b)
    return LinearGeluFunction.apply(x.to(dtype), w.to(dtype), b.to(dtype))
