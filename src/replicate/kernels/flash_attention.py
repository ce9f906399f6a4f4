"""Non-causal flash attention, softmax(q k^T / sqrt(Dh)) v, forward and backward. q, k, v (B, H, S, Dh) with any
strides but a unit last one (the model passes views of its packed qkv projection), any S, Dh in {16, 32, 64,
128}.

Forward (FlashAttention-2): a program holds BLOCK_M queries and streams BLOCK_N keys and values with an
online softmax in base 2 (the 1/sqrt(Dh) scale folded into log2(e)), and saves the log-sum-exp per query.
Full key blocks run unmasked; only the tail block masks its scores. The output is written in (B, S, H, Dh)
memory and returned as a (B, H, S, Dh) view, so that the model's transpose back to tokens is free.

Backward, deterministic (no atomics): delta = rowsum(dO * O) first; then one kernel per key block that
streams all queries for dK and dV, and one per query block that streams all keys for dQ. The probabilities
are recomputed from the saved log-sum-exp; padded query rows load log-sum-exp = +inf, so their
probabilities are exactly 0 and they add nothing to dK, dV. Each kernel is written for every query/key pair
(no causal skipping), which is where ports of the causal tutorial go wrong.

Matmul inputs stay in their storage dtype (fp16/bf16 on tensor cores, fp32 accumulation); fp32 inputs use
exact fp32 products ("ieee"), not TF32, to match the reference. Block sizes are autotuned on a GPU.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl
from torch.autograd.function import once_differentiable

from replicate.kernels._attention import LOG2E, bshd_empty, check_qkv, head_strides, launch_meta
from replicate.kernels._triton import Tunable, check_device, unit_stride
from replicate.kernels.flash_attention_bwd import attn_bwd_delta, attn_bwd_dkdv, attn_bwd_dq

_INTERPRET_META = {"BLOCK_M": 32, "BLOCK_N": 32}  # several blocks and a tail at the tests' S = 100


def _configs(shapes: list[tuple[int, int, int, int]]) -> list[triton.Config]:
    return [triton.Config({"BLOCK_M": m, "BLOCK_N": n}, num_warps=w, num_stages=s) for m, n, w, s in shapes]


@triton.jit
def _fwd_keys(
    acc,
    m_i,
    l_i,
    q,
    k_base,
    v_base,
    stride_ks,
    stride_vs,
    start,
    end,
    S,
    qk_scale,
    offs_d,
    BLOCK_N: tl.constexpr,
    MASK: tl.constexpr,
    PRECISION: tl.constexpr,
):
    """Online softmax over the key blocks in [start, end); MASK for a block that runs past S."""
    for n0 in range(start, end, BLOCK_N):
        cols = n0 + tl.arange(0, BLOCK_N)
        kmask = cols < S
        kt = tl.load(k_base + cols[None, :].to(tl.int64) * stride_ks + offs_d[:, None], mask=kmask[None, :], other=0.0)
        s = tl.dot(q, kt, input_precision=PRECISION) * qk_scale
        if MASK:
            s = tl.where(kmask[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)
        v = tl.load(v_base + cols[:, None].to(tl.int64) * stride_vs + offs_d[None, :], mask=kmask[:, None], other=0.0)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
        m_i = m_new
    return acc, m_i, l_i


@triton.jit
def _attn_fwd(
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
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    pid_m, bh = tl.program_id(0), tl.program_id(1)
    b, h = (bh // H).to(tl.int64), (bh % H).to(tl.int64)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    qmask = rows < S
    offs_d = tl.arange(0, HEAD_DIM)
    q = tl.load(
        Q + b * stride_qb + h * stride_qh + rows[:, None].to(tl.int64) * stride_qs + offs_d[None, :],
        mask=qmask[:, None],
        other=0.0,
    )
    k_base = K + b * stride_kb + h * stride_kh
    v_base = V + b * stride_vb + h * stride_vh
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    full = (S // BLOCK_N) * BLOCK_N
    acc, m_i, l_i = _fwd_keys(
        acc, m_i, l_i, q, k_base, v_base, stride_ks, stride_vs, 0, full, S, qk_scale, offs_d, BLOCK_N, False, PRECISION
    )
    acc, m_i, l_i = _fwd_keys(
        acc, m_i, l_i, q, k_base, v_base, stride_ks, stride_vs, full, S, S, qk_scale, offs_d, BLOCK_N, True, PRECISION
    )
    out = acc / l_i[:, None]
    tl.store(
        O + b * stride_ob + h * stride_oh + rows[:, None].to(tl.int64) * stride_os + offs_d[None, :],
        out.to(O.dtype.element_ty),
        mask=qmask[:, None],
    )
    tl.store(LSE + bh.to(tl.int64) * S + rows, m_i + tl.log2(l_i), mask=qmask)


# (BLOCK_M, BLOCK_N, warps, stages). The large tiles suit bf16 at Dh <= 64; the small ones are the configs that
# compile without register spills for fp32 (exact products, the validation pass) and for Dh = 128 (checked
# with ptxas for sm_90). Each launch tries only the configs whose tiles fit the registers (Tunable.prune): the
# forward holds q, the output, a key and a value block and the scores; the dK dV pass a key and a value block,
# their gradients, a query and an output-gradient block and the probabilities and their gradient; the dQ pass
# the same with the query side's three blocks.
_KEY = ["S", "HEAD_DIM", "PRECISION"]


def _fwd_footprint(m: dict) -> float:
    return m["BLOCK_M"] * m["BLOCK_N"] + 2 * m["HEAD_DIM"] * (m["BLOCK_M"] + m["BLOCK_N"])


def _dkdv_footprint(m: dict) -> float:
    return 2 * m["BLOCK_M"] * m["BLOCK_N"] + m["HEAD_DIM"] * (4 * m["BLOCK_N"] + 2 * m["BLOCK_M"])


def _dq_footprint(m: dict) -> float:
    return 2 * m["BLOCK_M"] * m["BLOCK_N"] + m["HEAD_DIM"] * (3 * m["BLOCK_M"] + 2 * m["BLOCK_N"])


_fwd = Tunable(
    _attn_fwd,
    _configs(
        [
            (64, 32, 4, 3),
            (64, 64, 4, 3),
            (128, 32, 4, 3),
            (128, 64, 4, 3),
            (128, 64, 8, 3),
            (128, 128, 8, 2),
            (64, 64, 4, 4),
            (32, 32, 4, 2),
            (64, 16, 4, 3),
            (64, 32, 8, 3),
        ]
    ),
    _KEY,
    _INTERPRET_META,
    _fwd_footprint,
)
_dkdv = Tunable(
    attn_bwd_dkdv,
    _configs(
        [
            (32, 64, 4, 3),
            (32, 128, 8, 3),
            (64, 64, 4, 3),
            (64, 128, 8, 2),
            (16, 64, 4, 4),
            (16, 64, 8, 3),
            (16, 32, 4, 3),
            (32, 32, 8, 3),
        ]
    ),
    _KEY,
    _INTERPRET_META,
    _dkdv_footprint,
)
_dq = Tunable(
    attn_bwd_dq,
    _configs(
        [
            (64, 32, 4, 3),
            (128, 32, 8, 3),
            (64, 64, 4, 3),
            (128, 64, 8, 2),
            (64, 16, 4, 4),
            (32, 32, 4, 3),
            (64, 16, 8, 3),
            (32, 16, 4, 3),
        ]
    ),
    _KEY,
    _INTERPRET_META,
    _dq_footprint,
)
DELTA_BLOCK = 64


class FlashAttentionFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v):
        check_qkv(q, k, v)
        check_device(q, k, v)
        q, k, v = unit_stride(q), unit_stride(k), unit_stride(v)
        BH, H, S, meta = launch_meta(q)
        o = bshd_empty(q)
        lse = torch.empty((BH, S), dtype=torch.float32, device=q.device)
        sm_scale = 1.0 / math.sqrt(q.shape[-1])
        _fwd[lambda m: (triton.cdiv(S, m["BLOCK_M"]), BH)](
            q, k, v, o, lse, sm_scale * LOG2E, *head_strides(q, k, v, o), H, S, **meta
        )
        ctx.save_for_backward(q, k, v, o, lse)
        return o

    @staticmethod
    @once_differentiable
    def backward(ctx, do):
        q, k, v, o, lse = ctx.saved_tensors
        do = unit_stride(do)
        BH, H, S, meta = launch_meta(q)
        delta = torch.empty_like(lse)
        attn_bwd_delta[(triton.cdiv(S, DELTA_BLOCK), BH)](
            o, do, delta, *head_strides(o, do), H, S, HEAD_DIM=meta["HEAD_DIM"], BLOCK_M=DELTA_BLOCK
        )
        dq, dk, dv = bshd_empty(q), bshd_empty(k), bshd_empty(v)
        sm_scale = 1.0 / math.sqrt(q.shape[-1])
        inputs, strides = (q, k, v, do, lse, delta), head_strides(q, k, v, do)
        _dkdv[lambda m: (triton.cdiv(S, m["BLOCK_N"]), BH)](
            *inputs, dk, dv, sm_scale * LOG2E, sm_scale, *strides, *head_strides(dk, dv), H, S, **meta
        )
        _dq[lambda m: (triton.cdiv(S, m["BLOCK_M"]), BH)](
            *inputs, dq, sm_scale * LOG2E, sm_scale, *strides, *head_strides(dq), H, S, **meta
        )
        return dq, dk, dv


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Non-causal softmax(q k^T / sqrt(Dh)) v. q, k, v (B, H, S, Dh) -> (B, H, S, Dh)."""
    return FlashAttentionFunction.apply(q, k, v)
