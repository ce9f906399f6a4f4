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
# # Stage A: is the loss curved along the batch size?
#
# The paper's batch law (its Eq. 10) can be read as a law for the number of optimizer steps: with
# $B_\mathrm{opt} = \alpha_B T^{\beta_B} N^{\gamma_B}$ tokens per step, the optimal run takes
# $S_\mathrm{opt} = T / B_\mathrm{opt}$ steps, and with $\beta_B = 0.81$ that number barely depends on the
# scale. The cpu study's runs were too short for it (below): its $B_\mathrm{opt}$ lay below its batch grid, and
# its optima sat mostly on the grid's edges ({doc}`06_hyperparameter_laws`). Stage A trains one model long enough for the law's optimum to lie inside the batch grid, with two
# seeds per cell, and measures the one unknown that decides whether the law can be tested at this scale at
# all: how much one doubling of $B$ away from the optimum costs (the curvature $c$, in loss per squared
# doubling, at each batch size's best learning rate), against how much two seeds of the same cell differ.
#
# The measurement (`replicate curvature`, `replicate.fit.curvature`) fits one surface through every
# checkpoint, batch size and learning rate (`replicate.fit.surface`):
# $\log L(T, B, \eta) = m(T) + c_B (\ln B - \ln B_\mathrm{opt}(T))^2 + c_\eta (\ln \eta - \ln \eta^*(T, B))^2$
# with $B_\mathrm{opt} \propto T^{\beta_B}$, $\eta^*$ the best learning rate (a power law in $T$ times
# $(B / B_\mathrm{opt})^r$, the ridge along which the best learning rate grows with $B$), $c_\eta$ steeper above
# $\eta^*$ than below, and $c = c_B \ln(2)^2$. Its intervals come from a bootstrap that redraws the seeds of
# every grid cell, and from the least-squares profile of $c_B$.
# The verdict: *go* at $c \ge 0.3\%$, *no-go* below $0.1\%$, *marginal* between: thresholds fixed before the run
# (the box below gives the seeds per cell that each would need at the noise measured).

# %% tags=["parameters"]
PROFILE = "default"
RESULTS_DIR = "results/cpu"
IMAGE_DIR = "results/image"
THEORY_DIR = "results/theory"
STAGE_A_DIR = "results/stage_a"

# %% tags=["hide-input"]
from pathlib import Path

from IPython.display import Markdown, display

from replicate import report
from replicate.report import figures, stage_a

STAGE_A = Path(STAGE_A_DIR)
study = report.load_study(STAGE_A)
summary = report.read_summary(STAGE_A / "summary.json")
profile = report.study_profile(STAGE_A)
if study is None or profile is None:
    display(Markdown("**Stage A has no results yet.** `python -m replicate sweep --profile stage_a` trains it."))

# %% [markdown]
# ## Why the cpu study could not see an optimum in $B$

# %% tags=["hide-input"]
cpu = report.load_study(RESULTS_DIR)
if cpu is not None and profile is not None:
    display(Markdown(stage_a.steps_sentence(cpu.runs, study.runs if study else None, profile, RESULTS_DIR)))

# %% [markdown]
# ## The design

# %% tags=["hide-input"]
if study is not None and profile is not None:
    display(report.table(report.grid_table(study.runs)))
    display(Markdown(report.design_sentence(profile)))

# %% [markdown]
# ## The loss along $B$, checkpoint by checkpoint
#
# Each point is the loss at that batch size's best learning rate (the one with the lowest mean over the
# seeds), in percent above the fitted surface's minimum at that checkpoint, which lies at its $B_\mathrm{opt}$
# (the triangle), often below the smallest batch trained. The bar spans the seeds; the curves are the fitted
# surface along its best learning rate. Where a readout's surface did not converge (its box says so), its figure
# has no curves or triangles and its percentages are above the checkpoint's best batch.

# %% tags=["hide-input"]
if study is not None:
    for column, name in (("val_loss", "raw weights"), ("val_loss_ema", "EMA weights")):
        part = summary if column == "val_loss" else (summary or {}).get("ema")
        fig = figures.batch_curvature_figure(stage_a.seed_spread(study.runs, column), part)
        fig.axes[0].set_title(f"Stage A, {name}")
        figures.show(fig, f"06b_loss_along_B_{column}")

# %% [markdown]
# ## What Stage A measured

# %% tags=["hide-input"]
if study is not None and summary is not None and profile is not None:
    display(report.table(stage_a.summary_table(summary)))
    done = study.runs["run_id"].nunique()
    display(Markdown(report.paper_box(stage_a.stage_a_lines(summary, done, len(profile.runs)), "Stage A says")))
elif study is not None:
    display(Markdown("**No summary yet.** `make book` writes `results/stage_a/summary.json` from its runs."))

# %% [markdown]
# ## What a loss that rises along $B$ without bending means

# %% tags=["hide-input"]
if study is not None and summary is not None:
    display(Markdown(stage_a.rise_sentence(study.runs, summary)))

# %% [markdown]
# Its shape is what the SGD theory expects at a fixed token budget ({doc}`04_sgd_theory`, "What the theory
# predicts at a fixed token budget"): each example is worth $\Delta L_\mathrm{max} / (B + B_\mathrm{noise})$, so
# with $T$ fixed the smallest batch is best, with no interior optimum, and below the critical batch
# {cite}`mccandlish2018empirical` the cost of a larger one is small. Its size is not predicted here: that needs
# $B_\mathrm{noise}$, which was measured on the cpu study's models ({doc}`06_hyperparameter_laws`, where the
# one-step theory alone does not explain the flatness), not on Stage A's. An interior $B_\mathrm{opt}$ that grows
# with $T$, as the paper's law has, needs an ingredient that penalises small batches: a constant learning rate's
# noise floor, Adam's normalisation (with hyperparameters such as $\beta_2$ or weight decay held fixed as $B$
# changes {cite}`bergsma2025power`), or a finite number of steps. Stage A trains AdamW without weight decay at the
# smallest batches these clips allow, and finds the loss rising along $B$ with almost no bend (above): the
# theory's shape at a fixed budget, not a failure of the training. It leaves the
# paper's interior $B_\mathrm{opt}$ unmeasurable at this scale; whether a larger model, trained where its batches
# approach the critical one, curves along $B$ is the measurement a GPU is for. Its profile is not written
# yet: it is sized from the step times a first GPU call measures ({doc}`10_reproducibility`).
