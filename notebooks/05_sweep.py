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
# # The sweep
#
# The paper's method is a grid of trainings: for each model size $N$, every batch size $B$ and learning rate
# $\eta$ of a grid, one run at a **constant** learning rate, validated at many token counts $T$. Each run
# gives the loss at every checkpoint, so one grid yields the loss landscape over $(B, \eta)$ at every
# $(N, T)$. This chapter shows the grid and the landscapes; the next two fit laws to them.

# %% tags=["parameters"]
PROFILE = "default"
RESULTS_DIR = "results/cpu"
IMAGE_DIR = "results/image"
THEORY_DIR = "results/theory"

# %% tags=["hide-input"]
from IPython.display import Markdown, display

from replicate import report
from replicate.report import figures

study = report.open_study(RESULTS_DIR, PROFILE, need_fit=False)

# %% [markdown]
# ## The grid
#
# One row per model: its shape, $N$ (non-embedding parameters, `replicate.config.count_params`), and the
# batch sizes (in clips; tokens per clip in its own column), learning rates and token range it was trained
# on. How the grid was chosen is written in the profile; its design note follows the table.

# %% tags=["hide-input"]
if study is not None:
    display(report.table(report.grid_table(study.runs)))
    display(Markdown(report.runs_sentence(study.runs)))
    display(Markdown(report.design_sentence(study.profile)))

# %% [markdown]
# ## Training curves
#
# Validation loss of every fitting run against training tokens (thin lines), and the best loss over the
# $(B, \eta)$ grid at each $T$ for each size (dots). At a constant learning rate the loss is noisy from one
# checkpoint to the next: a run's loss can rise between two checkpoints (the thin lines' spikes).

# %% tags=["hide-input"]
if study is not None:
    figures.show(figures.loss_curves(study.runs), "05_loss_curves")

# %% [markdown]
# ## The loss landscape over $(B, \eta)$
#
# In the style of the paper's Figure 4: at a few $(N, T)$, each cell is the validation loss in % above the
# best cell, which has a white frame; `x` marks diverged runs, and the red star the optimum interpolated between
# the cells by `replicate.fit.grid_optima`, the point every law of the next chapters stands on. The landscape is
# shallow near the optimum and steep toward divergence (large $\eta$). In the paper the optimal batch size grows
# with $T$; {doc}`06_hyperparameter_laws` shows where ours falls. The box below also locates each optimum as
# DeepSeek do {cite}`deepseek2024llm`: the centre of the settings within 0.25% of the best.

# %% tags=["hide-input"]
if study is not None and study.fit is not None:
    picks = report.heatmap_picks(study.runs)
    figures.show(figures.heatmaps(study.runs, study.fit["optima"], *picks), "05_heatmaps")

# %% [markdown]
# ## The best cell and the interpolated optimum
#
# Where the star leaves the framed cell, the two answers differ. For every $(N, T)$: the grid's best cell, the
# interpolated optimum, how far apart they are in doublings of $B$ and of $\eta$, how much lower the interpolated
# loss is than the best cell's, and on which edge of the grid the optimum sits (`replicate.report.optima_table`).

# %% tags=["hide-input"]
if study is not None and study.fit is not None:
    display(Markdown(report.optima_sentence(study.runs, study.fit)))
    display(report.table(report.optima_table(study.runs, study.fit)))

# %% tags=["hide-input"]
if study is not None and study.fit is not None:
    display(Markdown(report.paper_box(report.landscape_lines(study.runs, study.fit, picks))))
