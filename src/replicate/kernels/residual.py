"""The gated residual r = x + gate[:, None, :] * y of adaLN-Zero. x, y (B, S, D); gate (B, D).

Laid out as the LN-modulate kernels (grid (chunks, B), tiles of rows): the backward sums d gate over each
program's rows in registers and the host sums the chunks. d x is d r itself (no pass at all). Where an
LN-modulate follows, :func:`replicate.kernels.modulate.gated_residual_layernorm_modulate` fuses the two.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch.autograd.function import once_differentiable

from replicate.kernels._triton import check_device, out_dtype, row_launch, unit_stride


@triton.jit
def _gated_residual_fwd(X, GATE, Y, R, stride_gate, S, D, CHUNK, BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr):
    chunk, b = tl.program_id(0), tl.program_id(1)
    cols = tl.arange(0, BLOCK_D)
    cmask = cols < D
    gate = tl.load(GATE + b * stride_gate + cols, mask=cmask, other=0.0).to(tl.float32)
    start = chunk * CHUNK
    end = tl.minimum(start + CHUNK, S)
    for s0 in range(start, end, BLOCK_M):
        s = s0 + tl.arange(0, BLOCK_M)
        offs = (b.to(tl.int64) * S + s)[:, None] * D + cols[None, :]
        mask = (s < end)[:, None] & cmask[None, :]
        x = tl.load(X + offs, mask=mask, other=0.0).to(tl.float32)
        y = tl.load(Y + offs, mask=mask, other=0.0).to(tl.float32)
        tl.store(R + offs, (x + gate[None, :] * y).to(R.dtype.element_ty), mask=mask)


@triton.jit
def _gated_residual_bwd(DR, GATE, Y, DY, DGATE, stride_gate, S, D, CHUNK, N_CHUNKS,
                        BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr):
    chunk, b = tl.program_id(0), tl.program_id(1)
    cols = tl.arange(0, BLOCK_D)
    cmask = cols < D
    gate = tl.load(GATE + b * stride_gate + cols, mask=cmask, other=0.0).to(tl.float32)
    dgate = tl.zeros([BLOCK_D], dtype=tl.float32)
    start = chunk * CHUNK
    end = tl.minimum(start + CHUNK, S)
    for s0 in range(start, end, BLOCK_M):
        s = s0 + tl.arange(0, BLOCK_M)
        offs = (b.to(tl.int64) * S + s)[:, None] * D + cols[None, :]
        mask = (s < end)[:, None] & cmask[None, :]
        dr = tl.load(DR + offs, mask=mask, other=0.0).to(tl.float32)
        dgate += tl.sum(dr * tl.load(Y + offs, mask=mask, other=0.0).to(tl.float32), axis=0)
        tl.store(DY + offs, (dr * gate[None, :]).to(DY.dtype.element_ty), mask=mask)
    tl.store(DGATE + (b.to(tl.int64) * N_CHUNKS + chunk) * D + cols, dgate, mask=cmask)


class GatedResidualFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, gate, y):
        if x.dim() != 3 or y.shape != x.shape or gate.shape != (x.shape[0], x.shape[2]):
            raise ValueError(f"expected x, y (B, S, D) and gate (B, D), got {tuple(x.shape)}, {tuple(y.shape)} "
                             f"and {tuple(gate.shape)}")
        check_device(x, gate, y)
        x, y, gate = x.contiguous(), y.contiguous(), unit_stride(gate)
        r = torch.empty(x.shape, dtype=out_dtype(x, gate, y), device=x.device)
        grid, meta, chunk = row_launch(x)
        _gated_residual_fwd[grid](x, gate, y, r, gate.stride(0), x.shape[1], x.shape[2], chunk, **meta)
        ctx.save_for_backward(gate, y)
        ctx.x_dtype = x.dtype
        return r

    @staticmethod
    @once_differentiable
    def backward(ctx, dr):
        gate, y = ctx.saved_tensors
        dr = dr.contiguous()
        B, S, D = y.shape
        grid, meta, chunk = row_launch(y)
        dy = torch.empty_like(y)
        parts = torch.empty((B, grid[0], D), dtype=torch.float32, device=y.device)
        _gated_residual_bwd[grid](dr, gate, y, dy, parts, gate.stride(0), S, D, chunk, grid[0], **meta)
        return dr.to(ctx.x_dtype), parts.sum(1).to(gate.dtype), dy


def gated_residual(x: torch.Tensor, gate: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """x + gate[:, None, :] * y. x, y (B, S, D); gate (B, D)."""
    return GatedResidualFunction.apply(x, gate, y)
