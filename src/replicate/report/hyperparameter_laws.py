"""The hyperparameter chapter's tables and sentences: the B_opt and eta_opt laws beside the paper's, the batch-size
axis at our scale (the loss along B from runs.csv), and the held-out model's hyperparameters (fit.json)."""

from __future__ import annotations

import pandas as pd

from replicate.fit import hyperparameter_law, loss_along_batch, paper_laws, validate_runs
from replicate.fit.read import FitDocument
from replicate.report.compare import lr_scaling_sentence, on_batch_edge
from replicate.report.tables import dit_noise_scales, tradeoff_sentence


def law_table(fit: FitDocument) -> pd.DataFrame:
    """The per-(N, T) optima's B_opt and eta_opt laws, term by term with intervals, beside the paper's."""
    rows = []
    for name, key in (("B_opt (tokens per step)", "batch_size_law"), ("eta_opt", "lr_law")):
        law, paper = fit[key], paper_laws()[key]
        for part, label in (("exp_tokens", "exponent in T"), ("exp_params", "exponent in N")):
            ci = law["ci95"].get(part)
            rows.append(
                {
                    "law": name,
                    "term": label,
                    "ours": law[part],
                    "95% CI": "-" if not ci else f"[{ci[0]:.3f}, {ci[1]:.3f}]",
                    "paper": paper[part],
                }
            )
        rows.append({"law": name, "term": "coefficient", "ours": law["coef"], "95% CI": "-", "paper": paper["coef"]})
    return pd.DataFrame(rows)


def fitted_on_sentence(fit: FitDocument) -> str:
    """How many optima the laws stand on, how many sit on the grid's edge, and the bootstrap behind them."""
    optima = pd.DataFrame(fit["optima"])
    return (
        f"Fitted on {int(optima['used'].sum())} of {len(optima)} (N, T) optima "
        f"({int(optima['on_edge'].sum())} on the grid edge); {fit['bootstrap']['resamples']} bootstrap resamples."
    )


def batch_axis(runs: pd.DataFrame) -> pd.DataFrame:
    """The loss along B of the fitting runs: at each (N, T, B) the lr optimum and its loss (fit.loss_along_batch)."""
    return loss_along_batch(validate_runs(runs[runs["role"] == "fit"]))


def batch_axis_lines(fit: FitDocument, runs: pd.DataFrame, by_batch: pd.DataFrame, dit_noise: dict | None) -> list[str]:
    """What the batch-size axis shows at our scale: the optima on its edge against the paper's B_opt, how little
    the best loss changes along B, the lr-B ridge, and (with the theory's dit_noise.json) the steps-examples
    trade-off."""
    fit_rows = runs[runs["role"] == "fit"]
    optima = pd.DataFrame(fit["optima"])
    paper_b = hyperparameter_law(optima["tokens"], optima["n_params"], **paper_laws()["batch_size_law"])
    clip = float(fit_rows["tokens_per_sample"].iloc[0])
    last = by_batch[by_batch["tokens"] == by_batch["tokens"].max()]
    spread = last.groupby("n_params")["val_loss"].agg(lambda v: v.max() / v.min() - 1)
    lines = [
        f"{sum(on_batch_edge(fit))} of {len(optima)} (N, T) optima lie on the "
        f"batch-size edge. The paper's law gives B_opt = {paper_b.min():.0f} to {paper_b.max():.0f} tokens at "
        f"our (N, T): {paper_b.min() / clip:.2f} to {paper_b.max() / clip:.2f} clips of {clip:.0f} tokens.",
        f"At T = {last['tokens'].iloc[0]:,.0f} the best losses of the batch sizes 1 to "
        f"{last['batch_size'].max() / clip:.0f} clips differ by {100 * spread.min():.1f}% to "
        f"{100 * spread.max():.1f}% (per model size).",
    ]
    slope = fit.get("lr_batch_exponent") or {}
    if slope.get("value") is not None:
        lines.append(lr_scaling_sentence("lr_opt (per batch size, pooled)", slope["value"], slope.get("ci95")))
    surface = fit.get("surface") or {}
    surface_lr = surface.get("lr_law") or {}
    if surface_lr.get("ridge") is not None and surface.get("converged"):
        what = "lr_opt (the surface fit's ridge)"
        lines.append(lr_scaling_sentence(what, surface_lr["ridge"], surface_lr["ci95"].get("ridge")))
    elif surface_lr.get("ridge") is not None:  # a ridge from a fit that did not converge is no measurement
        lines.append("The surface fit did not converge on these data: its lr-B ridge decides nothing.")
    if dit_noise:
        batches = sorted(fit_rows["batch_samples"].unique().tolist())
        lines.append(tradeoff_sentence(dit_noise_scales(dit_noise), batches))
    return lines


HOLDOUT_COLUMNS = {
    "tokens": "T (tokens)",
    "predicted_batch_size": "B_opt predicted (tokens)",
    "observed_batch_size": "B best observed (tokens)",
    "predicted_lr": "eta_opt predicted",
    "observed_lr": "eta best observed",
    "observed_on_edge": "best cell on the grid's edge",
}


def holdout_table(fit: FitDocument) -> pd.DataFrame:
    """The held-out model's predicted B_opt and eta_opt beside its best observed cell, per checkpoint."""
    holdout = pd.DataFrame(fit["holdout"])
    return holdout[list(HOLDOUT_COLUMNS)].astype({"tokens": int}).rename(columns=HOLDOUT_COLUMNS)


def holdout_heatmaps(fit: FitDocument) -> tuple[float, list[float], dict, list[dict]]:
    """What the held-out model's heat maps draw: its N, three of its checkpoints, the laws' predicted (B, lr) per
    (N, T) and its best observed cells (figures.heatmaps' arguments)."""
    holdout = pd.DataFrame(fit["holdout"]).set_index("tokens")
    n = holdout["n_params"].iloc[0]
    tokens = sorted(holdout.index.unique())
    marks = {(n, t): (row["predicted_batch_size"], row["predicted_lr"]) for t, row in holdout.iterrows()}
    observed = [
        {"n_params": n, "tokens": t, "batch_size": r["observed_batch_size"], "lr": r["observed_lr"]}
        for t, r in holdout.iterrows()
    ]
    return n, [tokens[0], tokens[len(tokens) // 2], tokens[-1]], marks, observed


def holdout_edge_sentence(fit: FitDocument) -> str | None:
    """Where the held-out grid's best cell lies on its edge, what the check can and cannot say; None elsewhere."""
    holdout = pd.DataFrame(fit["holdout"])
    edge = int(holdout["observed_on_edge"].astype(bool).sum())
    if not edge:
        return None
    return (
        f"The held-out grid's best cell lies on its edge at {edge} of {len(holdout)} checkpoints, so there the "
        "observed (B, lr) bound the optimum rather than locate it, and the predictions come from laws "
        f"fitted to {fit['batch_size_law']['n_points']} interior optima with the intervals above: this "
        "check can neither pass nor fail cleanly at our scale."
    )
