"""The Triton kernels against PyTorch eager and torch.compile on a GPU.

Each op, forward + backward, at the shapes of the largest model (default: size `large`, width 384, 6 heads of
64, 128 tokens per clip); attention also at 1024 tokens; and a full training step (bf16 autocast, AdamW) of
that model with backend triton, eager (backend torch) and torch.compile (backend torch, compiled).

`achieved` is GB/s for the memory-bound ops (the bytes a fused fwd + bwd must move, the same count for every
backend, so it is an effective bandwidth) and TFLOP/s for attention (4 B H S^2 Dh forward, 2.5x that
backward) and the training step (the model's "exact" FLOPs); `peak` is the device-to-device copy bandwidth or
the bf16 matmul rate measured in the same run. Eager attention is SDPA with its flash backend forced.

Prints a table and writes a CSV (op, shape, dtype, backend, ms, speedup_vs_eager, achieved, peak, and the
provenance: device, torch, triton, git_sha).

    python benchmarks/kernels.py [--size large] [--batch-size 256] [--out results/benchmarks/kernels.csv]
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from replicate.config import TrainConfig, flops_per_token, model_config
from replicate.data import ClipStream
from replicate.kernels import OPS, ExampleInputs
from replicate.provenance import provenance
from replicate.step import GroupStepper

COLUMNS = (
    "op",
    "shape",
    "dtype",
    "backend",
    "ms",
    "speedup_vs_eager",
    "achieved",
    "peak",
    "device",
    "torch",
    "triton",
    "git_sha",
)
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def _ms(fn: Callable[[], object], grad_to_none: list[torch.Tensor] | None = None, rep: int = 200) -> float:
    """Median milliseconds of fn (L2 flushed between calls)."""
    from triton.testing import do_bench

    return do_bench(fn, warmup=50, rep=rep, grad_to_none=grad_to_none, return_mode="median")


def copy_gbps(device: torch.device) -> float:
    src = torch.empty(2**28, dtype=torch.float32, device=device)  # 1 GiB
    dst = torch.empty_like(src)
    return 2 * src.numel() * 4 / _ms(lambda: dst.copy_(src)) / 1e6


def matmul_tflops(device: torch.device, n: int = 8192) -> float:
    a, b = (torch.randn(n, n, device=device, dtype=torch.bfloat16) for _ in range(2))
    return 2 * n**3 / _ms(lambda: a @ b) / 1e9


def _fwd_bwd(fn: Callable, inputs: list[torch.Tensor]) -> Callable[[], None]:
    """A closure running fn forward and backward with fixed random output gradients."""
    outs = fn(*inputs)
    outs = outs if isinstance(outs, tuple) else (outs,)
    grads = [torch.randn_like(o) for o in outs]

    def run() -> None:
        res = fn(*inputs)
        torch.autograd.backward(res if isinstance(res, tuple) else (res,), grads)

    return run


def _leaf(made: list[torch.Tensor], shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    made.append(torch.randn(*shape, dtype=dtype, device=device).requires_grad_())
    return made[-1]


def op_cases(width: int, heads: int, seq: int, batch: int, dtype: torch.dtype, device: torch.device):
    """(op, shape, inputs, triton fn, torch reference, bytes moved or None, FLOPs or None) per op of the catalog,
    attention also at 1024 tokens (the same tokens per batch)."""
    es = torch.finfo(dtype).bits // 8
    for name, op in OPS.items():
        for s in (seq, 1024) if name == "attention" else (seq,):
            b = max(1, batch * seq // s)
            leaves: list[torch.Tensor] = []  # the tensors made: views of them are the op's inputs
            inputs = op.example(
                ExampleInputs(lambda shape, made=leaves: _leaf(made, shape, dtype, device), b, s, width, heads)
            )
            nbytes, flops = op.cost(b, s, width, heads, es)
            shape = "x".join(str(n) for n in inputs[0].shape)
            yield (
                name,
                shape,
                inputs,
                leaves,
                lambda *a, _fn=op.fn: _fn(*a, backend="triton"),
                op.reference,
                nbytes,
                flops,
            )


def bench_ops(args, device: torch.device, peaks: dict[str, float]) -> list[dict]:
    cfg = model_config(args.size)
    dtype = DTYPES[args.dtype]
    rows = []
    for op, shape, inputs, leaves, triton_fn, ref_fn, nbytes, flops in op_cases(
        cfg.width, cfg.heads, cfg.n_ctx, args.batch_size, dtype, device
    ):
        if op == "attention":  # eager attention is SDPA's flash kernel, as the target is set against it

            def eager(*a, _ref=ref_fn):
                with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                    return _ref(*a)
        else:
            eager = ref_fn
        timings = {
            name: _ms(_fwd_bwd(fn, inputs), grad_to_none=leaves)
            for name, fn in (("eager", eager), ("compile", torch.compile(ref_fn)), ("triton", triton_fn))
        }
        for backend, ms in timings.items():
            if nbytes is not None:
                achieved, peak = nbytes / ms / 1e6, peaks["copy_gbps"]
            else:
                achieved, peak = flops / ms / 1e9, peaks["matmul_tflops"]
            rows.append(
                {
                    "op": op,
                    "shape": shape,
                    "dtype": args.dtype,
                    "backend": backend,
                    "ms": ms,
                    "speedup_vs_eager": timings["eager"] / ms,
                    "achieved": achieved,
                    "peak": peak,
                }
            )
    return rows


def bench_train_step(args, device: torch.device, peaks: dict[str, float]) -> list[dict]:
    """One step of the trainer itself (replicate.step.GroupStepper.step: bf16 autocast, epsilon-prediction MSE,
    per-member clipping, AdamW) with the triton and torch backends, and the torch backend compiled."""
    cfg = TrainConfig(model_config(args.size), batch_size=args.batch_size, lr=1e-4, tokens=10**9)
    batch = ClipStream(cfg.model.clip, 0, "train", device).next(cfg.batch_size)
    flops = cfg.tokens_per_step * flops_per_token(cfg.model, "exact")
    timings = {}
    for name, backend, compiled in (("eager", "torch", False), ("compile", "torch", True), ("triton", "triton", False)):
        group = GroupStepper([cfg], device, backend)
        forward = torch.compile(group.model) if compiled else group.model

        def step(group=group, forward=forward) -> None:
            group.step(100, [batch], forward)

        timings[name] = _ms(step, rep=1000)
    m = cfg.model
    shape = f"{args.size}:B{cfg.batch_size}xS{m.n_ctx}xD{m.width}xL{m.depth}"
    return [
        {
            "op": "train_step",
            "shape": shape,
            "dtype": "bf16-autocast",
            "backend": name,
            "ms": ms,
            "speedup_vs_eager": timings["eager"] / ms,
            "achieved": flops / ms / 1e9,
            "peak": peaks["matmul_tflops"],
        }
        for name, ms in timings.items()
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="large", help="model size whose shapes to use (replicate.model)")
    parser.add_argument("--batch-size", type=int, default=256, help="clips per batch")
    parser.add_argument("--dtype", default="bf16", choices=sorted(DTYPES), help="dtype of the op benchmarks")
    parser.add_argument("--skip-train-step", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks/kernels.csv"))
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print(
            "benchmarks/kernels.py needs a CUDA GPU (the Triton kernels are timed compiled, not interpreted)",
            file=sys.stderr,
        )
        return 2
    device = torch.device("cuda")
    peaks = {"copy_gbps": copy_gbps(device), "matmul_tflops": matmul_tflops(device)}
    rows = bench_ops(args, device, peaks)
    if not args.skip_train_step:
        rows += bench_train_step(args, device, peaks)
    prov = provenance(device)
    name = prov["device"]
    for r in rows:
        r.update(prov)
    print(f"{name}: copy {peaks['copy_gbps']:.0f} GB/s, bf16 matmul {peaks['matmul_tflops']:.0f} TFLOP/s")
    print(f"{'op':<34} {'shape':<28} {'backend':<8} {'ms':>9} {'x eager':>8} {'achieved':>9} {'% peak':>7}")
    for r in rows:
        print(
            f"{r['op']:<34} {r['shape']:<28} {r['backend']:<8} {r['ms']:9.4f} {r['speedup_vs_eager']:8.2f} "
            f"{r['achieved']:9.1f} {100 * r['achieved'] / r['peak']:6.1f}%"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in r.items()} for r in rows)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
