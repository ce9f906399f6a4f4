"""The analysis' result documents read back: fit.json (``replicate fit``, replicate.fit.document), lr_law.json
(``replicate lrlaw``, replicate.fit.lr_law) and the two summary.json kinds (Stage A's ``replicate curvature``,
replicate.fit.curvature; Stage L's ``replicate lrlaw --summary``, replicate.fit.heldout). Their schemas are the
typed dicts below (a test holds each to what its writer writes), every reader opens them here (`read_fit`,
`read_lr_law`, `read_summary`), and the rule for which B_opt and eta_opt law is the headline is `headline`.

Units are raw throughout: N in parameters, T in training tokens, B in tokens per step, C in FLOPs; an interval
(`ci95`) is a 95% bootstrap percentile interval [lo, hi], None where the resamples gave none.
"""

# no postponed annotations here: TypedDict reads NotRequired when each class is made
import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NotRequired, TypedDict

from replicate.errors import ConfigError
from replicate.fit.laws import HYPER_PARAMS, LOSS_PARAMS
from replicate.fit.loss import LossLawFit

Interval = list[float] | None


class HyperparameterLaw(TypedDict):
    """X = coef T^exp_tokens N^exp_params (B_opt in tokens per step, or eta_opt), fitted to the interior optima."""

    coef: float
    exp_tokens: float
    exp_params: float
    rmse_log: float
    n_points: int  # the optima it was fitted to
    ci95: dict[str, Interval]  # per parameter
    band: dict[str, float]  # the same law fitted to the centres of DeepSeek's 0.25% band (a cross-check)


class Surface(TypedDict):
    """One surface through every (N, T, B, lr) cell (fit.surface): the headline B_opt and eta_opt laws where it
    converged. Without a minimum along B its laws and curvature are None; the lr-B ridge stands."""

    method: str
    converged: bool
    batch_size_law: dict[str, Any]  # coef, exp_tokens, exp_params, ci95
    lr_law: dict[str, Any]  # coef, exp_tokens, exp_params, ridge, ci95, curvature_below, curvature_above
    curvature_per_doubling2: dict[str, Any]  # value, ci95: the relative loss per squared doubling of B
    rmse_log: float
    n_points: int
    n_groups: int


# L = a T^-alpha_tokens + b N^-alpha_params + l_inf (Eq. 15), fitted to the optima's losses: LossLawFit's fields
# (its parameters and how the fit went), its intervals and its checks (fit.checks)
LossLaw = TypedDict(
    "LossLaw",
    {
        **{f.name: f.type for f in dataclasses.fields(LossLawFit) if f.repr},
        "mse": float,
        "ci95": dict[str, Interval],
        "raw_residual_fit": dict[str, Any],  # the same law on raw residuals (a warning where it disagrees)
        "n_on_edge": int,  # of its points, optima on an edge of their grid
        "interior_only": dict[str, Any] | None,  # refitted to the interior optima alone
        "leave_one_size_out": list[dict[str, Any]],
        "interaction_law": dict[str, Any],  # the form with an N x T interaction (fit.interaction)
        "preferred_form": dict[str, Any],
        "profile_alpha_params": dict[str, Any],  # the likelihood profile along alpha_N: range95, open_low, open_high
        "huber": dict[str, Any],
    },
    total=False,
)


class ComputeLaw(TypedDict, total=False):
    """N_opt(C) of a loss law: N_opt = coef C^exp over the data's budgets, the argmin at the reference budget
    (the book's one definition of N_opt), and the IsoFLOP law (None where no budget brackets a minimum)."""

    coef: float
    exp: float
    rmse_log: float
    isoflop: dict[str, Any] | None
    n_opt_at_reference: float
    flops_per_token: dict[str, Any]  # FlopsPerToken.to_dict(): the convention's C_token(N)
    # the headline `compute_law` (and `fixed.compute_law`) add:
    flops: str  # the headline FLOP convention
    reference_flops: float
    ci95: dict[str, Interval]
    identified: bool  # False where too few model sizes pin N_opt: its numbers withheld
    not_identified: str
    loss_law_converged: bool
    alpha_params_range95: Interval  # where the loss law did not converge: alpha_N's profile range
    alpha_params_range_open: list[bool]


class Bootstrap(TypedDict):
    """How the intervals were drawn, and the laws' parameters per resample (what `replicate predict` turns into
    prediction intervals)."""

    resamples: int
    seed: int
    unit: str  # what a resample draws: runs, or the seeds within each (N, B, lr) cell
    interval: str
    failed: dict[str, int]  # resamples without a value, per law
    # "law.parameter" -> one value per resample (None where it failed), for the laws of document.SAMPLED_LAWS:
    # loss_law.*, compute_law.{coef,exp}, batch_size_law.*, lr_law.*, surface.batch_size_law.*, surface.lr_law.*
    samples: dict[str, list[float | None]]


class FitDocument(TypedDict):
    """fit.json, every top-level key. `runs`, `grid`, `divergence` and `estimators` came later than the
    committed studies' fits, and `source` and `provenance` only from `replicate fit` (not from fit_runs)."""

    mode: Literal["hyperparameters", "loss_only"]  # loss_only: a table without batch_size and lr columns
    units: dict[str, str]
    n_rows: int
    n_fit_rows: int
    n_holdout_rows: int
    n_runs: int
    n_diverged: int
    n_diverged_runs: int
    optima: list[dict[str, Any]]  # per (N, T): n_params, tokens, batch_size, lr, val_loss, on_edge, edge, used, ...
    batch_size_law: HyperparameterLaw | None  # the per-(N, T) optima's B_opt law
    lr_law: HyperparameterLaw | None  # ... and eta_opt law
    lr_batch_exponent: dict[str, Any] | None  # value, ci95, meaning: d log lr_opt / d log B at fixed (N, T)
    surface: Surface | None
    loss_law: LossLaw
    compute_laws: dict[str, ComputeLaw]  # per FLOP convention of the table
    compute_law: ComputeLaw  # the headline convention's
    flat_region: list[dict[str, Any]]  # per budget: flops, n_opt, loss, rel_increase at 0.7 and 1.3 N_opt
    fixed: dict[str, Any] | None  # the fixed baseline: batch_size, lr, loss_law, compute_law, n_opt_ratio(_ci95)
    holdout: list[dict[str, Any]]  # per held-out (N, T): predicted and observed loss, B and lr, rel_error, ci95s
    runs: NotRequired[dict[str, Any]]  # how the table was read: the run rule, runs, checkpoints
    grid: NotRequired[dict[str, Any] | None]  # the (B, lr) grid, spellings merged
    divergence: NotRequired[dict[str, Any]]  # the rule and the rows taken as diverged by their loss
    estimators: NotRequired[list[dict[str, Any]]]  # exponents two estimators measure, and whether they disagree
    bootstrap: Bootstrap
    warnings: list[str]
    source: NotRequired[dict[str, Any]]  # what it was computed from (io.table_source)
    provenance: NotRequired[dict[str, str]]


class LrLawDocument(TypedDict):
    """lr_law.json: the learning-rate law at a fixed batch size (replicate.fit.lr_law's docstring has the model)."""

    readout: str
    model: str
    lr_exponent_tokens: dict[str, Any]  # value, ci95: e_T of lr* ~ T^e_T N^e_N
    lr_exponent_params: dict[str, Any] | None  # e_N; None with one model size
    ridge: dict[str, Any]  # r of lr* ~ B^r, shared by the sizes
    ridge_by_size: list[dict[str, Any]]
    curvature_per_octave2: dict[str, Any]  # the bowl's below and above its vertex
    paper_implied: dict[str, Any]  # e_T and e_N that the paper's laws imply at the measured r
    implied: dict[str, Any]
    fit: dict[str, Any]  # cells, groups, clusters, sizes, batch sizes, the window, t0, n0, log_lr_at_center, rmse
    vertices: list[dict[str, Any]]  # each training group's bowl vertex
    bootstrap: dict[str, Any]
    units: dict[str, str]
    source: NotRequired[dict[str, Any]]
    provenance: NotRequired[dict[str, str]]


class CurvatureSummary(TypedDict):
    """Stage A's summary.json (replicate.fit.curvature): the curvature along B against the seed noise."""

    readout: str
    curvature_per_doubling2: dict[str, Any]  # value, ci95, ci95_least_squares, ci95_envelope
    seed_noise: dict[str, Any]  # raw and ema, each all_cells and near_optimum (rms, cells)
    interior_fraction: dict[str, Any]
    beta_b: dict[str, Any]  # the B_opt exponent in T: value, ci95, paper
    b_opt_law: dict[str, Any]
    lr_law: dict[str, Any]  # the surface's lr-B ridge
    surface: dict[str, Any]
    verdict: str  # go, marginal, no-go or not measured
    verdict_envelope: list[str]
    seeds_needed: dict[str, Any]
    bootstrap: dict[str, Any]
    ema: dict[str, Any] | None  # the same for the EMA weights' loss
    units: dict[str, str]
    source: NotRequired[dict[str, Any]]
    provenance: NotRequired[dict[str, str]]


class HeldoutSummary(TypedDict):
    """Stage L's summary.json (replicate.fit.heldout): the lr law's headline entries and its held-out checks."""

    readout: str
    lr_exponent_tokens: dict[str, Any]
    lr_exponent_params: dict[str, Any] | None
    ridge: dict[str, Any]
    ridge_by_size: list[dict[str, Any]]
    paper_implied: dict[str, Any]
    implied: dict[str, Any]
    ridge_spread: float | None
    # n_params, batch_size, checkpoints, loss_law (the law fitted at the lr-optimal cells of the held-out model's
    # batch size: LOSS_PARAMS, how the fit went, and ci95 per parameter); None without a held-out model
    heldout: dict[str, Any] | None
    heldout_lr_ratio: list[dict[str, Any]]
    heldout_loss_error: list[dict[str, Any]]
    batch_gap: list[dict[str, Any]]
    goals: dict[str, float]
    bootstrap: dict[str, Any]
    # the seeds' spread at the fitting sizes (fit.curvature.seed_noise): seeds, all_cells, near_optimum
    seed_noise: NotRequired[dict[str, Any]]
    # the same at the held-out model: what its measured loss, a mean of its seeds, strays by; None without one
    heldout_seed_noise: NotRequired[dict[str, Any] | None]
    units: dict[str, str]
    source: NotRequired[dict[str, Any]]
    provenance: NotRequired[dict[str, str]]


Summary = CurvatureSummary | HeldoutSummary


def _read(path: str | Path, kinds: tuple[type, ...]) -> Any:
    """The JSON document at `path` if it has every required key of one of `kinds`; None where there is no file;
    a ConfigError naming what is missing otherwise."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not JSON ({err})") from None
    missing = [sorted(kind.__required_keys__ - set(doc)) for kind in kinds] if isinstance(doc, dict) else [["all"]]
    if all(missing):
        what = " or ".join(kind.__name__ for kind in kinds)
        raise ConfigError(f"{path} is not a {what}: it lacks {', '.join(min(missing, key=len))}")
    return doc


def read_fit(path: str | Path) -> FitDocument | None:
    """fit.json at `path` (None where it does not exist)."""
    return _read(path, (FitDocument,))


def read_lr_law(path: str | Path) -> LrLawDocument | None:
    """lr_law.json at `path` (None where it does not exist)."""
    return _read(path, (LrLawDocument,))


def read_summary(path: str | Path) -> Summary | None:
    """A summary.json at `path`, Stage A's or Stage L's kind (None where it does not exist)."""
    return _read(path, (CurvatureSummary, HeldoutSummary))


# The headline B_opt and eta_opt laws, where two estimators measure them: the one surface through every cell
# (fit.surface) where it converged, else the per-(N, T) optima's laws (fit.optima), which then stand alone.
SURFACE, OPTIMA = "surface fit", "per-(N, T) optima"
LAW_PARAMS = {  # the parameters of each law that predictions evaluate (`law_parameters`)
    "loss_law": LOSS_PARAMS,
    "batch_size_law": HYPER_PARAMS,
    "lr_law": HYPER_PARAMS,
    "compute_law": ("coef", "exp"),
}


def surface_leads(surface: Mapping[str, Any] | None) -> bool:
    """Whether the surface fit is the headline for B_opt and eta_opt: it exists and converged."""
    return bool(surface) and bool(surface.get("converged"))


@dataclass(frozen=True)
class Headline:
    """A law as the book and `replicate predict` take it: its fit.json entry (None where it has none), the
    method that measured it, and where bootstrap.samples keeps its resamples."""

    law: Mapping[str, Any] | None
    method: str
    samples_prefix: str


def headline(fit: Mapping[str, Any], name: str, fallback: bool = True) -> Headline:
    """The headline `name` law of a fit.json: for batch_size_law and lr_law the surface's where it converged,
    else (with `fallback`) the per-(N, T) optima's; any other law is its own entry. Without `fallback` a
    surface that did not converge leaves no headline (law None): where the optima cannot stand for the law."""
    if name in ("batch_size_law", "lr_law"):
        surface = fit.get("surface")
        if surface_leads(surface):
            return Headline(surface[name], SURFACE, f"surface.{name}")
        return Headline(fit.get(name) if fallback else None, OPTIMA, name)
    return Headline(fit.get(name), name, name)


def law_parameters(fit: Mapping[str, Any], name: str, sample: int | None = None) -> dict[str, float] | None:
    """The headline `name` law's parameters (LAW_PARAMS), or those of bootstrap resample `sample`; None where
    the fit has no such law or the resample gave none."""
    keys, chosen = LAW_PARAMS[name], headline(fit, name)
    if not chosen.law or any(chosen.law.get(k) is None for k in keys):
        return None
    if sample is None:
        return {k: chosen.law[k] for k in keys}
    drawn = (fit.get("bootstrap") or {}).get("samples") or {}
    values = [drawn.get(f"{chosen.samples_prefix}.{k}", [None] * (sample + 1))[sample] for k in keys]
    return None if any(v is None for v in values) else dict(zip(keys, values, strict=True))


def law_samples(fit: Mapping[str, Any], name: str) -> list[dict[str, float]]:
    """The headline `name` law of every bootstrap resample that fitted one, finite in every parameter (fit.json
    keeps the resamples jointly)."""
    drawn = (fit.get("bootstrap") or {}).get("samples") or {}
    count = len(drawn.get(f"{headline(fit, name).samples_prefix}.{LAW_PARAMS[name][0]}") or [])
    laws = (law_parameters(fit, name, sample) for sample in range(count))
    return [law for law in laws if law is not None and all(math.isfinite(v) for v in law.values())]
