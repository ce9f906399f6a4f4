"""How well does Stage A's measurement recover a planted curvature, and how often does its verdict come out
right? Planted Stage-A sweeps (one size, 5 batch sizes x 4 learning rates x2 apart, 7 checkpoints, 2 seeds,
replicate.fit.synthetic_stage_a) at several curvatures and noise levels, measured with
replicate.fit.curvature.batch_curvature (no bootstrap). Prints a table (median and quartiles of the estimate,
share of each verdict) and writes JSON.

    python benchmarks/stage_a_power.py [--replicates 8] [--noise 0.005] [--out results/benchmarks/stage_a_power.json]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from replicate.fit import synthetic_stage_a, validate_runs
from replicate.fit.curvature import batch_curvature
from replicate.io import write_json
from replicate.provenance import git_sha

CURVATURES = (0.0005, 0.001, 0.002, 0.003, 0.005)  # per squared doubling of B


def planted(curvature: float, noise: float, rep: int) -> pd.DataFrame:
    return validate_runs(synthetic_stage_a(curvature, noise, seed=rep))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicates", type=int, default=8)
    parser.add_argument("--noise", type=float, default=0.005, help="relative noise per run (one draw per run)")
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks/stage_a_power.json"))
    args = parser.parse_args()
    start = time.perf_counter()
    rows = []
    print(f"noise per run {args.noise:.2%}, {args.replicates} replicates")
    print(f"{'planted':>8} {'median':>8} {'quartiles':>18} {'go':>5} {'marginal':>9} {'no-go':>6}")
    for c in CURVATURES:
        out = [batch_curvature(planted(c, args.noise, rep), bootstrap=0) for rep in range(args.replicates)]
        est = np.array([o["curvature_per_doubling2"]["value"] for o in out], dtype=float)
        verdicts = pd.Series([o["verdict"] for o in out]).value_counts(normalize=True)
        q1, q3 = np.nanquantile(est, [0.25, 0.75])
        row = {
            "planted": c,
            "median": float(np.nanmedian(est)),
            "q1": float(q1),
            "q3": float(q3),
            **{v: float(verdicts.get(v, 0.0)) for v in ("go", "marginal", "no-go")},
        }
        rows.append(row)
        print(
            f"{c:>8.4f} {row['median']:>8.4f} {f'[{q1:.4f}, {q3:.4f}]':>18} {row['go']:>5.0%} "
            f"{row['marginal']:>9.0%} {row['no-go']:>6.0%}"
        )
    seconds = time.perf_counter() - start
    print(f"{seconds:.0f} s")
    write_json(
        args.out,
        {
            "noise_per_run": args.noise,
            "replicates": args.replicates,
            "rows": rows,
            "seconds": seconds,
            "git_sha": git_sha(),
        },
    )
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
