"""The loss-law chapter's tables and sentences (fit.json): the law at the optimal and at the fixed hyperparameters
beside the paper's, its raw-residual refit, the held-out model, and the N_opt exponent it implies."""

from __future__ import annotations

import pandas as pd

from replicate.fit import paper_laws
from replicate.fit.laws import LOSS_PARAMS, n_opt_exponent
from replicate.fit.read import FitDocument
from replicate.paper import COMPUTE_LAW_FROM_LOSS, HEADLINE
from replicate.report.compare import holdout_beyond, holdout_sides


def _sci(value: float) -> str:
    """A small number as the paper prints it: 2.35e-7."""
    return f"{value:.3g}".replace("e-0", "e-")


def law_table(fit: FitDocument) -> pd.DataFrame:
    """The loss law's parameters and MSE at the optimal hyperparameters (with intervals) and at the fixed ones,
    beside the paper's."""
    law, fixed = fit["loss_law"], (fit.get("fixed") or {}).get("loss_law") or {}
    paper = paper_laws()["loss_law"]
    rows = []
    for key in LOSS_PARAMS:
        ci = law["ci95"].get(key)
        rows.append(
            {
                "parameter": key,
                "optimal hp": law[key],
                "95% CI": "-" if not ci else f"[{ci[0]:.4g}, {ci[1]:.4g}]",
                "fixed hp": fixed.get(key),
                "paper": paper[key],
            }
        )
    rows.append(
        {
            "parameter": "fit MSE",
            "optimal hp": law["mse"],
            "95% CI": "-",
            "fixed hp": fixed.get("mse"),
            "paper": f"{_sci(HEADLINE['mse_optimal'])} (optimal), {_sci(HEADLINE['mse_fixed'])} (fixed)",
        }
    )
    return pd.DataFrame(rows)


def convergence_sentence(fit: FitDocument) -> str:
    """Whether the fit converged, and its exponents fitted to raw instead of log residuals."""
    law = fit["loss_law"]
    return (
        f"The fit {'converged' if law['converged'] else '**did not converge**'}; fitted to raw instead of log "
        f"residuals it gives alpha_T = {law['raw_residual_fit']['alpha_tokens']:.3f} and alpha_N = "
        f"{law['raw_residual_fit']['alpha_params']:.3f}."
    )


def holdout_sentence(fit: FitDocument) -> str:
    """How far the held-out model lies beyond the fitting sizes, what its observed loss is, and where it lies
    against the prediction's 95% interval (and what a miss on either side would say)."""
    holdout = pd.DataFrame(fit["holdout"])
    ratio = holdout["n_params"].iloc[0] / max(o["n_params"] for o in fit["optima"])
    side = holdout_sides(fit)
    sides = {k: sum(v == k for v in side.values()) for k in ("above", "inside", "below")}
    beyond = holdout_beyond(fit)
    counted = len(side)
    where = ", ".join(f"{side} it at {n}" for side, n in sides.items() if n)
    text = (
        f"The held-out model is {ratio:.1f}x larger than the largest fitting model. Its observed loss is the "
        "best cell of a small (B, lr) grid, an upper bound on its optimum where that cell is on the grid's "
        f"edge ({int(holdout['observed_on_edge'].astype(bool).sum())} of {len(holdout)} checkpoints). A negative "
        "error means the law predicts a lower loss than observed."
    )
    if counted:
        text += f" Against the prediction's 95% interval the observed loss lies {where} (of {counted} checkpoints)"
        text += (
            f", up to {100 * beyond:.1f}% above its top: an upper bound explains the sign of such a miss, but its "
            f"size only if the optimum lies at least that far below the grid's best cell; an observed loss below "
            "the interval would decide against the law."
            if sides["above"]
            else "."
        )
    return text


def n_opt_exponent_table(fit: FitDocument) -> pd.DataFrame:
    """The N_opt exponent the loss law implies under C proportional to N T beside the exponents fitted to its
    N_opt(C), ours and the paper's (its Eq. 18)."""
    conv = fit["compute_law"]["flops"]
    return pd.DataFrame(
        [
            {
                "": "ours",
                "alpha_T / (alpha_T + alpha_N)": n_opt_exponent(fit["loss_law"]),
                "fitted exponent (6N)": fit["compute_laws"].get("6n", {}).get("exp"),
                f"fitted exponent ({conv})": fit["compute_law"]["exp"],
            },
            {
                "": "paper",
                "alpha_T / (alpha_T + alpha_N)": n_opt_exponent(paper_laws()["loss_law"]),
                "fitted exponent (6N)": None,
                f"fitted exponent ({conv})": COMPUTE_LAW_FROM_LOSS["exp"],
            },
        ]
    )
