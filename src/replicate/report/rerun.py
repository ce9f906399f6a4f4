"""Two sweeps of the same runs compared: per-row agreement, loss spread, best cells, the fits' exponents."""

from __future__ import annotations

import numpy as np
import pandas as pd

from replicate.fit.read import FitDocument
from replicate.report.compare import EXPONENTS, fitted_exponent


def _matched(first: pd.DataFrame, second: pd.DataFrame) -> pd.DataFrame:
    """The rows of two sweeps with the same run id and tokens side by side (suffix _2), with |relative
    difference| of their losses in `rel_diff` (NaN where either diverged)."""
    keys = ["run_id", "tokens"]
    both = first.merge(second[[*keys, "val_loss", "diverged"]], on=keys, suffixes=("", "_2"))
    both["rel_diff"] = (both["val_loss_2"] / both["val_loss"] - 1).abs()
    return both


def identical_rows(
    first: pd.DataFrame, second: pd.DataFrame, columns: tuple[str, ...] = ("val_loss", "val_loss_ema")
) -> tuple[int, int]:
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
            cells, same_cell, same_batch = (
                cells + 1,
                same_cell + (a["run_id"] == b["run_id"]),
                same_batch + (a["batch_size"] == b["batch_size"]),
            )
        last = g[g["tokens"] == g["tokens"].max()]
        rows.append(
            {
                "N": int(n),
                "runs": g["run_id"].nunique(),
                "median |dL/L| (%)": 100 * rel.median(),
                "max |dL/L| (%)": 100 * rel.max(),
                "runs diverged in one only": int((last["diverged"] != last["diverged_2"]).sum()),
                "(N, T)": g["tokens"].nunique(),
                "(N, T) compared": cells,
                "same best cell": int(same_cell),
                "same best batch": int(same_batch),
            }
        )
    return pd.DataFrame(rows)


def rerun_fit_sentence(first: dict, second: dict) -> str:
    """How far each fitted exponent moved between the fits of two sweeps of the same runs, beside the width of
    their 95% intervals, and which point estimates fall outside their own interval (where the percentile
    bootstrap cannot be trusted)."""
    moves, outside = [], []
    for law, key, label in EXPONENTS:
        (a, ci_a), (b, ci_b) = fitted_exponent(first, law, key), fitted_exponent(second, law, key)
        widths = [ci[1] - ci[0] for ci in (ci_a, ci_b) if ci]
        moves.append(f"{label} {a:.3g} -> {b:.3g}" + (f" (intervals {np.mean(widths):.2g} wide)" if widths else ""))
        outside += [
            f"{label} in the {name} fit"
            for name, value, ci in (("first", a, ci_a), ("second", b, ci_b))
            if ci and not ci[0] <= value <= ci[1]
        ]
    text = "From the first sweep's fit to the second's: " + "; ".join(moves) + "."
    if outside:
        text += (
            " Outside their own 95% interval: " + ", ".join(outside) + " (few bootstrap resamples land where"
            " the full data does, so that interval is not to be trusted)."
        )
    return text


def rerun_sentence(agreement: pd.DataFrame) -> str:
    """rerun_agreement's table in one sentence."""
    a = agreement
    med = a["median |dL/L| (%)"]
    # only (N, T) with every run finished in both sweeps are compared: a run lost to divergence removes its (N, T)
    none = [f"{n:,}" for n in a.loc[a["(N, T) compared"] == 0, "N"]]
    return (
        f"Over {a['runs'].sum()} runs of {len(a)} model size(s) the two sweeps' losses differ by a median of "
        f"{med.min():.2f}% to {med.max():.2f}% per size (at most {a['max |dL/L| (%)'].max():.1f}%); the best "
        f"(B, lr) cell is the same at {a['same best cell'].sum()} of the {a['(N, T) compared'].sum()} (N, T) "
        f"(of {a['(N, T)'].sum()}) where neither sweep lost a run to divergence"
        + (f", none of them at N = {', '.join(none)}" if none else "")
        + f", the best batch size at {a['same best batch'].sum()}; {a['runs diverged in one only'].sum()} run(s) "
        "diverged in one sweep only."
    )


FAMILIES = {  # the fitted exponents grouped by what they rest on
    "the loss law's exponents": ("loss_law",),
    "the B_opt and eta_opt exponents in T and N": ("batch_size_law", "lr_law"),
    "the learning rate's exponent in B at fixed (N, T)": ("lr_batch_exponent",),
}


def fits_agreement_sentence(fits: dict[str, FitDocument]) -> str:
    """How several fits of (nearly) the same runs agree: per family of exponents (FAMILIES) the largest move
    between fits beside the mean width of their 95% intervals, and every exponent whose sign differs between
    fits; then which families these data determine."""
    parts, flips, determined = [], [], []
    for family, laws in FAMILIES.items():
        moves, widths, flipped = [], [], False
        for law, key, label in EXPONENTS:
            if law not in laws:
                continue
            values = [fitted_exponent(f, law, key) for f in fits.values()]
            v = np.array([x for x, _ in values], dtype=float)
            moves.append(float(np.nanmax(v) - np.nanmin(v)))
            widths += [ci[1] - ci[0] for _, ci in values if ci]
            if np.nanmin(v) < 0 < np.nanmax(v):
                flipped = True
                flips.append(f"{label} ({', '.join(f'{x:+.2f}' for x in v)})")
        width = float(np.mean(widths)) if widths else float("nan")
        parts.append(f"{family} by up to {max(moves):.2g} (their intervals {width:.2g} wide on average)")
        # determined: the fits move it by less than a quarter of its interval, and never across zero
        if max(moves) < 0.25 * width and not flipped:
            determined.append(family)
    text = "Between the fits (" + " / ".join(fits) + "), " + "; ".join(parts) + "."
    if flips:
        text += " Signs that differ between them: " + "; ".join(flips) + "."
    stable = [f for f in FAMILIES if f in determined]
    unstable = [f for f in FAMILIES if f not in determined]
    text += f" Estimates that the difference does not move: {', '.join(stable) or 'none'}" + (
        f"; {', '.join(unstable)} move with it, so they are not determined by these data." if unstable else "."
    )
    text += " Not moving is not being identified: an interval as wide as the paper's value is 'not identified' still."
    return text


def timed_rerun_sentence(second: pd.DataFrame, timed: pd.DataFrame, where: str) -> str:
    """How many rows of the second training a third one (in `where`) repeated bit for bit."""
    same, rows = identical_rows(second, timed)
    return (
        f"With the code fixed a sweep repeats exactly: trained a third time in one call "
        f"(`{where}/`), {same} of {rows} run x checkpoint rows of the second training have "
        "bit-identical `val_loss` and `val_loss_ema`."
    )
