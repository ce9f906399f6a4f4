"""The video paper's fixed-vs-tuned claim at language-model scale, on public data: the IsoFLOP points of Porian et al.
(arXiv 2406.19146; ``data/public/porian/``, extracted from their repository with its licence and commit)
fitted by the project's own fitter (``replicate porian``).

The claim: with hyperparameters fixed rather than optimal, the compute-optimal model is larger
(N_opt = 4.04e9 against 2.43e9 parameters at 1e22 FLOPs, 1.66x). Porian et al. trained the same 16 model sizes
with one learning rate, batch size and AdamW beta2 for every size (`base`) and with all three tuned per size
(`tuned`): N_opt(base) / N_opt(tuned) is the same comparison, confounded (CONFOUNDS).

Each configuration's table goes through `fit_runs` (every point at its configuration's hyperparameters; C = 6 N T,
the paper's count; the bootstrap draws runs, a run being a model size's one training run where its budgets are
checkpoints of it): the IsoFLOP law N_opt = coef C^exp and the loss law's N_opt(C). N_opt at each of BUDGETS by
both, and the ratio base / tuned: resample j of a base configuration paired with resample j of the tuned one,
each configuration's bootstrap drawn with its own seed (the runs are independent), so that the ratio's interval
carries both configurations' uncertainty. Raw units: N in parameters, C in FLOPs.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd

from replicate.errors import ConfigError
from replicate.fit.bootstrap import percentile_interval
from replicate.fit.compute import FlopsPerToken, compute_optimal_size
from replicate.fit.document import fit_runs
from replicate.fit.laws import LOSS_PARAMS
from replicate.fit.table import read_table
from replicate.io import holds_source, json_safe, write_json
from replicate.provenance import fit_provenance

PORIAN_DIR = Path("data/public/porian")
BUDGETS = (1e19, 1e20, 1e21, 1e22)  # FLOPs: the video paper compares at 1e22; Porian's largest budget is 2.56e19
DATASETS = {"rw": "RefinedWeb", "owt2": "OpenWebText2"}
CONFIG = ("hparams", "warmup", "decay")
TUNED = ("tuned", "short", "const")
# the paper's last step before tuning: its warm-up corrected, Kaplan's long cosine schedule; the other two bases
# (long warm-up; a cosine decay per budget) are fitted and compared too
HEADLINE_BASE = ("base", "short", "kaplan")
CONFOUNDS = (
    "base and tuned differ in the learning rate, the batch size and AdamW's beta2 at once, and in the schedule "
    "(a cosine decay against a constant rate): the ratio is that of the whole recipe, not of one hyperparameter",
    "the tuned hyperparameters come from a sweep at small sizes, extrapolated by a law in N",
    "Porian et al.'s largest budget is 2.56e19 FLOPs: N_opt at 1e20-1e22 is an extrapolation of each law",
    "language models on web text, not video diffusion transformers: the ratio says what untuned hyperparameters "
    "do to N_opt there, nothing about a video DiT",
)
_6N = FlopsPerToken("6n", 6.0)


def porian_tables(folder: Path = PORIAN_DIR) -> dict[tuple[str, str, str, str], Path]:
    """The IsoFLOP tables of `folder`, keyed (dataset, hparams, warmup, decay) as their rows say."""
    tables = {}
    for path in sorted(Path(folder).glob("isoflop_*.csv")):
        first = pd.read_csv(path, nrows=1)
        tables[(first["dataset"][0], *(first[k][0] for k in CONFIG))] = path
    if not tables:
        raise ConfigError(f"{folder}: no isoflop_*.csv tables (data/public/porian/extract.py writes them)")
    return tables


def _draws(samples: dict, key: str) -> np.ndarray:
    """One sampled statistic of a fit.json as floats (JSON keeps NaN as null)."""
    return np.array([np.nan if v is None else v for v in samples.get(key, [])], dtype=float)


def n_opt_draws(fit: dict, budgets: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """N_opt (parameters) at each budget (FLOPs) by the IsoFLOP law and by the loss law (minimising it at
    C = 6 N T): per estimator (the full data's values, the values per bootstrap resample (resamples, budgets),
    NaN where a resample gave no law)."""
    samples = fit["bootstrap"]["samples"]
    out = {}
    iso = fit["compute_law"]["isoflop"]
    if iso is not None:
        coef, exp = _draws(samples, "compute_law.isoflop.coef"), _draws(samples, "compute_law.isoflop.exp")
        out["isoflop"] = (iso["coef"] * budgets ** iso["exp"], coef[:, None] * budgets[None, :] ** exp[:, None])
    law = fit["loss_law"]
    per_draw = np.column_stack([_draws(samples, f"loss_law.{k}") for k in LOSS_PARAMS])
    draws = np.full((len(per_draw), len(budgets)), np.nan)
    for j, params in enumerate(per_draw):
        if np.all(np.isfinite(params)):
            draws[j] = compute_optimal_size(dict(zip(LOSS_PARAMS, params, strict=True)), budgets, _6N)[0]
    full = compute_optimal_size({k: law[k] for k in LOSS_PARAMS}, budgets, _6N)[0]
    out["loss_law"] = (full, draws)
    return out


def _estimate(value: float, draws: np.ndarray) -> dict:
    return {"value": float(value), "ci95": percentile_interval(draws), "resamples": int(np.isfinite(draws).sum())}


def _published(folder: Path) -> dict[tuple, dict]:
    """Porian et al.'s own N_opt exponents (exponents.csv), keyed as `porian_tables`."""
    path = Path(folder) / "exponents.csv"
    if not path.is_file():
        return {}
    rows = pd.read_csv(path)
    return {
        (r.dataset, r.hparams, r.warmup, r.decay): {"exp": r.n_opt_exponent, "ci95": [r.ci95_low, r.ci95_high]}
        for r in rows.itertuples()
    }


def config_summary(fit: dict, draws: dict, budgets: np.ndarray, published: dict | None) -> dict:
    """One configuration's N_opt laws from its fit.json: the IsoFLOP exponent and the loss law's, both with
    intervals, whether they disagree, N_opt at each budget by both, and the paper's own exponent beside."""
    compute, iso = fit["compute_law"], fit["compute_law"]["isoflop"]
    loss = fit["loss_law"]
    return {
        "n_points": fit["n_fit_rows"],
        "n_runs": fit["n_runs"],
        "n_sizes": len({o["n_params"] for o in fit["optima"]}),
        "isoflop": None if iso is None else {"exp": iso["exp"], "coef": iso["coef"], "ci95": iso["ci95"]["exp"]},
        "loss_law_compute": {"exp": compute["exp"], "coef": compute["coef"], "ci95": compute["ci95"]["exp"]},
        "loss_law": {**{k: loss[k] for k in (*LOSS_PARAMS, "converged")}, "ci95": loss["ci95"]},
        "estimators": fit["estimators"],
        "published": published,
        "n_opt": [
            {"flops": float(c), **{name: _estimate(full[i], d[:, i]) for name, (full, d) in draws.items()}}
            for i, c in enumerate(budgets)
        ],
        "bootstrap_failed": fit["bootstrap"]["failed"],
        "warnings": fit["warnings"],
    }


def ratios(base: dict, tuned: dict, budgets: np.ndarray) -> list[dict]:
    """N_opt(base) / N_opt(tuned) at each budget by each estimator both have: the full data's ratio and the
    95% interval over paired resamples (`n_opt_draws` of each)."""
    rows = []
    for i, c in enumerate(budgets):
        row = {"flops": float(c)}
        for name in (name for name in base if name in tuned):  # in base's order: the JSON is the same every run
            (fb, db), (ft, dt) = base[name], tuned[name]
            k = min(len(db), len(dt))
            row[name] = _estimate(fb[i] / ft[i], db[:k, i] / dt[:k, i])
        rows.append(row)
    return rows


def porian_claim(folder: Path = PORIAN_DIR, bootstrap: int = 1000, seed: int = 0, progress: bool = False) -> dict:
    """The claim on every dataset of `folder` (see the module docstring); JSON-safe."""
    budgets = np.asarray(BUDGETS, dtype=float)
    published = _published(folder)
    datasets: dict = {}
    for k, (key, path) in enumerate(porian_tables(folder).items()):
        # each configuration its own seed: paired resamples of two configurations must be independent draws
        fit = fit_runs(read_table(path), flops="6n", bootstrap=bootstrap, seed=seed + k, progress=progress)
        draws = n_opt_draws(fit, budgets)
        entry = datasets.setdefault(key[0], {"name": DATASETS.get(key[0], key[0]), "configs": {}, "_draws": {}})
        name = "_".join(key[1:])
        entry["configs"][name] = {
            **dict(zip(CONFIG, key[1:], strict=True)),
            "table": path.name,
            "seed": seed + k,
            **config_summary(fit, draws, budgets, published.get(key)),
        }
        entry["_draws"][name] = draws
    tuned = "_".join(TUNED)
    for entry in datasets.values():
        draws = entry.pop("_draws")
        if tuned in draws:
            entry["ratios"] = {
                name: ratios(d, draws[tuned], budgets) for name, d in draws.items() if name.startswith("base")
            }
    return json_safe(
        {
            "claim": "fixed vs tuned: N_opt with fixed (untuned) hyperparameters against N_opt with tuned ones",
            "budgets": list(BUDGETS),
            "headline_base": "_".join(HEADLINE_BASE),
            "tuned": tuned,
            "confounds": list(CONFOUNDS),
            "units": {"n_opt": "parameters", "flops": "FLOPs, C = 6 N T", "loss": "nats per token"},
            "bootstrap": {"resamples": bootstrap, "unit": "run", "interval": "95% percentile"},
            "datasets": datasets,
        }
    )


def porian_source(folder: Path, bootstrap: int, seed: int) -> dict:
    """What the claim is computed from: every table of `folder` (SHA-256), the data's own source, options."""
    folder = Path(folder)
    files = sorted(folder.glob("*.csv"))
    origin = folder / "source.json"
    return {
        "data": str(folder),
        "sha256": {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files},
        "origin": json.loads(origin.read_text()) if origin.is_file() else None,
        "bootstrap": bootstrap,
        "seed": seed,
    }


def porian_file(
    folder: Path, out: Path, bootstrap: int = 1000, seed: int = 0, if_changed: bool = False, progress: bool = True
) -> dict | None:
    """``replicate porian``: `porian_claim` written to `out` with its source and provenance; with if_changed,
    None without computing when `out` already holds the claim of these very tables and options."""
    if bootstrap < 0:
        raise ConfigError(f"--bootstrap must be >= 0, got {bootstrap}")
    source = porian_source(folder, bootstrap, seed)
    if if_changed and holds_source(out, source):
        return None
    doc = {**porian_claim(folder, bootstrap, seed, progress), "source": source, "provenance": fit_provenance()}
    write_json(out, doc)
    return doc
