"""The fit.json document: `fit_runs` fits every law to a runs table with bootstrap intervals and returns the
document; `fit_file` is ``replicate fit``: a table on disk, its results folder's profile for the fixed
baseline, the --if-changed cache, provenance and an atomic write.

Its schema is replicate.fit.read.FitDocument (every key, typed), where every reader opens it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from replicate.errors import ConfigError
from replicate.fit.bootstrap import bootstrap_runs, percentile_interval, seed_strata
from replicate.fit.checks import FullDataChecks, full_data_checks
from replicate.fit.laws import HYPER_PARAMS, LOSS_PARAMS
from replicate.fit.loss import LossLawFit
from replicate.fit.optima import optima_frame
from replicate.fit.pipeline import (
    REFERENCE_FLOPS,
    FitData,
    Points,
    Stage,
    fit_stage,
    holdout_predictions,
    prepare,
    statistics,
)
from replicate.fit.surface import surface_entry
from replicate.fit.table import DIVERGED_ABOVE, grid_summary, read_table, run_rule, validate_runs
from replicate.io import holds_source, json_safe, table_source, write_json
from replicate.provenance import fit_provenance

SAMPLED_LAWS = ("loss_law", "batch_size_law", "lr_law", "compute_law", "surface")  # kept per resample in fit.json
RAW_LOG_TOLERANCE = 0.05  # warn when the raw-residual fit's exponents differ from the log fit's by more
_LIST = 5  # (N, T) pairs named in a warning


def fit_runs(
    runs: pd.DataFrame,
    *,
    fixed_batch_size: float | None = None,
    fixed_lr: float | None = None,
    flops: str = "exact",
    bootstrap: int = 1000,
    seed: int = 0,
    reference_flops: float = REFERENCE_FLOPS,
    progress: bool = False,
    run_columns: list[str] | None = None,
    diverged_above: float | None = None,
    source: str = "runs table",
) -> dict:
    """Fit every law to a runs table and return the ``replicate fit`` JSON document (raw units throughout).

    With batch_size and lr columns: optima per (N, T) (as `extract_optima` gives them), the hyperparameter laws
    on the interior optima, the loss law on their losses. Without them every fit row counts as an optimum. Then: the
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
    The table is read by `validate_runs`'s rules (`run_columns`, `diverged_above`, the lr and B grid), each
    reported in the document (`runs`, `grid`, `divergence`). Bad input raises ConfigError.
    """
    runs = validate_runs(runs, source, run_columns=run_columns, diverged_above=diverged_above)
    warnings: list[str] = []
    data = prepare(runs, fixed_batch_size, fixed_lr, flops, bootstrap, reference_flops, warnings)
    stage = fit_stage(data, warnings=warnings)
    full = statistics(stage, data)
    strata = seed_strata(runs)
    samples = bootstrap_runs(
        lambda counts: statistics(fit_stage(data, counts, init=stage), data),
        data.n_runs,
        bootstrap,
        full,
        seed=seed,
        progress=progress,
        strata=strata,
    )
    ci = {k: percentile_interval(v) for k, v in samples.items()}
    result = _report(runs, data, stage, full, ci, warnings)
    result.update(_table_rules(runs, run_columns, diverged_above, warnings))
    result["estimators"] = _estimators(result, warnings)
    result["bootstrap"] = {
        "resamples": bootstrap,
        "seed": seed,
        "unit": "run" if strata is None else "seeds within each (N, B, lr) cell",
        "interval": "95% percentile",
        "failed": _failures(samples, data, bootstrap, warnings),
        # the laws' parameters per resample, jointly: what `replicate predict` turns into prediction intervals
        "samples": {
            k: v for k, v in samples.items() if k.split(".")[0] in SAMPLED_LAWS and "n_opt_at_reference" not in k
        },
    }
    result["warnings"] = warnings
    return json_safe(result)


def _failures(samples: dict[str, np.ndarray], data: FitData, bootstrap: int, warnings: list[str]) -> dict[str, int]:
    """Resamples without a value, per law (a loss law that did not converge, a hyperparameter law without the
    optima to fit it); a warning above 1% for the loss laws."""
    runs = {"loss_law": data.n_runs, "fixed.loss_law": 0 if data.fixed is None else len(np.unique(data.fixed.run))}
    failed = {
        name: int(np.sum(~np.isfinite(samples[f"{name}.alpha_tokens"])))
        for name in runs
        if f"{name}.alpha_tokens" in samples
    }
    # the hyperparameter laws' too: the comparison puts each count beside the intervals it affects
    for name, key in (
        ("batch_size_law", "batch_size_law.exp_tokens"),
        ("lr_law", "lr_law.exp_tokens"),
        ("lr_batch_exponent", "lr_batch_exponent"),
        ("surface", "surface.batch_size_law.exp_tokens"),
    ):
        if key in samples:
            failed[name] = int(np.sum(~np.isfinite(samples[key])))
    for name, k in failed.items():
        if name in runs and k > 0.01 * bootstrap:
            warnings.append(
                f"bootstrap: {k} of {bootstrap} resamples gave no {name.replace('.', ' ')} (too few of "
                f"its {runs[name]} runs drawn to identify it, or no convergence); intervals use the "
                "others"
            )
    return failed


def _report(runs: pd.DataFrame, data: FitData, stage: Stage, full: dict, ci: dict, warnings: list[str]) -> dict:
    """The JSON document of the full-data fit, with its intervals (all but the bootstrap summary and warnings)."""
    checks = full_data_checks(stage, data)
    result = _counts(runs, data)
    result["optima"] = (
        _optima_rows(stage, warnings)
        if data.cube is not None
        else [
            {"n_params": n, "tokens": t, "batch_size": None, "lr": None, "val_loss": v, "on_edge": False}
            for n, t, v in zip(data.rows.n, data.rows.t, data.rows.loss, strict=True)
        ]
    )
    for name in ("batch_size_law", "lr_law"):
        result[name] = _hyperparameter_entry(stage, name, ci, checks.bands.get(name), warnings)
    result["lr_batch_exponent"] = (
        None
        if stage.lr_batch_exponent is None
        else {
            "value": stage.lr_batch_exponent,
            "ci95": ci.get("lr_batch_exponent"),
            "meaning": "d log lr_opt / d log B at fixed (N, T), interior lr optima; SGD linear scaling 1, Adam SDE 1/2",
        }
    )
    result["surface"] = None if stage.surface is None else surface_entry(stage.surface, stage.surface_lr, ci)
    result["loss_law"] = _loss_law_entry(stage, checks, ci, warnings)
    result["compute_laws"] = {
        c: {**entry, "flops_per_token": data.flop_models[c].to_dict()} for c, entry in checks.compute_laws.items()
    }
    _headline_compute(result, stage, data, ci, warnings)
    for c, entry in result["compute_laws"].items():
        if entry["isoflop"] is None:
            warnings.append(
                f"IsoFLOP law ({c}): fewer than 3 budgets reached by 3 model sizes with an interior minimum; not fitted"
            )
    result["flat_region"] = checks.flat_region
    result["fixed"] = (
        None
        if data.fixed is None
        else {
            "batch_size": data.fixed_hp[0],
            "lr": data.fixed_hp[1],
            "loss_law": _loss_entry(stage.fixed_law, data.fixed, ci, "fixed.loss_law", warnings, "fixed-hp loss law"),
            "compute_law": _identified(_compute_out(stage.fixed_compute, data, ci, "fixed.compute_law"), data.fixed.n),
            "n_opt_ratio": full["fixed.n_opt_ratio"],
            "n_opt_ratio_ci95": ci["fixed.n_opt_ratio"],
            "reference_flops": data.reference_flops,
        }
    )
    result["holdout"] = _holdout_rows(stage, data, ci, warnings)
    return result


def _counts(runs: pd.DataFrame, data: FitData) -> dict:
    """The document's head: its mode, its units, and the table's rows and runs."""
    fit = runs[runs["role"] == "fit"]
    return {
        "mode": "loss_only" if data.cube is None else "hyperparameters",
        "units": {
            "n_params": "parameters",
            "tokens": "training tokens",
            "batch_size": "tokens per step",
            "flops": "FLOPs",
            "laws": "L = a T^-alpha_tokens + b N^-alpha_params + l_inf; "
            "X = coef T^exp_tokens N^exp_params; N_opt = coef C^exp",
        },
        "n_rows": len(runs),
        "n_fit_rows": len(fit),
        "n_holdout_rows": int((runs["role"] == "holdout").sum()),
        "n_runs": data.n_runs,
        "n_diverged": int(runs["diverged"].sum()),
        "n_diverged_runs": int(fit.loc[fit["diverged"], "run"].nunique()),
    }


def _hyperparameter_entry(stage: Stage, name: str, ci: dict, band: dict | None, warnings: list[str]) -> dict | None:
    """A per-(N, T) optima law with its points, intervals and band cross-check (None where it was not fitted)."""
    law = getattr(stage, name)
    if law is None:
        return None
    if not np.isfinite(law["coef"]):
        warnings.append(f"{name}: the optima do not span 2 model sizes and 2 token counts; not fitted")
    return {**law, "n_points": int(stage.used.sum()), "ci95": _cis(ci, name, HYPER_PARAMS), "band": band}


def _loss_law_entry(stage: Stage, checks: FullDataChecks, ci: dict, warnings: list[str]) -> dict:
    """The loss law with its intervals, its raw-residual refit (a warning where they disagree) and its checks."""
    raw, law = checks.raw_loss_law, stage.law
    entry = _loss_entry(law, stage.points, ci, "loss_law", warnings, "loss law")
    entry["raw_residual_fit"] = {**raw.to_dict(), "mse": _mse(raw, stage.points)}
    entry.update(checks.loss_law)
    gap = max(abs(raw.alpha_tokens - law.alpha_tokens), abs(raw.alpha_params - law.alpha_params))
    if gap > RAW_LOG_TOLERANCE or not raw.converged:
        warnings.append(
            f"loss law: the raw-residual fit disagrees with the log-residual fit (alpha_tokens "
            f"{raw.alpha_tokens:.3f} vs {law.alpha_tokens:.3f}, alpha_params {raw.alpha_params:.3f} "
            f"vs {law.alpha_params:.3f}{'' if raw.converged else ', raw fit not converged'})"
        )
    return entry


def _sizes_text(n_params: np.ndarray) -> str | None:
    """Why N_opt is not identified by these model sizes ('one model size', '2 model sizes'), None if it is: the
    loss law's N term needs 3 sizes (b N^-alpha_N + L_inf has three parameters), and N_opt(C) rests on it."""
    k = len(np.unique(n_params))
    return None if k >= 3 else ("one model size" if k == 1 else f"{k} model sizes")


def _identified(entry: dict, n_params: np.ndarray) -> dict:
    """A compute law without its numbers where the model sizes cannot identify it (`_sizes_text`)."""
    reason = _sizes_text(n_params)
    if reason is None:
        return {**entry, "identified": True}
    blank = dict.fromkeys(("coef", "exp", "n_opt_at_reference", "rmse_log"))
    out = {**entry, **blank, "identified": False, "not_identified": reason}
    if "ci95" in entry:
        out["ci95"] = dict.fromkeys(entry["ci95"])
    return out


def _headline_compute(result: dict, stage: Stage, data: FitData, ci: dict, warnings: list[str]) -> None:
    """The headline compute law (the `flops` convention's) with its intervals, marked: not identified by too few
    model sizes (its numbers withheld, in every convention's), or resting on a loss law that did not converge
    (its numbers reported, flagged, with the range of alpha_N that fits as well, fit.loss.profile_alpha_params)."""
    law = stage.law
    entry = _identified(_compute_out(result["compute_laws"][data.flops], data, ci, "compute_law"), stage.points.n)
    result["compute_laws"] = {c: _identified(e, stage.points.n) for c, e in result["compute_laws"].items()}
    entry["loss_law_converged"] = law.converged
    if not entry["identified"]:
        warnings.append(f"compute law: N_opt not identified ({entry['not_identified']})")
    elif not law.converged:
        likelihood = result["loss_law"]["profile_alpha_params"]
        entry["alpha_params_range95"] = likelihood["range95"]
        entry["alpha_params_range_open"] = [likelihood["open_low"], likelihood["open_high"]]
        span = "-" if likelihood["range95"] is None else "[{:.3g}, {:.3g}]".format(*likelihood["range95"])
        warnings.append(
            "loss law not converged: its N_opt and held-out predictions are reported but rest on an exponent the "
            f"data do not pin (alpha_params within {span} fits as well)"
        )
    result["compute_law"] = entry


def _table_rules(
    runs: pd.DataFrame, run_columns: list[str] | None, diverged_above: float | None, warnings: list[str]
) -> dict:
    """How the table was read (fit.table's rules): its runs, its (B, lr) grid, its diverged rows."""
    _, rule = run_rule(runs.columns, run_columns)
    by_loss = runs["diverged_by_loss"].to_numpy(dtype=bool)
    grid = grid_summary(runs)
    if grid and (grid["batch_size_merged"] or grid["lr_merged"]):
        warnings.append(
            f"grid: {grid['batch_size_merged']} batch-size and {grid['lr_merged']} lr spellings within "
            f"{grid['rtol']:.0%} of another merged into one grid value"
        )
    if by_loss.any():
        warnings.append(
            f"{int(by_loss.sum())} rows of {runs.loc[by_loss, 'run'].nunique()} runs taken as diverged: their "
            "loss is far above the best at their (N, T) (excluded)"
        )
    return {
        "runs": {
            "rule": rule,
            "n_runs": int(runs["run"].nunique()),
            "n_checkpoints": len(runs),
        },
        "grid": grid,
        "divergence": {
            "rule": "the diverged column, a loss that is not finite, or a loss above `factor` times the best at "
            f"its (N, T) (default {DIVERGED_ABOVE:g}, applied only to a table without a diverged column)",
            "factor": diverged_above,
            "n_rows_by_loss": int(by_loss.sum()),
            "n_runs_by_loss": int(runs.loc[by_loss, "run"].nunique()),
        },
    }


# Exponents measured by two estimators: (what, (name, path to the law in fit.json, key), (name, path, key))
_ESTIMATOR_PAIRS = (
    *(
        (f"{symbol} exponent in {variable}", ("per-(N, T) optima", (law,), key), ("surface", ("surface", law), key))
        for law, symbol in (("batch_size_law", "B_opt"), ("lr_law", "eta_opt"))
        for key, variable in (("exp_tokens", "T"), ("exp_params", "N"))
    ),
    ("N_opt exponent", ("loss law", ("compute_law",), "exp"), ("IsoFLOP", ("compute_law", "isoflop"), "exp")),
)


def _estimate(result: dict, path: tuple[str, ...], key: str) -> dict | None:
    entry = result
    for part in path:
        entry = (entry or {}).get(part)
    if not entry or entry.get(key) is None or not np.isfinite(entry[key]):
        return None
    return {"value": entry[key], "ci95": (entry.get("ci95") or {}).get(key)}


def _estimators(result: dict, warnings: list[str]) -> list[dict]:
    """Every exponent two estimators measure, both shown; `disagree` where their 95% intervals exclude each
    other (None where either lacks an interval), with a warning: neither is then the headline."""
    out = []
    for what, *sides in _ESTIMATOR_PAIRS:
        found = {name: _estimate(result, path, key) for name, path, key in sides}
        if any(v is None for v in found.values()):
            continue
        (a, ea), (b, eb) = found.items()
        disagree = None
        if ea["ci95"] and eb["ci95"]:
            disagree = bool(ea["ci95"][1] < eb["ci95"][0] or eb["ci95"][1] < ea["ci95"][0])
        if disagree:
            warnings.append(
                f"{what}: the {a} give {ea['value']:.3g} [{ea['ci95'][0]:.3g}, {ea['ci95'][1]:.3g}] and the {b} "
                f"{eb['value']:.3g} [{eb['ci95'][0]:.3g}, {eb['ci95'][1]:.3g}]: the intervals exclude each other"
            )
        out.append({"quantity": what, "estimates": found, "disagree": disagree})
    return out


def _cis(ci: dict, prefix: str, keys: tuple[str, ...]) -> dict:
    return {k: ci.get(f"{prefix}.{k}") for k in keys}


def _mse(law: LossLawFit, points: Points) -> float:
    return float(np.mean((law.predict(points.n, points.t) - points.loss) ** 2))


def _loss_entry(law: LossLawFit, points: Points, ci: dict, prefix: str, warnings: list[str], what: str) -> dict:
    if not law.converged:
        warnings.append(f"{what}: the fit did not converge")
    if min(law.alpha_tokens, law.alpha_params) <= 0:
        warnings.append(
            f"{what}: a non-positive exponent (alpha_tokens {law.alpha_tokens:.3g}, "
            f"alpha_params {law.alpha_params:.3g})"
        )
    return {**law.to_dict(), "mse": _mse(law, points), "ci95": _cis(ci, prefix, LOSS_PARAMS)}


def _compute_out(entry: dict, data: FitData, ci: dict, prefix: str) -> dict:
    out = {
        **entry,
        "flops": data.flops,
        "reference_flops": data.reference_flops,
        "ci95": {
            "exp": ci.get(f"{prefix}.exp"),
            "coef": ci.get(f"{prefix}.coef"),
            "n_opt_at_reference": ci.get(f"{prefix}.n_opt_at_reference"),
        },
    }
    if entry["isoflop"] is not None:
        out["isoflop"] = {**entry["isoflop"], "ci95": {"exp": ci.get(f"{prefix}.isoflop.exp")}}
    return out


def _optima_rows(stage: Stage, warnings: list[str]) -> list[dict]:
    """The optima of the fit grids, with warnings about edges, divergence and the band cross-check."""
    o = stage.optima
    table = optima_frame(o["n"], o["t"], o).assign(used=stage.used)
    valid = table[table.pop("valid")]

    def named(rows: pd.DataFrame, edge: bool = False) -> str:
        pairs = [f"(N={r.n_params:.3g}, T={r.tokens:.3g}{': ' + r.edge if edge else ''})" for r in rows.itertuples()]
        return ", ".join(pairs[:_LIST]) + (" ..." if len(pairs) > _LIST else "")

    edge = valid[valid["on_edge"]]
    if len(edge):
        kept = (
            "kept in the hyperparameter laws: too few interior optima"
            if stage.edge_fallback
            else "excluded from the hyperparameter laws, kept in the loss law"
        )
        warnings.append(f"{len(edge)} of {len(valid)} optima sit on the grid edge ({kept}): {named(edge, True)}")
    if valid["at_divergence"].any():
        warnings.append(
            f"{int(valid['at_divergence'].sum())} of {len(valid)} optima are bounded by a diverged "
            "neighbour (taken at the best stable cell, not interpolated)"
        )
    apart = valid[~valid["band_agrees"]]
    if len(apart):
        warnings.append(
            f"{len(apart)} of {len(valid)} optima lie more than half a grid step from the centre of "
            f"DeepSeek's 0.25% band: {named(apart)}"
        )
    if len(valid) < len(table):
        warnings.append(f"{len(table) - len(valid)} (N, T) grids have no finite loss")
    return valid.to_dict("records")


def _holdout_rows(stage: Stage, data: FitData, ci: dict, warnings: list[str]) -> list[dict]:
    rows = []
    opt = data.holdout_optima
    for i, pred in enumerate(holdout_predictions(stage, data, converged_only=False)):
        observed = data.holdout.loss[i]
        row = {
            "n_params": data.holdout.n[i],
            "tokens": data.holdout.t[i],
            **pred,
            "loss_law_converged": stage.law.converged,
            "observed_val_loss": observed,
            "rel_error": pred["predicted_val_loss"] / observed - 1,
            **{f"{k}_ci95": ci.get(f"holdout.{i}.{k}") for k in pred},
        }
        if opt is not None:
            row.update(
                {
                    "observed_batch_size": np.exp(opt["log_batch"][i]),
                    "observed_lr": np.exp(opt["log_lr"][i]),
                    "observed_on_edge": opt["on_edge"][i],
                }
            )
            if not opt["valid"][i]:
                warnings.append(f"holdout (N={row['n_params']:.3g}, T={row['tokens']:.3g}): no finite loss")
        rows.append(row)
    return rows


def fixed_from_profile(runs_path: Path, profile: str | None) -> tuple[float, float] | None:
    """The fixed baseline (tokens per step, lr) of a sweep profile: `profile` (a name or .toml path), else the
    profile.toml that the sweep wrote beside the table, else None (anyone's table, or a profile without one)."""
    from replicate.profile import load_profile

    path = profile or (runs_path.parent / "profile.toml")
    if profile is None and not Path(path).is_file():
        return None
    loaded = load_profile(str(path))
    if loaded.fixed_tokens_per_step is None:
        return None
    return float(loaded.fixed_tokens_per_step), loaded.fixed_lr


def fit_file(
    runs_path: Path,
    out: Path,
    *,
    profile: str | None = None,
    fixed_batch_size: float | None = None,
    fixed_lr: float | None = None,
    flops: str = "exact",
    bootstrap: int = 1000,
    seed: int = 0,
    loss_column: str = "val_loss",
    if_changed: bool = False,
    progress: bool = True,
    run_columns: list[str] | None = None,
    diverged_above: float | None = None,
) -> dict | None:
    """``replicate fit``: fit_runs on the table at `runs_path`, written to `out` with its `source` (what it was
    computed from) and `provenance`. The fixed baseline comes from fixed_batch_size and fixed_lr (tokens per
    step), or from the profile (see fixed_from_profile). With if_changed, returns None without fitting when
    `out` already holds a fit of the same table and options. Bad input raises ConfigError."""
    if (fixed_batch_size is None) != (fixed_lr is None):
        raise ConfigError("give both the fixed batch size and the fixed lr, or neither")
    if fixed_batch_size is not None and profile:
        raise ConfigError("give --profile or --fixed-batch-size/--fixed-lr, not both")
    if fixed_batch_size is None:
        fixed_batch_size, fixed_lr = fixed_from_profile(runs_path, profile) or (None, None)
    source = table_source(
        runs_path,
        loss_column=loss_column,
        bootstrap=bootstrap,
        seed=seed,
        flops=flops,
        fixed_batch_size=fixed_batch_size,
        fixed_lr=fixed_lr,
        # the table rules' options only where given: a default fit keeps the source it always had
        **{k: v for k, v in (("run_columns", run_columns), ("diverged_above", diverged_above)) if v is not None},
    )
    if if_changed and holds_source(out, source):
        return None
    result = fit_runs(
        read_table(runs_path, loss_column),
        fixed_batch_size=fixed_batch_size,
        fixed_lr=fixed_lr,
        flops=flops,
        bootstrap=bootstrap,
        seed=seed,
        progress=progress,
        run_columns=run_columns,
        diverged_above=diverged_above,
        source=str(runs_path),
    )
    prov = fit_provenance()
    result = {**result, "source": source, "provenance": prov}
    write_json(out, result)
    return result


def _with_ci(value: float, ci: list[float] | None) -> str:
    return f"{value:.3f}" + (" [{:.3f}, {:.3f}]".format(*ci) if ci else "")


def _listing(values: list[float], most: int = 8) -> str:
    shown = [f"{v:g}" for v in values]
    return ", ".join(shown if len(shown) <= most else [*shown[:3], "...", *shown[-3:]])


def summary_lines(result: dict) -> list[str]:
    """``replicate fit``'s summary of a fit.json: how the table was read (runs, grid, diverged rows), the loss
    law, N_opt by both estimators (or why not identified), and every pair of estimators that disagree."""
    runs, div = result.get("runs") or {}, result.get("divergence") or {}
    lines = [
        f"{result['mode']}: {result['n_rows']} rows, {runs.get('n_runs', result['n_runs'])} runs "
        f"({runs.get('rule', 'run_id')}); {result['n_diverged']} diverged rows"
        + (f" ({div['n_rows_by_loss']} by their loss, excluded)" if div.get("n_rows_by_loss") else "")
    ]
    grid = result.get("grid")
    if grid:
        merged = grid["batch_size_merged"] + grid["lr_merged"]
        lines.append(
            f"grid: batch sizes {_listing(grid['batch_size'])}; lrs {_listing(grid['lr'])}"
            + (f" ({merged} spellings merged)" if merged else "")
        )
    law, ci = result["loss_law"], result["loss_law"]["ci95"]
    lines.append(
        f"L = {law['a']:.4g} T^-{_with_ci(law['alpha_tokens'], ci['alpha_tokens'])} + {law['b']:.4g} "
        f"N^-{_with_ci(law['alpha_params'], ci['alpha_params'])} + {law['l_inf']:.4f}"
        + ("" if law["converged"] else " (not converged)")
    )
    compute = result["compute_law"]
    if not compute.get("identified", True):
        lines.append(f"N_opt: not identified ({compute['not_identified']})")
    else:
        text = f"N_opt ~ C^{_with_ci(compute['exp'], compute['ci95']['exp'])} (loss law, {compute['flops']} FLOPs)"
        iso = compute.get("isoflop")
        if iso:
            text += f"; C^{_with_ci(iso['exp'], iso['ci95']['exp'])} (IsoFLOP)"
        if not compute.get("loss_law_converged", True):
            span = compute.get("alpha_params_range95")
            text += " -- loss law not converged" + (
                ": alpha_N within [{:.3g}, {:.3g}] fits as well".format(*span) if span else ""
            )
        lines.append(text)
    for pair in result.get("estimators", []):
        if pair["disagree"]:
            (a, ea), (b, eb) = pair["estimates"].items()
            lines.append(
                f"estimators disagree on the {pair['quantity']}: {a} {_with_ci(ea['value'], ea['ci95'])}, "
                f"{b} {_with_ci(eb['value'], eb['ci95'])}"
            )
    lines.append(f"{len(result['warnings'])} warnings")
    return lines
