"""The contract between the trainer and the fit, without torch: a run's record, its rows in runs.csv, and the
table itself (read once, rewritten atomically after every finished group).

runs.csv holds one row per run and checkpoint (COLUMNS; `run_rows` writes them by name). Units: `tokens` and
`batch_size` in tokens (the fit's units: `batch_size` is tokens per step; `batch_samples` is the clips per step,
TrainConfig.batch_clips), `lr` the peak learning rate, `val_loss` the raw weights' loss averaged over the
evaluation window, `val_loss_ema` the power-EMA weights' loss (replicate.training.train), `wall_s` the seconds
since the run's start at that checkpoint. A new column: its name in COLUMNS and its value in run_rows.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from replicate.config import FLOP_KINDS, TrainConfig
from replicate.errors import ConfigError
from replicate.io import write_csv
from replicate.profile import load_profile

STUDY = "study"  # the profile the project's plan works towards (results/study); what it waits for is profile data

if TYPE_CHECKING:
    from replicate.profile import Run

COLUMNS = (
    "run_id",
    "n_params",
    "tokens",
    "batch_size",
    "lr",
    "val_loss",
    "diverged",
    "val_loss_se",
    "width",
    "depth",
    "heads",
    "n_ctx",
    "tokens_per_sample",
    "batch_samples",
    "seed",
    "flops_6n",
    "flops_paper",
    "flops_exact",
    "role",
    "device",
    "torch",
    "triton",
    "git_sha",
    "wall_s",
    "val_loss_ema",
    "val_loss_ema_se",
)  # the EMA weights' loss (replicate.training.train): a second protocol


@dataclass
class Checkpoint:
    """A run's validation at one token checkpoint."""

    step: int
    tokens: int  # training tokens seen
    val_loss: float  # raw weights, averaged over the evaluation window
    val_loss_se: float
    val_loss_ema: float | None  # power-EMA weights at the checkpoint (None without an EMA)
    val_loss_ema_se: float | None
    train_loss: float  # mean training loss since the previous checkpoint
    wall_s: float  # seconds since the start of training


@dataclass
class TrainRecord:
    """What one training run produced: its config, counts, checkpoints, divergence and provenance."""

    config: TrainConfig
    n_params: int
    tokens_per_sample: int
    tokens_per_step: int
    flops_per_token: dict[str, float]
    checkpoints: list[Checkpoint] = field(default_factory=list)
    diverged: bool = False
    diverged_at_tokens: int | None = None
    wall_s: float = 0.0  # seconds the whole run (its ensemble) took
    provenance: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def run_rows(run: Run, record: TrainRecord) -> list[list[str]]:
    """The run's rows of runs.csv, one per scheduled checkpoint (NaN losses once the run has diverged)."""
    cfg, m = run.cfg, run.cfg.model
    done = {c.step: c for c in record.checkpoints}
    prov = record.provenance
    rows = []
    for step in cfg.checkpoint_steps():
        c = done.get(step)
        values = {
            "run_id": run.run_id,
            "n_params": record.n_params,
            "tokens": step * cfg.tokens_per_step,
            "batch_size": cfg.tokens_per_step,  # tokens per step, the fit's unit
            "lr": cfg.lr,
            "val_loss": c.val_loss if c else math.nan,
            "diverged": c is None,
            "val_loss_se": c.val_loss_se if c else math.nan,
            "width": m.width,
            "depth": m.depth,
            "heads": m.heads,
            "n_ctx": m.n_ctx,
            "tokens_per_sample": m.n_ctx,
            "batch_samples": cfg.batch_clips,  # clips per step
            "seed": cfg.seed,
            **{f"flops_{kind}": record.flops_per_token[kind] for kind in FLOP_KINDS},
            "role": run.role,
            **{key: prov[key] for key in ("device", "torch", "triton", "git_sha")},
            "wall_s": round(c.wall_s if c else record.wall_s, 2),
            "val_loss_ema": c.val_loss_ema if c and c.val_loss_ema is not None else math.nan,
            "val_loss_ema_se": c.val_loss_ema_se if c and c.val_loss_ema_se is not None else math.nan,
        }
        rows.append([repr(values[k]) if isinstance(values[k], float) else str(values[k]) for k in COLUMNS])
    return rows


class RunsTable:
    """runs.csv: read once, rewritten atomically (write, fsync, rename) after every finished group.

    It holds exactly the profile's finished runs, so that a fit of it fits the profile. Rows of runs that the
    profile no longer has (it was edited) move to runs.retired.csv beside it: never lost, never fitted.
    """

    def __init__(self, path: Path, order: dict[str, int], retire: bool = True) -> None:
        self.path, self.order = path, order
        self.rows: dict[str, list[list[str]]] = {}
        self.retired = 0
        if path.exists():
            self.rows = read_runs(path)
            stale = [r for r in self.rows if r not in order]
            if stale and retire:
                retired = path.with_name("runs.retired.csv")
                write_csv(retired, COLUMNS, _read_rows(retired) + [row for r in stale for row in self.rows.pop(r)])
                self.write()
                self.retired = len(stale)

    def done(self) -> set[str]:
        return set(self.rows)

    def add(self, run_id: str, rows: list[list[str]]) -> None:
        self.rows[run_id] = rows
        self.write()

    def write(self) -> None:
        ids = sorted(self.rows, key=self.order.__getitem__)
        write_csv(self.path, COLUMNS, [row for run_id in ids for row in self.rows[run_id]])


def read_runs(path: Path) -> dict[str, list[list[str]]]:
    """A runs table's rows by run id (one row per checkpoint, as written); a file of other columns is a
    ConfigError."""
    rows: dict[str, list[list[str]]] = {}
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is not None and tuple(header) != COLUMNS:
            raise ConfigError(f"{path} has other columns than a runs table: {header[:4]}...")
        for row in reader:
            rows.setdefault(row[0], []).append(row)
    return rows


def _read_rows(path: Path) -> list[list[str]]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.reader(f))[1:]


def study_status(study: Path) -> tuple[int, int]:
    """(finished runs, runs) of the study in folder `study`, whose profile.toml the sweep wrote there."""
    if not (study / "profile.toml").is_file():
        raise ConfigError(f"{study} holds no profile.toml: not a study folder")
    profile = load_profile(str(study / "profile.toml"))
    done = set(read_runs(study / "runs.csv")) if (study / "runs.csv").is_file() else set()
    return len(done & {r.run_id for r in profile.runs}), len(profile.runs)


def gate_passed(results: Path, name: str) -> bool:
    """Whether the study `name` in results/ lets the profiles that wait for it (`after`) go: its table holds
    every run of its profile and its summary.json's verdict, where it has one, is not no-go."""
    folder = results / name
    if not (folder / "profile.toml").is_file():
        return False
    done, total = study_status(folder)
    summary = folder / "summary.json"
    no_go = summary.is_file() and json.loads(summary.read_text()).get("verdict") == "no-go"
    return done == total and not no_go


def next_profile(results: Path, target: str = STUDY) -> str:
    """The profile that the plan towards `target` trains next: the first profile of its `after` chain (profile
    data) whose gate has not passed, else `target`. With the committed profiles: Stage A until its table holds
    every run, then the study; but Stage A again where its verdict is no-go (the study is not run at that
    scale: a device run then trains nothing and its checks measure the GPU)."""
    gate = load_profile(target).after
    if not gate:
        return target
    first = next_profile(results, gate)
    return first if first != gate or not gate_passed(results, gate) else target


def seed_noise(results: Path, target: str = STUDY) -> float | None:
    """The seed-to-seed noise near the optimum (relative) that the first study of the plan towards `target`
    measured (its summary.json), the yardstick of the device run's precision check; None where it has none."""
    first = target
    while load_profile(first).after:
        first = load_profile(first).after
    summary = results / first / "summary.json"
    return json.loads(summary.read_text())["seed_noise"]["raw"]["near_optimum"]["rms"] if summary.is_file() else None
