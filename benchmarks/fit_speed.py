"""How long does the whole fit take? ``fit_runs`` on a ~2,000-row synthetic sweep with bootstrap resamples.

The sweep (replicate.fit.synthetic_sweep) has 5 fitting sizes and a held-out one, 7 batch sizes x 7 learning
rates, 8 token checkpoints, diverged runs; the fit includes the fixed-hyperparameter laws and the holdout
predictions, as ``python -m replicate fit --bootstrap 1000`` would. The target is 60 s on 2 CPU cores.
Prints a table and writes JSON.

    python benchmarks/fit_speed.py [--resamples 1000] [--out results/benchmarks/fit_speed.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from replicate.fit import fit_runs, synthetic_sweep
from replicate.provenance import git_sha


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks/fit_speed.json"))
    args = parser.parse_args()
    runs = synthetic_sweep(holdout_widths=(192,), seed=args.seed)
    fixed_lr = float(np.sort(runs["lr"].unique())[3])
    timings = {}
    for resamples in (0, args.resamples):
        start = time.perf_counter()
        result = fit_runs(runs, fixed_batch_size=4096, fixed_lr=fixed_lr, bootstrap=resamples, seed=args.seed)
        timings[resamples] = time.perf_counter() - start
    per_resample_ms = 1e3 * (timings[args.resamples] - timings[0]) / max(args.resamples, 1)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(
        f"{'rows':>6} {'runs':>5} {'resamples':>9} {'fit (s)':>8} {'total (s)':>9} {'per resample (ms)':>18}"
        f" {'cores':>5}"
    )
    print(
        f"{len(runs):>6} {result['n_runs']:>5} {args.resamples:>9} {timings[0]:>8.2f} {timings[args.resamples]:>9.2f}"
        f" {per_resample_ms:>18.1f} {cores:>5}"
    )
    failed = result["bootstrap"]["failed"]
    print(f"bootstrap resamples without a converged law: {failed}")
    record = {
        "rows": len(runs),
        "runs": result["n_runs"],
        "resamples": args.resamples,
        "fit_s": timings[0],
        "total_s": timings[args.resamples],
        "per_resample_ms": per_resample_ms,
        "target_s": 60.0,
        "cores": cores,
        "failed": failed,
        "machine": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "git_sha": git_sha(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1))
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
