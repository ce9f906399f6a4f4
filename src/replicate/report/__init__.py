"""What the book shows: a study's results loaded, compared with the paper, turned into sentences and tables.

Pure pandas and numpy (figures: replicate.plots; the paper's numbers: replicate.paper). One job per module:
study (loading a results folder), compare (verdicts and comparison tables), findings (sentences), tables
(heat maps, grids, provenance, boxes), rerun (two sweeps of the same runs), public (the paper's claims at
language-model scale: published laws, Porian et al.'s runs). The notebooks call these names from here.
"""

from replicate.report.compare import (
    COMPARISON_COLUMNS,
    EXPONENTS,
    ci_text,
    comparison,
    exponent_table,
    fitted_exponent,
    fmt_ci,
    loss_law_checks,
    loss_law_checks_sentence,
    lr_scaling_sentence,
    ratio,
    verdict,
    verdict_lines,
    worst_holdout_error,
)
from replicate.report.findings import (
    claim_verdicts,
    limitations,
    line_search_scope,
    lr_law_claim,
    scale_sentence,
    summary_lines,
)
from replicate.report.public import (
    hyperparameter_laws_table,
    porian_exponent_table,
    porian_ratio_table,
    porian_sentences,
)
from replicate.report.rerun import identical_rows, rerun_agreement, rerun_fit_sentence, rerun_sentence, rerun_spread
from replicate.report.study import Study, load_json, load_lr_law, load_study, open_study
from replicate.report.tables import (
    clip_sentence,
    dit_noise_scales,
    grid_table,
    heatmap,
    kernel_speed_sentence,
    kernel_speed_table,
    neighbourhood_spread,
    paper_box,
    provenance_table,
    quadratic_estimates,
    study_models,
    table,
)

__all__ = [
    "EXPONENTS",
    "COMPARISON_COLUMNS",
    "Study",
    "ci_text",
    "clip_sentence",
    "claim_verdicts",
    "comparison",
    "dit_noise_scales",
    "exponent_table",
    "fitted_exponent",
    "fmt_ci",
    "lr_scaling_sentence",
    "loss_law_checks",
    "loss_law_checks_sentence",
    "ratio",
    "grid_table",
    "heatmap",
    "hyperparameter_laws_table",
    "identical_rows",
    "kernel_speed_sentence",
    "kernel_speed_table",
    "limitations",
    "line_search_scope",
    "lr_law_claim",
    "scale_sentence",
    "load_json",
    "load_lr_law",
    "load_study",
    "open_study",
    "neighbourhood_spread",
    "paper_box",
    "porian_exponent_table",
    "porian_ratio_table",
    "porian_sentences",
    "provenance_table",
    "quadratic_estimates",
    "rerun_agreement",
    "rerun_fit_sentence",
    "rerun_sentence",
    "rerun_spread",
    "study_models",
    "summary_lines",
    "table",
    "verdict",
    "verdict_lines",
    "worst_holdout_error",
]
