"""What only the full data's fit computes, beside the bootstrapped laws (`full_data_checks`): how far the loss
law can be trusted beyond its intervals (fit.json's `loss_law` entries: the edge optima it stands on, a refit
without them, its leave-one-size-out error against a form with an N x T interaction, the profile of its fit
along alpha_N, what Huber's threshold does to it, its refit on raw residuals), the compute laws of every FLOP
convention, the flat region around N_opt, and the hyperparameter laws refitted to DeepSeek's band centres."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from replicate.fit.compute import flat_region
from replicate.fit.interaction import PARAMS as INTERACTION
from replicate.fit.interaction import fit_interaction_law, interaction_law
from replicate.fit.laws import LOSS_PARAMS, training_compute
from replicate.fit.loss import DELTA, LossLawFit, fit_loss_law, profile_alpha_params
from replicate.fit.optima import fit_hyperparameter_law
from replicate.fit.pipeline import FitData, Stage, compute_entry


@dataclass(frozen=True)
class FullDataChecks:
    """fit_runs' full-data numbers that get no interval (computed once, not per bootstrap resample)."""

    raw_loss_law: LossLawFit  # the loss law fitted on raw residuals (the headline: log residuals)
    loss_law: dict  # loss_law_checks
    compute_laws: dict[str, dict]  # per FLOP convention of the table (the headline's is the stage's own)
    flat_region: list[dict]  # at the data's largest budget and at the reference budget
    bands: dict[str, dict]  # each fitted hyperparameter law, refitted to the band centres (a cross-check)


def full_data_checks(stage: Stage, data: FitData) -> FullDataChecks:
    """The numbers of FullDataChecks for the full data's `stage`."""
    points, params = stage.points, stage.law.params()
    compute_laws = {
        c: stage.compute if c == data.flops else compute_entry(params, points, model, data.reference_flops)
        for c, model in data.flop_models.items()
    }
    c_max = float(training_compute(data.flops_per_token(points.n), points.t).max())
    return FullDataChecks(
        fit_loss_law(points.n, points.t, points.loss, space="raw"),
        loss_law_checks(stage),
        compute_laws,
        [flat_region(params, data.flops_per_token, c) for c in (c_max, data.reference_flops)],
        {name: _band_law(stage, name) for name in ("batch_size_law", "lr_law") if getattr(stage, name) is not None},
    )


def _band_law(stage: Stage, name: str) -> dict:
    """The same law fitted on the DeepSeek band centres (cross-check)."""
    key = "band_log_batch" if name == "batch_size_law" else "band_log_lr"
    o, u = stage.optima, stage.used
    return fit_hyperparameter_law(o["t"][u], o["n"][u], np.exp(o[key][u]))


def loss_law_checks(stage: Stage) -> dict:
    """How far the loss law can be trusted: the points it used and how many are optima on a grid edge (upper
    bounds of the loss at the true optimum, not optima); the law refitted on the interior optima alone; its
    leave-one-size-out error (each fitting size predicted by the law fitted to the others); and the profile of
    its fit along alpha_N (fit.loss.profile_alpha_params: how wide a range of alpha_N the data allow)."""
    points, law = stage.points, stage.law
    out: dict = {"n_points": len(points.n), "n_on_edge": 0, "interior_only": None}
    if stage.optima is not None:
        valid = stage.optima["valid"]
        edge = stage.optima["on_edge"][valid]
        out["n_on_edge"] = int(edge.sum())
        interior = points.subset(~edge)
        sizes, counts = len(np.unique(interior.n)), len(np.unique(interior.t))
        if len(interior.n) >= 5 and min(sizes, counts) >= 3:
            refit = fit_loss_law(interior.n, interior.t, interior.loss, init=law)
            out["interior_only"] = {**refit.to_dict(), "n_points": len(interior.n)}
    held, held_interaction = [], []
    sizes = np.unique(points.n)
    for n in sizes if len(sizes) >= 4 else ():  # the others must still span 3 sizes
        out_of = points.n == n
        rest = points.subset(~out_of)
        additive = fit_loss_law(rest.n, rest.t, rest.loss, init=law)
        interaction = fit_interaction_law(rest.n, rest.t, rest.loss)
        predicted = interaction_law(points.n[out_of], points.t[out_of], **{k: interaction[k] for k in INTERACTION})
        held.append(
            _held_out(n, additive.predict(points.n[out_of], points.t[out_of]), points.loss[out_of], additive.converged)
        )
        held_interaction.append(_held_out(n, predicted, points.loss[out_of], interaction["converged"]))
    out["leave_one_size_out"] = held
    out["interaction_law"] = {
        **fit_interaction_law(points.n, points.t, points.loss),
        "leave_one_size_out": held_interaction,
    }
    if held:
        errors = {
            name: float(np.median([h["median_abs_rel_error"] for h in rows]))
            for name, rows in (("additive", held), ("interaction", held_interaction))
        }
        out["preferred_form"] = {
            "form": min(errors, key=errors.get),
            "median_loso_error": errors,
            "rule": "the lower median leave-one-size-out error",
        }
    out["profile_alpha_params"] = profile_alpha_params(points.n, points.t, points.loss)
    # Huber's threshold against the residuals: with every residual beyond delta the fit is a least-absolute-
    # deviation fit, not Chinchilla's near-least-squares one; the least-squares fit beside it shows the difference
    residuals = np.abs(np.log(law.predict(points.n, points.t) / points.loss))
    squares = fit_loss_law(points.n, points.t, points.loss, delta=1.0)  # every point in the quadratic zone
    out["huber"] = {
        "delta": DELTA,
        "share_within_delta": float(np.mean(residuals <= DELTA)),
        "median_abs_log_residual": float(np.median(residuals)),
        "least_squares": {k: getattr(squares, k) for k in LOSS_PARAMS},
    }
    return out


def _held_out(n_params: float, predicted: np.ndarray, observed: np.ndarray, converged: bool) -> dict:
    rel = np.abs(predicted / observed - 1)
    return {
        "n_params": float(n_params),
        "median_abs_rel_error": float(np.median(rel)),
        "max_abs_rel_error": float(rel.max()),
        "points": len(rel),
        "converged": bool(converged),
    }
