"""Compute allocation: FLOPs per token as a function of N, N_opt(C) from the loss law, the empirical IsoFLOP
law (Liang et al.), and the flat region of the loss around N_opt at fixed compute."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace

import numpy as np
import pandas as pd
from scipy.optimize import nnls

from replicate.errors import ConfigError
from replicate.fit.laws import fit_power_law, loss_law, training_compute

_Q_GRID = np.linspace(0.02, 1.0, 50)
FLAT_FACTORS = (0.5, 0.7, 1.3, 1.5)  # N / N_opt: +-30% and +-50% model size


@dataclass(frozen=True)
class FlopsPerToken:
    """Training FLOPs per token as a function of N: C_token(N) = N (r + s N^-q).

    For "6n" this is exactly 6N (s = 0). For the paper's count, (3/4) N (7 + n_ctx/d), and the exact count the
    ratio C_token / N is a constant plus an attention term proportional to n_ctx / d, and d grows as a power
    of N along a model ladder; hence the form, which tends to r N for large models, as the counts do.
    """

    convention: str
    r: float
    s: float = 0.0
    q: float = 0.0
    max_rel_error: float = 0.0  # over the table's model sizes
    source: str = "6N exactly"

    def __call__(self, n_params: np.ndarray | float) -> np.ndarray:
        n = np.asarray(n_params, dtype=float)
        return n * (self.r + self.s * n**-self.q)

    def to_dict(self) -> dict:
        return asdict(self)


def fit_flops_per_token(runs: pd.DataFrame, convention: str) -> FlopsPerToken:
    """C_token(N) for a FLOP convention ("6n", "paper", "exact") from the table's ``flops_<convention>`` column.

    The table gives FLOPs per token only at its own model sizes; the compute law needs them at any N (and far
    beyond the sweep, at 1e22 FLOPs). Fitted: the ratio C_token / N = r + s N^-q, by non-negative least
    squares in (r, s) on relative residuals for each q on a grid in [0.02, 1], the best q kept. With fewer
    than three sizes the ratio is taken as constant (its geometric mean). "6n" is exactly 6N.
    """
    if convention == "6n":
        return FlopsPerToken("6n", 6.0)
    column = f"flops_{convention}"
    if column not in runs:
        raise ConfigError(f"no column {column} for the {convention!r} FLOP convention")
    per_n = runs.groupby("n_params")[column].median()
    n, ratio = per_n.index.to_numpy(dtype=float), per_n.to_numpy(dtype=float) / per_n.index.to_numpy(dtype=float)
    if len(n) < 3:
        model = FlopsPerToken(convention, float(np.exp(np.mean(np.log(ratio)))), source=f"{column}: constant ratio")
    else:
        best = None
        for q in _Q_GRID:
            design = np.column_stack([np.ones_like(n), n**-q]) / ratio[:, None]
            (r, s), resid = nnls(design, np.ones_like(n))
            if best is None or resid < best[0]:
                best = (resid, r, s, q)
        _, r, s, q = best
        model = FlopsPerToken(convention, float(r), float(s), float(q), source=f"{column}: fitted r + s N^-q")
    err = float(np.max(np.abs(model(n) / (ratio * n) - 1)))
    return replace(model, max_rel_error=err)


def compute_optimal_size(
    law: Mapping[str, float], flops: np.ndarray | float, flops_per_token: FlopsPerToken
) -> tuple[np.ndarray, np.ndarray]:
    """N_opt(C) = argmin_N L(N, C / C_token(N)) under the loss law, for each budget C (FLOPs).

    A log-N grid (256 points from 1 to C/6 parameters), a 33-point grid over the two cells around its
    minimum, then the vertex of the parabola through the best three points. Returns (N_opt, L at N_opt).
    """
    c = np.atleast_1d(np.asarray(flops, dtype=float))[:, None]

    def loss(ln_n: np.ndarray) -> np.ndarray:
        n = np.exp(ln_n)
        return loss_law(n, c / flops_per_token(n), **law)

    ln_n = np.linspace(0.0, 1.0, 256)[None, :] * np.log(c / 6.0)
    k = np.clip(np.argmin(loss(ln_n), axis=1), 1, ln_n.shape[1] - 2)
    rows = np.arange(len(c))
    lo, hi = ln_n[rows, k - 1], ln_n[rows, k + 1]
    fine = lo[:, None] + (hi - lo)[:, None] * np.linspace(0.0, 1.0, 33)[None, :]
    y = loss(fine)
    j = np.clip(np.argmin(y, axis=1), 1, fine.shape[1] - 2)
    y0, y1, y2 = y[rows, j - 1], y[rows, j], y[rows, j + 1]
    h = fine[:, 1] - fine[:, 0]
    curv = y0 - 2 * y1 + y2
    shift = np.where(curv > 0, 0.5 * h * (y0 - y2) / np.where(curv > 0, curv, 1.0), 0.0)
    ln_opt = fine[rows, j] + shift
    return np.exp(ln_opt), loss(ln_opt[:, None])[:, 0]


def fit_compute_law(
    law: Mapping[str, float], flops_per_token: FlopsPerToken, flops_lo: float, flops_hi: float, n_budgets: int = 32
) -> dict[str, float]:
    """N_opt = coef C^exp (`compute_law`) from the loss law: `compute_optimal_size` on a log grid of budgets
    between flops_lo and flops_hi (FLOPs), then least squares in log space. Returns coef, exp, rmse_log."""
    budgets = np.geomspace(flops_lo, flops_hi, n_budgets)
    n_opt, _ = compute_optimal_size(law, budgets, flops_per_token)
    coef, (exp,), rmse = fit_power_law(n_opt, budgets)
    return {"coef": coef, "exp": exp, "rmse_log": rmse}


def isoflop_losses(
    n_params: np.ndarray, tokens: np.ndarray, loss: np.ndarray, flops_per_token: FlopsPerToken, n_budgets: int = 16
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each model size's loss at fixed compute budgets: (sizes, budgets, losses[size, budget]).

    A size's loss curve L(T) (log-log linear interpolation between its observed token counts, never
    extrapolated) is read at T = C / C_token(N), for budgets log-spaced over the data's compute range; NaN
    where a size does not reach a budget.
    """
    n, lt, ll = np.asarray(n_params, dtype=float), np.log(tokens), np.log(loss)
    sizes, which = np.unique(n, return_inverse=True)
    curves = []  # per size: ascending log T and mean log L there
    for i in range(len(sizes)):
        t_i, at = np.unique(lt[which == i], return_inverse=True)
        curves.append((t_i, np.bincount(at, ll[which == i]) / np.bincount(at)))
    flops = [training_compute(flops_per_token(s), np.exp(t_i)) for s, (t_i, _) in zip(sizes, curves, strict=True)]
    budgets = np.geomspace(min(f.min() for f in flops), max(f.max() for f in flops), n_budgets)
    table = np.full((len(sizes), n_budgets), np.nan)
    for i, (t_i, l_i) in enumerate(curves):
        at = np.log(budgets / flops_per_token(sizes[i]))
        inside = (at >= t_i[0]) & (at <= t_i[-1])
        table[i, inside] = np.exp(np.interp(at[inside], t_i, l_i))
    return sizes, budgets, table


def isoflop_compute_law(
    n_params: np.ndarray, tokens: np.ndarray, loss: np.ndarray, flops_per_token: FlopsPerToken, n_budgets: int = 16
) -> dict | None:
    """Empirical N_opt(C) without the loss law, as Liang et al.: at each budget a parabola of L against log N.

    Losses at each budget come from `isoflop_losses`; a budget reached by at least three sizes gets a parabola
    in log N, and its vertex, if the parabola is convex and the vertex lies inside the sizes used, is
    N_opt(C). Then N_opt = coef C^exp by least squares in log space. Returns coef, exp, rmse_log and the
    budgets (each with the parabola's coefficients in log N), or None with fewer than three usable budgets.
    """
    sizes, budgets, table = isoflop_losses(n_params, tokens, loss, flops_per_token, n_budgets)
    points = []
    for j, c in enumerate(budgets):
        ok = np.isfinite(table[:, j])
        if ok.sum() < 3:
            continue
        x = np.log(sizes[ok])
        a2, a1, a0 = np.polyfit(x, table[ok, j], 2)
        vertex = -a1 / (2 * a2) if a2 > 0 else np.nan
        if x.min() < vertex < x.max():
            points.append(
                {
                    "flops": float(c),
                    "n_opt": float(np.exp(vertex)),
                    "loss": float(a0 - a1 * a1 / (4 * a2)),
                    "n_sizes": int(ok.sum()),
                    "parabola": [float(a2), float(a1), float(a0)],
                }
            )
    if len(points) < 3:
        return None
    coef, (exp,), rmse = fit_power_law(np.array([p["n_opt"] for p in points]), np.array([p["flops"] for p in points]))
    return {"coef": coef, "exp": exp, "rmse_log": rmse, "budgets": points}


def flat_region(
    law: Mapping[str, float], flops_per_token: FlopsPerToken, flops: float, factors: tuple[float, ...] = FLAT_FACTORS
) -> dict:
    """Relative loss increase at fixed compute C (FLOPs) when the model is `factor` x N_opt instead of N_opt
    (T = C / C_token(N) shrinks or grows to match): L(k N_opt) / L(N_opt) - 1, under the loss law."""
    n_opt, l_opt = compute_optimal_size(law, flops, flops_per_token)
    n = n_opt[0] * np.asarray(factors)
    rise = loss_law(n, flops / flops_per_token(n), **law) / l_opt[0] - 1
    return {
        "flops": float(flops),
        "n_opt": float(n_opt[0]),
        "loss": float(l_opt[0]),
        "rel_increase": {f"{k:g}": float(v) for k, v in zip(factors, rise, strict=True)},
    }
