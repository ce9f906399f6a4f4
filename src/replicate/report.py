"""What the book shows: a study's results loaded, compared with the paper, and tabulated.

Pure pandas and numpy (plots live in :mod:`replicate.plots`). The paper's numbers come from REPLICATION.md
through :func:`replicate.fit.paper_laws` and the headline figures below.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from replicate.fit import hyperparameter_law, paper_laws

# The video paper's headline results (REPLICATION.md section 3)
PAPER = {
    "holdout_rel_error": (0.0003, 0.0015),  # loss-law extrapolation: (1.07B, 10B tokens), (0.72B, 140B tokens)
    "mse_fixed": 4.31e-7,
    "mse_optimal": 2.35e-7,
    "n_opt_1e22_optimal": 2.43e9,
    "n_opt_1e22_fixed": 4.04e9,
    "flat_region": 0.01,  # +-30% model size at fixed compute costs less than 1% loss
}


@dataclass
class Study:
    """One results directory: runs.csv, fit.json and the profile that produced them."""

    path: Path
    runs: pd.DataFrame
    fit: dict | None
    profile: str
    fit_ema: dict | None = None  # the same runs fitted on their EMA weights' loss

    @property
    def name(self) -> str:
        return self.path.name


def load_study(path: str | Path) -> Study | None:
    """The study in `path`, or None where it has no runs table yet."""
    path = Path(path)
    if not (path / "runs.csv").is_file():
        return None
    profile = (path / "profile.toml").read_text() if (path / "profile.toml").is_file() else ""
    return Study(path, pd.read_csv(path / "runs.csv"), load_json(path / "fit.json"), profile,
                 load_json(path / "fit_ema.json"))


def load_json(path: str | Path) -> dict | None:
    path = Path(path)
    return json.loads(path.read_text()) if path.is_file() else None


UNINFORMATIVE_WIDTH = 0.2  # an interval wider than this and than twice the paper's |value| decides nothing


def _verdict(ours: float, ci: list[float] | None, paper: float) -> str:
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


def _fmt_ci(ci: list[float] | None, digits: int = 3) -> str:
    if ci is None or not all(v is not None and np.isfinite(v) for v in ci):
        return "-"
    return f"[{ci[0]:.{digits}g}, {ci[1]:.{digits}g}]"


def _worst_holdout_error(fit: dict) -> float | None:
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
        rows.append((label, part[key], _fmt_ci(ci), paper_value, _verdict(part[key], ci, paper_value)))

    exponent("B_opt exponent in T (beta_B)", "batch_size_law", "exp_tokens", paper["batch_size_law"]["exp_tokens"])
    exponent("B_opt exponent in N (gamma_B)", "batch_size_law", "exp_params", paper["batch_size_law"]["exp_params"])
    exponent("eta_opt exponent in T (beta_eta)", "lr_law", "exp_tokens", paper["lr_law"]["exp_tokens"])
    exponent("eta_opt exponent in N (gamma_eta)", "lr_law", "exp_params", paper["lr_law"]["exp_params"])
    exponent("loss exponent in T (alpha_T)", "loss_law", "alpha_tokens", paper["loss_law"]["alpha_tokens"])
    exponent("loss exponent in N (alpha_N)", "loss_law", "alpha_params", paper["loss_law"]["alpha_params"])
    law = fit["compute_law"]
    rows.append((f"N_opt exponent in C ({law['flops']} FLOPs, from the loss law)", law["exp"],
                 _fmt_ci(law.get("ci95", {}).get("exp")), paper["compute_law_from_loss"]["exp"],
                 _verdict(law["exp"], law.get("ci95", {}).get("exp"), paper["compute_law_from_loss"]["exp"])))
    iso = law.get("isoflop")
    rows.append(("N_opt exponent in C (IsoFLOP, empirical)", iso["exp"] if iso else math.nan, "-",
                 paper["compute_law_empirical"]["exp"], "no interval" if iso else "not fitted"))
    fixed = fit.get("fixed") or {}
    ratio = fixed.get("n_opt_ratio")
    paper_ratio = PAPER["n_opt_1e22_fixed"] / PAPER["n_opt_1e22_optimal"]
    if ratio is None:
        rows.append(("N_opt(fixed hp) / N_opt(optimal hp) at 1e22 FLOPs", math.nan, "-", paper_ratio, "not fitted"))
    else:
        ci = fixed.get("n_opt_ratio_ci95")
        same_side = ci is not None and all(np.isfinite(ci)) and (ci[0] > 1 or ci[1] < 1)
        verdict = _verdict(ratio, ci, paper_ratio)
        if verdict not in ("agrees", "no interval", "uninformative") and same_side:
            verdict = "same direction" if (ci[0] > 1) == (paper_ratio > 1) else "opposite direction"
        rows.append(("N_opt(fixed hp) / N_opt(optimal hp) at 1e22 FLOPs", ratio, _fmt_ci(ci), paper_ratio, verdict))
    mse_opt, mse_fixed = fit["loss_law"].get("mse"), (fixed.get("loss_law") or {}).get("mse")
    if mse_opt and mse_fixed:
        paper_mse = PAPER["mse_fixed"] / PAPER["mse_optimal"]
        rows.append(("loss-fit MSE, fixed / optimal hp", mse_fixed / mse_opt, "-", paper_mse,
                     "same direction" if (mse_fixed > mse_opt) == (paper_mse > 1) else "opposite direction"))
    worst = _worst_holdout_error(fit)
    if worst is not None:
        rows.append(("held-out loss, worst |relative error|", worst, "-", max(PAPER["holdout_rel_error"]),
                     "within 1%" if worst <= 0.01 else "above 1%"))
    flat = fit.get("flat_region") or []
    if flat:
        rise = max(max(f["rel_increase"]["0.7"], f["rel_increase"]["1.3"]) for f in flat)
        rows.append(("loss increase at +-30% N, fixed C (largest)", rise, "-", PAPER["flat_region"],
                     "flat (< 1%)" if rise < 0.01 else "not flat"))
    return pd.DataFrame(rows, columns=["quantity", "ours", "95% CI", "paper", "verdict"])


def heatmap(runs: pd.DataFrame, n_params: float, tokens: float) -> pd.DataFrame:
    """Validation loss at one (N, T) over the (batch size, lr) grid: rows batch size (tokens per step),
    columns lr; NaN where the run diverged."""
    cell = runs[(runs["n_params"] == n_params) & (runs["tokens"] == tokens)]
    return cell.pivot_table(index="batch_size", columns="lr", values="val_loss", aggfunc="mean", dropna=False)


def neighbourhood_spread(grid: pd.DataFrame) -> float:
    """The loss spread (%) over the best cell of a heat map and its neighbours one grid step away."""
    values = grid.to_numpy(dtype=float)
    i, j = np.unravel_index(np.nanargmin(values), values.shape)
    block = values[max(i - 1, 0):i + 2, max(j - 1, 0):j + 2]
    return float(100 * (np.nanmax(block) / np.nanmin(block) - 1))


def grid_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per model of a sweep: shape, N, role, and the grid it was trained on."""
    rows = []
    for (n, role), g in runs.groupby(["n_params", "role"]):
        first = g.iloc[0]
        rows.append({"role": role, "width": first["width"], "depth": first["depth"], "heads": first["heads"],
                     "N": int(n), "tokens per clip": first["tokens_per_sample"],
                     "batch sizes (clips)": ", ".join(str(b) for b in sorted(g["batch_samples"].unique())),
                     "learning rates": ", ".join(f"{v:g}" for v in sorted(g["lr"].unique())),
                     "tokens": f"{g['tokens'].min():,} - {g['tokens'].max():,}", "runs": g["run_id"].nunique()})
    return pd.DataFrame(rows).sort_values(["role", "N"]).reset_index(drop=True)


def provenance_table(paths: list[Path]) -> pd.DataFrame:
    """Where each result file came from: rows, device(s), library versions and git commits."""
    rows = []
    for path in paths:
        if path.suffix in (".csv", ".jsonl") and path.is_file():
            df = pd.read_csv(path) if path.suffix == ".csv" else pd.read_json(path, lines=True)
            if "device" in df:
                rows.append({"file": str(path), "rows": len(df), "device": "; ".join(df["device"].unique()),
                             "torch": ", ".join(df["torch"].astype(str).unique()),
                             "triton": ", ".join(df["triton"].astype(str).unique()),
                             "git": ", ".join(df["git_sha"].astype(str).unique())})
        elif path.suffix == ".json" and path.is_file():
            data = json.loads(path.read_text())
            prov = data.get("provenance", data) if isinstance(data, dict) else (data[0] if data else {})
            rows.append({"file": str(path), "rows": None, "device": prov.get("device", "-"),
                         "torch": prov.get("torch", "-"), "triton": prov.get("triton", "-"),
                         "git": prov.get("git_sha", "-")})
    return pd.DataFrame(rows)


def paper_box(lines: list[str], title: str = "Compared with the paper") -> str:
    """A MyST admonition (rendered from a notebook's Markdown output) with one bullet per line."""
    body = "\n".join(f"- {line}" for line in lines)
    return f":::{{admonition}} {title}\n:class: note\n{body}\n:::\n"


def verdict_lines(table: pd.DataFrame, quantities: list[str]) -> list[str]:
    """Sentences for the rows of a comparison() table whose quantity starts with one of `quantities`."""
    lines = []
    for _, row in table.iterrows():
        if any(row["quantity"].startswith(q) for q in quantities):
            ours = "not fitted" if not np.isfinite(row["ours"]) else f"{row['ours']:.4g}"
            ci = "" if row["95% CI"] == "-" else f" (95% CI {row['95% CI']})"
            lines.append(f"{row['quantity']}: ours {ours}{ci}, paper {row['paper']:.4g}: **{row['verdict']}**")
    return lines


def table(df: pd.DataFrame, digits: int = 4):
    """A DataFrame as the book shows it: no index column, floats to `digits` significant digits, missing
    values (None, NaN) as '-'."""
    return df.style.hide(axis="index").format(
        lambda v: "-" if v is None or (isinstance(v, float) and math.isnan(v))
        else (f"{v:.{digits}g}" if isinstance(v, float) else v))


def hide_parameters(notebook: str | Path) -> None:
    """Tag an executed notebook's parameter cells (the source's and papermill's injected one) "remove-cell",
    so that the book shows neither."""
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    for cell in nb.cells:
        tags = cell.metadata.setdefault("tags", [])
        if {"parameters", "injected-parameters"} & set(tags) and "remove-cell" not in tags:
            tags.append("remove-cell")
    nbformat.write(nb, notebook)


# (fit.json law, key, label) of every fitted exponent
_EXPONENTS = (("batch_size_law", "exp_tokens", "B_opt exponent in T"),
             ("batch_size_law", "exp_params", "B_opt exponent in N"),
             ("lr_law", "exp_tokens", "eta_opt exponent in T"),
             ("lr_law", "exp_params", "eta_opt exponent in N"),
             ("loss_law", "alpha_tokens", "loss exponent in T"),
             ("loss_law", "alpha_params", "loss exponent in N"),
             ("lr_batch_exponent", "value", "eta_opt exponent in B at fixed (N, T)"))


def _exponent(fit: dict, law: str, key: str) -> tuple[float, list[float] | None]:
    """One fitted exponent and its 95% interval (NaN and None where the fit has no such law)."""
    part = fit.get(law) or {}
    ci = part.get("ci95")
    return part.get(key, math.nan), (ci.get(key) if isinstance(ci, dict) else ci)


def exponent_table(fits: dict[str, dict]) -> pd.DataFrame:
    """Every fitted exponent of several fits side by side (columns named by the keys of `fits`), with the
    paper's: e.g. two evaluation protocols of one sweep, or two sweeps of the same runs."""
    paper = paper_laws()
    rows = []
    for law, key, label in _EXPONENTS:
        row = {"quantity": label, "paper": paper.get(law, {}).get(key, math.nan)}  # the paper fits no eta(B) law
        for name, f in fits.items():
            row[name], ci = _exponent(f, law, key)
            row[f"{name} 95% CI"] = _fmt_ci(ci)
        rows.append(row)
    return pd.DataFrame(rows)


def _ci_text(ci: list[float] | None) -> str:
    """` [lo, hi]` after a value in a sentence; nothing without an interval."""
    text = _fmt_ci(ci)
    return "" if text == "-" else f" {text}"


def summary_lines(fit: dict, line_search: dict | None = None) -> list[str]:
    """The study's findings in sentences, from fit.json (and the theory's line_search.json results), with
    95% intervals in brackets: what the book's introduction says plainly."""
    paper = paper_laws()
    optima = pd.DataFrame(fit["optima"])
    lines = []
    if "edge" in optima and optima["batch_size"].notna().any():
        on_b = optima["edge"].fillna("").str.contains("batch_size")
        predicted = hyperparameter_law(optima["tokens"], optima["n_params"], **paper["batch_size_law"])
        b = optima["batch_size"]
        ends = [f"all at {b.min():.0f} tokens"] if b.min() == b.max() else [
            f"{n} at its {end} batch, {edge:.0f} tokens" for end, edge in (("smallest", b.min()), ("largest", b.max()))
            if (n := int((on_b & (b == edge)).sum()))]
        lines.append(f"B_opt: {int(on_b.sum())} of {len(optima)} (N, T) optima sit on the batch-size edge of the "
                     f"grid ({'; '.join(ends)}), so our B_opt law is not "
                     f"a measurement. The paper's law itself puts B_opt at {predicted.min():.0f} to "
                     f"{predicted.max():.0f} tokens at our (N, T).")
    slope = fit.get("lr_batch_exponent")
    if slope and slope.get("value") is not None:
        lines.append(f"eta_opt follows the batch size as B^{slope['value']:.2f}{_ci_text(slope.get('ci95'))}: "
                     "along that ridge the loss changes by a few percent at most (the hyperparameter chapter).")
    law = fit["loss_law"]
    ci = law.get("ci95", {})
    p = paper["loss_law"]
    lines.append(f"Loss law at the optima: alpha_T = {law['alpha_tokens']:.3f}{_ci_text(ci.get('alpha_tokens'))} "
                 f"(paper {p['alpha_tokens']}), alpha_N = {law['alpha_params']:.3f}"
                 f"{_ci_text(ci.get('alpha_params'))} (paper {p['alpha_params']})"
                 + ("; the irreducible term L_inf fits to zero." if law.get("l_inf_at_zero") else
                    f"; L_inf = {law['l_inf']:.4g}."))
    fixed = fit.get("fixed") or {}
    if fixed.get("n_opt_ratio") is not None:
        lines.append(f"Fixed vs optimal hyperparameters: N_opt ratio {fixed['n_opt_ratio']:.3g}"
                     f"{_ci_text(fixed.get('n_opt_ratio_ci95'))} at {fixed['reference_flops']:.0e} FLOPs "
                     f"(paper {PAPER['n_opt_1e22_fixed'] / PAPER['n_opt_1e22_optimal']:.3g}); loss-fit MSE "
                     f"{fixed['loss_law']['mse']:.3g} fixed vs {law['mse']:.3g} optimal (paper 4.31e-7 vs 2.35e-7).")
    worst = _worst_holdout_error(fit)
    if worst is not None:
        lines.append(f"Held-out model: the loss law predicts its best loss within {100 * worst:.1f}% at "
                     f"every checkpoint (paper: 0.03% and 0.15%).")
    if line_search:
        ratio = [r["eta_best_measured"] / r["eta_opt_predicted"] for r in line_search["rows"]]
        lines.append(f"SGD theory: on the Video DiT the measured best one-step SGD learning rate matches "
                     f"eta_opt(B) = eta_max / (1 + B_noise / B) within {100 * max(abs(r - 1) for r in ratio):.0f}% "
                     f"at {len(ratio)} batch sizes (B_noise = {line_search['noise']['b_noise']['value']:.3g} clips).")
    return lines


def _matched(first: pd.DataFrame, second: pd.DataFrame) -> pd.DataFrame:
    """The rows of two sweeps with the same run id and tokens side by side (suffix _2), with |relative
    difference| of their losses in `rel_diff` (NaN where either diverged)."""
    keys = ["run_id", "tokens"]
    both = first.merge(second[[*keys, "val_loss", "diverged"]], on=keys, suffixes=("", "_2"))
    both["rel_diff"] = (both["val_loss_2"] / both["val_loss"] - 1).abs()
    return both


def identical_rows(first: pd.DataFrame, second: pd.DataFrame,
                   columns: tuple[str, ...] = ("val_loss", "val_loss_ema")) -> tuple[int, int]:
    """How many run x checkpoint rows of two sweeps (matched by run id and tokens) agree bit for bit in every
    one of `columns` (a missing value matching a missing one), out of how many rows both sweeps have."""
    keys = ["run_id", "tokens"]
    both = first[[*keys, *columns]].merge(second[[*keys, *columns]], on=keys, suffixes=("", "_2"))
    same = np.ones(len(both), dtype=bool)
    for c in columns:
        a, b = both[c].to_numpy(dtype=float), both[f"{c}_2"].to_numpy(dtype=float)
        same &= (a == b) | (np.isnan(a) & np.isnan(b))
    return int(same.sum()), len(both)


def rerun_spread(first: pd.DataFrame, second: pd.DataFrame) -> pd.DataFrame:
    """Median |relative difference| (%) of two sweeps' losses per learning rate (rows) and model (columns)."""
    both = _matched(first, second)
    return both.pivot_table(index="lr", columns="n_params", values="rel_diff", aggfunc="median").mul(100)


def rerun_agreement(first: pd.DataFrame, second: pd.DataFrame) -> pd.DataFrame:
    """Two sweeps of the same runs (matched by run id) compared, one row per model: how far their losses
    differ (|relative difference| over the run x checkpoint rows that neither lost to divergence), at how many
    (N, T) the best (batch size, lr) cell and the best batch size agree (only (N, T) that both have in full).
    """
    both = _matched(first, second)
    rows = []
    for n, g in both.groupby("n_params"):
        ok = g[~g["diverged"] & ~g["diverged_2"]]
        rel = ok["rel_diff"]
        cells = same_cell = same_batch = 0
        for t, c in ok.groupby("tokens"):
            if len(c) < ((first["n_params"] == n) & (first["tokens"] == t) & ~first["diverged"]).sum():
                continue  # a cell that one sweep has not finished, or lost to divergence
            a, b = c.loc[c["val_loss"].idxmin()], c.loc[c["val_loss_2"].idxmin()]
            cells, same_cell, same_batch = (cells + 1, same_cell + (a["run_id"] == b["run_id"]),
                                            same_batch + (a["batch_size"] == b["batch_size"]))
        last = g[g["tokens"] == g["tokens"].max()]
        rows.append({"N": int(n), "runs": g["run_id"].nunique(), "median |dL/L| (%)": 100 * rel.median(),
                     "max |dL/L| (%)": 100 * rel.max(),
                     "runs diverged in one only": int((last["diverged"] != last["diverged_2"]).sum()),
                     "(N, T) compared": cells, "same best cell": int(same_cell), "same best batch": int(same_batch)})
    return pd.DataFrame(rows)


def rerun_fit_sentence(first: dict, second: dict) -> str:
    """How far each fitted exponent moved between the fits of two sweeps of the same runs, beside the width of
    their 95% intervals, and which point estimates fall outside their own interval (where the percentile
    bootstrap cannot be trusted)."""
    moves, outside = [], []
    for law, key, label in _EXPONENTS:
        (a, ci_a), (b, ci_b) = _exponent(first, law, key), _exponent(second, law, key)
        widths = [ci[1] - ci[0] for ci in (ci_a, ci_b) if ci]
        moves.append(f"{label} {a:.3g} -> {b:.3g}" + (f" (intervals {np.mean(widths):.2g} wide)" if widths else ""))
        outside += [f"{label} in the {name} fit" for name, value, ci in (("first", a, ci_a), ("second", b, ci_b))
                    if ci and not ci[0] <= value <= ci[1]]
    text = "From the first sweep's fit to the second's: " + "; ".join(moves) + "."
    if outside:
        text += (" Outside their own 95% interval: " + ", ".join(outside) + " (few bootstrap resamples land where"
                 " the full data does, so that interval is not to be trusted).")
    return text


def rerun_sentence(agreement: pd.DataFrame) -> str:
    """rerun_agreement's table in one sentence."""
    a = agreement
    med = a["median |dL/L| (%)"]
    return (f"Over {a['runs'].sum()} runs of {len(a)} model size(s) the two sweeps' losses differ by a median of "
            f"{med.min():.2f}% to {med.max():.2f}% per size (at most {a['max |dL/L| (%)'].max():.1f}%); the best "
            f"(B, lr) cell is the same at {a['same best cell'].sum()} of {a['(N, T) compared'].sum()} (N, T), the best "
            f"batch size at {a['same best batch'].sum()}; {a['runs diverged in one only'].sum()} run(s) diverged "
            f"in one sweep only.")


if __name__ == "__main__":  # make book: python -m replicate.report NOTEBOOK.ipynb
    import sys

    hide_parameters(sys.argv[1])

