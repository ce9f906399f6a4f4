"""The bootstrap over runs: a run's checkpoints share its noise, so runs (not rows) are drawn with replacement."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import pandas as pd

from replicate.progress import progress_bar


def bootstrap_runs(
    refit: Callable[[np.ndarray], dict[str, float]],
    n_runs: int,
    resamples: int,
    keys: Iterable[str],
    seed: int = 0,
    progress: bool = False,
    strata: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Refit on `resamples` resamples of the runs; return each statistic's values over the resamples.

    Each resample draws n_runs runs with replacement; refit(counts) gets the number of draws of every run
    (as weights: a run drawn twice counts twice, one not drawn is absent) and returns statistics by name.
    With `strata` (a label per run), each stratum's runs are drawn from its own runs only, as many as it has:
    with the seeds of one grid cell as a stratum, every cell keeps its place in the grid and only its seeds
    are resampled.
    A statistic it does not return, or a resample where it raises ValueError or LinAlgError (a draw too
    degenerate to fit), is NaN. Deterministic given `seed`.
    """
    keys = list(keys)
    values = np.full((len(keys), resamples), np.nan)
    rng = np.random.default_rng(seed)
    members = [np.flatnonzero(strata == s) for s in np.unique(strata)] if strata is not None else None
    bar = progress_bar(resamples, desc="bootstrap", disable=not progress)
    for j in range(resamples):
        if members is None:
            counts = np.bincount(rng.integers(0, n_runs, n_runs), minlength=n_runs)
        else:
            drawn = np.concatenate([m[rng.integers(0, len(m), len(m))] for m in members])
            counts = np.bincount(drawn, minlength=n_runs)
        try:
            with np.errstate(all="ignore"):  # degenerate draws are expected: they end as NaN, counted as failures
                stats = refit(counts)
        except (ValueError, np.linalg.LinAlgError):
            stats = {}
        values[:, j] = [stats.get(k, np.nan) for k in keys]
        bar.update()
    bar.close()
    return dict(zip(keys, values, strict=True))


def percentile_interval(values: np.ndarray, level: float = 0.95, min_finite: int = 10) -> list[float] | None:
    """The percentile interval of the finite values (None with fewer than `min_finite` of them)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) < min_finite:
        return None
    tail = 50 * (1 - level)
    return [float(x) for x in np.percentile(v, [tail, 100 - tail])]


def seed_strata(runs: pd.DataFrame) -> np.ndarray | None:
    """Per fitting run (in the order of the sorted `run` labels) its (N, B, lr) cell, where cells hold several
    seeds: the bootstrap then redraws the seeds of every cell instead of deleting cells. None with one seed."""
    if "batch_size" not in runs:
        return None
    fit = runs[runs["role"] == "fit"].drop_duplicates("run").sort_values("run")
    cells = pd.factorize(pd.MultiIndex.from_frame(fit[["n_params", "batch_size", "lr"]]))[0]
    return cells if np.bincount(cells).max() >= 2 else None
