"""Synthetic sweeps with planted laws, in the ``runs.csv`` layout: the test bed for every fitting method."""

from __future__ import annotations

import numpy as np
import pandas as pd

from replicate.config import ModelConfig, count_params
from replicate.fit.laws import hyperparameter_law, loss_law
from replicate.paper import paper_laws
from replicate.runs import COLUMNS

# Planted laws at our scale (raw units): the paper's exponents and loss law, with the hyperparameter laws'
# coefficients set so that B_opt = 4096 tokens and lr_opt = 2e-3 at N = 4e5, T = 4e6.
TRUTH = {
    "loss_law": paper_laws()["loss_law"],
    "batch_size_law": {"coef": 4096 / (4e6**0.8080 * 4e5**0.1906), "exp_tokens": 0.8080, "exp_params": 0.1906},
    "lr_law": {"coef": 2e-3 / (4e6**-0.0453 * 4e5**-0.1619), "exp_tokens": -0.0453, "exp_params": -0.1619},
}


def _count_params(width: int, depth: int) -> int:
    """N of a Video DiT of this width and depth (heads do not change it)."""
    return count_params(ModelConfig(width=width, depth=depth, heads=1))


def synthetic_sweep(
    widths: tuple[int, ...] = (32, 48, 64, 96, 128),
    holdout_widths: tuple[int, ...] = (),
    tokens: tuple[float, ...] = tuple(2**20 * 2 ** (k / 2) for k in range(8)),
    n_batch: int = 7,
    n_lr: int = 7,
    lr_step: float = 1.5,
    n_ctx: int = 128,
    curvature_batch: float = 0.01,
    curvature_lr: tuple[float, float] = (0.01, 0.04),
    diverge_factor: float = 4.0,
    diverge_rate: float = 0.02,
    run_noise: float = 3e-4,
    checkpoint_noise: float = 1e-4,
    truth: dict | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """A (N, B, lr) sweep validated at shared token checkpoints, one row per run x checkpoint.

    Model sizes: the given widths with depth = max(2, width // 16) (N = 12 d^2 + 9 d per block). Every size
    trains every (B, lr) of one global grid: `n_batch` batch sizes x2 apart (multiples of `n_ctx` tokens) and
    `n_lr` learning rates `lr_step` apart, both centred on the planted optimum at the middle of the sweep.
    A run validates near each of `tokens` (rounded to a multiple of its batch size, as a real run stops there).

    Loss: L(N, T) of the planted loss law times 1 + c_B u^2 + c_lr(v) v^2, u = ln(B / B_opt(N, T)),
    v = ln(lr / lr_opt(N, T)), with c_lr = curvature_lr[0] below the optimum and curvature_lr[1] (steeper)
    above it; times (1 + run offset) (one draw per run, sd `run_noise`: checkpoints of a run are correlated)
    and (1 + checkpoint noise). A run with lr > diverge_factor x lr_opt at its last checkpoint diverges from
    the start; any other run diverges with probability `diverge_rate` from a random checkpoint on. Diverged
    rows have val_loss NaN. `truth` (default TRUTH) holds the planted laws. Sizes in `holdout_widths` get
    role "holdout".
    """
    truth = truth or TRUTH
    rng = np.random.default_rng(seed)
    all_widths = (*widths, *holdout_widths)
    sizes = [(w, max(2, w // 16)) for w in all_widths]
    n_mid = np.exp(np.mean([np.log(_count_params(w, d)) for w, d in sizes[: len(widths)]]))
    t_mid = np.exp(np.mean(np.log(tokens)))
    b_mid = hyperparameter_law(t_mid, n_mid, **truth["batch_size_law"])
    lr_mid = hyperparameter_law(t_mid, n_mid, **truth["lr_law"])
    samples0 = 2.0 ** np.round(np.log2(b_mid / n_ctx) - (n_batch - 1) / 2)
    batches = n_ctx * np.maximum(1.0, samples0 * 2.0 ** np.arange(n_batch))
    lrs = lr_mid * lr_step ** (np.arange(n_lr) - (n_lr - 1) / 2)
    rows = []
    run_id = 0
    for width, depth in sizes:
        n = _count_params(width, depth)
        role = "holdout" if width in holdout_widths else "fit"
        for b in batches:
            t_run = np.maximum(1, np.round(np.asarray(tokens) / b)) * b
            for lr in lrs:
                lr_opt = hyperparameter_law(t_run, n, **truth["lr_law"])
                u = np.log(b / hyperparameter_law(t_run, n, **truth["batch_size_law"]))
                v = np.log(lr / lr_opt)
                penalty = curvature_batch * u**2 + np.where(v < 0, curvature_lr[0], curvature_lr[1]) * v**2
                loss = loss_law(n, t_run, **truth["loss_law"]) * (1 + penalty)
                loss *= 1 + run_noise * rng.standard_normal()  # one offset per run
                loss *= 1 + checkpoint_noise * rng.standard_normal(len(t_run))
                diverged = np.zeros(len(t_run), dtype=bool)
                if lr > diverge_factor * lr_opt[-1]:
                    diverged[:] = True
                elif rng.random() < diverge_rate:
                    diverged[rng.integers(len(t_run)) :] = True
                for k, t in enumerate(t_run):
                    rows.append(
                        (
                            f"r{run_id:04d}",
                            n,
                            int(t),
                            int(b),
                            lr,
                            np.nan if diverged[k] else loss[k],
                            bool(diverged[k]),
                            checkpoint_noise * loss[k],
                            width,
                            depth,
                            width // 16 or 1,
                            n_ctx,
                            n_ctx,
                            int(b // n_ctx),
                            seed,
                            6.0 * n,
                            0.75 * n * (7 + n_ctx / width),
                            6.0 * n + 12.0 * n_ctx * width * depth,
                            role,
                        )
                    )
                run_id += 1
    return pd.DataFrame(rows, columns=list(COLUMNS[: COLUMNS.index("role") + 1]))  # the sweep's, less provenance


def synthetic_stage_a(curvature: float, noise: float, seeds: int = 2, seed: int = 0) -> pd.DataFrame:
    """A planted Stage-A sweep (profiles/stage_a.toml's grid): one size, 5 batch sizes x 4 learning rates x2
    apart, 16-token clips, 7 checkpoints sqrt(2) apart from 1.6M tokens, `seeds` seeds (each an independent draw
    of the run and checkpoint noise, `noise` and noise / 3 relative), `curvature` per squared doubling of B."""
    parts = []
    for s in range(seeds):
        t = synthetic_sweep(
            widths=(48,),
            tokens=tuple(1572864 * 2 ** (k / 2) for k in range(7)),
            n_batch=5,
            n_lr=4,
            lr_step=2.0,
            n_ctx=16,
            curvature_batch=curvature / np.log(2) ** 2,
            run_noise=noise,
            checkpoint_noise=noise / 3,
            diverge_rate=0.0,
            seed=1000 * seed + s,
        )
        parts.append(t.assign(run_id=t["run_id"] + f"s{s}", seed=s))
    return pd.concat(parts, ignore_index=True)
