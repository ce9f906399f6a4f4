"""The loss law with an N x T interaction, beside the paper's additive one (on the cpu study
the local elasticity d log L / d log N grows with T, which an additive law cannot show).

Kaplan et al.'s L(N, D) with an irreducible term, in our units:

    L(N, T) = ((N_c / N)^(alpha_N / alpha_T) + T_c / T)^alpha_T + L_inf

Larger models gain more from more data: at fixed N the law flattens at a floor set by N. Which form to trust
is decided out of sample (fit.document: each fitting size predicted from the others), not by the in-sample
fit, where the form with the interaction always wins a little.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import least_squares

PARAMS = ("n_c", "t_c", "alpha_params", "alpha_tokens", "l_inf")


def interaction_law(
    n_params: np.ndarray,
    tokens: np.ndarray,
    n_c: float,
    t_c: float,
    alpha_params: float,
    alpha_tokens: float,
    l_inf: float,
) -> np.ndarray:
    """Kaplan's L(N, T) (module docstring); N in parameters, T in tokens."""
    n, t = np.asarray(n_params, dtype=float), np.asarray(tokens, dtype=float)
    return ((n_c / n) ** (alpha_params / alpha_tokens) + t_c / t) ** alpha_tokens + l_inf


def fit_interaction_law(n_params: np.ndarray, tokens: np.ndarray, loss: np.ndarray) -> dict:
    """Least squares on log residuals from a grid of starts; returns the parameters, the residual sum of squares
    and `converged` (the solver's own test: this law is a cross-check, not the headline)."""
    n, t, y = (np.asarray(v, dtype=float) for v in (n_params, tokens, loss))
    ln, lt, logy = np.log(n), np.log(t), np.log(y)

    def unpack(q: np.ndarray) -> dict[str, float]:
        return {
            "n_c": float(np.exp(q[0])),
            "t_c": float(np.exp(q[1])),
            "alpha_params": float(q[2]),
            "alpha_tokens": float(q[3]),
            "l_inf": float(np.exp(q[4])),
        }

    def residuals(q: np.ndarray) -> np.ndarray:
        u = np.exp(q[2] / q[3] * (q[0] - ln))
        v = np.exp(q[1] - lt)
        return np.log((u + v) ** q[3] + np.exp(q[4])) - logy

    best = None
    for a_n in (0.15, 0.5):
        for a_t in (0.15, 0.5):
            for share in (0.25, 0.75):  # the part of the smallest loss above the floor
                floor = np.log((1 - share) * y.min())
                q0 = np.array([ln.mean(), lt.mean(), a_n, a_t, floor])
                fit = least_squares(
                    residuals,
                    q0,
                    bounds=([-50, -50, 0.01, 0.01, -30], [80, 80, 3, 3, np.log(y.max())]),
                    method="trf",
                    max_nfev=2000,
                )
                if best is None or fit.cost < best.cost:
                    best = fit
    return {**unpack(best.x), "rss": float(2 * best.cost), "converged": bool(best.success), "n_points": len(y)}
