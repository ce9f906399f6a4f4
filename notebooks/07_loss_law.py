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
# # The loss law and compute allocation
#
# The paper's second claim: at the optimal hyperparameters the loss follows (its Eq. 15,
# `replicate.fit.loss_law`)
#
# $$L(N, T) = a\,T^{-\alpha_T} + b\,N^{-\alpha_N} + L_\infty,$$
#
# and fitting it *only at the optima* predicts held-out losses and the compute-optimal model size far better
# than fitting it at one fixed $(B, \eta)$. The fit (`replicate.fit.fit_loss_law`) minimises the summed Huber
# loss ($\delta = 10^{-3}$) of log residuals over parameters in log space from a grid of starting points, as
# in Besiroglu et al.'s Chinchilla replication {cite}`besiroglu2024chinchilla` of Hoffmann et al.
# {cite}`hoffmann2022training`, and checks convergence; the 95% intervals resample runs.
#
# Compute: $C = C_\mathrm{token}(N)\, T$ (`replicate.fit.training_compute`). **$N_\mathrm{opt}(C)$, the one
# definition this book and `replicate predict` use, is the model size that minimises the fitted loss law at a
# budget of $C$ FLOPs** (`replicate.fit.compute_optimal_size`; fit.json's `compute_law.n_opt_at_reference` at
# $10^{22}$ FLOPs). A power law $N_\mathrm{opt} = k\, C^{e}$ fitted to it over the data's budgets
# (`replicate.fit.fit_compute_law`, the form of the paper's Eq. 18) gives its exponent there; it is not used to
# extrapolate, because far beyond the data the minimiser is not a power law of the same exponent.

# %% tags=["parameters"]
PROFILE = "default"
RESULTS_DIR = "results/cpu"
IMAGE_DIR = "results/image"
THEORY_DIR = "results/theory"

# %% tags=["hide-input"]
from IPython.display import Markdown, display

from replicate import report
from replicate.fit import paper_laws
from replicate.paper import HEADLINE
from replicate.report import figures, loss_law, lr_law

study = report.open_study(RESULTS_DIR, PROFILE)
fit = study.fit if study is not None else None

# %% [markdown]
# ## The fitted loss law

# %% tags=["hide-input"]
if fit is not None:
    display(report.table(loss_law.law_table(fit)))
    display(Markdown(loss_law.convergence_sentence(fit)))

# %% [markdown]
# ## Fit and extrapolation
#
# Dots: the loss at the interpolated optimum of each $(N, T)$; lines: the law, over the data's range of $T$.
# Squares: the held-out model's best observed loss; crosses: the law's prediction there (never fitted), on the
# dashed line extrapolated in $N$ with its 95% bootstrap band. What to see: how closely the law tracks each size,
# and the held-out error below.

# %% tags=["hide-input"]
if fit is not None:
    figures.show(figures.loss_law_figure(fit), "07_loss_law")
    if fit.get("holdout"):
        display(report.table(report.holdout_table(fit)))
        display(Markdown(loss_law.holdout_sentence(fit)))
    if (stage_l := report.load_heldout()) is not None:
        said = " ".join(lr_law.heldout_lines(stage_l)[1:])
        display(Markdown(f"Stage L ({{doc}}`06c_lr_law`) tests the same claim. {said}"))

# %% [markdown]
# ## What the law stands on
#
# An optimum on the edge of its $(B, \eta)$ grid is the best cell the grid has, an upper bound on the loss at
# the true optimum, not an optimum: the law fitted to such points is biased where they crowd. Three checks
# (`loss_law` in fit.json): how many of its points sit on an edge; the law refitted to the interior optima
# alone; and each fitting size predicted by the law fitted to the other sizes (leave one size out), the
# honest measure of how well the law extrapolates in $N$.

# %% tags=["hide-input"]
if fit is not None and "leave_one_size_out" in fit["loss_law"]:
    display(report.table(report.loss_law_checks(fit)))
    display(Markdown(report.loss_law_checks_sentence(fit)))
elif fit is not None:
    display(Markdown("*This fit.json predates the checks: `make book` refits it when its table changes.*"))

# %% [markdown]
# ## Compute-optimal model size: optimal vs fixed hyperparameters
#
# The same loss law fitted to the runs at the fixed $(B, \eta)$ of the profile gives its own
# $N_\mathrm{opt}(C)$. The paper finds that the fixed-hyperparameter law overestimates $N_\mathrm{opt}$ at
# $C = 10^{22}$ FLOPs ({doc}`01b_paper` has its two values). The figure runs from the data's budgets (shaded
# grey, the trained sizes lighter) far beyond them to $10^{22}$ FLOPs; the band is the 95% bootstrap
# band of $N_\mathrm{opt}(C)$ at the optimal hyperparameters, the bar its interval at $10^{22}$. The dotted line is
# the paper's own Eq. 18, drawn from its printed coefficients, and the open markers its two values at $10^{22}$.

# %% tags=["hide-input"]
if fit is not None:
    figure = figures.compute_allocation_figure(fit, paper_laws()["compute_law_from_loss"], HEADLINE)
    figures.show(figure, "07_compute_allocation")
    display(Markdown(report.n_opt_sentence(fit)))
    display(report.table(report.n_opt_table(fit)))
    display(report.table(report.fixed_ratio_table(fit)))

# %% [markdown]
# ## The flat region
#
# At fixed compute, how much loss does a model $k$ times larger or smaller than $N_\mathrm{opt}$ cost? The
# paper: within $\pm 30\%$ of $N_\mathrm{opt}$ the loss rises by less than 1%. The grey band is $\pm 30\%$; the
# curves are at the data's largest budget and, extrapolated, at $10^{22}$ FLOPs, each with its 95% bootstrap band.

# %% tags=["hide-input"]
if fit is not None and fit.get("flat_region"):
    figures.show(figures.flat_region_figure(fit), "07_flat_region")
    display(Markdown(report.flat_region_sentence(fit)))

# %% [markdown]
# ## Consistency: the loss law against $N_\mathrm{opt}(C)$
#
# If $C \propto N T$, minimising $a T^{-\alpha_T} + b N^{-\alpha_N}$ at fixed $C$ gives
# $N_\mathrm{opt} \propto C^{\alpha_T / (\alpha_T + \alpha_N)}$. The paper's exponents as reconstructed here
# do not give the exponent it reports for its Eq. 18 ({doc}`01b_paper`). Ours and the paper's, the same way:

# %% tags=["hide-input"]
if fit is not None:
    display(report.table(loss_law.n_opt_exponent_table(fit)))

# %% tags=["hide-input"]
if fit is not None:
    table = report.comparison(fit)
    display(
        Markdown(
            report.paper_box(
                report.verdict_lines(
                    table,
                    ["loss exponent", "N_opt exponent", "N_opt(fixed", "loss-fit MSE", "held-out", "loss increase"],
                )
            )
        )
    )
