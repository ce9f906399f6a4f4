"""How far the loss law can be trusted, beyond its bootstrap intervals (fit.json's `loss_law` entries): the edge
optima it stands on, a refit without them, its leave-one-size-out error against a form with an N x T
interaction, the profile of its fit along alpha_N, and what Huber's threshold does to it."""

from __future__ import annotations

import numpy as np

from replicate.fit.interaction import PARAMS as INTERACTION
from replicate.fit.interaction import fit_interaction_law, interaction_law
from replicate.fit.laws import LOSS_PARAMS
from replicate.fit.loss import DELTA, fit_loss_law, profile_alpha_params
from replicate.fit.pipeline import Stage


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
