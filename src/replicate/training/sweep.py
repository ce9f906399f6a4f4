"""The resumable, deadline-aware runner of a sweep over (model size, batch size, learning rate, seed).

A profile (replicate.profile) lists the runs, each one TrainConfig identified by `run_id`, and how they group.
Runs that differ only in learning rate and seed train together as one ensemble
(:mod:`replicate.training.ensemble`) of E = ensemble_rows // batch_size members (seeds outer, learning rates inner):
ensembles pay where a step is too small to keep the hardware busy (benchmarks/ensemble.py measures by how much:
results/benchmarks/ensemble.json).

Only the parent process writes ``runs.csv``, and only whole finished groups, by writing a new file and
renaming it over the old one, rows in the profile's canonical order: killing a sweep at any moment loses at
most the groups in flight, and re-running the same command skips finished runs and ends with the same table
(but the wall_s column) as an uninterrupted sweep.

With ``--deadline-s``, groups that fit in the time left run whole; when none fits, a group is started anyway
and every group still training at 90% of the deadline pauses, its state in ``DIR/paused/`` (see
train_group), so runs longer than one call (a 10-minute GPU lease) advance call by call to the same table. The
rates each group shape was calibrated or measured at wait there too (``rates.json``, `Estimator`): each call
starts from them instead of timing every pending shape again.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import torch

from replicate.config import ModelConfig, TrainConfig
from replicate.errors import ConfigError
from replicate.io import write_json
from replicate.profile import Group, Profile
from replicate.progress import progress_bar
from replicate.provenance import device_name
from replicate.runs import RunsTable, TrainRecord, run_rows
from replicate.training.diffusion import ValidationSet
from replicate.training.step import resolve_device
from replicate.training.timing import STEP_TIMES, measured_step_seconds, run_seconds
from replicate.training.train import paused_step, train_group

ESTIMATE_MARGIN = 1.25  # deadline estimates are padded by this factor
PAUSE_AT = 0.9  # groups still training at this fraction of --deadline-s pause (state saved) to end in time
MIN_START_S = 30.0  # a group that cannot finish is still started if it gets this long before pausing
PROGRESS_EVERY_S = 2.0  # a training group tells the sweep's bar how far it is at most this often


_VAL_CACHE: dict[tuple, ValidationSet] = {}


def run_group(
    cfgs: list[TrainConfig],
    device: str,
    backend: str,
    threads: int,
    state: Path | None = None,
    stop_at: float | None = None,
    capture: bool = False,
    progress: Path | None = None,
) -> list[TrainRecord] | None:
    """Train one group (in a worker process); the validation set is built once per process. None: paused at
    `stop_at` with its state in the file `state` (see train_group); `capture`: replay its step from a CUDA
    graph; `progress`: a file that holds "step steps", rewritten at most every PROGRESS_EVERY_S seconds as it
    trains (the sweep's bar reads it)."""
    if threads:
        torch.set_num_threads(threads)
    base, dev = cfgs[0], resolve_device(device)
    key = (base.model.clip, base.val_examples, base.val_seed, str(dev))
    if key not in _VAL_CACHE:
        _VAL_CACHE[key] = ValidationSet.build(base.model.clip, base.val_examples, base.val_seed, dev)
    return train_group(
        cfgs,
        device=str(dev),
        backend=backend,
        val=_VAL_CACHE[key],
        state=state,
        stop_at=stop_at,
        capture=capture,
        on_steps=None if progress is None else _ProgressFile(progress),
    )


class _ProgressFile:
    """train_group's on_steps, in a worker: "step steps" into a file, at most every PROGRESS_EVERY_S seconds
    (and at the last step), replaced whole so that a reader never sees half a line."""

    def __init__(self, path: Path) -> None:
        self.path, self.last = path, -math.inf

    def __call__(self, step: int, steps: int) -> None:
        now = time.monotonic()
        if now - self.last < PROGRESS_EVERY_S and step < steps:
            return
        self.last = now
        scratch = self.path.with_suffix(".tmp")
        scratch.write_text(f"{step} {steps}\n")
        scratch.replace(self.path)


def read_progress(path: Path) -> float:
    """The fraction of its steps a group has trained, from its progress file (0 without one, or unreadable)."""
    try:
        step, steps = (int(v) for v in path.read_text().split())
    except (OSError, ValueError):
        return 0.0
    return min(1.0, step / steps) if steps > 0 else 0.0


def calibrate(group: Group, device: str, threads: int, capture: bool = False, backend: str = "auto") -> float:
    """FLOP/s of one worker training this group, from timing.run_seconds (a quarter second of its steps and a timed
    slice of its validation), its step captured in a CUDA graph or not, through the kernels of `backend`: as the
    sweep will train it."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads or old)
    try:
        seconds = run_seconds(group.cfgs, device, backend, capture=capture)
    finally:
        torch.set_num_threads(old)
    return group.flops() / seconds


class Estimator:
    """Seconds one worker will take to train a group: FLOP/s calibrated per group shape (model, batch size,
    members; small batches are overhead-bound) until a group of that shape has finished, then measured. A
    calibration burst runs faster than a sustained sweep, so shapes not yet measured are scaled by the median
    measured / calibrated ratio of the groups finished so far.

    With `store` (a JSON file), the rates and ratios persist under `machine` (the device, backend and threads
    they were timed with): a sweep in bounded calls calibrates each shape once, not once a call, and its later
    calls start from the rates its earlier ones measured. A store that cannot be read is ignored: it only saves
    time."""

    def __init__(self, calibrate: Callable[[Group], float], store: Path | None = None, machine: str = "") -> None:
        self.calibrate = calibrate
        self.store, self.machine = store, machine
        try:
            saved = self._saved().get(machine) or {}
            rate = {key: float(entry["flops_per_s"]) for key, entry in (saved.get("rates") or {}).items()}
            calibrated = {key for key, entry in saved["rates"].items() if not entry["measured"]} if rate else set()
            drift = [float(d) for d in saved.get("drift") or []]
        except (AttributeError, KeyError, TypeError, ValueError):  # not what _save writes: start afresh
            rate, calibrated, drift = {}, set(), []
        self.rate: dict[str, float] = rate  # FLOP/s per shape (its repr)
        self.calibrated: set[str] = calibrated  # shapes whose rate is still a calibration
        self.drift: list[float] = drift  # measured / calibrated, per finished group of a calibrated shape

    @staticmethod
    def shape(group: Group) -> tuple[ModelConfig, int, int]:
        cfg = group.runs[0].cfg
        return cfg.model, cfg.batch_clips, len(group.runs)

    def seconds(self, group: Group) -> float:
        key = repr(self.shape(group))
        if key not in self.rate:
            self.rate[key] = self.calibrate(group)
            self.calibrated.add(key)
            self._save()
        scale = statistics.median(self.drift) if self.drift and key in self.calibrated else 1.0
        return scale * group.flops() / self.rate[key]

    def finished(self, group: Group, elapsed: float) -> None:
        key = repr(self.shape(group))
        if key in self.calibrated:
            self.drift.append(elapsed * self.rate[key] / group.flops())
            self.calibrated.discard(key)
        self.rate[key] = group.flops() / elapsed
        self._save()

    def _saved(self) -> dict:
        try:
            saved = json.loads(self.store.read_text()) if self.store is not None and self.store.is_file() else {}
        except (OSError, ValueError):
            return {}
        return saved if isinstance(saved, dict) else {}

    def _save(self) -> None:
        if self.store is None:
            return
        rates = {key: {"flops_per_s": r, "measured": key not in self.calibrated} for key, r in self.rate.items()}
        self.store.parent.mkdir(parents=True, exist_ok=True)
        write_json(self.store, self._saved() | {self.machine: {"rates": rates, "drift": self.drift}})


RATES = "rates.json"  # in DIR/paused/: the Estimator's rates, kept between bounded calls (git-ignored with the states)


def state_name(group: Group) -> str:
    """The file name of a paused group's state in DIR/paused/ (its first run id and member count)."""
    return f"{group.runs[0].run_id}x{len(group.runs)}.pt"


def steps_left(group: Group, state: Path) -> float:
    """The fraction of the group's steps still to train: 1, or less where its paused state waits in `state`."""
    step = paused_step(state)
    return 1.0 if step is None else max(0.0, 1.0 - step / group.runs[0].cfg.steps)


def makespan(seconds: list[float], workers: int) -> float:
    """Wall seconds of jobs taken in this order by whichever of `workers` is free first."""
    free = [0.0] * workers
    for s in seconds:
        free[free.index(min(free))] += s
    return max(free)


def measured_elsewhere(pending: list[Group], step_times: Path, here: str) -> list[str]:
    """What the pending groups would take on each other device that device runs measured (results/benchmarks/
    device_steps.jsonl): their steps at the measured step times, one process, one group at a time."""
    rows = [json.loads(line) for line in step_times.read_text().splitlines()] if step_times.is_file() else []
    devices = sorted({row["device"] for row in rows} - {here})
    lines = []
    for device in devices:
        measured = measured_step_seconds(step_times, device)
        known = [g for g in pending if g.shape() in measured]
        seconds = sum(g.runs[0].cfg.steps * measured[g.shape()] for g in known)
        lines.append(
            f"  on {device}: {len(known)} of the {len(pending)} pending groups have measured step times, "
            f"about {seconds / 60:.1f} min of their steps one group at a time"
        )
    return lines or [
        "  on a GPU: no device run has measured these groups' steps yet (results/benchmarks/device_steps.jsonl)"
    ]


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
        executor.update_parameters(**{"timeout_min": 60, "slurm_array_parallelism": workers, **profile.slurm})
        return executor
    raise ConfigError(f"unknown executor {kind!r}: choose local or submitit")


def sweep(
    profile: Profile,
    out: Path,
    *,
    workers: int | None = None,
    deadline_s: float | None = None,
    executor: str = "local",
    device: str = "auto",
    backend: str = "auto",
    dry_run: bool = False,
    log: Callable[[str], None] = print,
    estimator: Estimator | None = None,
    longest_first: bool = False,
    on_group: Callable[[Group, list[TrainRecord], float], None] | None = None,
    capture: bool = False,
) -> SweepResult:
    """Run every run of `profile` not yet in out/runs.csv; see the module docstring for the guarantees.

    `estimator` (default: calibrated per group shape) predicts each group's seconds; `longest_first` starts
    the longest groups first (a deadline then leaves the short ones, which the next call fits in);
    `on_group(group, records, seconds)` runs after each finished group is in the table; `capture` replays
    each group's step from a CUDA graph (replicate.training.step.StepGraph) on a GPU.
    """
    start, start_wall = time.monotonic(), time.time()
    dev = resolve_device(device)
    if profile.device and dev.type != profile.device and device == "auto":
        raise ConfigError(
            f"profile {profile.name} is designed for {profile.device} (see its design) but this machine trains on "
            f"{dev.type}; pass --device {dev.type} to run it here anyway"
        )
    out.mkdir(parents=True, exist_ok=True)
    workers = workers or profile.workers
    if workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    # CPU workers share the cores this process may run on (taskset, a Slurm allocation); more threads thrash
    threads = max(1, len(os.sched_getaffinity(0)) // workers) if dev.type == "cpu" else 0
    table = RunsTable(out / "runs.csv", {r.run_id: r.index for r in profile.runs}, retire=not dry_run)
    if table.retired:
        log(
            f"{table.retired} runs in {out / 'runs.csv'} are not in profile {profile.name} (edited?): "
            f"moved to {out / 'runs.retired.csv'}"
        )
    finished = table.done()
    pending = [g for g in profile.groups if not all(r.run_id in finished for r in g.runs)]
    machine = f"{device_name(dev)}, backend {backend}, {'captured' if capture else 'eager'}, {threads} threads"
    est = estimator or Estimator(
        lambda group: calibrate(group, str(dev), threads, capture, backend), out / "paused" / RATES, machine
    )
    if dry_run:
        return _dry_run(profile, pending, est, workers, dev, out, log)
    if longest_first:
        pending.sort(key=est.seconds, reverse=True)
    shutil.copyfile(profile.path, out / "profile.toml")
    stop_at = None if deadline_s is None else start_wall + PAUSE_AT * deadline_s
    told = Path(tempfile.mkdtemp(prefix="sweep-progress-"))  # where training groups tell how far they are
    run = _Runner(
        out, table, est, workers, str(dev), backend, threads, capture, deadline_s, start, stop_at, on_group, told
    )
    pool = _executor(executor, workers, out, profile)
    bar = progress_bar(
        total=round(sum(g.flops() for g in pending)), desc=f"sweep {profile.name}", unit="FLOP", unit_scale=True
    )
    try:
        run.loop(pool, pending, bar)
    finally:
        bar.close()
        if isinstance(pool, ProcessPoolExecutor):
            pool.shutdown(wait=True, cancel_futures=True)
        shutil.rmtree(told, ignore_errors=True)
    left = sum(len(g.runs) for g in pending)
    left_seconds = sum(run.estimate(g) for g in pending) if pending else 0.0
    done = len(table.done() & {r.run_id for r in profile.runs})
    return SweepResult(done, left, run.failed, run.diverged, left_seconds, run.paused)


def _dry_run(
    profile: Profile,
    pending: list[Group],
    est: Estimator,
    workers: int,
    dev: torch.device,
    out: Path,
    log: Callable[[str], None],
) -> SweepResult:
    """What the sweep would run: its runs and FLOPs, its time here (a paused group's steps left only), and on
    the devices device runs measured."""
    n_left = sum(len(g.runs) for g in pending)
    total = sum(g.flops() for g in pending)
    left = [steps_left(g, out / "paused" / state_name(g)) for g in pending]
    seconds = makespan([est.seconds(g) * f for g, f in zip(pending, left, strict=True)], workers)
    paused = sum(f < 1 for f in left)
    log(
        f"profile {profile.name}: {len(profile.runs)} runs in {len(profile.groups)} groups, {n_left} to run "
        f"({total:.3g} FLOPs{f'; {paused} group(s) paused part-way' if paused else ''}), about "
        f"{seconds / 60:.1f} min with {workers} worker(s) on {dev.type}"
    )
    for line in measured_elsewhere(pending, out.parent / STEP_TIMES, device_name(dev)):
        log(line)
    return SweepResult(len(profile.runs) - n_left, n_left, 0, 0, seconds)


@dataclass
class _Runner:
    """A sweep's groups handed to a pool's workers and taken back as they finish: which group starts next under
    the deadline, and what a finished, paused or failed group leaves in the table and the log."""

    out: Path
    table: RunsTable
    est: Estimator
    workers: int
    device: str
    backend: str
    threads: int
    capture: bool
    deadline_s: float | None
    start: float  # time.monotonic() at the sweep's start
    stop_at: float | None  # time.time() at which groups still training pause
    on_group: Callable[[Group, list[TrainRecord], float], None] | None
    told: Path | None = None  # a folder for the training groups' progress files (none: the bar moves per group)
    failed: int = 0
    diverged: int = 0
    paused: int = 0
    left: dict[str, float] = field(default_factory=dict)  # state file name -> the fraction of its steps left
    shown: dict[str, int] = field(default_factory=dict)  # state file name -> its FLOPs on the bar while it trains

    def estimate(self, group: Group) -> float:
        """Seconds to budget for the group's steps still to train (a paused one's, from its state)."""
        return ESTIMATE_MARGIN * self.est.seconds(group) * self.steps_left(group)

    def steps_left(self, group: Group) -> float:
        """steps_left read once per call and group (again after the group pauses)."""
        name = state_name(group)
        if name not in self.left:
            self.left[name] = steps_left(group, self.state_file(group))
        return self.left[name]

    def state_file(self, group: Group) -> Path:
        return self.out / "paused" / state_name(group)

    def progress_file(self, group: Group) -> Path | None:
        return None if self.told is None else self.told / f"{state_name(group)}.progress"

    def show(self, group: Group, bar, fraction: float | None = None) -> None:
        """Move the bar to `fraction` of the group's FLOPs (default: as far as its progress file says; the whole
        group counts, steps trained before a pause included, as the bar's total does)."""
        name = state_name(group)
        if fraction is None:
            path = self.progress_file(group)
            fraction = read_progress(path) if path is not None else 0.0
        now = round(fraction * group.flops())
        if now > self.shown.get(name, 0):
            bar.update(now - self.shown.get(name, 0))
            self.shown[name] = now

    def done_training(self, group: Group) -> None:
        """The group's worker has returned: its progress file goes, and what the bar showed of it stays."""
        self.shown.pop(state_name(group), None)
        path = self.progress_file(group)
        if path is not None:
            path.unlink(missing_ok=True)

    def loop(self, pool, pending: list[Group], bar) -> None:
        """Start groups while workers are free and the deadline allows, collect them as they finish; `pending`
        keeps the groups left (a paused one goes back in)."""
        inflight: dict = {}
        if getattr(pool, "cluster", None) == "slurm":  # one job array; Slurm schedules it (no deadline there)
            with pool.batch():
                jobs = [pool.submit(run_group, g.cfgs, self.device, self.backend, 0) for g in pending]
            inflight = {job: (g, time.monotonic()) for job, g in zip(jobs, pending, strict=True)}
            pending.clear()
        while pending or inflight:
            while len(inflight) < self.workers and pending and (self.stop_at is None or time.time() < self.stop_at):
                group = self.next_group(pending)
                if group is None:
                    break
                pending.remove(group)
                self.started(group, bar)
                handle = pool.submit(
                    run_group,
                    group.cfgs,
                    self.device,
                    self.backend,
                    self.threads,
                    self.state_file(group),
                    self.stop_at,
                    self.capture,
                    self.progress_file(group),
                )
                inflight[handle] = (group, time.monotonic())
            if not inflight:
                break
            ready = [h for h in inflight if h.done()]
            if not ready:
                for group, _ in inflight.values():
                    self.show(group, bar)
                time.sleep(0.2)
                continue
            for handle in ready:
                group, t0 = inflight.pop(handle)
                self.collect(handle, group, t0, pending, bar)

    def started(self, group: Group, bar) -> None:
        """A line as the group starts, with its expected time; its steps left are read here, before it trains:
        what its time is scaled by when it finishes."""
        left, first = self.steps_left(group), group.runs[0]
        resumed = f", resumed at {100 * (1 - left):.0f}% of its steps" if left < 1 else ""
        bar.write(
            f"training {first.role} {first.size} B={first.cfg.batch_clips} x{len(group.runs)}{resumed}: about "
            f"{self.est.seconds(group) * left / 60:.1f} min by the estimate"
        )

    def next_group(self, pending: list[Group]) -> Group | None:
        """The first pending group that fits in the time left; where none fits but there is still time to train
        before the pause, the first (the next call goes on from its state); None otherwise."""
        deadline = self.deadline_s
        now = time.monotonic() - self.start
        fits = [g for g in pending if deadline is None or now + self.estimate(g) <= deadline]
        if not fits and deadline is not None and now + MIN_START_S <= PAUSE_AT * deadline:
            fits = pending[:1]
        return fits[0] if fits else None

    def collect(self, handle, group: Group, t0: float, pending: list[Group], bar) -> None:
        """A group's worker has returned: its rows into the table, or its pause (back to `pending`) or failure
        in the log."""
        first = group.runs[0]
        try:
            records = handle.result()
        except Exception as err:  # a bug or a crashed worker: report it, keep the rest going
            self.done_training(group)
            self.failed += 1
            bar.write(f"FAILED {first.size} B={first.cfg.batch_clips}: {type(err).__name__}: {err}")
            return
        if records is None:
            self.show(group, bar)  # as far as it trained before its pause
            self.done_training(group)
            self.paused += 1
            self.left.pop(state_name(group), None)  # its state moved on
            pending.append(group)  # counted as left; the next call resumes it from its state file
            bar.write(
                f"paused {first.size} B={first.cfg.batch_clips} at the deadline "
                f"({self.state_file(group)}); the same command goes on from there"
            )
            return
        self.show(group, bar, 1.0)
        self.done_training(group)
        elapsed = time.monotonic() - t0
        self.est.finished(group, elapsed / self.steps_left(group))  # as if it had trained from its first step
        for run, record in zip(group.runs, records, strict=True):
            self.table.add(run.run_id, run_rows(run, record))
            self.diverged += record.diverged
            last = record.checkpoints[-1] if record.checkpoints else None
            status = "diverged" if record.diverged else f"L = {last.val_loss:.5f}"
            bar.write(
                f"{run.role} {run.size} B={run.cfg.batch_clips} lr={run.cfg.lr:g} seed={run.cfg.seed}: "
                f"{status} ({record.wall_s:.1f} s) [{run.run_id}]"
            )
        if self.on_group is not None:
            self.on_group(group, records, elapsed)
