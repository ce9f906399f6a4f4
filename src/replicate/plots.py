"""The book's figures: each function takes loaded results and returns a matplotlib Figure."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

from replicate.config import FLOP_KINDS
from replicate.fit import (
    FlopsPerToken,
    compute_law,
    compute_optimal_size,
    hyperparameter_law,
    isoflop_losses,
    loss_law,
)
from replicate.report import heatmap
from replicate.report.lr_law import law_band
from replicate.sgd import eta_opt, steps_examples_tradeoff

sns.set_theme(style="whitegrid", context="notebook")


# The widest figure the book shows at >= 70% of its size (the browser test's legibility rule): its text column
# is about 690 px wide and figures are drawn at about 100 px per inch.
BOOK_WIDTH_IN = 9.6


def _tidy(fig: Figure) -> Figure:
    """Log axes without minor tick labels (they overlap: "3x10^5 4x10^5"), but labelled at 1, 2 and 5 times the
    powers of ten where they span less than two decades (else a narrow axis shows one label or none); then a
    tight layout."""
    for ax in fig.axes:
        for axis, scale in ((ax.xaxis, ax.get_xscale()), (ax.yaxis, ax.get_yscale())):
            if scale == "log":
                axis.set_minor_formatter(NullFormatter())
                lo, hi = sorted(axis.get_view_interval())
                if lo > 0 and hi / lo < 100:
                    axis.set_major_locator(FixedLocator(_log_ticks(lo, hi)))
                    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
    fig.tight_layout()
    return fig


def _log_ticks(lo: float, hi: float) -> list[float]:
    """Round ticks for a log axis from lo to hi: 1, 2 and 5 times the powers of ten, or finer mantissas where
    those leave fewer than three inside (down to steps of 0.5)."""
    fine = tuple(np.arange(1.0, 10.0, 0.5))
    for mantissas in ((1, 2, 5), (1, 1.5, 2, 3, 5, 7), (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8), fine):
        ticks = [
            m * 10.0**k for k in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1) for m in mantissas
        ]
        inside = [t for t in ticks if lo <= t <= hi]
        if len(inside) >= 3:
            return inside
    return inside


def _size_palette(sizes) -> dict:
    """One colour per model size, smallest first: distinct hues (neighbouring viridis shades were hard to tell
    apart for the small sizes), in a colour-blind-safe palette."""
    sizes = sorted(sizes)
    return dict(zip(sizes, sns.color_palette("colorblind", len(sizes)), strict=True))


def _fmt_n(n: float) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.0f}k"


def clip_strips(videos, labels, names, frame_strip) -> Figure:
    """Clips as rows of frames; `names(label)` titles each row, `frame_strip(video)` renders it."""
    fig, axes = plt.subplots(len(videos), 1, figsize=(9, 1.15 * len(videos)))
    for ax, video, label in zip(np.atleast_1d(axes), videos, labels, strict=True):
        ax.imshow(frame_strip(video))
        ax.set_title(names(int(label)), fontsize=9)
        ax.set_axis_off()
    return _tidy(fig)


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
    return _tidy(fig)


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
    """The paper's Figure 4: at each (N, T), the loss over the (batch size, lr) grid in % above its minimum;
    x marks diverged cells, a star the interpolated optimum, a square any `marks[(N, T)] = (B, lr)`."""
    fig, axes = plt.subplots(
        len(n_params), len(tokens), figsize=(min(3.2 * len(tokens), BOOK_WIDTH_IN), 2.9 * len(n_params)), squeeze=False
    )
    opt = {(o["n_params"], o["tokens"]): o for o in optima}
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

            if (n, t) in opt and np.isfinite(opt[n, t]["lr"]):
                ax.plot(*_cell(grid, opt[n, t]["batch_size"], opt[n, t]["lr"]), "*", color="red", ms=12)
            if marks and (n, t) in marks:
                ax.plot(*_cell(grid, *marks[n, t]), "s", mfc="none", mec="white", ms=14, mew=2)
            ax.set_title(f"N = {_fmt_n(n)}, T = {t / 1e6:.2f}M", fontsize=10)
            ax.set_xlabel("learning rate" if i == len(n_params) - 1 else "")
            ax.set_ylabel("batch size (tokens)" if j == 0 else "")
    return _tidy(fig)


def hyperparameter_law_figure(fit: dict, key: str, paper: dict | None = None) -> Figure:
    """Optimal batch size (key "batch_size") or learning rate ("lr") against T for each N, with the fitted law
    (solid) and, dashed, the paper's law evaluated at our (N, T). Hollow markers: optima on the grid edge."""
    law = fit[f"{key}_law"]
    optima = pd.DataFrame(fit["optima"])
    optima = optima[np.isfinite(optima[key])]
    palette = _size_palette(optima["n_params"].unique())
    fig, ax = plt.subplots(figsize=(7, 4.5))
    t = np.geomspace(optima["tokens"].min(), optima["tokens"].max(), 50)
    for n, g in optima.groupby("n_params"):
        edge = g["on_edge"].astype(bool)
        ax.scatter(g.loc[~edge, "tokens"], g.loc[~edge, key], color=palette[n], label=f"N = {_fmt_n(n)}")
        ax.scatter(g.loc[edge, "tokens"], g.loc[edge, key], facecolor="none", edgecolor=palette[n])
        if law and np.isfinite(law["coef"]):
            ax.plot(t, hyperparameter_law(t, n, law["coef"], law["exp_tokens"], law["exp_params"]), color=palette[n])
        if paper:
            ax.plot(t, hyperparameter_law(t, n, **paper), color=palette[n], ls="--", alpha=0.6)
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="training tokens T",
        ylabel="optimal batch size (tokens per step)" if key == "batch_size" else "optimal learning rate",
    )
    ax.legend(fontsize=8)
    return _tidy(fig)


def loss_law_figure(fit: dict) -> Figure:
    """The loss at the optimal hyperparameters against T for each N, the fitted law (lines), and the held-out
    model's observed (squares) and predicted (crosses) losses."""
    law = {k: fit["loss_law"][k] for k in ("a", "alpha_tokens", "b", "alpha_params", "l_inf")}
    optima = pd.DataFrame(fit["optima"])
    holdout = pd.DataFrame(fit.get("holdout", []))
    sizes = list(optima["n_params"].unique()) + (list(holdout["n_params"].unique()) if len(holdout) else [])
    palette = _size_palette(sizes)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    t = np.geomspace(optima["tokens"].min(), optima["tokens"].max() * 4, 60)
    for n, g in optima.groupby("n_params"):
        ax.scatter(g["tokens"], g["val_loss"], color=palette[n], label=f"N = {_fmt_n(n)}")
        ax.plot(t, loss_law(n, t, **law), color=palette[n])
    for n, g in holdout.groupby("n_params") if len(holdout) else []:
        ax.scatter(
            g["tokens"], g["observed_val_loss"], marker="s", color=palette[n], label=f"held out, N = {_fmt_n(n)}"
        )
        ax.scatter(g["tokens"], g["predicted_val_loss"], marker="x", color="black", zorder=5)
        ax.plot(t, loss_law(n, t, **law), color=palette[n], ls="--")
    ax.set(xscale="log", yscale="log", xlabel="training tokens T", ylabel="validation loss at optimal (B, lr)")
    ax.legend(fontsize=8)
    return _tidy(fig)


def compute_allocation_figure(fit: dict, paper_exponent: float | None = None) -> Figure:
    """N_opt(C): from the loss law at optimal hyperparameters, at the fixed ones, and the IsoFLOP vertices;
    the reference budget marked. A dotted line of the paper's slope through the optimal law at our budgets."""
    law = fit["compute_law"]
    fixed = (fit.get("fixed") or {}).get("compute_law")
    c = np.geomspace(1e11, law["reference_flops"], 60)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(c, compute_law(c, law["coef"], law["exp"]), label=f"optimal hp: N ~ C^{law['exp']:.3f}")
    if fixed:
        ax.plot(c, compute_law(c, fixed["coef"], fixed["exp"]), label=f"fixed hp: N ~ C^{fixed['exp']:.3f}")
    iso = law.get("isoflop")
    if iso:
        budgets = pd.DataFrame(iso["budgets"])
        ax.scatter(
            budgets["flops"],
            budgets["n_opt"],
            color="black",
            zorder=5,
            label=f"IsoFLOP vertices: N ~ C^{iso['exp']:.3f}",
        )
    if paper_exponent is not None:
        anchor = c[0]
        ax.plot(
            c,
            law["coef"] * anchor ** law["exp"] * (c / anchor) ** paper_exponent,
            ":",
            color="grey",
            label=f"paper's slope {paper_exponent}",
        )
    ax.axvline(law["reference_flops"], color="grey", lw=0.8)
    ax.set(xscale="log", yscale="log", xlabel=f"training compute C ({law['flops']} FLOPs)", ylabel="compute-optimal N")
    ax.legend(fontsize=8)
    return _tidy(fig)


def flat_region_figure(fit: dict) -> Figure:
    """At fixed compute, the loss-law loss of a model k x N_opt relative to N_opt's, for each budget."""
    law = {k: fit["loss_law"][k] for k in ("a", "alpha_tokens", "b", "alpha_params", "l_inf")}
    fpt = FlopsPerToken(**fit["compute_law"]["flops_per_token"])
    k = np.geomspace(0.3, 3.0, 80)
    fig, ax = plt.subplots(figsize=(6, 4))
    for region in fit.get("flat_region", []):
        c = region["flops"]
        n_opt, l_opt = compute_optimal_size(law, c, fpt)
        n = n_opt[0] * k
        ax.plot(k, 100 * (loss_law(n, c / fpt(n), **law) / l_opt[0] - 1), label=f"C = {c:.2g} FLOPs")
    ax.axhline(1.0, color="grey", ls=":", label="1% (the paper's flat region)")
    ax.axvspan(0.7, 1.3, color="grey", alpha=0.15)
    ax.set(xscale="log", xlabel="N / N_opt at fixed compute", ylabel="loss increase (%)", ylim=(0, None))
    ax.legend(fontsize=8)
    return _tidy(fig)


def batch_ridge_figure(profile: pd.DataFrame, tokens: float, lr_exponent: float | None = None) -> Figure:
    """At the checkpoint nearest `tokens`: left, each batch size's best loss relative to the best batch size's,
    for each N; right, each batch size's best lr, with a slope of `lr_exponent` (the pooled fit) drawn through
    each size's points. Hollow markers: the lr optimum is on the grid edge."""
    t = profile["tokens"].unique()
    at = profile[np.isclose(profile["tokens"], t[np.argmin(np.abs(np.log(t / tokens)))])]
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
    return _tidy(fig)


def batch_curvature_figure(profile: pd.DataFrame, summary: dict | None) -> Figure:
    """Stage A: at each checkpoint, the loss at each batch size's best lr in % above that checkpoint's minimum
    (the fitted surface's where it converged), the seeds' range as error bars, and the fitted parabola in log B
    with its B_opt (triangle). `profile` is report.stage_a.seed_profile's table."""
    surface = (summary or {}).get("surface") or {}
    fitted = {o["tokens"]: o for o in surface.get("optima", [])} if surface.get("converged") else {}
    c_b = (summary or {}).get("curvature_per_doubling2", {}).get("c_b_per_ln2")
    tokens = sorted(profile["tokens"].unique())
    colours = dict(zip(tokens, sns.color_palette("viridis", len(tokens)), strict=True))
    fig, ax = plt.subplots(figsize=(8, 4.8))
    for t in tokens:
        g = profile[profile["tokens"] == t].sort_values("batch_samples")
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
    ax.set(xlabel="batch size (clips per step)", ylabel="loss above the checkpoint's minimum (%)")
    ax.legend(title="checkpoint", fontsize=8, ncol=2)
    return _tidy(fig)


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
    return _tidy(fig)


def quadratic_estimates_figure(quad: pd.DataFrame) -> Figure:
    """The noise-scale estimators against their closed forms on quadratics (report.quadratic_estimates)."""
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for (problem, g), colour in zip(quad.groupby("problem"), sns.color_palette(n_colors=3), strict=False):
        ax.errorbar(g["truth"], g["estimate"], yerr=2 * g["se"], fmt="o", color=colour, label=problem)
    lims = [quad["truth"].min() / 2, quad["truth"].max() * 2]
    ax.plot(lims, lims, color="grey", lw=0.8)
    ax.set(xscale="log", yscale="log", xlabel="closed form", ylabel="estimate (+- 2 SE)")
    ax.legend(fontsize=8)
    return _tidy(fig)


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
    return _tidy(fig)


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
    return _tidy(fig)


def tradeoff_figure(dit: pd.DataFrame, batches: list[float]) -> Figure:
    """Step 5's hyperbola, steps S / S_min against examples E / E_min, for the smallest and the largest B_noise
    measured on the Video DiT (report.dit_noise_scales), with the batch sizes `batches` (clips) marked."""
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    measured = dit.loc[dit["b_noise"] > 0, "b_noise"]
    b = np.geomspace(min(batches) / 8, max(batches) * 64, 200)
    for b_noise, style, colour in ((measured.min(), "-", "tab:blue"), (measured.max(), "--", "tab:orange")):
        s, e = steps_examples_tradeoff(b, b_noise)
        ax.plot(e, s, style, color=colour, label=f"B_noise = {b_noise:.3g} clips")
        s, e = steps_examples_tradeoff(np.asarray(batches, dtype=float), b_noise)
        ax.plot(e, s, "o", color=colour)
        for clips, x, y in zip(batches, e, s, strict=True):
            ax.annotate(f"{clips:g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8, color=colour)
    ax.set(xscale="log", yscale="log", xlabel="examples needed, E / E_min", ylabel="steps needed, S / S_min")
    ax.legend(fontsize=8, title="dots: the study's batch sizes (clips)", title_fontsize=8)
    return _tidy(fig)


def isoflop_figure(fit: dict) -> Figure:
    """The paper's IsoFLOP method on our optima: at each compute budget reached by 3 sizes, the loss over N, its
    parabola in log N where one was fitted, and the vertex; one panel per FLOP convention."""
    optima = pd.DataFrame(fit["optima"])
    optima = optima[np.isfinite(optima["val_loss"])]
    conventions = [c for c in ("6n", "exact") if c in fit["compute_laws"]]
    fig, axes = plt.subplots(
        1, len(conventions), figsize=(min(4.8 * len(conventions), BOOK_WIDTH_IN), 4.2), squeeze=False
    )
    for ax, conv in zip(axes[0], conventions, strict=True):
        law = fit["compute_laws"][conv]
        fpt = FlopsPerToken(**law["flops_per_token"])
        sizes, budgets, table = isoflop_losses(optima["n_params"], optima["tokens"], optima["val_loss"], fpt)
        colours = sns.color_palette("magma", len(budgets))
        vertices = {round(b["flops"]): b for b in (law.get("isoflop") or {}).get("budgets", [])}
        for j, c in enumerate(budgets):
            ok = np.isfinite(table[:, j])
            if ok.sum() < 3:
                continue
            ax.plot(sizes[ok], table[ok, j], "o", color=colours[j], ms=4)
            if round(c) in vertices:
                a2, a1, a0 = vertices[round(c)]["parabola"]
                x = np.linspace(np.log(sizes[ok].min()), np.log(sizes[ok].max()), 40)
                ax.plot(np.exp(x), a2 * x**2 + a1 * x + a0, color=colours[j], lw=1)
                ax.plot(vertices[round(c)]["n_opt"], vertices[round(c)]["loss"], "o", mfc="none", mec="black")
        iso = law.get("isoflop")
        ax.set(
            xscale="log",
            yscale="log",
            xlabel="N (parameters)",
            ylabel="loss at optimal hp",
            title=f"C = {conv} FLOPs: " + (f"N_opt ~ C^{iso['exp']:.3f}" if iso else "no IsoFLOP law"),
        )
    return _tidy(fig)


def lr_star_figure(doc: dict, batch_size: float, title: str = "") -> Figure:
    """The optimal learning rate at one batch size (an lr_law.json): left, against T for each N; right, against
    N at the first, middle and last checkpoints. Points: each (N, T)'s own vertex (hollow where it lies beyond
    the rates tried); lines: the fitted law, with its 95% bootstrap band over the data's range."""
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
    axes[0].set(xscale="log", yscale="log", xlabel="training tokens T", ylabel=f"lr* at B = {batch_size:g} tokens")
    axes[1].set(xscale="log", xlabel="parameters N")
    for ax in axes:
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return _tidy(fig)


def _vertex_points(ax, x, rows: pd.DataFrame, color, label: str) -> None:
    edge = rows["on_edge"].astype(bool).to_numpy()
    ax.scatter(np.asarray(x)[~edge], rows["lr_star"].to_numpy()[~edge], color=color, label=label, zorder=3)
    ax.scatter(np.asarray(x)[edge], rows["lr_star"].to_numpy()[edge], facecolor="none", edgecolor=color, zorder=3)


def heldout_figure(summary: dict, doc: dict) -> Figure:
    """The held-out model (a learning-rate study's summary.json and its lr_law.json): left, its own lr* against
    T beside the law's prediction with the 95% band (the fitting range of T/N shaded); right, its lr-optimal loss
    beside the loss law's prediction, with the prediction's 95% interval."""
    held = summary["heldout"]
    checks = pd.DataFrame(held["checkpoints"])
    vertices = pd.DataFrame(doc["vertices"])
    n, b = held["n_params"], held["batch_size"]
    fig, axes = plt.subplots(1, 2, figsize=(BOOK_WIDTH_IN, 4.0))
    t = np.geomspace(checks["tokens"].min() / 1.5, checks["tokens"].max() * 1.2, 40)
    centre, lo, hi = law_band(doc, b, np.full(len(t), float(n)), t)
    axes[0].plot(t, centre, color="C0", label="law (fitting sizes)")
    if lo is not None:
        axes[0].fill_between(t, lo, hi, color="C0", alpha=0.2, lw=0, label="95% band")
    axes[0].scatter(checks["tokens"], checks["lr_star"], color="k", zorder=3, label=f"held-out N = {_fmt_n(n)}")
    ratio = vertices["tokens"] / vertices["n_params"]
    axes[0].axvspan(ratio.min() * n, min(ratio.max() * n, t.max()), color="0.9", zorder=0, label="fitting T/N range")
    axes[0].set(xscale="log", yscale="log", xlabel="training tokens T", ylabel=f"lr* at B = {b:g} tokens")
    errors = np.array([c["loss_error"]["ci95"] or [np.nan, np.nan] for c in held["checkpoints"]])
    pred, measured = checks["loss_predicted"].to_numpy(), checks["loss"].to_numpy()
    axes[1].scatter(checks["tokens"], measured, color="k", zorder=3, label="measured (its lr optimum)")
    yerr = np.stack([pred - measured * (1 + errors[:, 0]), measured * (1 + errors[:, 1]) - pred]).clip(min=0)
    axes[1].errorbar(checks["tokens"], pred, yerr=yerr, fmt="s", color="C1", capsize=3, label="loss law (95%)")
    axes[1].set(xscale="log", xlabel="training tokens T", ylabel="validation loss")
    for ax in axes:
        ax.legend(fontsize=8)
    return _tidy(fig)
