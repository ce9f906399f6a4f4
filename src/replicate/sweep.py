"""Sweeps over (model size, batch size, learning rate, seed): profiles, the resumable runner, the runs table.

A profile (``profiles/NAME.toml``) defines the clip, the fitting model sizes, the token checkpoints, the batch
size and learning-rate grids, seeds, the fixed baseline and a held-out model. Every run is one TrainConfig,
identified by a hash of it. Runs that differ only in learning rate and seed train together as one ensemble
(:mod:`replicate.ensemble`) of E = ensemble_rows // batch_size members (seeds outer, learning rates inner):
ensembles pay where a step is too small to keep the hardware busy (2.2-3.2x for the smallest models at 2-4
clips per step on one CPU thread, about 1.1x at 16; benchmarks/ensemble.py).

Only the parent process writes ``runs.csv``, and only whole finished groups, by writing a new file and
renaming it over the old one, rows in the profile's canonical order: killing a sweep at any moment loses at
most the groups in flight, and re-running the same command skips finished runs and ends with the same table
(but the wall_s column) as an uninterrupted sweep.

With ``--deadline-s``, groups that fit in the time left run whole; when none fits, a group is started anyway
and every group still training at 90% of the deadline pauses, its state in ``DIR/paused/`` (see
train_group), so runs longer than one call (a 10-minute GPU lease) advance call by call to the same table.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import math
import os
import shutil
import statistics
import time
import tomllib
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import torch

from replicate.config import MODEL_SIZES, ClipConfig, ModelConfig, flops_per_token, model_config
from replicate.diffusion import ValidationSet
from replicate.errors import ConfigError
from replicate.progress import progress_bar
from replicate.train import TrainConfig, TrainRecord, resolve_device, run_seconds, train_group

PROFILE_DIR = Path(__file__).parent / "profiles"
COLUMNS = ("run_id", "n_params", "tokens", "batch_size", "lr", "val_loss", "diverged",
           "val_loss_se", "width", "depth", "heads", "n_ctx", "tokens_per_sample", "batch_samples", "seed",
           "flops_6n", "flops_paper", "flops_exact", "role",
           "device", "torch", "triton", "git_sha", "wall_s",
           "val_loss_ema", "val_loss_ema_se")  # the EMA weights' loss (replicate.train): a second protocol
ESTIMATE_MARGIN = 1.25  # deadline estimates are padded by this factor
PAUSE_AT = 0.9  # groups still training at this fraction of --deadline-s pause (state saved) to end in time
MIN_START_S = 30.0  # a group that cannot finish is still started if it gets this long before pausing


@dataclass(frozen=True)
class Run:
    """One training run of a sweep: its config, its role (`fit` or `holdout`) and its canonical position."""

    index: int
    role: str
    size: str
    cfg: TrainConfig

    @property
    def run_id(self) -> str:
        blob = json.dumps(dataclasses.asdict(self.cfg), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Group:
    """Runs that train together as one ensemble (identical but for learning rate and seed)."""

    runs: tuple[Run, ...]

    @property
    def cfgs(self) -> list[TrainConfig]:
        return [r.cfg for r in self.runs]

    def flops(self) -> float:
        """Exact FLOPs of training plus validation for every member."""
        cfg = self.runs[0].cfg
        per_token = flops_per_token(cfg.model, "exact")
        evals = len(cfg.checkpoint_steps()) * cfg.val_examples * cfg.model.n_ctx * per_token / 3
        return len(self.runs) * (cfg.steps * cfg.tokens_per_step * per_token + evals)


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    runs: tuple[Run, ...]
    groups: tuple[Group, ...]
    fixed_batch_size: int  # samples per step
    fixed_lr: float
    workers: int
    path: Path


_TOP_KEYS = {"description", "design", "workers", "clip", "model", "train", "grid", "fixed", "holdout", "slurm"}
_GRID_KEYS = {"checkpoints", "batch_sizes", "lrs", "lr_batch_exponent", "seeds", "ensemble_rows", "sizes"}
_SIZE_KEYS = {"name", "width", "depth", "heads", "lrs"}
_HOLDOUT_KEYS = (_SIZE_KEYS - {"lrs"}) | {"lrs", "batch_sizes", "checkpoints"}


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


def batch_lrs(lrs: list[float], batch_size: int, exponent: float) -> list[float]:
    """The learning rates of a batch size: `lrs` (those of one sample per step) times batch_size^exponent, to 4
    significant digits, so that the grid follows the lr-B ridge (lr_opt ~ B^0.70 in the cpu study)."""
    return [float(f"{lr * batch_size**exponent:.4g}") for lr in lrs]


def load_profile(name: str) -> Profile:
    """Parse and validate a profile; every problem is a ConfigError naming it."""
    path = profile_path(name)
    try:
        raw = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"profile {path}: {err}") from None
    _check_keys(raw, _TOP_KEYS, f"profile {path.name}")
    for key in ("grid", "fixed"):
        if key not in raw:
            raise ConfigError(f"profile {path.name} has no [{key}] table")
    grid, fixed = raw["grid"], raw["fixed"]
    _check_keys(grid, _GRID_KEYS, "[grid]")
    try:
        clip = ClipConfig(**raw.get("clip", {}))
        shared_model = {"clip": clip, **raw.get("model", {})}
        if "patch" in shared_model:
            shared_model["patch"] = tuple(shared_model["patch"])
        shared_train = dict(raw.get("train", {}))
        if "betas" in shared_train:
            shared_train["betas"] = tuple(shared_train["betas"])
        checkpoints = sorted(_positive_list(grid.get("checkpoints"), int, "[grid] checkpoints"))
        batch_sizes = _positive_list(grid.get("batch_sizes"), int, "[grid] batch_sizes")
        default_lrs = _positive_list(grid.get("lrs"), float, "[grid] lrs")
        seeds = grid.get("seeds", [0])
        exponent = float(grid.get("lr_batch_exponent", 0.0))  # lrs scale as B^exponent across the batch grid
        rows = int(grid.get("ensemble_rows", 0))  # clips per step across an ensemble's members
        if not grid.get("sizes"):
            raise ConfigError("[grid] needs at least one [[grid.sizes]] entry")

        runs: list[Run] = []
        groups: list[Group] = []

        def add(role: str, table: dict, where: str, sizes_b: list[int], lrs: list[float], ckpts: list[int]) -> None:
            size, model = _size_config(table, where, shared_model)
            for b in sizes_b:
                members = max(1, rows // b)
                bad = [c for c in ckpts if c % (b * model.n_ctx)]
                if bad:
                    raise ConfigError(f"{where}: checkpoints {bad} are not multiples of batch size {b} x "
                                      f"{model.n_ctx} tokens per sample")
                cells = [(seed, lr) for seed in seeds for lr in batch_lrs(lrs, b, exponent)]
                made = [Run(len(runs) + i, role, size,
                            TrainConfig(model, batch_size=b, lr=lr, tokens=ckpts[-1], seed=seed,
                                        checkpoints=tuple(ckpts), **shared_train))
                        for i, (seed, lr) in enumerate(cells)]
                runs.extend(made)
                groups.extend(Group(tuple(made[i:i + members])) for i in range(0, len(made), members))

        for i, table in enumerate(grid["sizes"]):
            _check_keys(table, _SIZE_KEYS, f"[[grid.sizes]] #{i + 1}")
            lrs = _positive_list(table["lrs"], float, f"[[grid.sizes]] #{i + 1} lrs") if "lrs" in table \
                else default_lrs
            at_fixed = batch_lrs(lrs, fixed.get("batch_size", 1), exponent)
            if not any(math.isclose(fixed.get("lr", -1), lr) for lr in at_fixed):
                raise ConfigError(f"[fixed] lr {fixed.get('lr')} is not in the lr grid of size #{i + 1} at the fixed "
                                  f"batch size: {at_fixed}")
            add("fit", table, f"[[grid.sizes]] #{i + 1}", batch_sizes, lrs, checkpoints)
        if fixed.get("batch_size") not in batch_sizes:
            raise ConfigError(f"[fixed] batch_size {fixed.get('batch_size')} is not in the grid {batch_sizes}")
        if "holdout" in raw:
            hold = raw["holdout"]
            _check_keys(hold, _HOLDOUT_KEYS, "[holdout]")
            add("holdout", hold, "[holdout]", _positive_list(hold.get("batch_sizes"), int, "[holdout] batch_sizes"),
                _positive_list(hold.get("lrs"), float, "[holdout] lrs"),
                sorted(_positive_list(hold.get("checkpoints", checkpoints), int, "[holdout] checkpoints")))
    except TypeError as err:  # a misspelt or mistyped config field
        raise ConfigError(f"profile {path.name}: {err}") from None
    return Profile(path.stem, raw.get("description", ""), tuple(runs), tuple(groups), int(fixed["batch_size"]),
                   float(fixed["lr"]), int(raw.get("workers", 1)), path)


def run_rows(run: Run, record: TrainRecord) -> list[list[str]]:
    """The run's rows of runs.csv, one per scheduled checkpoint (NaN losses once the run has diverged)."""
    cfg, m = run.cfg, run.cfg.model
    done = {c.step: c for c in record.checkpoints}
    prov = record.provenance
    rows = []
    for step in cfg.checkpoint_steps():
        c = done.get(step)
        values = [run.run_id, record.n_params, step * cfg.tokens_per_step, cfg.tokens_per_step, cfg.lr,
                  c.val_loss if c else math.nan, c is None, c.val_loss_se if c else math.nan,
                  m.width, m.depth, m.heads, m.n_ctx, m.n_ctx, cfg.batch_size, cfg.seed,
                  record.flops_per_token["6n"], record.flops_per_token["paper"], record.flops_per_token["exact"],
                  run.role, prov["device"], prov["torch"], prov["triton"], prov["git_sha"],
                  round(c.wall_s if c else record.wall_s, 2),
                  c.val_loss_ema if c and c.val_loss_ema is not None else math.nan,
                  c.val_loss_ema_se if c and c.val_loss_ema_se is not None else math.nan]
        rows.append([repr(v) if isinstance(v, float) else str(v) for v in values])
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
            with open(path, newline="") as f:
                reader = csv.reader(f)
                header = next(reader, None)
                if header is not None and tuple(header) != COLUMNS:
                    raise ConfigError(f"{path} has other columns than a runs table: {header[:4]}...")
                for row in reader:
                    self.rows.setdefault(row[0], []).append(row)
            stale = [r for r in self.rows if r not in order]
            if stale and retire:
                retired = path.with_name("runs.retired.csv")
                _write_rows(retired, _read_rows(retired) + [row for r in stale for row in self.rows.pop(r)])
                self.write()
                self.retired = len(stale)

    def done(self) -> set[str]:
        return set(self.rows)

    def add(self, run_id: str, rows: list[list[str]]) -> None:
        self.rows[run_id] = rows
        self.write()

    def write(self) -> None:
        ids = sorted(self.rows, key=self.order.__getitem__)
        _write_rows(self.path, [row for run_id in ids for row in self.rows[run_id]])


def _read_rows(path: Path) -> list[list[str]]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.reader(f))[1:]


def _write_rows(path: Path, rows: list[list[str]]) -> None:
    """A runs table with these rows, atomically: write a temporary file, fsync it, rename it, fsync the folder."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows(rows)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


_VAL_CACHE: dict[tuple, ValidationSet] = {}


def run_group(cfgs: list[TrainConfig], device: str, backend: str, threads: int, state: Path | None = None,
              stop_at: float | None = None) -> list[TrainRecord] | None:
    """Train one group (in a worker process); the validation set is built once per process. None: paused at
    `stop_at` with its state in the file `state` (see train_group)."""
    if threads:
        torch.set_num_threads(threads)
    base, dev = cfgs[0], resolve_device(device)
    key = (base.model.clip, base.val_examples, base.val_seed, str(dev))
    if key not in _VAL_CACHE:
        _VAL_CACHE[key] = ValidationSet.build(base.model.clip, base.val_examples, base.val_seed, dev)
    return train_group(cfgs, device=str(dev), backend=backend, val=_VAL_CACHE[key], state=state, stop_at=stop_at)


def calibrate(group: Group, device: str, threads: int) -> float:
    """FLOP/s of one worker training this group, from train.run_seconds (a quarter second of its steps and a timed
    slice of its validation)."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads or old)
    try:
        seconds = run_seconds(group.cfgs, device)
    finally:
        torch.set_num_threads(old)
    return group.flops() / seconds


class Estimator:
    """Seconds one worker will take to train a group: FLOP/s calibrated per group shape (model, batch size,
    members; small batches are overhead-bound) until a group of that shape has finished, then measured. A
    calibration burst runs faster than a sustained sweep, so shapes not yet measured are scaled by the median
    measured / calibrated ratio of the groups finished so far."""

    def __init__(self, calibrate: Callable[[Group], float]) -> None:
        self.calibrate = calibrate
        self.rate: dict[tuple[ModelConfig, int, int], float] = {}
        self.calibrated: set[tuple[ModelConfig, int, int]] = set()  # shapes whose rate is still a calibration
        self.drift: list[float] = []

    @staticmethod
    def shape(group: Group) -> tuple[ModelConfig, int, int]:
        cfg = group.runs[0].cfg
        return cfg.model, cfg.batch_size, len(group.runs)

    def seconds(self, group: Group) -> float:
        key = self.shape(group)
        if key not in self.rate:
            self.rate[key] = self.calibrate(group)
            self.calibrated.add(key)
        scale = statistics.median(self.drift) if self.drift and key in self.calibrated else 1.0
        return scale * group.flops() / self.rate[key]

    def finished(self, group: Group, elapsed: float) -> None:
        key = self.shape(group)
        if key in self.calibrated:
            self.drift.append(elapsed * self.rate[key] / group.flops())
            self.calibrated.discard(key)
        self.rate[key] = group.flops() / elapsed


def makespan(seconds: list[float], workers: int) -> float:
    """Wall seconds of jobs taken in this order by whichever of `workers` is free first."""
    free = [0.0] * workers
    for s in seconds:
        free[free.index(min(free))] += s
    return max(free)


@dataclass
class SweepResult:
    done: int  # runs finished, this call or before
    left: int  # runs not started (deadline)
    failed: int  # groups whose worker raised
    diverged: int
    left_seconds: float
    paused: int = 0  # groups stopped part-way at the deadline, their state saved for the next call


def _executor(kind: str, workers: int, out: Path, profile: Profile):
    """A pool whose submit(fn, *args) returns an object with done() and result()."""
    if kind == "local":
        return ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"))
    if kind == "submitit":
        try:
            import submitit
        except ImportError:
            raise ConfigError("--executor submitit needs the submitit package (pip install submitit)") from None
        executor = submitit.AutoExecutor(folder=out / "submitit")  # Slurm where srun exists, else local
        # the profile's [slurm] table passes through, e.g. slurm_partition, gpus_per_node, cpus_per_task
        slurm = tomllib.loads(profile.path.read_text()).get("slurm", {})
        executor.update_parameters(**{"timeout_min": 60, "slurm_array_parallelism": workers, **slurm})
        return executor
    raise ConfigError(f"unknown executor {kind!r}: choose local or submitit")


def sweep(profile: Profile, out: Path, *, workers: int | None = None, deadline_s: float | None = None,
          executor: str = "local", device: str = "auto", backend: str = "auto", dry_run: bool = False,
          log: Callable[[str], None] = print) -> SweepResult:
    """Run every run of `profile` not yet in out/runs.csv; see the module docstring for the guarantees."""
    start, start_wall = time.monotonic(), time.time()
    out.mkdir(parents=True, exist_ok=True)
    dev = resolve_device(device)
    workers = workers or profile.workers
    if workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    # CPU workers share the cores this process may run on (taskset, a Slurm allocation); more threads thrash
    threads = max(1, len(os.sched_getaffinity(0)) // workers) if dev.type == "cpu" else 0
    table = RunsTable(out / "runs.csv", {r.run_id: r.index for r in profile.runs}, retire=not dry_run)
    if table.retired:
        log(f"{table.retired} runs in {out / 'runs.csv'} are not in profile {profile.name} (edited?): "
            f"moved to {out / 'runs.retired.csv'}")
    finished = table.done()
    pending = [g for g in profile.groups if not all(r.run_id in finished for r in g.runs)]
    n_left = sum(len(g.runs) for g in pending)
    est = Estimator(lambda group: calibrate(group, str(dev), threads))

    def estimate(group: Group) -> float:
        return ESTIMATE_MARGIN * est.seconds(group)

    if dry_run:
        total = sum(g.flops() for g in pending)
        seconds = makespan([est.seconds(g) for g in pending], workers)
        log(f"profile {profile.name}: {len(profile.runs)} runs in {len(profile.groups)} groups, {n_left} to run "
            f"({total:.3g} FLOPs), about {seconds / 60:.1f} min with {workers} worker(s) on {dev.type}")
        return SweepResult(len(profile.runs) - n_left, n_left, 0, 0, seconds)

    shutil.copyfile(profile.path, out / "profile.toml")
    pool = _executor(executor, workers, out, profile)
    inflight: dict = {}
    failed = diverged = paused = 0
    stop_at = None if deadline_s is None else start_wall + PAUSE_AT * deadline_s

    def state_file(group: Group) -> Path:
        return out / "paused" / f"{group.runs[0].run_id}x{len(group.runs)}.pt"

    bar = progress_bar(total=round(sum(g.flops() for g in pending)), desc=f"sweep {profile.name}", unit="FLOP",
                       unit_scale=True)
    if getattr(pool, "cluster", None) == "slurm":  # one job array; Slurm schedules it (no deadline there)
        with pool.batch():
            jobs = [pool.submit(run_group, g.cfgs, str(dev), backend, 0) for g in pending]
        inflight = {job: (g, time.monotonic()) for job, g in zip(jobs, pending, strict=True)}
        pending = []
    try:
        while pending or inflight:
            while len(inflight) < workers and pending and (stop_at is None or time.time() < stop_at):
                now = time.monotonic() - start
                fits = [g for g in pending if deadline_s is None or now + estimate(g) <= deadline_s]
                if not fits and deadline_s is not None and now + MIN_START_S <= PAUSE_AT * deadline_s:
                    fits = pending[:1]  # too long for this call: it trains until the pause, the next call goes on
                if not fits:
                    break
                group = fits[0]
                pending.remove(group)
                handle = pool.submit(run_group, group.cfgs, str(dev), backend, threads, state_file(group), stop_at)
                inflight[handle] = (group, time.monotonic())
            if not inflight:
                break
            ready = [h for h in inflight if h.done()]
            if not ready:
                time.sleep(0.2)
                continue
            for handle in ready:
                group, t0 = inflight.pop(handle)
                try:
                    records = handle.result()
                except Exception as err:  # a bug or a crashed worker: report it, keep the rest going
                    failed += 1
                    bar.write(f"FAILED {group.runs[0].size} B={group.runs[0].cfg.batch_size}: "
                              f"{type(err).__name__}: {err}")
                    continue
                if records is None:
                    paused += 1
                    pending.append(group)  # counted as left; the next call resumes it from its state file
                    bar.write(f"paused {group.runs[0].size} B={group.runs[0].cfg.batch_size} at the deadline "
                              f"({state_file(group)}); the same command goes on from there")
                    continue
                bar.update(round(group.flops()))
                est.finished(group, time.monotonic() - t0)
                for run, record in zip(group.runs, records, strict=True):
                    table.add(run.run_id, run_rows(run, record))
                    diverged += record.diverged
                    last = record.checkpoints[-1] if record.checkpoints else None
                    status = "diverged" if record.diverged else f"L = {last.val_loss:.5f}"
                    bar.write(f"{run.role} {run.size} B={run.cfg.batch_size} lr={run.cfg.lr:g} seed={run.cfg.seed}: "
                              f"{status} ({record.wall_s:.1f} s) [{run.run_id}]")
    finally:
        bar.close()
        if isinstance(pool, ProcessPoolExecutor):
            pool.shutdown(wait=True, cancel_futures=True)
    left = sum(len(g.runs) for g in pending)
    left_seconds = sum(estimate(g) for g in pending) if pending else 0.0
    return SweepResult(len(table.done() & {r.run_id for r in profile.runs}), left, failed, diverged, left_seconds,
                       paused)
