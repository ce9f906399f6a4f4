"""Launch helpers shared by the Triton kernels: interpreter detection, row-tile sizes, per-batch chunking,
dtype rules and lazy autotuning.

Nothing here touches the CUDA driver at import time: the SM count is read on the first launch, and the
autotuner is only built on the first GPU launch (the CPU interpreter runs fixed meta-parameters instead).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence

import torch
import triton

from replicate.errors import ConfigError

ROW_TILE = 4096  # elements per (rows x features) tile of the row kernels: 16 fp32 values per thread at 8 warps


def interpreting() -> bool:
    """True when Triton runs kernels on the CPU interpreter (TRITON_INTERPRET=1)."""
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


def check_device(*tensors: torch.Tensor) -> None:
    """The kernels need CUDA tensors, or the interpreter for CPU tensors, and all tensors on one device."""
    devices = {t.device for t in tensors}
    if len(devices) > 1:
        raise ConfigError(f"tensors are on different devices: {sorted(map(str, devices))}")
    if tensors[0].device.type != "cuda" and not interpreting():
        raise ConfigError(
            "the triton backend needs CUDA tensors (or TRITON_INTERPRET=1 for CPU tensors): "
            "use backend 'torch' or 'auto' on the CPU"
        )


def check_same_dtype(names: str, *tensors: torch.Tensor) -> None:
    """ValueError unless the tensors (`names` in the message, e.g. "q, k, v") share one dtype."""
    if len({t.dtype for t in tensors}) > 1:
        raise ValueError(f"{names} must share a dtype, got {', '.join(str(t.dtype) for t in tensors)}")


def unit_stride(t: torch.Tensor) -> torch.Tensor:
    """t with stride 1 along its last dimension (a copy only where it has not)."""
    return t if t.stride(-1) == 1 else t.contiguous()


def out_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """The dtype the torch reference would return for an op on these tensors (type promotion)."""
    return functools.reduce(torch.promote_types, (t.dtype for t in tensors))


def matmul_input_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """Dtype for an output that only feeds a matmul: the autocast dtype under CUDA autocast (the matmul would
    cast to it anyway, so storing it directly saves a pass), else the reference's promoted dtype."""
    if tensors[0].is_cuda and torch.is_autocast_enabled("cuda"):
        return torch.get_autocast_dtype("cuda")
    return out_dtype(*tensors)


@functools.cache
def _sm_count(device: torch.device) -> int:
    return torch.cuda.get_device_properties(device).multi_processor_count


def row_tiles(d: int) -> tuple[int, int, int]:
    """(BLOCK_D, BLOCK_M, num_warps) for kernels that hold whole rows of d features: one power-of-two row
    block, as many rows per tile as fit in ROW_TILE elements, and warps so that each thread holds ~16."""
    block_d = triton.next_power_of_2(d)
    block_m = max(1, min(64, ROW_TILE // block_d))
    return block_d, block_m, max(4, min(16, block_m * block_d // 512))


def sequence_chunks(batch: int, seq: int, block_m: int, device: torch.device) -> tuple[int, int]:
    """(rows per program, programs per batch element) for a (chunk, batch) grid over (B, S, D) rows.

    Per-batch reductions (d shift, d scale, d gate) are summed over a program's rows in registers and over
    chunks by the host, deterministically. On a GPU there are ~4 programs per SM, so a small batch of long
    sequences still fills the device; the interpreter takes ~4 programs in all (fewer program instances is
    faster there), which still exercises the multi-chunk sum in the tests.
    """
    target = 4 * (_sm_count(device) if device.type == "cuda" else 1)
    n_chunks = max(1, min(triton.cdiv(target, batch), triton.cdiv(seq, block_m)))
    chunk = max(1, triton.cdiv(triton.cdiv(seq, n_chunks), block_m)) * block_m
    return chunk, triton.cdiv(seq, chunk)


def row_launch(x: torch.Tensor) -> tuple[tuple[int, int], dict, int]:
    """(grid, meta-parameters, rows per program) of a row kernel over x (B, S, D): grid (chunks, B)."""
    B, S, D = x.shape
    block_d, block_m, num_warps = row_tiles(D)
    chunk, n_chunks = sequence_chunks(B, S, block_m, x.device)
    return (n_chunks, B), {"BLOCK_M": block_m, "BLOCK_D": block_d, "num_warps": num_warps}, chunk


# 32-bit registers per thread that a config's tiles may take before it is pruned from autotuning: a config
# past them spills to local memory on sm_90, compiles slowly (minutes for the fp32 clip attention backward at 64
# tokens and head dim 64 on one warp) and runs slowly. fp32 dots take exact ("ieee") products on the FMA units,
# their operands in registers; tensor-core dots (bf16, tf32) hold only fragments. Set from ptxas -v over each
# kernel's configs for sm_90 at the study's head dims and clip lengths: no config within them spills more than a
# few bytes, and every config that spills more is past them.
REGISTER_BUDGET = {"ieee": 64}
TENSOR_CORE_REGISTER_BUDGET = 256


class Tunable:
    """A @triton.jit kernel autotuned over `configs` on a GPU, and launched with the fixed meta-parameters
    `interpret_meta` on the interpreter (which ignores launch configs: autotuning would only multiply its
    runtime). Launch as ``kernel[grid](*args)`` with a grid that is a function of the meta-parameters.
    `footprint(meta)`: the values a program of the kernel holds (its tiles) at a launch's arguments and a
    config's meta-parameters; the tuner then tries only the configs that fit the register budget (`prune`)."""

    def __init__(
        self,
        fn,
        configs: Sequence[triton.Config],
        key: list[str],
        interpret_meta: dict,
        footprint: Callable[[dict], float] | None = None,
    ) -> None:
        self.fn, self.configs, self.key, self.interpret_meta = fn, list(configs), key, interpret_meta
        self.footprint = footprint

    def registers(self, config: triton.Config, meta: dict) -> float:
        """32-bit values per thread that `config`'s tiles take at a launch with arguments `meta`."""
        return self.footprint({**meta, **config.kwargs}) / (32 * config.num_warps) if self.footprint else 0.0

    def prune(self, configs: Sequence[triton.Config], named_args: dict, **kwargs) -> list[triton.Config]:
        """The configs worth compiling at this launch (triton's early_config_prune: the launch's arguments by name
        and its keyword meta-parameters): those within the register budget of its precision, else the one
        that takes the fewest registers (never none)."""
        meta = {**named_args, **kwargs}
        budget = REGISTER_BUDGET.get(meta.get("PRECISION"), TENSOR_CORE_REGISTER_BUDGET)
        fit = [c for c in configs if self.registers(c, meta) <= budget]
        return fit or [min(configs, key=lambda c: self.registers(c, meta))]

    @functools.cached_property
    def _tuned(self):
        return triton.autotune(configs=self.configs, key=self.key, prune_configs_by={"early_config_prune": self.prune})(
            self.fn
        )

    def __getitem__(self, grid: Callable[[dict], tuple[int, ...]]):
        if interpreting():
            return functools.partial(self.fn[grid], **self.interpret_meta)
        return self._tuned[grid]
