"""``replicate train, sweep, device-run, ingest, status``: the commands that train or schedule training."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from replicate.cli.args import check_output_path, positive_float, positive_int
from replicate.config import BACKENDS
from replicate.errors import ConfigError
from replicate.io import write_json


def add_backend(p: argparse.ArgumentParser) -> None:
    """--backend: which implementation runs the model's hot ops (replicate.kernels)."""
    help_ = "the model's ops: torch, triton, or auto (a Triton kernel on a GPU where it measured faster, else torch)"
    p.add_argument("--backend", default="auto", choices=BACKENDS, help=help_)


def add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train one Video DiT and validate it at token checkpoints",
        description="Train one model with a constant learning rate; write its record as JSON.",
    )
    p.add_argument("--size", help="a named size (sets width, depth and heads; see replicate.config.MODEL_SIZES)")
    p.add_argument("--width", type=positive_int, help="hidden size d")
    p.add_argument("--depth", type=positive_int, help="number of blocks")
    p.add_argument("--heads", type=positive_int, help="attention heads (width must be divisible by heads)")
    p.add_argument("--batch-clips", type=positive_int, required=True, help="clips per step")
    p.add_argument("--lr", type=positive_float, required=True, help="peak (constant) learning rate")
    p.add_argument("--tokens", type=positive_int, required=True, help="training tokens")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--warmup-steps", type=int, default=25)
    p.add_argument("--val-examples", type=positive_int, default=4096, help="validation clips")
    p.add_argument("--frames", type=positive_int, default=8)
    p.add_argument("--frame-size", type=positive_int, default=16, help="clip height and width in pixels")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    add_backend(p)
    p.add_argument("--out", type=Path, required=True, help="the record, JSON (rewritten at every checkpoint)")
    p.add_argument("--save-model", type=Path, help="also save the EMA weights (raw without one) at every checkpoint")
    p.set_defaults(func=_train)


def _train(args: argparse.Namespace) -> int:
    from replicate.config import ClipConfig, ModelConfig, TrainConfig, model_config
    from replicate.training.train import save_model, train

    out = check_output_path(args.out)
    if args.save_model:
        check_output_path(args.save_model)
    shape = {k: getattr(args, k) for k in ("width", "depth", "heads") if getattr(args, k) is not None}
    clip = ClipConfig(frames=args.frames, height=args.frame_size, width=args.frame_size)
    if args.size:
        model = model_config(args.size, clip=clip, **shape)
    elif len(shape) == 3:
        model = ModelConfig(clip=clip, **shape)
    else:
        raise ConfigError("give --size, or all of --width, --depth and --heads")
    cfg = TrainConfig(
        model,
        batch_clips=args.batch_clips,
        lr=args.lr,
        tokens=args.tokens,
        seed=args.seed,
        warmup_steps=args.warmup_steps,
        val_examples=args.val_examples,
    )

    def save(record, model=None, ema=None) -> None:
        write_json(out, record.to_dict())
        if model is not None and args.save_model:
            save_model(ema if ema is not None else model, args.save_model)

    record = train(cfg, device=args.device, backend=args.backend, progress=True, on_checkpoint=save)
    save(record)
    last = record.checkpoints[-1] if record.checkpoints else None
    status = "diverged" if record.diverged else "done"
    summary = f"; val_loss {last.val_loss:.5f} +- {last.val_loss_se:.5f} at {last.tokens:,} tokens" if last else ""
    print(f"{status}: N = {record.n_params:,}{summary} -> {out}")
    return 0


def add_sweep(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep",
        help="run a sweep over (model size, batch size, learning rate); resumable",
        description="Train every run of a profile that out/runs.csv does not hold yet.",
    )
    p.add_argument("--profile", required=True, help="smoke, cpu, gpu, or a path to a profile .toml")
    p.add_argument("--out", type=Path, help="results directory (default: results/PROFILE)")
    p.add_argument("--workers", type=positive_int, help="groups trained at once (default: the profile's)")
    p.add_argument(
        "--deadline-s",
        type=positive_float,
        help="stop within this many seconds, then exit 0: runs that would not finish pause "
        "(state in OUT/paused/) and the same command goes on",
    )
    p.add_argument(
        "--executor",
        choices=("local", "submitit"),
        default="local",
        help="local processes, or submitit (Slurm job arrays; its local executor without Slurm)",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, ...")
    add_backend(p)
    p.add_argument("--dry-run", action="store_true", help="print the number of runs, FLOPs and estimated time")
    p.set_defaults(func=_sweep)


def _sweep(args: argparse.Namespace) -> int:
    from replicate.profile import load_profile
    from replicate.training.sweep import sweep

    profile = load_profile(args.profile)
    out = args.out or Path("results") / profile.name
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is not a directory")
    result = sweep(
        profile,
        out,
        workers=args.workers,
        deadline_s=args.deadline_s,
        executor=args.executor,
        device=args.device,
        backend=args.backend,
        dry_run=args.dry_run,
    )
    if args.dry_run:
        return 0
    print(
        f"sweep {profile.name}: {result.done}/{len(profile.runs)} runs in {out / 'runs.csv'}"
        f" ({result.diverged} diverged this call)"
    )
    if result.left:
        paused = f", {result.paused} group(s) paused part-way with their state saved" if result.paused else ""
        print(
            f"deadline: {result.left} runs left (about {result.left_seconds / 60:.1f} min of work{paused});"
            " run the same command again to continue"
        )
    if result.failed:
        print(f"{result.failed} group(s) failed (see above); their runs are not in the table", file=sys.stderr)
        return 1
    return 0


def add_device_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "device-run",
        help="the prepared GPU call: check, measure and train under a deadline, results into one folder",
        description="Check the machine (preflight, the captured step, bf16, streams, the kernel benchmark) at the "
        "shapes of --measure, train the next pending groups of a study (default: Stage A until it is complete, "
        "then the study), resuming from results/<study>/, then time the steps at --measure's shapes with the time "
        "left; every stage in its time box, a failure recorded and the next stage run, within --deadline-s. Writes "
        "the new rows, the checks, the log and the paused states that fit into --out as it goes (at most "
        "--max-files files, those already there included); `replicate ingest` merges them. Exit 0, 1 when a "
        "stage failed (the folder says which), 143 on SIGTERM (the folder holds what was finished).",
    )
    p.add_argument("--out", type=Path, required=True, help="the folder of this call's files ($OUT on a device machine)")
    # the defaults of --profile, --measure, --deadline-s and --max-files are device_run's own (replicate.device.run:
    # NEXT, MEASURE, ...), spelled there once; an option left out is not passed
    p.add_argument("--profile", help="next (the default: Stage A, then the study), or a profile name or .toml")
    p.add_argument("--measure", help="the profile whose shapes the checks and step timings measure (default stage_l)")
    p.add_argument("--results", type=Path, default=Path("results"), help="the results root (default: results)")
    p.add_argument("--deadline-s", type=positive_float, help="seconds the whole call may take (default 480)")
    p.add_argument("--workers", type=positive_int, help="groups trained at once (default: the profile's)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, ...")
    add_backend(p)
    p.add_argument("--max-files", type=positive_int, help="files that may come back from --out (default 8)")
    p.set_defaults(func=_device_run)


def _device_run(args: argparse.Namespace) -> int:
    from replicate.device.run import device_run

    given = {key: getattr(args, key) for key in ("profile", "measure", "deadline_s", "max_files")}
    result = device_run(
        args.out,
        results=args.results,
        workers=args.workers,
        device=args.device,
        backend=args.backend,
        **{key: value for key, value in given.items() if value is not None},
    )
    print(
        f"device-run {result.profile} ({result.status}): {result.runs_added} runs added, {result.runs_done}/"
        f"{result.runs_total} done; {len(result.files)} files in {args.out}; merge them with: "
        f"python -m replicate ingest {args.out}"
    )
    if result.status == "interrupted":
        print("device-run: terminated (SIGTERM); the folder holds what was finished", file=sys.stderr)
        return 143
    if result.failed:
        print(f"device-run: stages failed or ran out of time: {', '.join(result.failed)}", file=sys.stderr)
        return 1
    return 0


def add_ingest(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ingest",
        help="merge a device run's folder into results/",
        description="Merge the rows, paused states, log, step times and kernel benchmark of a device-run folder "
        "into results/ (idempotent; rows that contradict the table's: exit 2, nothing written; of a partial "
        "kernel benchmark, its complete cases).",
    )
    p.add_argument("folder", type=Path, help="what device-run wrote (the device call's files)")
    p.add_argument("--results", type=Path, default=Path("results"), help="the results root (default: results)")
    p.add_argument(
        "--skip-kernels",
        action="store_true",
        help="leave kernels.csv and kernels_tuning.json as they are",
    )
    p.set_defaults(func=_ingest)


def _ingest(args: argparse.Namespace) -> int:
    from replicate.device.ingest import ingest

    if not args.folder.is_dir():
        raise ConfigError(f"{args.folder} is not a folder")
    result = ingest(args.folder, args.results, skip_kernels=args.skip_kernels)
    state = "complete" if result.complete else "not complete yet"
    print(
        f"ingest: {result.runs_added} runs added to {result.study / 'runs.csv'} ({result.runs_known} held already), "
        f"{result.paused} paused states; the study is {state}"
    )
    if result.source:
        print(f"ingest: {result.source}")
    if result.kernel_state != "none" and not args.skip_kernels:
        left = result.kernel_cases_left
        named = "; ".join(left[:3]) + ("; ..." if len(left) > 3 else "")
        print(
            f"ingest: kernel benchmark {result.kernel_state}: {result.kernel_cases} cases merged into kernels.csv"
            + (f", {len(left)} incomplete left out ({named})" if left else "")
        )
    return 0


def add_status(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "status",
        help="how many of a study's runs are finished (exit 1 while it is not complete)",
        description="Finished runs of the study in a results folder against its profile.toml; exit 0 when "
        "complete, 1 when not (the Makefile renders a study only when it is complete).",
    )
    p.add_argument("study", type=Path, help="a results folder, e.g. results/gpu")
    p.set_defaults(func=_status)


def _status(args: argparse.Namespace) -> int:
    from replicate.runs import study_status

    done, total = study_status(args.study)
    print(f"{args.study}: {done}/{total} runs finished" + (", complete" if done == total else ""))
    return 0 if done == total else 1
