"""The learning-rate law at a fixed batch size: how the optimal learning rate moves with T and N (Stage L).

If the optimal learning rate follows the paper's law along a ridge in B, lr*(N, T, B) = eta_opt(N, T)
(B / B_opt(N, T))^r, then at a fixed B (lr_exponents_at_fixed_batch)

    lr* ~ T^e_T N^e_N,   e_T = beta_eta - r beta_B,   e_N = gamma_eta - r gamma_B

and the paper's four exponents (Eq. 10 and 13) predict e_T and e_N from our r. The loss barely bends along B at
this scale (Stage A), so beta_B and gamma_B cannot be measured directly; the lr bowl is far steeper, and e_T,
e_N can. The fit (`fit_lr_law`), through every cell within LR_WINDOW_OCTAVES of its group's best rate:

    log L = m(N, T, B, seed) + c(v) v^2,   v = ln lr - (a_B + e_T ln(T / T0) + e_N ln(N / N0)),

m free per group (N, T, B, seed), a_B free per batch size, c = c_lo below the vertex and c_hi above it (the loss
rises faster toward divergence), T0 and N0 the data's geometric means. The ridge r comes from a second fit with
a free intercept a_{N,B} per size and batch size: r_N is the slope of a_{N,B} in ln B for each size, r the
slope shared by all sizes. Intervals: a wild cluster bootstrap (Webb's six-point weights on the residuals, one
weight per training group (N, B, seed)), which keeps every correlation inside one ensemble (its data, its
initialisation, its checkpoints) and the design whole even with ten clusters.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

from replicate.errors import ConfigError
from replicate.fit.bootstrap import percentile_interval
from replicate.paper import BATCH_SIZE_LAW, LR_LAW
from replicate.progress import progress_bar

LR_WINDOW_OCTAVES = 2.0  # cells within this many doublings of their group's best learning rate enter the fits
# cells whose loss is more than this fraction above their group's best are near divergence, where the loss is no
# longer a bowl in ln lr (within two octaves the fitted bowls rise by 25% at most): they are left out and counted
UNSTABLE_ABOVE_BEST = 0.5
_WEBB = np.array([-math.sqrt(1.5), -1.0, -math.sqrt(0.5), math.sqrt(0.5), 1.0, math.sqrt(1.5)])
_GROUP = ["n_params", "tokens", "batch_size", "seed"]


def webb_weights(rng: np.random.Generator, clusters: int) -> np.ndarray:
    """One of Webb's six weights (mean 0, variance 1, symmetric) for each of `clusters` clusters."""
    return rng.choice(_WEBB, clusters)


def lr_exponents_at_fixed_batch(ridge: float | np.ndarray, laws: dict | None = None) -> dict:
    """e_T = beta_eta - r beta_B and e_N = gamma_eta - r gamma_B: the exponents of lr* in T and N at a fixed
    batch size that a batch law and an lr law imply, given the lr-B ridge r (default: the paper's laws)."""
    b, eta = (laws or {}).get("batch_size_law", BATCH_SIZE_LAW), (laws or {}).get("lr_law", LR_LAW)
    return {
        "tokens": eta["exp_tokens"] - ridge * b["exp_tokens"],
        "params": eta["exp_params"] - ridge * b["exp_params"],
    }


def lr_cells(runs: pd.DataFrame, role: str = "fit") -> pd.DataFrame:
    """The finite cells of the runs of `role` within LR_WINDOW_OCTAVES of their (N, T, B, seed)'s best lr and at
    most UNSTABLE_ABOVE_BEST above its loss, with the columns the fits use: y (log loss), z (log lr), lt and ln
    (log T and log N about their means), `group`, `batch` (index of the batch size), `pair` (index of the (N, B)
    pair) and `cluster` (training group). Empty where the role has no finite cell. `attrs["unstable"]` counts
    the cells left out as near divergence."""
    rows = runs[(runs["role"] == role) & np.isfinite(runs["val_loss"]) & (runs["val_loss"] > 0)].copy()
    if "seed" not in rows:
        rows["seed"] = 0
    rows["y"], rows["z"] = np.log(rows["val_loss"]), np.log(rows["lr"])
    best = rows.groupby(_GROUP)["y"].transform("min")
    best_lr = rows["z"].where(rows["y"] == best).groupby([rows[k] for k in _GROUP]).transform("max")
    rows = rows[np.abs(rows["z"] - best_lr) <= LR_WINDOW_OCTAVES * math.log(2) + 1e-9]
    stable = rows["y"] - best.loc[rows.index] <= math.log1p(UNSTABLE_ABOVE_BEST)
    unstable = int((~stable).sum())
    rows = rows[stable].reset_index(drop=True)
    rows.attrs["unstable"] = unstable
    rows["lt"] = np.log(rows["tokens"]) - np.log(rows["tokens"]).mean()
    rows["ln"] = np.log(rows["n_params"]) - np.log(rows["n_params"]).mean()
    rows["group"] = rows.groupby(_GROUP).ngroup()
    rows["batch"] = rows.groupby("batch_size").ngroup()
    rows["pair"] = rows.groupby(["n_params", "batch_size"]).ngroup()
    rows["cluster"] = rows.groupby(["n_params", "batch_size", "seed"]).ngroup()
    return rows


class _Bowl:
    """The residuals of log L = m(group) + c(v) v^2 with v = ln lr - (a[intercept] + e_T lt + e_N ln), m profiled
    out (each group's mean): parameters q = (a_1 .. a_K, e_T, [e_N], c_lo, c_hi)."""

    def __init__(self, cells: pd.DataFrame, intercept: str, with_params: bool) -> None:
        self.group, self.k = cells["group"].to_numpy(), cells[intercept].to_numpy()
        self.z, self.lt, self.ln = (cells[c].to_numpy() for c in ("z", "lt", "ln"))
        self.n_groups, self.n_a, self.with_params = self.group.max() + 1, self.k.max() + 1, with_params
        self.size = np.bincount(self.group, minlength=self.n_groups)

    def unpack(self, q: np.ndarray) -> tuple[np.ndarray, float, float, float, float]:
        a, rest = q[: self.n_a], q[self.n_a :]
        e_t, e_n = rest[0], (rest[1] if self.with_params else 0.0)
        return a, e_t, e_n, rest[-2], rest[-1]

    def vertex(self, q: np.ndarray) -> np.ndarray:
        a, e_t, e_n, _, _ = self.unpack(q)
        return a[self.k] + e_t * self.lt + e_n * self.ln

    def residuals(self, q: np.ndarray, y: np.ndarray) -> np.ndarray:
        _, _, _, c_lo, c_hi = self.unpack(q)
        v = self.z - self.vertex(q)
        bowl = np.where(v < 0, c_lo, c_hi) * v * v
        rest = y - bowl
        m = np.bincount(self.group, rest, self.n_groups) / self.size
        return bowl + m[self.group] - y

    def levels(self, q: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Each group's log loss at its vertex (the profiled m), (groups,)."""
        _, _, _, c_lo, c_hi = self.unpack(q)
        v = self.z - self.vertex(q)
        return np.bincount(self.group, y - np.where(v < 0, c_lo, c_hi) * v * v, self.n_groups) / self.size

    def start(self, cells: pd.DataFrame) -> np.ndarray:
        """Each intercept at the mean log lr of its groups' best cells; no slopes; mild curvatures."""
        best = cells.groupby("group")["y"].idxmin().to_numpy()  # row positions (cells has a 0..n-1 index)
        z, k = cells["z"].to_numpy()[best], self.k[best]
        a0 = np.array([z[k == j].mean() for j in range(self.n_a)])
        return np.concatenate([a0, [0.0], [0.0] if self.with_params else [], [0.02, 0.02]])

    def fit(self, y: np.ndarray, q0: np.ndarray) -> np.ndarray:
        lower = np.full(len(q0), -np.inf)
        lower[-2:] = 0.0
        return least_squares(self.residuals, q0, args=(y,), bounds=(lower, np.inf), method="trf", x_scale="jac").x


def _slope(x: np.ndarray, y: np.ndarray, label: np.ndarray) -> float:
    """The least-squares slope of y in x with a free intercept per label (NaN without spread in x)."""
    xd = x - pd.Series(x).groupby(label).transform("mean").to_numpy()
    yd = y - pd.Series(y).groupby(label).transform("mean").to_numpy()
    denom = float(np.sum(xd * xd))
    return float(np.sum(xd * yd) / denom) if denom > 0 else math.nan


class LrLawFit:
    """The learning-rate law fitted to a table's fitting runs: the exponents' fit (an intercept per batch size)
    and the ridge's (an intercept per size and batch size), with what a wild cluster bootstrap needs to refit
    them on resampled losses."""

    def __init__(self, runs: pd.DataFrame) -> None:
        self.cells = cells = lr_cells(runs)
        if cells.empty:
            raise ConfigError("no finite fitting cells to fit the learning-rate law")
        self.sizes = np.sort(cells["n_params"].unique())
        self.with_params = len(self.sizes) > 1
        self.y = y = cells["y"].to_numpy()
        self.main = _Bowl(cells, "batch", self.with_params)
        self.q = self.main.fit(y, self.main.start(cells))
        self.pair_model = _Bowl(cells, "pair", False)
        self.q_pair = self.pair_model.fit(y, self.pair_model.start(cells))
        self.fitted = y + self.main.residuals(self.q, y)
        self.fitted_pair = y + self.pair_model.residuals(self.q_pair, y)
        self.cluster = cells["cluster"].to_numpy()
        self.clusters = int(self.cluster.max()) + 1
        pairs = cells.drop_duplicates("pair").sort_values("pair")
        self._log_batch, self._pair_size = np.log(pairs["batch_size"].to_numpy()), pairs["n_params"].to_numpy()
        self._several_b = pairs.groupby("n_params")["batch_size"].nunique().to_dict()
        self.batch_sizes = np.sort(cells["batch_size"].unique())

    def statistics(self, q_main: np.ndarray, q_pair: np.ndarray) -> dict[str, float]:
        """The exponents, curvatures, intercepts (log lr at the centre per batch size) and ridges of one fit."""
        a, e_t, e_n, c_lo, c_hi = self.main.unpack(q_main)
        a_pair = q_pair[: self.pair_model.n_a]
        out = {"e_t": e_t, "e_n": e_n if self.with_params else math.nan, "c_lo": c_lo, "c_hi": c_hi}
        out.update({f"a_{float(bs)!r}": a[j] for j, bs in enumerate(self.batch_sizes)})
        out["ridge"] = _slope(self._log_batch, a_pair, self._pair_size)
        for n in self.sizes:
            at = self._pair_size == n
            several = self._several_b[n] > 1
            out[f"ridge_{n}"] = _slope(self._log_batch[at], a_pair[at], self._pair_size[at]) if several else math.nan
        return out

    def log_lr_star(
        self, stats: dict[str, float], n_params: float, tokens: np.ndarray, batch_size: float
    ) -> np.ndarray:
        """ln lr* of the law (one fit's `statistics`) at (N, T) for a batch size of the grid."""
        lt = np.log(tokens) - np.log(self.cells["tokens"]).mean()
        ln = math.log(n_params) - np.log(self.cells["n_params"]).mean()
        e_n = stats["e_n"] if self.with_params else 0.0
        return stats[f"a_{float(batch_size)!r}"] + stats["e_t"] * lt + e_n * ln

    def resample(self, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Log losses for both fits, each training group's residuals times its cluster's weight (`weights`, one
        per cluster)."""
        w = weights[self.cluster]
        return self.fitted + (self.y - self.fitted) * w, self.fitted_pair + (self.y - self.fitted_pair) * w


def bootstrap_lr_law(
    law: LrLawFit,
    resamples: int,
    seed: int = 0,
    extra: Callable[[np.random.Generator, np.ndarray, np.ndarray, np.ndarray], dict[str, float]] | None = None,
    progress: bool = False,
) -> tuple[dict[str, np.ndarray], int]:
    """The law refitted on `resamples` wild cluster resamples: each statistic's values, and the count of failed
    refits. `extra(rng, q, y, weights)` adds statistics of the same resample (its rng, the refitted exponents'
    fit, its log losses and its clusters' weights): the held-out checks draw their own clusters' weights from
    that rng."""
    rng = np.random.default_rng(seed)
    draws: list[dict[str, float]] = []
    failed = 0
    bar = progress_bar(resamples, desc="lr law bootstrap", disable=not progress)
    for _ in range(resamples):
        weights = webb_weights(rng, law.clusters)
        y_main, y_pair = law.resample(weights)
        try:
            q = law.main.fit(y_main, law.q)
            stats = law.statistics(q, law.pair_model.fit(y_pair, law.q_pair))
            if extra is not None:
                stats.update(extra(rng, q, y_main, weights))
            draws.append(stats)
        except (ValueError, np.linalg.LinAlgError):
            failed += 1
        bar.update()
    bar.close()
    keys = dict.fromkeys(k for d in draws for k in d)
    return {k: np.array([d.get(k, math.nan) for d in draws]) for k in keys}, failed


def fit_lr_law(runs: pd.DataFrame, bootstrap: int = 1000, seed: int = 0, progress: bool = False) -> dict:
    """e_T, e_N (None for one size), the ridge r (pooled and per size) and what they imply for the paper's laws,
    with 95% wild-cluster-bootstrap intervals and the samples they come from. `runs` is a validated table
    (fit.load_runs) with batch_size (tokens per step) and lr."""
    law = LrLawFit(runs)
    samples, failed = bootstrap_lr_law(law, bootstrap, seed, progress=progress)
    return lr_law_document(law, samples, failed, bootstrap, seed)


def _estimate(value: float, samples: np.ndarray) -> dict:
    return {"value": value, "ci95": percentile_interval(samples)}


def lr_law_document(law: LrLawFit, samples: dict[str, np.ndarray], failed: int, bootstrap: int, seed: int) -> dict:
    """lr_law.json's content from the point fit and the bootstrap samples."""
    cells, sizes, with_params = law.cells, law.sizes, law.with_params
    point = law.statistics(law.q, law.q_pair)
    a, _, _, c_lo, c_hi = law.main.unpack(law.q)
    fitted = law.fitted
    samples = {k: samples.get(k, np.array([])) for k in point}
    implied_paper = lr_exponents_at_fixed_batch(point["ridge"])
    implied_samples = lr_exponents_at_fixed_batch(samples["ridge"])
    b, eta = BATCH_SIZE_LAW, LR_LAW

    def difference(kind: str, measured: str) -> dict:
        """The measured exponent minus the paper-implied one, resample by resample (they share r)."""
        return _estimate(point[measured] - implied_paper[kind], samples[measured] - implied_samples[kind])

    def implied(value: float, values: np.ndarray) -> dict:
        return _estimate(float(value), values)

    r, rs = point["ridge"], samples["ridge"]
    doc = {
        "model": "log L = m(N, T, B, seed) + c(v) v^2, v = ln lr - (a_B + e_T ln(T/T0) + e_N ln(N/N0)); "
        "c = c_lo below the vertex, c_hi above; e_T = beta_eta - r beta_B, e_N = gamma_eta - r gamma_B",
        "lr_exponent_tokens": _estimate(point["e_t"], samples["e_t"]),
        "lr_exponent_params": _estimate(point["e_n"], samples["e_n"]) if with_params else None,
        "ridge": _estimate(r, rs),
        "ridge_by_size": [
            {"n_params": int(n), **_estimate(point[f"ridge_{n}"], samples[f"ridge_{n}"])}
            for n in sizes
            if math.isfinite(point[f"ridge_{n}"])
        ],
        "curvature_per_octave2": {
            "below": _estimate(c_lo * math.log(2) ** 2, samples["c_lo"] * math.log(2) ** 2),
            "above": _estimate(c_hi * math.log(2) ** 2, samples["c_hi"] * math.log(2) ** 2),
        },
        "paper_implied": {
            "lr_exponent_tokens": _estimate(implied_paper["tokens"], implied_samples["tokens"]),
            "lr_exponent_params": _estimate(implied_paper["params"], implied_samples["params"]),
            "paper": {
                "beta_b": b["exp_tokens"],
                "gamma_b": b["exp_params"],
                "beta_eta": eta["exp_tokens"],
                "gamma_eta": eta["exp_params"],
            },
            "measured_minus_implied": {
                "tokens": difference("tokens", "e_t"),
                "params": difference("params", "e_n") if with_params else None,
            },
            "no_batch_size_term_in_n": (  # gamma_B = 0: the lr law's own N exponent would be e_N
                _estimate(eta["exp_params"], np.full(len(rs), eta["exp_params"])) if with_params else None
            ),
        },
        "implied": {
            "beta_b_given_paper_beta_eta": implied(
                (eta["exp_tokens"] - point["e_t"]) / r, (eta["exp_tokens"] - samples["e_t"]) / rs
            ),
            "beta_eta_given_paper_beta_b": implied(
                point["e_t"] + r * b["exp_tokens"], samples["e_t"] + rs * b["exp_tokens"]
            ),
        },
        "fit": {
            "cells": len(cells),
            "groups": int(cells["group"].nunique()),
            "clusters": int(cells["cluster"].nunique()),
            "sizes": [int(n) for n in sizes],
            "batch_sizes": [float(v) for v in np.sort(cells["batch_size"].unique())],
            "window_octaves": LR_WINDOW_OCTAVES,
            "unstable_cells": cells.attrs.get("unstable", 0),
            "unstable_above_best": UNSTABLE_ABOVE_BEST,
            "t0": float(np.exp(np.log(cells["tokens"]).mean())),
            "n0": float(np.exp(np.log(cells["n_params"]).mean())),
            "log_lr_at_center": {repr(float(bs)): float(a[j]) for j, bs in enumerate(law.batch_sizes)},
            "rmse_log": float(np.sqrt(np.mean((fitted - cells["y"].to_numpy()) ** 2))),
        },
        "vertices": group_vertices(cells, c_lo, c_hi).drop(columns="log_loss").to_dict("records"),
        "bootstrap": {
            "resamples": bootstrap,
            "seed": seed,
            "unit": "training group (N, B, seed): wild cluster bootstrap, Webb's six-point weights",
            "failed": failed,
            "interval": "95% percentile",
            "samples": {k: [round(float(x), 6) for x in v] for k, v in samples.items()},
        },
    }
    if with_params:
        doc["implied"].update(
            {
                "gamma_b_given_paper_gamma_eta": implied(
                    (eta["exp_params"] - point["e_n"]) / r, (eta["exp_params"] - samples["e_n"]) / rs
                ),
                "gamma_eta_given_paper_gamma_b": implied(
                    point["e_n"] + r * b["exp_params"], samples["e_n"] + rs * b["exp_params"]
                ),
            }
        )
    return doc


def bowl_vertex(
    z: np.ndarray, y: np.ndarray, seeds: np.ndarray, c_lo: float, c_hi: float
) -> tuple[float, np.ndarray, np.ndarray]:
    """The vertex of one (N, T, B)'s bowl in ln lr with the law's curvatures and a level per seed: its ln lr
    (a grid search over the cells' span and half an octave beyond, 1/240 of it apart), each seed's log loss at
    it (in order of first appearance), and every cell's fitted log loss."""
    labels = pd.factorize(seeds)[0]
    counts = np.bincount(labels)
    grid = np.linspace(z.min() - 0.35, z.max() + 0.35, 241)
    v = z[None, :] - grid[:, None]  # (grid, cells)
    rest = y[None, :] - np.where(v < 0, c_lo, c_hi) * v * v
    means = np.stack([np.bincount(labels, r, len(counts)) / counts for r in rest])  # (grid, seeds)
    rss = np.sum((rest - means[:, labels]) ** 2, axis=1)
    k = int(np.argmin(rss))
    return float(grid[k]), means[k], y - rest[k] + means[k][labels]


def group_vertices(cells: pd.DataFrame, c_lo: float, c_hi: float, y: np.ndarray | None = None) -> pd.DataFrame:
    """Per (N, T, B) the vertex of its own bowl (bowl_vertex; `y` replaces the cells' log losses, e.g. a
    bootstrap resample's): columns n_params, tokens, batch_size, lr_star, log_loss, lr_best_grid, on_edge."""
    y = cells["y"].to_numpy() if y is None else y
    out = []
    for (n, t, bs), rows in cells.groupby(["n_params", "tokens", "batch_size"]):
        at = rows.index.to_numpy()
        z = rows["z"].to_numpy()
        center, levels, _ = bowl_vertex(z, y[at], rows["seed"].to_numpy(), c_lo, c_hi)
        best = rows.loc[rows.groupby("seed")["y"].idxmin(), "z"]
        out.append(
            {
                "n_params": int(n),
                "tokens": float(t),
                "batch_size": float(bs),
                "lr_star": math.exp(center),
                "log_loss": float(levels.mean()),
                "lr_best_grid": float(np.exp(best.mean())),
                "on_edge": bool(center <= z.min() or center >= z.max()),
            }
        )
    return pd.DataFrame(out)
