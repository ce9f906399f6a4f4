"""One surface through every (N, T, B, lr) cell of a sweep, instead of one parabola vertex per (N, T).

The per-(N, T) estimator (optima.grid_optima) needs an interior optimum at every (N, T), drops the others, and
is biased toward a zero T exponent when optima crowd a grid edge (benchmarks/surface_fit.py measures both
estimators on planted sweeps). Here every finite cell informs one fit, with the lr-B ridge:

    log L(N, T, B, lr) = m(N, T) + c_B u^2 + c_lr(v) v^2,
    u = ln B - ln B_opt(N, T),        ln B_opt = a + beta ln(T / T0) + gamma ln(N / N0)
    v = ln lr - ln lr*(N, T, B),      ln lr* = a_eta + beta_eta ln(T / T0) + gamma_eta ln(N / N0) + r u

m(N, T) is free per (N, T); T0, N0 are the geometric means of the data; c_lr is c_lo below the lr optimum and
c_hi above it (the loss rises faster toward divergence). eta_opt(N, T) = lr* at B_opt, and r is the lr-B
ridge (d ln lr* / d ln B). c_B is the curvature along B in log-loss per ln(B)^2; times ln(2)^2 it is the
relative loss increase one doubling of B away from the optimum costs. An (N, T) whose optimum lies beyond the
grid still constrains the exponents through the slope it shows; but where B_opt lies more than a doubling
beyond the grid at every (N, T), a small c_B with a far vertex is a slope, not a minimum, and the surface has
not converged. Only cells within a factor LR_WINDOW of the
best learning rate of their (N, T, B) enter: far from its optimum the loss is not quadratic in ln lr.

Fitting cells rather than each B's best-lr loss uses every learning rate's information about B_opt: on the
planted sweeps of benchmarks/surface_fit.py it reaches the Cramer-Rao bound of fit.synthetic.exponent_bounds.
With one model size the N exponents are not identified and are fixed at 0.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import least_squares

from replicate.fit.optima import SweepCube

LN2_SQUARED = np.log(2.0) ** 2
MIN_CURVATURE = 1e-6  # c_B per ln(B)^2 below which the fit has found no minimum along B (its bound is 0)
VERTEX_REACH = 10  # doublings beyond the batch grid within which the fit may place B_opt (at the data's centre)
LR_WINDOW = 4.0  # cells whose lr is within this factor of their (N, T, B)'s best cell enter the fit
_SHAPE = ("a", "beta", "c_b", "a_eta", "beta_eta", "ridge", "c_lo", "c_hi")  # after m; then gamma, gamma_eta
_LAW_KEYS = ("coef", "exp_tokens", "exp_params")  # a hyperparameter law's (fit.laws.hyperparameter_law)
_LR_KEYS = (*_LAW_KEYS, "ridge")


def surface_cells(cube: SweepCube, run_weights: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The cells the surface fits: flat index into the cube, group index, ln B, ln lr, log loss and weight (the
    number of runs averaged, re-weighted by a bootstrap's `run_weights`), finite and within LR_WINDOW of their
    (N, T, B)'s best lr."""
    log_loss, _ = cube.arrays(run_weights)
    w = np.ones(len(cube.cell)) if run_weights is None else np.asarray(run_weights, dtype=float)[cube.run]
    weight = np.bincount(cube.cell[~cube.diverged], w[~cube.diverged], log_loss.size).reshape(log_loss.shape)
    finite = np.isfinite(log_loss)
    best = np.argmin(np.where(finite, log_loss, np.inf), axis=-1)  # (G, n_B)
    log_lr = np.log(cube.lr)
    near = np.abs(log_lr[None, None, :] - log_lr[best][..., None]) <= np.log(LR_WINDOW) + 1e-9
    g, b, lr = np.nonzero(finite & near)
    return {
        "cell": np.ravel_multi_index((g, b, lr), log_loss.shape),
        "group": g,
        "log_batch": np.log(cube.batch_size)[b],
        "log_lr": log_lr[lr],
        "log_loss": log_loss[g, b, lr],
        "weight": weight[g, b, lr],
    }


class _Model:
    """The surface's residuals and Jacobian over a set of cells, in the packed parameters
    q = (m_1 .. m_G, *_SHAPE, [gamma, gamma_eta])."""

    def __init__(self, cells: dict[str, np.ndarray], lt_g: np.ndarray, ln_g: np.ndarray, one_size: bool) -> None:
        self.n_groups, self.one_size = len(lt_g), one_size
        self.g, self.x, self.z, self.y = cells["group"], cells["log_batch"], cells["log_lr"], cells["log_loss"]
        self.sw = np.sqrt(cells["weight"])
        self.lt, self.ln = lt_g[self.g], ln_g[self.g]
        self.n_par = self.n_groups + len(_SHAPE) + (0 if one_size else 2)
        self.offsets = np.zeros((len(self.y), self.n_groups))
        self.offsets[np.arange(len(self.y)), self.g] = 1.0

    def unpack(self, q: np.ndarray) -> tuple:
        """m, a, beta, gamma, c_b, a_eta, beta_eta, gamma_eta, ridge, c_lo, c_hi."""
        a, beta, c_b, a_eta, beta_eta, ridge, c_lo, c_hi = q[self.n_groups : self.n_groups + len(_SHAPE)]
        gamma, gamma_eta = (0.0, 0.0) if self.one_size else q[-2:]
        return q[: self.n_groups], a, beta, gamma, c_b, a_eta, beta_eta, gamma_eta, ridge, c_lo, c_hi

    def _parts(self, q: np.ndarray) -> tuple:
        m, a, beta, gamma, c_b, a_eta, beta_eta, gamma_eta, ridge, c_lo, c_hi = self.unpack(q)
        u = self.x - a - beta * self.lt - gamma * self.ln
        v = self.z - a_eta - beta_eta * self.lt - gamma_eta * self.ln - ridge * u
        below = v < 0
        return m, u, v, below, np.where(below, c_lo, c_hi), c_b, ridge

    def residuals(self, q: np.ndarray) -> np.ndarray:
        """sqrt(weight) x (model - log loss) per cell."""
        m, u, v, _, c_v, c_b, _ = self._parts(q)
        return self.sw * (m[self.g] + c_b * u * u + c_v * v * v - self.y)

    def jacobian(self, q: np.ndarray) -> np.ndarray:
        """Analytic (a bootstrap refits hundreds of times); u depends on (a, beta, gamma), v on all but m, c."""
        _, u, v, below, c_v, c_b, ridge = self._parts(q)
        du = -2 * c_b * u + 2 * c_v * v * ridge  # d/d(ln B_opt): through u, and through v's ridge term
        dv = -2 * c_v * v  # d/d(ln lr*)
        columns = [
            du,
            du * self.lt,
            u * u,
            dv,
            dv * self.lt,
            dv * u,
            np.where(below, v * v, 0),
            np.where(below, 0, v * v),
        ]
        if not self.one_size:
            columns += [du * self.ln, dv * self.ln]
        return self.sw[:, None] * np.column_stack([self.offsets, *columns])


def _model(cube: SweepCube, run_weights: np.ndarray | None = None) -> tuple[_Model, float, float]:
    lt_g, t0 = _centred(cube.tokens)
    ln_g, n0 = _centred(cube.n_params)
    return _Model(surface_cells(cube, run_weights), lt_g, ln_g, len(np.unique(cube.n_params)) < 2), t0, n0


def fit_surface(
    cube: SweepCube,
    run_weights: np.ndarray | None = None,
    init: dict | None = None,
    curvature: float | None = None,
) -> tuple[dict, dict]:
    """The (B, lr) surface of a sweep (see the module docstring); raw units (B in tokens per step, T in tokens).

    Returns (batch, lr). batch: c_b (per ln B^2), curvature_per_doubling2 (c_b ln(2)^2), the B_opt law (coef,
    exp_tokens, exp_params: B_opt = coef T^exp_tokens N^exp_params), t0, n0, the fitted B_opt at each (N, T)
    with its offset m (`optima`), rmse_log and rss (weighted), n_points (cells), n_groups, n_free (fitted
    parameters), one_size, converged, and `params` (the solution, a starting point for refits). lr: the
    eta_opt law at B_opt (coef, exp_tokens, exp_params), the ridge r, the curvatures c_lo and c_hi, n_points.
    Not converged (no minimum along B): the B_opt and eta_opt laws are NaN, the curvatures and the ridge are
    still the fitted surface's. NaNs where the data cannot identify the surface (fewer than 3 batch sizes, or
    too few cells). `init` (an
    earlier result on the same cube, e.g. the full data's for a bootstrap resample) is the one starting point.
    `curvature` holds c_B (per ln B^2) at that value and fits the rest (a profile of the fit along c_B).
    """
    model, t0, n0 = _model(cube, run_weights)
    failed = {
        **dict.fromkeys(("c_b", "curvature_per_doubling2", "coef", "exp_tokens", "exp_params"), np.nan),
        "t0": t0,
        "n0": n0,
        "rmse_log": np.nan,
        "rss": np.nan,
        "n_points": len(model.y),
        "n_groups": model.n_groups,
        "n_free": model.n_par - (curvature is not None),
        "one_size": model.one_size,
        "converged": False,
        "optima": [],
        "params": None,
    }
    lr_failed = {**dict.fromkeys(_LR_KEYS, np.nan), "c_lo": np.nan, "c_hi": np.nan, "n_points": len(model.y)}
    if len(np.unique(model.x)) < 3 or len(model.y) < model.n_par + 2:
        return failed, lr_failed
    q, fit = _solve(model, cube, init, curvature)
    m, a, beta, gamma, c_b, a_eta, beta_eta, gamma_eta, ridge, c_lo, c_hi = model.unpack(q)
    rss = float(2 * fit.cost)
    # the curvatures and the ridge are the surface's shape, defined whether or not it has a minimum along B
    fitted = {
        **failed,
        "rss": rss,
        "rmse_log": float(np.sqrt(rss / np.sum(model.sw**2))),
        "params": q,
        "c_b": float(c_b),
        "curvature_per_doubling2": float(c_b * LN2_SQUARED),
    }
    shape = {**lr_failed, "ridge": float(ridge), "c_lo": float(c_lo), "c_hi": float(c_hi)}
    if c_b <= MIN_CURVATURE:  # no minimum along B: B_opt is not defined, whatever the solver left in a and beta
        return fitted, shape
    log_b_opt = a + beta * np.log(cube.tokens / t0) + gamma * np.log(cube.n_params / n0)
    log_grid = np.log(cube.batch_size)
    within = (log_b_opt > log_grid[0] - np.log(2)) & (log_b_opt < log_grid[-1] + np.log(2))
    if not within.any():  # a vertex far beyond the grid everywhere: the fit has found a slope, not a minimum
        return fitted, shape
    batch = {
        **fitted,
        "coef": float(np.exp(a - beta * np.log(t0) - gamma * np.log(n0))),
        "exp_tokens": float(beta),
        "exp_params": np.nan if model.one_size else float(gamma),
        "converged": bool(fit.success),
        "optima": [
            {"n_params": float(n), "tokens": float(t), "batch_size": float(np.exp(b)), "log_loss": float(mm)}
            for n, t, b, mm in zip(cube.n_params, cube.tokens, log_b_opt, m, strict=True)
        ],
    }
    lr = {
        **shape,
        "coef": float(np.exp(a_eta - beta_eta * np.log(t0) - gamma_eta * np.log(n0))),
        "exp_tokens": float(beta_eta),
        "exp_params": np.nan if model.one_size else float(gamma_eta),
    }
    return batch, lr


def _solve(model: _Model, cube: SweepCube, init: dict | None, curvature: float | None) -> tuple[np.ndarray, object]:
    """The surface's parameters (and the solver's result) from the best of its starting points: `init`'s
    solution, else three guesses of B_opt across the batch grid; with `curvature`, c_B held there."""
    n_groups, n_par = model.n_groups, model.n_par
    # curvatures cannot be negative: where the loss has no minimum along B the fit stops at c_B = 0 (not
    # converged) instead of wandering off with B_opt
    lower, upper = np.full(n_par, -np.inf), np.full(n_par, np.inf)
    lower[[n_groups + _SHAPE.index(k) for k in ("c_b", "c_lo", "c_hi")]] = 0.0
    # B_opt at the data's centre within VERTEX_REACH doublings of the grid: beyond, a vertex only bends a slope,
    # and an unbounded one drifts off (c_B -> 0) for thousands of evaluations without changing the fit
    log_grid = np.log(cube.batch_size)
    reach = VERTEX_REACH * np.log(2)
    lower[n_groups + _SHAPE.index("a")], upper[n_groups + _SHAPE.index("a")] = log_grid[0] - reach, log_grid[-1] + reach
    if init is not None and init["params"] is not None and len(init["params"]) == n_par:
        starts = [np.array(init["params"], dtype=float)]
    else:
        x, y, g = model.x, model.y, model.g
        best = np.array([y[g == k].min() if np.any(g == k) else np.mean(y) for k in range(n_groups)])
        top = np.argsort(y)[: max(3, len(y) // 10)]  # the lowest cells: where the optimum roughly lies
        gammas = [] if model.one_size else [0.2, 0.0]
        starts = [
            np.concatenate([best, [a0, 0.5, 0.05, np.mean(model.z[top]), 0.0, 0.5, 0.05, 0.05], gammas])
            for a0 in np.quantile(x, [0.25, 0.5, 0.75])
        ]
    free = np.arange(n_par)
    if curvature is not None:  # c_B held: the solver moves the other parameters only
        free = np.delete(free, n_groups + _SHAPE.index("c_b"))
        for q0 in starts:
            q0[n_groups + _SHAPE.index("c_b")] = curvature

    def full(qf: np.ndarray, q0: np.ndarray) -> np.ndarray:
        q = q0.copy()
        q[free] = qf
        return q

    fits = [
        least_squares(
            lambda qf, q0=q0: model.residuals(full(qf, q0)),
            np.clip(q0[free], lower[free], upper[free]),
            jac=lambda qf, q0=q0: model.jacobian(full(qf, q0))[:, free],
            bounds=(lower[free], upper[free]),
            method="trf",
            max_nfev=2000,
        )
        for q0 in starts
    ]
    best_start, fit = min(zip(starts, fits, strict=True), key=lambda sf: sf[1].cost)
    return full(fit.x, best_start), fit


def surface_statistics(batch: dict, lr: dict) -> dict[str, float]:
    """The numbers of one surface fit that get bootstrap intervals (fit.pipeline.statistics), flat: the laws and
    the curvature where the surface has a minimum along B (NaN otherwise), the lr-B ridge always."""
    ok = batch["converged"]
    out = {f"surface.batch_size_law.{k}": batch[k] if ok else np.nan for k in (*_LAW_KEYS, "curvature_per_doubling2")}
    out |= {f"surface.lr_law.{k}": lr[k] if ok else np.nan for k in _LAW_KEYS}
    return out | {"surface.lr_law.ridge": lr["ridge"]}


def surface_entry(batch: dict, lr: dict, ci: dict) -> dict:
    """The surface fit in fit.json (the headline B_opt and eta_opt laws), with the intervals `ci` of the keys
    that surface_statistics names. Without a minimum along B: no laws and no curvature (a parabola through a
    slope bends as far as its vertex is allowed to go), nor the intervals of the few resamples that found one;
    the lr-B ridge stands."""
    law_ci = ci if batch["converged"] else {}
    if not batch["converged"]:
        batch = {**batch, **dict.fromkeys((*_LAW_KEYS, "curvature_per_doubling2"))}
        lr = {**lr, **dict.fromkeys(_LAW_KEYS)}
    return {
        "method": "one surface through every (N, T, B, lr) cell: log L = m(N, T) + c_B (ln B - ln B_opt(N, T))^2 "
        "+ c_lr (ln lr - ln lr*(N, T, B))^2 with B_opt = coef T^exp_tokens N^exp_params and lr* the lr law at "
        "B_opt times (B / B_opt)^ridge (fit.surface)",
        "converged": batch["converged"],
        "batch_size_law": {
            **{k: batch[k] for k in _LAW_KEYS},
            "ci95": {k: law_ci.get(f"surface.batch_size_law.{k}") for k in _LAW_KEYS},
        },
        "lr_law": {
            **{k: lr[k] for k in (*_LAW_KEYS, "ridge")},
            "ci95": {k: law_ci.get(f"surface.lr_law.{k}") for k in _LAW_KEYS}
            | {"ridge": ci.get("surface.lr_law.ridge")},
            "curvature_below": lr["c_lo"],
            "curvature_above": lr["c_hi"],
        },
        "curvature_per_doubling2": {
            "value": batch["curvature_per_doubling2"],
            "ci95": law_ci.get("surface.batch_size_law.curvature_per_doubling2"),
        },
        "rmse_log": batch["rmse_log"],
        "n_points": batch["n_points"],
        "n_groups": batch["n_groups"],
    }


def exponent_sd(cube: SweepCube, batch: dict, run_noise: float, checkpoint_noise: float) -> dict[str, dict]:
    """How precisely can a sweep of this design pin the exponents? The asymptotic standard deviations of beta_B,
    gamma_B (exp_tokens, exp_params) and the lr law's, at the surface `batch` (fitted to `cube`, ideally to a
    noiseless sweep), when each run's log loss carries one offset of sd `run_noise` shared by its checkpoints
    plus independent checkpoint noise of sd `checkpoint_noise` (synthetic_sweep's noise model).

    `least_squares`: the sandwich variance of this module's (weighted) least-squares fit, which ignores that
    a run's checkpoints are correlated. `cramer_rao`: (J' S^-1 J)^-1, the smallest variance any unbiased
    estimator of the surface can reach with this design and noise (S the cells' covariance). Their ratio says
    how much a better estimator could still gain; the planted sweeps show how close the fit comes.
    """
    model, _, _ = _model(cube)
    jac = model.jacobian(np.asarray(batch["params"], dtype=float)) / model.sw[:, None]  # unweighted d(model)/dq
    # a cell's loss is the weighted mean of its runs: cov = run_noise^2 M M' + checkpoint_noise^2 diag(sum M^2)
    cells = surface_cells(cube)
    at = np.full(len(cube.n_params) * len(cube.batch_size) * len(cube.lr), -1)
    at[cells["cell"]] = np.arange(len(cells["cell"]))
    i, r = at[cube.cell], cube.run
    keep = (i >= 0) & ~cube.diverged
    share = np.zeros((len(model.y), cube.n_runs))
    np.add.at(share, (i[keep], r[keep]), 1.0)
    share /= np.maximum(share.sum(1, keepdims=True), 1.0)
    cov = run_noise**2 * share @ share.T + checkpoint_noise**2 * np.diag((share**2).sum(1))
    w = model.sw**2
    bread = np.linalg.pinv(jac.T @ (w[:, None] * jac))
    sandwich = bread @ (jac.T * w) @ cov @ (w[:, None] * jac) @ bread
    fisher = np.linalg.pinv(jac.T @ np.linalg.solve(cov, jac))
    index = {
        "exp_tokens": model.n_groups + _SHAPE.index("beta"),
        "lr_exp_tokens": model.n_groups + _SHAPE.index("beta_eta"),
    }
    if not model.one_size:
        index |= {"exp_params": model.n_par - 2, "lr_exp_params": model.n_par - 1}
    return {
        name: {k: float(np.sqrt(c[i, i])) for k, i in index.items()}
        for name, c in (("least_squares", sandwich), ("cramer_rao", fisher))
    }


def _centred(values: np.ndarray) -> tuple[np.ndarray, float]:
    logs = np.log(np.asarray(values, dtype=float))
    return logs - logs.mean(), float(np.exp(logs.mean()))
