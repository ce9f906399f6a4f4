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
# # The paper's numbers
#
# Every number of Yin et al. {cite}`yin2025precise` that this book compares with, with its equation and its
# units. All code takes them from one module, `replicate.paper`; the tables below are printed from it. The
# paper states its laws with $T$ and $N$ in billions and $B$ in tokens per step; `replicate.paper.paper_laws`
# converts them to raw units ($N$ in parameters, $T$ in training tokens, $C$ in FLOPs), the units of every law
# in this book.
#
# The paper's full text was not available to us: its loss-law parameters were reconstructed from secondary
# sources, and the form and values were then checked against the numbers printed on the paper's figures
# (last table).

# %% tags=["parameters"]
PROFILE = "default"
RESULTS_DIR = "results/cpu"
IMAGE_DIR = "results/image"
THEORY_DIR = "results/theory"

# %% tags=["hide-input"]
from IPython.display import Markdown, display

from replicate import report
from replicate.report import paper_tables

# %% [markdown]
# ## The laws
#
# Eq. 10, the optimal batch size, $B_\mathrm{opt} = \alpha_B T^{\beta_B} N^{\gamma_B}$ (tokens per step); Eq. 13,
# the optimal learning rate, $\eta_\mathrm{opt} = \alpha_\eta T^{\beta_\eta} N^{\gamma_\eta}$; Eq. 15 (Table 3),
# the loss at the optimal hyperparameters, $L = a T^{-\alpha_T} + b N^{-\alpha_N} + L_\infty$; Eq. 14, the
# compute-optimal model size fitted to the runs, and Eq. 18, the same derived from the loss law,
# $N_\mathrm{opt} = c\, C^{e}$ with $C$ in FLOPs.

# %% tags=["hide-input"]
display(report.table(paper_tables.laws_table(), digits=5))

# %% [markdown]
# ## The headline results we compare with

# %% tags=["hide-input"]
display(report.table(paper_tables.headline_table(), digits=4))

# %% [markdown]
# ## The check against the paper's figures
#
# The paper's held-out heat map (a 1.07B-parameter model at 4B tokens) marks the cell its laws predict, and its
# figures print the loss law's values at the held-out points. Our conversion of the laws to raw units gives:

# %% tags=["hide-input"]
display(report.table(paper_tables.figure_check_table(), digits=4))
display(Markdown(paper_tables.eq18_sentence()))
