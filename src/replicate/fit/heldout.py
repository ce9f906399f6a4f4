"""The held-out tests of a learning-rate study (Stage L): does the lr law, and the loss law fitted at the
lr-optimal cells, predict a larger model?

From one sweep with fitting sizes at two batch sizes and a held-out model at one of them
(``replicate lrlaw RUNS --out lr_law.json --summary summary.json``):
- `heldout_lr_ratio`: at each checkpoint whose T/N lies inside the fitting cells' range, the law's lr* for the
  held-out model (fit.lr_law, at its batch size) over the vertex of the held-out model's own bowl;
- `heldout_loss_error`: the paper's additive loss law (Eq. 15, fit.loss) fitted to the lr-optimal losses of the
  fitting sizes at the held-out model's batch size (each group's level at its vertex, the seeds' mean),
  predicting the held-out model's lr-optimal loss at those checkpoints, as prediction / measured - 1;
- `batch_gap`: per (N, T) of the fitting sizes, the lr-optimal loss at the largest batch size over that at
  the smallest, minus 1 (the right flank of the batch bowl, where Stage A found no curvature).
Intervals: the wild cluster bootstrap of fit.lr_law, the held-out model's training groups weighted in the same
resample as the fitting ones, every quantity recomputed from the resampled losses. That bootstrap fits a level
per training group and checkpoint, so a seed's shift of a whole run would be in none of them: each fitting
group's deviation from its cell's seed mean (at the data's fit) is added to its resampled level, times its
cluster's weight and sqrt(k / (k - 1)) for k seeds (the small-sample factor, without which two seeds give
half the variance of their mean); a cell with one seed gets none, so its optimum's interval lacks the seeds'
spread. With two seeds each cell's term rests on one difference, so an interval of one cell (a batch gap)
is a rough one; the loss law pools every cell. The held-out model's own seed noise is added by the report
(report.compare.with_seed_noise, from `heldout_seed_noise`): its two seeds give one difference per
checkpoint, so its spread is pooled over its cells instead. `lr_law_file` is the command,
``replicate lrlaw``, with or without the summary.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from replicate.fit.bootstrap import percentile_interval
from replicate.fit.curvature import seed_noise
from replicate.fit.laws import LOSS_PARAMS
from replicate.fit.loss import LossLawFit, fit_loss_law
from replicate.fit.lr_law import (
    LrLawFit,
    bootstrap_lr_law,
    bowl_vertex,
    fit_lr_law,
    group_vertices,
    lr_cells,
    lr_law_document,
    webb_weights,
)
from replicate.fit.table import load_runs, require_hyperparameters
from replicate.io import holds_source, json_safe, table_source, write_json
from replicate.provenance import fit_provenance

GOALS = {"heldout_lr_ratio": 1.25, "heldout_loss_error": 0.01}  # within x1.25; within 1%


class HeldOut:
    """A held-out model's cells beside a fitted lr law, and the statistics of the module docstring for one set
    of log losses (the data's, or a bootstrap resample's)."""

    def __init__(self, law: LrLawFit, runs: pd.DataFrame) -> None:
        self.law = law
        self.cells = lr_cells(runs, role="holdout")
        fitting = law.cells
        ratio = fitting["tokens"] / fitting["n_params"]
        self.n_params = float(self.cells["n_params"].iloc[0]) if len(self.cells) else math.nan
        self.batch_size = float(self.cells["batch_size"].min()) if len(self.cells) else math.nan
        if len(self.cells):
            self.cells = self.cells[self.cells["batch_size"] == self.batch_size].reset_index(drop=True)
        in_range = (self.cells["tokens"] / self.n_params).between(ratio.min(), ratio.max()) if len(self.cells) else []
        self.tokens = np.sort(self.cells.loc[in_range, "tokens"].unique()) if len(self.cells) else np.array([])
        self.cluster = self.cells["cluster"].to_numpy() if len(self.cells) else np.array([], dtype=int)
        self.loss_law: LossLawFit | None = None
        self._fitted: np.ndarray | None = None  # the held-out cells' log losses on their bowls
        fitting = law.cells.drop_duplicates("group").sort_values("group")
        self._groups = fitting[["group", "n_params", "tokens", "batch_size", "cluster"]].reset_index(drop=True)
        self._seed_term = self._seed_deviations(self._losses(law.q, law.y))

    def _losses(self, q: np.ndarray, y_fit: np.ndarray) -> np.ndarray:
        """Each fitting group's loss at its vertex (its level), in the order of `_groups`."""
        return np.exp(self.law.main.levels(q, y_fit)[self._groups["group"].to_numpy()])

    def _seed_deviations(self, loss: np.ndarray) -> np.ndarray:
        """Each group's loss minus its cell's seed mean, times sqrt(k / (k - 1)) for the cell's k seeds (0 for
        one seed)."""
        cell = pd.Series(loss).groupby([self._groups[c] for c in ("n_params", "tokens", "batch_size")])
        k, mean = cell.transform("size").to_numpy(), cell.transform("mean").to_numpy()
        return np.where(k > 1, (loss - mean) * np.sqrt(k / np.maximum(k - 1, 1)), 0.0)

    def optimum(self, q: np.ndarray, y_fit: np.ndarray, weights: np.ndarray | None = None) -> pd.DataFrame:
        """The lr-optimal loss per (N, T, B) of the fitting sizes: the seeds' mean of their groups' levels; in a
        resample (`weights`, one per cluster) with each group's seed deviation times its cluster's weight."""
        loss = self._losses(q, y_fit)
        if weights is not None:
            loss = loss + self._seed_term * weights[self._groups["cluster"].to_numpy()]
        optimum = self._groups.assign(loss=loss)
        return optimum.groupby(["n_params", "tokens", "batch_size"])["loss"].mean().reset_index()

    def statistics(
        self, q: np.ndarray, y_fit: np.ndarray, y_held: np.ndarray | None, weights: np.ndarray | None = None
    ) -> dict[str, float]:
        """Held-out ratios and errors, and the batch gaps, from the fitted exponents `q` and log losses (and in
        a resample its clusters' `weights`, for the seed term of `optimum`)."""
        law = self.law
        _, _, _, c_lo, c_hi = law.main.unpack(q)
        optimum = self.optimum(q, y_fit, weights)
        out = _batch_gaps(optimum)
        if not len(self.tokens):
            return out
        held = group_vertices(self.cells, c_lo, c_hi, y_held)
        held = held[held["tokens"].isin(self.tokens)].sort_values("tokens")
        stats = law.statistics(q, law.q_pair)
        predicted = law.log_lr_star(stats, self.n_params, held["tokens"].to_numpy(), self.batch_size)
        at_b = optimum[optimum["batch_size"] == self.batch_size]
        loss_law = fit_loss_law(at_b["n_params"], at_b["tokens"], at_b["loss"], init=self.loss_law)
        if self.loss_law is None:
            self.loss_law = loss_law  # the data's fit: the resamples' refits start from it
        loss_pred = loss_law.predict(np.full(len(held), self.n_params), held["tokens"].to_numpy())
        # the law's own parameters, for their intervals (a resample whose fit did not converge counts none)
        out |= {f"loss_law_{k}": v if loss_law.converged else math.nan for k, v in loss_law.params().items()}
        for t, pred, lr_star, level, lp in zip(
            held["tokens"], predicted, held["lr_star"], held["log_loss"], loss_pred, strict=True
        ):
            out[f"lr_ratio_{float(t)!r}"] = math.exp(pred) / lr_star
            out[f"loss_error_{float(t)!r}"] = lp / math.exp(level) - 1
            out[f"lr_star_{float(t)!r}"] = lr_star
            out[f"lr_pred_{float(t)!r}"] = math.exp(pred)
            out[f"loss_{float(t)!r}"] = math.exp(level)
            out[f"loss_pred_{float(t)!r}"] = lp
        return out

    def resample(self, rng: np.random.Generator) -> np.ndarray | None:
        """The held-out cells' log losses, each of its training groups' residuals (about its own bowls, fitted
        once) times one of Webb's weights."""
        if not len(self.cells):
            return None
        if self._fitted is None:
            _, _, _, c_lo, c_hi = self.law.main.unpack(self.law.q)
            self._fitted = np.empty(len(self.cells))
            for _, rows in self.cells.groupby(["tokens"]):
                at = rows.index.to_numpy()
                seeds = rows["seed"].to_numpy()
                self._fitted[at] = bowl_vertex(rows["z"].to_numpy(), rows["y"].to_numpy(), seeds, c_lo, c_hi)[2]
        y = self.cells["y"].to_numpy()
        return self._fitted + (y - self._fitted) * webb_weights(rng, self.cluster.max() + 1)[self.cluster]


def _batch_gaps(optimum: pd.DataFrame) -> dict[str, float]:
    """L(largest B) / L(smallest B) - 1 at each (N, T) measured at both, from lr-optimal losses."""
    wide = optimum.pivot_table(index=["n_params", "tokens"], columns="batch_size", values="loss")
    if wide.shape[1] < 2:
        return {}
    gap = wide.iloc[:, -1] / wide.iloc[:, 0] - 1
    return {f"gap_{float(n)!r}_{float(t)!r}": float(v) for (n, t), v in gap.dropna().items()}


def heldout_summary(runs: pd.DataFrame, bootstrap: int = 1000, seed: int = 0, progress: bool = False) -> tuple:
    """(lr_law.json's document, summary.json's content) of a learning-rate study, from one bootstrap."""
    law = LrLawFit(runs)
    held = HeldOut(law, runs)
    point = held.statistics(law.q, law.y, None)

    def extra(rng: np.random.Generator, q: np.ndarray, y_fit: np.ndarray, weights: np.ndarray) -> dict[str, float]:
        return held.statistics(q, y_fit, held.resample(rng), weights)

    samples, failed = bootstrap_lr_law(law, bootstrap, seed, extra=extra, progress=progress)
    lr_doc = lr_law_document(law, samples, failed, bootstrap, seed)
    noise = seed_noise(runs[runs["role"] == "fit"])
    # the held-out model's own spread, for the report to add (report.compare.with_seed_noise; module docstring)
    held_noise = seed_noise(runs[runs["role"] == "holdout"]) if len(held.cells) else None
    return lr_doc, {**_summary(lr_doc, held, point, samples), "seed_noise": noise, "heldout_seed_noise": held_noise}


def _estimate(point: dict, samples: dict, key: str) -> dict:
    return {"value": point[key], "ci95": percentile_interval(samples.get(key, np.array([])))}


def _summary(lr_doc: dict, held: HeldOut, point: dict, samples: dict) -> dict:
    """summary.json: the lr law's headline entries, the held-out checks against their goals, the batch gaps."""
    checkpoints = []
    for t in held.tokens:
        checkpoints.append(
            {
                "tokens": float(t),
                "t_over_n": float(t / held.n_params),
                "lr_star": point[f"lr_star_{float(t)!r}"],
                "lr_predicted": point[f"lr_pred_{float(t)!r}"],
                "lr_ratio": _estimate(point, samples, f"lr_ratio_{float(t)!r}"),
                "loss": point[f"loss_{float(t)!r}"],
                "loss_predicted": point[f"loss_pred_{float(t)!r}"],
                "loss_error": _estimate(point, samples, f"loss_error_{float(t)!r}"),
            }
        )
    gaps = []
    for key in point:
        if key.startswith("gap_"):
            _, n, t = key.split("_")
            gaps.append({"n_params": int(float(n)), "tokens": float(t), **_estimate(point, samples, key)})
    keys = ("lr_exponent_tokens", "lr_exponent_params", "ridge", "ridge_by_size", "paper_implied", "implied")
    ridges = [r["value"] for r in lr_doc["ridge_by_size"]]
    return {
        **{k: lr_doc[k] for k in keys},
        "ridge_spread": max(ridges) - min(ridges) if len(ridges) > 1 else None,
        "heldout": None
        if not checkpoints
        else {
            "n_params": int(held.n_params),
            "batch_size": held.batch_size,
            "checkpoints": checkpoints,
            "loss_law": None
            if held.loss_law is None
            else {
                **held.loss_law.to_dict(),
                "ci95": {k: percentile_interval(samples.get(f"loss_law_{k}", np.array([]))) for k in LOSS_PARAMS},
            },
        },
        "heldout_lr_ratio": [{"tokens": c["tokens"], **c["lr_ratio"]} for c in checkpoints],
        "heldout_loss_error": [{"tokens": c["tokens"], **c["loss_error"]} for c in checkpoints],
        "batch_gap": gaps,
        "goals": GOALS,
        "bootstrap": {k: v for k, v in lr_doc["bootstrap"].items() if k != "samples"},
    }


def lr_law_file(
    runs_path: Path,
    out: Path,
    bootstrap: int = 1000,
    seed: int = 0,
    loss_column: str = "val_loss",
    progress: bool = True,
    if_changed: bool = False,
    summary: Path | None = None,
) -> dict | None:
    """``replicate lrlaw``: fit_lr_law of a table, written to `out` with its source and provenance; with
    `summary`, also the held-out checks of a learning-rate study (fit.heldout) written there, from the same
    bootstrap. With if_changed, None without computing when the outputs already hold this very table's results
    with these options."""
    source = table_source(runs_path, bootstrap=bootstrap, seed=seed, loss_column=loss_column)
    if if_changed and holds_source(out, source) and (summary is None or holds_source(summary, source)):
        return None
    runs = load_runs(runs_path, loss_column)
    require_hyperparameters(runs, str(runs_path), "the learning-rate law")
    if summary is None:
        doc, summary_doc = fit_lr_law(runs, bootstrap, seed, progress), None
    else:
        doc, summary_doc = heldout_summary(runs, bootstrap, seed, progress)
    tail = {
        "units": {"tokens": "training tokens", "n_params": "parameters", "batch_size": "tokens per step"},
        "source": source,
        "provenance": fit_provenance(),
    }
    doc = json_safe({"readout": loss_column, **doc, **tail})
    write_json(out, doc)
    if summary_doc is not None:
        write_json(summary, json_safe({"readout": loss_column, **summary_doc, **tail}))
    return doc
