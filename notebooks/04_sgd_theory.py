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
# # Why the optimal step size depends on the batch size
#
# The paper motivates its hyperparameter laws with an SGD argument (McCandlish et al.
# {cite}`mccandlish2018empirical`): the best learning rate grows with the batch size and saturates, and larger
# models need smaller steps and larger batches. It states the result; here we derive it step by step, and
# then *measure* every quantity in it on quadratics, where the truth is known, and on our Video DiT, which the
# paper does not do. The code is `replicate.theory.noise`.
#
# ## The derivation
#
# Let $L(\theta)$ be the expected loss, $G = \nabla L(\theta)$ its gradient and $H = \nabla^2 L(\theta)$ its
# Hessian at the current parameters.
#
# **Step 1 (the minibatch gradient).** *Assumption: examples are drawn independently, so the minibatch
# gradient is unbiased with covariance $\Sigma / B$*, where $\Sigma$ is the per-example gradient covariance:
#
# $$g_B = G + \epsilon, \qquad \mathbb{E}[\epsilon] = 0, \qquad \mathrm{Cov}[\epsilon] = \Sigma / B.$$
#
# **Step 2 (one step, to second order).** *Assumption: the step is small enough that $L$ is well described
# by its second-order Taylor expansion around $\theta$.* A step $\theta \to \theta - \eta g_B$ changes the loss by
#
# $$\Delta L = -\eta\, G^\top g_B + \tfrac{\eta^2}{2}\, g_B^\top H g_B.$$
#
# **Step 3 (its expectation).** With $\mathbb{E}[g_B] = G$ and
# $\mathbb{E}[g_B^\top H g_B] = G^\top H G + \mathrm{tr}(H \Sigma)/B$ (the trace identity for a quadratic form
# of a random vector),
#
# $$\mathbb{E}[\Delta L] = -\eta\, |G|^2 + \tfrac{\eta^2}{2} \left( G^\top H G + \frac{\mathrm{tr}(H\Sigma)}{B} \right).$$
#
# **Step 4 (the best step).** This is a parabola in $\eta$, least at
#
# $$\eta_\mathrm{opt}(B) = \frac{|G|^2}{G^\top H G + \mathrm{tr}(H\Sigma)/B}
#   = \frac{\eta_\mathrm{max}}{1 + B_\mathrm{noise}/B},$$
#
# with
#
# $$\eta_\mathrm{max} = \frac{|G|^2}{G^\top H G}, \qquad B_\mathrm{noise} = \frac{\mathrm{tr}(H\Sigma)}{G^\top H G}.$$
#
# (`replicate.theory.sgd.eta_opt`). Small batches ($B \ll B_\mathrm{noise}$): $\eta_\mathrm{opt} \approx \eta_\mathrm{max} B / B_\mathrm{noise}$,
# linear in $B$. Large batches: $\eta_\mathrm{opt} \to \eta_\mathrm{max}$, and more examples per step buy nothing.
#
# Putting $\eta_\mathrm{opt}$ back into the parabola of step 3 gives the best expected drop of one step. For a
# parabola $-\eta a + \tfrac12 \eta^2 c$ the minimum is $-a^2 / (2c)$, here with $a = |G|^2$ and
# $c = G^\top H G + \mathrm{tr}(H\Sigma)/B$:
#
# $$\mathbb{E}[\Delta L](\eta_\mathrm{opt}) = -\frac{|G|^4}{2\,(G^\top H G + \mathrm{tr}(H\Sigma)/B)}
#   = -\frac{\Delta L_\mathrm{max}}{1 + B_\mathrm{noise}/B}, \qquad
#   \Delta L_\mathrm{max} = \frac{|G|^4}{2\, G^\top H G},$$
#
# where $\Delta L_\mathrm{max}$ is the largest drop one step can make: the drop with the exact gradient
# ($B \to \infty$) at its best step $\eta_\mathrm{max}$.
#
# $B_\mathrm{noise}$ needs the Hessian. McCandlish et al. also define the *simple noise scale*
#
# $$B_\mathrm{simple} = \frac{\mathrm{tr}(\Sigma)}{|G|^2},$$
#
# which needs only gradients: it equals $B_\mathrm{noise}$ when $H$ is a multiple of the identity, and otherwise
# differs by how the curvature weights the noise. Both are measured below.
#
# **Step 5 (steps against examples).** Taking every step at $\eta_\mathrm{opt}$, the loss drop per step is
# $\Delta L_\mathrm{max}/(1 + B_\mathrm{noise}/B)$, a fraction $1/(1 + B_\mathrm{noise}/B)$ of what an exact
# gradient would give. Reaching a given loss therefore takes
#
# $$S = S_\mathrm{min}\,(1 + B_\mathrm{noise}/B)$$
#
# steps, where $S_\mathrm{min}$ is the number of steps with exact gradients ($B \to \infty$), and
#
# $$E = B S = S_\mathrm{min}\,(B + B_\mathrm{noise}) = E_\mathrm{min}\,(1 + B/B_\mathrm{noise}), \qquad
#   E_\mathrm{min} = S_\mathrm{min}\, B_\mathrm{noise},$$
#
# examples, $E_\mathrm{min}$ being the fewest examples, reached as $B \to 0$. Eliminating $B$ gives the hyperbola
# $(S/S_\mathrm{min} - 1)(E/E_\mathrm{min} - 1) = 1$ (`replicate.theory.sgd.steps_examples_tradeoff`), whose knee
# $B_\mathrm{crit} = E_\mathrm{min}/S_\mathrm{min} = B_\mathrm{noise}$ is the batch size that balances time (steps) and
# compute (examples).
# *This step assumes that $B_\mathrm{noise}$ stays constant while the loss falls*; the measurements at the end of
# this chapter test that.
#
# **Step 6 (from theory to scaling laws).** *Assumptions (heuristic): larger models have larger smoothness
# (curvature along the gradient), and training toward lower loss shrinks $|G|^2$ faster than the noise.*
# Larger curvature lowers $\eta_\mathrm{max}$ (larger models need smaller steps, the paper's $\gamma_\eta < 0$);
# a falling $G^\top H G$ with persistent noise raises $B_\mathrm{noise}$ as training proceeds, and with it the
# critical batch $B_\mathrm{crit}$: later in training a larger batch costs fewer extra examples. The step from
# here to power laws in $N$ and $T$ is empirical, in the paper as here.
#
# ## What the theory predicts at a fixed token budget, and what it does not
#
# The paper's laws are stated at a fixed number of training tokens $T$, i.e. a fixed number of examples
# $E = T / n_\mathrm{ctx}$. Step 5 answers that question too: at the best step size, one step on $B$ examples
# lowers the loss by $\Delta L_\mathrm{max} / (1 + B_\mathrm{noise}/B)$, so each *example* is worth
#
# $$\frac{\Delta L_\mathrm{max}}{B + B_\mathrm{noise}},$$
#
# which falls as $B$ grows. At a fixed budget of examples the one-step theory therefore makes **the smallest
# batch the best**, at every $T$: it has no interior optimum and nothing that grows with $T$. Larger batches
# only buy fewer steps (wall-clock time), never a lower loss per example. The paper's $B_\mathrm{opt}$ is
# interior and grows with $T$, so it needs an ingredient the derivation leaves out:
#
# - **A constant learning rate's noise floor.** The derivation takes every step at its own best size. The
#   sweeps keep one constant rate, and around a minimum the iterate then fluctuates with an excess loss of order
#   $\eta\, \mathrm{tr}(H\Sigma)/B$. A small batch must run at a small rate to keep that floor low, and pays for
#   it in progress per step; the floor matters more the lower the loss, so the balance moves to larger batches
#   as $T$ grows. (This is also why the EMA of the weights, which averages the floor away, finds its optimum at
#   the smallest batch: chapter 6.)
# - **Adam.** Its per-coordinate normalisation changes how the step's size and noise scale with $B$.
# - **A finite number of steps.** A run of $S$ steps cannot make more than $S$ steps' progress, however good each
#   example is; the laws below say how many steps that is.
#
# **Step 6 and this section do not contradict each other**: they answer two questions. $B_\mathrm{crit}$ is the
# batch beyond which more examples per step stop saving steps: the best batch for someone who pays for time
# (steps) and compute (examples) together. It grows as training proceeds because $B_\mathrm{noise}$ does. The
# best batch at a fixed token budget $T$, the paper's $B_\mathrm{opt}$, asks only for the lowest loss from a fixed
# number of examples; by step 5 that is the smallest batch, at every $T$, however large $B_\mathrm{crit}$ has
# grown. A growing $B_\mathrm{crit}$ therefore says that large batches become cheap later in training, not that
# they become better; a $B_\mathrm{opt}$ that grows with $T$ ($\beta_B > 0$) needs one of the three ingredients
# above.
#
# ## The paper's batch law fixes the number of steps
#
# The paper's law is $B_\mathrm{opt} = c\, (T/10^9)^{\beta_B} (N/10^9)^{\gamma_B}$ tokens per step. The number of
# optimiser steps at the optimum is then
#
# $$S_\mathrm{opt} = \frac{T}{B_\mathrm{opt}} = \frac{10^9}{c} \left(\frac{T}{N}\right)^{1 - \beta_B}
#   \left(\frac{N}{10^9}\right)^{1 - \beta_B - \gamma_B}$$
#
# (`replicate.paper.optimal_steps`). With the paper's exponents, $1 - \beta_B - \gamma_B$ is almost zero, so
# $S_\mathrm{opt}$ depends on the tokens per parameter alone, and weakly: the same number of steps, whatever the
# model's size. The cell below puts the paper's numbers in. This is the single most useful fact for designing
# a study like this one: **the smallest-batch runs must last a few $S_\mathrm{opt}$**, whatever the model and
# the clip size (which only sets what a step costs); in a study whose runs are much shorter than $S_\mathrm{opt}$,
# the paper's law puts the optimal batch below the smallest one it tries, so its grid holds no optimum to find
# (the cpu study's optima sat mostly on the grid's edges: {doc}`06_hyperparameter_laws`).
#
# :::{admonition} Exercise 1
# On the quadratic $L(\theta) = \tfrac12 h\theta^2$ in one dimension with per-example gradient noise of variance
# $\sigma^2$, compute $\eta_\mathrm{max}$ and $B_\mathrm{noise}$ at the point $\theta$. How does $B_\mathrm{noise}$ move as
# $\theta \to 0$?
# :::
#
# ```{admonition} Solution
# :class: dropdown
# $G = h\theta$, $H = h$, $\Sigma = \sigma^2$: $\eta_\mathrm{max} = h^2\theta^2 / (h^3\theta^2) = 1/h$ and
# $B_\mathrm{noise} = h\sigma^2/(h^3\theta^2) = \sigma^2 / (h^2 \theta^2)$. As training approaches the minimum,
# $B_\mathrm{noise}$ grows as $1/\theta^2$: the gradient signal vanishes while its noise does not, so ever larger
# batches save steps at little cost in examples. This is step 6's mechanism for a critical batch that grows
# during training; at a fixed budget of examples the smallest batch still gives the lowest loss.
# ```
#
# :::{admonition} Exercise 2
# Two batch sizes $B_s < B_b$ give minibatch gradients with $\mathbb{E}|g_B|^2 = |G|^2 + \mathrm{tr}(\Sigma)/B$.
# Solve for unbiased estimates of $|G|^2$ and $\mathrm{tr}(\Sigma)$ from $|g_{B_s}|^2$ and $|g_{B_b}|^2$.
# :::
#
# ```{admonition} Solution
# :class: dropdown
# Two linear equations in two unknowns:
# $|G|^2 \approx (B_b |g_{B_b}|^2 - B_s |g_{B_s}|^2)/(B_b - B_s)$ and
# $\mathrm{tr}(\Sigma) \approx (|g_{B_s}|^2 - |g_{B_b}|^2)/(1/B_s - 1/B_b)$, unbiased because each is linear in
# the measured expectations. The same trick on $g^\top H g$ (with $H g$ a Hessian-vector product on an
# independent batch) separates $G^\top H G$ from $\mathrm{tr}(H\Sigma)$; `replicate.theory.noise.measure` does both and
# gets standard errors from a bootstrap over draws. Their ratios ($B_\mathrm{noise}$, $\eta_\mathrm{max}$) are
# consistent but not unbiased.
# ```

# %% tags=["parameters"]
PROFILE = "default"
RESULTS_DIR = "results/cpu"
IMAGE_DIR = "results/image"
THEORY_DIR = "results/theory"

# %% tags=["hide-input"]
from pathlib import Path

from IPython.display import Markdown, display

from replicate import report
from replicate.report import figures, noise, paper_tables

theory = {
    name: report.load_json(Path(THEORY_DIR) / f"{name}.json") for name in ("quadratic", "dit_noise", "line_search")
}
if not all(theory.values()):
    display(Markdown(f"**No noise-scale measurements in `{THEORY_DIR}` yet**: run `python -m replicate theory`."))
elif theory["quadratic"]["quick"]:
    display(
        Markdown(
            "*These are the seconds-long `--quick` measurements of the smoke build: few draws, "
            "tiny runs; the committed study has the real ones.*"
        )
    )

# %% tags=["hide-input"]
display(Markdown(paper_tables.s_opt_sentence()))
display(Markdown("$S_\\mathrm{opt}$, the steps of the paper's optimal batch, at three model sizes:"))
display(report.table(paper_tables.s_opt_table()))
study = report.load_study(RESULTS_DIR)
if study:
    display(Markdown(report.steps_sentence(study.runs, RESULTS_DIR)))

# %% [markdown]
# ## The estimators where the truth is known
#
# On random quadratics of several sizes and spectra (`replicate.theory.noise.QuadraticProblem`), every estimate
# against its closed form, with $\pm 2$ standard errors. What to see: the points on the diagonal, and the
# error bars covering it.

# %% tags=["hide-input"]
if theory["quadratic"]:
    quad = report.quadratic_estimates(theory["quadratic"])
    figures.show(figures.quadratic_estimates_figure(quad), "04_quadratic_estimates")
    display(Markdown(noise.quadratic_sentence(quad)))

# %% [markdown]
# ## Does $\eta_\mathrm{opt}(B)$ predict the best SGD step on the Video DiT?
#
# At one checkpoint of a small model, the noise scale is measured, and for several batch sizes a line search
# finds the plain-SGD step that most lowers a held-out loss after one step, averaged over minibatches
# (`replicate.theory.noise.sgd_step_gain`, `best_step`). Curve: the theory's $\eta_\mathrm{opt}(B)$; dots: the line
# search. What to see: whether the measured optimum rises with $B$ and saturates as predicted.

# %% tags=["hide-input"]
if theory["line_search"]:
    figures.show(figures.line_search_figure(theory["line_search"]["results"]), "04_line_search")
    display(report.table(noise.line_search_table(theory["line_search"]["results"])))
    display(Markdown(report.line_search_scope(theory["line_search"]["results"], theory["dit_noise"]["results"])))

# %% [markdown]
# ## How the noise scale moves with $N$ and $T$ on the Video DiT
#
# $B_\mathrm{noise}$, $B_\mathrm{simple}$ and $\eta_\mathrm{max}$ at several checkpoints of runs of three sizes
# (raw weights, AdamW runs). The paper's laws say $B_\mathrm{opt}$ rises with $T$ and $N$ and
# $\eta_\mathrm{opt}$ falls with $N$; if the SGD argument carries over, $B_\mathrm{noise}$ should rise with $T$
# and $N$ and $\eta_\mathrm{max}$ fall with $N$.

# %% tags=["hide-input"]
if theory["dit_noise"]:
    dit = report.dit_noise_scales(theory["dit_noise"])
    figures.show(figures.noise_scale_figure(dit), "04_noise_scales")
    display(report.table(noise.noise_scale_table(dit)))
    display(
        Markdown(
            "95% intervals from the least-squares standard errors of the log-log fit "
            "(`replicate.fit.power_law_exponent_se`), over the measurements plotted above."
        )
    )
    display(Markdown(report.paper_box(noise.noise_scale_lines(dit))))

# %% [markdown]
# ## Steps against examples with the measured noise scale
#
# Step 5's trade-off with the $B_\mathrm{noise}$ measured above (its smallest and largest values), and the batch
# sizes of the study rendered here as dots. What to see: whether the study's batches sit left of the knee
# ($B < B_\mathrm{noise}$: almost no extra examples, many more steps) or right of it. The curve assumes a constant
# $B_\mathrm{noise}$, which the measurements above do not show.

# %% tags=["hide-input"]
if theory["dit_noise"] and study:
    batches = sorted(study.runs["batch_samples"].unique().tolist())
    figures.show(figures.tradeoff_figure(dit, batches), "04_tradeoff")
    display(Markdown(report.tradeoff_sentence(dit, batches)))
