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
# # The learning-rate law at a fixed batch size (Stage L)
#
# Stage A ({doc}`06b_stage_a`) found the loss rising along $B$ with too little bend to locate its minimum, so the
# paper's batch law cannot be measured here. Its learning-rate law can, at one remove. If the best learning rate follows the paper's law
# along a ridge in $B$,
# $\eta^*(N, T, B) = \eta_\mathrm{opt}(N, T)\,(B / B_\mathrm{opt}(N, T))^r$, then at a *fixed* batch size
#
# $$\eta^* \propto T^{e_T} N^{e_N}, \qquad e_T = \beta_\eta - r\,\beta_B, \qquad e_N = \gamma_\eta - r\,\gamma_B,$$
#
# and the paper's four exponents ($\beta_B = 0.808$, $\gamma_B = 0.191$, $\beta_\eta = -0.045$,
# $\gamma_\eta = -0.162$) predict $e_T$ and $e_N$ from the ridge $r$, which we measure. The learning rate's bowl
# is far steeper than the batch size's, so these exponents can be measured with seeds we can afford.
#
# The fit (`replicate lrlaw`, `replicate.fit.lr_law`) passes one asymmetric bowl in $\ln \eta$ through every
# cell within two octaves of its training group's best rate (and within 50% of its loss: a cell further above is
# near divergence, where the loss is no longer a bowl; such cells are counted in `lr_law.json`):
# $\log L = m(N, T, B, \mathrm{seed}) + c(v)\,v^2$ with
# $v = \ln\eta - (a_B + e_T \ln(T/T_0) + e_N \ln(N/N_0))$, $c$ steeper above the vertex than below. The ridge
# comes from the same bowl with a free intercept per size and batch size. Intervals: a wild cluster bootstrap,
# one weight per training group, a model size, batch size and seed (the runs of every learning rate that share
# that seed's initialisation and data stream; an ensemble may stack two seeds, each member still its own run),
# which keeps every correlation inside a group. The level $m$ is free per seed, so what is computed from the levels (the
# lr-optimal losses, and the loss law and batch gaps below) also takes each run's deviation from its cell's
# seed mean at each checkpoint, times its training group's weight (the same at every $T$) and
# $\sqrt{k/(k-1)}$ for $k$ seeds: for cells with two or more seeds, the seeds' spread is in those intervals.

# %% tags=["parameters"]
PROFILE = "default"
RESULTS_DIR = "results/cpu"
IMAGE_DIR = "results/image"
THEORY_DIR = "results/theory"
STAGE_A_DIR = "results/stage_a"
STAGE_L_DIR = "results/stage_l"

# %% tags=["hide-input"]
from pathlib import Path

from IPython.display import Markdown, display

from replicate import report
from replicate.report import figures, lr_law

STAGE_L = Path(STAGE_L_DIR)
study_name = f"study ({Path(RESULTS_DIR).name})"
study = report.load_study(RESULTS_DIR)
studies = {
    "Stage L": STAGE_L / "lr_law.json",
    "Stage L, EMA readout": STAGE_L / "lr_law_ema.json",
    study_name: Path(RESULTS_DIR) / "lr_law.json",
    "Stage A": Path(STAGE_A_DIR) / "lr_law.json",
}
laws = {name: doc for name, path in studies.items() if (doc := report.read_lr_law(path))}
summary = report.read_summary(STAGE_L / "summary.json")
summary_ema = report.read_summary(STAGE_L / "summary_ema.json")
headline_name = next(iter(laws), None)
headline = laws.get(headline_name)

# %% [markdown]
# ## The exponents, study by study
#
# Each study's exponents of $\eta^*$ in $T$ and $N$ at a fixed batch size, beside the values the paper's laws
# imply at that study's own ridge $r$, with the verdict of the book's rule (*excludes* when the 95% interval
# does; *not identified* when it contains the value but is as wide as it; *agrees* otherwise). Stage L's runs
# appear twice: scored by their raw weights (the paper's constant-learning-rate estimand, the headline) and by
# an EMA of their weights (`lr_law_ema.json`), so that a verdict that depends on the readout shows.

# %% tags=["hide-input"]
if not laws:
    display(Markdown("**No learning-rate law yet.** `make book` writes `lr_law.json` beside each runs table."))
else:
    display(report.table(lr_law.lr_law_table(laws)))
    fit = study.fit if study is not None else None
    estimators = lr_law.ridge_estimators_line(laws[study_name], fit, study_name) if study_name in laws else None
    lines = lr_law.agreement_lines(laws) + lr_law.ridge_carried_lines(laws) + ([estimators] if estimators else [])
    display(Markdown("\n\n".join(lines)))
    words, numbers = report.lr_law_claim(headline, laws.get("Stage L, EMA readout"))
    display(Markdown(report.paper_box([f"{headline_name}: {words} ({numbers})."], "The learning-rate law says")))

# %% [markdown]
# ## The optimal learning rate against $T$ and against $N$
#
# Points: each $(N, T)$'s own vertex (the bowl of its cells alone, with the fit's curvatures; hollow where it
# lies beyond the rates tried). Lines: the fitted law, with its 95% bootstrap band, over the range of the data.
# Dashed: the slope the paper's laws imply at this study's ridge, drawn through the fitted law at the middle
# series, so that the two slopes can be compared by eye.

# %% tags=["hide-input"]
if headline is not None:
    for batch in headline["fit"]["batch_sizes"]:
        fig = figures.lr_star_figure(headline, batch, f"{headline_name}, B = {batch:g} tokens per step")
        figures.show(fig, f"06c_lr_star_B{batch:g}")

# %% [markdown]
# ## The ridge: one $r$ for every size?
#
# The relation between the fixed-$B$ exponents and the paper's assumes that the best learning rate grows with
# $B$ as the same power $r$ at every size (a separable ridge).

# %% tags=["hide-input"]
if headline is not None:
    display(report.table(lr_law.ridge_table(headline)))
    display(Markdown(lr_law.ridge_sentence(headline)))
    display(
        Markdown(
            "What the measured exponents imply for the paper's laws, each given the paper's other one: each line "
            "tests a pair of the paper's exponents (its batch law's and its lr law's) jointly, never one law alone "
            "(the batch law alone is not testable at this scale: {doc}`06b_stage_a`)."
        )
    )
    display(Markdown("\n".join(f"- {line}" for line in lr_law.implied_lines(headline))))

# %% [markdown]
# ## A held-out model
#
# Stage L trains a model 3.8 times larger than its largest fitting size at one batch size. At every checkpoint
# whose $T/N$ lies inside the fitting sizes' range, the law's $\eta^*$ is compared with the held-out model's own
# vertex, and the paper's additive loss law (Eq. 15), fitted to the fitting sizes' losses at their
# learning-rate optima, predicts its loss at its optimum. The same checks on the runs' EMA weights follow
# (`summary_ema.json`), as the exponents' table above gives both readouts. In the figure the left panel's band
# is the law's interval alone; the middle panel is the test, the law's $\eta^*$ over the model's own with its
# interval taken resample by resample (the two share the law's curvatures, so a vertex inside the band can
# still lie off the law); the right panel is the loss law's prediction.

# %% tags=["hide-input"]
if summary is None or not summary.get("heldout"):
    stage_l = report.load_study(STAGE_L)
    display(Markdown(lr_law.heldout_pending(report.study_profile(STAGE_L), stage_l.runs if stage_l else None)))
else:
    figures.show(figures.heldout_figure(summary, laws["Stage L"]), "06c_heldout")
    display(report.table(lr_law.heldout_table(summary)))
    display(Markdown(report.paper_box(lr_law.heldout_lines(summary), "The held-out model says")))
    if summary_ema is not None and summary_ema.get("heldout"):  # the same checks on the runs' EMA weights
        lines = lr_law.heldout_lines(summary_ema)
        display(Markdown(report.paper_box(lines, "The EMA readout's held-out model says")))

# %% [markdown]
# ## The batch size's right flank
#
# The loss at the learning-rate optimum at the larger batch size over that at the smaller one, minus one, per
# $(N, T)$: at a fixed number of tokens a larger batch takes fewer steps; below the critical batch size the
# theory expects it to cost little ({doc}`04_sgd_theory`).

# %% tags=["hide-input"]
if summary is not None and summary.get("batch_gap"):
    display(report.table(lr_law.batch_gap_table(summary)))
    display(Markdown(lr_law.batch_gap_sentence(summary)))

# %% [markdown]
# ## Stage L's design
#
# Its plan and progress, and how far two seeds of one cell lie apart: the noise every interval above is read
# against. Stage L reads each checkpoint out on more validation examples than Stage A did.

# %% tags=["hide-input"]
profile = report.study_profile(STAGE_L)
if profile is not None:
    stage_l = report.load_study(STAGE_L)
    display(Markdown(lr_law.progress_sentence(profile, stage_l.runs if stage_l is not None else None)))
    stage_a = report.read_summary(Path(STAGE_A_DIR) / "summary.json")
    noise = summary and lr_law.seed_noise_sentence(summary, profile, stage_a, report.study_profile(STAGE_A_DIR))
    if noise:
        display(Markdown(noise))
else:
    display(Markdown("Stage L has not been trained yet: `python -m replicate sweep --profile stage_l`."))
