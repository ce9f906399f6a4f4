"""Sweep profiles, without torch: a profile (``profiles/NAME.toml``, or any .toml file) defines the clip, the
fitting model sizes, the token checkpoints, the batch-size and learning-rate grids, seeds, the fixed baseline
and a held-out model; `load_profile` turns it into Runs (one TrainConfig each, identified by `run_id`) and
Groups (the runs that train together as one ensemble).

Schema (every key is checked; unknown keys are errors):
- top level: `description`, `design` (the note that says why the grid is what it is), `workers`, `device`
  (the device type its design assumes), `after` (the profile it waits for: trained only once that one's table
  holds every run and its summary.json's verdict is not no-go; runs.next_profile follows it);
- `[clip]`: ClipConfig's fields; `[model]`: ModelConfig's shared fields; `[train]`: TrainConfig's fields;
- `[grid]`: `checkpoints` (tokens), `batch_sizes` (clips per step), `lrs`, optional `lr_batch_exponent`
  (the lrs are those of one clip per step, times B^exponent at B clips), `seeds`, `ensemble_rows` (clips
  per step across an ensemble's members: E = ensemble_rows // B), and `[[grid.sizes]]` (a named size of
  config.MODEL_SIZES, or name, width, depth, heads; optional per-size `lrs` and `max_members`, a cap on E
  that splits a costly size's groups (seeds outer: a cap of one seed's lrs trains each seed as its own group));
- `[fixed]` (optional): the fixed-hyperparameter baseline's `batch_size` and `lr` (on every size's grid);
- `[holdout]`: a held-out model with its own `batch_sizes`, `lrs`, optional `checkpoints` and optional
  `ensemble_rows` (default the grid's: fewer splits a costly held-out model into smaller groups);
- `[slurm]`: passed to submitit's executor as it is.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from replicate.config import (
    MODEL_SIZES,
    ClipConfig,
    ModelConfig,
    TrainConfig,
    count_params,
    flops_per_token,
    model_config,
)
from replicate.errors import ConfigError
from replicate.paper import optimal_batch

PROFILE_DIR = Path(__file__).parent / "profiles"
# The fields each config had when the committed studies' run ids were written: always hashed, so those ids
# stay valid. A field added since is hashed only where it differs from its default, so adding a defaulted
# field to a config retires no finished run (runs.RunsTable retires rows whose id the profile lacks).
_ID_FIELDS = {
    "TrainConfig": {
        "model",
        "batch_size",
        "lr",
        "tokens",
        "seed",
        "warmup_steps",
        "betas",
        "weight_decay",
        "adam_eps",
        "grad_clip",
        "label_dropout",
        "checkpoints",
        "val_examples",
        "val_seed",
        "blowup",
        "ema_gamma",
        "eval_window",
        "eval_slices",
    },
    "ModelConfig": {"width", "depth", "heads", "mlp_ratio", "patch", "clip", "num_classes", "freq_dim"},
    "ClipConfig": {"frames", "height", "width", "channels"},
}
# fields renamed since, hashed under the name they had then (the ids stay valid): the unit is in the name now
_ID_NAMES = {"TrainConfig": {"batch_clips": "batch_size"}}


def _identity(config: object) -> dict:
    """The fields of a config (dataclass) that identify it, nested configs as dicts (see _ID_FIELDS)."""
    out = {}
    always = _ID_FIELDS.get(type(config).__name__, set())
    names = _ID_NAMES.get(type(config).__name__, {})
    for f in dataclasses.fields(config):
        value, name = getattr(config, f.name), names.get(f.name, f.name)
        if name not in always:
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            if value == default:
                continue
        out[name] = _identity(value) if dataclasses.is_dataclass(value) else value
    return out


def run_id(cfg: TrainConfig) -> str:
    """12 hex digits of the SHA-256 of the config's identifying fields."""
    return hashlib.sha256(json.dumps(_identity(cfg), sort_keys=True).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Run:
    """One training run of a sweep: its config, its role (`fit` or `holdout`) and its canonical position."""

    index: int
    role: str
    size: str
    cfg: TrainConfig

    @property
    def run_id(self) -> str:
        return run_id(self.cfg)


# what a group's step time depends on (Group.shape), as named in the device runs' bench lines
SHAPE_FIELDS = ("width", "depth", "heads", "n_ctx", "batch_samples", "members")


def cfgs_shape(cfgs: list[TrainConfig]) -> tuple[int, ...]:
    """The SHAPE_FIELDS of the members `cfgs` of one group (one model and batch size)."""
    m = cfgs[0].model
    return (m.width, m.depth, m.heads, m.n_ctx, cfgs[0].batch_clips, len(cfgs))


def named_shape(cfgs: list[TrainConfig]) -> dict[str, int]:
    """cfgs_shape by SHAPE_FIELDS' names, as bench lines and the kernel benchmark take it."""
    return dict(zip(SHAPE_FIELDS, cfgs_shape(cfgs), strict=True))


@dataclass(frozen=True)
class Group:
    """Runs that train together as one ensemble (identical but for learning rate and seed)."""

    runs: tuple[Run, ...]

    @property
    def cfgs(self) -> list[TrainConfig]:
        return [r.cfg for r in self.runs]

    def shape(self) -> tuple[int, ...]:
        """What its step time depends on, the values of SHAPE_FIELDS."""
        return cfgs_shape(self.cfgs)

    def step_flops(self) -> float:
        """FLOPs per step, validation included, for every member: what orders groups by the cost of a step."""
        return self.flops() / self.runs[0].cfg.steps

    def flops(self) -> float:
        """Exact FLOPs of training plus validation for every member."""
        cfg = self.runs[0].cfg
        per_token = flops_per_token(cfg.model, "exact")
        evals = len(cfg.checkpoint_steps()) * cfg.val_examples * cfg.model.n_ctx * per_token / 3
        return len(self.runs) * (cfg.steps * cfg.tokens_per_step * per_token + evals)


@dataclass(frozen=True)
class Profile:
    """A parsed profile: its runs in canonical order, their groups, and what the fit and the book read."""

    name: str
    description: str
    runs: tuple[Run, ...]
    groups: tuple[Group, ...]
    fixed_batch_clips: int | None  # clips per step; None: the profile has no fixed baseline
    fixed_lr: float | None
    workers: int
    path: Path
    design: str = ""  # why the grid is what it is
    slurm: dict = field(default_factory=dict)  # submitit executor parameters
    device: str = ""  # the device type its design assumes ("cuda"); a sweep elsewhere needs --device
    after: str = ""  # the profile it waits for (a gate: complete, and a summary verdict that is not no-go)

    def bench_groups(self) -> list[Group]:
        """The groups with the cheapest and the dearest step (one where they coincide): the shapes the device
        checks and the kernel benchmark measure."""
        ordered = sorted(self.groups, key=Group.step_flops)
        return ordered[:1] + ordered[-1:] if len(ordered) > 1 else ordered

    @property
    def fixed_tokens_per_step(self) -> int | None:
        """The fixed baseline's batch size in the fit's unit: tokens per step (None without a baseline)."""
        if self.fixed_batch_clips is None:
            return None
        return self.fixed_batch_clips * self.runs[0].cfg.model.n_ctx


_TOP_KEYS = {
    "after",
    "description",
    "design",
    "device",
    "workers",
    "clip",
    "model",
    "train",
    "grid",
    "fixed",
    "holdout",
    "slurm",
}
_GRID_KEYS = {"checkpoints", "batch_sizes", "lrs", "lr_batch_exponent", "seeds", "ensemble_rows", "sizes", "stop"}
_STOP_KEYS = {"doublings", "law_scale"}
_SIZE_KEYS = {"name", "width", "depth", "heads", "lrs", "max_members"}
_HOLDOUT_KEYS = (_SIZE_KEYS - {"lrs"}) | {"lrs", "batch_sizes", "checkpoints", "ensemble_rows"}


def profile_path(name: str) -> Path:
    """The file of a named profile, or `name` itself if it is a path to a .toml file."""
    path = Path(name)
    if path.suffix == ".toml":
        if not path.is_file():
            raise ConfigError(f"profile file {name} does not exist")
        return path
    path = PROFILE_DIR / f"{name}.toml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in PROFILE_DIR.glob("*.toml")))
        raise ConfigError(f"unknown profile {name!r}: choose one of {known}, or give a .toml file")
    return path


def _check_keys(table: dict, allowed: set[str], where: str) -> None:
    unknown = set(table) - allowed
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")


def _positive_list(values, kind: type, where: str) -> list:
    if not isinstance(values, list) or not values:
        raise ConfigError(f"{where} must be a non-empty list")
    if not all(isinstance(v, kind | int) and not isinstance(v, bool) and v > 0 for v in values):
        raise ConfigError(f"{where} must hold positive numbers, got {values}")
    if len(set(values)) != len(values):
        raise ConfigError(f"{where} has duplicates: {values}")
    return [kind(v) for v in values]


def _size_config(table: dict, where: str, shared: dict) -> tuple[str, ModelConfig]:
    if "name" in table and table["name"] in MODEL_SIZES and not {"width", "depth", "heads"} & set(table):
        return table["name"], model_config(table["name"], **shared)
    if not {"width", "depth", "heads"} <= set(table):
        raise ConfigError(f"{where}: give a size name ({', '.join(MODEL_SIZES)}) or width, depth and heads")
    cfg = ModelConfig(width=table["width"], depth=table["depth"], heads=table["heads"], **shared)
    return table.get("name", f"w{cfg.width}d{cfg.depth}"), cfg


def batch_lrs(lrs: list[float], batch_clips: int, exponent: float) -> list[float]:
    """The learning rates of a batch size: `lrs` (those of one clip per step) times batch_clips^exponent, to 4
    significant digits, so that the grid follows the lr-B ridge (a fit's `lr_batch_exponent`)."""
    return [float(f"{lr * batch_clips**exponent:.4g}") for lr in lrs]


def stop_checkpoints(ckpts: list[int], model: ModelConfig, batch_clips: int, stop: dict | None) -> list[int]:
    """The checkpoints a fitting group of `batch_clips` clips trains to under a [grid.stop] rule: those T where
    B is at most `doublings` doublings below the paper's B_opt(N, T) (scaled by `law_scale`, e.g. to where
    Stage A found the optimum). A small batch thus stops once the optimum has moved past it, keeping one point
    below the optimum at every T, and the longest chains (the smallest batches) get shorter. No rule: all."""
    if stop is None:
        return ckpts
    reach = 2 ** stop.get("doublings", 1) * batch_clips * model.n_ctx / stop.get("law_scale", 1.0)
    return [c for c in ckpts if optimal_batch(count_params(model), c) <= reach]


def load_profile(name: str) -> Profile:
    """Parse and validate a profile; every problem is a ConfigError naming it."""
    path = profile_path(name)
    try:
        raw = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"profile {path}: {err}") from None
    _check_top(raw, path)
    fixed = raw.get("fixed")
    try:
        grid = _Grid.parse(raw)
        for i, table in enumerate(raw["grid"]["sizes"]):
            where = f"[[grid.sizes]] #{i + 1}"
            _check_keys(table, _SIZE_KEYS, where)
            lrs = _positive_list(table["lrs"], float, f"{where} lrs") if "lrs" in table else grid.lrs
            if fixed is not None:
                at_fixed = batch_lrs(lrs, fixed.get("batch_size", 1), grid.exponent)
                if not any(math.isclose(fixed.get("lr", -1), lr) for lr in at_fixed):
                    raise ConfigError(
                        f"[fixed] lr {fixed.get('lr')} is not in the lr grid of size #{i + 1} at the fixed "
                        f"batch size: {at_fixed}"
                    )
            grid.add("fit", table, where, grid.batch_sizes, lrs, grid.checkpoints, grid.rows)
        if fixed is not None and fixed.get("batch_size") not in grid.batch_sizes:
            raise ConfigError(f"[fixed] batch_size {fixed.get('batch_size')} is not in the grid {grid.batch_sizes}")
        if "holdout" in raw:
            hold = raw["holdout"]
            _check_keys(hold, _HOLDOUT_KEYS, "[holdout]")
            grid.add(
                "holdout",
                hold,
                "[holdout]",
                _positive_list(hold.get("batch_sizes"), int, "[holdout] batch_sizes"),
                _positive_list(hold.get("lrs"), float, "[holdout] lrs"),
                sorted(_positive_list(hold.get("checkpoints", grid.checkpoints), int, "[holdout] checkpoints")),
                int(hold.get("ensemble_rows", grid.rows)),
            )
    except TypeError as err:  # a misspelt or mistyped config field
        raise ConfigError(f"profile {path.name}: {err}") from None
    return Profile(
        path.stem,
        raw.get("description", ""),
        tuple(grid.runs),
        tuple(grid.groups),
        None if fixed is None else int(fixed["batch_size"]),
        None if fixed is None else float(fixed["lr"]),
        int(raw.get("workers", 1)),
        path,
        raw.get("design", "").strip(),
        dict(raw.get("slurm", {})),
        str(raw.get("device", "")),
        str(raw.get("after", "")),
    )


def _check_top(raw: dict, path: Path) -> None:
    """The top level's keys, its device and the profile it waits for (`after`), and that it has a [grid]."""
    _check_keys(raw, _TOP_KEYS, f"profile {path.name}")
    if raw.get("device", "") not in ("", "cpu", "cuda"):
        raise ConfigError(f"profile {path.name}: device must be cpu or cuda, got {raw['device']!r}")
    if raw.get("after") is not None and (not isinstance(raw["after"], str) or raw["after"] == path.stem):
        raise ConfigError(f"profile {path.name}: after must name another profile, got {raw['after']!r}")
    if raw.get("after"):
        profile_path(raw["after"])  # an unknown profile is a ConfigError here, not when the plan is followed
    if "grid" not in raw:
        raise ConfigError(f"profile {path.name} has no [grid] table")
    _check_keys(raw["grid"], _GRID_KEYS, "[grid]")


@dataclass
class _Grid:
    """A profile's [grid] with the [clip], [model] and [train] tables every size shares, and the runs and groups
    made from it so far (`add`), in canonical order."""

    shared_model: dict
    shared_train: dict
    checkpoints: list[int]
    batch_sizes: list[int]
    lrs: list[float]
    seeds: list[int]
    exponent: float  # lrs scale as B^exponent across the batch grid
    rows: int  # clips per step across an ensemble's members
    stop: dict | None
    runs: list[Run] = field(default_factory=list)
    groups: list[Group] = field(default_factory=list)

    @classmethod
    def parse(cls, raw: dict) -> _Grid:
        grid = raw["grid"]
        shared_model = {"clip": ClipConfig(**raw.get("clip", {})), **raw.get("model", {})}
        if "patch" in shared_model:
            shared_model["patch"] = tuple(shared_model["patch"])
        shared_train = dict(raw.get("train", {}))
        if "betas" in shared_train:
            shared_train["betas"] = tuple(shared_train["betas"])
        parsed = cls(
            shared_model,
            shared_train,
            sorted(_positive_list(grid.get("checkpoints"), int, "[grid] checkpoints")),
            _positive_list(grid.get("batch_sizes"), int, "[grid] batch_sizes"),
            _positive_list(grid.get("lrs"), float, "[grid] lrs"),
            grid.get("seeds", [0]),
            float(grid.get("lr_batch_exponent", 0.0)),
            int(grid.get("ensemble_rows", 0)),
            grid.get("stop"),
        )
        if parsed.stop is not None:
            _check_keys(parsed.stop, _STOP_KEYS, "[grid.stop]")
            if not all(isinstance(v, int | float) and v > 0 for v in parsed.stop.values()):
                raise ConfigError(f"[grid.stop] values must be positive numbers, got {parsed.stop}")
        if not grid.get("sizes"):
            raise ConfigError("[grid] needs at least one [[grid.sizes]] entry")
        return parsed

    def add(
        self, role: str, table: dict, where: str, batch_sizes: list[int], lrs: list[float], ckpts: list[int], rows: int
    ) -> None:
        """The runs of one size (`table`) at each of `batch_sizes`: seeds outer, learning rates inner, grouped
        into ensembles of rows // B members (at most the size's max_members)."""
        size, model = _size_config(table, where, self.shared_model)
        for b in batch_sizes:
            ckpts_b = stop_checkpoints(ckpts, model, b, self.stop if role == "fit" else None)
            if not ckpts_b:
                continue  # B is too far below the optimum at every checkpoint
            members = max(1, min(rows // b, int(table.get("max_members", rows))))
            bad = [c for c in ckpts_b if c % (b * model.n_ctx)]
            if bad:
                raise ConfigError(
                    f"{where}: checkpoints {bad} are not multiples of batch size {b} x {model.n_ctx} tokens per sample"
                )
            cells = [(seed, lr) for seed in self.seeds for lr in batch_lrs(lrs, b, self.exponent)]
            made = [
                Run(
                    len(self.runs) + i,
                    role,
                    size,
                    TrainConfig(
                        model,
                        batch_clips=b,
                        lr=lr,
                        tokens=ckpts_b[-1],
                        seed=seed,
                        checkpoints=tuple(ckpts_b),
                        **self.shared_train,
                    ),
                )
                for i, (seed, lr) in enumerate(cells)
            ]
            self.runs.extend(made)
            self.groups.extend(Group(tuple(made[i : i + members])) for i in range(0, len(made), members))
