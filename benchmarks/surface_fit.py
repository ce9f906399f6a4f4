"""Does the surface fit recover the batch law where the per-(N, T) optima fail? Planted noisy sweeps.

Each replicate is a synthetic sweep (replicate.fit.synthetic_sweep: 4 fitting sizes, 7 checkpoints sqrt(2)
apart, 7 batch sizes x 7 learning rates) with the paper's exponents planted, a curvature of 0.3% per squared
doubling of B and 0.9% noise per run (one draw per run, so a run's checkpoints share it). Two estimators of
the B_opt law: the two-stage one (parabola vertices per (N, T), edge optima dropped, a power law through the
rest: what fit.json's `batch_size_law` holds) and the surface fit (fit.surface: `surface` in fit.json), the
latter with a 95% bootstrap interval over runs. Prints a table (median error and interval coverage of beta_B
and gamma_B) and writes JSON.

    python benchmarks/surface_fit.py [--replicates 20] [--resamples 200] [--out results/benchmarks/surface_fit.json]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from replicate.fit import SweepCube, batch_profile, fit_hyperparameter_law, synthetic_sweep, validate_runs
from replicate.fit.bootstrap import bootstrap_runs, percentile_interval
from replicate.fit.surface import fit_batch_surface
from replicate.io import write_json
from replicate.provenance import git_sha

TRUE = {"exp_tokens": 0.8080, "exp_params": 0.1906}
CURVATURE, NOISE = 0.003, 0.009  # per squared doubling of B; relative, per run


def planted(seed: int):
    runs = synthetic_sweep(
        widths=(32, 48, 64, 96),
        tokens=tuple(2**20 * 2 ** (k / 2) for k in range(7)),
        curvature_batch=CURVATURE / np.log(2) ** 2,
        run_noise=NOISE,
        checkpoint_noise=NOISE / 3,
        diverge_rate=0.0,
        seed=seed,
    )
    return validate_runs(runs)


def two_stage(runs) -> dict:
    """fit.json's batch_size_law: the interior optima's power law (all optima when too few are interior)."""
    cube = SweepCube.from_runs(runs)
    opt = cube.optima()
    use = opt["valid"] & ~opt["on_edge"]
    use = use if use.sum() >= 5 else opt["valid"]
    return fit_hyperparameter_law(cube.tokens[use], cube.n_params[use], np.exp(opt["log_batch"][use]))


def replicate_once(seed: int, resamples: int) -> dict:
    runs = planted(seed)
    surface = fit_batch_surface(batch_profile(runs))
    n_runs = runs["run"].nunique()

    def refit(counts):
        s = fit_batch_surface(batch_profile(runs, counts), surface)
        return {k: s[k] for k in TRUE} if s["converged"] else {}

    samples = bootstrap_runs(refit, n_runs, resamples, list(TRUE), seed=seed)
    out = {"seed": seed, "two_stage": {k: two_stage(runs)[k] for k in TRUE}}
    out["surface"] = {k: surface[k] for k in TRUE}
    out["ci95"] = {k: percentile_interval(samples[k]) for k in TRUE}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicates", type=int, default=20)
    parser.add_argument("--resamples", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks/surface_fit.json"))
    args = parser.parse_args()
    start = time.perf_counter()
    reps = [replicate_once(seed, args.resamples) for seed in range(args.replicates)]
    print(f"{'exponent':<12} {'true':>6} {'two-stage |err|':>16} {'surface |err|':>14} {'surface CI covers':>18}")
    summary = {}
    for k, true in TRUE.items():
        err2 = np.median([abs(r["two_stage"][k] - true) for r in reps])
        errs = np.median([abs(r["surface"][k] - true) for r in reps])
        covered = sum(1 for r in reps if r["ci95"][k] and r["ci95"][k][0] <= true <= r["ci95"][k][1])
        summary[k] = {
            "true": true,
            "median_abs_error_two_stage": err2,
            "median_abs_error_surface": errs,
            "coverage": covered / len(reps),
        }
        print(f"{k:<12} {true:>6.3f} {err2:>16.3f} {errs:>14.3f} {covered:>12d} of {len(reps)}")
    seconds = time.perf_counter() - start
    print(f"{args.replicates} replicates x {args.resamples} resamples in {seconds:.0f} s")
    write_json(
        args.out,
        {
            "curvature_per_doubling2": CURVATURE,
            "noise_per_run": NOISE,
            "replicates": reps,
            "summary": summary,
            "seconds": seconds,
            "git_sha": git_sha(),
        },
    )
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
