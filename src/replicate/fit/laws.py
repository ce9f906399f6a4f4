"""The papers' equations, one function each, and the log-space least squares that fits the power laws.

Units everywhere: N in parameters, T in training tokens, B in tokens per step, C in FLOPs. The video paper's
own values are in replicate.paper.
"""

from __future__ import annotations

import numpy as np

ArrayLike = float | np.ndarray

LOSS_PARAMS = ("a", "alpha_tokens", "b", "alpha_params", "l_inf")
HYPER_PARAMS = ("coef", "exp_tokens", "exp_params")


def loss_law(
    n_params: ArrayLike, tokens: ArrayLike, a: float, alpha_tokens: float, b: float, alpha_params: float, l_inf: float
) -> np.ndarray:
    """Video paper Eq. 15: validation loss at optimal hyperparameters, L(N, T) = a T^-alpha_T + b N^-alpha_N + L_inf."""
    t, n = np.asarray(tokens, dtype=float), np.asarray(n_params, dtype=float)
    return a * t**-alpha_tokens + b * n**-alpha_params + l_inf


def hyperparameter_law(
    tokens: ArrayLike, n_params: ArrayLike, coef: float, exp_tokens: float, exp_params: float
) -> np.ndarray:
    """Video paper Eqs. 10 and 13: an optimal hyperparameter X = coef T^exp_tokens N^exp_params.

    X is B_opt (tokens per step) or eta_opt (learning rate); T in tokens, N in parameters.
    """
    t, n = np.asarray(tokens, dtype=float), np.asarray(n_params, dtype=float)
    return coef * t**exp_tokens * n**exp_params


def n_opt_exponent(loss: dict[str, float]) -> float:
    """The exponent of N_opt(C) that minimising a loss law (Eq. 15) under C proportional to N T gives:
    alpha_T / (alpha_T + alpha_N)."""
    return loss["alpha_tokens"] / (loss["alpha_tokens"] + loss["alpha_params"])


def compute_law(flops: ArrayLike, coef: float, exp: float) -> np.ndarray:
    """Video paper Eqs. 14 and 18 (and Liang et al.'s N_opt): compute-optimal model size N_opt = coef C^exp."""
    return coef * np.asarray(flops, dtype=float) ** exp


def training_compute(flops_per_token: ArrayLike, tokens: ArrayLike) -> np.ndarray:
    """Training compute C = C_token T (FLOPs), C_token in FLOPs per token (6N, the paper's count, or exact)."""
    return np.asarray(flops_per_token, dtype=float) * np.asarray(tokens, dtype=float)


def huber(residual: ArrayLike, delta: float) -> np.ndarray:
    """Huber loss: r^2 / 2 for |r| <= delta, delta (|r| - delta / 2) beyond (Chinchilla approach 3)."""
    r = np.abs(np.asarray(residual, dtype=float))
    return np.where(r <= delta, 0.5 * r * r, delta * (r - 0.5 * delta))


def _log_least_squares(y: np.ndarray, x: tuple[np.ndarray, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(design, log y, coefficients) of log y = b_0 + sum_k b_k log x_k; None when rank deficient or when a value
    is not positive and finite (LAPACK would print its own complaint and return NaNs)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        design = np.column_stack([np.ones(len(y)), *(np.log(np.asarray(v, dtype=float)) for v in x)])
        logy = np.log(np.asarray(y, dtype=float))
    if not (np.isfinite(design).all() and np.isfinite(logy).all()):
        return None
    if len(logy) < design.shape[1] or np.linalg.matrix_rank(design) < design.shape[1]:
        return None
    beta, *_ = np.linalg.lstsq(design, logy, rcond=None)
    return design, logy, beta


def fit_power_law(y: np.ndarray, *x: np.ndarray) -> tuple[float, tuple[float, ...], float]:
    """Least squares in log space: log y = log coef + sum_k exp_k log x_k.

    Returns (coef, exponents, rmse of log y); NaNs when the design is rank deficient (e.g. one model size).
    """
    fitted = _log_least_squares(y, x)
    if fitted is None:
        return float("nan"), (float("nan"),) * len(x), float("nan")
    design, logy, beta = fitted
    rmse = float(np.sqrt(np.mean((design @ beta - logy) ** 2)))
    return float(np.exp(beta[0])), tuple(float(v) for v in beta[1:]), rmse


def power_law_exponent_se(y: np.ndarray, *x: np.ndarray) -> tuple[float, ...]:
    """Ordinary-least-squares standard errors of `fit_power_law`'s exponents (independent, equal-variance log
    residuals assumed): for laws fitted to a handful of independent measurements, where no runs to resample
    exist. NaNs when there are no residual degrees of freedom."""
    fitted = _log_least_squares(y, x)
    if fitted is None or len(y) <= len(x) + 1:
        return (float("nan"),) * len(x)
    design, logy, beta = fitted
    sigma2 = float(np.sum((design @ beta - logy) ** 2)) / (len(y) - design.shape[1])
    cov = sigma2 * np.linalg.inv(design.T @ design)
    return tuple(float(np.sqrt(cov[k, k])) for k in range(1, design.shape[1]))
