"""The backward kernels of flash_attention (see its docstring): delta = rowsum(dO * O), then dK and dV per key
block streaming all queries, and dQ per query block streaming all keys. Deterministic (no atomics); the
probabilities are recomputed from the forward's log-sum-exp (base 2). Jit kernels only: their tuning and
launchers are in flash_attention.py, beside the forward's."""

import triton
import triton.language as tl


@triton.jit
def attn_bwd_delta(
    O,
    DO,
    DELTA,
    stride_ob,
    stride_oh,
    stride_os,
    stride_dob,
    stride_doh,
    stride_dos,
    H,
    S,
    HEAD_DIM: tl.constexpr,
    BLOCK_M: tl.constexpr,
):
    """delta = rowsum(dO * O), the softmax backward's per-query term."""
    pid_m, bh = tl.program_id(0), tl.program_id(1)
    b, h = (bh // H).to(tl.int64), (bh % H).to(tl.int64)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rmask = rows < S
    offs_d = tl.arange(0, HEAD_DIM)
    r64 = rows[:, None].to(tl.int64)
    o = tl.load(O + b * stride_ob + h * stride_oh + r64 * stride_os + offs_d[None, :], mask=rmask[:, None], other=0.0)
    do = tl.load(
        DO + b * stride_dob + h * stride_doh + r64 * stride_dos + offs_d[None, :], mask=rmask[:, None], other=0.0
    )
    tl.store(DELTA + bh.to(tl.int64) * S + rows, tl.sum(o.to(tl.float32) * do.to(tl.float32), axis=1), mask=rmask)


@triton.jit
def attn_bwd_dkdv(
    Q,
    K,
    V,
    DO,
    LSE,
    DELTA,
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
    stride_dob,
    stride_doh,
    stride_dos,
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
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    """dK, dV of BLOCK_N keys, streaming all queries (transposed: scores are (keys, queries))."""
    pid_n, bh = tl.program_id(0), tl.program_id(1)
    b, h = (bh // H).to(tl.int64), (bh % H).to(tl.int64)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    kmask = cols < S
    offs_d = tl.arange(0, HEAD_DIM)
    c64 = cols[:, None].to(tl.int64)
    k = tl.load(K + b * stride_kb + h * stride_kh + c64 * stride_ks + offs_d[None, :], mask=kmask[:, None], other=0.0)
    v = tl.load(V + b * stride_vb + h * stride_vh + c64 * stride_vs + offs_d[None, :], mask=kmask[:, None], other=0.0)
    q_base = Q + b * stride_qb + h * stride_qh
    do_base = DO + b * stride_dob + h * stride_doh
    dk = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    for m0 in range(0, S, BLOCK_M):
        rows = m0 + tl.arange(0, BLOCK_M)
        qmask = rows < S
        r64 = rows.to(tl.int64)
        qt = tl.load(q_base + r64[None, :] * stride_qs + offs_d[:, None], mask=qmask[None, :], other=0.0)
        lse = tl.load(LSE + bh.to(tl.int64) * S + rows, mask=qmask, other=float("inf"))
        pt = tl.exp2(tl.dot(k, qt, input_precision=PRECISION) * qk_scale - lse[None, :])
        do = tl.load(do_base + r64[:, None] * stride_dos + offs_d[None, :], mask=qmask[:, None], other=0.0)
        dv += tl.dot(pt.to(do.dtype), do, input_precision=PRECISION)
        delta = tl.load(DELTA + bh.to(tl.int64) * S + rows, mask=qmask, other=0.0)
        dpt = tl.dot(v, tl.trans(do), input_precision=PRECISION)
        dst = pt * (dpt - delta[None, :])
        dk += tl.dot(dst.to(qt.dtype), tl.trans(qt), input_precision=PRECISION)
    tl.store(
        DK + b * stride_dkb + h * stride_dkh + c64 * stride_dks + offs_d[None, :],
        (dk * sm_scale).to(DK.dtype.element_ty),
        mask=kmask[:, None],
    )
    tl.store(
        DV + b * stride_dvb + h * stride_dvh + c64 * stride_dvs + offs_d[None, :],
        dv.to(DV.dtype.element_ty),
        mask=kmask[:, None],
    )


@triton.jit
def _dq_keys(
    dq,
    q,
    do,
    lse,
    delta,
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
    """dQ (unscaled) accumulated over the key blocks in [start, end); MASK for a block that runs past S."""
    for n0 in range(start, end, BLOCK_N):
        cols = n0 + tl.arange(0, BLOCK_N)
        kmask = cols < S
        c64 = cols[None, :].to(tl.int64)
        kt = tl.load(k_base + c64 * stride_ks + offs_d[:, None], mask=kmask[None, :], other=0.0)
        vt = tl.load(v_base + c64 * stride_vs + offs_d[:, None], mask=kmask[None, :], other=0.0)
        p = tl.exp2(tl.dot(q, kt, input_precision=PRECISION) * qk_scale - lse[:, None])
        if MASK:
            p = tl.where(kmask[None, :], p, 0.0)
        ds = p * (tl.dot(do, vt, input_precision=PRECISION) - delta[:, None])
        dq += tl.dot(ds.to(kt.dtype), tl.trans(kt), input_precision=PRECISION)
    return dq


@triton.jit
def attn_bwd_dq(
    Q,
    K,
    V,
    DO,
    LSE,
    DELTA,
    DQ,
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
    stride_dob,
    stride_doh,
    stride_dos,
    stride_dqb,
    stride_dqh,
    stride_dqs,
    H,
    S,
    HEAD_DIM: tl.constexpr,
    PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    """dQ of BLOCK_M queries, streaming all keys."""
    pid_m, bh = tl.program_id(0), tl.program_id(1)
    b, h = (bh // H).to(tl.int64), (bh % H).to(tl.int64)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    qmask = rows < S
    offs_d = tl.arange(0, HEAD_DIM)
    r64 = rows[:, None].to(tl.int64)
    q = tl.load(Q + b * stride_qb + h * stride_qh + r64 * stride_qs + offs_d[None, :], mask=qmask[:, None], other=0.0)
    do = tl.load(
        DO + b * stride_dob + h * stride_doh + r64 * stride_dos + offs_d[None, :], mask=qmask[:, None], other=0.0
    )
    lse = tl.load(LSE + bh.to(tl.int64) * S + rows, mask=qmask, other=float("inf"))
    delta = tl.load(DELTA + bh.to(tl.int64) * S + rows, mask=qmask, other=0.0)
    k_base = K + b * stride_kb + h * stride_kh
    v_base = V + b * stride_vb + h * stride_vh
    dq = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    full = (S // BLOCK_N) * BLOCK_N
    dq = _dq_keys(
        dq,
        q,
        do,
        lse,
        delta,
        k_base,
        v_base,
        stride_ks,
        stride_vs,
        0,
        full,
        S,
        qk_scale,
        offs_d,
        BLOCK_N,
        False,
        PRECISION,
    )
    dq = _dq_keys(
        dq,
        q,
        do,
        lse,
        delta,
        k_base,
        v_base,
        stride_ks,
        stride_vs,
        full,
        S,
        S,
        qk_scale,
        offs_d,
        BLOCK_N,
        True,
        PRECISION,
    )
    tl.store(
        DQ + b * stride_dqb + h * stride_dqh + r64 * stride_dqs + offs_d[None, :],
        (dq * sm_scale).to(DQ.dtype.element_ty),
        mask=qmask[:, None],
    )
