"""Our fitted quantities beside the paper's: verdicts, the comparison table, exponent tables, interval text."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from replicate.fit.read import OPTIMA, SURFACE, FitDocument, surface_leads
from replicate.paper import HEADLINE, MSE_RATIO, N_OPT_RATIO, paper_laws
from replicate.report.optima import law_identified


def intervals_meet(a: list[float], b: list[float]) -> bool:
    """Whether two intervals [lo, hi] have a value in common."""
    return max(a[0], b[0]) <= min(a[1], b[1])


def verdict(ours: float, ci: list[float] | None, paper: float) -> str:
    """What our 95% interval says about the paper's value, in words that cannot overstate agreement:
    'excludes the paper's value' when it does; else 'not identified' when the interval is at least as wide as
    the paper's |value| (it would contain that value and its absence alike); else 'agrees' (the interval
    contains the paper's value and is narrower than it). 'no interval' without one."""
    if ci is None or len(ci) != 2 or not all(v is not None and np.isfinite(v) for v in ci):
        return "no interval"
    lo, hi = ci
    if not lo <= paper <= hi:
        return "excludes the paper's value"
    return "not identified" if hi - lo >= abs(paper) else "agrees"


def ratio_verdict(ours: float, ci: list[float] | None, paper: float) -> str:
    """`verdict` for a ratio, whose "no effect" is 1 rather than 0: on the log scale, so that an interval is "not
    identified" when it is at least as wide, in log, as the paper's ratio is from 1 (an interval from 1.2 to 2.7
    around a paper's 1.66 is as wide as the effect it would confirm)."""
    if ci is None or len(ci) != 2 or not all(v is not None and np.isfinite(v) and v > 0 for v in ci):
        return verdict(ours, ci, paper)
    return verdict(math.log(ours), [math.log(ci[0]), math.log(ci[1])], math.log(paper))


def against_goal(estimates: list[dict], low: float, high: float) -> str:
    """Estimates (each {value, ci95}) against a goal [low, high], by their 95% intervals: "outside" when some
    interval lies wholly outside it, "within" when every interval lies inside it, else "not decided" (an
    interval crosses its edge)."""
    cis = [e["ci95"] or [e["value"], e["value"]] for e in estimates]
    if any(hi < low or lo > high for lo, hi in cis):
        return "outside"
    if all(low <= lo and hi <= high for lo, hi in cis):
        return "within"
    return "not decided"


def with_seed_noise(estimates: list[dict], noise: dict | None) -> list[dict]:
    """Relative errors of a held-out model's loss (each {value, ci95}) with their 95% intervals widened by that
    model's own seed noise (summary.json's `heldout_seed_noise`: a relative standard deviation between the seeds
    of one cell near the optimum). A learning-rate study's bootstrap (replicate.fit.heldout) carries the fitting
    sizes' seed deviations but not the held-out model's (its two seeds give one difference per checkpoint), so
    how far the mean of its `seeds` seeds strays, pooled over its cells, is added here:
    1.96 x noise / sqrt(seeds) in quadrature on each side. Without a noise, or an interval, as they are."""
    if not noise or not math.isfinite(noise["near_optimum"]["rms"]):
        return estimates
    seed = 1.96 * noise["near_optimum"]["rms"] / math.sqrt(noise["seeds"])
    out = []
    for e in estimates:
        if not e["ci95"]:
            out.append(e)
            continue
        v, (lo, hi) = e["value"], e["ci95"]
        out.append({**e, "ci95": [v - math.hypot(v - lo, seed), v + math.hypot(hi - v, seed)]})
    return out


def seed_noise_clause(noise: dict | None) -> str:
    """What with_seed_noise added, for the sentence beside its intervals; empty without a noise."""
    if not noise or not math.isfinite(noise["near_optimum"]["rms"]):
        return ""
    near = noise["near_optimum"]
    return (
        f"the held-out model's own seed noise ({100 * near['rms']:.2f}% between its {noise['seeds']} seeds near its "
        f"optimum, over {near['cells']} cells)"
    )


def ratio(ours: float, paper: float) -> float:
    """ours / paper, NaN where either is missing or the paper's value is 0."""
    if ours is None or paper in (None, 0) or not np.isfinite(ours):
        return math.nan
    return ours / paper


def fmt_flops(flops: float) -> str:
    """A FLOP budget as the book writes it: 1e22, 4.4e12."""
    return f"{flops:.2g}".replace("e+", "e")


def fmt_percent(estimate: dict) -> str:
    """A relative quantity ({value, ci95}) in percent with its 95% interval: -0.85% [-1.09, -0.66]%."""
    ci = estimate["ci95"]
    return f"{100 * estimate['value']:+.2f}%" + (f" [{100 * ci[0]:+.2f}, {100 * ci[1]:+.2f}]%" if ci else "")


def fmt_ci(ci: list[float] | None, digits: int = 3) -> str:
    if ci is None or not all(v is not None and np.isfinite(v) for v in ci):
        return "-"
    return f"[{ci[0]:.{digits}g}, {ci[1]:.{digits}g}]"


LR_RULES = {"Adam's square-root rule": 0.5, "SGD's linear rule": 1.0}  # lr_opt ~ B^r below the noise scale


def lr_scaling_sentence(what: str, value: float, ci: list[float] | None) -> str:
    """ "`what` grows as B^r [ci]: the interval contains or excludes" each scaling rule of LR_RULES."""
    text = f"{what} grows as B^{value:.2f} {fmt_ci(ci)}"
    if not ci:
        return text + " (no interval)."
    return (
        text
        + ": the interval "
        + "; ".join(
            f"{'contains' if ci[0] <= v <= ci[1] else 'excludes'} {name} ({v:g})" for name, v in LR_RULES.items()
        )
        + "."
    )


def n_opt_bracketed(fit: FitDocument) -> bool:
    """Whether the data bracket a compute-optimal size anywhere: some FLOP budget reached by three sizes with
    an interior minimum (an IsoFLOP parabola in fit.json)."""
    return any(law.get("isoflop") for law in fit["compute_laws"].values())


NOT_BRACKETED = "not measured here (no budget brackets N_opt: both sizes are extrapolated)"


def holdout_sides(fit: FitDocument) -> dict[float, str]:
    """Per held-out checkpoint (keyed by its tokens), where its observed loss lies against the loss law's 95%
    prediction interval: "above", "inside" or "below" (checkpoints without an interval are left out). The
    observed loss only bounds the optimum from above, so a loss above the interval may be the run's, one below it
    is the law's."""
    sides = {}
    for h in fit.get("holdout") or []:
        if ci := h.get("predicted_val_loss_ci95"):
            loss = h["observed_val_loss"]
            sides[h["tokens"]] = "above" if loss > ci[1] else "below" if loss < ci[0] else "inside"
    return sides


def holdout_beyond(fit: FitDocument) -> float:
    """How far the furthest observed held-out loss above its prediction's 95% interval lies above the interval's
    top, relative (0 where none lies above): what an observed loss that only bounds the optimum would have to
    overstate it by for the miss to be the run's."""
    side = holdout_sides(fit)
    return max(
        (
            h["observed_val_loss"] / h["predicted_val_loss_ci95"][1] - 1
            for h in fit.get("holdout") or []
            if side.get(h["tokens"]) == "above"
        ),
        default=0.0,
    )


def worst_holdout_error(fit: FitDocument) -> float | None:
    """The largest |relative error| of the loss law's held-out predictions; None without any."""
    errors = [abs(h["rel_error"]) for h in fit.get("holdout", []) if h.get("rel_error") is not None]
    return max(errors) if errors else None


COMPARISON_COLUMNS = ["quantity", "ours", "95% CI", "paper", "ours / paper", "failed resamples", "verdict"]


def comparison(fit: FitDocument) -> pd.DataFrame:
    """Every headline result next to the paper's: value, 95% interval, paper value, their ratio, the bootstrap
    resamples that gave no value (the interval comes from the others) and the verdict (see `verdict`)."""
    failed = (fit.get("bootstrap") or {}).get("failed") or {}
    specs = [*_hyperparameter_rows(fit), *_loss_law_rows(fit), *_compute_rows(fit), *_claim_rows(fit)]
    return pd.DataFrame([_comparison_row(failed, *spec) for spec in specs], columns=COMPARISON_COLUMNS)


# a comparison row before it is formatted: quantity, ours, its interval, the paper's value, the law whose failed
# resamples it counts (None: none), and the verdict where `verdict` is not the word
RowSpec = tuple[str, float | None, list[float] | None, float, str | None, str | None]


def _comparison_row(
    failed: dict,
    label: str,
    ours: float | None,
    ci: list[float] | None,
    paper: float,
    law: str | None,
    word: str | None,
) -> tuple:
    missing = ours is None or not np.isfinite(ours)
    return (
        label,
        math.nan if missing else ours,
        fmt_ci(ci),
        paper,
        ratio(ours, paper),
        failed.get(law, "-") if law else "-",
        "not fitted" if missing else word or verdict(ours, ci, paper),
    )


def _exponent(label: str, part: dict, key: str, paper: float, law: str, word: str | None = None) -> RowSpec:
    return label, part.get(key), (part.get("ci95") or {}).get(key), paper, law, word


def on_batch_edge(fit: FitDocument) -> list[bool]:
    """Per (N, T) optimum of fit.json, whether it sits on the batch-size edge of its grid (a bound, not an
    optimum)."""
    return ["batch_size" in (o.get("edge") or "") for o in fit.get("optima") or []]


def batch_edge_word(fit: FitDocument) -> str | None:
    """The verdict of a B_opt law fitted to per-(N, T) optima of which some sit on the batch-size edge of the grid
    (bounds, not optima: the law is no measurement, as the claim table and the findings say); None where none do."""
    edge = on_batch_edge(fit)
    return f"not a measurement ({sum(edge)} of {len(edge)} optima on the batch-size edge)" if any(edge) else None


def n_opt_ratio_word(fit: FitDocument) -> str:
    """The verdict on fit.json's N_opt ratio of fixed to optimal hyperparameters: not measured where no budget
    brackets N_opt (both sizes extrapolated), else ratio_verdict against the paper's."""
    if not n_opt_bracketed(fit):
        return NOT_BRACKETED
    fixed = fit["fixed"]
    return ratio_verdict(fixed["n_opt_ratio"], fixed.get("n_opt_ratio_ci95"), N_OPT_RATIO)


HYPERPARAMETER_ROWS = (  # (law, key, quantity)
    ("batch_size_law", "exp_tokens", "B_opt exponent in T (beta_B)"),
    ("batch_size_law", "exp_params", "B_opt exponent in N (gamma_B)"),
    ("lr_law", "exp_tokens", "eta_opt exponent in T (beta_eta)"),
    ("lr_law", "exp_params", "eta_opt exponent in N (gamma_eta)"),
)


def _hyperparameter_rows(fit: FitDocument) -> list[RowSpec]:
    """The B_opt and eta_opt exponents: the surface fit's first where it is the headline (fit.read; where it is
    not, surface_note says so), then the per-(N, T) optima's, a cross-check beside it."""
    paper, surface = paper_laws(), fit.get("surface")
    methods = [(f" ({SURFACE})", "surface", surface)] if surface_leads(surface) else []
    methods.append((f" ({OPTIMA})" if surface else "", None, fit))
    edge = batch_edge_word(fit)
    return [
        _exponent(
            label + tag,
            source.get(law) or {},
            key,
            paper[law][key],
            failed_as or law,
            edge if source is fit and law == "batch_size_law" else None,
        )
        for tag, failed_as, source in methods
        for law, key, label in HYPERPARAMETER_ROWS
    ]


def _loss_law_rows(fit: FitDocument) -> list[RowSpec]:
    """alpha_T, and alpha_N, whose verdict weighs the likelihood profile's range too: a flat valley is not
    identified, whatever the bootstrap."""
    paper, law = paper_laws()["loss_law"], fit["loss_law"]
    rows = [_exponent("loss exponent in T (alpha_T)", law, "alpha_tokens", paper["alpha_tokens"], "loss_law")]
    alpha_range = (law.get("profile_alpha_params") or {}).get("range95")
    if not alpha_range:
        return [
            *rows,
            _exponent("loss exponent in N (alpha_N)", law, "alpha_params", paper["alpha_params"], "loss_law"),
        ]
    ci = (law.get("ci95") or {}).get("alpha_params")
    both = [v for v in (ci, alpha_range) if v]
    envelope = [min(v[0] for v in both), max(v[1] for v in both)]
    word = verdict(law["alpha_params"], envelope, paper["alpha_params"])
    label = f"loss exponent in N (alpha_N; profile range {fmt_ci(alpha_range)})"
    return [*rows, (label, law["alpha_params"], ci, paper["alpha_params"], "loss_law", word)]


def _compute_rows(fit: FitDocument) -> list[RowSpec]:
    """The N_opt exponent from the loss law (with its interval) and from IsoFLOP (without)."""
    paper, law = paper_laws(), fit["compute_law"]
    iso = law.get("isoflop")
    return [
        (
            f"N_opt exponent in C ({law['flops']} FLOPs, from the loss law)",
            law["exp"],
            (law.get("ci95") or {}).get("exp"),
            paper["compute_law_from_loss"]["exp"],
            "loss_law",
            None,
        ),
        (
            "N_opt exponent in C (IsoFLOP, empirical)",
            iso["exp"] if iso else None,
            None,
            paper["compute_law_empirical"]["exp"],
            None,
            None,
        ),
    ]


def _claim_rows(fit: FitDocument) -> list[RowSpec]:
    """The paper's headline claims: the N_opt ratio of fixed to optimal hyperparameters (with the direction of a
    disagreement), the loss fits' MSE ratio, the held-out error and the flat region."""
    fixed = fit.get("fixed") or {}
    n_ratio, ci = fixed.get("n_opt_ratio"), fixed.get("n_opt_ratio_ci95")
    word = n_opt_ratio_word(fit) if n_ratio is not None else None
    if word == "excludes the paper's value" and (ci[0] > 1 or ci[1] < 1):
        word += " (same direction)" if (ci[0] > 1) == (N_OPT_RATIO > 1) else " (opposite direction)"
    rows: list[RowSpec] = [
        ("N_opt(fixed hp) / N_opt(optimal hp) at 1e22 FLOPs", n_ratio, ci, N_OPT_RATIO, "fixed.loss_law", word)
    ]
    mse_opt, mse_fixed = fit["loss_law"].get("mse"), (fixed.get("loss_law") or {}).get("mse")
    if mse_opt and mse_fixed:
        same = (mse_fixed > mse_opt) == (MSE_RATIO > 1)
        word = "no interval; " + ("same direction" if same else "opposite direction")
        rows.append(("loss-fit MSE, fixed / optimal hp", mse_fixed / mse_opt, None, MSE_RATIO, None, word))
    worst = worst_holdout_error(fit)
    if worst is not None:
        word = "within 1%" if worst <= 0.01 else "above 1%"
        # an observed loss on the grid's edge bounds the optimum from above: where the law predicts lower, say so
        bound = [
            bool(h.get("observed_on_edge")) and h["rel_error"] < 0
            for h in fit["holdout"]
            if h.get("rel_error") is not None
        ]
        if any(bound):
            word += f" (the law predicts lower; the observed loss an upper bound at {sum(bound)} of {len(bound)}"
            word += " checkpoints)"
        paper = max(HEADLINE["holdout_rel_error"])
        rows.append(("held-out loss, worst |relative error|", worst, None, paper, None, word))
    flat = fit.get("flat_region") or []
    if flat:
        rise = max(max(f["rel_increase"]["0.7"], f["rel_increase"]["1.3"]) for f in flat)
        word = "flat (< 1%)" if rise < 0.01 else "not flat"
        rows.append(("loss increase at +-30% N, fixed C (largest)", rise, None, HEADLINE["flat_region"], None, word))
    return rows


def verdict_counts_sentence(table: pd.DataFrame, fit: FitDocument) -> str:
    """How many rows of a comparison() table got each verdict, and surface_note where it applies."""
    counts = table["verdict"].value_counts()
    note = surface_note(fit)
    return "Verdicts: " + ", ".join(f"{v} {k}" for k, v in counts.items()) + "." + (f" {note}" if note else "")


def surface_note(fit: FitDocument) -> str | None:
    """Where the one-surface fit of B_opt and eta_opt (the headline method) did not converge: a sentence saying so
    and that the comparison's hyperparameter rows are the per-(N, T) optima's; None where it converged or is
    absent."""
    surface = fit.get("surface") or {}
    if not surface or surface.get("converged"):
        return None
    boot = fit.get("bootstrap") or {}
    failed = (boot.get("failed") or {}).get("surface")
    resamples = f" ({failed} of its {boot['resamples']} bootstrap resamples failed as well)" if failed else ""
    return (
        "The one-surface fit of B_opt and eta_opt through every (N, T, B, lr) cell, the headline method where it "
        f"converges, did not converge on these data{resamples}; the hyperparameter rows are those of the "
        "per-(N, T) optima."
    )


def verdict_lines(table: pd.DataFrame, quantities: list[str]) -> list[str]:
    """Sentences for the rows of a comparison() table whose quantity starts with one of `quantities`."""
    lines = []
    for _, row in table.iterrows():
        if any(row["quantity"].startswith(q) for q in quantities):
            ours = "not fitted" if not np.isfinite(row["ours"]) else f"{row['ours']:.4g}"
            ci = "" if row["95% CI"] == "-" else f" (95% CI {row['95% CI']})"
            lines.append(f"{row['quantity']}: ours {ours}{ci}, paper {row['paper']:.4g}: **{row['verdict']}**")
    return lines


# (fit.json law, key, label) of every fitted exponent
EXPONENTS = (
    ("batch_size_law", "exp_tokens", "B_opt exponent in T"),
    ("batch_size_law", "exp_params", "B_opt exponent in N"),
    ("lr_law", "exp_tokens", "eta_opt exponent in T"),
    ("lr_law", "exp_params", "eta_opt exponent in N"),
    ("loss_law", "alpha_tokens", "loss exponent in T"),
    ("loss_law", "alpha_params", "loss exponent in N"),
    ("lr_batch_exponent", "value", "eta_opt exponent in B at fixed (N, T)"),
)


def fitted_exponent(fit: FitDocument, law: str, key: str) -> tuple[float, list[float] | None]:
    """One fitted exponent and its 95% interval (NaN and None where the fit has no such law)."""
    part = fit.get(law) or {}
    ci = part.get("ci95")
    return part.get(key, math.nan), (ci.get(key) if isinstance(ci, dict) else ci)


NOT_IDENTIFIED = "not identified: every optimum on one grid value"
AT_ONE_BATCH = "every optimum at one batch size: an lr law at fixed B"
LAW_KEYS = {"batch_size_law": "batch_size", "lr_law": "lr"}  # the optima's column each hyperparameter law fits


def exponent_table(fits: dict[str, FitDocument]) -> pd.DataFrame:
    """Every fitted exponent of several fits side by side (columns named by the keys of `fits`), with the
    paper's: e.g. two evaluation protocols of one sweep, or two sweeps of the same runs. A hyperparameter law
    fitted to optima that all sit on one grid value has no exponent: NOT_IDENTIFIED instead of its rounding; an
    eta_opt law whose optima all sit on one batch size is an lr law at that batch size (AT_ONE_BATCH), not the
    paper's eta_opt, which moves with B_opt."""
    paper = paper_laws()
    rows = []
    for law, key, label in EXPONENTS:
        row = {"quantity": label, "paper": paper.get(law, {}).get(key, math.nan)}  # the paper fits no eta(B) law
        for name, f in fits.items():
            if law in LAW_KEYS and not law_identified(f, LAW_KEYS[law]):
                row[name], row[f"{name} 95% CI"] = math.nan, NOT_IDENTIFIED
                continue
            row[name], ci = fitted_exponent(f, law, key)
            one_batch = law == "lr_law" and not law_identified(f, "batch_size")
            row[f"{name} 95% CI"] = fmt_ci(ci) + (f" ({AT_ONE_BATCH})" if one_batch else "")
        rows.append(row)
    return pd.DataFrame(rows)


def ci_text(ci: list[float] | None) -> str:
    """` [lo, hi]` after a value in a sentence; nothing without an interval."""
    text = fmt_ci(ci)
    return "" if text == "-" else f" {text}"


def loss_law_checks(fit: FitDocument) -> pd.DataFrame:
    """Leave-one-size-out errors of the loss law, one row per fitting size: the paper's additive form and the
    form with an N x T interaction (fit.interaction)."""
    law = fit["loss_law"]
    other = {h["n_params"]: h for h in (law.get("interaction_law") or {}).get("leave_one_size_out", [])}
    rows = []
    for h in law["leave_one_size_out"]:
        k = other.get(h["n_params"])
        rows.append(
            {
                "N held out": int(h["n_params"]),
                "points": h["points"],
                "additive: median |error| (%)": 100 * h["median_abs_rel_error"],
                "additive: max |error| (%)": 100 * h["max_abs_rel_error"],
                "interaction: median |error| (%)": 100 * k["median_abs_rel_error"] if k else math.nan,
                "interaction: max |error| (%)": 100 * k["max_abs_rel_error"] if k else math.nan,
            }
        )
    return pd.DataFrame(rows)


def loss_law_checks_sentence(fit: FitDocument) -> str:
    """The loss law's edge points, its interior-only refit, the alpha_N profile and the preferred form, in words."""
    law = fit["loss_law"]
    text = f"The law uses {law['n_points']} optima, {law['n_on_edge']} of them on an edge of their grid (upper bounds)."
    interior = law.get("interior_only")
    if interior is None:
        text += " The interior optima alone span too few sizes or token counts to fit the law."
    else:
        text += (
            f" Fitted to the {interior['n_points']} interior ones alone: alpha_T = {interior['alpha_tokens']:.3f} "
            f"(all optima: {law['alpha_tokens']:.3f}), alpha_N = {interior['alpha_params']:.3f} "
            f"(all: {law['alpha_params']:.3f})."
        )
    likelihood = law.get("profile_alpha_params") or {}
    if likelihood.get("range95"):
        lo, hi = likelihood["range95"]
        text += (
            f" Along alpha_N the fit stays within its 95% likelihood-ratio threshold from {lo:.2f} to {hi:.2f}"
            + (" (to the edge of the profiled range)" if likelihood["open_low"] or likelihood["open_high"] else "")
            + "."
        )
    preferred = law.get("preferred_form")
    if preferred:
        errors = preferred["median_loso_error"]
        interaction = law.get("interaction_law") or {}
        held = {"additive": law.get("leave_one_size_out"), "interaction": interaction.get("leave_one_size_out")}
        worst = {k: max(h["max_abs_rel_error"] for h in v) for k, v in held.items() if v}
        text += (
            " Out of sample (each size predicted from the others), comparing the additive form with Kaplan et al.'s "
            "form with an N x T interaction, L = ((N_c / N)^(alpha_N / alpha_T) + T_c / T)^alpha_T + L_inf: the "
            f"{preferred['form']} form has the lower median error, {100 * errors['additive']:.2f}% additive, "
            f"{100 * errors['interaction']:.2f}% with the interaction"
            + (
                f"; the worst size's worst error is {100 * worst['additive']:.2f}% additive, "
                f"{100 * worst['interaction']:.2f}% with the interaction."
                if len(worst) == 2
                else "."
            )
        )
    return text


def holdout_table(fit: FitDocument) -> pd.DataFrame:
    """The loss law's predictions for the held-out model beside its best observed loss, one row per checkpoint:
    readable columns, the prediction's 95% interval, the error in percent."""
    rows = []
    for h in fit.get("holdout") or []:
        rows.append(
            {
                "N": int(h["n_params"]),
                "T (tokens)": int(h["tokens"]),
                "observed loss (best cell)": h["observed_val_loss"],
                "predicted loss": h["predicted_val_loss"],
                "its 95% CI": fmt_ci(h.get("predicted_val_loss_ci95"), 4),
                "error (%)": None if h.get("rel_error") is None else 100 * h["rel_error"],
                "best cell on an edge": "yes" if h.get("observed_on_edge") else "no",
            }
        )
    return pd.DataFrame(rows)


def n_opt_table(fit: FitDocument) -> pd.DataFrame:
    """N_opt at the fit's reference budget under each FLOP convention, by the book's one definition (the argmin of
    the loss law: fit.json's compute_laws.*.n_opt_at_reference), beside the exponent of the power law fitted to
    N_opt(C) over the data's budgets; the headline convention with its 95% interval."""
    headline = fit["compute_law"]
    rows = []
    for conv, law in fit["compute_laws"].items():
        ci = (headline.get("ci95") or {}).get("n_opt_at_reference") if conv == headline["flops"] else None
        rows.append(
            {
                "FLOPs": conv + (" (headline)" if conv == headline["flops"] else ""),
                f"N_opt at {fmt_flops(headline['reference_flops'])}": law["n_opt_at_reference"],
                "95% CI": fmt_ci(ci),
                "exponent of N_opt(C), data's budgets": law["exp"],
                "C_token(N)": law["flops_per_token"]["source"],
            }
        )
    return pd.DataFrame(rows)


def fixed_ratio_table(fit: FitDocument) -> pd.DataFrame:
    """N_opt at the fixed hyperparameters over N_opt at the optimal ones, at the reference budget, with its
    interval, in scientific notation, beside the paper's."""
    fixed = fit.get("fixed") or {}
    if fixed.get("n_opt_ratio") is None:
        return pd.DataFrame()
    ci = fixed.get("n_opt_ratio_ci95")
    return pd.DataFrame(
        [
            {
                "quantity": f"N_opt(fixed hp) / N_opt(optimal hp) at {fmt_flops(fixed['reference_flops'])} FLOPs"
                + (f" (fixed: B = {fixed['batch_size']:.0f} tokens, lr = {fixed['lr']:g})" if "lr" in fixed else ""),
                "ours": f"{fixed['n_opt_ratio']:.3g}",
                "95% CI": fmt_ci(ci),
                "paper": f"{N_OPT_RATIO:.4g}",
            },
            {
                "quantity": f"N_opt(fixed hp) at {fmt_flops(fixed['reference_flops'])} FLOPs",
                "ours": f"{fixed['compute_law']['n_opt_at_reference']:.3g}",
                "95% CI": fmt_ci((fixed["compute_law"].get("ci95") or {}).get("n_opt_at_reference")),
                "paper": f"{HEADLINE['n_opt_1e22_fixed']:.4g}",
            },
        ]
    )
