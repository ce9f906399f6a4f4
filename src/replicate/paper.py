"""Every number of the video paper (Yin et al., CVPR 2025, arXiv 2411.17470) that the project compares with,
once, with its equation or section. The book's page of the paper's facts (book/paper.md) cites this module.

The paper states its laws with T and N in billions and B in tokens; `paper_laws` converts them to raw units
(N in parameters, T in training tokens, B in tokens per step, C in FLOPs). Its loss-law values were
reconstructed from secondary sources and checked against the values printed on the paper's figures
(FIGURE_VALUES; tests/test_fit.py holds the laws to them).
"""

from __future__ import annotations

BILLION = 1e9

# Eq. 10, 13 (T, N in billions), Eq. 15 / Table 3 (reconstructed), Eq. 14 and 18 (N in parameters, C in FLOPs)
BATCH_SIZE_LAW = {"coef": 2.1797e4, "exp_tokens": 0.8080, "exp_params": 0.1906}  # B_opt in tokens
LR_LAW = {"coef": 2e-4, "exp_tokens": -0.0453, "exp_params": -0.1619}
LOSS_LAW = {"a": 0.0373, "alpha_tokens": 0.2917, "b": 0.0082, "alpha_params": 0.3188, "l_inf": 0.4856}
COMPUTE_LAW_EMPIRICAL = {"coef": 1.5787, "exp": 0.4146}  # Eq. 14: IsoFLOP-style, from the runs
COMPUTE_LAW_FROM_LOSS = {"coef": 0.8705, "exp": 0.4294}  # Eq. 18: minimising the loss law under C

# The paper's scale (its set-up): fitting models of 0.017B-0.26B parameters on about 2B-12B tokens, held-out
# checks at 1.07B (4B and 10B tokens) and 0.72B parameters (140B tokens)
SCALE = {"n_params": (1.7e7, 1.07e9), "tokens": (2e9, 1.4e11)}

# Headline results (section 4 of the paper; the held-out checks of its Fig. 5 and 6)
HEADLINE = {
    "holdout_rel_error": (0.0003, 0.0015),  # loss-law extrapolation: (1.07B, 10B tokens), (0.72B, 140B tokens)
    "mse_fixed": 4.31e-7,  # loss-law fit MSE with fixed hyperparameters ...
    "mse_optimal": 2.35e-7,  # ... and at the optimal ones
    "n_opt_1e22_optimal": 2.43e9,  # N_opt at C = 1e22 FLOPs with optimal hyperparameters ...
    "n_opt_1e22_fixed": 4.04e9,  # ... and with fixed ones
    "flat_region": 0.01,  # +-30% model size at fixed compute costs less than 1% loss
}
N_OPT_RATIO = HEADLINE["n_opt_1e22_fixed"] / HEADLINE["n_opt_1e22_optimal"]  # fixed hyperparameters overestimate N_opt
MSE_RATIO = HEADLINE["mse_fixed"] / HEADLINE["mse_optimal"]  # the loss law fits worse at fixed hyperparameters


# Values printed on the paper's figures, against which the laws (and their conversion) are checked: the
# held-out heat map's predicted cell (N = 1.07B at T = 4B tokens) and the loss law at the held-out points.
FIGURE_VALUES = {
    "batch_size": {"n_params": 1.07e9, "tokens": 4e9, "value": 6.77e4},  # tokens per step
    "lr": {"n_params": 1.07e9, "tokens": 4e9, "value": 1.86e-4},
    "loss": [
        {"n_params": 1.07e9, "tokens": 4e9, "value": 0.5185},
        {"n_params": 1.07e9, "tokens": 1e10, "value": 0.5127},
        {"n_params": 0.72e9, "tokens": 1.4e11, "value": 0.5035},
    ],
}


def paper_laws() -> dict[str, dict[str, float]]:
    """The video paper's fitted laws in raw units.

    X = c (T/1e9)^e_T (N/1e9)^e_N gives coef = c 1e-9^(e_T + e_N), and a (T/1e9)^-alpha gives a 1e9^alpha. The
    compute laws already use N in parameters and C in FLOPs.
    """

    def raw(law: dict[str, float]) -> dict[str, float]:
        return {**law, "coef": law["coef"] * BILLION ** -(law["exp_tokens"] + law["exp_params"])}

    loss = LOSS_LAW
    return {
        "batch_size_law": raw(BATCH_SIZE_LAW),
        "lr_law": raw(LR_LAW),
        "loss_law": {
            **loss,
            "a": loss["a"] * BILLION ** loss["alpha_tokens"],
            "b": loss["b"] * BILLION ** loss["alpha_params"],
        },
        "compute_law_empirical": dict(COMPUTE_LAW_EMPIRICAL),
        "compute_law_from_loss": dict(COMPUTE_LAW_FROM_LOSS),
    }


def optimal_batch(n_params: float, tokens: float) -> float:
    """B_opt(N, T) of the paper's batch law (Eq. 10), in tokens per step; N in parameters, T in tokens."""
    law = paper_laws()["batch_size_law"]
    return law["coef"] * tokens ** law["exp_tokens"] * n_params ** law["exp_params"]


def optimal_steps(n_params: float, tokens: float) -> float:
    """S_opt = T / B_opt(N, T): the optimiser steps that the paper's batch law (Eq. 10) implies. With
    beta_B + gamma_B = 0.9986 ~ 1 it is (1e9 / c) (T / N)^(1 - beta_B) (N / 1e9)^0.0014 ~ 4.6e4 (T / N)^0.19:
    nearly the same number of steps at every scale."""
    return tokens / optimal_batch(n_params, tokens)
