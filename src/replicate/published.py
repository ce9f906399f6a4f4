"""Published laws for the optimal batch size and learning rate, beside the video paper's: facts as their papers
state them, each under its citation key in references.bib (report.public turns them into the book's table).

The question they answer here is the video paper's gamma_B > 0: does B_opt grow with the model size N at a fixed
amount of data? A law in the data alone (T, D) says no; a law in compute alone, or one fitted along a fixed
ratio of tokens to parameters, cannot tell (N and the data move together along it). Units as each paper writes
them: N in parameters, D and T in tokens, C in FLOPs, B in tokens (sequences x length) per step.
"""

from __future__ import annotations

from replicate.paper import BATCH_SIZE_LAW, LR_LAW

SUPPORTS = ("yes", "no", "cannot tell")  # the `gamma_b_positive` column
# N_opt ~ C^exp with fixed hyperparameters and C = 6 N D (Liang et al.), which the video paper sets beside its own
FIXED_HP_N_OPT_EXPONENT = 0.5681

HYPERPARAMETER_LAWS: tuple[dict, ...] = (
    {
        "key": "yin2025precise",
        "work": "Yin et al. (video DiTs)",
        "arxiv": "2411.17470",
        "setting": "video diffusion transformers",
        "batch_law": f"B_opt = {BATCH_SIZE_LAW['coef']:.4g} T^{BATCH_SIZE_LAW['exp_tokens']:.4g} "
        f"N^{BATCH_SIZE_LAW['exp_params']:.4g} (T, N in billions)",
        "lr_law": f"eta_opt = {LR_LAW['coef']:.3g} T^{LR_LAW['exp_tokens']:.4g} N^{LR_LAW['exp_params']:.4g}",
        "b_variable": "T",
        "b_exp_data": BATCH_SIZE_LAW["exp_tokens"],
        "b_exp_params": BATCH_SIZE_LAW["exp_params"],
        "gamma_b_positive": "yes",
        "why": "its fitted N exponent of B_opt (Eq. 10) is positive",
    },
    {
        "key": "li2025predictable",
        "work": "Step Law (Li et al.)",
        "arxiv": "2503.04715",
        "setting": "language models, dense and mixture-of-experts",
        "batch_law": "B_opt = 0.58 D^0.571",
        "lr_law": "eta_opt = 1.79 N^-0.713 D^0.307",
        "b_variable": "D",
        "b_exp_data": 0.571,
        "b_exp_params": 0.0,
        "gamma_b_positive": "no",
        "why": "B_opt depends on the data alone; the law has no N term",
    },
    {
        "key": "bergsma2025power",
        "work": "Power Lines (Bergsma et al.)",
        "arxiv": "2505.13738",
        "setting": "language models",
        "batch_law": "B_opt ~ D^0.383",
        "lr_law": None,
        "b_variable": "D",
        "b_exp_data": 0.383,
        "b_exp_params": 0.0,
        "gamma_b_positive": "no",
        "why": "B_opt (and the critical batch size) are power laws in D, independent of N",
    },
    {
        "key": "vonrutte2025scaling",
        "work": "von Rütte et al. (diffusion language models)",
        "arxiv": "2512.10858",
        "setting": "discrete diffusion language models",
        "batch_law": "B_opt ~ T^0.82",
        "lr_law": None,
        "b_variable": "T",
        "b_exp_data": 0.82,
        "b_exp_params": 0.0,
        "gamma_b_positive": "no",
        "why": "B_opt grows with the training tokens, with no model-size effect",
    },
    {
        "key": "deepseek2024llm",
        "work": "DeepSeek LLM",
        "arxiv": "2401.02954",
        "setting": "language models",
        "batch_law": "B_opt = 0.2920 C^0.3271",
        "lr_law": "eta_opt = 0.3118 C^-0.1250",
        "b_variable": "C",
        "b_exp_data": None,
        "b_exp_params": None,
        "gamma_b_positive": "cannot tell",
        "why": "a law in compute alone (C = non-embedding FLOPs per token x tokens): N and the data move together",
    },
    {
        "key": "porian2024resolving",
        "work": "Porian et al.",
        "arxiv": "2406.19146",
        "setting": "language models",
        "batch_law": "B_opt fitted as a power law in N alone",
        "lr_law": "eta_opt fitted as a power law in N alone",
        "b_variable": "N",
        "b_exp_data": None,
        "b_exp_params": None,
        "gamma_b_positive": "cannot tell",
        "why": "fitted in N along one ratio of tokens to parameters: N and the data move together",
    },
)
