"""Attention over one short clip, softmax(q k^T / sqrt(Dh)) v, forward and backward, for S <= CLIP_MAX_SEQ tokens.

The study's clips have 16-64 tokens, where flash attention's tiling over the sequence only adds loop overhead
and launches (its backward is three kernels). Here one program holds a whole (clip, head): q, k, v of
S x Dh each and the S x S scores in registers, padded to BLOCK_S = the next power of two >= 16 (what tl.dot
needs), with the padded keys masked out of the softmax and the padded rows out of every store. The forward
saves the log-sum-exp per query (base 2, the 1/sqrt(Dh) scale folded into log2(e), as flash_attention); the
backward is one kernel per (clip, head) that recomputes the probabilities and writes dQ, dK and dV, with no
atomics and no separate pass for delta = rowsum(dO * O). Layouts, dtypes and precision as flash_attention:
outputs in (B, S, H, Dh) memory returned as (B, H, S, Dh) views; fp32 inputs use exact ("ieee") products.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl
from torch.autograd.function import once_differentiable

from replicate.kernels._attention import LOG2E, bshd_empty, check_qkv, head_strides, launch_meta
from replicate.kernels._triton import Tunable, check_device, unit_stride

CLIP_MAX_SEQ = 64  # longer sequences take flash_attention; at 64 the S x S scores still fit in registers


@triton.jit
def _load(base, stride_b, stride_h, stride_s, b, h, offs_s, offs_d, smask):
    """A (BLOCK_S, HEAD_DIM) tile of one (clip, head), zero in the padded rows."""
    ptr = base + b * stride_b + h * stride_h + offs_s[:, None].to(tl.int64) * stride_s + offs_d[None, :]
    return tl.load(ptr, mask=smask[:, None], other=0.0)


@triton.jit
def _scores(q, k, smask, qk_scale, PRECISION: tl.constexpr):
    """q k^T of one (clip, head) in log2 units (BLOCK_S, BLOCK_S), the padded keys at -inf."""
    s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale
    return tl.where(smask[None, :], s, float("-inf"))


@triton.jit
def _clip_fwd(
    Q,
    K,
    V,
    O,
    LSE,
    qk_scale,
    stride_qb,
    stride_qh,
    stride_qs,
    stride_kb,
    stride_kh,
    stride_ks,
    stride_vb,
    stride_vh,
    stride_vs,
    stride_ob,
    stride_oh,
    stride_os,
    H,
    S,
    HEAD_DIM: tl.constexpr,
    PRECISION: tl.constexpr,
    BLOCK_S: tl.constexpr,
):
    bh = tl.program_id(0)
    b, h = (bh // H).to(tl.int64), (bh % H).to(tl.int64)
    offs_s, offs_d = tl.arange(0, BLOCK_S), tl.arange(0, HEAD_DIM)
    smask = offs_s < S
    q = _load(Q, stride_qb, stride_qh, stride_qs, b, h, offs_s, offs_d, smask)
    k = _load(K, stride_kb, stride_kh, stride_ks, b, h, offs_s, offs_d, smask)
    v = _load(V, stride_vb, stride_vh, stride_vs, b, h, offs_s, offs_d, smask)
    s = _scores(q, k, smask, qk_scale, PRECISION)
    m = tl.max(s, axis=1)
    p = tl.exp2(s - m[:, None])
    l = tl.sum(p, axis=1)
    out = tl.dot(p.to(v.dtype), v, input_precision=PRECISION) / l[:, None]
    optr = O + b * stride_ob + h * stride_oh + offs_s[:, None].to(tl.int64) * stride_os + offs_d[None, :]
    tl.store(optr, out.to(O.dtype.element_ty), mask=smask[:, None])
    tl.store(LSE + bh.to(tl.int64) * S + offs_s, m + tl.log2(l), mask=smask)


@triton.jit
def _clip_bwd(
    Q,
    K,
    V,
    O,
    DO,
    LSE,
    DQ,
    DK,
    DV,
    qk_scale,
    sm_scale,
    stride_qb,
    stride_qh,
    stride_qs,
    stride_kb,
    stride_kh,
    stride_ks,
    stride_vb,
    stride_vh,
    stride_vs,
    stride_ob,
    stride_oh,
    stride_os,
    stride_dob,
    stride_doh,
    stride_dos,
    stride_dqb,
    stride_dqh,
    stride_dqs,
    stride_dkb,
    stride_dkh,
    stride_dks,
    stride_dvb,
    stride_dvh,
    stride_dvs,
    H,
    S,
    HEAD_DIM: tl.constexpr,
    PRECISION: tl.constexpr,
    BLOCK_S: tl.constexpr,
):
    bh = tl.program_id(0)
    b, h = (bh // H).to(tl.int64), (bh % H).to(tl.int64)
    offs_s, offs_d = tl.arange(0, BLOCK_S), tl.arange(0, HEAD_DIM)
    smask = offs_s < S
    q = _load(Q, stride_qb, stride_qh, stride_qs, b, h, offs_s, offs_d, smask)
    k = _load(K, stride_kb, stride_kh, stride_ks, b, h, offs_s, offs_d, smask)
    v = _load(V, stride_vb, stride_vh, stride_vs, b, h, offs_s, offs_d, smask)
    o = _load(O, stride_ob, stride_oh, stride_os, b, h, offs_s, offs_d, smask)
    do = _load(DO, stride_dob, stride_doh, stride_dos, b, h, offs_s, offs_d, smask)
    # padded rows: log-sum-exp +inf, so their probabilities are exactly 0 and add nothing to dK, dV
    lse = tl.load(LSE + bh.to(tl.int64) * S + offs_s, mask=smask, other=float("inf"))
    p = tl.exp2(_scores(q, k, smask, qk_scale, PRECISION) - lse[:, None])  # (BLOCK_S queries, BLOCK_S keys)
    delta = tl.sum(do.to(tl.float32) * o.to(tl.float32), axis=1)
    dv = tl.dot(tl.trans(p).to(do.dtype), do, input_precision=PRECISION)
    dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
    ds = (p * (dp - delta[:, None])).to(q.dtype)
    dq = tl.dot(ds, k, input_precision=PRECISION) * sm_scale
    dk = tl.dot(tl.trans(ds), q, input_precision=PRECISION) * sm_scale
    rows = offs_s[:, None].to(tl.int64)
    tl.store(
        DQ + b * stride_dqb + h * stride_dqh + rows * stride_dqs + offs_d[None, :],
        dq.to(DQ.dtype.element_ty),
        mask=smask[:, None],
    )
    tl.store(
        DK + b * stride_dkb + h * stride_dkh + rows * stride_dks + offs_d[None, :],
        dk.to(DK.dtype.element_ty),
        mask=smask[:, None],
    )
    tl.store(
        DV + b * stride_dvb + h * stride_dvh + rows * stride_dvs + offs_d[None, :],
        dv.to(DV.dtype.element_ty),
        mask=smask[:, None],
    )


# One (clip, head) per program: small tiles want few warps; the tuner picks per (S, Dh, precision), among the
# warp counts whose tiles fit the registers (Tunable.prune): q, k, v and the output, and the S x S scores in the
# forward; q, k, v, dO, dQ, dK, dV, O and the probabilities and their gradient in the backward.
_CONFIGS = [triton.Config({}, num_warps=w, num_stages=1) for w in (1, 2, 4)]
_KEY = ["S", "HEAD_DIM", "PRECISION"]
_fwd = Tunable(_clip_fwd, _CONFIGS, _KEY, {}, lambda m: m["BLOCK_S"] * (m["BLOCK_S"] + 4 * m["HEAD_DIM"]))
_bwd = Tunable(_clip_bwd, _CONFIGS, _KEY, {}, lambda m: m["BLOCK_S"] * (2 * m["BLOCK_S"] + 8 * m["HEAD_DIM"]))


def _block(S: int) -> int:
    return max(16, triton.next_power_of_2(S))


class ClipAttentionFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v):
        check_qkv(q, k, v)
        if q.shape[2] > CLIP_MAX_SEQ:
            raise ValueError(f"clip attention takes at most {CLIP_MAX_SEQ} tokens, got {q.shape[2]}")
        check_device(q, k, v)
        q, k, v = unit_stride(q), unit_stride(k), unit_stride(v)
        BH, H, S, meta = launch_meta(q)
        o = bshd_empty(q)
        lse = torch.empty((BH, S), dtype=torch.float32, device=q.device)
        qk_scale = LOG2E / math.sqrt(q.shape[-1])
        _fwd[lambda m: (BH,)](q, k, v, o, lse, qk_scale, *head_strides(q, k, v, o), H, S, **meta, BLOCK_S=_block(S))
        ctx.save_for_backward(q, k, v, o, lse)
        return o

    @staticmethod
    @once_differentiable
    def backward(ctx, do):
        q, k, v, o, lse = ctx.saved_tensors
        do = unit_stride(do)
        BH, H, S, meta = launch_meta(q)
        dq, dk, dv = bshd_empty(q), bshd_empty(k), bshd_empty(v)
        sm_scale = 1.0 / math.sqrt(q.shape[-1])
        _bwd[lambda m: (BH,)](
            q,
            k,
            v,
            o,
            do,
            lse,
            dq,
            dk,
            dv,
            sm_scale * LOG2E,
            sm_scale,
            *head_strides(q, k, v, o, do, dq, dk, dv),
            H,
            S,
            **meta,
            BLOCK_S=_block(S),
        )
        return dq, dk, dv


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Non-causal softmax(q k^T / sqrt(Dh)) v over S <= CLIP_MAX_SEQ tokens. q, k, v (B, H, S, Dh) -> (B, H, S, Dh)."""
    return ClipAttentionFunction.apply(q, k, v)
