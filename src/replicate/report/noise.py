"""Chapter 4's measurements in the book: the estimators against the closed forms on quadratics, the one-step line
search against eta_opt(B), and how B_noise and eta_max move with T and N on the Video DiT (log-log fits with
least-squares intervals) against the signs of the paper's hyperparameter exponents."""

from __future__ import annotations

import pandas as pd

from replicate.fit import fit_power_law, paper_laws, power_law_exponent_se

Z95 = 1.96


def _exponents(dit: pd.DataFrame, key: str) -> list[tuple[float, float]]:
    """(exponent, standard error) in T and in N of a power-law fit of `key` over the positive measurements."""
    ok = (dit["b_noise"] > 0) & (dit["eta_max"] > 0)
    xs = (dit.loc[ok, "T"], dit.loc[ok, "N"])
    _, exps, _ = fit_power_law(dit.loc[ok, key], *xs)
    return list(zip(exps, power_law_exponent_se(dit.loc[ok, key], *xs), strict=True))


def _ci(value: float, se: float) -> str:
    return f"{value:+.2f} [{value - Z95 * se:+.2f}, {value + Z95 * se:+.2f}]"


def _sign(value: float, se: float, paper: float) -> str:
    if value - Z95 * se < 0 < value + Z95 * se:
        return "undetermined (the interval holds zero)"
    return "the paper's" if value * paper > 0 else "the opposite of the paper's"


def noise_scale_table(dit: pd.DataFrame) -> pd.DataFrame:
    """B_noise and eta_max (report.dit_noise_scales) as power laws in T and N, beside the paper's B_opt and eta_opt
    exponents."""
    p = paper_laws()
    rows = []
    for key, label, law in (
        ("b_noise", "B_noise (ours) / B_opt (paper)", "batch_size_law"),
        ("eta_max", "eta_max (ours) / eta_opt (paper)", "lr_law"),
    ):
        (e_t, se_t), (e_n, se_n) = _exponents(dit, key)
        rows.append(
            {
                "quantity": label,
                "exponent in T (95% CI)": _ci(e_t, se_t),
                "exponent in N (95% CI)": _ci(e_n, se_n),
                "paper's exponents": f"{p[law]['exp_tokens']}, {p[law]['exp_params']}",
            }
        )
    return pd.DataFrame(rows)


def noise_scale_lines(dit: pd.DataFrame) -> list[str]:
    """What the measured noise scale says against the paper's hyperparameter laws, in sentences."""
    p = paper_laws()
    (bt, bt_se), (bn, bn_se) = _exponents(dit, "b_noise")
    _, (en, en_se) = _exponents(dit, "eta_max")
    batch, lr = p["batch_size_law"], p["lr_law"]
    peaks = all(
        v[1:-1].max() > max(v[0], v[-1])
        for v in (g.sort_values("T")["b_noise"].to_numpy() for _, g in dit.groupby("N"))
        if len(v) > 2
    )
    return [
        f"B_noise against T: exponent {_ci(bt, bt_se)}, against N: {_ci(bn, bn_se)}; the paper's B_opt has "
        f"beta_B = {batch['exp_tokens']:+.2f} and gamma_B = {batch['exp_params']:+.2f}: sign in N "
        f"{_sign(bn, bn_se, batch['exp_params'])}."
        + (" B_noise is not a power law in T here: for every size it peaks at the middle checkpoint." if peaks else ""),
        f"eta_max against N: exponent {_ci(en, en_se)}; the paper's eta_opt has gamma_eta = {lr['exp_params']:+.2f}: "
        f"sign {_sign(en, en_se, lr['exp_params'])}.",
        "The theory is for plain SGD; the sweeps use AdamW, whose per-coordinate normalisation changes the step's "
        "scale (eta then multiplies roughly sign-like updates), so the measured eta_max sets no AdamW learning rate. "
        "What carries over is the batch-size side: B_noise is a property of the gradients, not of the optimiser.",
    ]


def quadratic_sentence(quad: pd.DataFrame) -> str:
    """How close the estimators came to the closed forms (report.quadratic_estimates' table)."""
    return (
        f"Largest |relative error| {quad['rel. error'].abs().max():.1%}; largest |z| "
        f"{quad['z'].abs().max():.2f}; {(quad['z'].abs() < 3).mean():.0%} of the estimates within 3 SE."
    )


def line_search_table(results: dict) -> pd.DataFrame:
    """Per batch size, the predicted eta_opt beside the best measured one-step rate (line_search.json's results)."""
    rows = pd.DataFrame(results["rows"])
    return (
        rows[["batch_size", "eta_opt_predicted", "eta_best_measured"]]
        .assign(ratio=rows["eta_best_measured"] / rows["eta_opt_predicted"])
        .rename(
            columns={
                "batch_size": "batch size (clips)",
                "eta_opt_predicted": "predicted eta_opt",
                "eta_best_measured": "best measured step",
                "ratio": "measured / predicted",
            }
        )
    )
