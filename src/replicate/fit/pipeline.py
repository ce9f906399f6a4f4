"""`fit_runs`: every law fitted to one runs table, with bootstrap intervals, as ``replicate fit`` writes it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from replicate.errors import ConfigError
from replicate.fit.bootstrap import bootstrap_runs, percentile_interval
from replicate.fit.compute import (
    FlopsPerToken,
    compute_optimal_size,
    fit_compute_law,
    fit_flops_per_token,
    flat_region,
    isoflop_compute_law,
)
from replicate.fit.laws import HYPER_PARAMS, LOSS_PARAMS, hyperparameter_law, loss_law, training_compute
from replicate.fit.loss import LossLawFit, fit_loss_law
from replicate.fit.optima import SweepCube, fit_hyperparameter_law, lr_batch_exponent, optima_frame
from replicate.fit.table import FLOP_CONVENTIONS, fixed_rows, validate_runs

REFERENCE_FLOPS = 1e22  # the video paper compares N_opt with fixed and with optimal hyperparameters here
RAW_LOG_TOLERANCE = 0.05  # warn when the raw-residual fit's exponents differ from the log fit's by more
MIN_POINTS = 5  # the loss law's parameters
_LIST = 5  # (N, T) pairs named in a warning


@dataclass(frozen=True)
class _Points:
    """(N, T, L) points of one loss-law fit; `run` maps each to its run (loss-only and fixed fits)."""

    n: np.ndarray
    t: np.ndarray
    loss: np.ndarray
    run: np.ndarray | None = None

    @classmethod
    def of(cls, rows: pd.DataFrame, run_of: pd.Series | None = None) -> _Points:
        return cls(rows["n_params"].to_numpy(dtype=float), rows["tokens"].to_numpy(dtype=float),
                   rows["val_loss"].to_numpy(dtype=float), None if run_of is None else run_of[rows.index].to_numpy())

    def subset(self, mask: np.ndarray) -> _Points:
        return _Points(self.n[mask], self.t[mask], self.loss[mask], None if self.run is None else self.run[mask])


@dataclass(frozen=True)
class _Data:
    """Everything a fit (of the full table, or of a bootstrap resample of its runs) reads."""

    cube: SweepCube | None  # the fit rows' sweep grid; None without batch_size and lr
    rows: _Points | None  # loss-only mode: the fit rows with a finite loss
    fixed: _Points | None  # the finite fit rows at the fixed (B, lr)
    fixed_hp: tuple[float, float] | None  # that (B, lr)
    holdout: _Points  # the (N, T) points to predict, with their observed (optimal) loss
    holdout_optima: dict[str, np.ndarray] | None  # hyperparameter mode: the holdout grids' optima
    flop_models: dict[str, FlopsPerToken]  # each FLOP convention the table has
    flops: str  # the headline convention
    reference_flops: float
    n_runs: int

    @property
    def flops_per_token(self) -> FlopsPerToken:
        return self.flop_models[self.flops]


@dataclass
class _Stage:
    """One fit: optima (hyperparameter mode), the laws, the compute laws."""

    points: _Points
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


def predict_holdout(n_params: np.ndarray, tokens: np.ndarray, law: Mapping[str, float] | None,
                    batch_size_law: Mapping[str, float] | None, lr_law: Mapping[str, float] | None) -> list[dict]:
    """Held-out check: at each (N, T) the loss law's loss and the hyperparameter laws' optimal batch size
    (tokens per step) and lr; NaN for a law that is missing (None)."""
    preds = []
    for n, t in zip(n_params, tokens, strict=True):
        preds.append({"predicted_val_loss": float(loss_law(n, t, **law)) if law else np.nan,
                      **{key: float(hyperparameter_law(t, n, **{k: hp[k] for k in HYPER_PARAMS})) if hp else np.nan
                         for key, hp in (("predicted_batch_size", batch_size_law), ("predicted_lr", lr_law))}})
    return preds


def _check_points(points: _Points, what: str, warnings: list[str] | None = None) -> None:
    """Fewer points than parameters is an error. Fewer than 3 sizes or token counts leave the law unidentified:
    a warning for the full data (`warnings` given), an error (a failed resample) for a bootstrap resample."""
    if len(points.n) < MIN_POINTS:
        raise ConfigError(f"{what}: {len(points.n)} points, fewer than the loss law's {MIN_POINTS} parameters")
    sizes, counts = _spread(points.n, points.t)
    if min(sizes, counts) < 3:
        message = (f"{what}: {sizes} model sizes and {counts} token counts; the law needs 3 of each to be "
                   "identified, so its parameters are not unique")
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


def _compute_entry(law: dict[str, float], points: _Points, flops: FlopsPerToken, reference_flops: float) -> dict:
    """The compute laws of one loss law: from the law itself over the data's compute range, and IsoFLOP."""
    c = training_compute(flops(points.n), points.t)
    entry = fit_compute_law(law, flops, c.min(), c.max())
    entry["isoflop"] = isoflop_compute_law(points.n, points.t, points.loss, flops)
    entry["n_opt_at_reference"] = float(compute_optimal_size(law, reference_flops, flops)[0][0])
    return entry


def _fit_stage(data: _Data, counts: np.ndarray | None = None, init: _Stage | None = None,
               warnings: list[str] | None = None) -> _Stage:
    """Fit everything once; `counts` (draws per run) re-weights the runs for a bootstrap replicate.

    `warnings` (the full-data fit only) collects identifiability warnings."""
    optima = used = None
    batch_law = lr_law = lr_batch = None
    fallback = False
    if data.cube is not None:
        optima = data.cube.optima(counts)
        optima["n"], optima["t"] = data.cube.n_params, data.cube.tokens
        used, fallback = _law_mask(optima)
        # the loss law takes the best loss of every (N, T): an optimum on the grid edge bounds B_opt or lr_opt,
        # not the loss, which is flat near the optimum; the hyperparameter laws take the interior optima
        valid = optima["valid"]
        points = _Points(optima["n"][valid], optima["t"][valid], np.exp(optima["log_loss"][valid]))
        n_used, t_used = optima["n"][used], optima["t"][used]
        batch_law = fit_hyperparameter_law(t_used, n_used, np.exp(optima["log_batch"][used]))
        lr_law = fit_hyperparameter_law(t_used, n_used, np.exp(optima["log_lr"][used]))
        lr_batch = lr_batch_exponent(optima, data.cube.batch_size)
    else:
        points = data.rows
    law, compute = _fit_law(points, counts, data, "loss law", None if init is None else init.law, warnings)
    fixed_law = fixed_compute = None
    if data.fixed is not None:
        try:
            fixed_law, fixed_compute = _fit_law(data.fixed, counts, data, "fixed-hp loss law",
                                                None if init is None else init.fixed_law, warnings)
        except ConfigError:
            if counts is None:
                raise
            # a resample of the few fixed-hp runs can leave too few points; the optimal-hp laws stand regardless
    return _Stage(points, optima, used, fallback, batch_law, lr_law, law, compute, fixed_law, fixed_compute,
                  lr_batch)


def _fit_law(points: _Points, counts: np.ndarray | None, data: _Data, what: str, init: LossLawFit | None,
             warnings: list[str] | None) -> tuple[LossLawFit, dict]:
    """The loss law and its compute laws; points with a run index are weighted by their run's draws."""
    weights = None if counts is None or points.run is None else counts[points.run]
    drawn = _reweighted(points, weights)
    _check_points(drawn, what, warnings)
    law = fit_loss_law(points.n, points.t, points.loss, weights, init=init)
    return law, _compute_entry(law.params(), drawn, data.flops_per_token, data.reference_flops)


def _reweighted(points: _Points, weights: np.ndarray | None) -> _Points:
    """Rows repeated by their bootstrap weight (for the IsoFLOP curves, which take no weights)."""
    return points if weights is None else points.subset(np.repeat(np.arange(len(points.n)), weights))


def _statistics(stage: _Stage, data: _Data) -> dict[str, float]:
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
        out[f"{prefix}compute_law.isoflop.exp"] = iso["exp"] if iso else np.nan
    if stage.fixed_law is not None:
        out["fixed.n_opt_ratio"] = out["fixed.compute_law.n_opt_at_reference"] / out["compute_law.n_opt_at_reference"]
    for name in ("batch_size_law", "lr_law"):
        for k in HYPER_PARAMS if getattr(stage, name) else ():
            out[f"{name}.{k}"] = getattr(stage, name)[k]
    if stage.lr_batch_exponent is not None:
        out["lr_batch_exponent"] = stage.lr_batch_exponent
    for i, pred in enumerate(_holdout_predictions(stage, data)):
        for k, v in pred.items():
            out[f"holdout.{i}.{k}"] = v
    return out


def _holdout_predictions(stage: _Stage, data: _Data) -> list[dict]:
    return predict_holdout(data.holdout.n, data.holdout.t, stage.law.params() if stage.law.converged else None,
                           stage.batch_size_law, stage.lr_law)


def fit_runs(runs: pd.DataFrame, *, fixed_batch_size: float | None = None, fixed_lr: float | None = None,
             flops: str = "exact", bootstrap: int = 1000, seed: int = 0, reference_flops: float = REFERENCE_FLOPS,
             progress: bool = False) -> dict:
    """Fit every law to a runs table and return the ``replicate fit`` JSON document (raw units throughout).

    With batch_size and lr columns: optima per (N, T) (`extract_optima`), the hyperparameter laws on the
    interior optima, the loss law on their losses. Without them every fit row counts as an optimum. Then: the
    loss law fitted again on raw residuals (a warning if the exponents disagree), the compute law N_opt(C)
    from the loss law and the IsoFLOP law for each FLOP convention the table has (`flops` picks the headline
    one; 6N where the table has no FLOP columns), the flat region around N_opt, with fixed_batch_size and
    fixed_lr the same laws fitted only on the runs at that (B, lr) (`fixed_rows`) and the ratio of their
    N_opt at `reference_flops`, predictions for the holdout rows (`predict_holdout`), and `bootstrap`
    refits on resampled runs (`bootstrap_runs`) giving 95% percentile intervals.

    In hyperparameter mode a resample leaves about a third of the (B, lr) cells without a run, so its optima
    also move with the grid's resolution: the intervals are conservative where the loss noise is small next
    to the loss steps between grid cells. A fixed (B, lr) has one run per model size, so many resamples
    cannot identify its law; those count as failed and are reported.
    Bad input raises ConfigError.
    """
    runs = validate_runs(runs)
    warnings: list[str] = []
    data = _prepare(runs, fixed_batch_size, fixed_lr, flops, bootstrap, reference_flops, warnings)
    stage = _fit_stage(data, warnings=warnings)
    full = _statistics(stage, data)
    samples = bootstrap_runs(lambda counts: _statistics(_fit_stage(data, counts, init=stage), data), data.n_runs,
                             bootstrap, full, seed=seed, progress=progress)
    ci = {k: percentile_interval(v) for k, v in samples.items()}
    result = _report(runs, data, stage, full, ci, warnings)
    result["bootstrap"] = {"resamples": bootstrap, "seed": seed, "unit": "run", "interval": "95% percentile",
                           "failed": _failures(samples, data, bootstrap, warnings)}
    result["warnings"] = warnings
    return _json_safe(result)


def _failures(samples: dict[str, np.ndarray], data: _Data, bootstrap: int, warnings: list[str]) -> dict[str, int]:
    """Resamples without a (converged) loss law, per law; a warning above 1%."""
    runs = {"loss_law": data.n_runs, "fixed.loss_law": 0 if data.fixed is None else len(np.unique(data.fixed.run))}
    failed = {name: int(np.sum(~np.isfinite(samples[f"{name}.alpha_tokens"])))
              for name in runs if f"{name}.alpha_tokens" in samples}
    for name, k in failed.items():
        if k > 0.01 * bootstrap:
            warnings.append(f"bootstrap: {k} of {bootstrap} resamples gave no {name.replace('.', ' ')} (too few of "
                            f"its {runs[name]} runs drawn to identify it, or no convergence); intervals use the "
                            "others")
    return failed


def _prepare(runs: pd.DataFrame, fixed_batch_size: float | None, fixed_lr: float | None, flops: str,
             bootstrap: int, reference_flops: float, warnings: list[str]) -> _Data:
    """Check the options and arrange the table for fitting."""
    hyper = "batch_size" in runs
    if bootstrap < 0:
        raise ConfigError(f"bootstrap resamples must be >= 0, got {bootstrap}")
    if (fixed_batch_size is None) != (fixed_lr is None):
        raise ConfigError("give both the fixed batch size and the fixed lr, or neither")
    if fixed_batch_size is not None and not hyper:
        raise ConfigError("fixed hyperparameters need batch_size and lr columns")
    if flops not in FLOP_CONVENTIONS:
        raise ConfigError(f"unknown FLOP convention {flops!r}: choose one of {', '.join(FLOP_CONVENTIONS)}")
    conventions = [c for c in FLOP_CONVENTIONS if c == "6n" or f"flops_{c}" in runs]
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
    fixed = None if fixed_batch_size is None else _Points.of(fixed_rows(runs, fixed_batch_size, fixed_lr), run_of)
    held = runs[runs["role"] == "holdout"]
    holdout_optima = None
    if hyper and len(held):
        cube = SweepCube.from_runs(held)
        holdout_optima = cube.optima()
        holdout = _Points(cube.n_params, cube.tokens, np.exp(holdout_optima["log_loss"]))
    else:
        holdout = _Points.of(held[~held["diverged"]])
    cube, rows = (SweepCube.from_runs(fit), None) if hyper else (None, _Points.of(fit[~fit["diverged"]], run_of))
    return _Data(cube, rows, fixed, None if fixed is None else (fixed_batch_size, fixed_lr), holdout,
                 holdout_optima, flop_models, flops, reference_flops, len(np.unique(run_index)))


def _report(runs: pd.DataFrame, data: _Data, stage: _Stage, full: dict, ci: dict, warnings: list[str]) -> dict:
    """The JSON document of the full-data fit, with its intervals (all but the bootstrap summary and warnings)."""
    fit = runs[runs["role"] == "fit"]
    result = {"mode": "loss_only" if data.cube is None else "hyperparameters",
              "units": {"n_params": "parameters", "tokens": "training tokens", "batch_size": "tokens per step",
                        "flops": "FLOPs", "laws": "L = a T^-alpha_tokens + b N^-alpha_params + l_inf; "
                                                 "X = coef T^exp_tokens N^exp_params; N_opt = coef C^exp"},
              "n_rows": len(runs), "n_fit_rows": len(fit), "n_holdout_rows": int((runs["role"] == "holdout").sum()),
              "n_runs": data.n_runs, "n_diverged": int(runs["diverged"].sum()),
              "n_diverged_runs": int(fit.loc[fit["diverged"], "run"].nunique())}
    result["optima"] = _optima_rows(stage, warnings) if data.cube is not None else [
        {"n_params": n, "tokens": t, "batch_size": None, "lr": None, "val_loss": v, "on_edge": False}
        for n, t, v in zip(data.rows.n, data.rows.t, data.rows.loss, strict=True)]
    for name in ("batch_size_law", "lr_law"):
        law = getattr(stage, name)
        if law is not None and not np.isfinite(law["coef"]):
            warnings.append(f"{name}: the optima do not span 2 model sizes and 2 token counts; not fitted")
        result[name] = None if law is None else {
            **law, "n_points": int(stage.used.sum()), "ci95": _cis(ci, name, HYPER_PARAMS),
            "band": _band_law(stage, name)}
    result["lr_batch_exponent"] = None if stage.lr_batch_exponent is None else {
        "value": stage.lr_batch_exponent, "ci95": ci.get("lr_batch_exponent"),
        "meaning": "d log lr_opt / d log B at fixed (N, T), interior lr optima; SGD linear scaling 1, Adam SDE 1/2"}
    raw = fit_loss_law(stage.points.n, stage.points.t, stage.points.loss, space="raw")
    result["loss_law"] = _loss_entry(stage.law, stage.points, ci, "loss_law", warnings, "loss law")
    result["loss_law"]["raw_residual_fit"] = {**raw.to_dict(), "mse": _mse(raw, stage.points)}
    gap = max(abs(raw.alpha_tokens - stage.law.alpha_tokens), abs(raw.alpha_params - stage.law.alpha_params))
    if gap > RAW_LOG_TOLERANCE or not raw.converged:
        warnings.append(f"loss law: the raw-residual fit disagrees with the log-residual fit (alpha_tokens "
                        f"{raw.alpha_tokens:.3f} vs {stage.law.alpha_tokens:.3f}, alpha_params {raw.alpha_params:.3f} "
                        f"vs {stage.law.alpha_params:.3f}{'' if raw.converged else ', raw fit not converged'})")
    result["compute_laws"] = {c: {**(stage.compute if c == data.flops else _compute_entry(
        stage.law.params(), stage.points, model, data.reference_flops)), "flops_per_token": model.to_dict()}
        for c, model in data.flop_models.items()}
    result["compute_law"] = _compute_out(result["compute_laws"][data.flops], data, ci, "compute_law")
    for c, entry in result["compute_laws"].items():
        if entry["isoflop"] is None:
            warnings.append(f"IsoFLOP law ({c}): fewer than 3 budgets reached by 3 model sizes with an interior "
                            "minimum; not fitted")
    c_max = float(training_compute(data.flops_per_token(stage.points.n), stage.points.t).max())
    result["flat_region"] = [flat_region(stage.law.params(), data.flops_per_token, c)
                             for c in (c_max, data.reference_flops)]
    result["fixed"] = None if data.fixed is None else {
        "batch_size": data.fixed_hp[0], "lr": data.fixed_hp[1],
        "loss_law": _loss_entry(stage.fixed_law, data.fixed, ci, "fixed.loss_law", warnings, "fixed-hp loss law"),
        "compute_law": _compute_out(stage.fixed_compute, data, ci, "fixed.compute_law"),
        "n_opt_ratio": full["fixed.n_opt_ratio"], "n_opt_ratio_ci95": ci["fixed.n_opt_ratio"],
        "reference_flops": data.reference_flops}
    result["holdout"] = _holdout_rows(stage, data, ci, warnings)
    return result


def _cis(ci: dict, prefix: str, keys: tuple[str, ...]) -> dict:
    return {k: ci.get(f"{prefix}.{k}") for k in keys}


def _mse(law: LossLawFit, points: _Points) -> float:
    return float(np.mean((law.predict(points.n, points.t) - points.loss) ** 2))


def _loss_entry(law: LossLawFit, points: _Points, ci: dict, prefix: str, warnings: list[str], what: str) -> dict:
    if not law.converged:
        warnings.append(f"{what}: the fit did not converge")
    if min(law.alpha_tokens, law.alpha_params) <= 0:
        warnings.append(f"{what}: a non-positive exponent (alpha_tokens {law.alpha_tokens:.3g}, "
                        f"alpha_params {law.alpha_params:.3g})")
    return {**law.to_dict(), "mse": _mse(law, points), "ci95": _cis(ci, prefix, LOSS_PARAMS)}


def _compute_out(entry: dict, data: _Data, ci: dict, prefix: str) -> dict:
    out = {**entry, "flops": data.flops, "reference_flops": data.reference_flops,
           "ci95": {"exp": ci.get(f"{prefix}.exp"), "coef": ci.get(f"{prefix}.coef"),
                    "n_opt_at_reference": ci.get(f"{prefix}.n_opt_at_reference")}}
    if entry["isoflop"] is not None:
        out["isoflop"] = {**entry["isoflop"], "ci95": {"exp": ci.get(f"{prefix}.isoflop.exp")}}
    return out


def _band_law(stage: _Stage, name: str) -> dict:
    """The same law fitted on the DeepSeek band centres (cross-check)."""
    key = "band_log_batch" if name == "batch_size_law" else "band_log_lr"
    o, u = stage.optima, stage.used
    return fit_hyperparameter_law(o["t"][u], o["n"][u], np.exp(o[key][u]))


def _optima_rows(stage: _Stage, warnings: list[str]) -> list[dict]:
    """The optima of the fit grids, with warnings about edges, divergence and the band cross-check."""
    o = stage.optima
    table = optima_frame(o["n"], o["t"], o).assign(used=stage.used)
    valid = table[table.pop("valid")]

    def named(rows: pd.DataFrame, edge: bool = False) -> str:
        pairs = [f"(N={r.n_params:.3g}, T={r.tokens:.3g}{': ' + r.edge if edge else ''})" for r in rows.itertuples()]
        return ", ".join(pairs[:_LIST]) + (" ..." if len(pairs) > _LIST else "")

    edge = valid[valid["on_edge"]]
    if len(edge):
        kept = ("kept in the hyperparameter laws: too few interior optima" if stage.edge_fallback
                else "excluded from the hyperparameter laws, kept in the loss law")
        warnings.append(f"{len(edge)} of {len(valid)} optima sit on the grid edge ({kept}): {named(edge, True)}")
    if valid["at_divergence"].any():
        warnings.append(f"{int(valid['at_divergence'].sum())} of {len(valid)} optima are bounded by a diverged "
                        "neighbour (taken at the best stable cell, not interpolated)")
    apart = valid[~valid["band_agrees"]]
    if len(apart):
        warnings.append(f"{len(apart)} of {len(valid)} optima lie more than half a grid step from the centre of "
                        f"DeepSeek's 0.25% band: {named(apart)}")
    if len(valid) < len(table):
        warnings.append(f"{len(table) - len(valid)} (N, T) grids have no finite loss")
    return valid.to_dict("records")


def _holdout_rows(stage: _Stage, data: _Data, ci: dict, warnings: list[str]) -> list[dict]:
    rows = []
    opt = data.holdout_optima
    for i, pred in enumerate(_holdout_predictions(stage, data)):
        observed = data.holdout.loss[i]
        row = {"n_params": data.holdout.n[i], "tokens": data.holdout.t[i], **pred, "observed_val_loss": observed,
               "rel_error": pred["predicted_val_loss"] / observed - 1,
               **{f"{k}_ci95": ci.get(f"holdout.{i}.{k}") for k in pred}}
        if opt is not None:
            row.update({"observed_batch_size": np.exp(opt["log_batch"][i]), "observed_lr": np.exp(opt["log_lr"][i]),
                        "observed_on_edge": opt["on_edge"][i]})
            if not opt["valid"][i]:
                warnings.append(f"holdout (N={row['n_params']:.3g}, T={row['tokens']:.3g}): no finite loss")
        rows.append(row)
    return rows


def _json_safe(obj):
    """Plain Python types for json; NaN and inf become null."""
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | np.ndarray):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, np.bool_ | bool):
        return bool(obj)
    if isinstance(obj, np.integer | int):
        return int(obj)
    if isinstance(obj, np.floating | float):
        return float(obj) if np.isfinite(obj) else None
    return obj
