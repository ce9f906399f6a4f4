"""How to re-run the study, with the times the results record: the commands table, the recipe for a lab with its
own GPU (the time estimated from the GPU step times measured so far) and the lent GPU window's prepared call."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from replicate.config import count_params
from replicate.fit.read import read_summary
from replicate.paper import optimal_steps
from replicate.profile import Profile, load_profile
from replicate.runs import STUDY, next_profile

RESULTS = Path("results")
GPU_STEPS = RESULTS / "benchmarks" / "gpu_steps.jsonl"


def duration(seconds: float) -> str:
    """2 h 03 min, 18 min, 51 s: to the nearest minute from a minute on (1:23:59 is 1 h 24 min, as 83.98 min is
    84 min)."""
    minutes = round(seconds / 60)
    if minutes >= 60:
        return f"{minutes // 60} h {minutes % 60:02d} min"
    return f"{minutes} min" if seconds >= 60 else f"{seconds:.0f} s"


def logged_wall_time(log: str | Path) -> float | None:
    """The wall-clock seconds that `/usr/bin/time -v` recorded in a sweep's log, None without one."""
    log = Path(log)
    match = (
        re.search(r"Elapsed \(wall clock\) time.*?: (?:(\d+):)?(\d+):(\d+(?:\.\d+)?)", log.read_text())
        if log.is_file()
        else None
    )
    if not match:
        return None
    h, m, s = match.groups()
    return int(h or 0) * 3600 + int(m) * 60 + float(s)


def run_seconds(runs_csv: str | Path) -> tuple[float, int] | None:
    """The summed training time of a study's groups and its number of runs. runs.csv's wall_s is the time a run's
    group had trained at each checkpoint: a run's time is its last, and the runs that trained together as one
    group (one model and batch size) share it, counted once."""
    path = Path(runs_csv)
    if not path.is_file():
        return None
    runs = pd.read_csv(path, usecols=["run_id", "n_params", "batch_size", "role", "wall_s"])
    per_run = runs.groupby(["run_id", "n_params", "batch_size", "role"], as_index=False)["wall_s"].max()
    groups = per_run.drop_duplicates(["n_params", "batch_size", "role", "wall_s"])
    return float(groups["wall_s"].sum()), len(per_run)


def _study_time(study: str) -> str:
    elapsed = logged_wall_time(RESULTS / study / "sweep.log")
    summed = run_seconds(RESULTS / study / "runs.csv")
    parts = [f"{duration(elapsed)} wall clock (its sweep.log)"] if elapsed else []
    if summed:
        parts.append(f"{summed[1]} runs, {duration(summed[0])} of training summed over its groups")
    return "; ".join(parts) or "not recorded"


def _gpu_time() -> str:
    """The gpu profile's estimated time (gpu_estimate): it has never run."""
    estimate = gpu_estimate(load_profile("gpu"))
    return f"never run; estimated {duration(estimate['wall_s'])}" if estimate else "never run"


def commands_table(book_seconds: float | None = None) -> pd.DataFrame:
    """Every command behind the book's results, with the time the results record for it (on the machine that
    ran it; 'not recorded' where none does)."""
    model = RESULTS / "samples" / "model.json"
    model_s = json.loads(model.read_text())["wall_s"] if model.is_file() else None
    rows = [
        (
            "the book from the committed results",
            "make book",
            duration(book_seconds) + " of notebooks (execution page)" if book_seconds else "see the execution page",
        ),
        ("the whole pipeline at toy scale (CI)", "make book PROFILE=smoke", "not recorded"),
        ("the gpu profile on a lab's own GPU (section below)", "make book PROFILE=gpu", _gpu_time()),
        ("the cpu study", "python -m replicate sweep --profile cpu", _study_time("cpu")),
        ("its fits", "make results", "not recorded"),
        ("Stage A", "python -m replicate sweep --profile stage_a", _study_time("stage_a")),
        ("Stage L", "python -m replicate sweep --profile stage_l", _study_time("stage_l")),
        ("its learning-rate law and held-out checks", "make results/stage_l/summary.json", "not recorded"),
        (
            "the fixed-vs-tuned claim on Porian et al.'s public runs (ch. 11)",
            "python -m replicate porian data/public/porian --out results/public/porian.json",
            "not recorded",
        ),
        ("the image appendix", "python -m replicate sweep --profile image", _study_time("image")),
        ("the noise-scale measurements", "python -m replicate theory", "not recorded"),
        (
            "the sample model (ch. 3)",
            "see chapter 3",
            duration(model_s) + " (model.json)" if model_s else "not recorded",
        ),
        ("the tests", "make test", "not recorded"),
    ]
    return pd.DataFrame(rows, columns=["what", "command", "time, as recorded"])


# gpu_steps.jsonl's rows without a backend were measured at commit c09f416 with backend auto, which then took the
# Triton kernels on CUDA (today's auto takes PyTorch's ops until a kernel is measured faster): named for what ran
LEGACY_BACKEND = "triton (auto at c09f416)"


def _steps_with_backend(rows: pd.DataFrame) -> pd.DataFrame:
    return rows.assign(backend=rows.get("backend", LEGACY_BACKEND)).fillna({"backend": LEGACY_BACKEND})


def gpu_estimate(profile: Profile, steps: str | Path = GPU_STEPS) -> dict | None:
    """What `profile` would take on the GPU whose step times gpu_steps.jsonl holds: each group's steps at the
    single-process ms per step of its model size (log-log interpolated in N between the sizes measured, the
    median over batch sizes), summed; shared by the profile's workers at the speed-up measured for that many
    processes; never less than its longest group. None without measurements."""
    path = Path(steps)
    if not path.is_file():
        return None
    rows = _steps_with_backend(pd.read_json(path, lines=True))
    # one backend's times: auto's (what a sweep trains with) where measured, else the legacy rows
    rows = rows[rows["backend"] == ("auto" if (rows["backend"] == "auto").any() else LEGACY_BACKEND)]
    single = rows[rows["procs"] == 1].groupby("n_params")["ms_per_step"].median()
    if single.empty:
        return None
    n, ms = np.log(single.index.to_numpy(float)), np.log(single.to_numpy(float))
    group_s = [
        g.runs[0].cfg.steps * float(np.exp(np.interp(np.log(_n_params(g)), n, ms))) / 1000 for g in profile.groups
    ]
    # the speed-up of several processes sharing the GPU, against one process at the same (size, clips)
    multi = rows[rows["procs"] > 1]
    key = ["size", "clips"]
    one = rows[rows["procs"] == 1].groupby(key)["steps_per_s_total"].median()
    ratio = multi.set_index(key)["steps_per_s_total"] / one.reindex(multi.set_index(key).index).to_numpy()
    slower = multi["ms_per_step"].to_numpy() / (ratio.index.map(one).to_numpy() ** -1 * 1000)
    procs, gain = multi["procs"].to_numpy(), ratio.to_numpy()
    order = np.argsort(procs)
    workers = profile.workers
    speedup = float(np.interp(workers, [1, *procs[order]], [1.0, *gain[order]])) if len(multi) else 1.0
    # each process's own step slows down as more share the GPU: what the longest group takes among the others
    slowdown = float(np.interp(workers, [1, *procs[order]], [1.0, *slower[order]])) if len(multi) else 1.0
    total = float(sum(group_s))
    return {
        "device": str(rows["device"].iloc[0]),
        "git_sha": str(rows["git_sha"].iloc[0]),
        "backend": ", ".join(rows["backend"].astype(str).unique()),
        "single_process_s": total,
        "workers": workers,
        "speedup": speedup,
        "longest_group_s": max(group_s) * slowdown,
        "wall_s": max(total / speedup, max(group_s) * slowdown),
        "runs": len(profile.runs),
    }


def _n_params(group) -> float:
    return float(count_params(group.runs[0].cfg.model))


def s_opt_reach(profile: Profile) -> dict:
    """For a profile's fitting (N, T): the most steps any of its runs takes to T (its smallest batch's) against
    the steps S_opt that the paper's batch law implies there (paper.optimal_steps, chapter 4): where a run falls
    short of S_opt, that law puts B_opt below the batch grid, where a sweep bounds it but cannot locate it."""
    steps: dict[tuple[int, int], int] = {}
    for run in profile.runs:
        if run.role != "fit":
            continue
        cfg = run.cfg
        for tokens, at in zip(cfg.checkpoints, cfg.checkpoint_steps(), strict=True):
            key = (count_params(cfg.model), tokens)
            steps[key] = max(steps.get(key, 0), at)
    s_opt = {key: optimal_steps(*key) for key in steps}
    return {
        "cells": len(steps),
        "reached": sum(steps[k] >= s_opt[k] for k in steps),
        "steps": (min(steps.values()), max(steps.values())),
        "s_opt": (min(s_opt.values()), max(s_opt.values())),
        "smallest_batch_clips": min(r.cfg.batch_clips for r in profile.runs if r.role == "fit"),
    }


def what_it_tests(name: str = "gpu", results: Path = RESULTS) -> str:
    """What a profile's grid can test of the batch law, before its hours are spent: how many of its fitting
    (N, T) reach S_opt (s_opt_reach), beside Stage A, which reached it and still could not locate B_opt."""
    profile = load_profile(name)
    reach = s_opt_reach(profile)
    (lo, hi), (s_lo, s_hi) = reach["steps"], reach["s_opt"]
    sizes = sorted({count_params(r.cfg.model) for r in profile.runs if r.role == "fit"})
    held = sorted({count_params(r.cfg.model) for r in profile.runs if r.role == "holdout"})
    text = (
        f"What it measures: the learning-rate and loss laws at the optima of {len(sizes)} sizes, N = {sizes[0]:,} "
        f"to {sizes[-1]:,} ({sizes[-1] / sizes[0]:.0f}x)"
        + (f"; their prediction of a held-out model of N = {held[-1]:,}" if held else "")
        + (
            "; the loss law at one fixed (B, lr) for every size beside the tuned one (the fixed-vs-tuned claim)"
            if profile.fixed_lr is not None
            else ""
        )
        + f". Its {profile.workers} workers share one GPU. What it can test of the batch law: the `{name}` grid's "
        f"longest runs (its smallest batch, {reach['smallest_batch_clips']} clips) take {lo:,} to {hi:,} steps to "
        f"their checkpoints, against the {s_lo:,.0f} to {s_hi:,.0f} that the "
        f"paper's batch law puts at its optimum (S_opt, chapter 4): they reach it at {reach['reached']} of "
        f"{reach['cells']} fitting (N, T). Elsewhere that law puts B_opt below the grid, where a sweep bounds it but "
        "cannot locate it (chapter 4)."
    )
    stage_a = read_summary(results / "stage_a" / "summary.json")
    envelope = ((stage_a or {}).get("curvature_per_doubling2") or {}).get("ci95_envelope")
    if stage_a is not None and envelope and stage_a.get("verdict") != "go":
        a = s_opt_reach(load_profile("stage_a"))
        noise = stage_a["seed_noise"]["raw"]["near_optimum"]["rms"]
        seeds = len({r.cfg.seed for r in profile.runs if r.role == "fit"})
        text += (
            f" Stage A reached S_opt at {a['reached']} of {a['cells']} checkpoints and still could not locate B_opt "
            f"(verdict {stage_a['verdict']}, chapter 6b): its loss bends along B by at most {100 * envelope[1]:.2f}% "
            f"per squared doubling (two doublings from an optimum, at most {400 * envelope[1]:.2f}%), against a "
            f"seed-to-seed noise of {100 * noise:.2f}% per run in one cell. Unless the loss "
            f"bends more at this profile's scale, its optima, read with {seeds} seed{'s' if seeds > 1 else ''} per "
            "cell, will not locate B_opt either, on the grid's edge or off it."
        )
    return text


def gpu_recipe(estimate: dict | None, name: str = "gpu", results: Path = RESULTS) -> str:
    """The one recipe for a lab that re-runs the study on its own GPU machine, in Markdown: the commands, how
    long they should take, what the grid can test (`results`: where Stage A's summary is), what they write and
    how they resume."""
    time = (
        f"Expected: about {duration(estimate['wall_s'])} on one {estimate['device']}: {estimate['runs']} runs, "
        f"{duration(estimate['single_process_s'])} of one process's steps shared by {estimate['workers']} "
        f"workers (measured {estimate['speedup']:.1f}x faster than one), its longest group "
        f"{duration(estimate['longest_group_s'])} among them. The estimate takes the eager training step's times "
        f"with backend {estimate['backend']}, measured on that GPU at commit {estimate['git_sha']} (`{GPU_STEPS}`); "
        + (
            "auto now takes PyTorch's ops, whose whole step ran faster than the Triton kernels' on a large model "
            "(chapter 2), so the estimate is likely high; "
            if estimate["backend"] == LEGACY_BACKEND
            else ""
        )
        + (
            "those times were taken with bf16 autocast, the trainer's only CUDA mode then, and the profile now "
            "trains in fp32, which can be slower, so the estimate may err either way; "
            if not load_profile(name).runs[0].cfg.bf16
            else ""
        )
        + "the profile has never run to the end: time it on your GPU with the dry run above first."
        if estimate
        else "No GPU step times are recorded yet, so no time can be estimated."
    )
    writes = (
        f"It writes `results/{name}/runs.csv` (a row per run and checkpoint, rewritten whole after each finished "
        f"group) and `profile.toml`; runs still training at the deadline pause into `results/{name}/paused/`. "
        f"`make book PROFILE={name}` then fits it (`fit.json`, `fit_ema.json`, `lr_law.json`) and renders the book "
        f"from it; once `results/{name}` is complete, a plain `make book` renders it too. To resume, run the same "
        "command again: finished runs are skipped by their ids, paused ones go on from their saved state, and a "
        "killed sweep loses at most the runs it was training."
    )
    return "\n".join(
        [
            "On a Linux x86_64 machine with a CUDA GPU, make the environment and check that it sees the GPU: the "
            "second line must print True "
            "(PyPI's torch wheel for Linux x86_64 is built with CUDA; where your driver needs another CUDA version, "
            "install the same torch version into `.venv` from PyTorch's index for it):",
            "",
            "```bash",
            "make venv",
            ".venv/bin/python -c 'import torch; print(torch.cuda.is_available())'",
            f".venv/bin/python -m replicate sweep --profile {name} --dry-run",
            "```",
            "",
            "The dry run prints the plan and its time on this GPU, from a few steps of each group's shape that it "
            f"trains first (minutes; it creates `results/{name}/` and keeps those timings there for the sweep). "
            f"That time lets each of the profile's "
            f"{load_profile(name).workers} workers step as fast as one process alone"
            + (
                f"; sharing one GPU, {estimate['workers']} were measured {estimate['speedup']:.1f}x faster than one, "
                "so it is optimistic"
                if estimate and estimate["workers"] > 1
                else ""
            )
            + f". Then one command re-runs the `{name}` profile and builds the book from it:",
            "",
            "```bash",
            f"make book PROFILE={name}",
            "```",
            "",
            "or in bounded calls, where each job or command may run only so long: a sweep call stops within "
            "`--deadline-s` seconds (set it a minute under your limit), and the same call again goes on where it "
            f"stopped. Where a scheduler limits each job, submit one call per job, `.venv/bin/python -m replicate "
            f"sweep --profile {name} --deadline-s SECONDS`, until `.venv/bin/python -m replicate status "
            f"results/{name}` exits 0 (until the first call has written `results/{name}/profile.toml` it says the "
            "folder is no study yet). Where only each command is limited, one script does the same (a call that "
            "fails ends it with an error):",
            "",
            "```bash",
            f"until .venv/bin/python -m replicate status results/{name}; do",
            f"  .venv/bin/python -m replicate sweep --profile {name} \\",
            "    --deadline-s 540 || exit 1",
            "done",
            "```",
            "",
            time,
            "",
            what_it_tests(name, results),
            "",
            writes,
        ]
    )


def device_window(results: str | Path = RESULTS) -> str:
    """The lent GPU window's prepared call, in Markdown, with what it would train now (runs.next_profile)."""
    results = Path(results)
    gate = load_profile(STUDY).after
    summary = read_summary(results / gate / "summary.json")
    verdict = summary.get("verdict") if summary is not None else None
    now = next_profile(results)
    if now == STUDY:
        what = "Stage A is complete with a go verdict, so a call now trains the study's pending groups."
    elif verdict == "no-go":
        what = (
            "Stage A's verdict is no-go, so a call now trains nothing: it runs its checks and the kernel benchmark, "
            "and spends the time left measuring the training step at Stage L's shapes."
        )
    else:
        what = "Stage A is not complete, so a call now trains Stage A's pending groups."
    return "\n".join(
        [
            "This project's own GPU access is a lent window: a bare machine for minutes, at most 10 minutes per "
            "command, the tree without `.git`, perhaps no `make`, and only files written under `$OUT` coming back. "
            "One call is prepared for it:",
            "",
            "```bash",
            "# there, in the copied tree (no .git: the commit is passed)",
            "PYTHONPATH=src REPLICATE_GIT_SHA=<commit> \\",
            '  python3 -m replicate device-run --out "$OUT"',
            "# here, on the files it returned",
            "python -m replicate ingest DIR",
            "```",
            "",
            "It runs its stages in order, each in a time box cut from the call's deadline (480 s), a stage that "
            "fails or runs out of its box recorded as such and the next one run: a preflight (versions; a small "
            "step captured in a CUDA graph; every Triton op compiled and checked against the PyTorch reference), the "
            "training step replayed from a CUDA graph against the eager step (every later step stays eager unless "
            "their losses agree within 1e-3), bf16 against fp32, groups on parallel streams, the kernel benchmark, "
            "then the pending groups of Stage A, or of the study only after Stage A's verdict is go, and with the "
            "time left the training step at every shape of Stage L. Its files (`manifest.json`, `runs.csv`, "
            "`bench.jsonl`, `device_run.log`, paused states) are written as it goes, so a call cut short still "
            "returns what it measured. " + what,
        ]
    )


def gpu_steps_table(path: str | Path = GPU_STEPS) -> tuple[pd.DataFrame, str]:
    """benchmarks/gpu_steps.py's measurements as the book shows them, and a sentence naming the device, software
    and commit they were measured with (kept out of the table: one value for every row)."""
    steps = _steps_with_backend(pd.read_json(path, lines=True))
    columns = {
        "size": "size",
        "n_params": "N",
        "clips": "clips per member",
        "members": "members",
        "procs": "processes",
        "backend": "backend",
        "ms_per_step": "ms per step",
        "steps_per_s_total": "steps/s, all processes",
    }
    where = "; ".join(
        f"{device} (torch {', '.join(g['torch'].astype(str).unique())}, commit "
        f"{', '.join(g['git_sha'].astype(str).unique())})"
        for device, g in steps.groupby("device")
    )
    return steps[list(columns)].rename(columns=columns), f"Measured on {where}."


def captured_step_sentence(kernels_csv: str | Path = RESULTS / "benchmarks" / "kernels.csv") -> str:
    """What the committed GPU measurements say about the training step captured in a CUDA graph."""
    path = Path(kernels_csv)
    rows = pd.read_csv(path) if path.is_file() else pd.DataFrame(columns=["op", "backend", "ms"])
    captured = rows[rows["op"].astype(str).str.contains("captured")]
    eager = rows[(rows["op"] == "train_step") & (rows["backend"].isin(["eager", "torch"]))]
    if captured.empty or eager.empty:
        return (
            "The device run captures the training step in a CUDA graph (`replicate.training.step.StepGraph`) and "
            "checks it against the eager step, but no GPU timing of the captured step is committed yet: every GPU "
            "step time in this book, the estimate above included, is the eager step's."
        )
    ratio = eager["ms"].median() / captured["ms"].median()
    return (
        f"Captured in a CUDA graph, the training step ran {ratio:.2g}x as fast as the eager step "
        f"(`{path}`); the GPU estimate above still takes the eager step's times."
    )
