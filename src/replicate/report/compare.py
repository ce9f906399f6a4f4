"""Our fitted quantities beside the paper's: verdicts, the comparison table, exponent tables, interval text."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from replicate.paper import HEADLINE, paper_laws

UNINFORMATIVE_WIDTH = 0.2  # an interval wider than this and than twice the paper's |value| decides nothing


def verdict(ours: float, ci: list[float] | None, paper: float) -> str:
    """'uninformative' when our 95% interval is wider than twice the paper's |value| (and than 0.2): it
    would contain nearly any answer; else 'agrees' when the paper's value lies in it; 'same sign' when it
    excludes zero on the paper's side; 'disagrees' when it excludes zero on the other side; 'inconclusive'
    otherwise."""
    if ci is None or not all(np.isfinite(ci)):
        return "no interval"
    lo, hi = ci
    if hi - lo > max(2 * abs(paper), UNINFORMATIVE_WIDTH):
        return "uninformative"
    if lo <= paper <= hi:
        return "agrees"
    if lo > 0 or hi < 0:
        return "same sign" if (lo > 0) == (paper > 0) else "disagrees"
    return "inconclusive"


def fmt_ci(ci: list[float] | None, digits: int = 3) -> str:
    if ci is None or not all(v is not None and np.isfinite(v) for v in ci):
        return "-"
    return f"[{ci[0]:.{digits}g}, {ci[1]:.{digits}g}]"


def worst_holdout_error(fit: dict) -> float | None:
    """The largest |relative error| of the loss law's held-out predictions; None without any."""
    errors = [abs(h["rel_error"]) for h in fit.get("holdout", []) if h.get("rel_error") is not None]
    return max(errors) if errors else None


def comparison(fit: dict) -> pd.DataFrame:
    """Every headline result next to the paper's: value, 95% CI, paper value, verdict."""
    paper = paper_laws()
    rows = []

    def exponent(label: str, law: str, key: str, paper_value: float) -> None:
        part = fit.get(law)
        if not part or part.get(key) is None or not np.isfinite(part[key]):
            rows.append((label, math.nan, "-", paper_value, "not fitted"))
            return
        ci = part.get("ci95", {}).get(key)
        rows.append((label, part[key], fmt_ci(ci), paper_value, verdict(part[key], ci, paper_value)))

    exponent("B_opt exponent in T (beta_B)", "batch_size_law", "exp_tokens", paper["batch_size_law"]["exp_tokens"])
    exponent("B_opt exponent in N (gamma_B)", "batch_size_law", "exp_params", paper["batch_size_law"]["exp_params"])
    exponent("eta_opt exponent in T (beta_eta)", "lr_law", "exp_tokens", paper["lr_law"]["exp_tokens"])
    exponent("eta_opt exponent in N (gamma_eta)", "lr_law", "exp_params", paper["lr_law"]["exp_params"])
    exponent("loss exponent in T (alpha_T)", "loss_law", "alpha_tokens", paper["loss_law"]["alpha_tokens"])
    exponent("loss exponent in N (alpha_N)", "loss_law", "alpha_params", paper["loss_law"]["alpha_params"])
    law = fit["compute_law"]
    rows.append(
        (
            f"N_opt exponent in C ({law['flops']} FLOPs, from the loss law)",
            law["exp"],
            fmt_ci(law.get("ci95", {}).get("exp")),
            paper["compute_law_from_loss"]["exp"],
            verdict(law["exp"], law.get("ci95", {}).get("exp"), paper["compute_law_from_loss"]["exp"]),
        )
    )
    iso = law.get("isoflop")
    rows.append(
        (
            "N_opt exponent in C (IsoFLOP, empirical)",
            iso["exp"] if iso else math.nan,
            "-",
            paper["compute_law_empirical"]["exp"],
            "no interval" if iso else "not fitted",
        )
    )
    fixed = fit.get("fixed") or {}
    ratio = fixed.get("n_opt_ratio")
    paper_ratio = HEADLINE["n_opt_1e22_fixed"] / HEADLINE["n_opt_1e22_optimal"]
    if ratio is None:
        rows.append(("N_opt(fixed hp) / N_opt(optimal hp) at 1e22 FLOPs", math.nan, "-", paper_ratio, "not fitted"))
    else:
        ci = fixed.get("n_opt_ratio_ci95")
        same_side = ci is not None and all(np.isfinite(ci)) and (ci[0] > 1 or ci[1] < 1)
        word = verdict(ratio, ci, paper_ratio)
        if word not in ("agrees", "no interval", "uninformative") and same_side:
            word = "same direction" if (ci[0] > 1) == (paper_ratio > 1) else "opposite direction"
        rows.append(("N_opt(fixed hp) / N_opt(optimal hp) at 1e22 FLOPs", ratio, fmt_ci(ci), paper_ratio, word))
    mse_opt, mse_fixed = fit["loss_law"].get("mse"), (fixed.get("loss_law") or {}).get("mse")
    if mse_opt and mse_fixed:
        paper_mse = HEADLINE["mse_fixed"] / HEADLINE["mse_optimal"]
        rows.append(
            (
                "loss-fit MSE, fixed / optimal hp",
                mse_fixed / mse_opt,
                "-",
                paper_mse,
                "same direction" if (mse_fixed > mse_opt) == (paper_mse > 1) else "opposite direction",
            )
        )
    worst = worst_holdout_error(fit)
    if worst is not None:
        rows.append(
            (
                "held-out loss, worst |relative error|",
                worst,
                "-",
                max(HEADLINE["holdout_rel_error"]),
                "within 1%" if worst <= 0.01 else "above 1%",
            )
        )
    flat = fit.get("flat_region") or []
    if flat:
        rise = max(max(f["rel_increase"]["0.7"], f["rel_increase"]["1.3"]) for f in flat)
        rows.append(
            (
                "loss increase at +-30% N, fixed C (largest)",
                rise,
                "-",
                HEADLINE["flat_region"],
                "flat (< 1%)" if rise < 0.01 else "not flat",
            )
        )
    return pd.DataFrame(rows, columns=["quantity", "ours", "95% CI", "paper", "verdict"])


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


def fitted_exponent(fit: dict, law: str, key: str) -> tuple[float, list[float] | None]:
    """One fitted exponent and its 95% interval (NaN and None where the fit has no such law)."""
    part = fit.get(law) or {}
    ci = part.get("ci95")
    return part.get(key, math.nan), (ci.get(key) if isinstance(ci, dict) else ci)


def exponent_table(fits: dict[str, dict]) -> pd.DataFrame:
    """Every fitted exponent of several fits side by side (columns named by the keys of `fits`), with the
    paper's: e.g. two evaluation protocols of one sweep, or two sweeps of the same runs."""
    paper = paper_laws()
    rows = []
    for law, key, label in EXPONENTS:
        row = {"quantity": label, "paper": paper.get(law, {}).get(key, math.nan)}  # the paper fits no eta(B) law
        for name, f in fits.items():
            row[name], ci = fitted_exponent(f, law, key)
            row[f"{name} 95% CI"] = fmt_ci(ci)
        rows.append(row)
    return pd.DataFrame(rows)


def ci_text(ci: list[float] | None) -> str:
    """` [lo, hi]` after a value in a sentence; nothing without an interval."""
    text = fmt_ci(ci)
    return "" if text == "-" else f" {text}"
