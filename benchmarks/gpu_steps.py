"""Seconds per training step of stacked (ensembled) models on this device, alone and with K processes sharing it.

Small models on a GPU are bound by kernel-launch latency, not FLOPs: a sweep's cost is then its number of steps
times this latency, divided by how well K worker processes overlap on one device. Used to design the gpu
profile. Prints one JSON line per measurement.

    python benchmarks/gpu_steps.py [--shapes mini:1:6,small:4:6] [--procs 1,4,8] [--seconds 8]
        [--backend auto|torch|triton] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path

import torch

from replicate.config import TrainConfig, count_params, model_config
from replicate.kernels import BACKENDS
from replicate.provenance import provenance
from replicate.training.step import GroupStepper


def _steps_for(size: str, batch: int, members: int, seconds: float, device: str, backend: str, barrier) -> float:
    """Steps per second of one process training `members` stacked models for about `seconds`."""
    cfgs = [TrainConfig(model_config(size), batch_clips=batch, lr=1e-4 * (i + 1), tokens=10**9) for i in range(members)]
    group = GroupStepper(cfgs, torch.device(device), backend)
    for i in range(5):
        group.step(i + 1)
    torch.cuda.synchronize()
    if barrier is not None:
        barrier.wait()
    t0, n = time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        for _ in range(20):
            n += 1
            group.step(n)
        torch.cuda.synchronize()
    return n / (time.perf_counter() - t0)


def _worker(args, barrier, queue) -> None:
    queue.put(_steps_for(*args, barrier))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", default="mini:1:6", help="size:clips per member:members, comma-separated")
    parser.add_argument("--procs", default="1", help="process counts to try for the first shape")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--backend", default="auto", choices=BACKENDS, help="the model's ops (auto: Triton on CUDA)")
    parser.add_argument("--out", type=Path, help="also append the JSON lines to this file")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("benchmarks/gpu_steps.py needs a CUDA GPU", file=sys.stderr)
        return 2
    for k, spec in enumerate(args.shapes.split(",")):
        size, batch, members = spec.split(":")
        batch, members = int(batch), int(members)
        n = count_params(model_config(size))
        for procs in [int(p) for p in args.procs.split(",")] if k == 0 else [1]:
            ctx = mp.get_context("spawn")
            barrier, queue = ctx.Barrier(procs), ctx.Queue()
            shape = (size, batch, members, args.seconds, "cuda", args.backend)
            ps = [ctx.Process(target=_worker, args=(shape, barrier, queue)) for _ in range(procs)]
            for p in ps:
                p.start()
            rates = [queue.get() for _ in ps]
            for p in ps:
                p.join()
            line = json.dumps(
                {
                    "size": size,
                    "n_params": n,
                    "clips": batch,
                    "members": members,
                    "procs": procs,
                    "backend": args.backend,
                    "ms_per_step": 1e3 / (sum(rates) / procs),
                    "steps_per_s_total": sum(rates),
                    **provenance(torch.device("cuda")),
                }
            )
            print(line, flush=True)
            if args.out:
                with open(args.out, "a") as f:
                    f.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
