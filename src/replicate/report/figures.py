"""The book's figures: each function takes loaded results and returns a matplotlib Figure that carries the data it
plots (`figure_data`); `show` puts a figure in the book with that data as a CSV beside it."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.cm import ScalarMappable
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, NullFormatter

from replicate.config import FLOP_KINDS
from replicate.fit import compute_law, hyperparameter_law, loss_law
from replicate.fit.read import CurvatureSummary, FitDocument, HeldoutSummary, LrLawDocument
from replicate.report import fmt_flops, heatmap, isoflop_budgets, law_identified
from replicate.report.compare import with_seed_noise
from replicate.report.extrapolation import data_compute_range, flat_region_curves, loss_band, n_opt_curve
from replicate.report.lr_law import law_band
from replicate.theory.sgd import eta_opt, steps_examples_tradeoff

sns.set_theme(style="whitegrid", context="notebook")


# The widest figure the book shows at >= 70% of its size (the browser test's legibility rule): its text column
# is about 690 px wide and figures are drawn at about 100 px per inch.
BOOK_WIDTH_IN = 9.6
# Where `show` writes each figure's data (the book links it as a CSV under the figure), relative to the
# repository root (papermill runs the notebooks there); the chapters live in book/, so their links are data/NAME.csv
DATA_DIR = Path("book/data")
# The PNG text chunk in which `show` records every log axis's tick labels: the browser test reads it back
LOG_AXES_KEY = "replicate-log-axes"


def _tidy(fig: Figure, data: pd.DataFrame | None = None) -> Figure:
    """Log axes without minor tick labels (they overlap: "3x10^5 4x10^5"), but labelled at 1, 2 and 5 times the
    powers of ten where they span less than two decades (else a narrow axis shows one label or none); then a
    tight layout. `data`: what the figure plots, one row per point, kept on the figure for `show`."""
    for ax in fig.axes:
        for axis, scale in ((ax.xaxis, ax.get_xscale()), (ax.yaxis, ax.get_yscale())):
            if scale == "log":
                axis.set_minor_formatter(NullFormatter())
                lo, hi = sorted(axis.get_view_interval())
                if lo > 0 and hi / lo < 100:
                    axis.set_major_locator(FixedLocator(_log_ticks(lo, hi)))
                    axis.set_major_formatter(FuncFormatter(lambda v, _: compact(v)))
    fig.tight_layout()
    if data is not None:
        fig.replicate_data = data
    return fig


def compact(value: float) -> str:
    """A round axis value as a reader takes it in: 500k, 2.5M, 1G for large values, 0.002 or 5e-05 for small."""
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{unit}"
    return f"{value:.3g}"


def figure_data(fig: Figure) -> pd.DataFrame | None:
    """The data a figure of this module plots (None for a figure drawn elsewhere)."""
    return getattr(fig, "replicate_data", None)


def log_axis_labels(fig: Figure) -> list[dict]:
    """Every log axis of a figure, drawn, with the tick labels a reader sees on it (inside the view, non-empty).
    An axis that shares its scale with a neighbour and hides its labels (a shared y axis) is read off the
    neighbour's and left out."""
    fig.canvas.draw()
    out = []
    for i, ax in enumerate(fig.axes):
        if not ax.axison:
            continue
        for name, axis, shared in (("x", ax.xaxis, ax.get_shared_x_axes()), ("y", ax.yaxis, ax.get_shared_y_axes())):
            if axis.get_scale() != "log" or not axis.get_visible():
                continue
            lo, hi = sorted(axis.get_view_interval())
            ticks = [
                *axis.get_major_ticks(len(axis.get_majorticklocs())),
                *axis.get_minor_ticks(len(axis.get_minorticklocs())),
            ]
            labels = [
                label.get_text()
                for tick in ticks
                if lo * (1 - 1e-9) <= tick.get_loc() <= hi * (1 + 1e-9)
                for label in (tick.label1, tick.label2)
                if label.get_visible() and label.get_text()
            ]
            if labels or len(shared.get_siblings(ax)) == 1:
                out.append({"axes": i, "axis": name, "title": ax.get_title(), "labels": labels})
    return out


def png(fig: Figure) -> bytes:
    """The figure as the book's PNG (as the notebook's inline backend draws it), with its log axes' tick labels
    in a text chunk (LOG_AXES_KEY)."""
    labels = json.dumps(log_axis_labels(fig))
    out = io.BytesIO()
    fig.savefig(
        out,
        format="png",
        dpi=fig.dpi,
        bbox_inches="tight",
        facecolor=fig.get_facecolor(),
        metadata={LOG_AXES_KEY: labels},
    )
    return out.getvalue()


def png_text(data: bytes) -> dict[str, str]:
    """The text chunks (tEXt, and uncompressed iTXt) of a PNG file's bytes: where `png` records the log axes."""
    out, pos = {}, 8  # after the signature
    while pos + 8 <= len(data):
        length, kind = int.from_bytes(data[pos : pos + 4], "big"), data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"tEXt":
            key, _, value = body.partition(b"\0")
            out[key.decode("latin-1")] = value.decode("latin-1")
        elif kind == b"iTXt":
            key, _, rest = body.partition(b"\0")
            if rest[:1] == b"\0":  # not compressed: skip the method byte, language tag and translated keyword
                _, _, rest = rest[2:].partition(b"\0")
                _, _, value = rest.partition(b"\0")
                out[key.decode("latin-1")] = value.decode("utf-8")
        pos += 12 + length
    return out


def unreadable_log_axes(data: bytes) -> list[str] | None:
    """The log axes of a book figure (its PNG's bytes, as `png` wrote it) that show fewer than two tick labels,
    described; None where the PNG carries no record (a figure not drawn through `show`)."""
    record = png_text(data).get(LOG_AXES_KEY)
    if record is None:
        return None
    return [
        f"axes {a['axes']} ({a['title'] or 'untitled'}), {a['axis']} axis: labels {a['labels']}"
        for a in json.loads(record)
        if len(a["labels"]) < 2
    ]


def show(fig: Figure, name: str, caption: str = "the data behind this figure") -> None:
    """Put a figure in the book: its PNG, then a link to its data as a CSV (book/data/NAME.csv, where the figure
    carries its data; `figure_data`)."""
    from IPython.display import Image, Markdown, display

    display(Image(data=png(fig)))
    plt.close(fig)
    data = figure_data(fig)
    if data is None:
        return
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    path = DATA_DIR / f"{name}.csv"
    data.to_csv(path, index=False)
    display(Markdown(f"{{download}}`{caption} (CSV) <{path.relative_to(DATA_DIR.parent).as_posix()}>`"))


def _log_ticks(lo: float, hi: float) -> list[float]:
    """Round ticks for a log axis from lo to hi: 1, 2 and 5 times the powers of ten, or finer mantissas where
    those leave fewer than three inside (down to steps of 0.5); on an axis too narrow for any of them (less than
    a factor of about 1.2), evenly spaced round values."""
    fine = tuple(np.arange(1.0, 10.0, 0.5))
    for mantissas in ((1, 2, 5), (1, 1.5, 2, 3, 5, 7), (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8), fine):
        ticks = [
            m * 10.0**k for k in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1) for m in mantissas
        ]
        inside = [t for t in ticks if lo <= t <= hi]
        if len(inside) >= 3:
            return inside
    if len(inside) >= 2:
        return inside
    return [float(t) for t in MaxNLocator(4, steps=[1, 2, 2.5, 5, 10]).tick_values(lo, hi) if lo <= t <= hi]


def _size_palette(sizes) -> dict:
    """One colour per model size, smallest first: distinct hues (neighbouring viridis shades were hard to tell
    apart for the small sizes), in a colour-blind-safe palette."""
    sizes = sorted(sizes)
    return dict(zip(sizes, sns.color_palette("colorblind", len(sizes)), strict=True))


def _fmt_n(n: float) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.0f}k"


def clip_strips(videos, labels, names, frame_strip, columns: int = 1, source: dict | None = None) -> Figure:
    """Clips as strips of frames, in `columns` columns; `names(label)` titles each strip, `frame_strip(video)`
    renders it. Its data: each strip's position, label and class name, with `source` (how to render the same
    clips again, e.g. the generator's seed, split and index) as further columns."""
    rows = math.ceil(len(videos) / columns)
    width = 9 if columns == 1 else BOOK_WIDTH_IN
    fig, axes = plt.subplots(rows, columns, figsize=(width, 1.15 * rows), squeeze=False)
    for ax in axes.flat[len(videos) :]:
        ax.set_axis_off()
    for ax, video, label in zip(axes.T.flat, videos, labels, strict=False):
        ax.imshow(frame_strip(video))
        ax.set_title(names(int(label)), fontsize=9)
        ax.set_axis_off()
    data = pd.DataFrame({"strip": range(len(labels)), "label": [int(y) for y in labels]})
    data["class"] = [names(y) for y in data["label"]]
    for key, value in (source or {}).items():
        data[key] = list(value) if np.ndim(value) else value
    return _tidy(fig, data)


def image_strip(images, labels, names, frame_strip, source: dict | None = None) -> Figure:
    """Single-frame clips side by side as one strip, titled with their classes (`names(label)`); its data as
    clip_strips'."""
    import torch

    fig, ax = plt.subplots(figsize=(9, 1.6))
    ax.imshow(frame_strip(torch.cat(list(images), dim=1)))  # the images as the frames of one strip
    ax.set_axis_off()
    ax.set_title("; ".join(names(int(y)) for y in labels), fontsize=8)
    data = pd.DataFrame({"image": range(len(labels)), "label": [int(y) for y in labels]})
    data["class"] = [names(y) for y in data["label"]]
    for key, value in (source or {}).items():
        data[key] = list(value) if np.ndim(value) else value
    return _tidy(fig, data)


def loss_curves(runs: pd.DataFrame) -> Figure:
    """Validation loss against training tokens: every fitting run (thin) and each size's best at each T (bold)."""
    fit = runs[(runs["role"] == "fit") & ~runs["diverged"]]
    palette = _size_palette(fit["n_params"].unique())
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for _, g in fit.groupby("run_id"):
        ax.plot(g["tokens"], g["val_loss"], color=palette[g["n_params"].iloc[0]], alpha=0.15, lw=0.8)
    best = fit.groupby(["n_params", "tokens"])["val_loss"].min().reset_index()
    for n, g in best.groupby("n_params"):
        ax.plot(g["tokens"], g["val_loss"], "o-", color=palette[n], label=f"N = {_fmt_n(n)}")
    ax.set(xscale="log", yscale="log", xlabel="training tokens T", ylabel="validation loss (eps-MSE)")
    ax.legend(title="best over (B, lr)")
    data = fit[["run_id", "n_params", "batch_size", "lr", "tokens", "val_loss"]].copy()
    data["best_at_this_T"] = data["val_loss"] == data.groupby(["n_params", "tokens"])["val_loss"].transform("min")
    return _tidy(fig, data)


def _cell(grid: pd.DataFrame, batch_size: float, lr: float) -> tuple[float, float]:
    """Heat-map coordinates of (batch size, lr), interpolated in log space between the grid's cells."""
    xs, ys = np.log(grid.columns.to_numpy(float)), np.log(grid.index.to_numpy(float))
    return (
        np.interp(np.log(lr), xs, np.arange(len(xs))) + 0.5,
        np.interp(np.log(batch_size), ys, np.arange(len(ys))) + 0.5,
    )


def heatmaps(
    runs: pd.DataFrame,
    optima: list[dict],
    n_params: list[float],
    tokens: list[float],
    marks: dict[tuple[float, float], tuple[float, float]] | None = None,
) -> Figure:
    """The paper's Figure 4: at each (N, T), the loss over the (batch size, lr) grid in % above its best cell;
    x marks diverged cells, a white frame the best cell, a red star the interpolated optimum, a white square any
    `marks[(N, T)] = (B, lr)`."""
    fig, axes = plt.subplots(
        len(n_params), len(tokens), figsize=(min(3.2 * len(tokens), BOOK_WIDTH_IN), 2.9 * len(n_params)), squeeze=False
    )
    opt = {(o["n_params"], o["tokens"]): o for o in optima}
    frames = []
    for i, n in enumerate(n_params):
        for j, t in enumerate(tokens):
            ax = axes[i, j]
            grid = heatmap(runs, n, t)
            rel = 100 * (grid / np.nanmin(grid.to_numpy()) - 1)
            sns.heatmap(
                rel,
                ax=ax,
                cmap="viridis_r",
                annot=True,
                fmt=".1f",
                annot_kws={"fontsize": 8},
                cbar=False,
                vmin=0,
                vmax=min(10, np.nanmax(rel.to_numpy())),
                mask=rel.isna(),
            )
            ax.set_xticklabels([f"{v:.3g}" for v in grid.columns], rotation=45, fontsize=8)
            ax.set_yticklabels([f"{int(v):,}" for v in grid.index], rotation=0, fontsize=8)
            for r, c in zip(*np.where(grid.isna().to_numpy()), strict=True):
                ax.text(c + 0.5, r + 0.5, "x", ha="center", va="center", color="grey")
            r, c = np.unravel_index(np.nanargmin(grid.to_numpy()), grid.shape)
            ax.add_patch(plt.Rectangle((c + 0.04, r + 0.04), 0.92, 0.92, fill=False, ec="white", lw=2.2))
            if (n, t) in opt and np.isfinite(opt[n, t]["lr"]):
                star = _cell(grid, opt[n, t]["batch_size"], opt[n, t]["lr"])
                ax.plot(*star, "*", color="red", ms=11, mec="white", mew=0.8, alpha=0.9)
            if marks and (n, t) in marks:
                ax.plot(*_cell(grid, *marks[n, t]), "s", mfc="none", mec="white", ms=14, mew=2)
            ax.set_title(f"N = {_fmt_n(n)}, T = {t / 1e6:.2f}M", fontsize=10)
            ax.set_xlabel("learning rate" if i == len(n_params) - 1 else "")
            ax.set_ylabel("batch size (tokens)" if j == 0 else "")
            long = rel.stack(future_stack=True).rename("pct_above_best_cell").reset_index()
            frames.append(long.assign(n_params=n, tokens=t, val_loss=grid.stack(future_stack=True).to_numpy()))
    fig.text(0.5, 0, "white frame: the best cell; red star: the interpolated optimum", ha="center", fontsize=9)
    return _tidy(fig, pd.concat(frames, ignore_index=True))


def hyperparameter_law_figure(fit: FitDocument, key: str, paper: dict | None = None) -> Figure:
    """Optimal batch size (key "batch_size") or learning rate ("lr") against T for each N, with the fitted law
    (solid; left out where every optimum sits on one grid value, which identifies no law) and, dashed, the paper's
    law evaluated at our (N, T). Hollow markers: optima on the grid edge."""
    law = fit[f"{key}_law"]
    optima = pd.DataFrame(fit["optima"])
    optima = optima[np.isfinite(optima[key])]
    drawn = law and np.isfinite(law["coef"]) and law_identified(fit, key)
    palette = _size_palette(optima["n_params"].unique())
    fig, ax = plt.subplots(figsize=(7, 4.5))
    t = np.geomspace(optima["tokens"].min(), optima["tokens"].max(), 50)
    for n, g in optima.groupby("n_params"):
        edge = g["on_edge"].astype(bool)
        ax.scatter(g.loc[~edge, "tokens"], g.loc[~edge, key], color=palette[n], label=f"N = {_fmt_n(n)}")
        ax.scatter(g.loc[edge, "tokens"], g.loc[edge, key], facecolor="none", edgecolor=palette[n])
        if drawn:
            ax.plot(t, hyperparameter_law(t, n, law["coef"], law["exp_tokens"], law["exp_params"]), color=palette[n])
        if paper:
            ax.plot(t, hyperparameter_law(t, n, **paper), color=palette[n], ls="--", alpha=0.6)
    # keys for what the colours do not say: the hollow markers and the line styles
    if optima["on_edge"].astype(bool).any():
        ax.scatter([], [], facecolor="none", edgecolor="0.4", label="on the grid's edge (a bound)")
    if drawn:
        ax.plot([], [], color="0.4", label="our law")
    if paper:
        ax.plot([], [], color="0.4", ls="--", label="the paper's law at our (N, T)")
    if not drawn:
        # what the markers sit at, whatever the ticks, and why fewer colours show than sizes
        values = ", ".join(f"{v:g}" for v in sorted(optima[key].unique())) + (" tokens" if key == "batch_size" else "")
        note = f"no law drawn: every optimum on one grid value ({values}; the sizes' markers overlap)"
        ax.text(0.02, 0.02, note, transform=ax.transAxes, fontsize=8)
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="training tokens T",
        ylabel="optimal batch size (tokens per step)" if key == "batch_size" else "optimal learning rate",
    )
    ax.legend(fontsize=8)
    data = optima[["n_params", "tokens", key, "on_edge"]].copy()
    if drawn:
        data["our_law"] = hyperparameter_law(
            data["tokens"], data["n_params"], law["coef"], law["exp_tokens"], law["exp_params"]
        )
    if paper:
        data["paper_law"] = hyperparameter_law(data["tokens"], data["n_params"], **paper)
    return _tidy(fig, data)


def loss_law_figure(fit: FitDocument) -> Figure:
    """The loss at the optimal hyperparameters against T for each N and the fitted law (lines) over the data's
    range of T; the held-out model's observed (squares) and predicted (crosses) losses, its law extrapolated in N
    (dashed) with the law's 95% bootstrap band."""
    law = {k: fit["loss_law"][k] for k in ("a", "alpha_tokens", "b", "alpha_params", "l_inf")}
    optima = pd.DataFrame(fit["optima"])
    holdout = pd.DataFrame(fit.get("holdout", []))
    sizes = list(optima["n_params"].unique()) + (list(holdout["n_params"].unique()) if len(holdout) else [])
    palette = _size_palette(sizes)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    t = np.geomspace(optima["tokens"].min(), optima["tokens"].max(), 60)
    for n, g in optima.groupby("n_params"):
        ax.scatter(g["tokens"], g["val_loss"], color=palette[n], label=f"N = {_fmt_n(n)}")
        ax.plot(t, loss_law(n, t, **law), color=palette[n])
    data = optima[["n_params", "tokens", "val_loss"]].assign(kind="optimum (fitted)")
    data["law"] = loss_law(data["n_params"], data["tokens"], **law)
    for n, g in holdout.groupby("n_params") if len(holdout) else []:
        lo, hi = loss_band(fit, n, t)
        ax.fill_between(t, lo, hi, color=palette[n], alpha=0.2, lw=0, label="95% band (held-out size)")
        ax.scatter(
            g["tokens"], g["observed_val_loss"], marker="s", color=palette[n], label=f"held out, N = {_fmt_n(n)}"
        )
        ax.scatter(g["tokens"], g["predicted_val_loss"], marker="x", color="black", zorder=5, label="its prediction")
        ax.plot(t, loss_law(n, t, **law), color=palette[n], ls="--")
        held = g[["n_params", "tokens", "observed_val_loss", "predicted_val_loss"]]
        held = held.rename(columns={"observed_val_loss": "val_loss", "predicted_val_loss": "law"})
        band = np.array(loss_band(fit, n, g["tokens"].to_numpy())).T
        data = pd.concat([data, held.assign(kind="held out", law_lo=band[:, 0], law_hi=band[:, 1])], ignore_index=True)
    fitted = optima["n_params"]
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="training tokens T",
        ylabel="validation loss at optimal (B, lr)",
        title=f"fitted on N = {_fmt_n(fitted.min())} to {_fmt_n(fitted.max())}; dashed: extrapolated in N",
    )
    ax.title.set_fontsize(10)
    ax.legend(fontsize=8)
    return _tidy(fig, data)


def compute_allocation_figure(fit: FitDocument, paper: dict | None = None, headline: dict | None = None) -> Figure:
    """N_opt(C) by the book's definition (report.extrapolation) from the loss law at the optimal hyperparameters,
    with its 95% bootstrap band, and at the fixed ones, from the data's budgets to the reference budget; the data's
    budgets and trained sizes shaded. `paper`: its printed N_opt = coef C^exp (its Eq. 18), drawn from its own
    values; `headline`: its N_opt at the reference budget for optimal and fixed hyperparameters (paper.HEADLINE)."""
    law = fit["compute_law"]
    c_lo, c_hi = data_compute_range(fit)
    reference = law["reference_flops"]
    curve = n_opt_curve(fit, np.geomspace(c_lo / 3, reference * 3, 70))
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    ax.axvspan(c_lo, c_hi, color="0.85", zorder=0, label="the data's budgets")
    trained = pd.DataFrame(fit["optima"])["n_params"]
    ax.axhspan(trained.min(), trained.max(), color="0.93", zorder=0, label="the trained sizes")
    ax.fill_between(curve["flops"], curve["n_opt_lo"], curve["n_opt_hi"], color="C0", alpha=0.2, lw=0)
    ax.plot(curve["flops"], curve["n_opt"], color="C0", label="ours, optimal hp (95% band)")
    if "n_opt_fixed_hp" in curve:
        ax.plot(curve["flops"], curve["n_opt_fixed_hp"], color="C1", label="ours, fixed hp")
    ci = (law.get("ci95") or {}).get("n_opt_at_reference")
    if ci:
        ax.errorbar(
            [reference],
            [law["n_opt_at_reference"]],
            yerr=[[law["n_opt_at_reference"] - ci[0]], [ci[1] - law["n_opt_at_reference"]]],
            fmt="o",
            color="C0",
            capsize=4,
        )
    if paper:
        c = curve["flops"]
        ax.plot(
            c,
            compute_law(c, paper["coef"], paper["exp"]),
            ":",
            color="black",
            label=f"paper's Eq. 18: N ~ C^{paper['exp']}",
        )
    if headline:
        for key, marker, label in (
            ("n_opt_1e22_optimal", "D", "paper, optimal hp"),
            ("n_opt_1e22_fixed", "s", "paper, fixed hp"),
        ):
            ax.plot([reference], [headline[key]], marker, mfc="none", mec="black", ms=7, label=label)
    ax.set(xscale="log", yscale="log", xlabel=f"training compute C ({law['flops']} FLOPs)", ylabel="compute-optimal N")
    ax.legend(fontsize=7, loc="upper left")
    data = curve.assign(in_data_range=(curve["flops"] >= c_lo) & (curve["flops"] <= c_hi))
    if paper:
        data["paper_eq18"] = compute_law(data["flops"], paper["coef"], paper["exp"])
    return _tidy(fig, data)


def flat_region_figure(fit: FitDocument) -> Figure:
    """At fixed compute, the loss-law loss of a model k x N_opt relative to N_opt's, at the data's largest budget
    (solid) and at the reference budget (dashed, extrapolated), each with its 95% bootstrap band."""
    curves = flat_region_curves(fit, np.geomspace(0.3, 3.0, 80))
    c_hi = data_compute_range(fit)[1]
    fig, ax = plt.subplots(figsize=(6, 4))
    for (c, g), colour in zip(curves.groupby("flops"), sns.color_palette(n_colors=2), strict=False):
        inside = c <= c_hi * (1 + 1e-9)
        what = "the data's largest budget" if inside else "extrapolated"
        ax.fill_between(g["k"], 100 * g["lo"], 100 * g["hi"], color=colour, alpha=0.15, lw=0)
        ax.plot(
            g["k"],
            100 * g["rise"],
            ls="-" if inside else "--",
            color=colour,
            label=f"C = {fmt_flops(c)} FLOPs ({what})",
        )
    ax.axhline(1.0, color="grey", ls=":", label="1% (the paper's flat region)")
    ax.axvspan(0.7, 1.3, color="grey", alpha=0.15)
    ax.set(xscale="log", xlabel="N / N_opt at fixed compute", ylabel="loss increase (%)", ylim=(0, None))
    ax.legend(fontsize=8)
    return _tidy(fig, curves)


def batch_ridge_figure(by_batch: pd.DataFrame, tokens: float, lr_exponent: float | None = None) -> Figure:
    """At the checkpoint nearest `tokens`: left, each batch size's best loss relative to the best batch size's,
    for each N; right, each batch size's best lr, with a slope of `lr_exponent` (the pooled fit) drawn through
    each size's points. Hollow markers: the lr optimum is on the grid edge."""
    t = by_batch["tokens"].unique()
    at = by_batch[np.isclose(by_batch["tokens"], t[np.argmin(np.abs(np.log(t / tokens)))])]
    palette = _size_palette(at["n_params"].unique())
    fig, (left, right) = plt.subplots(1, 2, figsize=(BOOK_WIDTH_IN, 3.8))
    for n, g in at.groupby("n_params"):
        g = g.sort_values("batch_size")
        edge = g["edge_lr"].astype(bool).to_numpy()
        rel = 100 * (g["val_loss"] / g["val_loss"].min() - 1)
        left.plot(g["batch_size"], rel, "o-", color=palette[n], label=f"N = {_fmt_n(n)}")
        right.scatter(g.loc[~edge, "batch_size"], g.loc[~edge, "lr"], color=palette[n])
        right.scatter(g.loc[edge, "batch_size"], g.loc[edge, "lr"], facecolor="none", edgecolor=palette[n])
        if lr_exponent is not None and np.isfinite(lr_exponent) and (~edge).any():
            b = g["batch_size"].to_numpy()
            centre = np.exp(np.mean(np.log(g.loc[~edge, "lr"]) - lr_exponent * np.log(b[~edge])))
            right.plot(b, centre * b**lr_exponent, color=palette[n], alpha=0.6)
    left.set(
        xscale="log",
        xlabel="batch size (tokens per step)",
        ylabel="loss above the best batch size (%)",
        title=f"best loss per batch size, T = {at['tokens'].iloc[0]:,.0f}",
    )
    right.set(
        xscale="log",
        yscale="log",
        xlabel="batch size (tokens per step)",
        ylabel="best learning rate",
        title="best learning rate per batch size",
    )
    left.legend(fontsize=8)
    data = at[["n_params", "tokens", "batch_size", "val_loss", "lr", "edge_lr"]].copy()
    data["pct_above_best_batch"] = 100 * (data["val_loss"] / data.groupby("n_params")["val_loss"].transform("min") - 1)
    return _tidy(fig, data)


def batch_curvature_figure(by_batch: pd.DataFrame, summary: CurvatureSummary | None) -> Figure:
    """Stage A: at each checkpoint, the loss at each batch size's best lr in % above that checkpoint's minimum
    (the fitted surface's where it converged), the seeds' range as error bars, and the fitted parabola in log B
    with its B_opt (triangle). `by_batch` is report.stage_a.seed_spread's table."""
    surface = (summary or {}).get("surface") or {}
    fitted = {o["tokens"]: o for o in surface.get("optima", [])} if surface.get("converged") else {}
    c_b = (summary or {}).get("curvature_per_doubling2", {}).get("c_b_per_ln2")
    tokens = sorted(by_batch["tokens"].unique())
    colours = dict(zip(tokens, sns.color_palette("viridis", len(tokens)), strict=True))
    fig, ax = plt.subplots(figsize=(8, 4.8))
    for t in tokens:
        g = by_batch[by_batch["tokens"] == t].sort_values("batch_samples")
        clip_tokens = (g["batch_size"] / g["batch_samples"]).iloc[0]
        fit = _nearest(fitted, t)
        floor = np.exp(fit["log_loss"]) if fit else g["loss"].min()
        rel = lambda v, floor=floor: 100 * (np.asarray(v, dtype=float) / floor - 1)  # noqa: E731
        ax.errorbar(
            g["batch_samples"],
            rel(g["loss"]),
            yerr=[rel(g["loss"]) - rel(g["lowest_seed"]), rel(g["highest_seed"]) - rel(g["loss"])],
            fmt="o",
            color=colours[t],
            capsize=3,
            label=f"T = {t / 1e6:.2f}M",
        )
        if fit and c_b is not None:
            clips = np.geomspace(g["batch_samples"].min() / 1.2, g["batch_samples"].max() * 1.2, 100)
            b_opt = fit["batch_size"] / clip_tokens
            ax.plot(clips, 100 * (np.exp(c_b * np.log(clips / b_opt) ** 2) - 1), color=colours[t], lw=1)
            ax.plot([b_opt], [0], "v", color=colours[t], ms=8)
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_locator(plt.NullLocator())
    # where the surface converged, the reference is its minimum at B_opt (the triangle), often below the grid
    where = "the surface's minimum (the triangles)" if fitted else "the checkpoint's best batch"
    ax.set(xlabel="batch size (clips per step)", ylabel=f"loss above {where} (%)")
    ax.legend(title="checkpoint", fontsize=8, ncol=2)
    return _tidy(fig, by_batch.copy())


def _nearest(fitted: dict, tokens: float) -> dict | None:
    """The fitted optimum whose T is within 2% of `tokens` (checkpoints are clustered the same way)."""
    for t, o in fitted.items():
        if abs(t / tokens - 1) < 0.02:
            return o
    return None


def flop_conventions_figure(sizes: pd.DataFrame) -> Figure:
    """Training FLOPs per token over N for each convention (report.study_models' table)."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for kind in FLOP_KINDS:
        ax.plot(sizes["N"], sizes[f"{kind} / N"], "o-", label=kind)
    ax.set(
        xscale="log",
        xlabel="N (non-embedding parameters)",
        ylabel="training FLOPs per token / N",
        title="FLOP conventions: the attention term matters most for small models",
    )
    ax.legend()
    return _tidy(fig, sizes.copy())


def quadratic_estimates_figure(quad: pd.DataFrame) -> Figure:
    """The noise-scale estimators against their closed forms on quadratics (report.quadratic_estimates)."""
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for (problem, g), colour in zip(quad.groupby("problem"), sns.color_palette(n_colors=3), strict=False):
        ax.errorbar(g["truth"], g["estimate"], yerr=2 * g["se"], fmt="o", color=colour, label=problem)
    lims = [quad["truth"].min() / 2, quad["truth"].max() * 2]
    ax.plot(lims, lims, color="grey", lw=0.8)
    ax.set(xscale="log", yscale="log", xlabel="closed form", ylabel="estimate (+- 2 SE)")
    ax.legend(fontsize=8)
    return _tidy(fig, quad.copy())


def line_search_figure(line_search: dict) -> Figure:
    """eta_opt(B) = eta_max / (1 + B_noise / B) from the measured noise scale, and the line search's best steps."""
    noise, rows = line_search["noise"], pd.DataFrame(line_search["rows"])
    b = np.geomspace(rows["batch_size"].min() / 2, rows["batch_size"].max() * 2, 60)
    fig, ax = plt.subplots(figsize=(6, 4))
    eta_max, b_noise = noise["eta_max"]["value"], noise["b_noise"]["value"]
    ax.plot(b, eta_opt(b, eta_max, b_noise), label=f"theory: eta_max = {eta_max:.3g}, B_noise = {b_noise:.3g}")
    ax.scatter(rows["batch_size"], rows["eta_best_measured"], color="black", zorder=5, label="line search")
    ax.set(xscale="log", yscale="log", xlabel="batch size (clips)", ylabel="best SGD step size")
    ax.legend(fontsize=8)
    data = rows[["batch_size", "eta_best_measured"]].assign(
        eta_opt_theory=eta_opt(rows["batch_size"], eta_max, b_noise)
    )
    return _tidy(fig, data)


def noise_scale_figure(dit: pd.DataFrame) -> Figure:
    """B_noise, B_simple (clips) and eta_max along training for each size (report.dit_noise_scales)."""
    fig, axes = plt.subplots(1, 3, figsize=(BOOK_WIDTH_IN, 3.4))
    titles = {"b_noise": "B_noise (clips)", "b_simple": "B_simple (clips)", "eta_max": "eta_max (SGD step)"}
    colours = _size_palette(dit["N"].unique())
    for ax, key in zip(axes, titles, strict=True):
        for n, g in dit.groupby("N"):
            ax.errorbar(
                g["T"], g[key].clip(lower=1e-12), yerr=g[f"{key} se"], fmt="o-", color=colours[n], label=f"N = {n:,}"
            )
        ax.set(xscale="log", yscale="log", xlabel="training tokens T", title=titles[key])
    axes[0].legend(fontsize=8)
    return _tidy(fig, dit.copy())


def tradeoff_figure(dit: pd.DataFrame, batches: list[float]) -> Figure:
    """Step 5's hyperbola, steps S / S_min against examples E / E_min, for the smallest and the largest B_noise
    measured on the Video DiT (report.dit_noise_scales), with the batch sizes `batches` (clips) marked."""
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    measured = dit.loc[dit["b_noise"] > 0, "b_noise"]
    b = np.geomspace(min(batches) / 8, max(batches) * 64, 200)
    frames = []
    for b_noise, style, colour in ((measured.min(), "-", "tab:blue"), (measured.max(), "--", "tab:orange")):
        s, e = steps_examples_tradeoff(b, b_noise)
        ax.plot(e, s, style, color=colour, label=f"B_noise = {b_noise:.3g} clips")
        s, e = steps_examples_tradeoff(np.asarray(batches, dtype=float), b_noise)
        ax.plot(e, s, "o", color=colour)
        for clips, x, y in zip(batches, e, s, strict=True):
            ax.annotate(f"{clips:g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8, color=colour)
        frames.append(pd.DataFrame({"b_noise_clips": b_noise, "batch_clips": batches, "E/E_min": e, "S/S_min": s}))
    ax.set(xscale="log", yscale="log", xlabel="examples needed, E / E_min", ylabel="steps needed, S / S_min")
    ax.legend(fontsize=8, title="dots: the study's batch sizes (clips)", title_fontsize=8)
    return _tidy(fig, pd.concat(frames, ignore_index=True))


def isoflop_figure(fit: FitDocument) -> Figure:
    """The IsoFLOP method on our optima, one panel per FLOP convention: at each compute budget reached by two or
    more sizes, the loss over N (report.isoflop_budgets), the lowest filled, its parabola in log N and vertex
    where one was fitted."""
    conventions = [c for c in ("6n", "exact") if c in fit["compute_laws"]]
    fig, axes = plt.subplots(
        1, len(conventions), figsize=(min(4.8 * len(conventions), BOOK_WIDTH_IN), 4.2), squeeze=False
    )
    frames = []
    for ax, conv in zip(axes[0], conventions, strict=True):
        law = fit["compute_laws"][conv]
        table = isoflop_budgets(fit, conv)
        budgets = sorted(table["flops"].unique())
        # one colour per budget on a log scale, keyed by the colour bar
        shade = (
            ScalarMappable(LogNorm(min(budgets), max(max(budgets), 2 * min(budgets))), "magma_r") if budgets else None
        )
        colours = {c: shade.to_rgba(c) for c in budgets} if shade else {}
        vertices = {round(b["flops"]): b for b in (law.get("isoflop") or {}).get("budgets", [])}
        for c, g in table.groupby("flops"):
            best = g["lowest"].to_numpy()
            ax.plot(g["n_params"], g["val_loss"], "-", color=colours[c], lw=0.8)
            ax.plot(g.loc[~best, "n_params"], g.loc[~best, "val_loss"], "o", mfc="none", mec=colours[c], ms=5)
            ax.plot(g.loc[best, "n_params"], g.loc[best, "val_loss"], "o", color=colours[c], ms=6)
            if round(c) in vertices:
                a2, a1, a0 = vertices[round(c)]["parabola"]
                x = np.linspace(np.log(g["n_params"].min()), np.log(g["n_params"].max()), 40)
                ax.plot(np.exp(x), a2 * x**2 + a1 * x + a0, color=colours[c], lw=1)
                ax.plot(vertices[round(c)]["n_opt"], vertices[round(c)]["loss"], "o", mfc="none", mec="black")
        iso = law.get("isoflop")
        ax.set(
            xscale="log",
            yscale="log",
            xlabel="N (parameters)",
            ylabel="loss at optimal hp",
            title=f"C = {conv} FLOPs: " + (f"N_opt ~ C^{iso['exp']:.3f}" if iso else "no vertex inside the sizes"),
        )
        ax.title.set_fontsize(10)
        if shade is not None:
            fig.colorbar(shade, ax=ax, label=f"budget C ({conv} FLOPs)", pad=0.02)
        frames.append(table.assign(flops_convention=conv))
    return _tidy(fig, pd.concat(frames, ignore_index=True))


def lr_star_figure(doc: LrLawDocument, batch_size: float, title: str = "") -> Figure:
    """The optimal learning rate at one batch size (an lr_law.json): left, against T for each N; right, against
    N at the first, middle and last checkpoints. Points: each (N, T)'s own vertex (hollow where it lies beyond
    the rates tried); lines: the fitted law, with its 95% bootstrap band over the data's range; dashed: the slope
    the paper's laws imply (`paper_implied`), through the fitted law at the middle series' centre."""
    vertices = pd.DataFrame(doc["vertices"])
    vertices = vertices[vertices["batch_size"] == batch_size]
    sizes, tokens = np.sort(vertices["n_params"].unique()), np.sort(vertices["tokens"].unique())
    palette = _size_palette(sizes)
    fig, axes = plt.subplots(1, 2, figsize=(BOOK_WIDTH_IN, 4.0), sharey=True)
    t = np.geomspace(tokens.min(), tokens.max(), 40)
    for n in sizes:
        rows = vertices[vertices["n_params"] == n]
        _vertex_points(axes[0], rows["tokens"], rows, palette[n], f"N = {_fmt_n(n)}")
        centre, lo, hi = law_band(doc, batch_size, np.full(len(t), n), t)
        axes[0].plot(t, centre, color=palette[n])
        if lo is not None:
            axes[0].fill_between(t, lo, hi, color=palette[n], alpha=0.15, lw=0)
    picked = tokens[[0, len(tokens) // 2, -1]] if len(tokens) > 2 else tokens
    shades = dict(zip(picked, sns.color_palette("rocket", len(picked)), strict=True))
    n_grid = np.geomspace(sizes.min(), sizes.max(), 40)
    for t_k in picked:
        rows = vertices[vertices["tokens"] == t_k]
        _vertex_points(axes[1], rows["n_params"], rows, shades[t_k], f"T = {t_k / 1e6:.2f}M")
        centre, lo, hi = law_band(doc, batch_size, n_grid, np.full(len(n_grid), t_k))
        axes[1].plot(n_grid, centre, color=shades[t_k])
        if lo is not None:
            axes[1].fill_between(n_grid, lo, hi, color=shades[t_k], alpha=0.15, lw=0)
    implied = doc["paper_implied"]
    middle = (
        (axes[0], t, sizes[len(sizes) // 2], "tokens", "T"),
        (axes[1], n_grid, picked[len(picked) // 2], "params", "N"),
    )
    for ax, grid, fixed, key, label in middle:
        if len(grid) < 2 or grid[0] == grid[-1]:
            continue
        centre = math.sqrt(grid[0] * grid[-1])
        at = (np.array([fixed]), np.array([centre])) if key == "tokens" else (np.array([centre]), np.array([fixed]))
        anchor = law_band(doc, batch_size, *at)[0][0]
        slope = implied[f"lr_exponent_{key}"]["value"]
        paper = f"paper-implied slope ({label}^{slope:.2f})"
        ax.plot(grid, anchor * (grid / centre) ** slope, "k--", lw=1, label=paper)
    axes[0].set(xscale="log", yscale="log", xlabel="training tokens T", ylabel=f"lr* at B = {batch_size:g} tokens")
    axes[1].set(xscale="log", xlabel="parameters N")
    for ax in axes:
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return _tidy(fig, vertices.copy())


def _vertex_points(ax, x, rows: pd.DataFrame, color, label: str) -> None:
    edge = rows["on_edge"].astype(bool).to_numpy()
    ax.scatter(np.asarray(x)[~edge], rows["lr_star"].to_numpy()[~edge], color=color, label=label, zorder=3)
    ax.scatter(np.asarray(x)[edge], rows["lr_star"].to_numpy()[edge], facecolor="none", edgecolor=color, zorder=3)


def heldout_figure(summary: HeldoutSummary, doc: LrLawDocument) -> Figure:
    """The held-out model (a learning-rate study's summary.json and its lr_law.json): left, its own lr* against
    T beside the law's prediction with the law's 95% band (the fitting range of T/N shaded); middle, the test:
    the law's lr* over the model's own, with its 95% interval taken resample by resample (the band and the
    vertex share the law's curvatures, so a vertex inside the band can still lie off the law) against the goal;
    right, its lr-optimal loss beside the loss law's prediction, with the prediction's 95% interval (the
    held-out model's seed noise in it)."""
    held = summary["heldout"]
    checks = pd.DataFrame(held["checkpoints"])
    vertices = pd.DataFrame(doc["vertices"])
    n, b = held["n_params"], held["batch_size"]
    fig, axes = plt.subplots(1, 3, figsize=(BOOK_WIDTH_IN, 3.8))
    t = np.geomspace(checks["tokens"].min() / 1.5, checks["tokens"].max() * 1.2, 40)
    centre, lo, hi = law_band(doc, b, np.full(len(t), float(n)), t)
    axes[0].plot(t, centre, color="C0", label="law (fitting sizes)")
    if lo is not None:
        axes[0].fill_between(t, lo, hi, color="C0", alpha=0.2, lw=0, label="95% band")
    axes[0].scatter(checks["tokens"], checks["lr_star"], color="k", zorder=3, label=f"held-out N = {_fmt_n(n)}")
    ratio = vertices["tokens"] / vertices["n_params"]
    axes[0].axvspan(ratio.min() * n, min(ratio.max() * n, t.max()), color="0.9", zorder=0, label="fitting T/N range")
    axes[0].set(xscale="log", yscale="log", xlabel="training tokens T", ylabel=f"lr* at B = {b:g} tokens")
    ratio_value = np.array([c["lr_ratio"]["value"] for c in held["checkpoints"]])
    ratio_ci = np.array([c["lr_ratio"]["ci95"] or [np.nan, np.nan] for c in held["checkpoints"]])
    goal = summary["goals"]["heldout_lr_ratio"]
    axes[1].axhspan(1 / goal, goal, color="0.92", zorder=0, label=f"goal: within x{goal:g}")
    axes[1].axhline(1, color="0.5", lw=0.8)
    axes[1].errorbar(
        checks["tokens"],
        ratio_value,
        yerr=np.stack([ratio_value - ratio_ci[:, 0], ratio_ci[:, 1] - ratio_value]).clip(min=0),
        fmt="o",
        color="C0",
        capsize=3,
        label="95%, resample by resample",
    )
    axes[1].set(xscale="log", xlim=axes[0].get_xlim(), xlabel="training tokens T", ylabel="law's lr* / held-out lr*")
    # the bootstrap's intervals with the held-out model's seed noise, as the chapter's sentences give them
    widened = with_seed_noise([c["loss_error"] for c in held["checkpoints"]], summary.get("heldout_seed_noise"))
    errors = np.array([c["ci95"] or [np.nan, np.nan] for c in widened])
    pred, measured = checks["loss_predicted"].to_numpy(), checks["loss"].to_numpy()
    axes[2].scatter(checks["tokens"], measured, color="k", zorder=3, label="measured (its lr optimum)")
    yerr = np.stack([pred - measured * (1 + errors[:, 0]), measured * (1 + errors[:, 1]) - pred]).clip(min=0)
    axes[2].errorbar(
        checks["tokens"], pred, yerr=yerr, fmt="s", color="C1", capsize=3, label="loss law (95%, seed noise in)"
    )
    axes[2].set(xscale="log", xlim=axes[0].get_xlim(), xlabel="training tokens T", ylabel="validation loss")
    for ax in axes:
        ax.legend(fontsize=7)
    data = checks.drop(columns=[c for c in checks if checks[c].map(lambda v: isinstance(v, dict | list)).any()])
    data = data.assign(lr_ratio=ratio_value, lr_ratio_lo=ratio_ci[:, 0], lr_ratio_hi=ratio_ci[:, 1])
    return _tidy(fig, data)


def porian_n_opt_figure(frame: pd.DataFrame, data_range: tuple[float, float], base: str, tuned: str) -> Figure:
    """N_opt(C) with one set of hyperparameters for every size (`base`) and with them tuned per size (`tuned`),
    one panel per dataset (report.porian_n_opt_frame): the IsoFLOP laws (lines), their N_opt at the evaluated
    budgets with 95% intervals, and the budgets the runs reached (shaded: beyond them the laws extrapolate)."""
    datasets = list(dict.fromkeys(frame["dataset"]))
    fig, axes = plt.subplots(1, len(datasets), figsize=(BOOK_WIDTH_IN, 4.0), sharey=True, squeeze=False)
    colours = {base: "C3", tuned: "C0"}
    c = np.geomspace(data_range[0], frame["flops"].max(), 60)
    for ax, name in zip(axes[0], datasets, strict=True):
        ax.axvspan(*data_range, color="0.92", zorder=0, label="budgets trained")
        for config, colour in colours.items():
            rows = frame[(frame["dataset"] == name) & (frame["config"] == config)]
            if rows.empty:
                continue
            label = config.replace("_", ", ")
            ax.plot(c, rows["coef"].iloc[0] * c ** rows["exp"].iloc[0], color=colour, label=label)
            yerr = np.stack([rows["n_opt"] - rows["lo"], rows["hi"] - rows["n_opt"]])
            ax.errorbar(rows["flops"], rows["n_opt"], yerr=yerr, fmt="o", color=colour, capsize=3)
        ax.set(xscale="log", yscale="log", xlabel="compute C = 6NT (FLOPs)", title=name)
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("compute-optimal parameters N_opt")
    shown = frame[frame["config"].isin(colours)]
    return _tidy(fig, shown[["dataset", "config", "flops", "n_opt", "lo", "hi"]].copy())
