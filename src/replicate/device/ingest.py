"""`ingest OUT`: a device run's folder (replicate.device.run) merged into results/.

The rows go into results/<study>/runs.csv, the paused states (single files or bundled archives) into
results/<study>/paused/, the log into results/<study>/device_logs/<call>.log, every bench line into
results/benchmarks/device_steps.jsonl, and the kernel benchmark's rows into results/benchmarks/kernels.csv, one
row per (op, shape, dtype, backend, device) replaced or added (the other devices' and shapes' rows stay), its
autotuning into kernels_tuning.json likewise per (kernel, key, device). Of a partial kernel benchmark (cut short
by its time box, or cases skipped) only the complete cases go into kernels.csv: an (op, shape, dtype) with a
finite time for every backend the benchmark timed for rows of its kind (ops, or the training step), so that no
row of the table stands without the baseline it is compared with; the others are named in the result
(`complete_cases`). `--skip-kernels` leaves the kernel tables as they are (the lines are still kept in
device_steps.jsonl). A folder cut short anywhere else (killed, status "running" or "interrupted") is taken as it
is: what it holds was finished. Every file is replaced atomically; ingesting the
same folder twice changes nothing; a row that differs from the one the table holds for the same run stops it
before it writes. The result says whether the call ran the source of the commit its rows name (`source_check`).
"""

from __future__ import annotations

import csv
import json
import math
import tarfile
from dataclasses import dataclass
from pathlib import Path

from replicate.errors import ConfigError
from replicate.io import atomic_write, write_json
from replicate.kernels.bench import write_table
from replicate.profile import Profile, load_profile
from replicate.provenance import tree_digest_at
from replicate.runs import COLUMNS, RunsTable, read_runs
from replicate.training.sweep import state_name
from replicate.training.timing import STEP_TIMES

KERNEL_KEY = ("op", "shape", "dtype", "backend", "device")  # a kernels.csv row's identity
PROVENANCE = ("device", "torch", "triton", "git_sha")


@dataclass
class IngestResult:
    study: Path
    runs_added: int
    runs_known: int  # rows the table already held, identical
    paused: int
    complete: bool
    kernel_state: str = "none"  # kernel_benchmark_state: none, complete, or why it is partial
    kernel_cases: int = 0  # (op, shape, dtype, device) cases merged into kernels.csv
    kernel_cases_left: tuple[str, ...] = ()  # a partial benchmark's incomplete cases, not merged
    source: str = ""  # whether the call ran the source of the commit its rows name (source_check)


def _without_wall(rows: list[list[str]]) -> list[list[str]]:
    wall = COLUMNS.index("wall_s")
    return [row[:wall] + row[wall + 1 :] for row in rows]


def _bench_lines(src: Path) -> list[dict]:
    bench = src / "bench.jsonl"
    return [json.loads(line) for line in bench.read_text().splitlines() if line] if bench.is_file() else []


def kernel_benchmark_state(lines: list[dict]) -> str:
    """ "none" (no kernel benchmark in the lines), "complete", or why it is partial."""
    rows = [r for r in lines if r.get("kind") == "kernel"]
    summaries = [r for r in lines if r.get("kind") == "kernel_benchmark"]
    if not rows and not summaries:
        return "none"
    if not summaries:
        return f"{len(rows)} kernel rows but no end to the benchmark (the call stopped inside it)"
    if not summaries[-1].get("complete"):
        skipped = summaries[-1].get("skipped") or []
        return f"{len(skipped)} cases skipped" + (f", e.g. {skipped[0]}" if skipped else " (it was cut short)")
    return "complete"


def source_check(manifest: dict, repo: Path | None = None) -> str:
    """Whether the call ran the commit its rows name: its manifest's tree digest against the digest of that
    commit's source in the repository at `repo` (default: this package's; "" where the call ran a tree without
    a commit, "tree-...")."""
    sha, ran = str(manifest.get("git_sha", "")), manifest.get("tree_digest")
    if sha.startswith("tree-") or not sha:
        return ""
    if ran is None:
        return f"the call recorded no tree digest: its source cannot be held to commit {sha}"
    at = tree_digest_at(sha.removesuffix("-dirty"), repo)
    if at is None:
        return f"commit {sha} is not in this repository: the call's source (tree-{ran}) is unchecked"
    if at != ran:
        return (
            f"the call ran source tree-{ran}, not commit {sha}'s (tree-{at}): its rows name a commit whose code "
            "they did not run (uncommitted edits at the call?)"
        )
    return f"the call ran commit {sha}'s source"


def complete_cases(rows: list[dict]) -> tuple[list[dict], list[str]]:
    """The kernel rows of the cases (op, shape, dtype, device) that have a finite time for every backend the
    benchmark timed for rows of their kind (the training step's, or the ops'), and the other cases by name."""
    from replicate.device.checks import CAPTURED_STEP, EAGER_STEP

    def kind(row: dict) -> str:
        return "step" if row["op"] in (CAPTURED_STEP, EAGER_STEP) else "op"

    backends: dict[str, set[str]] = {}
    cases: dict[tuple[str, ...], list[dict]] = {}
    for row in rows:
        backends.setdefault(kind(row), set()).add(row["backend"])
        cases.setdefault(tuple(str(row[k]) for k in ("op", "shape", "dtype", "device")), []).append(row)
    kept, left = [], []
    for case, group in cases.items():
        timed = {r["backend"] for r in group if math.isfinite(float(r["ms"]))}
        if timed >= backends[kind(group[0])]:
            kept += group
        else:
            missing = ", ".join(sorted(backends[kind(group[0])] - timed))
            left.append(f"{case[0]} {case[2]} at {case[1]} on {case[3]} ({missing} missing)")
    return kept, left


def _merge_rows(src: Path, study: Path, prof: Profile) -> tuple[int, int, set[str]]:
    """The folder's rows into the study's table: (added, already held, the finished runs after)."""
    order = {r.run_id: r.index for r in prof.runs}
    new = read_runs(src / "runs.csv") if (src / "runs.csv").is_file() else {}
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
    return len(added), len(new) - len(added), set(table.rows)


def _states(src: Path) -> dict[str, bytes]:
    """The paused states of a device run's folder by file name: paused_<name>.pt, and the members of the
    archives paused_<k>.tar (plain .pt names only)."""
    states = {state.name.removeprefix("paused_"): state.read_bytes() for state in sorted(src.glob("paused_*.pt"))}
    for archive in sorted(src.glob("paused_*.tar")):
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                if not member.isfile() or "/" in member.name or not member.name.endswith(".pt"):
                    raise ConfigError(f"{archive} holds {member.name!r}, not a paused state")
                states[member.name] = tar.extractfile(member).read()
    return states


def _move_paused(src: Path, study: Path, prof: Profile, finished: set[str]) -> int:
    """The folder's paused states into study/paused/, except those of groups now finished (whose old states go)."""
    done = {state_name(g) for g in prof.groups if all(r.run_id in finished for r in g.runs)}
    paused = 0
    for name, data in _states(src).items():
        target = study / "paused" / name
        if name in done:
            continue
        target.parent.mkdir(exist_ok=True)
        if not target.is_file() or target.read_bytes() != data:
            atomic_write(target, lambda f, d=data: f.write(d), binary=True)
        paused += 1
    for state in (study / "paused").glob("*.pt") if (study / "paused").is_dir() else []:
        if state.name in done:
            state.unlink()  # its group finished in this call or an earlier one
    return paused


def ingest(src: Path, results: Path = Path("results"), skip_kernels: bool = False) -> IngestResult:
    """Merge a device run's folder into results/ (see the module docstring)."""
    try:
        manifest = json.loads((src / "manifest.json").read_text())
        name, profile_toml, call = manifest["study"], manifest["profile_toml"], manifest["call"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise ConfigError(f"{src} is not a device run's folder (manifest.json: {err})") from None
    lines = _bench_lines(src)
    study = results / name
    study.mkdir(parents=True, exist_ok=True)
    if not (study / "profile.toml").is_file():
        atomic_write(study / "profile.toml", lambda f: f.write(profile_toml))
    prof = load_profile(str(study / "profile.toml"))
    added, known, finished = _merge_rows(src, study, prof)
    paused = _move_paused(src, study, prof, finished)
    _append_new_lines(src / "bench.jsonl", results / STEP_TIMES)
    kept, left = complete_cases([r for r in lines if r.get("kind") == "kernel"])
    if kept and not skip_kernels:
        merge_kernel_rows(results / "benchmarks" / "kernels.csv", kept)
    if not skip_kernels:
        for line in lines:
            if line.get("kind") == "autotune":
                merge_tuning(results / "benchmarks" / "kernels_tuning.json", line)
    if (src / "device_run.log").is_file():
        log, target = (src / "device_run.log").read_text(), study / "device_logs" / f"{call}.log"
        target.parent.mkdir(exist_ok=True)
        if not target.is_file() or target.read_text() != log:
            atomic_write(target, lambda f: f.write(log))
    cases = 0 if skip_kernels else len({tuple(str(r[k]) for k in ("op", "shape", "dtype", "device")) for r in kept})
    left = () if skip_kernels else tuple(left)
    state = kernel_benchmark_state(lines)
    complete = finished >= {r.run_id for r in prof.runs}
    source = source_check(manifest)
    return IngestResult(study, added, known, paused, complete, state, cases, left, source)


def merge_kernel_rows(path: Path, rows: list[dict]) -> None:
    """kernels.csv with `rows` (bench lines of kind "kernel") in place of the rows of the same KERNEL_KEY, the
    others added at the end; the table's other rows kept as they are."""
    old = list(csv.DictReader(path.open(newline=""))) if path.is_file() else []
    table = {tuple(r[k] for k in KERNEL_KEY): r for r in old}
    for row in rows:
        table[tuple(str(row[k]) for k in KERNEL_KEY)] = row
    path.parent.mkdir(parents=True, exist_ok=True)
    write_table(path, list(table.values()))


def merge_tuning(path: Path, line: dict) -> None:
    """kernels_tuning.json with the autotuning of a bench line of kind "autotune" (each entry with the line's
    provenance) in place of the entries of the same kernel, key and device."""
    old = json.loads(path.read_text()) if path.is_file() else {}
    base = {k: old.get(k) or old.get("provenance", {}).get(k) for k in PROVENANCE}  # a file of one run's tuning
    prov = {k: line.get(k) for k in PROVENANCE}
    entries = [{**base, **e} for e in old.get("tuning", [])] + [{**e, **prov} for e in line.get("tuning", [])]
    merged = {(e.get("kernel"), str(e.get("key")), e.get("device")): e for e in entries}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, {"tuning": list(merged.values())})


def _append_new_lines(src: Path, dest: Path) -> None:
    """The lines of `src` that `dest` does not hold yet, appended to it (atomically)."""
    if not src.is_file():
        return
    have = dest.read_text().splitlines() if dest.is_file() else []
    new = [line for line in src.read_text().splitlines() if line and line not in set(have)]
    if new:
        dest.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(dest, lambda f: f.write("".join(f"{line}\n" for line in have + new)))
