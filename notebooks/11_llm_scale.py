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
# # The paper's claims at language-model scale
#
# At this project's scale two of the paper's claims cannot be tested: the batch law, because the loss bends
# too little along $B$ to locate $B_\mathrm{opt}$ ({doc}`06b_stage_a`), and the claim that fitting at fixed hyperparameters
# overestimates the compute-optimal size, because no compute budget of the study brackets $N_\mathrm{opt}$
# ({doc}`08_isoflop`). Public sweeps of language models reach the scale where both can be looked at. They are
# not video diffusion transformers: what follows says what holds for those models, and nothing about a video
# DiT that their data cannot carry.

# %% tags=["parameters"]
PROFILE = "default"
RESULTS_DIR = "results/cpu"
IMAGE_DIR = "results/image"
THEORY_DIR = "results/theory"
PUBLIC_DIR = "results/public"

# %% tags=["hide-input"]
from pathlib import Path

from IPython.display import Markdown, display

from replicate import report
from replicate.report import figures

study = report.load_study(RESULTS_DIR)
porian = report.load_json(Path(PUBLIC_DIR) / "porian.json")

# %% [markdown]
# ## Published hyperparameter laws
#
# The laws for the optimal batch size and learning rate that language-model sweeps published, as printed by
# their authors ($D$ and $T$ are training tokens, $C$ compute), beside the video paper's; this replication's
# row says why it prints no batch law of its own where its optima sit on the batch-size edge. The paper's $\gamma_B = 0.19$ (the optimal batch grows with the model at fixed $T$) is the claim
# the last column asks about.

# %% tags=["hide-input"]
display(report.table(report.hyperparameter_laws_table(study.fit if study is not None else None)))

# %% [markdown]
# ## Fixed against tuned hyperparameters: Porian et al.'s runs
#
# Porian et al. {cite}`porian2024resolving` trained decoder-only language models of 16 sizes (5.2M to 902M
# parameters) at FLOP budgets from 1.25e16 to 2.56e19, once with one learning rate, batch size and AdamW
# $\beta_2$ for every size ("base") and once with the three tuned per size ("tuned"), and published the runs
# under the MIT licence. Their IsoFLOP points are committed in `data/public/porian/` with the source commit
# and the licence. `replicate porian` fits every configuration with this project's own fitter
# (`replicate fit`, $C = 6NT$, runs as the bootstrap's unit): $N_\mathrm{opt}(C)$ by the IsoFLOP method
# ({doc}`08_isoflop`) and by the loss law, and the ratio $N_\mathrm{opt}(\text{base}) / N_\mathrm{opt}(\text{tuned})$
# at budgets up to 1e22 FLOPs, with 95% intervals over paired resamples. The video paper reports 1.66x at 1e22
# (fixed over optimal hyperparameters).
#
# A configuration is named by its hyperparameters, warm-up and learning-rate decay, Porian et al.'s steps from
# Kaplan et al.'s setup to their own: `base` (one learning rate, batch size and $\beta_2$ for every size) or
# `tuned` (the three set per size); a `long` warm-up (Kaplan et al.'s) or their corrected `short` one; and the
# decay: `kaplan` (one cosine schedule over a long horizon, read at each budget on the way), `chinchilla` (a
# cosine schedule ending at each budget) or `const` (a constant rate after warm-up). The files' README in
# `data/public/porian/` gives the details.

# %% tags=["hide-input"]
if porian is None:
    display(Markdown(f"**No results yet** (`{PUBLIC_DIR}/porian.json`): `make book` writes them."))
else:
    frame = report.porian_n_opt_frame(porian)
    fig = figures.porian_n_opt_figure(frame, report.porian_budget_range(), porian["headline_base"], porian["tuned"])
    figures.show(fig, "11_porian_n_opt")
    display(report.table(report.porian_exponent_table(porian)))

# %% [markdown]
# The ratio at each budget, by both estimators (the IsoFLOP law and the loss law), for the base configuration
# with the corrected warm-up and Kaplan et al.'s decay against the tuned one:

# %% tags=["hide-input"]
if porian is not None:
    display(report.table(report.porian_ratio_table(porian)))
    display(
        Markdown(
            report.paper_box(
                report.porian_sentences(porian), "Fixed against tuned hyperparameters at language-model scale"
            )
        )
    )
