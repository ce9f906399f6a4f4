"""Host-side pieces both attention kernels share (flash_attention for any S, clip_attention for short clips):
the input checks, the (B, S, H, Dh) output layout, the stride list and the launch metadata, and the base-2
softmax's log2(e). Nothing here compiles a kernel."""

from __future__ import annotations

import torch

from replicate.kernels import ATTENTION_HEAD_DIMS
from replicate.kernels._triton import check_same_dtype

LOG2E = 1.4426950408889634  # the softmax runs in base 2: exp(x) = exp2(x log2(e))


def check_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    """q, k, v of one (B, H, S, Dh) shape and dtype, Dh one the kernels take (ValueError otherwise)."""
    if q.dim() != 4 or k.shape != q.shape or v.shape != q.shape:
        raise ValueError(
            f"expected q, k, v of one shape (B, H, S, Dh), got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    if q.shape[-1] not in ATTENTION_HEAD_DIMS:
        raise ValueError(f"head dim must be one of {ATTENTION_HEAD_DIMS}, got {q.shape[-1]}")
    check_same_dtype("q, k, v", q, k, v)


def bshd_empty(like: torch.Tensor) -> torch.Tensor:
    """An uninitialised (B, H, S, Dh) tensor laid out as (B, S, H, Dh) in memory (the model's transpose back to
    tokens is then free)."""
    B, H, S, Dh = like.shape
    return like.new_empty((B, S, H, Dh)).permute(0, 2, 1, 3)


def head_strides(*tensors: torch.Tensor) -> list[int]:
    """The (B, H, S) strides of each (B, H, S, Dh) tensor, in order, as the kernels take them (Dh's is 1)."""
    return [s for t in tensors for s in t.stride()[:3]]


def launch_meta(q: torch.Tensor) -> tuple[int, int, int, dict]:
    """(B H programs' count, H, S, the kernels' constexprs): fp32 takes exact products ("ieee"), other dtypes
    tensor-core ones."""
    B, H, S, Dh = q.shape
    meta = {"HEAD_DIM": Dh, "PRECISION": "ieee" if q.dtype == torch.float32 else "tf32"}
    return B * H, H, S, meta
