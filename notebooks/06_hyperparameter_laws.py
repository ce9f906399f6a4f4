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
# # Hyperparameter laws
#
# The paper's first claim: the optimal batch size and learning rate are power laws in the training tokens
# $T$ and the model size $N$ (its Eqs. 10 and 13, `replicate.fit.hyperparameter_law`):
#
# $$B_\mathrm{opt} = \alpha_B\, T^{\beta_B} N^{\gamma_B}, \qquad
#   \eta_\mathrm{opt} = \alpha_\eta\, T^{\beta_\eta} N^{\gamma_\eta}.$$
#
# At each $(N, T)$ the optimum is interpolated over the $(B, \eta)$ grid (`replicate.fit.grid_optima`: a
# parabola in $\log\eta$ through the best cell and its neighbours for each $B$, then one in $\log B$; the
# landscape is steep toward divergence, so no symmetric bowl is assumed beyond three cells), and the laws are
# fitted by least squares in log space to the interior optima (to all of them, edge ones included, when too
# few are interior: the fit then says so). The 95% intervals come from bootstrap resamples of runs
# (`replicate.fit.bootstrap_runs`; their number is printed below the table). Units: $B$ in tokens per step,
# $T$ and $N$ raw.

# %% tags=["parameters"]
PROFILE = "default"
RESULTS_DIR = "results/cpu"
IMAGE_DIR = "results/image"
THEORY_DIR = "results/theory"

# %% tags=["hide-input"]
from IPython.display import Markdown, display

from replicate import report
from replicate.fit import paper_laws
from replicate.report import figures, hyperparameter_laws

study = report.open_study(RESULTS_DIR, PROFILE)
fit = study.fit if study is not None else None

# %% [markdown]
# ## The fitted laws

# %% tags=["hide-input"]
if fit is not None:
    display(report.table(hyperparameter_laws.law_table(fit)))
    display(Markdown(hyperparameter_laws.fitted_on_sentence(fit)))

# %% [markdown]
# ## Optimal batch size
#
# Filled dots: interpolated optima; hollow: optima on the grid edge. Solid lines: our law at each $N$;
# dashed: the paper's law at our $(N, T)$. What to see: whether $B_\mathrm{opt}$ rises with $T$ (the paper's
# $\beta_B = 0.81$) and with $N$ ($\gamma_B = 0.19$), and how far our scale sits from the paper's numbers.

# %% tags=["hide-input"]
if fit is not None:
    figures.show(
        figures.hyperparameter_law_figure(fit, "batch_size", paper_laws()["batch_size_law"]), "06_batch_size_law"
    )

# %% [markdown]
# ## Optimal learning rate
#
# The same for $\eta_\mathrm{opt}$ (AdamW, constant rate after warm-up). The paper finds it nearly flat in $T$
# ($\beta_\eta = -0.045$) and falling with $N$ ($\gamma_\eta = -0.16$): larger models need smaller steps.

# %% tags=["hide-input"]
if fit is not None:
    figures.show(figures.hyperparameter_law_figure(fit, "lr", paper_laws()["lr_law"]), "06_lr_law")

# %% [markdown]
# ## Why the optimal batch size sits on the grid's edge
#
# Most of our optima sit on an edge of the batch grid, the smallest batch of one clip or the largest (the box
# below counts them), and which edge changes from one training of the study to the next
# ({doc}`10_reproducibility`). Two things explain
# it. First, the paper's own law, evaluated at our $(N, T)$, asks for batches *smaller* than one clip (the
# dashed lines above). Second, along the
# batch-size axis the loss barely changes once each batch size gets its own best learning rate: the figure
# shows, at the last checkpoint, each batch size's best loss relative to the best one (left) and its best
# learning rate (right). The SGD chapter's step 5 predicts such flatness only below the noise scale, where a
# fixed budget of examples is spent about equally well in many small steps or fewer large ones; the noise scale
# measured on the model puts the study's batches on both sides of it (the box after the figure), so the
# one-step theory alone does not explain it. The learning rate does follow the batch size: plain SGD would
# scale it linearly in $B$, Adam's stochastic-differential-equation limit {cite}`malladi2022sdes` as
# $\sqrt{B}$. What to see: curves on the left that are flat within a few percent and cross each other (the
# seed-to-seed spread they must be read against is measured in {doc}`06b_stage_a`), and parallel lines on the
# right whose slope is the pooled exponent (`replicate.fit.lr_batch_exponent`). Stage L measures the same
# slope with two seeds per cell, at fixed $(N, T)$, with a narrower interval ({doc}`06c_lr_law`'s ridge $r$): where
# the two intervals disagree with a rule, that one is the sharper test.

# %% tags=["hide-input"]
if fit is not None:
    by_batch = hyperparameter_laws.batch_axis(study.runs)
    slope = fit.get("lr_batch_exponent") or {}
    figures.show(figures.batch_ridge_figure(by_batch, by_batch["tokens"].max(), slope.get("value")), "06_batch_ridge")
    dit_noise = report.load_json(f"{THEORY_DIR}/dit_noise.json")
    lines = hyperparameter_laws.batch_axis_lines(fit, study.runs, by_batch, dit_noise)
    display(Markdown(report.paper_box(lines, title="The batch-size axis at our scale")))

# %% [markdown]
# ## The held-out model
#
# A model about 4x larger than the largest fitting model was trained on a small $(B, \eta)$ grid fixed in
# advance from the pilots (the design note of the profile, `results/cpu/profile.toml`), before the laws were
# fitted. The heat map marks the laws' prediction (white square) and the observed, interpolated optimum (star).

# %% tags=["hide-input"]
if fit is not None and fit.get("holdout"):
    n, picks, marks, observed = hyperparameter_laws.holdout_heatmaps(fit)
    display(Markdown(f"The held-out model: N = {n:,.0f}."))
    display(report.table(hyperparameter_laws.holdout_table(fit)))
    figures.show(figures.heatmaps(study.runs, observed, [n], picks, marks), "06_heldout_heatmaps")
    edge = hyperparameter_laws.holdout_edge_sentence(fit)
    if edge:
        display(Markdown(edge))

# %% [markdown]
# ## The evaluation protocol moves the optimum
#
# Every run's loss is also recorded for an EMA of its weights (`val_loss_ema`, `replicate.training.train`), the weights
# diffusion models are usually sampled from. Fitted on that loss instead (`fit_ema.json`, `replicate fit
# --loss-column val_loss_ema`), the same runs give the figure and table below. What to see: with EMA weights
# the optimal batch size stays at or near the smallest batch. One explanation, not tested here: averaging the
# iterates removes the noise floor that a constant learning rate leaves, the very cost that makes small
# batches pay for their extra steps; if so, the batch-size trade-off the paper measures is partly a property of
# how the loss is read out (the paper does not publish its readout). Where every optimum of a readout sits on
# one grid value, its law has no exponent: the table says "not identified" rather than print the fit's
# rounding; where they all sit at one batch size, its eta_opt exponents are those of an lr law at that B.

# %% tags=["hide-input"]
if study is not None and study.fit_ema is not None:
    fig = figures.hyperparameter_law_figure(study.fit_ema, "batch_size", paper_laws()["batch_size_law"])
    fig.axes[0].set_title("optimal batch size, EMA weights' loss")
    figures.show(fig, "06_batch_size_law_ema")
    display(report.table(report.exponent_table({"raw weights": fit, "EMA weights": study.fit_ema})))
elif study is not None:
    display(Markdown(f"*No fit of the EMA weights' loss in `{RESULTS_DIR}` yet (fit_ema.json).*"))

# %% tags=["hide-input"]
if fit is not None:
    table = report.comparison(fit)
    display(
        Markdown(
            report.paper_box(
                report.verdict_lines(table, ["B_opt", "eta_opt"])
                + [
                    "Verdicts: *excludes the paper's value* when our 95% interval does, *not identified* when it "
                    "contains it but is at least as wide as it, *agrees* only when it contains it and is narrower."
                ]
            )
        )
    )
