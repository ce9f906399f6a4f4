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
# # Precise scaling laws for Video DiTs, replicated
#
# This book replicates, at small scale and in the open, *Towards Precise Scaling Laws for Video Diffusion
# Transformers* (Yin et al., CVPR 2025) {cite}`yin2025precise`. The paper makes two claims:
#
# 1. a Video DiT's optimal batch size and learning rate are power laws in the model size $N$ and the training
#    tokens $T$;
# 2. fitting the loss law $L(N, T)$ only at those optima predicts the loss, and the compute-optimal model size,
#    far better than fitting it at fixed hyperparameters, which put $N_\mathrm{opt}$ too high (the paper's numbers:
#    {doc}`01b_paper`).
#
# We rebuild the whole chain: a Video DiT whose hot ops are Triton kernels, a procedural video stream, sweeps
# over $(N, B, \eta)$ at a constant learning rate, the SGD derivation of $\eta_\mathrm{opt}(B)$ *measured* on the
# model, fits of every law with bootstrap confidence intervals, and held-out checks. Every number below is
# computed by the `replicate` package from the committed results; the notebooks only load them, call the
# package, plot and say what the numbers mean.

# %% tags=["parameters"]
PROFILE = "default"
RESULTS_DIR = "results/cpu"
IMAGE_DIR = "results/image"
THEORY_DIR = "results/theory"
STAGE_A_DIR = "results/stage_a"

# %% tags=["hide-input"]
from IPython.display import Markdown, display

from replicate import report
from replicate.profile import load_profile
from replicate.report import recipe

study = report.load_study(RESULTS_DIR)
display(Markdown(f"Results rendered: **`{RESULTS_DIR}`** (book profile `{PROFILE}`)."))

# %% [markdown]
# ## The paper's claims: our verdicts
#
# One line per claim, with the one number that decides it (`replicate.report.claim_verdicts`, from the fit,
# from Stage A's measurement of the loss's curvature along $B$, {doc}`06b_stage_a`, and for Eq. 13 from the
# learning-rate law at a fixed batch size, `replicate lrlaw`, whose Stage L also tests the loss law's prediction on a
# held-out model).

# %% tags=["hide-input"]
if study is not None and study.fit is not None:
    stage_a = report.read_summary(f"{STAGE_A_DIR}/summary.json")
    lr_law, heldout = report.load_lr_law(RESULTS_DIR), report.load_heldout()
    ema = report.load_lr_law(RESULTS_DIR, ema=True)
    display(report.table(report.claim_verdicts(study.fit, stage_a, lr_law, heldout, ema)))

# %% [markdown]
# ## Every headline result against the paper
#
# Our value with its 95% bootstrap interval (resampling runs), the paper's value, their ratio, the bootstrap
# resamples that gave no value (the interval comes from the others), and a verdict that cannot overstate
# agreement (`replicate.report.verdict`): *excludes the paper's value* when our interval does; *not
# identified* when it contains the paper's value but is at least as wide as that value (it would contain its
# absence as well); *agrees* only when it contains the paper's value and is narrower than it. A ratio (no effect:
# 1, not 0) is judged so on the log scale (`replicate.report.compare.ratio_verdict`). Our models are
# far smaller than the paper's (below) and trained on procedural pixels rather than VAE latents of real video,
# so constants will differ; exponents, signs and directions are what can be compared.

# %% tags=["hide-input"]
if study is None or study.fit is None:
    display(Markdown(f"**No fitted study in `{RESULTS_DIR}` yet**: run `make book PROFILE={PROFILE}`."))
else:
    table = report.comparison(study.fit)
    display(report.table(table))
    display(Markdown(report.verdict_counts_sentence(table, study.fit)))

# %% [markdown]
# ## What the study shows
#
# The same fit, in sentences (`replicate.report.summary_lines`):

# %% tags=["hide-input"]
if study is not None and study.fit is not None:
    line_search = report.load_json(f"{THEORY_DIR}/line_search.json")
    display(
        Markdown(
            "\n".join(
                f"- {line}"
                for line in report.summary_lines(
                    study.fit, line_search["results"] if line_search else None, report.load_lr_law(RESULTS_DIR)
                )
            )
        )
    )

# %% [markdown]
# Where we differ from the paper, five causes are candidates, and the chapters test what they can.

# %% tags=["hide-input"]
if study is not None:
    display(Markdown(report.scale_sentence(study.runs, RESULTS_DIR)))

# %% [markdown]
# **Steps**: the paper's own batch-size law fixes the number of optimiser steps at its optimum, nearly whatever
# the scale ({doc}`04_sgd_theory` computes it); runs much shorter than that find the optimum at the smallest
# batch, which is what Stage A was designed to get past ({doc}`06b_stage_a`). **Noise**: the loss differences
# between neighbouring $(B, \eta)$ cells are small, so the optimum moves from checkpoint to checkpoint; how they
# compare with the spread between two seeds of one cell is what Stage A measures; the paper reports no seed
# spread. **Data**: procedural grayscale pixels instead of VAE latents of real video. **Evaluation protocol**:
# scored by an EMA of their weights, the same runs put the optimal batch even more firmly at the smallest one
# ({doc}`06_hyperparameter_laws`). What carries over from the SGD theory is its batch-size side, the gradient
# noise scale $B_\mathrm{noise}$, measured on the model; its step size $\eta_\mathrm{max}$ is plain SGD's and sets
# no AdamW learning rate ({doc}`04_sgd_theory`).

# %% [markdown]
# ## What this study cannot say
#
# The limitations of the study rendered here beyond its scale (above) in one place, each with the number that
# sets it (`replicate.report.limitations`); Stages A and L state their own in their chapters. The figures that
# extrapolate mark the range of the data and the 95% band.

# %% tags=["hide-input"]
if study is not None and study.fit is not None:
    stage_a = report.read_summary(f"{STAGE_A_DIR}/summary.json")
    display(
        Markdown(
            "\n".join(
                f"- {line}"
                for line in report.limitations(study.fit, study.runs, stage_a, study.fit_ema, report.load_heldout())
            )
        )
    )

# %% [markdown]
# ## How to re-run it
#
# ```bash
# make book                # the committed study; runs what is missing
# make book PROFILE=smoke  # a minutes-long study end to end (CI)
# make test                # the test suite on the CPU
# ```
#
# `make book` renders `results/study` or `results/gpu` once one holds every run of its profile, else
# `results/cpu`. {doc}`10_reproducibility` lists the command behind every result file and the time each took.
#
# **A lab with its own GPU** re-runs the study at GPU scale:

# %% tags=["hide-input"]
display(Markdown(recipe.gpu_recipe(recipe.gpu_estimate(load_profile("gpu")))))

# %% [markdown]
# ## The chapters
#
# {doc}`01b_paper` lists the paper's numbers; {doc}`02_model_and_kernels` describes the model and its Triton
# kernels; {doc}`03_data` the procedural clips; {doc}`04_sgd_theory` derives and measures the SGD step-size law;
# {doc}`05_sweep` shows the sweep; {doc}`06_hyperparameter_laws`, {doc}`06b_stage_a`, {doc}`06c_lr_law` and
# {doc}`07_loss_law` fit the laws; {doc}`08_isoflop` looks for the compute-optimal size without a loss law;
# {doc}`09_image_dit` repeats the study on images; {doc}`10_reproducibility` tells how to reproduce everything;
# {doc}`11_llm_scale` tests two claims on public language-model sweeps; {doc}`execution` records how this copy was built; the works cited are in the {doc}`bibliography`.
