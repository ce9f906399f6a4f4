"""What a fitted loss law says beyond its data, each with a 95% band from the fit's bootstrap resamples (its
laws' parameters are kept jointly per resample in fit.json): the compute-optimal size N_opt(C) under the book's
one definition, the loss at (N, T), the loss around N_opt at fixed compute; and the range the data cover."""

from __future__ import annotations

import numpy as np
import pandas as pd

from replicate.fit import FlopsPerToken, compute_optimal_size, loss_law, percentile_interval, training_compute
from replicate.fit.laws import LOSS_PARAMS
from replicate.fit.predict import predict
from replicate.fit.read import FitDocument, law_samples
from replicate.report.compare import fmt_ci, fmt_flops

# The book's one N_opt(C): what ch. 7, ch. 10 and `replicate predict` report, and fit.json's
# compute_law.n_opt_at_reference at its reference budget
N_OPT_DEFINITION = (
    "N_opt(C) is the model size that minimises the fitted loss law at a budget of C training FLOPs, counted "
    "with the fit's headline FLOP convention (`replicate.fit.compute_optimal_size`); the power law "
    "N_opt = k C^e fitted to it over the data's budgets only summarises its slope there"
)


def _law(part: dict) -> dict[str, float]:
    return {k: part[k] for k in LOSS_PARAMS}


def loss_law_samples(fit: FitDocument) -> list[dict[str, float]]:
    """The loss law of every bootstrap resample that fitted one (fit.json keeps them jointly)."""
    return law_samples(fit, "loss_law")


def flops_per_token(fit: FitDocument) -> FlopsPerToken:
    """The fit's headline FLOP convention as C_token(N)."""
    return FlopsPerToken(**fit["compute_law"]["flops_per_token"])


def n_opt(fit: FitDocument, flops: np.ndarray | float) -> np.ndarray:
    """N_opt(C) by the book's definition (N_OPT_DEFINITION) for each budget C (FLOPs)."""
    return compute_optimal_size(_law(fit["loss_law"]), flops, flops_per_token(fit))[0]


def _band(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column, the 95% percentile interval over the rows (NaN where too few rows are finite)."""
    bounds = [percentile_interval(column) or [np.nan, np.nan] for column in values.T]
    lo, hi = np.array(bounds, dtype=float).T
    return lo, hi


def n_opt_curve(fit: FitDocument, flops: np.ndarray) -> pd.DataFrame:
    """N_opt(C) over `flops` with its 95% bootstrap band, and at the fixed hyperparameters (no band: fit.json keeps
    no resamples of that law) where the fit has them."""
    flops = np.asarray(flops, dtype=float)
    fpt = flops_per_token(fit)
    draws = np.array([compute_optimal_size(law, flops, fpt)[0] for law in loss_law_samples(fit)])
    lo, hi = _band(draws) if len(draws) else (np.full(len(flops), np.nan),) * 2
    out = pd.DataFrame({"flops": flops, "n_opt": n_opt(fit, flops), "n_opt_lo": lo, "n_opt_hi": hi})
    fixed = (fit.get("fixed") or {}).get("loss_law")
    if fixed and fixed.get("converged"):
        out["n_opt_fixed_hp"] = compute_optimal_size(_law(fixed), flops, fpt)[0]
    return out


def loss_band(fit: FitDocument, n_params: np.ndarray | float, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 95% bootstrap band of the loss law at (N, T) (arrays broadcast)."""
    draws = np.array([loss_law(n_params, tokens, **law) for law in loss_law_samples(fit)])
    if not len(draws):
        return np.full(np.shape(tokens), np.nan), np.full(np.shape(tokens), np.nan)
    return _band(draws.reshape(len(draws), -1))


def data_compute_range(fit: FitDocument) -> tuple[float, float]:
    """The training compute (FLOPs, headline convention) that the fitted optima span."""
    optima = pd.DataFrame(fit["optima"])
    c = training_compute(flops_per_token(fit)(optima["n_params"]), optima["tokens"])
    return float(c.min()), float(c.max())


def flat_region_curves(fit: FitDocument, factors: np.ndarray) -> pd.DataFrame:
    """At each budget of fit.json's flat_region (the data's largest and the reference), the loss-law loss of a
    model k x N_opt relative to N_opt's, k over `factors`, with its 95% bootstrap band."""
    fpt = flops_per_token(fit)
    k = np.asarray(factors, dtype=float)

    def rise(law: dict[str, float], c: float) -> np.ndarray:
        (n,), (best,) = compute_optimal_size(law, c, fpt)
        return loss_law(n * k, c / fpt(n * k), **law) / best - 1

    frames = []
    for region in fit.get("flat_region") or []:
        c = region["flops"]
        draws = np.array([rise(law, c) for law in loss_law_samples(fit)])
        lo, hi = _band(draws) if len(draws) else (np.full(len(k), np.nan),) * 2
        frames.append(pd.DataFrame({"flops": c, "k": k, "rise": rise(_law(fit["loss_law"]), c), "lo": lo, "hi": hi}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def n_opt_sentence(fit: FitDocument) -> str:
    """The definition, then N_opt at fit.json's reference budget with its interval, in one sentence each."""
    law = fit["compute_law"]
    ci = (law.get("ci95") or {}).get("n_opt_at_reference")
    interval = f" (95% CI [{ci[0]:.3g}, {ci[1]:.3g}])" if ci else ""
    return (
        f"{N_OPT_DEFINITION}. Here, with {law['flops']} FLOPs: N_opt({fmt_flops(law['reference_flops'])}) = "
        f"{law['n_opt_at_reference']:.3g} parameters{interval}."
    )


def flat_region_sentence(fit: FitDocument) -> str:
    """fit.json's flat region in words: the largest rise at +-30% of N_opt at each budget, its 95% band at the
    data's largest budget, and why the curves of different budgets coincide where L_inf fits to zero."""
    curves = flat_region_curves(fit, np.array([0.7, 1.3]))
    parts = []
    for c, g in curves.groupby("flops"):
        worst = g.loc[g["rise"].idxmax()]
        parts.append(
            f"{100 * worst['rise']:.2g}% at C = {fmt_flops(c)} FLOPs (95% band up to {100 * g['hi'].max():.2g}%)"
        )
    text = "Within +-30% of N_opt the loss rises by at most " + " and ".join(parts) + "."
    if fit["loss_law"].get("l_inf_at_zero"):
        text += (
            " The curves of the two budgets nearly coincide, which is what the fitted law implies, not a coincidence: "
            "with L_inf at zero it is a sum of two power laws, and at N = k N_opt(C) both terms shrink with C by the "
            "same factor, so the relative rise depends on k alone (up to the attention term of the FLOP count)."
        )
    return text


PREDICTED = (
    ("n_params", "N"),
    ("tokens", "T"),
    ("batch_size", "B_opt (tokens)"),
    ("lr", "eta_opt"),
    ("val_loss", "loss"),
)


def prediction_table(fits: dict[str, FitDocument], queries: dict[str, dict[str, float]]) -> pd.DataFrame:
    """`replicate predict` for every query ({name: predict's keyword arguments}) under every fit ({name: fit.json
    or fit.predict.paper_fit()}): one row per quantity, with its 95% interval."""
    rows = []
    for query, args in queries.items():
        for name, fit in fits.items():
            result = predict(fit, **args)
            for key, label in PREDICTED:
                if key in result["prediction"]:
                    rows.append(
                        {
                            "query": query,
                            "laws": name,
                            "quantity": label,
                            "value": result["prediction"][key],
                            "95% CI": fmt_ci(result["ci95"].get(key)),
                        }
                    )
    return pd.DataFrame(rows)


def prediction_notes(fit: FitDocument, runs: pd.DataFrame) -> list[str]:
    """What prediction_table's rows stand on: N_opt's one definition, and how far the laws reach past the fitting
    runs (runs.csv) they were fitted on."""
    fitted = runs[runs["role"] == "fit"]
    return [
        f"For a compute budget, N is N_opt(C) as {{doc}}`07_loss_law` defines it: {n_opt_sentence(fit)} "
        "With the paper's laws it is the paper's printed Eq. 18.",
        f"Our laws are fitted on models of {fitted['n_params'].min():,.0f} to {fitted['n_params'].max():,.0f} "
        f"parameters and at most {fitted['tokens'].max():,.0f} tokens: at the paper's scale they extrapolate "
        "over orders of magnitude in N and T, and the intervals say how little that extrapolation is worth.",
    ]
