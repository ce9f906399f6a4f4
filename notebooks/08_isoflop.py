# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Cross-check: the IsoFLOP method
#
# Liang et al. (*Scaling Laws for Diffusion Transformers*) {cite}`liang2024scaling` find $N_\mathrm{opt}(C)$ without a loss law: at
# each compute budget $C$ they fit a parabola of the loss against $\log N$ and take its vertex
# (`replicate.fit.isoflop_compute_law`). Here each model size's loss curve at its optimal hyperparameters is
# read at $T = C / C_\mathrm{token}(N)$ (`replicate.fit.isoflop_losses`, interpolated in log-log, never
# extrapolated), and budgets reached by at least three sizes get a parabola. Liang et al. count $C = 6NT$,
# the first panel; the second uses the exact matmul count. The table below adds the video paper's own count,
# $C_\mathrm{token} = \tfrac{3}{4} N (7 + n_\mathrm{ctx} / d)$ per token ("paper",
# `replicate.config.flops_per_token`), which the figure leaves out.

# %% tags=["parameters"]
PROFILE = "default"
RESULTS_DIR = "results/cpu"
IMAGE_DIR = "results/image"
THEORY_DIR = "results/theory"

# %% tags=["hide-input"]
from IPython.display import Markdown, display

from replicate import report
from replicate.report import figures

study = report.open_study(RESULTS_DIR, PROFILE)
fit = study.fit if study is not None else None

# %% [markdown]
# ## Loss against model size at fixed compute
#
# Each colour is one budget reached by two or more sizes (its FLOPs on the colour bar): each size's loss there
# (filled: the lowest), and, where a parabola in $\log N$ has its vertex inside the sizes, the parabola and its
# vertex $N_\mathrm{opt}(C)$. What to see: whether any budget has its lowest loss between two sizes, which is
# what locates $N_\mathrm{opt}$.

# %% tags=["hide-input"]
if fit is not None:
    figures.show(figures.isoflop_figure(fit), "08_isoflop")

# %% [markdown]
# ## Where $N_\mathrm{opt}$ lies
#
# Per FLOP convention: the budgets that two and three sizes reach, at how many of them the smallest size that
# reaches the budget has the lowest loss, how many vertices lie inside the sizes, and the loss law's
# $N_\mathrm{opt}$ at the same budgets ({doc}`07_loss_law`'s definition) beside the trained sizes
# (`replicate.report.isoflop_summary`).

# %% tags=["hide-input"]
if fit is not None:
    summary = report.isoflop_summary(fit)
    display(report.table(summary))
    display(Markdown(report.isoflop_sentence(summary)))
    display(Markdown(report.paper_box(report.isoflop_lines(fit))))
