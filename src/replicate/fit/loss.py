"""Fitting the loss law L(N, T) = a T^-alpha_T + b N^-alpha_N + L_inf (`laws.loss_law`), Chinchilla approach 3.

As in Besiroglu et al.'s replication: parameters in log space, log L = LSE(log a - alpha_T log T,
log b - alpha_N log N, log L_inf), a *summed* Huber loss (delta 1e-3) on log residuals, BFGS from a grid of
initialisations, convergence checked. Three things make it fast and reliable:

- T and N are divided by their geometric means inside the fit, which decorrelates each coefficient from its
  exponent (with T ~ 1e9 raw, a 0.01 change in alpha moves log a by 0.2);
- the initialisation grid is over the two exponents only: for fixed exponents the law is linear in
  (a, b, L_inf), solved by non-negative least squares on relative residuals, and the best few grid points
  start BFGS. The objective is divided by delta^2, so that tolerances relative to max(|f|, 1)
  do not stop it early on the tiny Huber values (the original Chinchilla fit's failure);
- BFGS starts from the exact inverse Hessian; a bootstrap refit is a few Newton steps from the full-data fit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.linalg import LinAlgError, cho_factor, cho_solve
from scipy.optimize import minimize, nnls

from replicate.fit.laws import LOSS_PARAMS, huber, loss_law

_BLOCK = np.array([0, 0, 1, 1, 2])  # which LSE term each parameter belongs to
_SAME = _BLOCK[:, None] == _BLOCK[None, :]
DELTA = 1e-3  # Huber threshold on log residuals (Hoffmann et al., Besiroglu et al.)
EXPONENT_GRID = np.array([0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.7, 1.0, 1.5])
N_STARTS = 3  # BFGS runs from the best exponent-grid points
BFGS_MAX_ITER = 300  # an interior minimum takes far fewer; a drift toward L_inf = 0 is finished by Newton
_STEP_TOL = 1e-6  # converged: a Newton step would change no parameter by more than this
_ZERO_FLOOR = 1e-6  # L_inf below this fraction of the smallest loss: the fit sits on the boundary L_inf = 0
_NEAR_ZERO = 1e-3  # L_inf below this fraction of the smallest loss: a fit drifting toward the boundary
_ALL, _NO_FLOOR = np.arange(5), np.arange(4)  # free parameters: all, or all but log L_inf (pinned near 0)


@dataclass
class LossLawFit:
    """A fitted loss law (raw units: N in parameters, T in tokens) and how the fit went."""

    a: float
    alpha_tokens: float
    b: float
    alpha_params: float
    l_inf: float
    converged: bool
    objective: float  # summed Huber loss at the optimum (unscaled)
    n_points: int
    space: str  # "log" (Huber on log residuals) or "raw" (Huber on loss residuals, delta scaled by median loss)
    l_inf_at_zero: bool = False  # the best fit has no irreducible term (L_inf on its boundary, 0)
    centre: tuple[float, float] = field(default=(0.0, 0.0), repr=False)  # log T, log N the fit was centred at

    def params(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in LOSS_PARAMS}

    def predict(self, n_params: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        return loss_law(n_params, tokens, **self.params())

    def to_dict(self) -> dict:
        return {
            **self.params(),
            "converged": self.converged,
            "objective": self.objective,
            "n_points": self.n_points,
            "space": self.space,
            "l_inf_at_zero": self.l_inf_at_zero,
        }


def _objective(
    theta: np.ndarray, u: np.ndarray, target: np.ndarray, w: np.ndarray, raw: bool, delta: float, hessian: bool = False
) -> tuple:
    """Summed Huber loss / delta^2, its gradient (and Hessian); theta = (log a', alpha_T, log b', alpha_N, log L_inf).

    u = (1, -x_T, 1, -x_N, 1) per point (x: centred log T, log N). With l = log L = LSE(z), z = (theta_0 +
    theta_1 u_1, theta_2 + theta_3 u_3, theta_4) and share p = softmax(z): dl/dtheta = G = p[block] u, and
    d2l/dtheta2 = [block_i = block_j] u_i u_j p[block] - G G^T, block = (0, 0, 1, 1, 2).
    """
    z = np.stack([theta[0] + theta[1] * u[1], theta[2] + theta[3] * u[3], np.full(u.shape[1], theta[4])])
    top = z.max(0)
    ex = np.exp(z - top)
    total = ex.sum(0)
    share = ex / total
    log_pred = top + np.log(total)
    pred = np.exp(log_pred) if raw else 1.0
    r = pred - target if raw else log_pred - target
    absr = np.abs(r)
    f = np.sum(w * huber(r, delta)) / delta**2
    psi = w * np.clip(r, -delta, delta) * pred / delta**2  # dHuber/dl, per point
    g = share[_BLOCK] * u  # (5, n): dl/dtheta
    if not hessian:
        return float(f), g @ psi
    inside = w * (absr <= delta) * pred * pred / delta**2  # d2Huber/dl2 (+ psi from d2 exp(l) in raw space)
    h_l = _SAME[:, :, None] * (u[:, None] * u[None, :] * share[_BLOCK][:, None]) - g[:, None] * g[None, :]
    hess = (g * (inside + (psi if raw else 0.0))) @ g.T + h_l @ psi
    return float(f), g @ psi, hess


def _newton_step(grad: np.ndarray, hess: np.ndarray, free: np.ndarray = _ALL) -> np.ndarray | None:
    """-H^-1 g in the free parameters (zero in the others), or None where H is not positive definite there."""
    inv = _pd_inverse(hess[np.ix_(free, free)])
    if inv is None:
        return None
    step = np.zeros_like(grad)
    step[free] = -inv @ grad[free]
    return step


def _converged(grad: np.ndarray, hess: np.ndarray, free: np.ndarray = _ALL) -> bool:
    """A strict local minimum to within _STEP_TOL: H positive definite, no Newton step component above it."""
    step = _newton_step(grad, hess, free)
    return step is not None and float(np.max(np.abs(step))) < _STEP_TOL


def _newton(
    theta: np.ndarray, args: tuple, max_iter: int = 50, free: np.ndarray = _ALL
) -> tuple[np.ndarray, float, bool]:
    """Damped Newton on the exact Hessian (backtracking on the Armijo condition), in the `free` parameters, for
    warm starts next to the optimum. Where the Hessian is indefinite (points in Huber's linear zone add no
    curvature) the step uses it shifted to positive definite (Levenberg)."""
    f, g, h = _objective(theta, *args, hessian=True)
    for _ in range(max_iter):
        if not (np.isfinite(f) and np.all(np.isfinite(h))):
            return theta, f, False
        if _converged(g, h, free):
            return theta, f, True
        step = _newton_step(g, h, free)
        if step is None:
            step = np.zeros_like(g)
            step[free] = -_shifted_inverse(h[np.ix_(free, free)]) @ g[free]
        t = 1.0
        while _objective(theta + t * step, *args)[0] > f + 1e-4 * t * (g @ step):
            t /= 2
            if t < 1e-6:
                return theta, f, False
        theta = theta + t * step
        f, g, h = _objective(theta, *args, hessian=True)
    return theta, f, False


def _grid_starts(xt: np.ndarray, xn: np.ndarray, loss: np.ndarray, w: np.ndarray, k: int) -> list[np.ndarray]:
    """The k best (alpha_T, alpha_N) grid points, each with its NNLS (a', b', L_inf) on relative residuals."""
    rw = np.sqrt(w) / loss
    floor = 1e-6 * np.median(loss)
    scored = []
    for at in EXPONENT_GRID:
        for an in EXPONENT_GRID:
            design = np.column_stack([np.exp(-at * xt), np.exp(-an * xn), np.ones_like(xt)])
            coef, resid = nnls(design * rw[:, None], loss * rw)
            la, lb, le = np.log(np.maximum(coef, floor))
            scored.append((resid, np.array([la, at, lb, an, le])))
    scored.sort(key=lambda s: s[0])
    return [theta for _, theta in scored[:k]]


def _shifted_inverse(hess: np.ndarray) -> np.ndarray:
    """Inverse of hess + mu I with the smallest mu = 1e-6 x 10^k x max|diag| that is positive definite."""
    mu = 1e-6 * max(np.max(np.abs(np.diag(hess))), 1e-12)
    while (inv := _pd_inverse(hess + mu * np.eye(len(hess)))) is None:
        mu *= 10
    return inv


def _pd_inverse(hess: np.ndarray) -> np.ndarray | None:
    """The inverse of a positive definite Hessian (by Cholesky), or None."""
    if not np.all(np.isfinite(hess)):
        return None
    try:
        factor = cho_factor(hess)
    except LinAlgError:
        return None
    inv = cho_solve(factor, np.eye(len(hess)))
    return 0.5 * (inv + inv.T)


def fit_loss_law(
    n_params: np.ndarray,
    tokens: np.ndarray,
    loss: np.ndarray,
    weights: np.ndarray | None = None,
    space: str = "log",
    delta: float = DELTA,
    init: LossLawFit | None = None,
) -> LossLawFit:
    """Fit `loss_law` to (N, T, L) points by a summed Huber loss, BFGS from a grid of initialisations.

    N in parameters, T in tokens, L > 0. `weights` multiply each point's Huber term (bootstrap counts); `space`
    "log" fits log residuals (the Chinchilla practice), "raw" fits loss residuals with delta scaled by the
    median loss (the same relative threshold). `init` (a fit of similar data: the full-data fit, for a bootstrap
    refit) starts Newton's method on the exact Hessian there, which needs a few steps, once free and once with
    L_inf pinned near 0; the grid and BFGS take over if neither converges (so a warm refit does not search
    globally: it suits data close to the init's). Every BFGS run starts from the exact (analytic) inverse
    Hessian, shifted to positive definite where needed. Converged means the Hessian is positive definite at the
    end and a Newton step would move no parameter (log coefficients, exponents) by more than 1e-6: BFGS's own
    stopping rule is not trusted. Where L_inf runs to 0 the law has no strict minimum: L_inf is pinned at 1e-6
    of the smallest loss, the other four are polished by Newton, and the fit counts as converged (with
    `l_inf_at_zero`) if they reach a strict minimum and raising L_inf to 1e-3 of that loss fits no better.
    """
    n, t, y = (np.asarray(v, dtype=float) for v in (n_params, tokens, loss))
    w = np.ones_like(y) if weights is None else np.asarray(weights, dtype=float)
    log_t0, log_n0 = init.centre if init is not None else (np.average(np.log(t)), np.average(np.log(n)))
    raw = space == "raw"
    d = delta * float(np.median(y)) if raw else delta
    xt, xn = np.log(t) - log_t0, np.log(n) - log_n0
    one = np.ones_like(xt)
    args = (np.stack([one, -xt, one, -xn, one]), y if raw else np.log(y), w, raw, d)

    def run(theta0: np.ndarray) -> tuple[np.ndarray, float, bool]:
        """BFGS started with the exact inverse Hessian (shifted where indefinite); converged by the Newton step."""
        res = minimize(
            _objective,
            theta0,
            args=args,
            jac=True,
            method="BFGS",
            options={
                "gtol": 1e-10,
                "xrtol": 1e-8,
                "maxiter": BFGS_MAX_ITER,
                "hess_inv0": _shifted_inverse(_objective(theta0, *args, hessian=True)[2]),
            },
        )
        return res.x, float(res.fun), _converged(*_objective(res.x, *args, hessian=True)[1:])

    floor, near = np.log(_ZERO_FLOOR * float(y.min())), np.log(_NEAR_ZERO * float(y.min()))

    def at_zero(theta: np.ndarray) -> tuple[np.ndarray, float, bool]:
        """L_inf ran toward 0, where the law has no strict minimum: pin it far below the data and polish the
        other four (converged if they reach a strict minimum there)."""
        x, f, ok = _newton(np.concatenate([theta[:4], [min(theta[4], floor)]]), args, free=_NO_FLOOR)
        # a boundary minimum only if a small positive L_inf does not fit better (the KKT condition)
        lifted = np.concatenate([x[:4], [near]])
        return x, f, ok and _objective(lifted, *args)[0] >= f

    results = []
    if init is not None:
        theta0 = np.array(
            [
                np.log(init.a) - init.alpha_tokens * log_t0,
                init.alpha_tokens,
                np.log(init.b) - init.alpha_params * log_n0,
                init.alpha_params,
                max(np.log(init.l_inf), near),
            ]
        )
        # a resample's optimum may sit on the other side of the boundary than the full fit's: try both sides
        results += [_newton(theta0, args), at_zero(theta0)]
    if not any(ok for _, _, ok in results):
        # a warm-started refit (bootstrap) that needs the grid takes its best start only: speed over certainty
        results += [run(theta) for theta in _grid_starts(xt, xn, y, w, N_STARTS if init is None else 1)]
        results += [at_zero(x) for x, _, ok in list(results) if not ok and x[4] < near]
    x, f, converged = min(results, key=lambda r: (not r[2], r[1] if np.isfinite(r[1]) else np.inf))
    la, at, lb, an, le = x
    return LossLawFit(
        a=float(np.exp(la + at * log_t0)),
        alpha_tokens=float(at),
        b=float(np.exp(lb + an * log_n0)),
        alpha_params=float(an),
        l_inf=float(np.exp(le)),
        converged=converged,
        objective=f * d**2,
        n_points=int(np.count_nonzero(w)),
        space=space,
        centre=(log_t0, log_n0),
        l_inf_at_zero=bool(le <= floor + 1e-9),
    )


def profile_alpha_params(
    n_params: np.ndarray, tokens: np.ndarray, loss: np.ndarray, alphas: np.ndarray | None = None
) -> dict:
    """The loss law's fit along alpha_N: at each alpha_N of a grid, the best alpha_T (on a fine grid) with
    (a, b, L_inf) by non-negative least squares on relative residuals (nearly log residuals: least squares, not
    Huber), and that fit's residual sum of squares. Where the profile stays flat over a wide range, alpha_N (and
    with it L_inf, which trades against it) is not identified by the data, whatever the point fit says.

    Returns the grid, its RSS, the best alpha_T and L_inf at each point, and `range95`: the alpha_N whose RSS is
    within an F(1, n - 5) likelihood-ratio threshold of the minimum (the ends marked open where the range
    reaches the grid's edge)."""
    from scipy.stats import f as f_dist

    n, t, y = (np.asarray(v, dtype=float) for v in (n_params, tokens, loss))
    alphas = np.linspace(0.01, 1.0, 100) if alphas is None else np.asarray(alphas, dtype=float)
    xt, xn = np.log(t) - np.log(t).mean(), np.log(n) - np.log(n).mean()
    at_grid = np.linspace(0.01, 1.5, 75)  # alpha_T is identified: a 0.02 step locates its best value
    rss, best_at, best_linf = [], [], []
    for an in alphas:
        best = (np.inf, np.nan, np.nan)
        for at in at_grid:
            design = np.column_stack([np.exp(-at * xt), np.exp(-an * xn), np.ones_like(xt)]) / y[:, None]
            coef, resid = nnls(design, np.ones_like(y))
            if resid**2 < best[0]:
                best = (resid**2, at, coef[2])
        rss.append(best[0])
        best_at.append(best[1])
        best_linf.append(best[2])
    rss = np.array(rss)
    dof = len(y) - 5
    out = {
        "alpha_params": alphas.tolist(),
        "rss": rss.tolist(),
        "alpha_tokens": best_at,
        "l_inf": best_linf,
        "range95": None,
        "open_low": False,
        "open_high": False,
    }
    if dof > 0 and np.isfinite(rss).any():
        inside = np.flatnonzero(rss <= rss.min() * (1 + f_dist.ppf(0.95, 1, dof) / dof))
        # one grid step beyond the last point inside on each side: the range is resolved to the grid's step
        out["range95"] = [float(alphas[max(inside[0] - 1, 0)]), float(alphas[min(inside[-1] + 1, len(alphas) - 1)])]
        inside = np.isin(np.arange(len(alphas)), inside)
        out["open_low"], out["open_high"] = bool(inside[0]), bool(inside[-1])
    return out
