"""Command line: ``python -m replicate {train, ...}``.

Bad input gets one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

from replicate.errors import ConfigError
from replicate.io import write_json


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are a single line."""

    def error(self, message: str) -> None:
        self.exit(2, f"{self.prog}: error: {message}\n")


def check_output_path(path: Path) -> Path:
    """Fail before any work if `path` cannot be written."""
    if path.is_dir():
        raise ConfigError(f"--out {path} is a directory")
    if not path.parent.is_dir():
        raise ConfigError(f"--out: directory {path.parent} does not exist")
    if not os.access(path.parent, os.W_OK):
        raise ConfigError(f"--out: directory {path.parent} is not writable")
    return path


def _positive_int(text: str) -> int:
    try:
        value = int(float(text)) if "e" in text.lower() else int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train one Video DiT and validate it at token checkpoints",
        description="Train one model with a constant learning rate; write its record as JSON.",
    )
    p.add_argument("--size", help="a named size (sets width, depth and heads; see replicate.model.MODEL_SIZES)")
    p.add_argument("--width", type=_positive_int, help="hidden size d")
    p.add_argument("--depth", type=_positive_int, help="number of blocks")
    p.add_argument("--heads", type=_positive_int, help="attention heads (width must be divisible by heads)")
    p.add_argument("--batch-size", type=_positive_int, required=True, help="samples per step")
    p.add_argument("--lr", type=_positive_float, required=True, help="peak (constant) learning rate")
    p.add_argument("--tokens", type=_positive_int, required=True, help="training tokens")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--warmup-steps", type=int, default=25)
    p.add_argument("--val-examples", type=_positive_int, default=4096, help="validation clips")
    p.add_argument("--frames", type=_positive_int, default=8)
    p.add_argument("--frame-size", type=_positive_int, default=16, help="clip height and width in pixels")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--backend", default="auto", help="auto, torch or triton")
    p.add_argument("--out", type=Path, required=True, help="the record, JSON (rewritten at every checkpoint)")
    p.add_argument("--save-model", type=Path, help="also save the EMA weights (raw without one) at every checkpoint")
    p.set_defaults(func=_train)


def _train(args: argparse.Namespace) -> int:
    from replicate.config import ClipConfig, ModelConfig, TrainConfig, model_config
    from replicate.kernels import check_backend
    from replicate.train import save_model, train

    out = check_output_path(args.out)
    if args.save_model:
        check_output_path(args.save_model)
    check_backend(args.backend)
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
        batch_size=args.batch_size,
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


def _add_sweep(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep",
        help="run a sweep over (model size, batch size, learning rate); resumable",
        description="Train every run of a profile that out/runs.csv does not hold yet.",
    )
    p.add_argument("--profile", required=True, help="smoke, cpu, gpu, or a path to a profile .toml")
    p.add_argument("--out", type=Path, help="results directory (default: results/PROFILE)")
    p.add_argument("--workers", type=_positive_int, help="groups trained at once (default: the profile's)")
    p.add_argument(
        "--deadline-s",
        type=_positive_float,
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
    p.add_argument("--backend", default="auto", help="auto, torch or triton")
    p.add_argument("--dry-run", action="store_true", help="print the number of runs, FLOPs and estimated time")
    p.set_defaults(func=_sweep)


def _sweep(args: argparse.Namespace) -> int:
    from replicate.kernels import check_backend
    from replicate.profile import load_profile
    from replicate.sweep import sweep

    check_backend(args.backend)
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


def _add_device_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "device-run",
        help="the prepared GPU call: train pending groups under a deadline, results into one folder",
        description="Train the next pending groups of a study (default: Stage A until it is complete, then the "
        "study) for at most --deadline-s seconds, resuming from results/<study>/, and write the new rows, paused "
        "states that fit, the log and step times into --out (at most 8 files; `replicate ingest` merges them).",
    )
    p.add_argument("--out", type=Path, required=True, help="an empty folder ($OUT on a device machine)")
    p.add_argument("--profile", default="next", help="next (Stage A, then the study), or a profile name or .toml")
    p.add_argument("--results", type=Path, default=Path("results"), help="the results root (default: results)")
    p.add_argument("--deadline-s", type=_positive_float, default=480.0, help="seconds this call may train")
    p.add_argument("--workers", type=_positive_int, help="groups trained at once (default: the profile's)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, ...")
    p.add_argument("--backend", default="auto", help="auto, torch or triton")
    p.set_defaults(func=_device_run)


def _device_run(args: argparse.Namespace) -> int:
    from replicate.device_run import check_out, device_run
    from replicate.kernels import check_backend

    check_backend(args.backend)
    check_out(args.out)
    result = device_run(
        args.out,
        profile=args.profile,
        results=args.results,
        deadline_s=args.deadline_s,
        workers=args.workers,
        device=args.device,
        backend=args.backend,
    )
    print(
        f"device-run {result.profile}: {result.runs_added} runs added, {result.runs_done}/{result.runs_total} "
        f"done; {len(result.files)} files in {args.out}; merge them with: python -m replicate ingest {args.out}"
    )
    if result.error:
        print(f"device-run: {result.error}", file=sys.stderr)
        return 1
    return 0


def _add_ingest(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ingest",
        help="merge a device run's folder into results/",
        description="Merge the rows, paused states, log and step times of a device-run folder into "
        "results/<study>/ (idempotent; rows that contradict the table's: exit 2, nothing written).",
    )
    p.add_argument("folder", type=Path, help="what device-run wrote (the device call's files)")
    p.add_argument("--results", type=Path, default=Path("results"), help="the results root (default: results)")
    p.set_defaults(func=_ingest)


def _ingest(args: argparse.Namespace) -> int:
    from replicate.device_run import ingest

    if not args.folder.is_dir():
        raise ConfigError(f"{args.folder} is not a folder")
    result = ingest(args.folder, args.results)
    state = "complete" if result.complete else "not complete yet"
    print(
        f"ingest: {result.runs_added} runs added to {result.study / 'runs.csv'} ({result.runs_known} held already), "
        f"{result.paused} paused states; the study is {state}"
    )
    return 0


def _add_status(sub: argparse._SubParsersAction) -> None:
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


def _add_bootstrap(p: argparse.ArgumentParser, unit: str, what: str) -> None:
    """--bootstrap, --seed and --if-changed: the options of the commands that write a fitted JSON."""
    p.add_argument("--bootstrap", type=int, default=1000, help=f"resamples of {unit} for the 95%% intervals (0: none)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    p.add_argument(
        "--if-changed",
        action="store_true",
        help=f"do nothing when --out already holds the {what} of this very table with these options",
    )


def _add_fit(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fit",
        help="fit the scaling laws to a table of runs, with bootstrap intervals",
        description="Fit optima, hyperparameter laws, the loss law and the compute law to a runs "
        "table (CSV: n_params, tokens, val_loss; batch_size and lr for the "
        "hyperparameter stage); write them as JSON.",
    )
    p.add_argument("runs", type=Path, help="runs table, CSV (one row per run x checkpoint)")
    p.add_argument("--out", type=Path, required=True, help="the fit, JSON")
    p.add_argument(
        "--fixed-batch-size",
        type=_positive_float,
        help="fit the laws also on the runs at this batch size (tokens per step) ...",
    )
    p.add_argument("--fixed-lr", type=_positive_float, help="... and this learning rate")
    p.add_argument(
        "--profile",
        help="take the fixed batch size and learning rate from this sweep profile (default: "
        "the profile.toml beside the table, which the sweep writes, if there is one)",
    )
    p.add_argument(
        "--flops",
        choices=("6n", "paper", "exact"),
        default="exact",
        help="FLOP convention of the headline compute law (default exact; 6n without FLOP columns)",
    )
    _add_bootstrap(p, "runs (the seeds of every cell where cells hold several)", "fit")
    p.add_argument(
        "--loss-column",
        default="val_loss",
        help="the column fitted as the loss (default val_loss; val_loss_ema: the EMA weights' loss)",
    )
    p.set_defaults(func=_fit)


def _fit(args: argparse.Namespace) -> int:
    from replicate.fit.document import fit_file

    out = check_output_path(args.out)
    result = fit_file(
        args.runs,
        out,
        profile=args.profile,
        fixed_batch_size=args.fixed_batch_size,
        fixed_lr=args.fixed_lr,
        flops=args.flops,
        bootstrap=args.bootstrap,
        seed=args.seed,
        loss_column=args.loss_column,
        if_changed=args.if_changed,
    )
    if result is None:
        print(f"fit: {out} is up to date with {args.runs}")
        return 0
    law, ci = result["loss_law"], result["loss_law"]["ci95"]

    def exponent(name: str) -> str:
        return f"{law[name]:.3f}" + (" [{:.3f}, {:.3f}]".format(*ci[name]) if ci[name] else "")

    print(
        f"{result['mode']}: {result['n_rows']} rows; L = {law['a']:.4g} T^-{exponent('alpha_tokens')} + "
        f"{law['b']:.4g} N^-{exponent('alpha_params')} + {law['l_inf']:.4f}; N_opt ~ C^"
        f"{result['compute_law']['exp']:.3f} ({result['compute_law']['flops']} FLOPs); "
        f"{len(result['warnings'])} warnings -> {out}"
    )
    return 0


def _add_curvature(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "curvature",
        help="how curved is the loss along the batch size against the seed noise (Stage A's go/no-go)",
        description="From a sweep with several seeds per (B, lr) cell: the curvature of the loss along B per "
        "squared doubling (one surface through every checkpoint), the seed noise, the share of interior B optima, "
        "the B_opt exponent in T, and the verdict (go >= 0.3%, no-go < 0.1%); raw and EMA readouts; JSON.",
    )
    p.add_argument("runs", type=Path, help="runs table, CSV (one row per run x checkpoint, with seeds)")
    p.add_argument("--out", type=Path, required=True, help="the summary, JSON")
    _add_bootstrap(p, "the seeds of every cell", "summary")
    p.set_defaults(func=_curvature)


def _curvature(args: argparse.Namespace) -> int:
    from replicate.fit.curvature import curvature_file

    out = check_output_path(args.out)
    if args.bootstrap < 0:
        raise ConfigError(f"--bootstrap must be >= 0, got {args.bootstrap}")
    summary = curvature_file(args.runs, out, args.bootstrap, args.seed, if_changed=args.if_changed)
    if summary is None:
        print(f"curvature: {out} is up to date with {args.runs}")
        return 0
    c = summary["curvature_per_doubling2"]
    ci = c["ci95_envelope"]
    interval = f" [{100 * ci[0]:.2f}%, {100 * ci[1]:.2f}%]" if ci else ""
    value = "not measured" if c["value"] is None else f"{100 * c['value']:.2f}% per doubling^2{interval}"
    noise = summary["seed_noise"]["raw"]["near_optimum"]["rms"]
    noise_text = "not measured" if noise is None else f"{100 * noise:.2f}% per cell"
    print(f"curvature {value}; seed noise {noise_text}; verdict {summary['verdict']} -> {out}")
    return 0


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="B_opt, eta_opt and the loss at (N, T), or at the compute-optimal (N, T) of a budget",
        description="Evaluate the laws of a fit.json (95%% intervals from its bootstrap resamples) or the paper's "
        "printed laws. Units: N in parameters, T in tokens, B in tokens per step, C in FLOPs.",
    )
    p.add_argument("--params", type=_positive_float, help="model size N (parameters)")
    p.add_argument("--tokens", type=_positive_float, help="training tokens T")
    p.add_argument("--flops", type=_positive_float, help="a compute budget C instead: N_opt(C) and T_opt")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--fit", type=Path, help="a fit.json (replicate fit)")
    source.add_argument("--law", choices=("paper",), help="the paper's printed laws (no intervals)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_predict)


def _predict(args: argparse.Namespace) -> int:
    import json

    from replicate.fit.predict import paper_fit, predict

    if args.fit is not None:
        try:
            fit = json.loads(args.fit.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ConfigError(f"cannot read {args.fit}: {err}") from None
        if not isinstance(fit, dict) or "loss_law" not in fit:
            raise ConfigError(f"{args.fit} is not a fit.json (no loss_law)")
    else:
        fit = paper_fit()
    result = predict(fit, args.params, args.tokens, args.flops)
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    units = {"n_params": "parameters", "tokens": "tokens", "batch_size": "tokens per step", "lr": "", "val_loss": ""}
    names = {"n_params": "N", "tokens": "T", "batch_size": "B_opt", "lr": "eta_opt", "val_loss": "loss"}
    source = str(args.fit) if args.fit else "the paper's laws"
    budget = f" at C = {args.flops:.3g} FLOPs ({result['flop_convention']})" if args.flops else ""
    print(
        f"{source}{budget}; 95% intervals over {result['resamples']} bootstrap resamples"
        if result["resamples"]
        else f"{source}{budget}; no intervals"
    )
    for key, value in result["prediction"].items():
        ci = result["ci95"].get(key)
        interval = (
            f"[{ci[0]:.4g}, {ci[1]:.4g}]"
            if ci
            else ("(given)" if key in ("n_params", "tokens") and not args.flops else "-")
        )
        print(f"  {names[key]:<8} {value:>12.4g} {interval:>26}  {units[key]}")
    return 0


def _add_theory(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "theory",
        help="measure the SGD noise scale on quadratics and the Video DiT",
        description="Run the noise-scale experiments of the SGD chapter; write JSON files.",
    )
    p.add_argument("--out", type=Path, default=Path("results/theory"), help="results directory")
    p.add_argument("--device", default="auto")
    p.add_argument("--quick", action="store_true", help="a seconds-long version (tests)")
    p.set_defaults(func=_theory)


def _theory(args: argparse.Namespace) -> int:
    from replicate.theory_study import run

    if args.out.exists() and not args.out.is_dir():
        raise ConfigError(f"--out {args.out} is not a directory")
    run(args.out, device=args.device, quick=args.quick)
    print(f"theory: results in {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog="replicate", description="Scaling laws for video diffusion transformers, replicated.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    _add_train(sub)
    _add_fit(sub)
    _add_sweep(sub)
    _add_curvature(sub)
    _add_predict(sub)
    _add_theory(sub)
    _add_device_run(sub)
    _add_ingest(sub)
    _add_status(sub)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as err:
        print(f"replicate {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"replicate {args.command}: interrupted", file=sys.stderr)
        return 130
