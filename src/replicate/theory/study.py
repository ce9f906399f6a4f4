"""The noise-scale experiments behind the SGD chapter; ``python -m replicate theory`` writes results/theory/.

1. quadratic.json: the estimators against closed forms on random quadratics of several sizes and spectra.
2. dit_noise.json: B_noise, B_simple and eta_max of the Video DiT at several checkpoints of runs of three small
   sizes (the cpu study's three smallest, on its 64-token clips), trained at a batch size and learning rate
   near that study's optima.
3. line_search.json: at one checkpoint, the one-step SGD step size that most lowers a held-out loss, for
   several batch sizes, next to eta_opt(B) from the measured noise scale.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import torch

from replicate.config import ClipConfig, ModelConfig, TrainConfig, count_params
from replicate.io import write_json
from replicate.progress import progress_bar
from replicate.provenance import provenance
from replicate.theory.noise import QuadraticProblem, best_step, diffusion_objective, measure, sgd_step_gain
from replicate.theory.sgd import eta_opt
from replicate.training.step import resolve_device
from replicate.training.train import train

# (dim, condition of H, noise scale of S): small B_noise to large
QUADRATICS = [(10, 10.0, 1.0), (50, 100.0, 10.0), (200, 1000.0, 10.0)]
DIT_CLIP = ClipConfig(frames=4)  # 4 x 16 x 16 pixels, 64 tokens with 1 x 4 x 4 patches
DIT_SIZES = {
    name: ModelConfig(width=w, depth=d, heads=h, clip=DIT_CLIP)  # N = 25k, 56k, 149k
    for name, (w, d, h) in (("nano", (32, 2, 2)), ("w48d2", (48, 2, 3)), ("w64d3", (64, 3, 4)))
}
DIT_CHECKPOINTS = (65536, 262144, 1048576)  # training tokens at which the noise scale is measured
DIT_RUN = {"batch_clips": 4, "lr": 0.002}  # AdamW settings of the runs measured: near the study's optima


def _noise_dict(ns) -> dict:
    out = {
        f.name: dataclasses.asdict(getattr(ns, f.name))
        for f in dataclasses.fields(ns)
        if f.name not in ("batch_sizes", "n_draws")
    }
    return {**out, "batch_sizes": list(ns.batch_sizes), "n_draws": ns.n_draws}


def quadratic_study(n_draws: int) -> list[dict]:
    rows = []
    for dim, condition, noise in QUADRATICS:
        qp = QuadraticProblem(dim, condition=condition, noise=noise, seed=dim)
        truth = qp.closed_form()
        small = max(1, round(truth["b_noise"] / 2))
        ns = measure(qp.loss_fn, qp.params, qp.sample_batch, batch_sizes=(small, 32 * small), n_draws=n_draws)
        rows.append({"dim": dim, "condition": condition, "noise": noise, "truth": truth, "estimate": _noise_dict(ns)})
    return rows


def dit_study(device: torch.device, n_draws: int, batch_sizes: tuple[int, int], tokens: tuple[int, ...]) -> tuple:
    """Noise scales along runs of three sizes (raw iterate, not the EMA: SGD steps from the iterate), and the
    models at the first checkpoint of the smallest size for the line search."""
    rows, first_model = [], None
    for size, model_cfg in DIT_SIZES.items():
        cfg = TrainConfig(model_cfg, tokens=tokens[-1], checkpoints=tokens, ema_gamma=None, val_examples=256, **DIT_RUN)
        models = []
        # the torch backend: the HVPs differentiate twice, which the Triton kernels cannot
        train(
            cfg,
            device=str(device),
            backend="torch",
            on_checkpoint=lambda r, m, ema, keep=models: keep.append((r.checkpoints[-1], m)),
        )
        for checkpoint, model in models:
            # each measurement draws its own batches, so that their errors are independent
            loss_fn, params, sample = diffusion_objective(model, seed=100 + len(rows))
            start = time.perf_counter()
            ns = measure(loss_fn, params, sample, batch_sizes=batch_sizes, n_draws=n_draws)
            rows.append(
                {
                    "size": size,
                    "n_params": count_params(cfg.model),
                    "tokens": checkpoint.tokens,
                    "val_loss": checkpoint.val_loss,
                    "seconds": time.perf_counter() - start,
                    **_noise_dict(ns),
                }
            )
            print(
                f"{size} T={checkpoint.tokens:,}: B_noise {ns.b_noise:.3g}, B_simple {ns.b_simple:.3g}, "
                f"eta_max {ns.eta_max:.3g}",
                flush=True,
            )
        if first_model is None:
            first_model = models[0][1]
    return rows, first_model


def line_search_study(
    model: torch.nn.Module,
    batch_sizes: tuple[int, ...],
    noise_batch_sizes: tuple[int, int],
    n_draws: int,
    heldout_size: int,
) -> dict:
    loss_fn, params, sample = diffusion_objective(model, seed=2)
    ns = measure(loss_fn, params, sample, batch_sizes=noise_batch_sizes, n_draws=n_draws)
    heldout = diffusion_objective(model, seed=3)[2](heldout_size)
    rows = []
    bar = progress_bar(total=len(batch_sizes), desc="line search")
    for b in batch_sizes:
        predicted = eta_opt(b, ns.eta_max.value, ns.b_noise.value)
        etas = predicted * np.logspace(-1.5, 1.0, 11)
        change = sgd_step_gain(loss_fn, params, sample, heldout, b, etas, n_draws=n_draws)
        rows.append(
            {
                "batch_size": b,
                "eta_opt_predicted": predicted,
                "eta_best_measured": best_step(etas, change),
                "etas": etas.tolist(),
                "loss_change": change.tolist(),
            }
        )
        bar.update(1)
    bar.close()
    return {"noise": _noise_dict(ns), "heldout_size": heldout_size, "rows": rows}


def run(out: Path, device: str = "auto", quick: bool = False) -> dict:
    """All three experiments; `quick` is a seconds-long version for tests."""
    dev = resolve_device(device)
    draws = 8 if quick else 48
    tokens = (4096, 8192) if quick else DIT_CHECKPOINTS
    noise_b = (4, 32) if quick else (8, 128)
    results = {"quadratic": quadratic_study(200 if quick else 4000)}
    results["dit_noise"], model = dit_study(dev, draws, noise_b, tokens)
    results["line_search"] = line_search_study(
        model, (2, 8) if quick else (4, 16, 64, 256), noise_b, draws, 64 if quick else 1024
    )
    out.mkdir(parents=True, exist_ok=True)
    prov = provenance(dev)
    for name, payload in results.items():
        write_json(out / f"{name}.json", {"provenance": prov, "quick": quick, "results": payload})
    return results
