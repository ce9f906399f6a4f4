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
# # Reproducibility
#
# Everything in this book is re-executable from the repository: the chapters are jupytext sources in
# `notebooks/`, executed by papermill against the committed results and rendered by Jupyter Book 1.x. This
# chapter is the guide: the command behind every result, how to re-run the study on a GPU, how an interrupted
# run resumes, how far two trainings of the same runs agree, and how to use the fitted laws.
# {doc}`execution` records how this copy of the book was executed and where each file it read came from.

# %% tags=["parameters"]
PROFILE = "default"
RESULTS_DIR = "results/cpu"
IMAGE_DIR = "results/image"
THEORY_DIR = "results/theory"

# %% tags=["hide-input"]
from IPython.display import Markdown, display

from replicate import report
from replicate.fit.predict import paper_fit
from replicate.profile import load_profile
from replicate.report import recipe

study = report.load_study(RESULTS_DIR)

# %% [markdown]
# ## Commands
#
# Each result file comes from one command; the time column is what the results themselves record (the sweep's
# log, the runs' own training times), on the machine that produced them.

# %% tags=["hide-input"]
display(report.table(recipe.commands_table()))

# %% [markdown]
# The sample model of {doc}`03_data` comes from
# `python -m replicate train --width 128 --depth 6 --heads 8 --batch-clips 8 --lr 1e-3 --tokens 2000000`
# `--frames 4 --val-examples 512 --save-model results/samples/model.pt --out results/samples/model.json`.
#
# **Resuming.** Every run is identified by a hash of its configuration, and `replicate sweep` writes whole
# finished groups atomically into `runs.csv` and skips the runs it finds there: after any interruption (SIGKILL
# included) the same command goes on where it stopped and, on the CPU, ends with the same table as an
# uninterrupted sweep. With `--deadline-s` a call trains only what fits, pauses longer runs into
# `results/<study>/paused/` and the next call continues them. Fits are redone only when their table changed.
#
# ## On your own GPU
#
# A lab with a GPU machine re-runs the study at GPU scale (the `gpu` profile):

# %% tags=["hide-input"]
display(Markdown(recipe.gpu_recipe(recipe.gpu_estimate(load_profile("gpu")))))
display(Markdown(recipe.captured_step_sentence()))

# %% [markdown]
# ## On a Slurm cluster
#
# `python -m replicate sweep --profile gpu --executor submitit` submits the sweep as one Slurm job array
# (submitit); a `[slurm]` table in the profile passes options through (`slurm_partition`, `gpus_per_node`,
# `timeout_min`, ...). Without Slurm the same command runs the jobs as local processes.
#
# ## The lent GPU window
#
# Separate from the recipe above, and not needed to reproduce anything in this book:

# %% tags=["hide-input"]
display(Markdown(recipe.device_window()))

# %% [markdown]
# ### Training steps measured on a GPU
#
# `benchmarks/gpu_steps.py`: milliseconds per optimiser step of a stacked model (6 learning rates), alone and with
# several processes sharing the GPU; the GPU estimate above is computed from these rows.

# %% tags=["hide-input"]
if recipe.GPU_STEPS.is_file():
    steps, where = recipe.gpu_steps_table()
    display(report.table(steps))
    display(Markdown(where))

# %% [markdown]
# ## This build's environment

# %% tags=["hide-input"]
display(report.table(report.environment_table()))

# %% [markdown]
# ## The same runs trained twice
#
# How reproducible is a run beyond bit-identity on one machine? An earlier version of the cpu grid (batch sizes
# up to 16 clips, held-out runs to 1M tokens) was trained twice from scratch with the same configurations and
# seeds, hence the same initialisation, clips, noise and timesteps: once with an AdamW written as foreach operations
# (`results/cpu_first/`) and once with torch's fused AdamW kernel (`results/cpu_rerun/`), the same algorithm
# rounded differently. Every difference below is rounding amplified by training: the floor under any comparison
# of two cells of a sweep, and the fits show how far that floor moves the fitted laws.

# %% tags=["hide-input"]
first, second = report.load_study(f"{RESULTS_DIR}_first"), report.load_study(f"{RESULTS_DIR}_rerun")
timed = report.load_study(f"{RESULTS_DIR}_timed")
if first is not None and second is not None:
    agreement = report.rerun_agreement(first.runs, second.runs)
    display(report.table(agreement, digits=3))
    display(Markdown(report.rerun_sentence(agreement) + " Median |dL/L| (%) by learning rate (rows) and N:"))
    display(report.table(report.rerun_spread(first.runs, second.runs).reset_index(), digits=3))
    if timed is not None:
        display(Markdown(report.timed_rerun_sentence(second.runs, timed.runs, f"{RESULTS_DIR}_timed")))
    if first.fit is not None and second.fit is not None:
        display(report.table(report.exponent_table({"first sweep": first.fit, "second sweep": second.fit})))
        display(Markdown(report.rerun_fit_sentence(first.fit, second.fit)))

# %% [markdown]
# What the sweep does measure of the hyperparameters is the learning rate's growth with the batch at fixed
# $(N, T)$, pooled over the interior learning-rate optima (`replicate.fit.lr_batch_exponent`): its row in the table above. The batch-size
# and learning-rate exponents in $T$ and $N$ rest on optima that sit mostly on the batch grid's edge, where the
# best cell is decided by loss differences as small as the rounding differences above.
#
# ## The grid with and without 16-clip batches
#
# The study in `results/cpu` drops the first grid's 16-clip batches (and stops its held-out runs earlier): the
# profile's design note gives the reasons. Its runs against the same runs of the second training (rounding and a
# changed weight layout of the ensemble's linear layers: the held-out runs' configurations differ, so only the
# fitting runs match), and the fitted exponents of all three fits; the first two are fits of the first grid, so
# the third differs from them by the grid as well:

# %% tags=["hide-input"]
if study is not None and second is not None and first is not None:
    agreement = report.rerun_agreement(study.runs, second.runs)
    display(report.table(agreement, digits=3))
    display(Markdown(report.rerun_sentence(agreement)))
    if study.fit is not None and first.fit is not None and second.fit is not None:
        fits = {"first grid, sweep 1": first.fit, "first grid, sweep 2": second.fit, "this study": study.fit}
        display(report.table(report.exponent_table(fits)))
        display(Markdown(report.fits_agreement_sentence(fits)))

# %% [markdown]
# ## Using the laws: `replicate predict`
#
# What a practitioner takes from the paper: at a model size and a token budget, the batch size and learning rate
# to train with and the loss to expect; or, for a compute budget, the model size and tokens as well.
# `python -m replicate predict --params 1.07e9 --tokens 1e10 --law paper` evaluates the paper's printed laws (no
# intervals: the paper gives none); `--fit results/cpu/fit.json` evaluates ours, with 95% intervals from the
# fit's bootstrap resamples; `--flops 1e22` asks for a compute budget instead; `--json` for machines. Below, the
# paper's held-out model (1.07B parameters, 10B tokens) and a budget of $10^{22}$ FLOPs, with both.

# %% tags=["hide-input"]
queries = {"1.07B parameters, 10B tokens": {"n_params": 1.07e9, "tokens": 1e10}, "C = 1e22 FLOPs": {"flops": 1e22}}
fits = {"paper's laws": paper_fit()}
if study is not None and study.fit is not None:
    fits[f"our fit ({RESULTS_DIR})"] = study.fit
display(report.table(report.prediction_table(fits, queries)))
if study is not None and study.fit is not None:
    for line in report.prediction_notes(study.fit, study.runs):
        display(Markdown(line))
