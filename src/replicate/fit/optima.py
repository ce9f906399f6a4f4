"""Optimal (B, lr) at each (N, T) of a sweep grid, and the hyperparameter power laws fitted to those optima.

A sweep trains every (N, B, lr) cell with a constant learning rate and validates at shared token checkpoints,
so each (N, T) holds a (B, lr) grid of losses. The grid is held as a dense array so that extraction is
vectorised over all (N, T) at once, which is what makes a 1000-fold bootstrap over runs cheap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from replicate.fit.laws import fit_power_law

BAND = 0.0025  # DeepSeek LLM: every setting within 0.25% of the minimum loss counts as near-optimal
TOKEN_RTOL = 0.02  # checkpoints this close count as one T (a run's tokens are rounded to multiples of its B)


def cluster_tokens(tokens: np.ndarray, rtol: float = TOKEN_RTOL) -> np.ndarray:
    """Each row's T: token counts within `rtol` of their neighbour merge into one, at their geometric mean."""
    tokens = np.asarray(tokens, dtype=float)
    values, inverse = np.unique(tokens, return_inverse=True)
    cluster = np.concatenate([[0], np.cumsum(np.diff(np.log(values)) > np.log1p(rtol))])
    size = np.bincount(cluster)
    centre = np.exp(np.bincount(cluster, np.log(values)) / size)
    first = np.searchsorted(cluster, np.arange(len(size)))
    centre[size == 1] = values[first[size == 1]]  # exact where nothing merged
    return centre[cluster][inverse]


@dataclass(frozen=True)
class _Bracket:
    """Minimum along the last axis: its index, nearest present neighbours, and the interpolated vertex."""

    index: np.ndarray
    left: np.ndarray  # -1 where no present cell on the left
    right: np.ndarray  # n where none on the right
    x: np.ndarray
    y: np.ndarray
    edge: np.ndarray  # no cell at all on one side: the optimum may lie beyond the grid
    at_divergence: np.ndarray  # the nearest cell on one side diverged: the optimum is bounded there
    valid: np.ndarray


def _take(a: np.ndarray, index: np.ndarray) -> np.ndarray:
    return np.take_along_axis(a, index[..., None], axis=-1)[..., 0]


def _bracket_min(y: np.ndarray, blocked: np.ndarray, x: np.ndarray) -> _Bracket:
    """Local parabola through the discrete minimum of y(x) and its nearest finite neighbours, along the last axis.

    Only the three points around the minimum are used: the loss is steep on the divergence side of lr, so a
    wider (symmetric) fit would be pulled away from the minimum. `blocked` marks diverged cells: a minimum
    whose neighbour diverged is bounded there (no interpolation across), not on the grid edge. NaN = no data.
    """
    n = y.shape[-1]
    idx = np.arange(n)
    finite = np.isfinite(y)
    present = finite | blocked
    valid = finite.any(-1)
    i = np.argmin(np.where(finite, y, np.inf), axis=-1)
    left = np.where(present & (idx < i[..., None]), idx, -1).max(-1)
    right = np.where(present & (idx > i[..., None]), idx, n).min(-1)
    lc, rc = np.clip(left, 0, n - 1), np.clip(right, 0, n - 1)
    fin_l, fin_r = (left >= 0) & _take(finite, lc), (right < n) & _take(finite, rc)
    edge = valid & ((left < 0) | (right >= n))
    at_divergence = valid & (((left >= 0) & ~fin_l) | ((right < n) & ~fin_r))
    yy = np.where(finite, y, 0.0)
    y1, x1 = _take(yy, i), x[i]
    h0, h2 = np.maximum(x1 - x[lc], 1e-300), np.maximum(x[rc] - x1, 1e-300)
    d0, d2 = _take(yy, lc) - y1, _take(yy, rc) - y1
    c2 = (d0 / h0 + d2 / h2) / (h0 + h2)  # y = y1 + c1 (x - x1) + c2 (x - x1)^2 through the three points
    c1 = d2 / h2 - c2 * h2
    curved = valid & fin_l & fin_r & (c2 > 0)
    c2s = np.where(curved, c2, 1.0)
    xs = np.where(curved, x1 - c1 / (2 * c2s), x1)
    ys = np.where(curved, y1 - c1 * c1 / (4 * c2s), y1)
    return _Bracket(
        i, left, right, np.where(valid, xs, np.nan), np.where(valid, ys, np.nan), edge, at_divergence, valid
    )


def grid_optima(
    log_loss: np.ndarray, diverged: np.ndarray, log_batch: np.ndarray, log_lr: np.ndarray
) -> dict[str, np.ndarray]:
    """Optimum of each (N, T) grid, Porian et al. style: interpolate over log lr per B, then over log B.

    `log_loss` is (groups, n_B, n_lr), NaN where no finite loss; `diverged` marks diverged cells; the grids are
    ascending logs of B (tokens per step) and lr. Returns arrays over groups: log_batch, log_lr, log_loss at the
    optimum; on_edge (the minimum sits on the grid edge of B, or of lr at the best B), edge_batch, edge_lr;
    at_divergence (bounded by a diverged neighbour); n_cells (finite cells); the DeepSeek band centre
    band_log_batch, band_log_lr (mean log B and log lr over cells within 0.25% of the minimum) and band_agrees
    (the interpolated optimum is within half a grid step of the band centre on both axes). Per batch size,
    arrays (groups, n_B) of the first stage: batch_log_lr and batch_log_loss (the lr optimum and its loss),
    batch_edge_lr, batch_at_divergence, batch_valid.
    """
    per_b = _bracket_min(log_loss, diverged, log_lr)  # (G, n_B)
    all_diverged = ~per_b.valid & diverged.any(-1)
    best = _bracket_min(per_b.y, all_diverged, log_batch)  # (G,)
    g = np.arange(len(best.index))
    i, lo, hi = best.index, np.clip(best.left, 0, None), np.clip(best.right, None, len(log_batch) - 1)
    lr_at = per_b.x[g, i]
    # log lr at the interpolated B: linear between the two bracketing batch sizes
    other = np.where(best.x <= log_batch[i], lo, hi)
    span = log_batch[other] - log_batch[i]
    frac = np.divide(best.x - log_batch[i], span, out=np.zeros_like(span), where=span != 0)
    log_lr_opt = np.where(np.isfinite(per_b.x[g, other]), lr_at + frac * (per_b.x[g, other] - lr_at), lr_at)
    edge_lr = per_b.edge[g, i] & best.valid
    finite = np.isfinite(log_loss)
    floor = np.min(np.where(finite, log_loss, np.inf), axis=(1, 2))
    band = finite & (log_loss <= floor[:, None, None] + np.log1p(BAND))
    count = np.maximum(band.sum((1, 2)), 1)
    band_b = (band * log_batch[None, :, None]).sum((1, 2)) / count
    band_lr = (band * log_lr[None, None, :]).sum((1, 2)) / count
    agrees = (np.abs(best.x - band_b) <= 0.5 * _step(log_batch)) & (np.abs(log_lr_opt - band_lr) <= 0.5 * _step(log_lr))
    nan = np.where(best.valid, 0.0, np.nan)
    return {
        "log_batch": best.x,
        "log_lr": log_lr_opt + nan,
        "log_loss": best.y,
        "on_edge": best.edge | edge_lr,
        "edge_batch": best.edge,
        "edge_lr": edge_lr,
        "at_divergence": best.at_divergence | per_b.at_divergence[g, i],
        "n_cells": finite.sum((1, 2)),
        "band_log_batch": band_b + nan,
        "band_log_lr": band_lr + nan,
        "band_agrees": agrees | ~best.valid,
        "valid": best.valid,
        "batch_log_lr": per_b.x,
        "batch_log_loss": per_b.y,
        "batch_edge_lr": per_b.edge,
        "batch_at_divergence": per_b.at_divergence,
        "batch_valid": per_b.valid,
    }


def _step(log_grid: np.ndarray) -> float:
    return float(np.median(np.diff(log_grid))) if len(log_grid) > 1 else np.inf


@dataclass(frozen=True)
class SweepCube:
    """Rows of a (B, lr) sweep on a dense (N, T) x B x lr array; `arrays(run_weights)` re-weights runs.

    Cells holding several rows (seeds, or a run drawn twice by the bootstrap) take their weighted mean loss;
    a cell with any diverged row counts as diverged.
    """

    n_params: np.ndarray  # (G,) N of each (N, T) group
    tokens: np.ndarray  # (G,) T of each group (clustered, see cluster_tokens)
    batch_size: np.ndarray  # (n_B,) ascending, tokens per step
    lr: np.ndarray  # (n_lr,) ascending
    cell: np.ndarray  # (rows,) flat index into (G, n_B, n_lr)
    loss: np.ndarray  # (rows,) NaN where diverged
    diverged: np.ndarray  # (rows,)
    run: np.ndarray  # (rows,) run index in [0, n_runs)
    n_runs: int

    @classmethod
    def from_runs(cls, runs: pd.DataFrame) -> SweepCube:
        """From a validated table (`validate_runs`) with batch_size and lr."""
        tokens = cluster_tokens(runs["tokens"].to_numpy())
        keys = pd.MultiIndex.from_arrays([runs["n_params"].to_numpy(dtype=float), tokens])
        group, uniq = pd.factorize(keys, sort=True)
        bvals, bi = np.unique(runs["batch_size"].to_numpy(dtype=float), return_inverse=True)
        lvals, li = np.unique(runs["lr"].to_numpy(dtype=float), return_inverse=True)
        runs_u, run = np.unique(runs["run"].to_numpy(), return_inverse=True)
        cell = (group * len(bvals) + bi) * len(lvals) + li
        return cls(
            uniq.get_level_values(0).to_numpy(dtype=float),
            uniq.get_level_values(1).to_numpy(dtype=float),
            bvals,
            lvals,
            cell,
            runs["val_loss"].to_numpy(dtype=float),
            runs["diverged"].to_numpy(dtype=bool),
            run,
            len(runs_u),
        )

    def arrays(self, run_weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(log mean loss, diverged) as (G, n_B, n_lr) arrays; NaN loss where a cell has no finite row."""
        shape = (len(self.n_params), len(self.batch_size), len(self.lr))
        size = int(np.prod(shape))
        w = np.ones(len(self.cell)) if run_weights is None else np.asarray(run_weights, dtype=float)[self.run]
        ok = ~self.diverged
        wsum = np.bincount(self.cell[ok], w[ok], size)
        lsum = np.bincount(self.cell[ok], w[ok] * self.loss[ok], size)
        div = np.bincount(self.cell[~ok], w[~ok], size) > 0
        mean = np.divide(lsum, wsum, out=np.full(size, np.nan), where=(wsum > 0) & ~div)
        return np.log(mean).reshape(shape), div.reshape(shape)

    def optima(self, run_weights: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """`grid_optima` of the (re-weighted) sweep."""
        return grid_optima(*self.arrays(run_weights), np.log(self.batch_size), np.log(self.lr))


def optima_frame(n_params: np.ndarray, tokens: np.ndarray, opt: dict[str, np.ndarray]) -> pd.DataFrame:
    """`grid_optima`'s output as a table in raw units, one row per (N, T) group (valid or not); ``edge`` names
    the axes (batch_size, lr) whose grid edge holds the minimum."""
    edge_b, edge_lr = opt["edge_batch"], opt["edge_lr"]
    edge = np.where(edge_b & edge_lr, "batch_size,lr", np.where(edge_b, "batch_size", np.where(edge_lr, "lr", "")))
    return pd.DataFrame(
        {
            "n_params": n_params,
            "tokens": tokens,
            "batch_size": np.exp(opt["log_batch"]),
            "lr": np.exp(opt["log_lr"]),
            "val_loss": np.exp(opt["log_loss"]),
            "on_edge": opt["on_edge"],
            "edge": edge,
            "at_divergence": opt["at_divergence"],
            "n_cells": opt["n_cells"],
            "band_batch_size": np.exp(opt["band_log_batch"]),
            "band_lr": np.exp(opt["band_log_lr"]),
            "band_agrees": opt["band_agrees"],
            "valid": opt["valid"],
        }
    )


def extract_optima(runs: pd.DataFrame) -> pd.DataFrame:
    """Optimal batch size (tokens per step), lr and validation loss at each (N, T) of a validated sweep table.

    Diverged and non-finite rows are excluded; see `grid_optima` for the interpolation, edge flags and the
    DeepSeek band cross-check. One row per (N, T) with at least one finite cell (`optima_frame`).
    """
    cube = SweepCube.from_runs(runs)
    table = optima_frame(cube.n_params, cube.tokens, cube.optima())
    return table[table["valid"]].drop(columns="valid").reset_index(drop=True)


def fit_hyperparameter_law(tokens: np.ndarray, n_params: np.ndarray, values: np.ndarray) -> dict[str, float]:
    """Fit X = coef T^exp_tokens N^exp_params (`hyperparameter_law`) by least squares in log space.

    T in tokens, N in parameters, X the optimal batch size (tokens per step) or lr. Returns coef, exp_tokens,
    exp_params and rmse_log (NaN when the points do not span two sizes and two token counts).
    """
    coef, (e_t, e_n), rmse = fit_power_law(values, tokens, n_params)
    return {"coef": coef, "exp_tokens": e_t, "exp_params": e_n, "rmse_log": rmse}


def loss_along_batch(runs: pd.DataFrame, run_weights: np.ndarray | None = None) -> pd.DataFrame:
    """The loss along the batch-size axis: at each (N, T, B), the lr optimum and the loss there.

    The first stage of `grid_optima` (a parabola in log lr through the best cell per batch size), as a table
    in raw units: n_params, tokens, batch_size (tokens per step), lr, val_loss, edge_lr (best lr on the grid
    edge), at_divergence. Where the loss barely changes along B at each B's best lr, B_opt is ill-determined.
    `run_weights` re-weights the runs (in the order of their sorted `run` labels), as a bootstrap does.
    """
    cube = SweepCube.from_runs(runs)
    return loss_along_batch_frame(cube, cube.optima(run_weights))


def loss_along_batch_frame(cube: SweepCube, opt: dict[str, np.ndarray]) -> pd.DataFrame:
    """`loss_along_batch`'s table from a cube and its `grid_optima`."""
    g, b = np.meshgrid(np.arange(len(cube.n_params)), np.arange(len(cube.batch_size)), indexing="ij")
    table = pd.DataFrame(
        {
            "n_params": cube.n_params[g].ravel(),
            "tokens": cube.tokens[g].ravel(),
            "batch_size": cube.batch_size[b].ravel(),
            "lr": np.exp(opt["batch_log_lr"]).ravel(),
            "val_loss": np.exp(opt["batch_log_loss"]).ravel(),
            "edge_lr": opt["batch_edge_lr"].ravel(),
            "at_divergence": opt["batch_at_divergence"].ravel(),
            "valid": opt["batch_valid"].ravel(),
        }
    )
    return table[table["valid"]].drop(columns="valid").reset_index(drop=True)


def lr_batch_exponent(opt: dict[str, np.ndarray], batch_size: np.ndarray) -> float:
    """Slope of log lr_opt(B) against log B, pooled over the (N, T) groups with a free intercept each, from
    `grid_optima`'s per-batch lr optima (`opt`) on the grid of `batch_size`s.

    Only batch sizes whose lr optimum is interior count. Plain SGD with B well below its noise scale predicts
    1 (linear scaling); Adam's stochastic-differential-equation limit predicts 1/2 (square-root scaling).
    """
    log_lr = opt["batch_log_lr"]
    use = opt["batch_valid"] & ~opt["batch_edge_lr"] & ~opt["batch_at_divergence"]
    x = np.broadcast_to(np.log(batch_size), use.shape)
    n = use.sum(1)
    keep = n >= 2  # a group needs two batch sizes to say anything about the slope
    w = use & keep[:, None]
    xm = np.where(w, x, 0).sum(1) / np.maximum(n, 1)
    ym = np.where(w, log_lr, 0).sum(1) / np.maximum(n, 1)
    dx, dy = np.where(w, x - xm[:, None], 0), np.where(w, log_lr - ym[:, None], 0)
    sxx = (dx * dx).sum()
    return float((dx * dy).sum() / sxx) if sxx > 0 else float("nan")
