"""One surface through every (N, T, B) of a sweep, instead of one parabola vertex per (N, T).

The per-(N, T) estimator (optima.grid_optima) needs an interior optimum at every (N, T), drops the others, and
is biased toward a zero T exponent when optima crowd a grid edge (the audit's Monte-Carlo: 0.12-0.77 for a
true 0.81). Here every (N, T, B) informs one fit:

    log L*(N, T, B) = m(N, T) + c_B (ln B - ln B_opt(N, T))^2,   ln B_opt = a + beta ln(T / T0) + gamma ln(N / N0)

where L*(N, T, B) is the loss at the best learning rate of that batch size (optima.batch_profile: a parabola
in log lr through the best cell), m(N, T) is free per (N, T), and T0, N0 are the geometric means of the data.
c_B is the curvature along B in log-loss per ln(B)^2; times ln(2)^2 it is the relative loss increase one
doubling of B away from the optimum costs. An (N, T) whose optimum lies beyond the grid still constrains the
exponents through the slope it shows. The learning rate follows as a linear surface through the batch
profile's interior lr optima:

    ln lr*(N, T, B) = a_eta + beta_eta ln(T / T0) + gamma_eta ln(N / N0) + r (ln B - ln B_opt(N, T))

so that eta_opt(N, T) = exp(a_eta + ...) is the learning rate at B_opt, and r is the lr-B ridge.
With one model size the N exponents are not identified and are fixed at 0.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

LN2_SQUARED = np.log(2.0) ** 2
MIN_CURVATURE = 1e-6  # c_B per ln(B)^2 below which the fit has found no minimum along B (its bound is 0)


def _centred(values: np.ndarray) -> tuple[np.ndarray, float]:
    logs = np.log(np.asarray(values, dtype=float))
    return logs - logs.mean(), float(np.exp(logs.mean()))


def fit_batch_surface(profile: pd.DataFrame, init: dict | None = None, curvature: float | None = None) -> dict:
    """The B surface through a batch profile (columns n_params, tokens, batch_size, val_loss; raw units).

    Returns c_B (per ln B^2), curvature_per_doubling2 (c_B ln(2)^2), the B_opt law (coef, exp_tokens,
    exp_params: B_opt = coef T^exp_tokens N^exp_params, B in the table's unit), t0, n0, the fitted B_opt at each
    (N, T) with its offset m, the residual sd of log L, the number of points, and `converged`. NaNs where the
    data cannot identify the surface (fewer than 3 batch sizes, or no (N, T) with one). `init` (an earlier
    result on the same (N, T), e.g. the full data's for a bootstrap resample) is the one starting point.
    `curvature` holds c_B (per ln B^2) at that value and fits the rest (a profile of the fit along c_B).
    """
    p = profile[np.isfinite(profile["val_loss"])].reset_index(drop=True)
    groups, keys = pd.factorize(pd.MultiIndex.from_arrays([p["n_params"], p["tokens"]]), sort=True)
    n_groups = len(keys)
    x = np.log(p["batch_size"].to_numpy(dtype=float))
    y = np.log(p["val_loss"].to_numpy(dtype=float))
    lt, t0 = _centred(p["tokens"].to_numpy())
    ln, n0 = _centred(p["n_params"].to_numpy())
    one_size = p["n_params"].nunique() < 2
    failed = {
        "c_b": np.nan,
        "curvature_per_doubling2": np.nan,
        "coef": np.nan,
        "exp_tokens": np.nan,
        "exp_params": np.nan,
        "t0": t0,
        "n0": n0,
        "rmse_log": np.nan,
        "n_points": len(p),
        "n_groups": n_groups,
        "one_size": one_size,
        "converged": False,
        "optima": [],
    }
    if p["batch_size"].nunique() < 3 or n_groups < 1 or len(p) < n_groups + 4:
        return failed

    def unpack(q: np.ndarray) -> tuple[np.ndarray, float, float, float, float]:
        m, (a, beta, c_b), gamma = q[:n_groups], q[n_groups : n_groups + 3], 0.0 if one_size else q[-1]
        return m, a, beta, gamma, c_b

    def residuals(q: np.ndarray) -> np.ndarray:
        m, a, beta, gamma, c_b = unpack(q)
        return m[groups] + c_b * (x - a - beta * lt - gamma * ln) ** 2 - y

    offsets = np.zeros((len(p), n_groups))
    offsets[np.arange(len(p)), groups] = 1.0

    def jacobian(q: np.ndarray) -> np.ndarray:
        """Analytic: a finite-difference Jacobian made a bootstrap resample's fit cost a second."""
        _, a, beta, gamma, c_b = unpack(q)
        d = x - a - beta * lt - gamma * ln
        columns = [-2 * c_b * d, -2 * c_b * d * lt, d * d] + ([] if one_size else [-2 * c_b * d * ln])
        return np.column_stack([offsets, *columns])

    # the curvature cannot be negative: where the loss has no minimum along B the fit stops at c_B = 0 (not
    # converged) instead of wandering off with B_opt
    lower = np.full(n_groups + 3 + (0 if one_size else 1), -np.inf)
    lower[n_groups + 2] = 0.0

    best = np.array([y[groups == g].min() for g in range(n_groups)])
    starts = [
        np.concatenate([best, [a0, 0.5, 0.05], [] if one_size else [0.2]]) for a0 in np.quantile(x, [0.25, 0.5, 0.75])
    ]
    if init is not None and init["converged"] and len(init["optima"]) == n_groups:  # one start: the earlier fit's
        a0 = (
            np.log(init["coef"])
            + init["exp_tokens"] * np.log(t0)
            + (0 if one_size else init["exp_params"] * np.log(n0))
        )
        starts = [
            np.concatenate(
                [
                    [o["log_loss"] for o in init["optima"]],
                    [a0, init["exp_tokens"], init["c_b"]],
                    [] if one_size else [init["exp_params"]],
                ]
            )
        ]
    free = np.arange(len(lower))
    if curvature is not None:  # c_B held: the solver moves the other parameters only
        free = np.delete(free, n_groups + 2)
        for q0 in starts:
            q0[n_groups + 2] = curvature

    def full(qf: np.ndarray, q0: np.ndarray) -> np.ndarray:
        q = q0.copy()
        q[free] = qf
        return q

    fits = [
        least_squares(
            lambda qf, q0=q0: residuals(full(qf, q0)),
            q0[free],
            jac=lambda qf, q0=q0: jacobian(full(qf, q0))[:, free],
            bounds=(lower[free], np.inf),
            method="trf",
            max_nfev=2000,
        )
        for q0 in starts
    ]
    best_start, fit = min(zip(starts, fits, strict=True), key=lambda sf: sf[1].cost)
    m, a, beta, gamma, c_b = unpack(full(fit.x, best_start))
    if c_b <= MIN_CURVATURE:  # no minimum along B: B_opt is not defined, whatever the solver left in a and beta
        return {
            **failed,
            "c_b": float(c_b),
            "curvature_per_doubling2": float(c_b * LN2_SQUARED),
            "rmse_log": float(np.sqrt(np.mean(fit.fun**2))),
        }
    key_n = np.asarray(keys.get_level_values(0), dtype=float)
    key_t = np.asarray(keys.get_level_values(1), dtype=float)
    log_b_opt = a + beta * np.log(key_t / t0) + gamma * np.log(key_n / n0)
    return {
        **failed,
        "c_b": float(c_b),
        "curvature_per_doubling2": float(c_b * LN2_SQUARED),
        "coef": float(np.exp(a - beta * np.log(t0) - gamma * np.log(n0))),
        "exp_tokens": float(beta),
        "exp_params": np.nan if one_size else float(gamma),
        "rmse_log": float(np.sqrt(np.mean(fit.fun**2))),
        "converged": bool(fit.success and c_b > MIN_CURVATURE),
        "optima": [
            {"n_params": float(n), "tokens": float(t), "batch_size": float(np.exp(b)), "log_loss": float(mm)}
            for n, t, b, mm in zip(key_n, key_t, log_b_opt, m, strict=True)
        ],
    }


def fit_lr_surface(profile: pd.DataFrame, batch: dict) -> dict:
    """The lr surface through the batch profile's interior lr optima (not on the lr grid's edge, not bounded by a
    diverged cell), given the B surface `batch` (fit_batch_surface). Returns the eta_opt law at B_opt (coef,
    exp_tokens, exp_params) and the ridge r = d ln lr* / d ln B, with the number of points."""
    p = profile[np.isfinite(profile["val_loss"]) & ~profile["edge_lr"] & ~profile["at_divergence"]]
    out = {"coef": np.nan, "exp_tokens": np.nan, "exp_params": np.nan, "ridge": np.nan, "n_points": len(p)}
    if not batch["converged"] or len(p) < 4:
        return out
    lt = np.log(p["tokens"].to_numpy(dtype=float) / batch["t0"])
    ln = np.log(p["n_params"].to_numpy(dtype=float) / batch["n0"])
    n, t = p["n_params"].to_numpy(dtype=float), p["tokens"].to_numpy(dtype=float)
    exp_n = 0.0 if batch["one_size"] else batch["exp_params"]
    log_b_opt = np.log(batch["coef"]) + batch["exp_tokens"] * np.log(t) + exp_n * np.log(n)
    columns = [np.ones(len(p)), lt, np.log(p["batch_size"].to_numpy(dtype=float)) - log_b_opt]
    if not batch["one_size"]:
        columns.append(ln)
    design = np.column_stack(columns)
    if np.linalg.matrix_rank(design) < design.shape[1]:
        return out
    coef, *_ = np.linalg.lstsq(design, np.log(p["lr"].to_numpy(dtype=float)), rcond=None)
    gamma = 0.0 if batch["one_size"] else coef[3]
    return {
        **out,
        "coef": float(np.exp(coef[0] - coef[1] * np.log(batch["t0"]) - gamma * np.log(batch["n0"]))),
        "exp_tokens": float(coef[1]),
        "exp_params": np.nan if batch["one_size"] else float(gamma),
        "ridge": float(coef[2]),
    }
