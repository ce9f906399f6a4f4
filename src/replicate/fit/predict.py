"""What a practitioner wants from the laws: at a model size and a token budget (or a compute budget), the
optimal batch size and learning rate and the predicted loss, each with its 95% interval (``replicate
predict``). The laws come from any fit.json (intervals from its bootstrap resamples, evaluated jointly) or from
the paper's printed laws (replicate.paper; the paper gives no intervals).

Units: N in parameters, T in training tokens, B in tokens per step, C in FLOPs. For a compute budget, the
size is N_opt(C), the model size that minimises the fit's loss law at C FLOPs (`compute_optimal_size`, the fit's
headline FLOP convention; fit.json's `compute_law.n_opt_at_reference` at 1e22 FLOPs): the one definition the book
uses. The power law N_opt = coef C^exp that fit.json also holds summarises it over the data's budgets and is not
used to extrapolate. The tokens are T_opt = C / C_token(N_opt) with that convention's FLOPs per token. With the
paper's laws, N_opt(C) is its printed Eq. 18 (which the paper derives from its loss law) and C_token = 6 N (the
paper's own count needs the context length and width of a model it does not name).
"""

from __future__ import annotations

import numpy as np

from replicate.errors import ConfigError
from replicate.fit.bootstrap import percentile_interval
from replicate.fit.compute import FlopsPerToken, compute_optimal_size
from replicate.fit.laws import compute_law, hyperparameter_law, loss_law
from replicate.fit.read import LAW_PARAMS, FitDocument, law_parameters
from replicate.paper import paper_laws


def paper_fit() -> dict:
    """The paper's laws in the shape of a fit.json (no intervals, C_token = 6N)."""
    laws = paper_laws()
    return {
        "loss_law": laws["loss_law"],
        "batch_size_law": laws["batch_size_law"],
        "lr_law": laws["lr_law"],
        "compute_law": {**laws["compute_law_from_loss"], "flops": "6n", "printed": True},
        "compute_laws": {"6n": {"flops_per_token": FlopsPerToken("6n", 6.0).to_dict()}},
    }


def _laws(fit: FitDocument, sample: int | None = None) -> dict[str, dict[str, float] | None]:
    """The fit's headline laws (loss, B_opt, eta_opt, N_opt(C): fit.read.headline), or those of bootstrap
    resample `sample`."""
    return {law: law_parameters(fit, law, sample) for law in LAW_PARAMS}


def _point(
    laws: dict, fpt: FlopsPerToken, n_params: float | None, tokens: float | None, flops: float | None, printed: bool
) -> dict[str, float]:
    if flops is not None:
        if printed and laws["compute_law"] is not None:
            n_params = float(compute_law(flops, **laws["compute_law"]))
        elif laws["loss_law"] is not None:
            n_params = float(compute_optimal_size(laws["loss_law"], flops, fpt)[0][0])
        else:
            return {}
        tokens = flops / float(fpt(n_params))
    out = {"n_params": n_params, "tokens": tokens}
    if laws["batch_size_law"]:
        out["batch_size"] = float(hyperparameter_law(tokens, n_params, **laws["batch_size_law"]))
    if laws["lr_law"]:
        out["lr"] = float(hyperparameter_law(tokens, n_params, **laws["lr_law"]))
    if laws["loss_law"]:
        out["val_loss"] = float(loss_law(n_params, tokens, **laws["loss_law"]))
    return out


def predict(
    fit: FitDocument, n_params: float | None = None, tokens: float | None = None, flops: float | None = None
) -> dict:
    """Predictions at (n_params, tokens), or at the compute-optimal (N, T) of `flops`; each quantity with its
    95% interval over the fit's bootstrap resamples (None without them). ConfigError on a bad request."""
    if (flops is None) == (n_params is None or tokens is None) or (flops is not None and n_params is not None):
        raise ConfigError("give --params and --tokens, or --flops")
    for name, value in (("params", n_params), ("tokens", tokens), ("flops", flops)):
        if value is not None and not (np.isfinite(value) and value > 0):
            raise ConfigError(f"--{name} must be a positive number, got {value}")
    compute = fit.get("compute_law") or {}
    convention = compute.get("flops", "6n")
    fpt_dict = ((fit.get("compute_laws") or {}).get(convention) or {}).get("flops_per_token")
    fpt = FlopsPerToken(**fpt_dict) if fpt_dict else FlopsPerToken("6n", 6.0)
    printed = bool(compute.get("printed"))
    if flops is not None and compute.get("identified") is False:
        reason = compute.get("not_identified") or "N_opt(C) is not identified"
        raise ConfigError(f"this fit has no compute law ({reason}): give --params and --tokens")
    point = _point(_laws(fit), fpt, n_params, tokens, flops, printed)
    if not point:
        raise ConfigError("this fit has no loss law to minimise: give --params and --tokens")
    resamples = int((fit.get("bootstrap") or {}).get("resamples") or 0)
    has_samples = bool((fit.get("bootstrap") or {}).get("samples"))
    draws = (
        [_point(_laws(fit, j), fpt, n_params, tokens, flops, printed) for j in range(resamples)] if has_samples else []
    )
    ci = {}
    for key in point:
        values = np.array([d.get(key, np.nan) for d in draws], dtype=float)
        ci[key] = percentile_interval(values) if len(values) else None
    if flops is None:
        ci["n_params"] = ci["tokens"] = None  # given, not predicted
    return {
        "flops": flops,
        "flop_convention": convention,
        "prediction": point,
        "ci95": ci,
        "resamples": resamples if has_samples else 0,
    }
