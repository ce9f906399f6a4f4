"""Where a study's optima lie: the best cell of each (N, T) grid beside the interpolated optimum the laws stand on,
whether a hyperparameter law is identified at all, the landscapes the sweep chapter draws, and the IsoFLOP
budgets' lowest sizes beside the published exponents of N_opt(C) (runs.csv, fit.json)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from replicate.fit import FlopsPerToken, compute_optimal_size, isoflop_losses, percentile_interval
from replicate.fit.laws import LOSS_PARAMS
from replicate.fit.read import FitDocument, law_samples
from replicate.paper import COMPUTE_LAW_EMPIRICAL
from replicate.published import FIXED_HP_N_OPT_EXPONENT
from replicate.report.tables import heatmap, neighbourhood_spread


def best_cells(runs: pd.DataFrame) -> pd.DataFrame:
    """The lowest-loss (B, lr) cell of every (N, T) of the fitting runs (mean over seeds), one row each."""
    fit = runs[(runs["role"] == "fit") & ~runs["diverged"]]
    cells = fit.groupby(["n_params", "tokens", "batch_size", "lr"], as_index=False)["val_loss"].mean()
    return cells.loc[cells.groupby(["n_params", "tokens"])["val_loss"].idxmin()].reset_index(drop=True)


def optima_frame(runs: pd.DataFrame, fit: FitDocument) -> pd.DataFrame:
    """Per (N, T): the grid's best cell and the interpolated optimum of fit.json (`replicate.fit.grid_optima`),
    how far apart they are in doublings of B and of lr, and how much lower the interpolated loss is (numbers)."""
    both = best_cells(runs).merge(pd.DataFrame(fit["optima"]), on=["n_params", "tokens"], suffixes=("_cell", ""))
    return both.assign(
        # rounded: a shift of 1e-16 doublings is the same cell, not a result
        moved_batch=np.log2(both["batch_size"] / both["batch_size_cell"]).round(2) + 0.0,
        moved_lr=np.log2(both["lr"] / both["lr_cell"]).round(2) + 0.0,
        gain_pct=(100 * (1 - both["val_loss"] / both["val_loss_cell"])).clip(0).round(3),
    )


def optima_table(runs: pd.DataFrame, fit: FitDocument) -> pd.DataFrame:
    """optima_frame as the book shows it: (B in tokens, lr) pairs in single columns, so that it fits the page."""
    f = optima_frame(runs, fit)
    return pd.DataFrame(
        {
            "N": f["n_params"].astype(int),
            "T": f["tokens"].astype(int),
            "best cell (B in tokens, lr)": [
                f"{b:.0f}, {lr:.3g}" for b, lr in zip(f["batch_size_cell"], f["lr_cell"], strict=True)
            ],
            "interpolated (B in tokens, lr)": [
                f"{b:.0f}, {lr:.3g}" for b, lr in zip(f["batch_size"], f["lr"], strict=True)
            ],
            "moved (doublings of B, lr)": [
                f"{b:g}, {lr:g}" for b, lr in zip(f["moved_batch"], f["moved_lr"], strict=True)
            ],
            "loss below the cell (%)": f["gain_pct"],
            "on an edge": _edge_ends(runs, f),
        }
    )


def _edge_ends(runs: pd.DataFrame, frame: pd.DataFrame) -> list[str]:
    """Per optimum of optima_frame, which end of its grid it sits on ("smallest B", "highest lr", ...; "-" for
    none): fit.json names the axis only, and an optimum on the largest batch means something else than one on the
    smallest."""
    fit = runs[runs["role"] == "fit"]
    ends = []
    for _, o in frame.iterrows():
        grid = fit[fit["n_params"] == o["n_params"]]
        rates = grid.loc[grid["batch_size"] == o["batch_size_cell"], "lr"]
        words = []
        if "batch_size" in (o["edge"] or ""):
            words.append("smallest B" if o["batch_size"] <= grid["batch_size"].min() else "largest B")
        if "lr" in (o["edge"] or "").split(","):
            words.append("lowest lr" if o["lr"] <= rates.min() else "highest lr")
        ends.append(", ".join(words) or "-")
    return ends


def optima_sentence(runs: pd.DataFrame, fit: FitDocument) -> str:
    """optima_frame in words: how often the interpolated optimum leaves its best cell, and why it may."""
    f = optima_frame(runs, fit)
    moved_b, moved_lr = f["moved_batch"].abs() > 0.5, f["moved_lr"].abs() > 0.5
    return (
        f"The interpolated optimum lies more than half a grid step from the best cell in B at {int(moved_b.sum())} "
        f"of {len(f)} (N, T) and in lr at {int(moved_lr.sum())}; the interpolated loss is {f['gain_pct'].min():.2f}% "
        f"to {f['gain_pct'].max():.2f}% below the best cell's. The two differ by construction: the interpolation "
        "first finds each batch size's best loss between the grid's learning rates (a parabola in log lr through its "
        "best cell and their neighbours), then compares batch sizes at those interpolated losses, not at the cells. "
        "Along B the loss changes little near its best cells, so a batch size whose own best cell is a few tenths "
        "of a percent worse can win once its learning rate is interpolated, and the star then lands on another row. "
        "Every B_opt and eta_opt law below stands on the interpolated optima; the best cells are the grid's raw "
        "answer."
    )


def law_identified(fit: FitDocument, key: str) -> bool:
    """Whether the optima a hyperparameter law (key "batch_size" or "lr") was fitted to vary at all: where all of
    them sit on one grid value, its exponents are zero up to rounding and identify nothing."""
    optima = pd.DataFrame(fit.get("optima") or [])
    if key not in optima or not len(optima):
        return False
    used = optima["used"].astype(bool) if "used" in optima else pd.Series(True, index=optima.index)
    values = optima.loc[used, key].to_numpy(dtype=float)
    values = values[np.isfinite(values)]
    return len(values) > 1 and not np.allclose(values, values[0], rtol=1e-9, atol=0)


def isoflop_budgets(fit: FitDocument, convention: str) -> pd.DataFrame:
    """Each compute budget (FLOPs of `convention`) that two or more sizes' optima reach: their losses there (read
    off each size's curve, never extrapolated: replicate.fit.isoflop_losses), which is lowest, and whether that is
    the smallest size reaching the budget."""
    optima = pd.DataFrame(fit["optima"])
    optima = optima[np.isfinite(optima["val_loss"])]
    fpt = FlopsPerToken(**fit["compute_laws"][convention]["flops_per_token"])
    sizes, budgets, table = isoflop_losses(optima["n_params"], optima["tokens"], optima["val_loss"], fpt)
    rows = []
    for j, c in enumerate(budgets):
        ok = np.isfinite(table[:, j])
        if ok.sum() < 2:
            continue
        n, loss = sizes[ok], table[ok, j]
        for size, value in zip(n, loss, strict=True):
            rows.append(
                {
                    "flops": float(c),
                    "n_params": float(size),
                    "val_loss": float(value),
                    "lowest": bool(value == loss.min()),
                    "smallest_reaching": bool(size == n.min()),
                }
            )
    return pd.DataFrame(rows, columns=["flops", "n_params", "val_loss", "lowest", "smallest_reaching"])


def _isoflop_n_opt(fit: FitDocument, convention: str, flops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The loss law's N_opt (the book's definition) at `flops` counted in `convention`, and the upper end of its
    95% bootstrap interval at each (NaN without resamples)."""
    fpt = FlopsPerToken(**fit["compute_laws"][convention]["flops_per_token"])
    draws = np.array([compute_optimal_size(law, flops, fpt)[0] for law in law_samples(fit, "loss_law")])
    bounds = [percentile_interval(column) for column in draws.T] if len(draws) else []
    high = np.array([b[1] if b else np.nan for b in bounds]) if bounds else np.full(len(flops), np.nan)
    return compute_optimal_size({k: fit["loss_law"][k] for k in LOSS_PARAMS}, flops, fpt)[0], high


MARGIN = "by (the second-lowest loss above it)"  # isoflop_summary's column: how far the lowest loss is lowest
BELOW = "loss law's N_opt below the smallest size reaching it"  # isoflop_summary's counts of budgets
INTERVAL_BELOW = "its 95% CI's upper end too"


def isoflop_summary(fit: FitDocument) -> pd.DataFrame:
    """One row per FLOP convention: the budgets two and three sizes reach, at how many the smallest size that
    reaches a budget has its lowest loss and by how much (the second-lowest loss above it, smallest to largest
    over the budgets), the vertices inside the sizes, and the loss law's N_opt over those budgets (the book's
    definition): at how many budgets it, and the upper end of its 95% interval, lie below the smallest size
    reaching the budget."""
    trained = pd.DataFrame(fit["optima"])["n_params"]
    rows = []
    for conv, part in fit["compute_laws"].items():
        table = isoflop_budgets(fit, conv)
        per = table.groupby("flops")
        wins = per.apply(lambda g: bool(g.loc[g["lowest"], "smallest_reaching"].any()), include_groups=False)
        margin = per["val_loss"].apply(lambda v: np.sort(v.to_numpy())[1] / v.min() - 1)
        smallest = per["n_params"].min().to_numpy()  # by budget, in the order of `flops` below
        n_opt, high = _isoflop_n_opt(fit, conv, per["n_params"].min().index.to_numpy(float))
        rows.append(
            {
                "FLOPs": conv,
                "budgets reached by >= 2 sizes": len(wins),
                "by >= 3 sizes": int((per.size() >= 3).sum()),
                "smallest size reaching it is best": int(wins.sum()),
                MARGIN: (f"{100 * margin.min():.1f} to {100 * margin.max():.1f}%" if len(margin) else "-"),
                "vertices inside the sizes": len((part.get("isoflop") or {}).get("budgets", [])),
                "loss law's N_opt there": f"{n_opt.min():,.0f} to {n_opt.max():,.0f}" if len(n_opt) else "-",
                BELOW: int((n_opt < smallest).sum()),
                INTERVAL_BELOW: int((high < smallest).sum()),  # NaN (no resamples) counts as not below
                "trained sizes": f"{trained.min():,.0f} to {trained.max():,.0f}",
            }
        )
    return pd.DataFrame(rows)


def isoflop_sentence(summary: pd.DataFrame) -> str:
    """What isoflop_summary's table means for where N_opt lies. A lowest loss at the smallest of the sizes that
    reach a budget places N_opt below the next size up (for a loss convex in log N), not below the smallest:
    the minimum may lie between the two."""
    budgets = summary["budgets reached by >= 2 sizes"]
    everywhere = bool((summary["smallest size reaching it is best"] == budgets).all())
    vertices = int(summary["vertices inside the sizes"].sum())
    if not (everywhere and not vertices):
        return (
            f"{vertices} budget(s) have a vertex inside the sizes; at the others the lowest loss sits at an end of "
            "the sizes that reach them, which bounds N_opt rather than locating it."
        )
    first = summary.iloc[0]
    short = summary[summary[INTERVAL_BELOW] < budgets]
    if short.empty:
        law = (
            "The loss law's N_opt at every budget lies below the smallest size that reaches it, and so does the "
            "upper end of its 95% interval: an extrapolation of the law (chapter 7), which points the same way."
        )
    elif (summary[BELOW] == budgets).all():
        counts = ", ".join(
            f"{int(row[INTERVAL_BELOW])} of {int(row['budgets reached by >= 2 sizes'])} ({row['FLOPs']} FLOPs)"
            for _, row in short.iterrows()
        )
        law = (
            "The loss law's N_opt at every budget lies below the smallest size that reaches it, but the upper end "
            f"of its 95% interval does so at only {counts}: elsewhere the law does not decide it."
        )
    else:
        law = "The loss law's N_opt is not below the smallest size reaching every budget (the table)."
    three = summary["by >= 3 sizes"]
    reached = f"{three.min()}" if three.min() == three.max() else f"{three.min()} to {three.max()}"
    return (
        "At every budget that two or more sizes reach, the smallest of them has the lowest loss, by "
        f"{first[MARGIN]} ({first['FLOPs']} FLOPs: the second-lowest loss is that much higher): at fixed compute "
        "the loss falls toward smaller models. No budget has its minimum inside the sizes that reach it, but only "
        f"{reached} of {int(budgets.max())} (by FLOP convention) are reached by the three sizes a minimum inside "
        "needs, so the IsoFLOP method has no vertex to fit. For a loss convex in log N, these data place N_opt "
        "below the second-smallest size that reaches each budget; they cannot show whether it lies below the "
        f"smallest or between the two. {law} Bracketing N_opt at this compute would take smaller models trained "
        "for more tokens."
    )


def heatmap_picks(runs: pd.DataFrame) -> tuple[list[float], list[float]]:
    """The (N, T) whose (B, lr) landscapes the sweep chapter draws: the smallest and the largest fitting size (or
    both of two), at the first, the middle and the last checkpoint."""
    fit_rows = runs[runs["role"] == "fit"]
    sizes, tokens = sorted(fit_rows["n_params"].unique()), sorted(fit_rows["tokens"].unique())
    return (sizes if len(sizes) <= 2 else [sizes[0], sizes[-1]]), [tokens[0], tokens[len(tokens) // 2], tokens[-1]]


def landscape_lines(runs: pd.DataFrame, fit: FitDocument, picks: tuple[list[float], list[float]]) -> list[str]:
    """Our optima and landscapes against the paper's heat map: interior optima, DeepSeek's band, the spread of the
    loss around the best cell of the landscapes at `picks` (heatmap_picks)."""
    optima = pd.DataFrame(fit["optima"])
    spread = [neighbourhood_spread(heatmap(runs, n, t)) for n in picks[0] for t in picks[1]]
    return [
        f"{int((~optima['on_edge'].astype(bool)).sum())} of {len(optima)} of our (N, T) optima are interior to "
        "the grid; the paper's 4B-token heat map had its minimum on the edge.",
        f"{int((~optima['band_agrees'].astype(bool)).sum())} optima disagree with DeepSeek's 0.25% band "
        "(the centre of the settings within 0.25% of the best).",
        f"Around the best cell (one grid step each way) the heat maps above span {min(spread):.1f}-"
        f"{max(spread):.1f}% in loss; the paper's whole 1.07B-parameter heat map (x1.5 steps in lr) spans "
        "0.6-1.3%. Our steps are x2 and our models far smaller, so our landscapes are steeper.",
    ]


def isoflop_lines(fit: FitDocument) -> list[str]:
    """Our IsoFLOP law (6N) beside the published exponents of N_opt(C), and what a disagreement would mean."""
    iso6 = (fit["compute_laws"].get("6n") or {}).get("isoflop")
    return [
        f"Liang et al. (fixed hyperparameters, C = 6ND): N_opt ~ C^{FIXED_HP_N_OPT_EXPONENT}; the video paper's "
        f"empirical law (its Eq. 14): N_opt ~ C^{COMPUTE_LAW_EMPIRICAL['exp']}.",
        (
            f"Ours (optimal hyperparameters, 6N): N_opt ~ C^{iso6['exp']:.3f} from {len(iso6['budgets'])} budgets, "
            f"against {fit['compute_laws']['6n']['exp']:.3f} from our loss law."
            if iso6
            else "Ours: no IsoFLOP law, because no budget has its minimum inside the sizes that reach it; what the "
            "data say instead is where N_opt lies, above."
        ),
        "Both methods read the same optima; where they disagree, the loss law's form (additive power laws) "
        "is the suspect, since the IsoFLOP vertices assume none.",
    ]
