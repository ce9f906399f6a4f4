"""The learning-rate law at a fixed batch size: how the optimal learning rate moves with T and N (Stage L).

If the optimal learning rate follows the paper's law along a ridge in B, lr*(N, T, B) = eta_opt(N, T)
(B / B_opt(N, T))^r, then at a fixed B (lr_exponents_at_fixed_batch)

    lr* ~ T^e_T N^e_N,   e_T = beta_eta - r beta_B,   e_N = gamma_eta - r gamma_B

and the paper's four exponents (Eq. 10 and 13) predict e_T and e_N from our r. The loss is flat along B at
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
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

from replicate.errors import ConfigError
from replicate.fit.bootstrap import percentile_interval
from replicate.fit.table import load_runs, require_hyperparameters
from replicate.io import holds_source, json_safe, table_source, write_json
from replicate.paper import BATCH_SIZE_LAW, LR_LAW
from replicate.progress import progress_bar
from replicate.provenance import fit_provenance

LR_WINDOW_OCTAVES = 2.0  # cells within this many doublings of their group's best learning rate enter the fits
_WEBB = np.array([-math.sqrt(1.5), -1.0, -math.sqrt(0.5), math.sqrt(0.5), 1.0, math.sqrt(1.5)])
_GROUP = ["n_params", "tokens", "batch_size", "seed"]


def lr_exponents_at_fixed_batch(ridge: float | np.ndarray, laws: dict | None = None) -> dict:
    """e_T = beta_eta - r beta_B and e_N = gamma_eta - r gamma_B: the exponents of lr* in T and N at a fixed
    batch size that a batch law and an lr law imply, given the lr-B ridge r (default: the paper's laws)."""
    b, eta = (laws or {}).get("batch_size_law", BATCH_SIZE_LAW), (laws or {}).get("lr_law", LR_LAW)
    return {
        "tokens": eta["exp_tokens"] - ridge * b["exp_tokens"],
        "params": eta["exp_params"] - ridge * b["exp_params"],
    }


def lr_cells(runs: pd.DataFrame) -> pd.DataFrame:
    """The fitting runs' finite cells within LR_WINDOW_OCTAVES of their (N, T, B, seed)'s best lr, with the
    columns the fits use: y (log loss), z (log lr), lt and ln (log T and log N about their means), `group`,
    `batch` (index of the batch size), `pair` (index of the (N, B) pair) and `cluster` (training group)."""
    rows = runs[(runs["role"] == "fit") & np.isfinite(runs["val_loss"]) & (runs["val_loss"] > 0)].copy()
    if "seed" not in rows:
        rows["seed"] = 0
    rows["y"], rows["z"] = np.log(rows["val_loss"]), np.log(rows["lr"])
    best = rows.groupby(_GROUP)["y"].transform("min")
    best_lr = rows["z"].where(rows["y"] == best).groupby([rows[k] for k in _GROUP]).transform("max")
    rows = rows[np.abs(rows["z"] - best_lr) <= LR_WINDOW_OCTAVES * math.log(2) + 1e-9].reset_index(drop=True)
    if rows.empty:
        raise ConfigError("no finite fitting cells to fit the learning-rate law")
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


def fit_lr_law(runs: pd.DataFrame, bootstrap: int = 1000, seed: int = 0, progress: bool = False) -> dict:
    """e_T, e_N (None for one size), the ridge r (pooled and per size) and what they imply for the paper's laws,
    with 95% wild-cluster-bootstrap intervals and the samples they come from. `runs` is a validated table
    (fit.load_runs) with batch_size (tokens per step) and lr."""
    cells = lr_cells(runs)
    sizes = np.sort(cells["n_params"].unique())
    with_params = len(sizes) > 1
    main = _Bowl(cells, "batch", with_params)
    q = main.fit(cells["y"].to_numpy(), main.start(cells))
    pairs = cells.drop_duplicates("pair").sort_values("pair")
    ridge_model = _Bowl(cells, "pair", False)
    q_ridge = ridge_model.fit(cells["y"].to_numpy(), ridge_model.start(cells))
    log_batch, pair_size = np.log(pairs["batch_size"].to_numpy()), pairs["n_params"].to_numpy()
    several_b = pairs.groupby("n_params")["batch_size"].nunique().to_dict()

    def statistics(q_main: np.ndarray, q_pair: np.ndarray) -> dict[str, float]:
        _, e_t, e_n, c_lo, c_hi = main.unpack(q_main)
        a_pair = q_pair[: ridge_model.n_a]
        out = {"e_t": e_t, "e_n": e_n if with_params else math.nan, "c_lo": c_lo, "c_hi": c_hi}
        out["ridge"] = _slope(log_batch, a_pair, pair_size)
        for n in sizes:
            at = pair_size == n
            out[f"ridge_{n}"] = _slope(log_batch[at], a_pair[at], pair_size[at]) if several_b[n] > 1 else math.nan
        return out

    point = statistics(q, q_ridge)
    y = cells["y"].to_numpy()
    fitted_main, fitted_pair = y + main.residuals(q, y), y + ridge_model.residuals(q_ridge, y)
    resid_main, resid_pair = fitted_main - y, fitted_pair - y
    cluster = cells["cluster"].to_numpy()
    rng = np.random.default_rng(seed)
    draws: list[dict[str, float]] = []
    failed = 0
    bar = progress_bar(bootstrap, desc="lr law bootstrap", disable=not progress)
    for _ in range(bootstrap):
        w = rng.choice(_WEBB, cluster.max() + 1)[cluster]
        try:
            qb = main.fit(fitted_main + resid_main * w, q)
            qr = ridge_model.fit(fitted_pair + resid_pair * w, q_ridge)
            draws.append(statistics(qb, qr))
        except (ValueError, np.linalg.LinAlgError):
            failed += 1
        bar.update()
    bar.close()
    samples = {k: np.array([d[k] for d in draws]) for k in point}
    return _document(cells, point, samples, sizes, failed, bootstrap, seed, main, q, fitted_main)


def _estimate(value: float, samples: np.ndarray) -> dict:
    return {"value": value, "ci95": percentile_interval(samples)}


def _document(
    cells: pd.DataFrame,
    point: dict[str, float],
    samples: dict[str, np.ndarray],
    sizes: np.ndarray,
    failed: int,
    bootstrap: int,
    seed: int,
    main: _Bowl,
    q: np.ndarray,
    fitted: np.ndarray,
) -> dict:
    """lr_law.json's content from the point fit and the bootstrap samples."""
    with_params = len(sizes) > 1
    implied_paper = lr_exponents_at_fixed_batch(point["ridge"])
    implied_samples = lr_exponents_at_fixed_batch(samples["ridge"])
    a, _, _, c_lo, c_hi = main.unpack(q)
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
            "t0": float(np.exp(np.log(cells["tokens"]).mean())),
            "n0": float(np.exp(np.log(cells["n_params"]).mean())),
            "log_lr_at_center": {float(bs): float(a[j]) for j, bs in enumerate(np.sort(cells["batch_size"].unique()))},
            "rmse_log": float(np.sqrt(np.mean((fitted - cells["y"].to_numpy()) ** 2))),
        },
        "vertices": group_vertices(cells, c_lo, c_hi),
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


def group_vertices(cells: pd.DataFrame, c_lo: float, c_hi: float) -> list[dict]:
    """Per (N, T, B) the vertex of its own bowl (the fit's curvatures, a level per seed): the points that the
    book plots against the law, beside the grid's best learning rate."""
    out = []
    for (n, t, bs), rows in cells.groupby(["n_params", "tokens", "batch_size"]):
        seeds, z, y = rows["seed"].to_numpy(), rows["z"].to_numpy(), rows["y"].to_numpy()

        def rss(center: float, seeds=seeds, z=z, y=y) -> float:
            v = z - center
            rest = y - np.where(v < 0, c_lo, c_hi) * v * v
            return float(np.sum((rest - pd.Series(rest).groupby(seeds).transform("mean").to_numpy()) ** 2))

        grid = np.linspace(z.min() - 0.5, z.max() + 0.5, 241)
        center = grid[int(np.argmin([rss(c) for c in grid]))]
        best = rows.loc[rows.groupby("seed")["y"].idxmin(), "lr"]
        out.append(
            {
                "n_params": int(n),
                "tokens": float(t),
                "batch_size": float(bs),
                "lr_star": float(np.exp(center)),
                "lr_best_grid": float(np.exp(np.log(best).mean())),
                "on_edge": bool(center <= z.min() + 1e-9 or center >= z.max() - 1e-9),
            }
        )
    return out


def lr_law_file(
    runs_path: Path,
    out: Path,
    bootstrap: int = 1000,
    seed: int = 0,
    loss_column: str = "val_loss",
    progress: bool = True,
    if_changed: bool = False,
) -> dict | None:
    """``replicate lrlaw``: fit_lr_law of a table, written to `out` with its source and provenance. With
    if_changed, None without computing when `out` already holds the law of this very table and options."""
    source = table_source(runs_path, bootstrap=bootstrap, seed=seed, loss_column=loss_column)
    if if_changed and holds_source(out, source):
        return None
    runs = load_runs(runs_path, loss_column)
    require_hyperparameters(runs, str(runs_path), "the learning-rate law")
    doc = fit_lr_law(runs, bootstrap, seed, progress)
    doc = {
        "readout": loss_column,
        **doc,
        "units": {"tokens": "training tokens", "n_params": "parameters", "batch_size": "tokens per step"},
        "source": source,
        "provenance": fit_provenance(),
    }
    doc = json_safe(doc)
    write_json(out, doc)
    return doc
