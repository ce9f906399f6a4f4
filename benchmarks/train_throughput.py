"""Training throughput of three model sizes on this device, next to an fp32 matmul peak measured in the same run.

Prints one JSON line per model size:
  {"config": {...}, "tokens_per_s", "achieved_gflops", "matmul_peak_gflops", "ratio",
   "data_tokens_per_s", "data_speedup"}
achieved_gflops counts the "exact" training FLOPs (replicate.training.model.flops_per_token); data_speedup is how many
times faster the procedural clip generator produces tokens than this training step consumes them.

    python benchmarks/train_throughput.py [--sizes nano,tiny,small] [--batch-size 64] [--device auto]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from replicate.config import TrainConfig, count_params, flops_per_token, model_config
from replicate.provenance import provenance
from replicate.training.data import ClipStream
from replicate.training.step import resolve_device
from replicate.training.timing import step_seconds, timed


def _seconds_per_call(fn, device: torch.device, warmup: int, reps: int) -> float:
    """Median seconds of one call of fn over `reps` timed calls."""
    for _ in range(warmup):
        fn()
    return sorted(timed(device, fn) for _ in range(reps))[reps // 2]


def matmul_peak_gflops(device: torch.device, n: int = 2048) -> float:
    """fp32 matmul rate of an n x n product (TF32 off, torch's default)."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    return 2 * n**3 / _seconds_per_call(lambda: a @ b, device, warmup=3, reps=10) / 1e9


def measure(size: str, batch_size: int, device: torch.device, steps: int) -> dict:
    cfg = TrainConfig(model_config(size), batch_clips=batch_size, lr=1e-4, tokens=10**9)
    step_s = step_seconds([cfg], str(device), steps=steps)
    # the stream renders blocks of clips ahead: time whole blocks, per batch
    stream = ClipStream(cfg.model.clip, 0, "train", device)
    per_block = max(1, stream.block // batch_size)
    data_s = _seconds_per_call(lambda: [stream.next(batch_size) for _ in range(per_block)], device, 1, 5) / per_block
    tokens_per_s = cfg.tokens_per_step / step_s
    m = cfg.model
    return {
        "config": {
            "size": size,
            "width": m.width,
            "depth": m.depth,
            "heads": m.heads,
            "n_params": count_params(m),
            "batch_size": batch_size,
            "tokens_per_sample": m.n_ctx,
        },
        "tokens_per_s": round(tokens_per_s),
        "achieved_gflops": tokens_per_s * flops_per_token(m, "exact") / 1e9,
        "data_tokens_per_s": round(cfg.tokens_per_step / data_s),
        "data_speedup": step_s / data_s,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="nano,tiny,small")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per size (median taken)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    parser.add_argument("--out", type=Path, help="also append the JSON lines to this file")
    args = parser.parse_args()
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    peak = matmul_peak_gflops(device)
    lines = []
    for size in args.sizes.split(","):
        row = measure(size, args.batch_size, device, args.steps)
        row.update(matmul_peak_gflops=peak, ratio=row["achieved_gflops"] / peak, **provenance(device))
        lines.append(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}))
        print(lines[-1], flush=True)
    if args.out:
        with open(args.out, "a") as f:
            f.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
