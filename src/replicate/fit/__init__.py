"""Fitting the scaling laws: optima, hyperparameter laws, loss law, compute allocation, bootstrap intervals.

Needs only numpy, scipy and pandas (it must import on the GPU image too), and fits anyone's table of runs:
``fit_runs(load_runs("runs.csv"))`` is what ``python -m replicate fit`` does. Units are raw throughout:
N in parameters, T in training tokens, B in tokens per step, C in FLOPs.

Modules: laws (the papers' equations, one function each), table (reading and checking runs tables), optima
(optimal B and lr per (N, T); hyperparameter laws), surface (one surface through every (N, T, B): the headline
B_opt and eta_opt laws), loss (the loss-law fit and its alpha_N profile), interaction (the law with an N x T
interaction), checks (what the loss law stands on), compute (FLOPs per token, N_opt(C), IsoFLOP, flat region),
bootstrap (over runs, or the seeds of each cell), pipeline (the fitting behind `fit_runs`, held-out
predictions), checks (what only the full data's fit computes), document (`fit_runs`: the fit.json document;
`fit_file`: ``replicate fit``), read (the result documents read back: their typed schemas, the one loader and
the rule for the headline B_opt and eta_opt laws), curvature (Stage
A's measurement: ``replicate curvature``), predict (``replicate predict``), synthetic (sweeps with planted
laws), public (the fixed-vs-tuned claim on Porian et al.'s public IsoFLOP points: ``replicate porian``).
"""

from replicate.fit.bootstrap import bootstrap_runs, percentile_interval
from replicate.fit.compute import (
    FlopsPerToken,
    compute_optimal_size,
    fit_compute_law,
    fit_flops_per_token,
    flat_region,
    isoflop_compute_law,
    isoflop_losses,
)
from replicate.fit.document import fit_runs
from replicate.fit.laws import (
    compute_law,
    fit_power_law,
    huber,
    hyperparameter_law,
    loss_law,
    power_law_exponent_se,
    training_compute,
)
from replicate.fit.loss import LossLawFit, fit_loss_law
from replicate.fit.optima import (
    SweepCube,
    cluster_tokens,
    extract_optima,
    fit_hyperparameter_law,
    grid_optima,
    loss_along_batch,
    lr_batch_exponent,
    optima_frame,
)
from replicate.fit.pipeline import predict_holdout
from replicate.fit.synthetic import TRUTH, synthetic_stage_a, synthetic_sweep
from replicate.fit.table import fixed_rows, load_runs, validate_runs
from replicate.paper import paper_laws  # the paper's laws beside ours

__all__ = [
    "TRUTH",
    "FlopsPerToken",
    "LossLawFit",
    "SweepCube",
    "loss_along_batch",
    "bootstrap_runs",
    "cluster_tokens",
    "compute_law",
    "compute_optimal_size",
    "extract_optima",
    "fit_compute_law",
    "fit_flops_per_token",
    "fit_hyperparameter_law",
    "fit_loss_law",
    "fit_power_law",
    "fit_runs",
    "fixed_rows",
    "flat_region",
    "grid_optima",
    "huber",
    "hyperparameter_law",
    "isoflop_compute_law",
    "isoflop_losses",
    "load_runs",
    "loss_law",
    "lr_batch_exponent",
    "optima_frame",
    "paper_laws",
    "percentile_interval",
    "power_law_exponent_se",
    "predict_holdout",
    "synthetic_stage_a",
    "synthetic_sweep",
    "training_compute",
    "validate_runs",
]
