"""The computation behind `fit_runs` (replicate.fit.document): the table arranged for fitting (`prepare`), every
law fitted to it or to a bootstrap resample of its runs (`fit_stage`), and the statistics a resample yields
(`statistics`). The JSON document is written by replicate.fit.document."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from replicate.config import FLOP_KINDS
from replicate.errors import ConfigError
from replicate.fit.compute import (
    FlopsPerToken,
    compute_optimal_size,
    fit_compute_law,
    fit_flops_per_token,
    isoflop_compute_law,
)
from replicate.fit.laws import HYPER_PARAMS, hyperparameter_law, loss_law, training_compute
from replicate.fit.loss import LossLawFit, fit_loss_law
from replicate.fit.optima import SweepCube, fit_hyperparameter_law, lr_batch_exponent
from replicate.fit.read import surface_leads
from replicate.fit.surface import fit_surface, surface_statistics
from replicate.fit.table import fixed_rows

REFERENCE_FLOPS = 1e22  # the video paper compares N_opt with fixed and with optimal hyperparameters here
MIN_POINTS = 5  # the loss law's parameters
_LIST = 5  # (N, T) pairs named in a warning


@dataclass(frozen=True)
class Points:
    """(N, T, L) points of one loss-law fit; `run` maps each to its run (loss-only and fixed fits)."""

    n: np.ndarray
    t: np.ndarray
    loss: np.ndarray
    run: np.ndarray | None = None

    @classmethod
    def of(cls, rows: pd.DataFrame, run_of: pd.Series | None = None) -> Points:
        return cls(
            rows["n_params"].to_numpy(dtype=float),
            rows["tokens"].to_numpy(dtype=float),
            rows["val_loss"].to_numpy(dtype=float),
            None if run_of is None else run_of[rows.index].to_numpy(),
        )

    def subset(self, mask: np.ndarray) -> Points:
        return Points(self.n[mask], self.t[mask], self.loss[mask], None if self.run is None else self.run[mask])


@dataclass(frozen=True)
class FitData:
    """Everything a fit (of the full table, or of a bootstrap resample of its runs) reads."""

    cube: SweepCube | None  # the fit rows' sweep grid; None without batch_size and lr
    rows: Points | None  # loss-only mode: the fit rows with a finite loss
    fixed: Points | None  # the finite fit rows at the fixed (B, lr)
    fixed_hp: tuple[float, float] | None  # that (B, lr)
    holdout: Points  # the (N, T) points to predict, with their observed (optimal) loss
    holdout_optima: dict[str, np.ndarray] | None  # hyperparameter mode: the holdout grids' optima
    flop_models: dict[str, FlopsPerToken]  # each FLOP convention the table has
    flops: str  # the headline convention
    reference_flops: float
    n_runs: int

    @property
    def flops_per_token(self) -> FlopsPerToken:
        return self.flop_models[self.flops]


@dataclass
class Stage:
    """One fit: optima (hyperparameter mode), the laws, the compute laws."""

    points: Points
    optima: dict[str, np.ndarray] | None
    used: np.ndarray | None  # optima that enter the laws
    edge_fallback: bool
    batch_size_law: dict | None
    lr_law: dict | None
    law: LossLawFit
    compute: dict
    fixed_law: LossLawFit | None
    fixed_compute: dict | None
    lr_batch_exponent: float | None  # d log lr_opt / d log B (`lr_batch_exponent`)
    surface: dict | None = None  # the B surface through every (N, T, B) (fit.surface), the headline B_opt law
    surface_lr: dict | None = None  # the lr surface through the batch profile's interior lr optima


def predict_holdout(
    n_params: np.ndarray,
    tokens: np.ndarray,
    law: Mapping[str, float] | None,
    batch_size_law: Mapping[str, float] | None,
    lr_law: Mapping[str, float] | None,
) -> list[dict]:
    """Held-out check: at each (N, T) the loss law's loss and the hyperparameter laws' optimal batch size
    (tokens per step) and lr; NaN for a law that is missing (None)."""
    preds = []
    for n, t in zip(n_params, tokens, strict=True):
        preds.append(
            {
                "predicted_val_loss": float(loss_law(n, t, **law)) if law else np.nan,
                **{
                    key: float(hyperparameter_law(t, n, **{k: hp[k] for k in HYPER_PARAMS})) if hp else np.nan
                    for key, hp in (("predicted_batch_size", batch_size_law), ("predicted_lr", lr_law))
                },
            }
        )
    return preds


def _check_points(points: Points, what: str, warnings: list[str] | None = None) -> None:
    """Fewer points than parameters is an error. Fewer than 3 sizes or token counts leave the law unidentified:
    a warning for the full data (`warnings` given), an error (a failed resample) for a bootstrap resample."""
    if len(points.n) < MIN_POINTS:
        raise ConfigError(f"{what}: {len(points.n)} points, fewer than the loss law's {MIN_POINTS} parameters")
    sizes, counts = _spread(points.n, points.t)
    if min(sizes, counts) < 3:
        message = (
            f"{what}: {sizes} model sizes and {counts} token counts; the law needs 3 of each to be "
            "identified, so its parameters are not unique"
        )
        if warnings is None:
            raise ConfigError(message)
        warnings.append(message)


def _spread(n: np.ndarray, t: np.ndarray) -> tuple[int, int]:
    return len(np.unique(n)), len(np.unique(t))


def _law_mask(opt: dict[str, np.ndarray]) -> tuple[np.ndarray, bool]:
    """Optima that enter the hyperparameter laws: valid and off the grid edge (as Porian et al.), unless that
    loses points below the loss law's parameter count, or model sizes or token counts (up to 3) that the valid
    optima span."""
    valid = opt["valid"]
    interior = valid & ~opt["on_edge"]
    need = np.minimum(_spread(opt["n"][valid], opt["t"][valid]), 3)
    enough = interior.sum() >= MIN_POINTS and np.all(np.array(_spread(opt["n"][interior], opt["t"][interior])) >= need)
    return (interior, False) if enough else (valid.copy(), True)


def compute_entry(law: dict[str, float], points: Points, flops: FlopsPerToken, reference_flops: float) -> dict:
    """The compute laws of one loss law: from the law itself over the data's compute range, and IsoFLOP."""
    c = training_compute(flops(points.n), points.t)
    entry = fit_compute_law(law, flops, c.min(), c.max())
    entry["isoflop"] = isoflop_compute_law(points.n, points.t, points.loss, flops)
    entry["n_opt_at_reference"] = float(compute_optimal_size(law, reference_flops, flops)[0][0])
    return entry


def fit_stage(
    data: FitData, counts: np.ndarray | None = None, init: Stage | None = None, warnings: list[str] | None = None
) -> Stage:
    """Fit everything once; `counts` (draws per run) re-weights the runs for a bootstrap replicate.

    `warnings` (the full-data fit only) collects identifiability warnings."""
    optima = used = surface = surface_lr = None
    batch_law = lr_law = lr_batch = None
    fallback = False
    if data.cube is not None:
        optima = data.cube.optima(counts)
        optima["n"], optima["t"] = data.cube.n_params, data.cube.tokens
        used, fallback = _law_mask(optima)
        # the loss law takes the best loss of every (N, T): an optimum on the grid edge bounds B_opt or lr_opt,
        # not the loss, which is flat near the optimum; the hyperparameter laws take the interior optima
        valid = optima["valid"]
        points = Points(optima["n"][valid], optima["t"][valid], np.exp(optima["log_loss"][valid]))
        n_used, t_used = optima["n"][used], optima["t"][used]
        batch_law = fit_hyperparameter_law(t_used, n_used, np.exp(optima["log_batch"][used]))
        lr_law = fit_hyperparameter_law(t_used, n_used, np.exp(optima["log_lr"][used]))
        lr_batch = lr_batch_exponent(optima, data.cube.batch_size)
        surface, surface_lr = fit_surface(data.cube, counts, None if init is None else init.surface)
    else:
        points = data.rows
    law, compute = _fit_law(points, counts, data, "loss law", None if init is None else init.law, warnings)
    fixed_law = fixed_compute = None
    if data.fixed is not None:
        try:
            fixed_law, fixed_compute = _fit_law(
                data.fixed, counts, data, "fixed-hp loss law", None if init is None else init.fixed_law, warnings
            )
        except ConfigError:
            if counts is None:
                raise
            # a resample of the few fixed-hp runs can leave too few points; the optimal-hp laws stand regardless
    return Stage(
        points,
        optima,
        used,
        fallback,
        batch_law,
        lr_law,
        law,
        compute,
        fixed_law,
        fixed_compute,
        lr_batch,
        surface,
        surface_lr,
    )


def _fit_law(
    points: Points,
    counts: np.ndarray | None,
    data: FitData,
    what: str,
    init: LossLawFit | None,
    warnings: list[str] | None,
) -> tuple[LossLawFit, dict]:
    """The loss law and its compute laws; points with a run index are weighted by their run's draws."""
    weights = None if counts is None or points.run is None else counts[points.run]
    drawn = _reweighted(points, weights)
    _check_points(drawn, what, warnings)
    law = fit_loss_law(points.n, points.t, points.loss, weights, init=init)
    return law, compute_entry(law.params(), drawn, data.flops_per_token, data.reference_flops)


def _reweighted(points: Points, weights: np.ndarray | None) -> Points:
    """Rows repeated by their bootstrap weight (for the IsoFLOP curves, which take no weights)."""
    return points if weights is None else points.subset(np.repeat(np.arange(len(points.n)), weights))


def statistics(stage: Stage, data: FitData) -> dict[str, float]:
    """The numbers that get bootstrap intervals, flat; NaN where a fit failed."""
    out: dict[str, float] = {}
    for prefix, law, compute in (("", stage.law, stage.compute), ("fixed.", stage.fixed_law, stage.fixed_compute)):
        if law is None:
            continue
        for k, v in law.params().items():
            out[f"{prefix}loss_law.{k}"] = v if law.converged else np.nan
        for k in ("coef", "exp", "n_opt_at_reference"):
            out[f"{prefix}compute_law.{k}"] = compute[k] if law.converged else np.nan
        iso = compute["isoflop"]
        for k in ("coef", "exp"):  # both: N_opt(C) of the IsoFLOP law at any budget, per resample
            out[f"{prefix}compute_law.isoflop.{k}"] = iso[k] if iso else np.nan
    if stage.fixed_law is not None:
        out["fixed.n_opt_ratio"] = out["fixed.compute_law.n_opt_at_reference"] / out["compute_law.n_opt_at_reference"]
    for name in ("batch_size_law", "lr_law"):
        for k in HYPER_PARAMS if getattr(stage, name) else ():
            out[f"{name}.{k}"] = getattr(stage, name)[k]
    if stage.lr_batch_exponent is not None:
        out["lr_batch_exponent"] = stage.lr_batch_exponent
    if stage.surface is not None:
        out |= surface_statistics(stage.surface, stage.surface_lr)
    for i, pred in enumerate(holdout_predictions(stage, data)):
        for k, v in pred.items():
            out[f"holdout.{i}.{k}"] = v
    return out


def holdout_predictions(stage: Stage, data: FitData, converged_only: bool = True) -> list[dict]:
    """The held-out points predicted by the loss law and the headline hyperparameter laws (fit.read's rule, as
    `replicate predict` takes them). A loss law that did not converge
    predicts nothing with `converged_only` (a bootstrap resample), and predicts all the same without it (the
    full data's report, which flags it)."""
    batch_law, lr_law = stage.batch_size_law, stage.lr_law
    if surface_leads(stage.surface):
        batch_law, lr_law = stage.surface, stage.surface_lr
    law = stage.law.params() if stage.law.converged or not converged_only else None
    return predict_holdout(data.holdout.n, data.holdout.t, law, batch_law, lr_law)


def prepare(
    runs: pd.DataFrame,
    fixed_batch_size: float | None,
    fixed_lr: float | None,
    flops: str,
    bootstrap: int,
    reference_flops: float,
    warnings: list[str],
) -> FitData:
    """Check the options and arrange the table for fitting."""
    hyper = "batch_size" in runs
    if bootstrap < 0:
        raise ConfigError(f"bootstrap resamples must be >= 0, got {bootstrap}")
    if (fixed_batch_size is None) != (fixed_lr is None):
        raise ConfigError("give both the fixed batch size and the fixed lr, or neither")
    if fixed_batch_size is not None and not hyper:
        raise ConfigError("fixed hyperparameters need batch_size and lr columns")
    if flops not in FLOP_KINDS:
        raise ConfigError(f"unknown FLOP convention {flops!r}: choose one of {', '.join(FLOP_KINDS)}")
    conventions = [c for c in FLOP_KINDS if c == "6n" or f"flops_{c}" in runs]
    if flops not in conventions:
        warnings.append(f"no flops_{flops} column: compute laws use C = 6 N T")
        flops = "6n"
    flop_models = {c: fit_flops_per_token(runs, c) for c in conventions}
    for c, model in flop_models.items():
        if model.max_rel_error > 0.02:
            warnings.append(f"FLOPs per token ({c}) fitted to within {model.max_rel_error:.1%} only")
    fit = runs[runs["role"] == "fit"]
    _, run_index = np.unique(fit["run"].to_numpy(), return_inverse=True)
    run_of = pd.Series(run_index, index=fit.index)
    fixed = None if fixed_batch_size is None else Points.of(fixed_rows(runs, fixed_batch_size, fixed_lr), run_of)
    held = runs[runs["role"] == "holdout"]
    holdout_optima = None
    if hyper and len(held):
        cube = SweepCube.from_runs(held)
        holdout_optima = cube.optima()
        holdout = Points(cube.n_params, cube.tokens, np.exp(holdout_optima["log_loss"]))
    else:
        holdout = Points.of(held[~held["diverged"]])
    cube, rows = (SweepCube.from_runs(fit), None) if hyper else (None, Points.of(fit[~fit["diverged"]], run_of))
    return FitData(
        cube,
        rows,
        fixed,
        None if fixed is None else (fixed_batch_size, fixed_lr),
        holdout,
        holdout_optima,
        flop_models,
        flops,
        reference_flops,
        len(np.unique(run_index)),
    )
