"""The prepared GPU call: `device-run` checks the machine, measures it and trains the next pending groups of a
study under a deadline on a bare machine, and leaves what must come back in one folder; `ingest`
(replicate.device.ingest) merges such a folder into results/.

A lent GPU machine has the working tree but no .git, nothing installable, at most 10 minutes per command, and
returns at most 8 files of at most 16 MiB (64 MiB in all) from $OUT; it is lent rarely, so its first call must
return numbers whatever fails. A device run
- takes its commit from $REPLICATE_GIT_SHA (`make device` passes it in), else git's, else the digest of its
  source (provenance.tree_digest, "tree-...");
- runs its stages in order, each in a time box cut from the deadline, each failure recorded and the next stage
  run (replicate.device.call): preflight, capture, precision, streams, the kernel benchmark (on a GPU; these are
  replicate.device.checks at the shapes of the profile it measures, `--measure`, default Stage L's), then
  training, then the step measurements with the time left;
- trains the next study (runs.next_profile) from the tree's results/<study>/: finished runs are skipped,
  paused states carried in go on, the longest groups first, each group's time taken from the measured step
  times of earlier calls on the same device (results/benchmarks/device_steps.jsonl) where its shape was
  measured, calibrated otherwise; its steps replayed from CUDA graphs only once the capture check passed;
- writes OUT/manifest.json (at the start, after every stage and finished group, at the end), OUT/runs.csv (the
  rows it added, after every finished group), OUT/bench.jsonl (one line per check and finished group, as each
  ends), OUT/device_run.log, and the paused states that the file limits allow (bundled into one archive when
  there are more states than free files). Files already in OUT count against --max-files and are left alone.
SIGTERM stops it where it is: it writes the rows and the manifest (status "interrupted") and exits 143.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from replicate.device.call import MANIFEST, Call, CallInterrupted, Stage
from replicate.device.checks import Checks, bench_line, group_shape
from replicate.io import atomic_write, write_csv
from replicate.profile import Group, Profile, load_profile
from replicate.provenance import device_name, git_sha, provenance, tree_digest
from replicate.runs import COLUMNS, TrainRecord, next_profile, read_runs
from replicate.training.step import resolve_device
from replicate.training.sweep import Estimator, calibrate, sweep
from replicate.training.timing import STEP_TIMES, measured_step_seconds

MAX_FILES = 8  # what a device call brings back from $OUT
MAX_FILE_BYTES = 16 * 2**20
MAX_TOTAL_BYTES = 64 * 2**20
FIXED_FILES = (MANIFEST, "runs.csv", "bench.jsonl", "device_run.log")
NEXT = "next"  # the profile a device run trains by default: runs.next_profile
MEASURE = "stage_l"  # the profile whose shapes it measures by default (README: "Running on a GPU")


@dataclass
class DeviceRunResult:
    profile: str
    runs_added: int
    runs_done: int  # the study's finished runs after this call
    runs_total: int
    files: list[str]  # the call's files in OUT
    paused_lost: list[str]  # paused groups whose state did not fit in OUT: the next call restarts them
    status: str = "finished"  # or "interrupted" (SIGTERM)
    failed: list[str] | None = None  # the stages that failed or ran out of their time box


def call_commit() -> str:
    """The commit this call's rows carry: $REPLICATE_GIT_SHA, else git's, else "tree-" and the digest of the
    source, which then goes into $REPLICATE_GIT_SHA so that the workers' rows carry it too."""
    sha = git_sha()
    if sha == "unknown":
        sha = f"tree-{tree_digest()}"
        os.environ["REPLICATE_GIT_SHA"] = sha
        git_sha.cache_clear()
    return sha


def device_run(
    out: Path,
    *,
    profile: str = NEXT,
    measure: str = MEASURE,
    results: Path = Path("results"),
    deadline_s: float = 480.0,
    workers: int | None = None,
    device: str = "auto",
    backend: str = "auto",
    max_files: int = MAX_FILES,
) -> DeviceRunResult:
    """Run the call's stages on `profile` (trained; its results in results/<name>/) and `measure` (whose shapes
    are measured) for at most `deadline_s` seconds and write what must come back into `out` (see the module
    docstring)."""
    call = Call(out, deadline_s, FIXED_FILES, max_files)
    dev = resolve_device(device)
    prof = load_profile(next_profile(results) if profile == NEXT else profile)
    measured = prof if measure == prof.name else load_profile(measure)
    sha, started = call_commit(), datetime.now(UTC).strftime("%Y-%m-%dT%H-%M-%SZ")
    work = Path(tempfile.mkdtemp(prefix="device-run-"))
    try:
        before = _work_copy(results / prof.name, work)
        env = provenance(dev)
        checks = Checks(measured, out, dev, backend, env, results)
        stages = [*checks.stages(), _train_stage(call, checks, prof, work, before, workers), _measure_stage(checks)]
        call.manifest = {
            "profile": prof.name,
            "study": prof.name,
            "measured": measured.name,
            "call": f"{started}_{sha}",
            **env,
            "started_utc": started,
            "deadline_s": deadline_s,
            "plan": [{"stage": s.name, "share": s.share} for s in stages],
            "runs_total": len(prof.runs),
            "profile_toml": prof.path.read_text(),  # the folder describes itself: ingest needs no profile file
            "tree_digest": tree_digest(),  # the source the call ran: ingest holds it to the commit its rows name
        }
        with call.opened():
            print(
                f"device run: train {prof.name}, measure {measured.name}; {env['device']}, torch {env['torch']}, "
                f"triton {env['triton']}, commit {sha}, backend {backend}, {os.cpu_count()} cores, "
                f"{deadline_s:.0f} s"
            )
            status = _run(call, stages, lambda: _copy_rows(call, prof, work, before))
            call.ignore_sigterm()
            return _collect(call, prof, work, before, status)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run(call: Call, stages: list[Stage], first: Callable[[], None]) -> str:
    """`first` (the files OUT holds from the start), then the stages in order; "finished", or "interrupted" where
    a SIGTERM stopped them."""
    try:
        first()
        (call.out / "bench.jsonl").touch()
        call.write_manifest("running")
        for stage in stages:
            call.run(stage)
    except CallInterrupted:
        print("device run: terminated (SIGTERM): writing what it has")
        return "interrupted"
    return "finished"


def _work_copy(study: Path, work: Path) -> set[str]:
    """The study's table and paused states copied into the work folder; the runs it holds already."""
    if (study / "runs.csv").is_file():
        shutil.copyfile(study / "runs.csv", work / "runs.csv")
    if (study / "paused").is_dir():
        shutil.copytree(study / "paused", work / "paused")
    return set(read_runs(work / "runs.csv")) if (work / "runs.csv").is_file() else set()


def _copy_rows(call: Call, prof: Profile, work: Path, before: set[str]) -> None:
    """OUT/runs.csv: the rows this call added (in the profile's order), and their count in the manifest."""
    rows = read_runs(work / "runs.csv") if (work / "runs.csv").is_file() else {}
    added = {run_id: r for run_id, r in rows.items() if run_id not in before}
    order = {r.run_id: r.index for r in prof.runs}
    write_csv(call.out / "runs.csv", COLUMNS, [row for i in sorted(added, key=order.__getitem__) for row in added[i]])
    done = len(set(rows) & set(order))
    call.manifest.update(runs_added=len(added), runs_done=done, complete=done == len(prof.runs))


def _train_stage(call: Call, checks: Checks, prof: Profile, work: Path, before: set[str], workers: int | None) -> Stage:
    """Training the study's pending groups until the stage's deadline; each finished group's rows into OUT."""
    dev = checks.dev  # the backend is read when training starts: the preflight may have changed it

    def on_group(group: Group, records: list[TrainRecord], elapsed: float) -> None:
        steps, train_s = group.runs[0].cfg.steps, records[0].wall_s
        row = {"kind": "group", "profile": prof.name, **group_shape(group), "steps": steps}
        row.update(train_s=round(train_s, 3), elapsed_s=round(elapsed, 3), step_ms=round(1e3 * train_s / steps, 4))
        row.update(group_steps_per_s=round(steps / train_s, 1), backend=checks.backend, capture=checks.graphs)
        bench_line(call.out, {**row, **checks.env})
        _copy_rows(call, prof, work, before)
        call.write_manifest("running", "train")

    def train(deadline: float) -> str:
        done = set(read_runs(work / "runs.csv")) if (work / "runs.csv").is_file() else set()
        pending = [g for g in prof.groups if not all(r.run_id in done for r in g.runs)]
        if not pending:
            return f"nothing to train: {prof.name} holds all {len(prof.runs)} runs"
        backend = checks.backend
        threads = max(1, len(os.sched_getaffinity(0)) // (workers or prof.workers)) if dev.type == "cpu" else 0
        est = Estimator(lambda group: calibrate(group, str(dev), threads, checks.capture, backend))
        measured = measured_step_seconds(checks.results / STEP_TIMES, device_name(dev), backend)
        for group in prof.groups:
            if group.shape() in measured:
                est.finished(group, group.runs[0].cfg.steps * measured[group.shape()])
        print(f"step times measured before for {sum(g.shape() in measured for g in prof.groups)} groups")
        result = sweep(
            prof,
            work,
            workers=workers,
            deadline_s=max(deadline - time.monotonic(), 1e-3),
            device=str(dev),
            backend=backend,
            estimator=est,
            longest_first=True,
            on_group=on_group,
            capture=checks.capture,
        )
        summary = f"{result.done}/{len(prof.runs)} runs done, {result.left} left ({result.paused} groups paused)"
        if result.failed:
            raise RuntimeError(f"{result.failed} groups failed; {summary}")
        return summary

    return Stage("train", None, train, alarm=False)


def _measure_stage(checks: Checks) -> Stage:
    return Stage("measure", None, checks.measure)


def _bins(states: list[Path], slots: int, budget: int) -> tuple[list[list[Path]], list[Path]]:
    """The paused states (smallest first) in at most `slots` files of at most MAX_FILE_BYTES and `budget` bytes
    in all: one file per state while there are free files, then into the first file with room; and those lost."""
    bins: list[list[Path]] = []
    lost = []
    for state in sorted(states, key=lambda p: p.stat().st_size):
        size = state.stat().st_size
        room = [b for b in bins if sum(p.stat().st_size for p in b) + size <= MAX_FILE_BYTES]
        if size > min(MAX_FILE_BYTES, budget) or (len(bins) >= slots and not room):
            lost.append(state)
            continue
        if len(bins) < slots:
            bins.append([state])
        else:
            room[0].append(state)
        budget -= size
    return bins, lost


def _write_paused(out: Path, bins: list[list[Path]]) -> list[str]:
    """Each bin as OUT/paused_<state> (one state) or OUT/paused_<k>.tar (several); the states kept."""
    kept = []
    for k, states in enumerate(bins):
        if len(states) == 1:
            shutil.copyfile(states[0], out / f"paused_{states[0].name}")
        else:

            def archive(f, states: list[Path] = states) -> None:
                with tarfile.open(fileobj=f, mode="w") as tar:
                    for state in states:
                        tar.add(state, arcname=state.name)

            atomic_write(out / f"paused_{k}.tar", archive, binary=True)
        kept += [state.name for state in states]
    return kept


def _collect(call: Call, prof: Profile, work: Path, before: set[str], status: str) -> DeviceRunResult:
    """OUT's rows, paused states (as many as the file limits allow) and the final manifest."""
    for tmp in call.out.glob(".*.tmp"):  # an atomic write that a SIGTERM cut short: no file of the call's
        tmp.unlink()
    _copy_rows(call, prof, work, before)
    states = sorted((work / "paused").glob("*.pt")) if (work / "paused").is_dir() else []
    slots = call.max_files - len(call.foreign) - len(FIXED_FILES)
    budget = MAX_TOTAL_BYTES - sum(f.stat().st_size for f in call.out.iterdir()) - 2**20  # 1 MiB for the manifest
    bins, lost = _bins(states, slots, budget)
    kept = _write_paused(call.out, bins)
    for state in lost:
        size = state.stat().st_size / 2**20
        print(f"paused state {state.name} ({size:.1f} MiB) does not fit in OUT: the next call restarts it")
    failed = [s["stage"] for s in call.stages if s["status"] in ("failed", "timeout")]
    m = call.manifest
    print(
        f"device run {status}: {m['runs_added']} runs added, {m['runs_done']}/{len(prof.runs)} done, "
        f"{len(kept)} paused states kept" + (f"; stages failed: {', '.join(failed)}" if failed else "")
    )
    call.manifest.update(paused=kept, paused_lost=[s.name for s in lost], failed=failed)
    call.write_manifest(status)
    return DeviceRunResult(
        prof.name, m["runs_added"], m["runs_done"], len(prof.runs), call.files(), m["paused_lost"], status, failed
    )
