"""Throughput of learning-rate ensembles: one stacked model of E members vs E sequential runs.

Prints one JSON line per (model, E): {"model", "E", "speedup_vs_sequential" (median over rounds),
"speedup_range", ...} and writes them to
results/benchmarks/ensemble.json. The default models are the two smallest fitting sizes of the cpu profile,
timed with one thread at 2 clips per step, as the sweep's CPU workers run them (it ensembles learning rates
where E x batch size <= ensemble_rows, because the gain shrinks as each member's rows grow: `--batch-size 16`
measures it there).

    python benchmarks/ensemble.py [--profile cpu] [--batch-size 2] [--threads 1] [--device auto]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from replicate.config import TrainConfig, count_params
from replicate.profile import load_profile
from replicate.provenance import provenance
from replicate.training.step import resolve_device
from replicate.training.timing import step_seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="cpu", help="take the two smallest fitting models of this profile")
    parser.add_argument("--batch-size", type=int, default=2, help="clips per step")
    parser.add_argument("--members", default="1,4,8")
    parser.add_argument("--steps", type=int, default=21, help="timed steps per measurement (median taken)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating plain/stacked measurements")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks/ensemble.json"))
    args = parser.parse_args()
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    fit = [r for r in load_profile(args.profile).runs if r.role == "fit"]
    models = sorted({r.size: r.cfg.model for r in fit}.items(), key=lambda kv: count_params(kv[1]))[:2]
    rows = []
    for name, model in models:
        cfg = TrainConfig(model, batch_clips=args.batch_size, lr=1e-3, tokens=10**9)
        for members in (int(m) for m in args.members.split(",")):
            # one plain run and the stack timed alternately, round by round: the machine's drift cancels in
            # each round's ratio, and the median over rounds is reported
            rounds = [
                (
                    step_seconds([cfg], str(device), steps=args.steps),
                    step_seconds([cfg] * members, str(device), steps=args.steps),
                )
                for _ in range(args.rounds)
            ]
            ratios = sorted(members * single / stacked for single, stacked in rounds)
            rows.append(
                {
                    "model": name,
                    "n_params": count_params(model),
                    "E": members,
                    "speedup_vs_sequential": round(ratios[len(ratios) // 2], 3),
                    "speedup_range": [round(ratios[0], 3), round(ratios[-1], 3)],
                    "step_ms": round(1e3 * sorted(s for _, s in rounds)[len(rounds) // 2], 2),
                    "batch_size": args.batch_size,
                    "threads": torch.get_num_threads(),
                    **provenance(device),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
