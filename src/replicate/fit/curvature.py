"""Stage A's measurement (the study issue): is the loss curved enough along the batch size, against the noise of
one grid cell, for the paper's batch law to be testable at this scale?

From one sweep with several seeds per (B, lr) cell (``replicate curvature RUNS --out summary.json``):
- the curvature along B, c per doubling^2 (the relative loss increase one doubling of B away from the
  optimum costs), from one surface through every (T, B, lr) cell (fit.surface);
- the seed noise: the relative standard deviation between the seeds of one cell, over all cells and near
  the optimum (each (T, B)'s best learning rate);
- the share of checkpoints whose B optimum is interior to the grid, and the B_opt exponent in T;
- the verdict: `go` when c >= 0.3% per doubling^2, `no-go` when c < 0.1%, `marginal` between (thresholds fixed
  before Stage A ran); and the seeds per cell that would bring the noise to a third of c.
Intervals: a bootstrap that resamples the seeds within every cell (the grid stays whole), and the
least-squares interval of the surface; the verdict's interval is the envelope of both.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from replicate.fit.bootstrap import bootstrap_runs, percentile_interval, seed_strata
from replicate.fit.optima import SweepCube, cluster_tokens, loss_along_batch
from replicate.fit.surface import LN2_SQUARED, fit_surface
from replicate.fit.table import load_runs, require_hyperparameters
from replicate.io import holds_source, json_safe, table_source, write_json
from replicate.paper import BATCH_SIZE_LAW
from replicate.provenance import fit_provenance

GO, NO_GO = 0.003, 0.001  # curvature per doubling^2: go at or above GO, no-go below NO_GO
NOISE_TO_CURVATURE = 1 / 3  # a cell resolves the curvature when its noise is at most this fraction of it


def verdict(curvature: float) -> str:
    """`go`, `marginal` or `no-go` for a curvature per doubling^2 (see the module docstring)."""
    if not math.isfinite(curvature):
        return "not measured"
    return "go" if curvature >= GO else "no-go" if curvature < NO_GO else "marginal"


def seeds_needed(curvature: float, noise_one_seed: float) -> int | None:
    """Seeds per cell whose mean has noise <= NOISE_TO_CURVATURE x curvature (None if either is not positive)."""
    if not (curvature > 0 and noise_one_seed > 0):
        return None
    return max(1, math.ceil((noise_one_seed / (NOISE_TO_CURVATURE * curvature)) ** 2))


def seed_noise(runs: pd.DataFrame) -> dict:
    """Relative standard deviation between the seeds of each (N, T, B, lr) cell (finite in every seed):
    its root mean square and median over all cells, and over the cells at each (N, T, B)'s best lr."""
    rows = runs[~runs["diverged"]].assign(t=cluster_tokens(runs.loc[~runs["diverged"], "tokens"].to_numpy()))
    cells = rows.groupby(["n_params", "t", "batch_size", "lr"])["val_loss"].agg(["mean", "std", "count"])
    cells = cells[cells["count"] >= 2].assign(rel=lambda c: c["std"] / c["mean"]).reset_index()
    best = cells.loc[cells.groupby(["n_params", "t", "batch_size"])["mean"].idxmin()]

    def stats(rel: pd.Series) -> dict:
        return {
            "rms": float(np.sqrt(np.mean(rel**2))) if len(rel) else math.nan,
            "median": float(rel.median()) if len(rel) else math.nan,
            "cells": len(rel),
        }

    seeds = int(cells["count"].max()) if len(cells) else 0
    return {"seeds": seeds, "all_cells": stats(cells["rel"]), "near_optimum": stats(best["rel"])}


def interior_fraction(by_batch: pd.DataFrame) -> dict:
    """Per (N, T) the batch size with the lowest loss at its best lr: how many lie inside the batch grid."""
    lowest, highest = by_batch["batch_size"].min(), by_batch["batch_size"].max()
    best = by_batch.loc[by_batch.groupby(["n_params", "tokens"])["val_loss"].idxmin()]
    interior = (best["batch_size"] > lowest) & (best["batch_size"] < highest)
    return {
        "fraction": float(interior.mean()) if len(best) else math.nan,
        "interior": int(interior.sum()),
        "checkpoints": len(best),
        "at_smallest": int((best["batch_size"] == lowest).sum()),
        "at_largest": int((best["batch_size"] == highest).sum()),
    }


def batch_curvature(runs: pd.DataFrame, bootstrap: int = 1000, seed: int = 0, progress: bool = False) -> dict:
    """The summary of one readout of a sweep with seeds: `runs` is a validated table (fit.load_runs, whose
    loss_column picks the readout). Raw units: batch sizes in tokens per step, T in tokens."""
    runs = runs[runs["role"] == "fit"].reset_index(drop=True)
    cube = SweepCube.from_runs(runs)
    surface, lr = fit_surface(cube)

    def refit(counts: np.ndarray) -> dict[str, float]:
        b, eta = fit_surface(cube, counts, surface)  # a resample starts from the full data's fit
        # the curvature and the ridge count in every resample, a minimum along B or not: a resample without one
        # is flat or sloped, its curvature small (bent only as far as fit.surface.VERTEX_REACH lets the vertex
        # go), and leaving it out would bias the interval upward; B_opt's exponents only where defined
        return {
            "curvature": b["curvature_per_doubling2"],
            "ridge": eta["ridge"],
            "beta_b": b["exp_tokens"],
            "beta_eta": eta["exp_tokens"],
        }

    keys = ("curvature", "beta_b", "ridge", "beta_eta")
    strata = seed_strata(runs)  # the seeds of each (N, B, lr) cell are redrawn, every cell kept
    samples = bootstrap_runs(refit, runs["run"].nunique(), bootstrap, keys, seed=seed, progress=progress, strata=strata)
    ci = {k: percentile_interval(v) for k, v in samples.items()}
    failed = int(np.sum(~np.isfinite(samples["curvature"])))
    asymptotic = _curvature_interval(cube, surface)
    lows = [c[0] for c in (ci["curvature"], asymptotic) if c]
    highs = [c[1] for c in (ci["curvature"], asymptotic) if c]
    envelope = [min(lows), max(highs)] if lows else None
    noise = seed_noise(runs)
    curvature = surface["curvature_per_doubling2"]
    return {
        "curvature_per_doubling2": {
            "value": curvature,
            "ci95": ci["curvature"],
            "ci95_least_squares": asymptotic,
            "ci95_envelope": envelope,
            "c_b_per_ln2": surface["c_b"],
        },
        "seed_noise": noise,
        "interior_fraction": interior_fraction(loss_along_batch(runs)),
        "beta_b": {"value": surface["exp_tokens"], "ci95": ci["beta_b"], "paper": BATCH_SIZE_LAW["exp_tokens"]},
        "b_opt_law": {k: surface[k] for k in ("coef", "exp_tokens", "exp_params")},
        "lr_law": {**lr, "ridge_ci95": ci["ridge"], "exp_tokens_ci95": ci["beta_eta"]},
        "surface": {k: surface[k] for k in ("rmse_log", "n_points", "n_groups", "converged", "optima")},
        "verdict": verdict(curvature),
        "verdict_envelope": sorted({verdict(v) for v in envelope}) if envelope else [],
        "seeds_needed": seeds_needed(curvature, noise["near_optimum"]["rms"]),
        "bootstrap": {
            "resamples": bootstrap,
            "seed": seed,
            "unit": "run" if strata is None else "seeds within each (N, B, lr) cell",
            "failed": failed,
            "interval": "95% percentile",
        },
    }


def _curvature_interval(cube: SweepCube, surface: dict) -> list[float] | None:
    """95% interval of the curvature per doubling^2 by profiling c_B: the values whose refit (everything else
    free) raises the residual sum of squares by at most F(1, dof) x its residual variance, a likelihood-ratio
    interval that treats the cells as independent."""
    from scipy.optimize import brentq
    from scipy.stats import f as f_dist

    if not surface["converged"]:
        return None
    n, k = surface["n_points"], surface["n_free"]
    if n <= k:
        return None
    limit = surface["rss"] * (1 + f_dist.ppf(0.95, 1, n - k) / (n - k))

    def excess(c_b: float) -> float:
        """The residual sum of squares of the surface refitted with its curvature held at c_b, above the limit."""
        return fit_surface(cube, None, surface, curvature=c_b)[0]["rss"] - limit

    c = surface["c_b"]
    try:
        lo = brentq(excess, 1e-9, c) if excess(1e-9) > 0 else 0.0
        hi_edge = c * 2
        while excess(hi_edge) < 0 and hi_edge < 1e3:
            hi_edge *= 2
        hi = brentq(excess, c, hi_edge)
    except ValueError:
        return None
    return [lo * LN2_SQUARED, hi * LN2_SQUARED]


def curvature_file(
    runs_path: Path, out: Path, bootstrap: int = 1000, seed: int = 0, progress: bool = True, if_changed: bool = False
) -> dict | None:
    """``replicate curvature``: batch_curvature of the raw weights' loss (the headline) and of the EMA weights'
    (under `ema`), written to `out` with its source and provenance. With if_changed, None without computing
    when `out` already holds the summary of this very table and these options."""
    source = table_source(runs_path, bootstrap=bootstrap, seed=seed)
    if if_changed and holds_source(out, source):
        return None
    runs = load_runs(runs_path)
    require_hyperparameters(runs, str(runs_path), "the curvature along B")
    raw = batch_curvature(runs, bootstrap, seed, progress)
    with_ema = "val_loss_ema" in pd.read_csv(runs_path, nrows=0).columns
    ema = batch_curvature(load_runs(runs_path, "val_loss_ema"), bootstrap, seed, progress) if with_ema else None
    summary = {
        "readout": "val_loss: the raw weights' loss, averaged over the evaluation window (`ema`: the EMA weights')",
        **raw,
        "seed_noise": {"raw": raw["seed_noise"], "ema": ema["seed_noise"] if ema else None},
        "ema": ema,
        "units": {
            "batch_size": "tokens per step",
            "tokens": "training tokens",
            "curvature_per_doubling2": "relative loss increase per squared doubling of B from B_opt",
            "seed_noise": "relative standard deviation between the seeds of one cell",
        },
        "source": source,
        "provenance": fit_provenance(),
    }
    summary = json_safe(summary)
    write_json(out, summary)
    return summary
