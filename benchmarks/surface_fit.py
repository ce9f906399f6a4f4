"""Does the surface fit recover the batch law where the per-(N, T) optima fail? Planted noisy sweeps.

Each replicate is a synthetic sweep (replicate.fit.synthetic_sweep: 4 fitting sizes, 7 checkpoints sqrt(2)
apart, 7 batch sizes x 7 learning rates) with the paper's exponents planted, a curvature of 0.3% per squared
doubling of B, 0.9% noise per run (one draw per run, so a run's checkpoints share it) and 0.3% per checkpoint.
Two estimators of the B_opt law: the two-stage one (parabola vertices per (N, T), edge optima dropped, a power
law through the rest: what fit.json's `batch_size_law` holds) and the surface fit (fit.surface: `surface` in
fit.json). Median errors over `--error-replicates` sweeps (a median over 20 moves by about a fifth between
sets of seeds); the surface's 95% bootstrap interval (over runs) and its coverage over the first
`--replicates`. Beside them the Cramer-Rao bound of this design (fit.surface.exponent_sd at the noiseless
sweep), as the median error an efficient unbiased estimator would have (0.674 sd). Prints a table, writes JSON.

    python benchmarks/surface_fit.py [--replicates 20] [--error-replicates 100] [--resamples 200]
        [--out results/benchmarks/surface_fit.json]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from replicate.fit import SweepCube, fit_hyperparameter_law, synthetic_sweep, validate_runs
from replicate.fit.bootstrap import bootstrap_runs, percentile_interval
from replicate.fit.surface import exponent_sd, fit_surface
from replicate.io import write_json
from replicate.provenance import git_sha

TRUE = {"exp_tokens": 0.8080, "exp_params": 0.1906}
CURVATURE, NOISE = 0.003, 0.009  # per squared doubling of B; relative, per run
HALF_NORMAL_MEDIAN = 0.6745  # median |error| of an unbiased normal estimator, in standard deviations


def planted(seed: int, noise: float = NOISE):
    runs = synthetic_sweep(
        widths=(32, 48, 64, 96),
        tokens=tuple(2**20 * 2 ** (k / 2) for k in range(7)),
        curvature_batch=CURVATURE / np.log(2) ** 2,
        run_noise=noise,
        checkpoint_noise=noise / 3,
        diverge_rate=0.0,
        seed=seed,
    )
    return validate_runs(runs)


def cramer_rao() -> dict[str, float]:
    """The smallest median |error| of each exponent on this design (at the noiseless sweep's surface)."""
    cube = SweepCube.from_runs(planted(0, noise=0.0))
    sd = exponent_sd(cube, fit_surface(cube)[0], NOISE, NOISE / 3)["cramer_rao"]
    return {k: HALF_NORMAL_MEDIAN * sd[k] for k in TRUE}


def two_stage(runs) -> dict:
    """fit.json's batch_size_law: the interior optima's power law (all optima when too few are interior)."""
    cube = SweepCube.from_runs(runs)
    opt = cube.optima()
    use = opt["valid"] & ~opt["on_edge"]
    use = use if use.sum() >= 5 else opt["valid"]
    return fit_hyperparameter_law(cube.tokens[use], cube.n_params[use], np.exp(opt["log_batch"][use]))


def replicate_once(seed: int, resamples: int, init: dict | None = None) -> dict:
    """Both estimators on one planted sweep; with `resamples`, the surface's bootstrap interval. `init`: the
    surface's starting point (fit_surface's; e.g. the noiseless sweep's fit, which lands on the same optimum in
    a fiftieth of the time of its three cold starts)."""
    runs = planted(seed)
    cube = SweepCube.from_runs(runs)
    surface, _ = fit_surface(cube, init=init)
    out = {"seed": seed, "two_stage": {k: two_stage(runs)[k] for k in TRUE}, "surface": {k: surface[k] for k in TRUE}}
    if resamples:

        def refit(counts):
            s, _ = fit_surface(cube, counts, surface)
            return {k: s[k] for k in TRUE} if s["converged"] else {}

        samples = bootstrap_runs(refit, cube.n_runs, resamples, list(TRUE), seed=seed)
        out["ci95"] = {k: percentile_interval(samples[k]) for k in TRUE}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicates", type=int, default=20, help="sweeps with bootstrap intervals")
    parser.add_argument("--error-replicates", type=int, default=100, help="sweeps for the median errors")
    parser.add_argument("--resamples", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks/surface_fit.json"))
    args = parser.parse_args()
    start = time.perf_counter()
    n_errors = max(args.error_replicates, args.replicates)
    reps = [replicate_once(seed, args.resamples if seed < args.replicates else 0) for seed in range(n_errors)]
    bound = cramer_rao()
    print(
        f"{'exponent':<12} {'true':>6} {'two-stage |err|':>16} {'surface |err|':>14} {'ratio':>6}"
        f" {'Cramer-Rao |err|':>17} {'surface CI covers':>18}"
    )
    summary = {}
    for k, true in TRUE.items():
        err2 = float(np.median([abs(r["two_stage"][k] - true) for r in reps]))
        errs = float(np.median([abs(r["surface"][k] - true) for r in reps]))
        with_ci = [r for r in reps if "ci95" in r]
        covered = sum(1 for r in with_ci if r["ci95"][k] and r["ci95"][k][0] <= true <= r["ci95"][k][1])
        summary[k] = {
            "true": true,
            "median_abs_error_two_stage": err2,
            "median_abs_error_surface": errs,
            "error_ratio": errs / err2,
            "median_abs_error_cramer_rao": bound[k],
            "coverage": covered / len(with_ci) if with_ci else None,
            "error_replicates": len(reps),
            "coverage_replicates": len(with_ci),
        }
        print(
            f"{k:<12} {true:>6.3f} {err2:>16.3f} {errs:>14.3f} {errs / err2:>6.2f} {bound[k]:>17.3f}"
            f" {covered:>12d} of {len(with_ci)}"
        )
    seconds = time.perf_counter() - start
    print(
        f"median errors over {len(reps)} sweeps; intervals over {args.replicates} x {args.resamples} resamples;"
        f" {seconds:.0f} s"
    )
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
