"""The prepared GPU call: `device-run` trains the next pending groups of a study under a deadline on a bare
machine and leaves what must come back in one folder; `ingest` merges such a folder into results/.

A lent GPU machine has the working tree but no .git, nothing installable, at most 10 minutes per command, and
returns at most 8 files of at most 16 MiB (64 MiB in all) from $OUT. So a device run
- takes its commit from $REPLICATE_GIT_SHA (`make device` passes it in) and refuses to train without one;
- resumes from the tree's results/<study>/: finished runs are skipped, paused states carried in go on;
- starts the longest groups first, each group's time taken from the measured step times of earlier calls on
  the same device (results/benchmarks/device_steps.jsonl) where its shape was measured, calibrated otherwise;
- writes OUT/manifest.json, OUT/runs.csv (the rows it added), OUT/bench.jsonl (one line per finished group:
  its step time), OUT/device_run.log, and as many paused states (OUT/paused_<group>.pt) as the limits allow.

`ingest OUT` puts those into results/<study>/ (rows, paused states, log), every bench line into
results/benchmarks/device_steps.jsonl, and the kernel benchmark's rows and autotuning into
results/benchmarks/kernels.csv and kernels_tuning.json. Every file is replaced atomically; ingesting the same
folder twice changes nothing; a row that differs from the one the table holds for the same run stops it before
it writes.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

import torch

from replicate.device_checks import CaptureMismatch, bench_line, device_checks, group_shape
from replicate.errors import ConfigError
from replicate.io import atomic_write, write_csv, write_json
from replicate.kernels.bench import write_table
from replicate.profile import Group, Profile, load_profile
from replicate.provenance import device_name, git_sha, provenance
from replicate.runs import COLUMNS, STEP_TIMES, RunsTable, measured_step_seconds, next_profile, read_runs
from replicate.sweep import Estimator, SweepResult, calibrate, state_name, sweep
from replicate.train import TrainRecord, resolve_device

MAX_FILES = 8  # what a device call brings back from $OUT
MAX_FILE_BYTES = 16 * 2**20
MAX_TOTAL_BYTES = 64 * 2**20
FIXED_FILES = ("manifest.json", "runs.csv", "bench.jsonl", "device_run.log")
NEXT = "next"  # the profile a device run trains by default: runs.next_profile


class _Tee:
    """A text stream that writes to a terminal stream and a log file."""

    def __init__(self, stream: TextIO, log: TextIO) -> None:
        self.stream, self.log = stream, log

    def write(self, text: str) -> int:
        self.log.write(text)
        return self.stream.write(text)

    def flush(self) -> None:
        self.log.flush()
        self.stream.flush()


@dataclass
class DeviceRunResult:
    profile: str
    runs_added: int
    runs_done: int  # the study's finished runs after this call
    runs_total: int
    files: list[str]  # what OUT holds
    paused_lost: list[str]  # paused groups whose state did not fit in OUT: the next call restarts them
    error: str | None = None  # why nothing was trained (the captured step disagreed with the eager one)


def check_out(out: Path) -> None:
    """OUT must be an empty (or new) folder: one folder is one call's results."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"--out {out} must be an empty folder (one device call's results)")


def device_run(
    out: Path,
    *,
    profile: str = NEXT,
    results: Path = Path("results"),
    deadline_s: float = 480.0,
    workers: int | None = None,
    device: str = "auto",
    backend: str = "auto",
) -> DeviceRunResult:
    """Train the next pending groups of `profile` (its results in results/<name>/) for at most `deadline_s`
    seconds and write what must come back into `out` (see the module docstring)."""
    start, started = time.monotonic(), datetime.now(UTC).strftime("%Y-%m-%dT%H-%M-%SZ")
    check_out(out)
    sha = git_sha()
    if sha == "unknown":
        raise ConfigError("no commit: set REPLICATE_GIT_SHA to the commit of this tree (make device does)")
    dev = resolve_device(device)
    prof = load_profile(next_profile(results) if profile == NEXT else profile)
    study = results / prof.name
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="device-run-"))
    try:
        if (study / "runs.csv").is_file():
            shutil.copyfile(study / "runs.csv", work / "runs.csv")
        if (study / "paused").is_dir():
            shutil.copytree(study / "paused", work / "paused")
        before = set(read_runs(work / "runs.csv")) if (work / "runs.csv").is_file() else set()
        with open(out / "device_run.log", "w") as log_file, contextlib.redirect_stdout(_Tee(sys.stdout, log_file)):
            error = None
            try:
                _train(prof, work, out, dev, backend, workers, start + deadline_s, results)
            except CaptureMismatch as err:
                error = str(err)
                print(f"device run stopped: {error}")
            return _collect(prof, work, out, before, sha, dev, started, start, deadline_s, error)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _train(
    prof: Profile,
    work: Path,
    out: Path,
    dev: torch.device,
    backend: str,
    workers: int | None,
    deadline: float,
    results: Path,
) -> SweepResult:
    """The device checks, then the sweep of this call until `deadline` (time.monotonic()), logging the
    environment first and a bench line per finished group."""
    env = provenance(dev)
    print(f"device run: profile {prof.name}, {env['device']}, torch {env['torch']}, triton {env['triton']}")
    print(
        f"commit {env['git_sha']}, backend {backend}, {os.cpu_count()} cores, {deadline - time.monotonic():.0f} s left"
    )
    threads = max(1, len(os.sched_getaffinity(0)) // (workers or prof.workers)) if dev.type == "cpu" else 0
    est = Estimator(lambda group: calibrate(group, str(dev), threads, capture=True))
    measured = measured_step_seconds(results / STEP_TIMES, device_name(dev), backend)
    for group in prof.groups:
        if group.shape() in measured:
            est.finished(group, group.runs[0].cfg.steps * measured[group.shape()])
    print(f"step times measured before for {sum(k in measured for k in (g.shape() for g in prof.groups))} groups")
    (out / "bench.jsonl").touch()
    device_checks(prof, out, dev, backend, env, results)

    def bench(group: Group, records: list[TrainRecord], elapsed: float) -> None:
        steps, train_s = group.runs[0].cfg.steps, records[0].wall_s
        row = {
            "kind": "group",
            "profile": prof.name,
            **group_shape(group),
            "steps": steps,
            "train_s": round(train_s, 3),
            "elapsed_s": round(elapsed, 3),
            "step_ms": round(1e3 * train_s / steps, 4),
            "group_steps_per_s": round(steps / train_s, 1),
            "backend": backend,
            "capture": dev.type == "cuda",
            **env,
        }
        bench_line(out, row)

    print(f"device checks done: {deadline - time.monotonic():.0f} s left to train")
    return sweep(
        prof,
        work,
        workers=workers,
        deadline_s=max(deadline - time.monotonic(), 1e-3),
        device=str(dev),
        backend=backend,
        estimator=est,
        longest_first=True,
        on_group=bench,
        capture=True,
    )


def _collect(
    prof: Profile,
    work: Path,
    out: Path,
    before: set[str],
    sha: str,
    dev: torch.device,
    started: str,
    start: float,
    deadline_s: float,
    error: str | None,
) -> DeviceRunResult:
    """OUT's rows, paused states (smallest first, while the limits allow) and manifest."""
    rows = read_runs(work / "runs.csv") if (work / "runs.csv").is_file() else {}
    added = {run_id: r for run_id, r in rows.items() if run_id not in before}
    order = {r.run_id: r.index for r in prof.runs}
    write_csv(out / "runs.csv", COLUMNS, [row for i in sorted(added, key=order.__getitem__) for row in added[i]])
    budget = MAX_TOTAL_BYTES - sum(f.stat().st_size for f in out.iterdir()) - 2**20  # 1 MiB for the manifest
    kept, lost = [], []
    for state in (
        sorted((work / "paused").glob("*.pt"), key=lambda p: p.stat().st_size) if (work / "paused").is_dir() else []
    ):
        size = state.stat().st_size
        if len(FIXED_FILES) + len(kept) < MAX_FILES and size <= min(MAX_FILE_BYTES, budget):
            shutil.copyfile(state, out / f"paused_{state.name}")
            kept.append(f"paused_{state.name}")
            budget -= size
        else:
            lost.append(state.name)
            print(f"paused state {state.name} ({size / 2**20:.1f} MiB) does not fit in OUT: the next call restarts it")
    done = len(set(rows) & set(order))
    print(f"device run: {len(added)} runs added, {done}/{len(prof.runs)} done, {len(kept)} paused states kept")
    files = [*FIXED_FILES, *kept]
    write_json(
        out / "manifest.json",
        {
            "profile": prof.name,
            "study": prof.name,
            "call": f"{started}_{sha}",
            "git_sha": sha,
            **provenance(dev),
            "started_utc": started,
            "deadline_s": deadline_s,
            "wall_s": round(time.monotonic() - start, 1),
            "runs_added": len(added),
            "runs_done": done,
            "runs_total": len(prof.runs),
            "complete": done == len(prof.runs),
            "paused": kept,
            "paused_lost": lost,
            "files": files,
            "error": error,
            "profile_toml": prof.path.read_text(),  # the folder describes itself: ingest needs no profile file
        },
    )
    return DeviceRunResult(prof.name, len(added), done, len(prof.runs), files, lost, error)


@dataclass
class IngestResult:
    study: Path
    runs_added: int
    runs_known: int  # rows the table already held, identical
    paused: int
    complete: bool


def _without_wall(rows: list[list[str]]) -> list[list[str]]:
    wall = COLUMNS.index("wall_s")
    return [row[:wall] + row[wall + 1 :] for row in rows]


def ingest(src: Path, results: Path = Path("results")) -> IngestResult:
    """Merge a device run's folder into results/ (see the module docstring)."""
    try:
        manifest = json.loads((src / "manifest.json").read_text())
        name, profile_toml, call = manifest["study"], manifest["profile_toml"], manifest["call"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise ConfigError(f"{src} is not a device run's folder (manifest.json: {err})") from None
    study = results / name
    study.mkdir(parents=True, exist_ok=True)
    if not (study / "profile.toml").is_file():
        atomic_write(study / "profile.toml", lambda f: f.write(profile_toml))
    prof = load_profile(str(study / "profile.toml"))
    order = {r.run_id: r.index for r in prof.runs}
    new = read_runs(src / "runs.csv")
    unknown = sorted(set(new) - set(order))
    if unknown:
        raise ConfigError(
            f"{src}/runs.csv has {len(unknown)} runs that profile {prof.name} does not (e.g. {unknown[0]})"
        )
    table = RunsTable(study / "runs.csv", order, retire=False)
    conflicts = [i for i in new if i in table.rows and _without_wall(table.rows[i]) != _without_wall(new[i])]
    if conflicts:
        raise ConfigError(
            f"{len(conflicts)} runs of {src} differ from the rows {study / 'runs.csv'} holds for them "
            f"(e.g. {conflicts[0]}): nothing ingested"
        )
    added = [i for i in new if i not in table.rows]
    if added:
        table.rows.update({i: new[i] for i in added})
        table.write()
    finished = set(table.rows)
    done = {state_name(g) for g in prof.groups if all(r.run_id in finished for r in g.runs)}
    paused = 0
    for state in sorted(src.glob("paused_*.pt")):
        target = study / "paused" / state.name.removeprefix("paused_")
        if target.name in done:
            continue
        target.parent.mkdir(exist_ok=True)
        if not target.is_file() or target.read_bytes() != state.read_bytes():
            atomic_write(target, lambda f, s=state: f.write(s.read_bytes()), binary=True)
        paused += 1
    for state in (study / "paused").glob("*.pt") if (study / "paused").is_dir() else []:
        if state.name in done:
            state.unlink()  # its group finished in this call or an earlier one
    _append_new_lines(src / "bench.jsonl", results / STEP_TIMES)
    _kernel_results(src / "bench.jsonl", results / "benchmarks")
    if (src / "device_run.log").is_file():
        logs = study / "device_logs"
        logs.mkdir(exist_ok=True)
        log = (src / "device_run.log").read_text()
        target = logs / f"{call}.log"
        if not target.is_file() or target.read_text() != log:
            atomic_write(target, lambda f: f.write(log))
    return IngestResult(study, len(added), len(new) - len(added), paused, finished >= set(order))


def _kernel_results(bench: Path, dest: Path) -> None:
    """A device run's kernel benchmark as results/benchmarks/kernels.csv and kernels_tuning.json (the newest
    measurement replaces the tables; the step-time file keeps every line). Nothing without one."""
    lines = [json.loads(line) for line in bench.read_text().splitlines() if line] if bench.is_file() else []
    rows = [r for r in lines if r.get("kind") == "kernel"]
    dest.mkdir(parents=True, exist_ok=True)
    if rows:
        write_table(dest / "kernels.csv", rows)
    for r in lines:
        if r.get("kind") == "autotune":
            write_json(dest / "kernels_tuning.json", {k: v for k, v in r.items() if k != "kind"})


def _append_new_lines(src: Path, dest: Path) -> None:
    """The lines of `src` that `dest` does not hold yet, appended to it (atomically)."""
    if not src.is_file():
        return
    have = dest.read_text().splitlines() if dest.is_file() else []
    new = [line for line in src.read_text().splitlines() if line and line not in set(have)]
    if new:
        dest.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(dest, lambda f: f.write("".join(f"{line}\n" for line in have + new)))
