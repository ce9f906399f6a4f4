"""LayerNorm-modulate, LN(x) * (1 + scale) + shift (LayerNorm without affine), and its fusion with the gated
residual before it: r = x + gate * y, then (r, LN-modulate(r)).

x, y (B, S, D) are read as rows; shift, scale, gate (B, D) are one row per batch element, loaded once per
program. A program owns a chunk of one batch element's rows (grid (chunks, B)) and walks it in tiles of
BLOCK_M rows x BLOCK_D features, so that the backward can sum d shift, d scale and d gate over its rows in
registers; the host sums the per-chunk partials. The forward saves the per-row mean and 1/std (fp32).

Fused, the forward reads x, y and writes r, out (unfused, two kernels: read x, y, r, write r, out), and the
backward reads dout, dr, r, y and writes dx, dy (unfused, three kernels: LN-modulate's backward, autograd's
add of r's two gradients, the gated residual's backward: read six tensors, write three).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch.autograd.function import once_differentiable

from replicate.kernels._triton import check_device, matmul_input_dtype, out_dtype, row_launch, unit_stride


@triton.jit
def _modulate_fwd(
    X,
    Y,
    GATE,
    SHIFT,
    SCALE,
    R,
    OUT,
    MEAN,
    RSTD,
    stride_gate,
    stride_shift,
    stride_scale,
    S,
    D,
    CHUNK,
    eps,
    HAS_RESIDUAL: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    chunk, b = tl.program_id(0), tl.program_id(1)
    cols = tl.arange(0, BLOCK_D)
    cmask = cols < D
    shift = tl.load(SHIFT + b * stride_shift + cols, mask=cmask, other=0.0).to(tl.float32)
    scale1 = 1.0 + tl.load(SCALE + b * stride_scale + cols, mask=cmask, other=0.0).to(tl.float32)
    if HAS_RESIDUAL:
        gate = tl.load(GATE + b * stride_gate + cols, mask=cmask, other=0.0).to(tl.float32)
    start = chunk * CHUNK
    end = tl.minimum(start + CHUNK, S)
    for s0 in range(start, end, BLOCK_M):
        s = s0 + tl.arange(0, BLOCK_M)
        rmask = s < end
        rows = b.to(tl.int64) * S + s
        offs = rows[:, None] * D + cols[None, :]
        mask = rmask[:, None] & cmask[None, :]
        x = tl.load(X + offs, mask=mask, other=0.0).to(tl.float32)
        if HAS_RESIDUAL:
            x += gate[None, :] * tl.load(Y + offs, mask=mask, other=0.0).to(tl.float32)
            r = x.to(R.dtype.element_ty)
            tl.store(R + offs, r, mask=mask)
            x = r.to(tl.float32)  # normalise the stored residual, which the backward reads back
        mean = tl.sum(x, axis=1) / D
        xc = tl.where(mask, x - mean[:, None], 0.0)
        rstd = tl.rsqrt(tl.sum(xc * xc, axis=1) / D + eps)
        out = xc * rstd[:, None] * scale1[None, :] + shift[None, :]
        tl.store(OUT + offs, out.to(OUT.dtype.element_ty), mask=mask)
        tl.store(MEAN + rows, mean, mask=rmask)
        tl.store(RSTD + rows, rstd, mask=rmask)


@triton.jit
def _modulate_bwd(
    DOUT,
    DR,
    X,
    Y,
    GATE,
    SCALE,
    MEAN,
    RSTD,
    DX,
    DY,
    DSHIFT,
    DSCALE,
    DGATE,
    stride_gate,
    stride_scale,
    S,
    D,
    CHUNK,
    N_CHUNKS,
    HAS_RESIDUAL: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    chunk, b = tl.program_id(0), tl.program_id(1)
    cols = tl.arange(0, BLOCK_D)
    cmask = cols < D
    scale1 = 1.0 + tl.load(SCALE + b * stride_scale + cols, mask=cmask, other=0.0).to(tl.float32)
    if HAS_RESIDUAL:
        gate = tl.load(GATE + b * stride_gate + cols, mask=cmask, other=0.0).to(tl.float32)
    dshift = tl.zeros([BLOCK_D], dtype=tl.float32)
    dscale = tl.zeros([BLOCK_D], dtype=tl.float32)
    dgate = tl.zeros([BLOCK_D], dtype=tl.float32)
    start = chunk * CHUNK
    end = tl.minimum(start + CHUNK, S)
    for s0 in range(start, end, BLOCK_M):
        s = s0 + tl.arange(0, BLOCK_M)
        rmask = s < end
        rows = b.to(tl.int64) * S + s
        offs = rows[:, None] * D + cols[None, :]
        mask = rmask[:, None] & cmask[None, :]
        x = tl.load(X + offs, mask=mask, other=0.0).to(tl.float32)
        dout = tl.load(DOUT + offs, mask=mask, other=0.0).to(tl.float32)
        mean = tl.load(MEAN + rows, mask=rmask, other=0.0)
        rstd = tl.load(RSTD + rows, mask=rmask, other=0.0)
        xhat = tl.where(mask, (x - mean[:, None]) * rstd[:, None], 0.0)
        dshift += tl.sum(dout, axis=0)
        dscale += tl.sum(dout * xhat, axis=0)
        dxhat = dout * scale1[None, :]
        c1 = tl.sum(dxhat * xhat, axis=1) / D
        c2 = tl.sum(dxhat, axis=1) / D
        dx = (dxhat - xhat * c1[:, None] - c2[:, None]) * rstd[:, None]
        if HAS_RESIDUAL:  # x is r = x_in + gate * y; dr arrives from r's other consumers
            dx += tl.load(DR + offs, mask=mask, other=0.0).to(tl.float32)
            dgate += tl.sum(dx * tl.load(Y + offs, mask=mask, other=0.0).to(tl.float32), axis=0)
            tl.store(DY + offs, (dx * gate[None, :]).to(DY.dtype.element_ty), mask=mask)
        tl.store(DX + offs, dx.to(DX.dtype.element_ty), mask=mask)
    part = (b.to(tl.int64) * N_CHUNKS + chunk) * D + cols
    tl.store(DSHIFT + part, dshift, mask=cmask)
    tl.store(DSCALE + part, dscale, mask=cmask)
    if HAS_RESIDUAL:
        tl.store(DGATE + part, dgate, mask=cmask)


def _forward(x, gate, y, shift, scale, eps):
    """Launch the forward; gate and y are None for plain LN-modulate. Returns (r or None, out, mean, rstd)."""
    B, S, D = x.shape
    grid, meta, chunk = row_launch(x)
    has_res = gate is not None
    inputs = (x, shift, scale, gate, y) if has_res else (x, shift, scale)
    r = torch.empty(x.shape, dtype=out_dtype(x, gate, y), device=x.device) if has_res else None
    out = torch.empty(x.shape, dtype=matmul_input_dtype(*inputs), device=x.device)
    mean = torch.empty((B, S), dtype=torch.float32, device=x.device)
    rstd = torch.empty_like(mean)
    _modulate_fwd[grid](
        x,
        y if has_res else x,
        gate if has_res else shift,
        shift,
        scale,
        r if has_res else out,
        out,
        mean,
        rstd,
        gate.stride(0) if has_res else 0,
        shift.stride(0),
        scale.stride(0),
        S,
        D,
        chunk,
        eps,
        HAS_RESIDUAL=has_res,
        **meta,
    )
    return r, out, mean, rstd


def _backward(dout, dr, x, gate, y, scale, mean, rstd, dtypes):
    """Launch the backward; x is the normalised input (r when fused). Returns dx, dy, dgate, dshift, dscale
    (dy, dgate None for plain LN-modulate), each in its input's dtype (`dtypes`: those of x, y, gate, shift,
    scale)."""
    B, S, D = x.shape
    grid, meta, chunk = row_launch(x)
    n_chunks = grid[0]
    has_res = gate is not None
    x_dtype, y_dtype, gate_dtype, shift_dtype, scale_dtype = dtypes
    dout, dr = dout.contiguous(), dr.contiguous() if has_res else None
    dx = torch.empty(x.shape, dtype=x_dtype, device=x.device)
    dy = torch.empty(x.shape, dtype=y_dtype, device=x.device) if has_res else None
    parts = torch.empty((3 if has_res else 2, B, n_chunks, D), dtype=torch.float32, device=x.device)
    _modulate_bwd[grid](
        dout,
        dr if has_res else dout,
        x,
        y if has_res else x,
        gate if has_res else scale,
        scale,
        mean,
        rstd,
        dx,
        dy if has_res else dx,
        parts[0],
        parts[1],
        parts[-1],
        gate.stride(0) if has_res else 0,
        scale.stride(0),
        S,
        D,
        chunk,
        n_chunks,
        HAS_RESIDUAL=has_res,
        **meta,
    )
    sums = parts.sum(2)
    dgate = sums[2].to(gate_dtype) if has_res else None
    return dx, dy, dgate, sums[0].to(shift_dtype), sums[1].to(scale_dtype)


def _check(x: torch.Tensor, *rows: torch.Tensor) -> None:
    if x.dim() != 3 or any(t.shape != (x.shape[0], x.shape[2]) for t in rows):
        raise ValueError(
            f"expected x (B, S, D) and (B, D) rows, got {tuple(x.shape)} and {[tuple(t.shape) for t in rows]}"
        )
    check_device(x, *rows)


class LayerNormModulateFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, shift, scale, eps):
        _check(x, shift, scale)
        x, shift, scale = x.contiguous(), unit_stride(shift), unit_stride(scale)
        _, out, mean, rstd = _forward(x, None, None, shift, scale, eps)
        ctx.save_for_backward(x, scale, mean, rstd)
        ctx.dtypes = (x.dtype, None, None, shift.dtype, scale.dtype)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, dout):
        x, scale, mean, rstd = ctx.saved_tensors
        dx, _, _, dshift, dscale = _backward(dout, None, x, None, None, scale, mean, rstd, ctx.dtypes)
        return dx, dshift, dscale, None


class GatedResidualLayerNormModulateFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, gate, y, shift, scale, eps):
        _check(x, gate, shift, scale)
        if y.shape != x.shape:
            raise ValueError(f"x and y must have one shape, got {tuple(x.shape)} and {tuple(y.shape)}")
        check_device(x, y)
        x, y = x.contiguous(), y.contiguous()
        gate, shift, scale = unit_stride(gate), unit_stride(shift), unit_stride(scale)
        r, out, mean, rstd = _forward(x, gate, y, shift, scale, eps)
        ctx.save_for_backward(r, gate, y, scale, mean, rstd)
        ctx.dtypes = (x.dtype, y.dtype, gate.dtype, shift.dtype, scale.dtype)
        return r, out

    @staticmethod
    @once_differentiable
    def backward(ctx, dr, dout):
        r, gate, y, scale, mean, rstd = ctx.saved_tensors
        dx, dy, dgate, dshift, dscale = _backward(dout, dr, r, gate, y, scale, mean, rstd, ctx.dtypes)
        return dx, dgate, dy, dshift, dscale, None


def layernorm_modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """LN(x) * (1 + scale) + shift, LayerNorm without affine. x (B, S, D); shift, scale (B, D)."""
    return LayerNormModulateFunction.apply(x, shift, scale, eps)


def gated_residual_layernorm_modulate(
    x: torch.Tensor, gate: torch.Tensor, y: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor, eps: float = 1e-6
) -> tuple[torch.Tensor, torch.Tensor]:
    """(r, LN(r) * (1 + scale) + shift) with r = x + gate * y. x, y (B, S, D); gate, shift, scale (B, D)."""
    return GatedResidualLayerNormModulateFunction.apply(x, gate, y, shift, scale, eps)
